"""Rectified-flow training noise levels and loss weights.

Conventions match the sampler (:mod:`mvs2v_core.sampling`): ``x_sigma = (1 - sigma) x0 + sigma noise``,
the model gets ``t = 1000 sigma`` and predicts the velocity ``v = noise - x0``.

Draws are exact truncations to ``[min_timestep, max_timestep]`` (by inverse CDF, no rejection loop and
no clipping pile-up at the bounds), which is what training one Wan2.2 A14B expert needs: the
high-noise expert only ever sees ``t >= 875``, the low-noise one ``t < 875``.
"""

from __future__ import annotations

import math

import torch

from .config import TimestepsSection

SIGMA_EPS = 1e-5


def shift(u: float, k: float) -> float:
    """Wan's shift ``k u / (1 + (k - 1) u)`` (monotone, fixes 0 and 1)."""
    return k * u / (1.0 + (k - 1.0) * u)


def unshift(s: float, k: float) -> float:
    """Inverse of :func:`shift`."""
    return s / (k - (k - 1.0) * s)


def _std_normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _logit(p: float) -> float:
    if p <= 0.0:
        return -math.inf
    if p >= 1.0:
        return math.inf
    return math.log(p / (1.0 - p))


def sample_sigma(cfg: TimestepsSection, generator: torch.Generator) -> float:
    """One noise level ``sigma`` in ``[min_timestep, max_timestep] / 1000`` from the configured law."""
    lo, hi = cfg.min_timestep / 1000.0, cfg.max_timestep / 1000.0
    u = float(torch.rand((), generator=generator, dtype=torch.float64))
    if cfg.sampling == "uniform":
        sigma = lo + (hi - lo) * u
    elif cfg.sampling == "shifted":
        a, b = unshift(lo, cfg.shift), unshift(hi, cfg.shift)
        sigma = shift(a + (b - a) * u, cfg.shift)
    else:  # logit_normal, then the shift (musubi / SD3 style); truncated in the normal's own space
        za = (_logit(unshift(lo, cfg.shift)) - cfg.logit_mean) / cfg.logit_std
        zb = (_logit(unshift(hi, cfg.shift)) - cfg.logit_mean) / cfg.logit_std
        pa, pb = _std_normal_cdf(za), _std_normal_cdf(zb)
        p = min(max(pa + (pb - pa) * u, 1e-12), 1.0 - 1e-12)
        z = float(torch.special.ndtri(torch.tensor(p, dtype=torch.float64)))
        base = 1.0 / (1.0 + math.exp(-(cfg.logit_mean + cfg.logit_std * z)))
        sigma = shift(base, cfg.shift)
    return min(max(sigma, max(lo, SIGMA_EPS)), hi)


def loss_weight(cfg: TimestepsSection, sigma: float) -> float:
    """Per-sample loss weight: ``none`` 1; ``cosmap`` ``2 / (pi (1 - 2s + 2s^2))``; ``sigma_sqrt`` ``1/s^2`` (<= 100)."""
    if cfg.weighting == "cosmap":
        return 2.0 / (math.pi * (1.0 - 2.0 * sigma + 2.0 * sigma * sigma))
    if cfg.weighting == "sigma_sqrt":
        return min(1.0 / max(sigma, SIGMA_EPS) ** 2, 100.0)
    return 1.0


__all__ = ["sample_sigma", "loss_weight", "shift", "unshift"]

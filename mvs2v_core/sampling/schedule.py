"""Shifted rectified-flow noise schedules.

Conventions (Wan / rectified flow): ``x_sigma = (1 - sigma) * x0 + sigma * noise``; sigma runs from 1 (pure
noise) to 0 (data). A schedule is a 1-D tensor of ``steps + 1`` sigmas, strictly decreasing, whose last entry
is the sigma the sampler ends at (0 for a full denoise). The model is evaluated at the first ``steps`` of them.

Wan's "shift" warps a uniform grid towards the noisy end: ``shift(s) = k * s / (1 + (k - 1) * s)``. Larger
``k`` spends more steps at high noise, which large latents (video) need.

Reproducing other implementations: Wan's own FlowUniPC scheduler starts the unshifted grid at 0.999 (pass
``sigma_max=0.999``); diffusers' ``UniPCMultistepScheduler(use_flow_sigmas=True)`` starts at 1 and ends the
grid at 1/1000 before appending 0 — use its sigmas directly through ``sample(..., sigmas=...)`` if bit-level
agreement with it is wanted.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import MVS2VError

__all__ = ["shift_sigma", "flow_sigmas", "validate_sigmas"]


def _check_shift(shift: float) -> float:
    if isinstance(shift, bool) or not isinstance(shift, (int, float)) or not math.isfinite(shift) or shift <= 0:
        raise MVS2VError(
            f"shift must be a finite number > 0, got {shift!r}. Use e.g. shift=5.0 for 720p Wan video, "
            "3.0 for 480p, or 1.0 for no shift."
        )
    return float(shift)


def shift_sigma(sigma: Tensor | float, shift: float) -> Tensor | float:
    """Apply Wan's timestep shift ``k * s / (1 + (k - 1) * s)``.

    Args:
        sigma: unshifted sigma(s) in [0, 1], any shape (or a Python float).
        shift: the shift factor ``k`` > 0; 1 is the identity.

    Returns:
        Shifted sigma(s), same shape/type as ``sigma``. Fixes 0 and 1; monotonic increasing in ``sigma``.
    """
    k = _check_shift(shift)
    return k * sigma / (1.0 + (k - 1.0) * sigma)


def flow_sigmas(
    steps: int,
    shift: float,
    sigma_max: float = 1.0,
    sigma_min: float = 0.0,
    denoise: float = 1.0,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Build a shifted flow-matching schedule.

    The unshifted grid is ``linspace(start, sigma_min, steps + 1)`` with
    ``start = sigma_min + denoise * (sigma_max - sigma_min)``; it is shifted with :func:`shift_sigma`, and the
    last entry is set to exactly 0 (the sampler always ends on clean data).

    Args:
        steps: number of solver steps (model evaluations for Euler / UniPC), >= 1.
        shift: Wan's shift factor (> 0).
        sigma_max: unshifted starting sigma for a full denoise, in (0, 1].
        sigma_min: unshifted sigma of the last *evaluated* grid point's end, in [0, sigma_max).
        denoise: strength in (0, 1]; < 1 starts part-way down the unshifted grid (img2vid-style refinement of
            an existing latent). The sampler then needs ``init_latent``.
        dtype: dtype of the returned tensor (float64 by default so step sizes are exact).

    Returns:
        Tensor[steps + 1], strictly decreasing, ``out[-1] == 0``.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise MVS2VError(f"steps must be an integer >= 1, got {steps!r}. Use e.g. steps=30 (Wan's default is 40-50).")
    k = _check_shift(shift)
    if not (0.0 < sigma_max <= 1.0):
        raise MVS2VError(f"sigma_max must be in (0, 1], got {sigma_max!r}. Use 1.0 (or 0.999 to match Wan).")
    if not (0.0 <= sigma_min < sigma_max):
        raise MVS2VError(f"sigma_min must be in [0, sigma_max), got {sigma_min!r}. Use 0.0.")
    if isinstance(denoise, bool) or not isinstance(denoise, (int, float)) or not (0.0 < denoise <= 1.0):
        raise MVS2VError(f"denoise must be in (0, 1], got {denoise!r}. Use 1.0 to start from pure noise.")
    start = sigma_min + float(denoise) * (sigma_max - sigma_min)
    grid = torch.linspace(start, sigma_min, steps + 1, dtype=torch.float64)
    sig = shift_sigma(grid, k)
    sig[-1] = 0.0  # always finish on clean data, whatever sigma_min was
    return sig.to(dtype)


def validate_sigmas(sigmas: Tensor | list[float]) -> Tensor:
    """Check a user-supplied schedule and return it as a float64 CPU tensor.

    Args:
        sigmas: sequence of ``steps + 1`` values in [0, 1], strictly decreasing.

    Returns:
        Tensor[steps + 1] (float64, CPU).
    """
    s = torch.as_tensor(sigmas, dtype=torch.float64).detach().cpu().flatten()
    if s.numel() < 2:
        raise MVS2VError(
            f"sigmas must hold at least 2 values (steps + 1), got {s.numel()}. "
            "Pass e.g. flow_sigmas(steps, shift), which returns steps + 1 values ending at 0."
        )
    if not torch.isfinite(s).all() or (s < 0).any() or (s > 1).any():
        raise MVS2VError("sigmas must be finite and within [0, 1] (1 = pure noise, 0 = clean). Fix the schedule.")
    if not (s[1:] < s[:-1]).all():
        raise MVS2VError(
            "sigmas must be strictly decreasing (from noise towards 0). Remove repeated or increasing entries."
        )
    return s

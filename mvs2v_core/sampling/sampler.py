"""The sampling loop: noise + guidance + schedule + solver -> clean latent.

Design notes:

* Deterministic: no randomness inside :func:`sample`; the starting noise is an argument. Use
  :func:`make_noise` for seed-stable noise (drawn on CPU, then moved, so a seed gives the same noise on any
  device).
* Reference latents are **not** part of ``x``. They travel in the guidance conditions (``cond`` dicts) and
  are handed to the model unchanged at every step; the solver only ever integrates ``x``. This is how
  "reference latents are kept clean at every step" is satisfied: they are never noised and never updated.
  Whatever timestep the model uses for reference tokens (e.g. 0) is the model wrapper's business; the sampler
  only passes the video timestep ``t = sigma * 1000``.
* The latent is integrated in float32 (float64 if the noise is float64) whatever the noise dtype, so
  low-precision models do not accumulate rounding across steps; the model wrapper casts as it needs.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from ..errors import MVS2VError
from .guidance import Guidance, ModelFn, guided_velocity
from .schedule import flow_sigmas, validate_sigmas
from .solvers import SOLVERS, Solver, get_solver

__all__ = ["sample", "make_noise", "StepCallback", "NUM_TRAIN_TIMESTEPS"]

NUM_TRAIN_TIMESTEPS = 1000
"""The model's timestep is ``sigma * NUM_TRAIN_TIMESTEPS`` (a float)."""

StepCallback = Callable[[dict[str, Any]], None]
"""Receives ``{"step", "total_steps", "sigma", "sigma_next", "x", "denoised"}`` after every step."""


def make_noise(
    shape: Sequence[int],
    seed: int,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Standard-normal noise that depends only on ``(shape, seed)``.

    Drawn in float32 with a CPU ``torch.Generator`` and then moved/cast, so the same seed gives the same
    values on CPU and GPU and for any target dtype (up to the final cast).

    Returns:
        Tensor[*shape] on ``device`` with ``dtype``.
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise MVS2VError(f"seed must be an integer, got {seed!r}.")
    if seed < 0 or seed >= 2**64:
        raise MVS2VError(f"seed must be in [0, 2**64), got {seed}. Pick a non-negative integer seed.")
    gen = torch.Generator(device="cpu")
    gen.manual_seed(seed)
    noise = torch.randn(tuple(int(s) for s in shape), generator=gen, dtype=torch.float32, device="cpu")
    return noise.to(device=device if device is not None else "cpu", dtype=dtype)


def sample(
    model_fn: ModelFn,
    noise: Tensor,
    guidance: Guidance,
    steps: int,
    shift: float,
    solver: str | Solver = "unipc",
    callback: StepCallback | None = None,
    sigmas: Tensor | Sequence[float] | None = None,
    *,
    denoise: float = 1.0,
    init_latent: Tensor | None = None,
    sigma_max: float = 1.0,
) -> Tensor:
    """Integrate the guided flow ODE from noise to data.

    Args:
        model_fn: ``(x: Tensor[B, ...], t: Tensor[B] float32, cond) -> velocity Tensor[B, ...]``.
        noise: Tensor[B, ...] starting noise (e.g. Wan latents Tensor[B, 16, F, H, W]).
        guidance: a :class:`~mvs2v_core.sampling.guidance.Guidance` holding the pass conditions and scales.
        steps: number of solver steps (>= 1).
        shift: Wan's schedule shift (> 0).
        solver: ``"euler"``, ``"heun"``, ``"unipc"``, or a :class:`Solver` instance.
        callback: called after each step with ``{"step": i, "total_steps": steps, "sigma": sigma_i,
            "sigma_next": sigma_{i+1}, "x": latent after the step, "denoised": x0 prediction of the step}``.
            Its return value is ignored; raising from it aborts sampling.
        sigmas: an explicit schedule Tensor[steps + 1] (strictly decreasing, in [0, 1]); overrides
            ``shift``/``denoise``/``sigma_max``. Its length must be ``steps + 1``.
        denoise: strength in (0, 1]; < 1 starts part-way (needs ``init_latent``).
        init_latent: Tensor[B, ...] clean latent to refine when the schedule does not start at sigma = 1:
            the start is ``(1 - sigma_0) * init_latent + sigma_0 * noise``.
        sigma_max: unshifted start of the schedule (1.0; 0.999 reproduces Wan's own scheduler).

    Returns:
        Tensor[B, ...] the final latent (x0 when the schedule ends at 0), float32 (float64 for float64 noise).
    """
    _check_inputs(model_fn, noise, guidance, steps, callback)
    sched = _schedule(steps, shift, sigmas, sigma_max, denoise)
    solv = _solver(solver)
    solv.reset(sched)
    work_dtype = torch.float64 if noise.dtype == torch.float64 else torch.float32
    x = _start(noise.to(work_dtype), float(sched[0]), init_latent)
    batch = x.shape[0]

    def velocity_fn(xc: Tensor, sigma: float) -> Tensor:
        # float32 timestep: bf16 cannot represent e.g. 999.0 exactly
        t = torch.full((batch,), sigma * NUM_TRAIN_TIMESTEPS, dtype=torch.float32, device=xc.device)
        v = guided_velocity(model_fn, guidance, xc, t)
        if v.shape != xc.shape:
            raise MVS2VError(
                f"The model returned shape {tuple(v.shape)} for an input of shape {tuple(xc.shape)}; it must "
                "return a velocity with the latent's shape."
            )
        return v.to(work_dtype)

    total = solv.steps
    for i in range(total):
        out = solv.step(i, x, velocity_fn)
        x = out.x
        if callback is not None:
            callback({"step": i, "total_steps": total, "sigma": solv.sigmas[i], "sigma_next": solv.sigmas[i + 1],
                      "x": x, "denoised": out.denoised})
    # one host sync at the end, not per step
    if x.numel() and not bool(torch.isfinite(x).all()):
        raise MVS2VError(
            "Sampling produced non-finite values (NaN/inf). Check the model's dtype (try bf16/fp32 instead of "
            "fp16) and the guidance scales."
        )
    return x


def _check_inputs(model_fn: ModelFn, noise: Tensor, guidance: Guidance, steps: int,
                  callback: StepCallback | None) -> None:
    if not callable(model_fn):
        raise MVS2VError("model_fn must be callable as model_fn(x, t, cond) -> velocity.")
    if not isinstance(noise, Tensor) or noise.dim() < 1 or not noise.is_floating_point():
        raise MVS2VError("noise must be a floating-point Tensor[B, ...]; create it with make_noise(shape, seed).")
    if not isinstance(guidance, Guidance):
        raise MVS2VError(
            f"guidance must be a Guidance object (NoGuidance, CFGGuidance, PhantomGuidance), got "
            f"{type(guidance).__name__}."
        )
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise MVS2VError(f"steps must be an integer >= 1, got {steps!r}. Use e.g. steps=30.")
    if callback is not None and not callable(callback):
        raise MVS2VError("callback must be callable (it receives a dict per step) or None.")


def _schedule(steps: int, shift: float, sigmas: Tensor | Sequence[float] | None, sigma_max: float,
              denoise: float) -> Tensor:
    """The sigma schedule ``[steps + 1]``: Wan's shifted one, or the given one checked."""
    if sigmas is None:
        return flow_sigmas(steps, shift, sigma_max=sigma_max, denoise=denoise)
    sched = validate_sigmas(sigmas)
    if sched.numel() != steps + 1:
        raise MVS2VError(
            f"sigmas has {sched.numel()} values but steps={steps}; a schedule needs steps + 1 values. "
            f"Pass steps={sched.numel() - 1} or a matching schedule."
        )
    return sched


def _solver(solver: str | Solver) -> Solver:
    if isinstance(solver, Solver):
        return solver
    if isinstance(solver, str):
        return get_solver(solver)
    raise MVS2VError(f"solver must be a name ({', '.join(sorted(SOLVERS))}) or a Solver instance.")


def _start(noise: Tensor, sigma0: float, init_latent: Tensor | None) -> Tensor:
    """The latent at the schedule's first sigma: pure noise, or noise mixed into ``init_latent``."""
    if init_latent is not None:
        if init_latent.shape != noise.shape:
            raise MVS2VError(
                f"init_latent shape {tuple(init_latent.shape)} does not match noise shape {tuple(noise.shape)}."
            )
        return (1.0 - sigma0) * init_latent.to(device=noise.device, dtype=noise.dtype) + sigma0 * noise
    if sigma0 < 1.0 - 1e-3:
        # starting part-way from pure noise would feed the model off-distribution inputs
        raise MVS2VError(
            f"The schedule starts at sigma={sigma0:.4f} < 1 (denoise < 1 or custom sigmas) but no init_latent "
            "was given. Pass init_latent=<the latent to refine> or use denoise=1.0."
        )
    return noise

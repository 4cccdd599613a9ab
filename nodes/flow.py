"""mvs2v_core's flow solvers and Phantom's three-pass guidance inside ComfyUI's sampling machinery."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..mvs2v_core.errors import MVS2VError
from ..mvs2v_core.sampling.guidance import phantom_weights
from ..mvs2v_core.sampling.solvers import Solver, get_solver
from . import compat


class ThreePassGuider(compat.CFGGuider):
    """Phantom's guidance ``a + ref_scale (b - a) + text_scale (c - b)`` as a ComfyUI GUIDER.

    a = no references + negative text, b = references + negative text, c = references + prompt.
    The three passes go through ``calc_cond_batch``, so ComfyUI batches them, and every model patch,
    hook and memory rule applies. A pass with weight 0 is skipped.
    """

    def set_conds(self, positive: list, negative: list) -> None:  # type: ignore[override]
        self.inner_set_conds({
            "positive": compat.with_reference_gate(positive, 1.0),
            "negative": compat.with_reference_gate(negative, 1.0),
            "negative_no_refs": compat.without_references(negative),
        })

    def set_scales(self, ref_scale: float, text_scale: float) -> None:
        self.weights = phantom_weights(ref_scale, text_scale)
        self.cfg = text_scale  # what other ComfyUI code reads as "the cfg" of a guider

    def predict_noise(self, x: torch.Tensor, timestep: torch.Tensor, model_options: dict = {}, seed: Any = None):  # noqa: B006
        names = ("negative_no_refs", "negative", "positive")
        conds = [self.conds.get(n) if w != 0.0 else None for n, w in zip(names, self.weights)]
        out = compat.calc_cond_batch(self.inner_model, conds, x, timestep, model_options)
        result = None
        for w, cond, pred in zip(self.weights, conds, out):
            if cond is None:
                continue
            result = w * pred if result is None else result + w * pred
        return result


def flow_solver_function(solver_name: str, trajectory: Solver | None = None, first_step: int = 0) -> Callable:
    """A k-diffusion style sampler function running an mvs2v_core solver on ComfyUI's denoiser.

    ComfyUI's model returns the denoised latent ``x0``; the flow velocity is ``(x - x0) / sigma``.

    With ``trajectory`` (a solver already reset on the whole schedule) the function runs that solver's
    steps ``first_step, first_step + 1, ...`` on the slice of the schedule it is given and keeps its
    state. The Flow Sampler samples the two Wan2.2 A14B experts one after the other this way, so they
    continue one trajectory: UniPC keeps its history and corrector across the switch, as in Wan's own
    sampler, where the model changes inside one scheduler loop.
    """
    get_solver(solver_name)  # validates the name now, not at the first step

    def sample(model: Any, x: torch.Tensor, sigmas: torch.Tensor, extra_args: dict | None = None,
               callback: Callable | None = None, disable: Any = None) -> torch.Tensor:
        extra_args = extra_args or {}
        sched = sigmas.detach().to("cpu", torch.float64)
        if float(sched.max()) > 1.0 + 1e-6:
            raise MVS2VError(
                f"the schedule goes up to sigma {float(sched.max()):.3g}: the MV-S2V flow solvers need a rectified-flow "
                "model (Wan) whose sigmas lie in [0, 1]"
            )
        if trajectory is None:
            solver, start = get_solver(solver_name), 0
            solver.reset(sched.clamp(0.0, 1.0))
        else:
            solver, start = trajectory, first_step
            expected = torch.tensor(solver.sigmas[start : start + len(sched)], dtype=torch.float64)
            if expected.shape != sched.shape or not torch.allclose(expected, sched.clamp(0.0, 1.0), rtol=0, atol=1e-7):
                raise MVS2VError("internal error: a sampling stage's sigmas are not its slice of the whole schedule")
        s_in = x.new_ones([x.shape[0]])

        def velocity(xc: torch.Tensor, sigma: float) -> torch.Tensor:
            denoised = model(xc, sigma * s_in, **extra_args)
            return (xc - denoised) / sigma

        for i in range(len(sched) - 1):
            compat.throw_if_interrupted()
            step = solver.step(start + i, x, velocity)
            x = step.x
            if callback is not None:
                callback({"i": i, "denoised": step.denoised, "x": x, "sigma": sigmas[i], "sigma_hat": sigmas[i]})
        return x

    return sample

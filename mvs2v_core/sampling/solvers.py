"""ODE solvers for rectified-flow sampling: Euler, Heun and flow UniPC (UniPC-bh2, data prediction).

All solvers share one interface so the sampler loop treats them uniformly::

    solver = get_solver("unipc")
    solver.reset(sigmas)                       # Tensor[steps + 1], strictly decreasing
    for i in range(steps):
        out = solver.step(i, x, velocity_fn)   # velocity_fn(x, sigma) -> v, guidance already applied
        x = out.x                              # latent at sigmas[i + 1]

Conventions: ``x_sigma = (1 - sigma) * x0 + sigma * noise``, the model predicts ``v = noise - x0`` so the ODE is
``dx/dsigma = v`` and the denoised estimate is ``x0 = x - sigma * v``.

UniPC here is written from the UniPC paper (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework
for Fast Sampling of Diffusion Models") with the flow parameterisation ``alpha = 1 - sigma``,
``lambda = log(alpha / sigma)``. It is configured like Wan's FlowUniPCMultistepScheduler: data (x0) prediction,
B(h) = e^{-h} - 1 ("bh2"), order 2, lower order on the final step, UniC corrector after every model evaluation
except that no correction follows the last step (there is no model evaluation at its end).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, ClassVar

import torch
from torch import Tensor

from ..errors import MVS2VError
from .schedule import validate_sigmas

__all__ = [
    "VelocityFn",
    "StepOutput",
    "Solver",
    "EulerSolver",
    "HeunSolver",
    "UniPCSolver",
    "SOLVERS",
    "get_solver",
]

VelocityFn = Callable[[Tensor, float], Tensor]
"""``velocity_fn(x: Tensor[B, ...], sigma: float) -> Tensor[B, ...]``: guided velocity ``noise - x0``."""


@dataclass
class StepOutput:
    """Result of one solver step.

    Attributes:
        x: Tensor[B, ...], the latent at ``sigmas[i + 1]``.
        denoised: Tensor[B, ...], the x0 prediction from the step's first model evaluation (for previews).
    """

    x: Tensor
    denoised: Tensor


class Solver(ABC):
    """A (possibly multistep) solver of ``dx/dsigma = v(x, sigma)`` along a fixed sigma schedule."""

    name: ClassVar[str]

    def __init__(self) -> None:
        self.sigmas: list[float] = []

    def reset(self, sigmas: Tensor | list[float]) -> None:
        """Start a new trajectory on ``sigmas`` (Tensor[steps + 1], strictly decreasing); clears any history."""
        self.sigmas = validate_sigmas(sigmas).tolist()  # Python floats: step coefficients computed in float64

    @property
    def steps(self) -> int:
        return len(self.sigmas) - 1

    def num_evaluations(self) -> int:
        """Number of ``velocity_fn`` calls a full trajectory on the current schedule makes."""
        return self.steps

    def _check_index(self, i: int) -> None:
        if not self.sigmas:
            raise MVS2VError("The solver has no schedule: call solver.reset(sigmas) before solver.step(...).")
        if not 0 <= i < self.steps:
            raise MVS2VError(f"Step index {i} is out of range for a {self.steps}-step schedule (0..{self.steps - 1}).")

    @abstractmethod
    def step(self, i: int, x: Tensor, velocity_fn: VelocityFn) -> StepOutput:
        """Advance ``x`` (Tensor[B, ...], at ``sigmas[i]``) to ``sigmas[i + 1]``."""


class EulerSolver(Solver):
    """First-order Euler: ``x' = x + (sigma' - sigma) * v``. Exact for straight (rectified) trajectories."""

    name = "euler"

    def step(self, i: int, x: Tensor, velocity_fn: VelocityFn) -> StepOutput:
        self._check_index(i)
        s, s_next = self.sigmas[i], self.sigmas[i + 1]
        v = velocity_fn(x, s)
        return StepOutput(x=x + (s_next - s) * v, denoised=x - s * v)


class HeunSolver(Solver):
    """Second-order Heun (explicit trapezoid). Falls back to Euler on a step ending at sigma = 0, where the
    model would be evaluated on clean data (and the x0 prediction there is x itself anyway)."""

    name = "heun"

    def num_evaluations(self) -> int:
        return 2 * self.steps - (1 if self.sigmas[-1] == 0.0 else 0)

    def step(self, i: int, x: Tensor, velocity_fn: VelocityFn) -> StepOutput:
        self._check_index(i)
        s, s_next = self.sigmas[i], self.sigmas[i + 1]
        dt = s_next - s
        v = velocity_fn(x, s)
        denoised = x - s * v
        x_euler = x + dt * v
        if s_next == 0.0:
            return StepOutput(x=x_euler, denoised=denoised)
        v_next = velocity_fn(x_euler, s_next)
        return StepOutput(x=x + dt * 0.5 * (v + v_next), denoised=denoised)


# lambda = log(alpha / sigma) is -inf at sigma = 1; coefficients use sigma capped just below 1 (the same
# value diffusers subtracts from its first sigma). The effect on the trajectory is O(1e-6).
_SIGMA_CAP = 1.0 - 1e-6


def _alpha_sigma_lambda(sigma: float) -> tuple[float, float, float]:
    """(alpha, sigma, lambda) for the flow parameterisation; lambda = +inf at sigma = 0."""
    s = min(sigma, _SIGMA_CAP)
    a = 1.0 - s
    lam = math.inf if s == 0.0 else math.log(a) - math.log(s)
    return a, s, lam


def _phi_coefficients(z: float, order: int) -> list[float]:
    """``[k! * z * phi_{k+1}(z) for k = 1..order]`` where ``phi_1(z) = (e^z - 1) / z`` and
    ``phi_{k+1}(z) = (phi_k(z) - 1/k!) / z``; these are the Taylor weights of the exponential integrator.

    Computed by the equivalent recursion ``psi_1 = phi_1 - 1``, ``psi_{k+1} = psi_k / z - 1/(k+1)!`` with
    ``psi_k = z * phi_{k+1}(z)``; valid for z = -inf (the step to sigma = 0).
    """
    psi = math.expm1(z) / z - 1.0
    out: list[float] = []
    fact = 1.0
    for k in range(1, order + 1):
        out.append(fact * psi)
        fact *= k + 1
        psi = psi / z - 1.0 / fact
    return out


class UniPCSolver(Solver):
    """Flow UniPC (UniP-p predictor + UniC-p corrector), data prediction, B(h) variant "bh1" or "bh2".

    Per step i (model evaluated once at ``x_i``, sigma_i):

    1. ``m_i = x_i - sigma_i * v_i`` (x0 prediction).
    2. If i > 0, UniC: recompute the step ``i-1 -> i`` from the stored pre-step latent using ``m_i`` as an
       extra node, giving a corrected ``x_i`` (no extra model call; the model output at the uncorrected point
       is reused, as in the paper).
    3. UniP: ``x_{i+1}`` from ``x_i`` using ``m_i`` and up to ``order - 1`` earlier ``m``'s. The order is
       warmed up (1 on the first step) and lowered to 1 on the final step.

    With ``h = lambda_t - lambda_s``, ``z = -h`` and ``B(h) = e^{z} - 1`` (bh2) the update reads
    ``x_t = (sigma_t / sigma_s) x_s - alpha_t (e^{z} - 1) m_s - alpha_t B(h) sum_k rho_k D_k`` where
    ``D_k = (m_{s_k} - m_s) / r_k``, ``r_k = (lambda_{s_k} - lambda_s) / h`` and the rho's solve the
    Vandermonde system ``sum_k rho_k r_k^{j-1} = j! z phi_{j+1}(z) / B(h)``. The paper's choice rho = 1/2 is
    used where the system has a single unknown in the predictor (order 2) or none in the corrector (order 1).
    """

    name = "unipc"

    def __init__(self, order: int = 2, variant: str = "bh2") -> None:
        super().__init__()
        if isinstance(order, bool) or not isinstance(order, int) or not 1 <= order <= 3:
            raise MVS2VError(f"UniPC order must be 1, 2 or 3, got {order!r}. Wan uses order=2.")
        if variant not in ("bh1", "bh2"):
            raise MVS2VError(f"UniPC variant must be 'bh1' or 'bh2', got {variant!r}. Wan uses 'bh2'.")
        self.order = order
        self.variant = variant
        self._history: list[tuple[int, Tensor]] = []  # (step index, x0 prediction), newest last
        self._last_x: Tensor | None = None  # latent the previous predictor started from
        self._last_order = 0

    def reset(self, sigmas: Tensor | list[float]) -> None:
        super().reset(sigmas)
        self._history = []
        self._last_x = None
        self._last_order = 0

    def _b_of_h(self, z: float) -> float:
        return math.expm1(z) if self.variant == "bh2" else z

    def _update(
        self,
        x_s: Tensor,
        s_idx: int,
        t_idx: int,
        m_s: Tensor,
        older: list[tuple[int, Tensor]],
        new_node: Tensor | None,
    ) -> Tensor:
        """One UniPC update ``sigmas[s_idx] -> sigmas[t_idx]``.

        Args:
            x_s: Tensor[B, ...], latent at ``s_idx``.
            m_s: Tensor[B, ...], x0 prediction at ``s_idx``.
            older: earlier ``(index, m)`` nodes, newest first (``order - 1`` of them).
            new_node: for the corrector, the x0 prediction at ``t_idx`` (its r is 1); None for the predictor.
        """
        alpha_t, sigma_t, lam_t = _alpha_sigma_lambda(self.sigmas[t_idx])
        _, sigma_s, lam_s = _alpha_sigma_lambda(self.sigmas[s_idx])
        h = lam_t - lam_s
        z = -h
        e_z_m1 = math.expm1(z)
        x_t = (sigma_t / sigma_s) * x_s - (alpha_t * e_z_m1) * m_s
        n_unknown = len(older) + (1 if new_node is not None else 0)
        if n_unknown == 0:
            return x_t  # first-order (DDIM-like) step
        b_h = self._b_of_h(z)
        rs = [(_alpha_sigma_lambda(self.sigmas[k])[2] - lam_s) / h for k, _ in older]
        diffs = [(m - m_s) / r for (_, m), r in zip(older, rs)]
        if new_node is not None:
            rs.append(1.0)
            diffs.append(new_node - m_s)
        if new_node is None and n_unknown == 1:
            rhos = [0.5]  # UniP-2: the paper's fixed choice
        elif new_node is not None and n_unknown == 1:
            rhos = [0.5]  # UniC-1
        else:
            g = _phi_coefficients(z, n_unknown)
            rhs = torch.tensor([gj / b_h for gj in g], dtype=torch.float64)
            vander = torch.tensor([[r**j for r in rs] for j in range(n_unknown)], dtype=torch.float64)
            rhos = torch.linalg.solve(vander, rhs).tolist()
        corr = rhos[0] * diffs[0]
        for rho, d in zip(rhos[1:], diffs[1:]):
            corr = corr + rho * d
        return x_t - (alpha_t * b_h) * corr

    def step(self, i: int, x: Tensor, velocity_fn: VelocityFn) -> StepOutput:
        self._check_index(i)
        if i > 0 and (not self._history or self._history[-1][0] != i - 1):
            raise MVS2VError("UniPC steps must be taken in order 0, 1, 2, ... after solver.reset(sigmas).")
        sigma = self.sigmas[i]
        v = velocity_fn(x, sigma)
        m = x - sigma * v
        if self._last_x is not None:
            # UniC: redo step i-1 -> i with m_i as an extra node (order of that predictor step)
            prev_idx, m_prev = self._history[-1]
            older = list(reversed(self._history[-self._last_order : -1])) if self._last_order > 1 else []
            x = self._update(self._last_x, prev_idx, i, m_prev, older, new_node=m)
        self._history.append((i, m))
        self._history = self._history[-self.order :]
        # warm-up (few nodes yet) and lower order on the final step (sigma_next may be 0, lambda = inf)
        order = min(self.order, len(self._history), self.steps - i)
        self._last_x = x
        self._last_order = order
        older = list(reversed(self._history[-order:-1])) if order > 1 else []
        x_next = self._update(x, i, i + 1, m, older, new_node=None)
        return StepOutput(x=x_next, denoised=m)


SOLVERS: dict[str, type[Solver]] = {cls.name: cls for cls in (EulerSolver, HeunSolver, UniPCSolver)}


def get_solver(name: str, **kwargs: object) -> Solver:
    """Return a fresh solver instance by name (``"euler"``, ``"heun"`` or ``"unipc"``).

    ``kwargs`` go to the solver's constructor (UniPC: ``order``, ``variant``).
    """
    key = name.lower().strip() if isinstance(name, str) else name
    if key not in SOLVERS:
        raise MVS2VError(f"Unknown solver {name!r}. Choose one of: {', '.join(sorted(SOLVERS))}.")
    try:
        return SOLVERS[key](**kwargs)  # type: ignore[arg-type]
    except TypeError as e:
        raise MVS2VError(f"Bad options for solver {key!r}: {e}. Check the option names.") from e

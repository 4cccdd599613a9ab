"""Classifier-free guidance: plain CFG and Phantom's three-pass reference/text guidance.

A guidance object holds the :data:`Condition` of every pass the model needs and the linear weights that
combine their velocity predictions. :func:`guided_velocity` runs the passes, batching compatible ones into one
model call (optionally chunked by ``max_batch_passes`` to bound memory), and combines the results.

Passes whose weight is exactly 0 are never run, so degenerate scales cost fewer model calls:

* CFG ``scale == 1`` → only the conditional pass; ``scale == 0`` → only the unconditional pass.
* Phantom, ``out = a + s_ref (b - a) + s_txt (c - b) = (1 - s_ref) a + (s_ref - s_txt) b + s_txt c``:
  ``s_ref == 1`` drops pass a (text-only CFG with references), ``s_ref == s_txt`` drops pass b (joint CFG),
  ``s_txt == 0`` drops pass c; ``s_ref == s_txt == 1`` runs c alone.

Model function contract: ``model_fn(x: Tensor[B, ...], t: Tensor[B], cond: Condition) -> Tensor[B, ...]``
returning the velocity ``noise - x0``. Every tensor in ``cond`` has its batch on dim 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor

from ..errors import MVS2VError

__all__ = [
    "Condition",
    "ModelFn",
    "Guidance",
    "NoGuidance",
    "CFGGuidance",
    "PhantomGuidance",
    "guided_velocity",
    "run_passes",
]

Condition = dict[str, Any]
"""Per-pass model conditioning: ``{name: Tensor[B, ...] | None | other}``; tensors carry batch on dim 0.
Non-tensor, non-None values (flags, ints) are passed through and must be equal for passes to be batched."""

ModelFn = Callable[[Tensor, Tensor, Condition], Tensor]


def _check_scale(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise MVS2VError(
            f"{name} must be a finite number >= 0, got {value!r}. Typical values: 5.0 for CFG, "
            "ref_scale 5-6 and text_scale 7.5-10 for three-pass guidance; 1.0 disables guidance."
        )
    return float(value)


def _check_max_batch(value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise MVS2VError(
            f"max_batch_passes must be None (all passes in one model call) or an integer >= 1, got {value!r}."
        )
    return value


def _check_condition(name: str, cond: Any) -> Condition:
    if not isinstance(cond, Mapping):
        raise MVS2VError(f"{name} must be a dict of model inputs (str -> Tensor | None), got {type(cond).__name__}.")
    return dict(cond)


@dataclass
class Guidance:
    """Base: a set of passes and the weights that combine their predictions linearly.

    Subclasses define :meth:`terms`. ``max_batch_passes``: at most this many passes share one model call
    (None = as many as are batchable).
    """

    max_batch_passes: int | None = field(default=None, kw_only=True)
    # Learned under max_batch_passes=None: the pass count per call that fitted in memory.
    auto_batch_passes: int | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.max_batch_passes = _check_max_batch(self.max_batch_passes)

    def terms(self) -> list[tuple[float, Condition]]:
        """``[(weight, condition), ...]`` for every pass with a nonzero weight; weights sum to 1."""
        raise NotImplementedError

    def num_passes(self) -> int:
        """Model passes per velocity evaluation (not calls: batched passes share a call)."""
        return len(self.terms())


@dataclass
class NoGuidance(Guidance):
    """A single conditional pass, no guidance."""

    cond: Condition = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.cond = _check_condition("cond", self.cond)

    def terms(self) -> list[tuple[float, Condition]]:
        return [(1.0, self.cond)]


@dataclass
class CFGGuidance(Guidance):
    """Plain classifier-free guidance: ``uncond + scale * (cond - uncond)``.

    Attributes:
        cond: the conditional pass (prompt, references...).
        uncond: the unconditional pass (negative prompt...); may be None only when ``scale == 1``.
        scale: guidance scale >= 0; 1 runs only ``cond``, 0 runs only ``uncond``.
    """

    cond: Condition = field(default_factory=dict)
    uncond: Condition | None = None
    scale: float = 5.0

    def __post_init__(self) -> None:
        super().__post_init__()
        self.cond = _check_condition("cond", self.cond)
        self.scale = _check_scale("scale", self.scale)
        if self.uncond is None:
            if self.scale != 1.0:
                raise MVS2VError(
                    f"CFG scale {self.scale} needs an unconditional pass: pass uncond=... (e.g. the negative "
                    "prompt's embeddings) or set scale=1.0."
                )
        else:
            self.uncond = _check_condition("uncond", self.uncond)

    def terms(self) -> list[tuple[float, Condition]]:
        out = []
        if self.scale != 1.0:
            assert self.uncond is not None
            out.append((1.0 - self.scale, self.uncond))
        if self.scale != 0.0:
            out.append((self.scale, self.cond))
        return out


def phantom_weights(ref_scale: float, text_scale: float) -> tuple[float, float, float]:
    """Weights of Phantom's passes (no refs + negative, refs + negative, refs + prompt).

    ``a + ref_scale*(b - a) + text_scale*(c - b)`` = ``(1 - ref_scale)*a + (ref_scale - text_scale)*b
    + text_scale*c``: the weights always sum to 1.
    """
    return (1.0 - ref_scale, ref_scale - text_scale, text_scale)


@dataclass
class PhantomGuidance(Guidance):
    """Phantom-style three-pass guidance with separate reference and text scales.

    ``out = a + ref_scale * (b - a) + text_scale * (c - b)`` with passes

    * ``no_ref_neg`` (a): no references, negative text;
    * ``ref_neg`` (b): references, negative text;
    * ``ref_text`` (c): references, prompt.

    Passes with a zero weight are skipped (see module docstring) and may then be None.
    """

    ref_text: Condition = field(default_factory=dict)
    ref_neg: Condition | None = None
    no_ref_neg: Condition | None = None
    ref_scale: float = 5.0
    text_scale: float = 7.5

    def __post_init__(self) -> None:
        super().__post_init__()
        self.ref_scale = _check_scale("ref_scale", self.ref_scale)
        self.text_scale = _check_scale("text_scale", self.text_scale)
        names = ("no_ref_neg", "ref_neg", "ref_text")
        for name, w in zip(names, self.weights()):
            value = getattr(self, name)
            if value is None:
                if w != 0.0:
                    raise MVS2VError(
                        f"Three-pass guidance with ref_scale={self.ref_scale}, text_scale={self.text_scale} "
                        f"needs the {name!r} pass: provide its condition dict."
                    )
            else:
                setattr(self, name, _check_condition(name, value))

    def weights(self) -> tuple[float, float, float]:
        """Weights of passes (a, b, c); see :func:`phantom_weights`."""
        return phantom_weights(self.ref_scale, self.text_scale)

    def terms(self) -> list[tuple[float, Condition]]:
        conds = (self.no_ref_neg, self.ref_neg, self.ref_text)
        return [(w, c) for w, c in zip(self.weights(), conds) if w != 0.0]  # type: ignore[misc]


# --------------------------------------------------------------------------------------------------------
# running passes


def _signature(cond: Condition, batch: int) -> tuple | None:
    """Hashable key: passes with equal keys can share a model call; None = cannot be batched at all."""
    key = []
    for name in sorted(cond):
        v = cond[name]
        if v is None:
            key.append((name, None))
        elif isinstance(v, Tensor):
            if v.dim() == 0 or v.shape[0] != batch:
                return None  # batch dim does not line up with x: concatenation would mis-split
            key.append((name, "T", tuple(v.shape[1:]), v.dtype, v.device))
        else:
            try:
                hash(v)
            except TypeError:
                return None
            key.append((name, "V", v))
    return tuple(key)


def _cat_conditions(conds: Sequence[Condition]) -> Condition:
    first = conds[0]
    out: Condition = {}
    for name, v in first.items():
        out[name] = torch.cat([c[name] for c in conds], dim=0) if isinstance(v, Tensor) else v
    return out


def run_passes(
    model_fn: ModelFn,
    x: Tensor,
    t: Tensor,
    conds: Sequence[Condition],
    max_batch_passes: int | None = None,
) -> list[Tensor]:
    """Evaluate ``model_fn`` for every condition, batching compatible passes.

    Args:
        model_fn: ``(x, t, cond) -> v``.
        x: Tensor[B, ...], the current latent (shared by all passes).
        t: Tensor[B], timesteps.
        conds: one :data:`Condition` per pass.
        max_batch_passes: most passes per model call (None = unbounded).

    Returns:
        One Tensor[B, ...] prediction per pass, in the order of ``conds``.
    """
    batch = x.shape[0]
    groups: dict[Any, list[int]] = {}
    singles: list[list[int]] = []
    for idx, cond in enumerate(conds):
        sig = _signature(cond, batch)
        if sig is None:
            singles.append([idx])
        else:
            groups.setdefault(sig, []).append(idx)
    chunk = max_batch_passes or len(conds)
    calls: list[list[int]] = []
    for members in groups.values():
        calls.extend(members[k : k + chunk] for k in range(0, len(members), chunk))
    calls.extend(singles)
    calls.sort(key=lambda c: c[0])  # deterministic call order: by first pass index

    preds: list[Tensor | None] = [None] * len(conds)
    for members in calls:
        if len(members) == 1:
            preds[members[0]] = model_fn(x, t, conds[members[0]])
            continue
        n = len(members)
        x_b = x.repeat(n, *([1] * (x.dim() - 1)))
        t_b = t.repeat(n)
        out = model_fn(x_b, t_b, _cat_conditions([conds[m] for m in members]))
        if out.shape[0] != n * batch:
            raise MVS2VError(
                f"The model returned batch {out.shape[0]} for a batched call of {n} passes x batch {batch}; "
                "it must return one prediction per input row. Fix the model wrapper or set max_batch_passes=1."
            )
        for m, piece in zip(members, out.split(batch, dim=0)):
            preds[m] = piece
    return preds  # type: ignore[return-value]


def guided_velocity(model_fn: ModelFn, guidance: Guidance, x: Tensor, t: Tensor) -> Tensor:
    """Run the guidance's passes and combine them: ``sum_k w_k * v_k`` (weights sum to 1).

    Args:
        model_fn: ``(x, t, cond) -> v``.
        guidance: the passes and weights.
        x: Tensor[B, ...] current latent.
        t: Tensor[B] timesteps (sigma * 1000).

    Returns:
        Tensor[B, ...] guided velocity, in the dtype of the first prediction.
    """
    terms = guidance.terms()
    conds = [c for _, c in terms]
    while True:
        limit = guidance.max_batch_passes or guidance.auto_batch_passes
        try:
            preds = run_passes(model_fn, x, t, conds, limit)
            break
        except torch.OutOfMemoryError:
            # "Batched when memory allows": with no explicit limit, halve the passes per call and
            # remember what fits, so later steps do not hit the same error again.
            current = limit or len(conds)
            if guidance.max_batch_passes is not None or current <= 1:
                raise
            guidance.auto_batch_passes = current // 2
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    if len(preds) == 1:
        return preds[0]  # weight is exactly 1 here
    out = terms[0][0] * preds[0]
    for (w, _), p in zip(terms[1:], preds[1:]):
        out = out + w * p.to(out.dtype)
    return out

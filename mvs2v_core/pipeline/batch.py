"""Batched generation: many videos of one size in a few batched sampling runs.

:func:`generate_batch` stacks items that can share a DiT forward and samples them together;
each item keeps its own prompt, negative prompt, seed and reference views, and its result equals
what :meth:`MVS2VPipeline.generate` returns for it alone (fp32, up to the rounding of batched
matrix products, about 1e-5). It pays where a forward's fixed cost dominates (a GPU, which a small
model leaves idle between kernel launches). On a CPU the toy models are compute-bound already at
one item (three guidance passes of about 200 tokens): sixteen W1 clips of the bundled toy model,
20 steps, one thread, took 27.4 s batched and 27.0 s one by one -- no gain, and no loss.

What may differ between items and what may not:

* per item: ``prompt``, ``negative_prompt``, ``seed`` and the subjects (or none);
* shared: size, steps, shift, solver, guidance scales, ``max_batch_passes`` and the reference
  settings (one sampling schedule and one guidance rule per run).

The DiT takes one :class:`~mvs2v_core.references.layout.ReferenceLayout` per forward and reads
only its slot count and which slots are filled, so items are grouped by that signature (and by
their context lengths, which only differ for prompts longer than ``text_len``), as the trainer
groups examples (``mvs2v_train.data.group_examples``). Each group is one sampling run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import torch

from ..errors import MVS2VError
from ..references.layout import ReferenceLayout
from ..references.settings import ReferenceSettings
from ..sampling.sampler import make_noise, sample
from .request import (
    EncodedConditioning,
    GenerationResult,
    GenerationSettings,
    SubjectInput,
    check_generation_settings,
    layout_for,
    refuse_context_windows_in_batch,
)
from .memory import GB, REFUSE_RATIO, available_memory

if TYPE_CHECKING:
    from .generate import MVS2VPipeline

__all__ = ["SHARED_FIELDS", "generate_batch"]

SHARED_FIELDS = ("width", "height", "frames", "steps", "shift", "solver", "ref_scale", "text_scale", "max_batch_passes")
"""Settings every item of a batch must share (one schedule, one guidance rule, one latent shape)."""


@dataclass
class _Item:
    """One requested generation, encoded: its input position, settings, layout and conditioning."""

    index: int
    settings: GenerationSettings
    layout: ReferenceLayout | None
    encoded: EncodedConditioning

    def group_key(self) -> tuple:
        """Items with equal keys share every DiT forward."""
        sig = None if self.layout is None else self.layout.forward_key()
        e = self.encoded
        lengths = tuple(None if t is None else t.shape[1] for t in (e.context, e.negative, e.neg_ref, e.neg_noref))
        return (sig, lengths)


def _check_shared(settings: Sequence[GenerationSettings], references: list[ReferenceSettings]) -> None:
    """Refuse items that cannot share one sampling run, naming the first field that differs."""
    first = settings[0]
    for i, s in enumerate(settings[1:], start=1):
        for name in SHARED_FIELDS:
            if getattr(s, name) != getattr(first, name):
                raise MVS2VError(
                    f"batch item {i} has {name}={getattr(s, name)!r} but item 0 has {getattr(first, name)!r}: "
                    "items of one batch must share size, steps, shift, solver, scales and max_batch_passes "
                    "(generate them in separate batches)"
                )
        if references[i] != references[0]:
            raise MVS2VError(
                f"batch item {i} uses reference settings {references[i]} but item 0 uses {references[0]}: "
                "items of one batch must share reference settings (generate them in separate batches)"
            )


def _group_items(items: Sequence[_Item]) -> list[list[_Item]]:
    """Items grouped by :meth:`_Item.group_key`, groups in order of their first item."""
    groups: dict[tuple, list[_Item]] = {}
    for item in items:
        groups.setdefault(item.group_key(), []).append(item)
    return list(groups.values())


def _check_batch_memory(pipe: "MVS2VPipeline", group: list[_Item], refs: ReferenceSettings) -> None:
    """Refuse a group whose batched forward clearly cannot fit (the single-item estimate x group size)."""
    first, _ = pipe.estimate_memory(group[0].settings, group[0].layout, refs)
    need = first.total_bytes * len(group)
    avail = available_memory(pipe.device)
    if avail is not None and need > REFUSE_RATIO * avail:
        raise MVS2VError(
            f"a batch of {len(group)} items needs about {need / GB:.1f} GB for one DiT forward but only "
            f"{max(avail, 0) / GB:.1f} GB is available on {pipe.device}: generate fewer items per batch"
        )


def _cat(tensors: Sequence[torch.Tensor | None]) -> torch.Tensor | None:
    return None if tensors[0] is None else torch.cat(list(tensors), dim=0)  # type: ignore[arg-type]


def _run_group(
    pipe: "MVS2VPipeline", group: list[_Item], refs: ReferenceSettings, group_index: int,
    progress: Callable[[dict], None] | None,
) -> list[GenerationResult]:
    """One batched sampling run for items sharing a key; results in the group's order.

    Noise: item ``i`` gets exactly ``make_noise([1, C, f, h, w], seed_i)``, as ``generate`` draws it.
    """
    s = group[0].settings
    enc = [it.encoded for it in group]
    guidance = pipe._guidance(
        s, _cat([e.context for e in enc]), _cat([e.negative for e in enc]), _cat([e.ref_latents for e in enc]),
        _cat([e.neg_ref for e in enc]), _cat([e.neg_noref for e in enc]),
    )
    model_fn = pipe._model_fn(refs, group[0].layout)  # the DiT reads only the slot signature, shared here
    shape = pipe.latent_shape(s)
    noise = torch.cat([make_noise(shape, it.settings.seed, device=pipe.device) for it in group])

    def on_step(info: dict) -> None:
        if progress is not None:
            progress({**info, "group": group_index, "items": [it.index for it in group]})

    t0 = time.perf_counter()
    latents = sample(model_fn, noise, guidance, s.steps, s.shift, s.solver, callback=on_step)
    sampling = time.perf_counter() - t0
    results = []
    for it, lat in zip(group, latents.split(1, dim=0)):
        t1 = time.perf_counter()
        frames = pipe.decode_frames(lat)
        timings = {"sampling": sampling, "per_step": sampling / s.steps, "vae_decode": time.perf_counter() - t1,
                   "batch_items": float(len(group))}
        results.append(GenerationResult(frames, lat.cpu(), it.layout, timings))
    return results


@torch.no_grad()
def generate_batch(
    pipe: "MVS2VPipeline",
    settings: Sequence[GenerationSettings],
    subjects: Sequence[Sequence[SubjectInput]],
    progress: Callable[[dict], None] | None = None,
) -> list[GenerationResult]:
    """Generate ``len(settings)`` videos, batching every item that can share a DiT forward.

    Args:
        pipe: the pipeline.
        settings: one :class:`GenerationSettings` per item; they must agree on :data:`SHARED_FIELDS`
            and the (resolved) reference settings.
        subjects: per item, its subjects (an empty sequence: no references).
        progress: called after every sampling step with the sampler's info plus ``group`` (run
            number) and ``items`` (the input indices sampled in that run).

    Returns:
        One :class:`GenerationResult` per item, in input order: video ``[F, H, W, 3]``, latents
        ``[1, C, f, h, w]``, layout; ``timings`` are those of the run the item was in
        (``sampling``, ``per_step``, ``batch_items``) plus its own ``text_encode``,
        ``reference_encode`` and ``vae_decode``.
    """
    if len(settings) != len(subjects):
        raise MVS2VError(f"generate_batch got {len(settings)} settings but {len(subjects)} subject lists: "
                         "give one of each per item")
    if not settings:
        return []
    for s in settings:
        check_generation_settings(s)
    refuse_context_windows_in_batch(settings)
    refs = [pipe.resolve_references(s.references) for s in settings]
    _check_shared(settings, refs)
    pipe.check_size(settings[0])
    layouts = [layout_for(subj, refs[0]) if subj else None for subj in subjects]

    items: list[_Item] = []
    encode_timings: list[dict[str, float]] = []
    for i, (s, subj, layout) in enumerate(zip(settings, subjects, layouts)):
        timings: dict[str, float] = {}
        items.append(_Item(i, s, layout, pipe.encode_conditioning(s, subj, layout, timings)))
        encode_timings.append(timings)
    groups = _group_items(items)
    if any(s.check_memory for s in settings):  # before any sampling: a batch that cannot fit costs nothing
        for group in groups:
            _check_batch_memory(pipe, group, refs[0])

    results: list[GenerationResult | None] = [None] * len(items)
    for g, group in enumerate(groups):
        for it, res in zip(group, _run_group(pipe, group, refs[0], g, progress)):
            res.timings.update(encode_timings[it.index])
            res.timings["total"] = sum(res.timings[k] for k in ("text_encode", "reference_encode", "vae_decode")) \
                + res.timings["sampling"]
            results[it.index] = res
    return results  # type: ignore[return-value]

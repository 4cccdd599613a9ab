"""Training examples from the cache: curriculum view plans, reference augmentation, noise.

:meth:`TrainData.example` turns one manifest sample into a :class:`Example` for a given stage and
seed: it draws the subject order and drops (reference shuffle / drop), the kept views of every
subject (the stage's view policy), one cached augmentation variant per kept view, builds the slot
layout with :meth:`ReferenceLayout.build` -- the function inference uses -- and fills one latent
frame per slot (the view's latent; for empty slots a zero frame, or the mid-gray image's latent
under the ``gray`` mode, as ``MVS2VPipeline`` does). Samples whose cache entry is missing, stale
or unreadable are counted and skipped, never fatal.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F

from mvs2v_core.errors import MVS2VError
from mvs2v_core.references.layout import ReferenceLayout
from mvs2v_core.references.settings import EmptySlotMode

from .cache import CacheStore, _h, data_params, record_is_fresh, row_key
from .config import StageSection, TrainConfig
from .curriculum import derive_seed, plan_views, stage_accepts
from .manifest import Sample, read_manifest
from .model import TrainBatch
from .timesteps import loss_weight, sample_sigma


@dataclass
class Example:
    """One training sample, ready to batch.

    Attributes:
        x0: ``[C, F, H, W]``; noise: same shape; sigma, weight: floats.
        context: ``[L, text_dim]`` (unpadded).
        ref_latents: ``[C, S, H, W]`` or None; layout: the slot layout or None.
        mfi: ``[n_subjects, tokens, vit_dim]`` or None.
        align: the alignment loss's targets ``[S, tokens, vit_dim]`` (one per slot, zeros where empty) and
            which slots have one ``[S]`` (bool), or None (``[align]`` off, or no references).
        views_kept: per subject, how many views are in the layout (for tests and logs).
        index: dataset index of the sample.
    """

    x0: torch.Tensor
    noise: torch.Tensor
    sigma: float
    weight: float
    context: torch.Tensor
    ref_latents: torch.Tensor | None
    layout: ReferenceLayout | None
    mfi: torch.Tensor | None
    views_kept: list[int] = field(default_factory=list)
    index: int = -1
    align: tuple[torch.Tensor, torch.Tensor] | None = None

    def group_key(self, mixed_layouts: bool = False) -> tuple:
        """Examples with equal keys run in one DiT forward: the DiT only reads which slots are filled
        (names, yaws and frontal choice matter to the data, not to the forward). With ``mixed_layouts``
        (``proxy`` / ``gray``: every slot makes tokens) not even that: each sample keeps its own layout."""
        sig = None if self.layout is None else self.layout.forward_key(mixed_layouts)
        return (sig, tuple(self.x0.shape), None if self.mfi is None else tuple(self.mfi.shape),
                None if self.align is None else tuple(self.align[0].shape))


@dataclass
class DataSummary:
    """What :class:`TrainData` found: usable samples and why the others are skipped."""

    rows: int
    usable: int
    skipped: Counter
    problems: list[tuple[int, str]]

    def describe(self) -> str:
        text = f"{self.usable} of {self.rows} manifest rows are usable"
        if self.skipped:
            text += " (skipped: " + ", ".join(f"{n} {why}" for why, n in self.skipped.items()) + ")"
        return text


class TrainData:
    """The manifest samples that have a fresh cache record, and how to draw examples from them."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        manifest = read_manifest(cfg.resolve(cfg.data.manifest), cfg.references.slots_per_subject, check_files=False)
        self.store = CacheStore(cfg.cache_dir)
        if not self.store.exists:
            raise MVS2VError(f"the cache {cfg.cache_dir} is empty: run `mvs2v-train cache --config {cfg.path}` first")
        params = _h(data_params(cfg))
        self.samples: list[Sample] = []
        self.records: list[dict] = []
        skipped: Counter = Counter()
        problems = list(manifest.problems)
        if manifest.problems:
            skipped["bad rows"] += len(manifest.problems)
        for s in manifest.samples:
            rec = self.store.records.get(row_key(s))
            if rec is None:
                skipped["not cached"] += 1
                problems.append((s.line, "not cached: run `mvs2v-train cache`"))
            elif not record_is_fresh(rec, params, None, self.store):
                skipped["stale cache (inputs or settings changed)"] += 1
                problems.append((s.line, "cached with other inputs or settings: run `mvs2v-train cache`"))
            else:
                self.samples.append(s)
                self.records.append(rec)
        self.summary = DataSummary(manifest.total_rows, len(self.samples), skipped, sorted(problems))

    def __len__(self) -> int:
        return len(self.samples)

    def eligible(self, stage: StageSection) -> list[int]:
        """Dataset indices the stage's filter accepts."""
        return [i for i, s in enumerate(self.samples) if stage_accepts(stage, s)]

    def indices_in_split(self, split: str) -> list[int]:
        return [i for i, s in enumerate(self.samples) if s.split == split]

    # ---- one example -----------------------------------------------------------------------------
    def example(self, index: int, seed: int, stage: StageSection | None, *, deterministic_eval: bool = False,
                sigma: float | None = None) -> Example:
        """Draw one example; all randomness comes from ``seed``.

        Args:
            index: dataset index.
            seed: the per-sample seed (see :func:`derive_seed`).
            stage: the curriculum stage (view policy); None keeps every view.
            deterministic_eval: no augmentation, no drops, clean views, all views (held-out loss).
            sigma: a fixed noise level instead of drawing one.
        """
        cfg = self.cfg
        aug = cfg.augment
        sample, rec = self.samples[index], self.records[index]
        rng = random.Random(seed)
        gen = torch.Generator().manual_seed(seed)
        get = self.store.get
        x0 = get(rec["video"])
        caption_drop = not deterministic_eval and rng.random() < aug.caption_drop
        context = get(rec["empty_text"] if caption_drop else rec["text"])

        subjects = list(range(len(sample.subjects)))
        layout = ref_latents = mfi = align = None
        kept_counts: list[int] = []
        if subjects:
            if not deterministic_eval:
                if len(subjects) > 1 and aug.subject_drop > 0:
                    survivors = [i for i in subjects if rng.random() >= aug.subject_drop]
                    subjects = survivors or [subjects[rng.randrange(len(subjects))]]
                if len(subjects) > 1 and rng.random() < aug.shuffle_subjects:
                    rng.shuffle(subjects)
            specs = [sample.subjects[i] for i in subjects]
            frontals = [s.layout_frontal() for s in specs]
            if stage is None or deterministic_eval:
                plans = [list(range(len(s.views))) for s in specs]
            else:
                plans = plan_views(stage, [len(s.views) for s in specs], frontals, rng)
            labels, chosen_frontal, sources = [], [], []
            for spec, plan, fr in zip(specs, plans, frontals):
                views = list(plan)
                unlabelled = [j for j, v in enumerate(views) if spec.views[v].label is None]
                if not deterministic_eval and len(unlabelled) > 1 and rng.random() < aug.shuffle_views:
                    order = [views[j] for j in unlabelled]
                    rng.shuffle(order)
                    for j, v in zip(unlabelled, order):
                        views[j] = v
                labels.append([spec.views[v].label for v in views])
                chosen_frontal.append(views.index(fr) if fr in views else None)
                sources.append(views)
            layout = ReferenceLayout.build(labels, cfg.references.slots_per_subject,
                                           names=[s.name for s in specs], frontal=chosen_frontal,
                                           slot_anchor=cfg.references.slot_anchor)
            ref_drop = not deterministic_eval and rng.random() < aug.reference_drop
            ref_latents, mfi = self._slot_latents(rec, subjects, sources, layout, rng, deterministic_eval, ref_drop)
            if cfg.align.enabled:
                align = self._align_targets(rec, subjects, sources, layout, ref_drop)
            kept_counts = [len(v) for v in sources]

        s = sigma if sigma is not None else sample_sigma(cfg.timesteps, gen)
        noise = torch.randn(x0.shape, generator=gen)
        return Example(x0, noise, float(s), loss_weight(cfg.timesteps, s), context, ref_latents, layout, mfi,
                       kept_counts, index, align)

    def _slot_latents(self, rec: dict, subjects: Sequence[int], sources: Sequence[Sequence[int]],
                      layout: ReferenceLayout, rng: random.Random, clean: bool,
                      ref_drop: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One latent frame per slot ``[C, S, H, W]`` and the frontal views' ViT features."""
        get = self.store.get
        aug = self.cfg.augment
        c, _, h, w = rec["latent_shape"]
        if self.cfg.references.empty_slot_mode == EmptySlotMode.GRAY:
            empty = get(rec["gray"])
        else:
            empty = torch.zeros(c, h, w)  # ignored by the DiT under proxy / drop
        frames = []
        for source in slot_views(layout, subjects, sources):
            if source is None:
                frames.append(empty)
                continue
            subj, view = source
            keys = rec["refs"][subj][view]
            if clean or len(keys) == 1 or rng.random() < aug.clean_prob:
                key = keys[0]
            else:
                key = keys[rng.randrange(1, len(keys))]
            frames.append(get(key))
        latents = torch.stack(frames, dim=1)
        mfi = None
        if rec.get("vit"):
            feats = []
            for subj_pos, sl in enumerate(layout.subjects):
                src = sl.slots[sl.frontal].source
                view = sources[subj_pos][src]  # type: ignore[index]
                feats.append(get(rec["vit"][subjects[subj_pos]][view]))
            mfi = torch.stack(feats)
        if ref_drop:
            # Inference's "no reference" guidance pass: same slots, zero latents, zero MFI features.
            latents = torch.zeros_like(latents)
            mfi = torch.zeros_like(mfi) if mfi is not None else None
        return latents, mfi

    def _align_targets(self, rec: dict, subjects: Sequence[int], sources: Sequence[Sequence[int]],
                       layout: ReferenceLayout, ref_drop: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Each filled slot's image features (the clean image's, as the cache encodes them) and the
        slots that have a target: none under reference drop, whose latents are zeros."""
        if not rec.get("vit"):
            raise MVS2VError("the cache has no vision features for this sample: run the cache step with "
                             "model.vision_encoder set")
        get = self.store.get
        views = slot_views(layout, subjects, sources)
        feats = [None if v is None else get(rec["vit"][v[0]][v[1]]).float() for v in views]
        filled = [v is not None and not ref_drop for v in views]
        shape = next((f.shape for f in feats if f is not None), None)
        if shape is None:
            shape = get(rec["vit"][subjects[0]][0]).shape
        stacked = torch.stack([f if f is not None else torch.zeros(shape) for f in feats])
        return stacked, torch.tensor(filled, dtype=torch.bool)


def slot_views(layout: ReferenceLayout, subjects: Sequence[int],
               sources: Sequence[Sequence[int]]) -> list[tuple[int, int] | None]:
    """Per slot of ``layout``, in slot order: the (manifest subject, view) whose image fills it, or None."""
    out: list[tuple[int, int] | None] = []
    for subj_pos, sl in enumerate(layout.subjects):
        for slot in sl.slots:
            view = sources[subj_pos][slot.source] if slot.filled else None  # type: ignore[index]
            out.append(None if view is None else (subjects[subj_pos], view))
    return out


def collate(examples: Sequence[Example], text_len: int) -> TrainBatch:
    """Stack examples that share ``group_key()``; contexts are zero-padded to ``text_len`` as the DiT does."""
    longest = max(text_len, max(e.context.shape[0] for e in examples))
    ctx = torch.stack([F.pad(e.context, (0, 0, 0, longest - e.context.shape[0])) for e in examples])
    first = examples[0]
    return TrainBatch(
        x0=torch.stack([e.x0 for e in examples]),
        noise=torch.stack([e.noise for e in examples]),
        sigma=torch.tensor([e.sigma for e in examples], dtype=torch.float32),
        weight=torch.tensor([e.weight for e in examples], dtype=torch.float32),
        context=ctx,
        ref_latents=None if first.ref_latents is None else torch.stack([e.ref_latents for e in examples]),
        layout=first.layout,
        mfi_features=None if first.mfi is None else torch.stack([e.mfi for e in examples]),
        sample_layouts=None if first.layout is None or all(e.layout.filled == first.layout.filled for e in examples)
        else tuple(e.layout for e in examples),
        align_features=None if first.align is None else torch.stack([e.align[0] for e in examples]),
        align_filled=None if first.align is None else torch.stack([e.align[1] for e in examples]),
    )


def group_examples(examples: Sequence[Example], text_len: int, mixed_layouts: bool = False) -> list[TrainBatch]:
    """Batches of examples with the same layout and shapes (one DiT forward each), in first-seen order;
    ``mixed_layouts`` (``proxy`` / ``gray``) groups examples whose filled slots differ too."""
    groups: dict[tuple, list[Example]] = {}
    for e in examples:
        groups.setdefault(e.group_key(mixed_layouts), []).append(e)
    return [collate(g, text_len) for g in groups.values()]


__all__ = ["Example", "TrainData", "DataSummary", "collate", "group_examples", "derive_seed"]

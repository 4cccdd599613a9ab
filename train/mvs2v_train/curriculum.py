"""The Progressive View Curriculum (HarmoView): stages, their view-dropout policies and data order.

Four stages as configured in ``[[stages]]`` (the example configs follow the paper):

1. ``views = "single"``: one view per subject (single-view structure alignment);
2. ``views = "single_or_full"``: per sample, one view per subject or all of them (multi-view warm-up);
3. ``views = "dropout"`` with ``dropout_prob = 1``: a random 1..n views per subject (n = the views the
   subject has, at most K slots), so every slot combination is seen;
4. ``views = "dropout"`` with a smaller ``dropout_prob`` and a curated ``filter`` (less dropout).

Everything random here is a pure function of ``(seed, global step, global sample slot)``: the data
order, the view plan, the augmentation draw, the noise. So a run resumed from a checkpoint continues
bit for bit, and two processes with batch 1 draw exactly what one process with batch 2 draws.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from typing import Sequence

import torch

from .config import StageSection
from .manifest import Sample


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any printable parts (stable across runs, processes and platforms)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


# ---- stages and learning rate ----------------------------------------------------------------------


@dataclass(frozen=True)
class StagePosition:
    """Where a global step falls: stage index, the stage, and the step within it."""

    index: int
    stage: StageSection
    step_in_stage: int


class Curriculum:
    """The stages in order; global step ``s`` (0-based) belongs to the stage whose range holds it."""

    def __init__(self, stages: Sequence[StageSection]) -> None:
        if not stages:
            raise ValueError("a curriculum needs at least one stage")
        self.stages = list(stages)
        self.starts = []
        total = 0
        for s in self.stages:
            self.starts.append(total)
            total += s.steps
        self.total_steps = total

    def locate(self, step: int) -> StagePosition:
        if not 0 <= step < self.total_steps:
            raise IndexError(f"step {step} is outside the curriculum (0..{self.total_steps - 1})")
        for i in range(len(self.stages) - 1, -1, -1):
            if step >= self.starts[i]:
                return StagePosition(i, self.stages[i], step - self.starts[i])
        raise AssertionError("unreachable")

    def learning_rate(self, step: int) -> float:
        """The stage's warm-up then its schedule, restarting at every stage boundary."""
        pos = self.locate(step)
        s = pos.stage
        k = pos.step_in_stage
        if s.warmup_steps and k < s.warmup_steps:
            return s.learning_rate * (k + 1) / s.warmup_steps
        span = max(1, s.steps - s.warmup_steps)
        progress = min(1.0, (k - s.warmup_steps) / span)
        floor = s.min_lr_ratio
        if s.lr_schedule == "cosine":
            factor = floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
        elif s.lr_schedule == "linear":
            factor = 1.0 - (1.0 - floor) * progress
        else:
            factor = 1.0
        return s.learning_rate * factor


class StageLRScheduler:
    """Sets every param group's ``lr`` to ``curriculum.learning_rate(step) * group['lr_scale']``.

    Its state is the next step only (the schedule is a function of the step), saved as JSON.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, curriculum: Curriculum) -> None:
        self.optimizer = optimizer
        self.curriculum = curriculum
        self.step_index = 0

    def apply(self, step: int) -> float:
        lr = self.curriculum.learning_rate(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        self.step_index = step
        return lr

    def state_dict(self) -> dict:
        return {"step_index": self.step_index}

    def load_state_dict(self, state: dict) -> None:
        self.step_index = int(state["step_index"])


# ---- data filter and order -------------------------------------------------------------------------


def stage_accepts(stage: StageSection, sample: Sample) -> bool:
    """Whether ``sample`` passes the stage's ``[stages.filter]``."""
    f = stage.filter
    if sample.split not in f.splits:
        return False
    if f.min_views > 1 and sample.max_views < f.min_views:
        return False  # (a row without subjects has 0 views)
    if f.min_quality is not None and (sample.quality is None or sample.quality < f.min_quality):
        return False
    if f.tags and not set(f.tags) & set(sample.tags):
        return False
    return True


def sample_at(eligible: Sequence[int], seed: int, stage_index: int, position: int) -> int:
    """The dataset index at ``position`` of the stage's endless stream of shuffled epochs."""
    n = len(eligible)
    epoch, offset = divmod(position, n)
    g = torch.Generator().manual_seed(derive_seed(seed, "order", stage_index, epoch))
    perm = torch.randperm(n, generator=g)
    return eligible[int(perm[offset])]


# ---- view plans ------------------------------------------------------------------------------------


def view_count(stage: StageSection, available: int, rng: random.Random, full: bool | None) -> int:
    """How many of a subject's ``available`` views the stage keeps.

    ``full`` is the per-sample draw of ``single_or_full`` / ``dropout`` (True = keep all views).
    """
    if available < 1:
        raise ValueError("a subject has at least one view")
    if stage.views == "single":
        return 1
    if stage.views == "full":
        return available
    if stage.views == "single_or_full":
        return available if full else 1
    # dropout: 1..available uniformly, unless this sample skips dropout (stage 4's lighter dropout).
    return available if full else rng.randint(1, available)


def sample_full_flag(stage: StageSection, rng: random.Random) -> bool | None:
    """The per-sample configuration draw: full-view (True) or not, for the policies that have one."""
    if stage.views == "single_or_full":
        return rng.random() < stage.full_view_prob
    if stage.views == "dropout":
        return rng.random() >= stage.dropout_prob
    return None


def choose_views(stage: StageSection, available: int, frontal: int, count: int, rng: random.Random) -> list[int]:
    """Which ``count`` view indices to keep (sorted). The frontal view stays when the stage says so."""
    if count >= available:
        return list(range(available))
    if count == 1 and stage.views in ("single", "single_or_full"):
        return [frontal] if stage.single_view == "frontal" else [rng.randrange(available)]
    if stage.keep_frontal:
        others = [i for i in range(available) if i != frontal]
        return sorted([frontal] + rng.sample(others, count - 1))
    return sorted(rng.sample(range(available), count))


def plan_views(stage: StageSection, available: Sequence[int], frontal: Sequence[int],
               rng: random.Random) -> list[list[int]]:
    """The kept view indices of every subject of one sample under ``stage``."""
    full = sample_full_flag(stage, rng)
    out = []
    for n, fr in zip(available, frontal):
        c = view_count(stage, n, rng, full)
        out.append(choose_views(stage, n, fr, c, rng))
    return out


__all__ = ["derive_seed", "Curriculum", "StagePosition", "StageLRScheduler", "stage_accepts", "sample_at",
           "view_count", "sample_full_flag", "choose_views", "plan_views"]

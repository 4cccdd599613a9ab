"""What ``mvs2v toy-bench`` generates: held-out scenes, their counterfactual versions, and one job per clip.

Scene ``i`` of a bench is ``world_spec(world).sample(np.random.default_rng([eval_seed, i]), frames)``
(the same draw as :func:`mvs2v_toy.demo.held_out_scene`). For each scene, sampling seed and row, a
:class:`Unit` lists the clips to score, each a *variant*:

* ``orig``: the scene as it is (every row);
* ``recolour<k>``: the scene with object ``k``'s hidden faces in new hues
  (:func:`~mvs2v_toy.counterfactual.recolour_hidden`, rng ``[eval_seed, i, k]``): reference use, and
  on two-object scenes causal crosstalk from ``k`` to the other object;
* ``swap<k>`` (row ``multi`` only): the scene with the images of two of object ``k``'s views
  (:func:`~mvs2v_toy.counterfactual.swap_views`) exchanged between their slots, labels kept.

Rows: ``multi`` (all four views), ``single`` (only the start view: what frame 0 shows), ``none`` (no
references), ``copy`` (the true frame 0 repeated; nothing is generated). A variant whose model
inputs (caption and reference images) equal those of ``orig`` -- a single start view or no
references, since the recolour touches only faces frame 0 hides -- is not generated again: its
clip *is* the ``orig`` clip, so its reference use is exactly 0 by construction, and the record says
so. The inputs are compared, not assumed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ._core import MVS2VError
from .counterfactual import recolour_hidden, swap_views
from .truth import ToyTruth, truth_from_scene
from .world import ToyScene, world_spec

__all__ = ["ROWS", "BenchScene", "Job", "Unit", "bench_scene", "held_out_scene", "recolour_rng", "generation_seed",
           "plan_units"]

ROWS = ("multi", "single", "none", "copy")


@dataclass
class BenchScene:
    """One held-out scene and its counterfactual versions.

    Attributes:
        index: the scene number ``i``.
        truth: the scene's truth with its four reference views per object.
        recoloured: per object, the truth of the scene with that object's hidden faces recoloured, or
            None when it cannot be (``notes`` says why).
        swaps: per object, the two view labels the slot-binding probe exchanges, or None.
        notes: per object, why a probe has nothing to score.
    """

    index: int
    truth: ToyTruth
    recoloured: list[ToyTruth | None]
    swaps: list[tuple[str, str] | None]
    notes: list[str] = field(default_factory=list)


def held_out_scene(world: str, eval_seed: int, index: int, frames: int) -> ToyScene:
    """Held-out scene ``index`` of ``world``: drawn from ``default_rng([eval_seed, index])`` (training sets are
    drawn from ``[data seed, index]``, another stream)."""
    return world_spec(world).sample(np.random.default_rng([int(eval_seed), int(index)]), int(frames))


def recolour_rng(eval_seed: int, index: int, obj: int) -> np.random.Generator:
    """The random source of the hues given to object ``obj``'s hidden faces in scene ``index``'s twin."""
    return np.random.default_rng([int(eval_seed), int(index), int(obj)])


def bench_scene(world: str, eval_seed: int, index: int, frames: int) -> BenchScene:
    """Render held-out scene ``index`` of ``world`` and its recoloured versions (one per object)."""
    scene = held_out_scene(world, eval_seed, index, frames)
    truth = truth_from_scene(scene, sample_id=f"bench-{world}-{eval_seed}-{index}")
    recoloured: list[ToyTruth | None] = []
    notes = []
    for k in range(len(scene.objects)):
        try:
            twin = recolour_hidden(scene, k, recolour_rng(eval_seed, index, k))
        except MVS2VError as exc:  # e.g. frame 0 shows every hued face: nothing only the references know
            recoloured.append(None)
            notes.append(str(exc))
            continue
        recoloured.append(truth_from_scene(twin, sample_id=f"{truth.sample_id}-recolour{k}"))
        notes.append("")
    swaps = [swap_views(truth, k) for k in range(len(scene.objects))]
    return BenchScene(int(index), truth, recoloured, swaps, notes)


def generation_seed(eval_seed: int, scene: int, seed: int) -> int:
    """The sampler seed of scene ``scene`` under sampling seed ``seed``: a hash of the three, so that
    scenes do not share their starting noise (which would hide the noise's share of the spread)."""
    return int(np.random.SeedSequence([int(eval_seed), int(scene), int(seed)]).generate_state(1)[0])


# ---- model inputs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Inputs:
    """A generation's model inputs: caption and per object ``(name, labels, frontal, images)``; ``images``
    are uint8 ``[H, W, 3]`` arrays in slot-label order."""

    caption: str
    subjects: tuple[tuple[str, tuple[str, ...], int | None, tuple[np.ndarray, ...]], ...]

    def digest(self) -> str:
        """SHA-256 of everything the model sees (equal digests: the generations are equal)."""
        h = hashlib.sha256(self.caption.encode())
        for name, labels, frontal, images in self.subjects:
            h.update(repr((name, labels, frontal)).encode())
            for img in images:
                h.update(np.ascontiguousarray(img).tobytes())
        return h.hexdigest()

    def subject_inputs(self) -> list[Any]:
        """The pipeline's ``SubjectInput`` list (PIL images)."""
        from PIL import Image

        from ._core import SubjectInput

        return [SubjectInput(name, [Image.fromarray(np.ascontiguousarray(a)) for a in images], list(labels), frontal)
                for name, labels, frontal, images in self.subjects]


def row_inputs(row: str, truth: ToyTruth, swap: tuple[int, tuple[str, str]] | None = None) -> Inputs:
    """The inputs of ``row`` for ``truth``; ``swap = (k, (a, b))`` exchanges views a and b of object k."""
    subjects = []
    if row in ("multi", "single"):
        for k, obj in enumerate(truth.scene.objects):
            refs = truth.references[k] if row == "multi" else [truth.reference(k, obj.start_view)]
            labels = tuple(r.name for r in refs)
            images = {r.name: r.image for r in refs}
            if swap is not None and swap[0] == k:
                a, b = swap[1]
                images[a], images[b] = images[b], images[a]
            frontal = labels.index(obj.start_view) if obj.start_view in labels else None
            subjects.append((obj.name, labels, frontal, tuple(images[lab] for lab in labels)))
    elif row != "none":
        raise MVS2VError(f"row {row!r} generates nothing or is unknown: rows are {', '.join(ROWS)}")
    return Inputs(truth.caption, tuple(subjects))


# ---- jobs and units ----------------------------------------------------------------------------------


@dataclass
class Job:
    """One clip of a unit. ``inputs`` None: nothing to generate (``copy``, or the same inputs as
    ``orig``: then ``same_as_orig`` is True and the ``orig`` clip is reused)."""

    variant: str
    truth: ToyTruth
    inputs: Inputs | None
    same_as_orig: bool = False
    swap: tuple[str, str] | None = None


@dataclass
class Unit:
    """Every clip of one (row, scene, sampling seed): scored together, cached together."""

    row: str
    scene: BenchScene
    seed: int
    gen_seed: int
    jobs: list[Job]

    def key(self, variant: str) -> str:
        return f"{self.row}/{self.scene.index}/{self.seed}/{variant}"

    def to_generate(self) -> list[Job]:
        return [j for j in self.jobs if j.inputs is not None and not j.same_as_orig]


def _unit_jobs(row: str, sc: BenchScene) -> list[Job]:
    if row == "copy":
        jobs = [Job("orig", sc.truth, None)]
        return jobs + [Job(f"recolour{k}", t, None) for k, t in enumerate(sc.recoloured) if t is not None]
    orig = row_inputs(row, sc.truth)
    jobs = [Job("orig", sc.truth, orig)]
    for k, twin in enumerate(sc.recoloured):
        if twin is not None:
            inputs = row_inputs(row, twin)
            jobs.append(Job(f"recolour{k}", twin, inputs, same_as_orig=inputs.digest() == orig.digest()))
    if row == "multi":
        for k, views in enumerate(sc.swaps):
            if views is not None:
                jobs.append(Job(f"swap{k}", sc.truth, row_inputs(row, sc.truth, (k, views)), swap=views))
    return jobs


def plan_units(rows: Sequence[str], scenes: Sequence[BenchScene], seeds: Sequence[int], eval_seed: int) -> list[Unit]:
    """Every (row, scene, seed) unit, scene-major so that a batch holds the rows of the same scenes."""
    units = []
    for sc in scenes:
        for seed in seeds:
            for row in rows:
                units.append(Unit(row, sc, int(seed), generation_seed(eval_seed, sc.index, seed), _unit_jobs(row, sc)))
    return units

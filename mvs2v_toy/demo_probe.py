"""The demo's causal probe on one held-out W1 scene: does the video follow the references?

Three generations with the same caption, size and noise, in one batch:

* ``given``: the scene's own reference views (front / left / back / right);
* ``recoloured``: the same views of the same scene with the sides that frame 0 hides painted in other
  hues (:func:`~mvs2v_toy.counterfactual.recolour_hidden`): only the reference images differ;
* ``swapped``: the scene's views with two slots' images exchanged (labels kept), e.g. the left view's
  image in the back slot and the back view's image in the left slot.

From them, :mod:`mvs2v_toy.causal` gives this scene's *reference use* (do the hidden sides take the
colour of the references given, rather than the other version's?) and *slot binding* (do colours move
with the slots?). A model that ignores its references scores exactly 0 on both. ``comparison.png``
shows the three: references labelled with their view and yaw, the generated frames and the truth.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .truth import ReferenceView, ToyTruth

__all__ = ["ProbeResult", "probe_subjects", "run_probe", "write_comparison", "generate_command", "view_caption"]


@dataclass
class ProbeResult:
    """The three generated clips (uint8 ``[F, H, W, 3]``) and this scene's causal numbers."""

    given: np.ndarray
    recoloured: np.ndarray
    swapped: np.ndarray | None
    swap: tuple[str, str] | None
    reference_use: dict[str, Any]
    binding: dict[str, Any] | None
    timings: dict[str, float]


def view_caption(ref: ReferenceView) -> str:
    """``"left 90°"``: what a reference tile is, in the words of the layout."""
    return f"{ref.name} {ref.yaw % 360:g}°"


def _swapped(refs: Sequence[ReferenceView], swap: tuple[str, str]) -> list[np.ndarray]:
    """The reference images with the two views of ``swap`` exchanged (each slot keeps its label)."""
    images = {r.name: r.image for r in refs}
    a, b = swap
    return [images[b] if r.name == a else images[a] if r.name == b else r.image for r in refs]


def probe_subjects(truth: ToyTruth, images: Sequence[Sequence[np.ndarray]] | None = None) -> list[Any]:
    """The scene's subjects as pipeline inputs: per object its reference images (default the truth's) with
    their view labels; the start view (what frame 0 shows) is the frontal view."""
    from PIL import Image

    from ._core import SubjectInput

    subjects = []
    for i, obj in enumerate(truth.scene.objects):
        refs = truth.references[i]
        imgs = images[i] if images is not None else [r.image for r in refs]
        labels = [r.name for r in refs]
        frontal = labels.index(obj.start_view) if obj.start_view in labels else None
        subjects.append(SubjectInput(obj.name, [Image.fromarray(np.ascontiguousarray(a)) for a in imgs], labels,
                                     frontal))
    return subjects


def _frames(result: Any) -> np.ndarray:
    """A generation's float frames in [0, 1] as the uint8 clip a video file would hold."""
    from .evaluate import load_generated

    return load_generated(result.video)


def run_probe(pipe: Any, settings: Any, truth: ToyTruth, recoloured: ToyTruth) -> ProbeResult:
    """Generate the three versions in one batch and score them (object 0)."""
    import time

    from .causal import reference_use, slot_binding
    from .counterfactual import swap_views

    swap = swap_views(truth, 0)
    items = [probe_subjects(truth), probe_subjects(recoloured)]
    if swap is not None:
        items.append(probe_subjects(truth, [_swapped(truth.references[0], swap)]))
    t0 = time.perf_counter()
    results = pipe.generate_batch([settings] * len(items), items)
    seconds = time.perf_counter() - t0
    given, other = _frames(results[0]), _frames(results[1])
    swapped = _frames(results[2]) if swap is not None else None
    use = reference_use(given, other, truth, recoloured, 0)
    binding = slot_binding(given, swapped, truth, 0, swap) if swap is not None else None
    return ProbeResult(given, other, swapped, swap, use, binding,
                       {"sampling_batch": seconds, "per_step": seconds / max(1, settings.steps)})


def write_comparison(path: Path, truth: ToyTruth, recoloured: ToyTruth, probe: ProbeResult,
                     max_frames: int = 9, scale: int = 3) -> Path:
    """``comparison.png``: for each version its references (captioned ``front 0°``...), the generated frames
    (``t0``...) and, for the first two, the true frames."""
    from ._core import StripRow, frame_indices, write_rows

    idx = frame_indices(truth.num_frames, max_frames)
    times = [f"t{t}" for t in idx]
    refs, refs_b = truth.references[0], recoloured.references[0]
    rows = [StripRow("given refs", [r.image for r in refs], [view_caption(r) for r in refs]),
            StripRow("generated", [probe.given[t] for t in idx], times),
            StripRow("truth", [truth.frames[t] for t in idx], times),
            StripRow("recoloured", [r.image for r in refs_b], [view_caption(r) for r in refs_b]),
            StripRow("generated", [probe.recoloured[t] for t in idx], times),
            StripRow("truth", [recoloured.frames[t] for t in idx], times)]
    if probe.swap is not None and probe.swapped is not None:
        a, b = probe.swap
        captions = [f"{view_caption(r)}<-{b if r.name == a else a}" if r.name in probe.swap else view_caption(r)
                    for r in refs]
        rows += [StripRow("swapped", _swapped(refs, probe.swap), captions),
                 StripRow("generated", [probe.swapped[t] for t in idx], times)]
    return write_rows(path, rows, truth.frames.shape[1:3], scale)


def generate_command(files: Any, truth: ToyTruth, settings: Any, video: Path) -> str:
    """The ``mvs2v generate`` command line equivalent to the ``given`` generation, shell-quoted."""
    args = ["mvs2v", "generate", "--dit", str(files.dit), "--adapter", str(files.adapter), "--vae", str(files.vae),
            "--text-encoder", str(files.text_encoder)]
    if files.vision_encoder:
        args += ["--vision-encoder", str(files.vision_encoder)]
    for i, obj in enumerate(truth.scene.objects):
        views = ",".join(f"{r.path}@{r.name}" for r in truth.references[i])
        args += ["--subject", f"{obj.name}={views}"]
        labels = [r.name for r in truth.references[i]]
        if obj.start_view in labels:
            args += ["--frontal", f"{obj.name}={labels.index(obj.start_view)}"]
    args += ["--prompt", truth.caption, "--width", str(settings.width), "--height", str(settings.height),
             "--frames", str(settings.frames), "--steps", str(settings.steps), "--shift", f"{settings.shift:g}",
             "--solver", settings.solver, "--ref-scale", f"{settings.ref_scale:g}", "--text-scale",
             f"{settings.text_scale:g}", "--seed", str(settings.seed), "--device", "cpu", "--dtype", "fp32",
             "--fps", "8", "--out", str(video)]
    return shlex.join(args)

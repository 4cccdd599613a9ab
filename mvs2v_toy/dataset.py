"""Write a toy-world training set in the trainer's JSONL manifest format.

:func:`write_toy_dataset` makes ``n_samples`` random scenes and writes::

    out_dir/
      manifest.jsonl                   one row per sample (mvs2v_train.manifest format)
      dataset.json                     the generator settings and counts
      samples/000000/video.mp4         the clip, lossless RGB H.264 (exact uint8 frames)
      samples/000000/red_cube_front.png ...   reference views, each object alone on white
      samples/000000/truth.json        ground truth sidecar (mvs2v_toy.truth)

A manifest row::

    {"id": "toy-000000", "video": "samples/000000/video.mp4",
     "caption": "a red cube slowly turns left from its back on a blue floor",
     "subjects": [{"name": "red_cube", "views": [{"image": "samples/000000/red_cube_front.png",
                                                   "label": "front"}, ...]}],
     "split": "train", "tags": ["toy", "objects-1", "cube"],
     "meta": {"truth": "samples/000000/truth.json", "seed": 0, "index": 0}}

Sample ``i`` is drawn from ``numpy.random.default_rng([seed, i])``: the same ``seed`` gives the
same samples, and a larger ``n_samples`` only appends samples. Every file is written atomically;
the manifest is written last, so a crash never leaves a manifest naming missing files.

PyAV is imported lazily.
"""

from __future__ import annotations

import argparse
import json
import os
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ._core import MVS2VError, atomic_write, write_lossless_mp4
from .args import add_toy_dataset_args
from .truth import DEFAULT_REF_VIEWS, ToyTruth, truth_from_scene, truth_record, view_spec
from .world import REFERENCE_CAMERAS, SHAPES, SPEEDS, START_VIEWS, ToyScene, WorldSpec, sample_scene, world_spec

__all__ = ["write_toy_dataset", "write_lossless_mp4", "write_toy_sample", "scene_for_index", "save_toy_encoders",
           "DatasetSummary", "add_toy_dataset_args", "run_toy_dataset"]

DATASET_FORMAT = "mvs2v-toy-dataset"


@dataclass
class DatasetSummary:
    """What :func:`write_toy_dataset` wrote."""

    out_dir: Path
    manifest: Path
    samples: int
    train: int
    val: int
    two_object: int
    lossless: bool


def _save_png(image: np.ndarray, path: Path) -> None:
    from PIL import Image

    with atomic_write(path, suffix=".png") as tmp:
        Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(tmp, format="PNG")


def _view_file_part(view: str | float) -> str:
    label, yaw = view_spec(view)
    return label if label is not None else f"yaw{yaw:g}".replace(".", "p")


def write_toy_sample(sample_dir: str | os.PathLike, scene: ToyScene, sample_id: str,
                     ref_views: Sequence[str | float] = DEFAULT_REF_VIEWS, fps: float = 8.0,
                     split: str = "train", ref_size: tuple[int, int] | None = None) -> tuple[ToyTruth, dict[str, Any]]:
    """Render and write one sample folder (video, reference PNGs, ``truth.json``).

    Returns:
        ``(truth, record)``: the :class:`ToyTruth` (with reference paths set) and the sidecar dict.
    """
    folder = Path(sample_dir)
    folder.mkdir(parents=True, exist_ok=True)
    truth = truth_from_scene(scene, ref_views, ref_size, sample_id)
    codec, lossless = write_lossless_mp4(truth.frames, folder / "video.mp4", fps)
    for i, obj in enumerate(scene.objects):
        for ref, view in zip(truth.references[i], ref_views):
            path = folder / f"{obj.name}_{_view_file_part(view)}.png"
            _save_png(ref.image, path)
            ref.path = path
    record = truth_record(truth, "video.mp4", codec, lossless, fps, split)
    with atomic_write(folder / "truth.json") as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    truth.sample_dir = folder
    truth.record = record
    return truth, record


def scene_for_index(seed: int, index: int, width: int = 32, height: int = 32, frames: int = 17,
                    two_object_prob: float = 0.3, shapes: Sequence[str] = SHAPES,
                    start_views: Sequence[str] = tuple(START_VIEWS), speeds: Sequence[str] = tuple(SPEEDS),
                    elevation: float = 25.0, world: WorldSpec | None = None) -> tuple[ToyScene, float]:
    """Scene ``index`` of the dataset with ``seed``, and the uniform draw that decides its split.

    ``world`` (a hidden-colour world such as W1) replaces the classic world's size and choice
    arguments with its own."""
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(index)])
    split_draw = float(rng.random())
    if world is not None and world.name != "classic":
        return world.sample(rng, frames), split_draw
    scene = sample_scene(rng, width, height, frames, two_object_prob, shapes, start_views, speeds,
                         elevation=elevation)
    return scene, split_draw


def hidden_world(name: str, reference_camera: str | None = None, two_object_prob: float | None = None,
                 shapes: Sequence[str] | None = None) -> WorldSpec:
    """The :class:`~mvs2v_toy.world.WorldSpec` ``name`` with optional overrides (validated)."""
    spec = world_spec(name)
    changes: dict[str, Any] = {}
    if reference_camera is not None:
        if reference_camera not in REFERENCE_CAMERAS:
            raise MVS2VError(f"reference camera {reference_camera!r} is unknown: use {', '.join(REFERENCE_CAMERAS)}")
        changes["reference_camera"] = reference_camera
    if two_object_prob is not None:
        changes["two_object_prob"] = float(two_object_prob)
    if shapes is not None:
        if not shapes or any(s not in SHAPES for s in shapes):
            raise MVS2VError(f"shapes must be a non-empty selection of {list(SHAPES)}, got {list(shapes)}")
        changes["shapes"] = tuple(shapes)
    return replace(spec, **changes) if changes else spec


def _manifest_row(truth: ToyTruth, scene: ToyScene, sid: str, rel: Path, split: str, seed: int, index: int,
                  flag_start_view: bool) -> dict[str, Any]:
    """The trainer's manifest row of a written sample (paths relative to the dataset folder).

    ``flag_start_view``: mark each subject's start view (the view frame 0 shows) ``frontal``, so a
    single-view model is given what frame 0 shows (the hidden-colour worlds)."""
    subjects = []
    for k, obj in enumerate(scene.objects):
        views = []
        for ref in truth.references[k]:
            entry: dict[str, Any] = {"image": (rel / ref.path.name).as_posix()}  # type: ignore[union-attr]
            if ref.label is not None:
                entry["label"] = ref.label
            else:
                entry["yaw"] = ref.yaw
            if flag_start_view and abs((ref.yaw - obj.start_yaw + 180.0) % 360.0 - 180.0) < 1e-6:
                entry["frontal"] = True
            views.append(entry)
        subjects.append({"name": obj.name, "views": views})
    tags = ["toy", f"objects-{len(scene.objects)}", *sorted({o.shape for o in scene.objects})]
    return {"id": sid, "video": (rel / "video.mp4").as_posix(), "caption": truth.caption, "subjects": subjects,
            "split": split, "tags": tags, "meta": {"truth": (rel / "truth.json").as_posix(), "seed": seed, "index": index}}


def _check_dataset_args(n_samples: int, val_fraction: float, ref_views: Sequence[str | float]) -> None:
    if int(n_samples) < 1:
        raise MVS2VError(f"n_samples must be at least 1, got {n_samples}")
    if not 0.0 <= float(val_fraction) <= 1.0:
        raise MVS2VError(f"val_fraction must be in [0, 1], got {val_fraction}")
    if not ref_views:
        raise MVS2VError("ref_views is empty: give at least one reference view, e.g. front")
    parts = [_view_file_part(v) for v in ref_views]
    if len(set(parts)) != len(parts):
        raise MVS2VError(f"ref_views {list(ref_views)} name the same view twice")
    if len(ref_views) > 4:
        warnings.warn(f"{len(ref_views)} reference views per object: the trainer's default slots_per_subject is 4; "
                      "raise it in the training config", stacklevel=3)


def _world_spec(world: str, reference_camera: str | None, two_object_prob: float, shapes: Sequence[str]):
    """The hidden-colour world's spec (None for the classic world, which only renders centred references)."""
    if world != "classic":
        return hidden_world(world, reference_camera, two_object_prob if world == "w12" else None,
                            None if tuple(shapes) == SHAPES else shapes)
    if reference_camera not in (None, "centred"):
        raise MVS2VError("the classic toy world renders centred references; use world='w1'/'w2'/'w12' for "
                         "the video or augmented reference camera")
    return None


def write_toy_dataset(out_dir: str | os.PathLike, n_samples: int, seed: int = 0, width: int = 32, height: int = 32,
                      frames: int = 17, two_object_prob: float = 0.3,
                      ref_views: Sequence[str | float] = DEFAULT_REF_VIEWS, val_fraction: float = 0.1,
                      fps: float = 8.0, shapes: Sequence[str] = SHAPES,
                      start_views: Sequence[str] = tuple(START_VIEWS), speeds: Sequence[str] = tuple(SPEEDS),
                      elevation: float = 25.0, overwrite: bool = False, world: str = "classic",
                      reference_camera: str | None = None) -> DatasetSummary:
    """Write ``n_samples`` toy samples and ``manifest.jsonl`` under ``out_dir``.

    Args:
        out_dir: destination folder (created).
        n_samples: number of samples (>= 1).
        seed: dataset seed; sample ``i`` depends only on ``(seed, i)`` and the size settings.
        width, height, frames: clip size (small by default so CPU training is feasible; the
            trainer takes the longest ``4n + 1`` run of frames, so use 9, 13, 17...).
        two_object_prob: fraction of two-object scenes (drawn per sample).
        ref_views: reference views written for every object: labels (front/left/back/right) or
            yaws in degrees; the manifest labels them accordingly.
        val_fraction: probability that a sample goes to the ``val`` split.
        fps: frame rate stored in the videos.
        shapes, start_views, speeds: restrict the random choices.
        elevation: camera elevation in degrees.
        overwrite: replace an existing ``manifest.jsonl`` in ``out_dir`` (else refuse).
        world: ``classic`` (the arguments above decide the scenes) or a hidden-colour world of
            :data:`~mvs2v_toy.world.WORLDS` (``w0``, ``w1``, ``w2``, ``w12``), which decides sizes, shapes,
            speeds and the two-object share itself (``two_object_prob`` then only applies to ``w12``)
            and flags each subject's start view (the view frame 0 shows) as its frontal view.
        reference_camera: override the world's reference camera (``video``, ``augmented``, ``centred``).

    Returns:
        A :class:`DatasetSummary`.
    """
    _check_dataset_args(n_samples, val_fraction, ref_views)
    spec = _world_spec(world, reference_camera, two_object_prob, shapes)
    out = Path(out_dir)
    manifest = out / "manifest.jsonl"
    if manifest.exists() and not overwrite:
        raise MVS2VError(f"{manifest} already exists: choose another folder or pass overwrite=True "
                         "(--overwrite) to replace the dataset")
    out.mkdir(parents=True, exist_ok=True)
    rows: list[str] = []
    n_val = n_two = 0
    lossless_all = True
    digits = max(6, len(str(int(n_samples) - 1)))
    for i in range(int(n_samples)):
        scene, split_draw = scene_for_index(seed, i, width, height, frames, two_object_prob, shapes, start_views,
                                            speeds, elevation, spec)
        split = "val" if split_draw < float(val_fraction) else "train"
        sid = f"toy-{i:0{digits}d}"
        rel = Path("samples") / f"{i:0{digits}d}"
        truth, record = write_toy_sample(out / rel, scene, sid, ref_views, fps, split)
        lossless_all &= bool(record["video_lossless"])
        row = _manifest_row(truth, scene, sid, rel, split, int(seed), i, flag_start_view=spec is not None)
        rows.append(json.dumps(row))
        n_val += split == "val"
        n_two += len(scene.objects) == 2
    settings = {"format": DATASET_FORMAT, "version": 1, "seed": int(seed), "n_samples": int(n_samples),
                "world": world, "reference_camera": spec.reference_camera if spec else "centred",
                "width": int(width), "height": int(height), "frames": int(frames),
                "two_object_prob": float(two_object_prob), "ref_views": [str(v) for v in ref_views],
                "val_fraction": float(val_fraction), "fps": float(fps), "shapes": list(shapes),
                "start_views": list(start_views), "speeds": list(speeds), "elevation": float(elevation),
                "counts": {"train": int(n_samples) - n_val, "val": n_val, "two_object": n_two},
                "lossless_video": lossless_all}
    with atomic_write(out / "dataset.json") as tmp:
        tmp.write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
    with atomic_write(manifest) as tmp:
        tmp.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return DatasetSummary(out, manifest, int(n_samples), int(n_samples) - n_val, n_val, n_two, lossless_all)


def save_toy_encoders(out_dir: str | os.PathLike, spatial_factor: int = 4, text_dim: int = 32,
                      seed: int = 0) -> dict[str, Path]:
    """Write the toy codec, text encoder and vision encoder folders (``codec/``, ``text_encoder/``,
    ``vision_encoder/``) under ``out_dir``.

    These are the ``--vae`` / ``--text-encoder`` / ``--vision-encoder`` (and the trainer's
    ``model.vae`` / ``model.text_encoder`` / ``model.vision_encoder``) paths for toy-world models.
    """
    from .codec import ToyCodec, save_codec
    from .text import ToyTextEncoder, save_toy_text_encoder
    from .vision import ToyVisionEncoder, save_toy_vision_encoder

    out = Path(out_dir)
    return {"codec": save_codec(ToyCodec(spatial_factor), out / "codec"),
            "text_encoder": save_toy_text_encoder(ToyTextEncoder(dim=text_dim, seed=seed), out / "text_encoder"),
            "vision_encoder": save_toy_vision_encoder(ToyVisionEncoder(), out / "vision_encoder")}


# ---- command line (`mvs2v toy-data`; the arguments are in .args) ----------------------------------


def run_toy_dataset(args: argparse.Namespace) -> DatasetSummary:
    """Write the dataset and the toy codec / text encoder folders next to it."""
    views: list[str | float] = []
    for v in str(args.views).split(","):
        v = v.strip()
        if v:
            views.append(v if v.lower() in START_VIEWS else float(view_spec(v)[1]))
    summary = write_toy_dataset(args.out, args.samples, args.seed, args.width, args.height, args.frames,
                                args.two_object_prob, views, args.val_fraction, args.fps, overwrite=args.overwrite,
                                world=args.world, reference_camera=args.reference_camera)
    enc = save_toy_encoders(args.out, args.codec_factor, args.text_dim, args.seed)
    print(f"wrote {summary.samples} toy samples ({summary.train} train, {summary.val} val, {summary.two_object} "
          f"with two objects) to {summary.manifest}")
    print(f"toy codec: {enc['codec']}  toy text encoder: {enc['text_encoder']}")
    return summary

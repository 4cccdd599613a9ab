"""extract-references: K reference views of the subject from each item's clip.

* Frames: with ``references.source = "held_out"`` the last ``held_out`` share of the clip is kept
  for references and the training clip (``train.mp4``) is the rest, so no reference is a training
  frame (the copy-paste failure MV-S2V warns about); with ``"augment"`` any frame may be picked and
  each crop is randomly cropped and colour-jittered, and the training clip is the whole video.
* Faces: InsightFace on up to 64 frames; frames with exactly one face; per yaw bin of
  ``references.yaw_bins`` the frame nearest the bin (within ``bin_tolerance``); the crop is the face
  box scaled by ``crop_scale``; the view of the bin nearest 0 is marked frontal.
* Objects: farthest-point sampling of ``references.count`` frames in a feature space (a local
  DINOv2 / CLIP folder, else joint colour histograms), from the earliest frame (marked frontal);
  the crop is the given mask's box, else the whole frame.
* Views the item came with (``views`` in the items file) and synthesized views are kept too.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np

from .faces import make_analyzer, manifest_yaw
from .media import augment, colour_histograms, crop, farthest_points, mask_box, read_frames, save_png
from .runner import Context, Stage

__all__ = ["REFERENCES_STAGE", "item_kind", "face_analyzer", "candidate_frames"]

MAX_SCANNED = 64


def item_kind(ctx: Context, rec: dict) -> str:
    """``face`` or ``object``: the item's own kind, else references.kind, else face when a pack is set."""
    if rec.get("kind"):
        return rec["kind"]
    if ctx.cfg.references.kind != "auto":
        return ctx.cfg.references.kind
    return "face" if ctx.cfg.faces.pack else "object"


def face_analyzer(ctx: Context) -> Any:
    f = ctx.cfg.faces
    pack = str(ctx.cfg.resolve(f.pack)) if f.pack else ""
    return ctx.resource("faces", lambda: make_analyzer(pack, f.det_size, f.det_thresh, f.providers))


def candidate_frames(n_frames: int, source: str, held_out: float) -> tuple[int, list[int]]:
    """``(train_end, candidates)``: training frames are ``[0, train_end)``; references come from ``candidates``
    (at most MAX_SCANNED, evenly spread)."""
    train_end = n_frames if source == "augment" else max(1, int(round(n_frames * (1.0 - held_out))))
    pool = list(range(n_frames)) if source == "augment" else list(range(train_end, n_frames))
    if not pool:  # a one-frame clip: nothing is held out
        pool = [n_frames - 1]
    if len(pool) > MAX_SCANNED:
        pool = [pool[int(i)] for i in np.linspace(0, len(pool) - 1, MAX_SCANNED)]
    return train_end, pool


def _video_fps(path: Path) -> float:
    import av

    with av.open(str(path)) as c:
        rate = c.streams.video[0].average_rate
    return float(rate) if rate else 16.0


def _write_training_clip(source: Path, frames: np.ndarray, dest: Path) -> Path:
    """The clip's training frames: lossless when the source is (RGB), else H.264 at CRF 18 like the source."""
    import torch

    from mvs2v_core.pipeline.video_io import video_pixel_format, write_lossless_mp4, write_mp4

    fps = _video_fps(source)
    if video_pixel_format(source) in ("rgb24", "gbrp", "bgr24"):
        write_lossless_mp4(frames, dest, fps)
        return dest
    return write_mp4(torch.from_numpy(np.ascontiguousarray(frames)), dest, fps=fps)


def _face_views(ctx: Context, rec: dict, frames: np.ndarray, pool: list[int]) -> list[dict]:
    from mvs2v_core.evaluation.faces import expand_box

    r = ctx.cfg.references
    analyzer = face_analyzer(ctx)
    found = []
    for i in pool:
        faces = analyzer.detect(frames[i])
        if len(faces) == 1:
            found.append((i, faces[0], manifest_yaw(faces[0].yaw)))
    h, w = frames.shape[1:3]
    picks = []
    for b in r.yaw_bins:
        near = [(abs(y - b), -f.score, i, f, y) for i, f, y in found if abs(y - b) <= r.bin_tolerance]
        if near:
            _, _, i, f, y = min(near, key=lambda t: t[:3])
            if all(p[1] != i for p in picks):
                picks.append((b, i, f, y))
    views = []
    frontal_bin = min((abs(p[0]) for p in picks), default=None)
    for b, i, f, y in picks:
        box = expand_box(f.box, r.crop_scale, w, h)
        if min(box[2] - box[0], box[3] - box[1]) < r.min_size:
            continue
        views.append({"frame": i, "yaw": round(y, 2), "bin": b, "box": list(box), "crop": crop(frames[i], box),
                      "frontal": abs(b) == frontal_bin and abs(b) <= 15.0, "metrics": {"det_score": round(f.score, 4)}})
    return views


def _object_views(ctx: Context, rec: dict, frames: np.ndarray, pool: list[int]) -> list[dict]:
    r = ctx.cfg.references
    h, w = frames.shape[1:3]
    box = mask_box(str(ctx.work.abs(rec["mask"])), w, h) if rec.get("mask") else (0, 0, w, h)
    crops = [crop(frames[i], box) for i in pool]
    if r.features:
        from mvs2v_core.evaluation.features import HFImageFeatureExtractor

        extractor = ctx.resource("features", lambda: HFImageFeatureExtractor(ctx.cfg.resolve(r.features)))
        import torch

        feats = extractor(torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2)).numpy()
    else:
        feats = colour_histograms(crops)
    feats = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)  # distances on the unit sphere
    picked = farthest_points(feats, r.count, 0, r.min_view_distance)
    return [{"frame": pool[j], "yaw": None, "box": list(box), "crop": crops[j], "frontal": k == 0, "metrics": {}}
            for k, j in enumerate(picked)]


def _extract(ctx: Context, rec: dict) -> tuple[str, str | None]:
    r = ctx.cfg.references
    synth = [v for v in rec["views"] if v.get("source") == "synth"]
    given = [{"image": g["image"], "yaw": g.get("yaw"), "label": g.get("label"), "frontal": bool(g.get("frontal")),
              "source": "given", "metrics": {}, "dropped": None} for g in rec.get("given_views", [])]
    if not rec.get("video"):
        rec["views"] = synth + given
        return "skipped", "no video"
    video = ctx.work.abs(rec["video"])
    frames = read_frames(video)
    train_end, pool = candidate_frames(len(frames), r.source, r.held_out)
    kind = item_kind(ctx, rec)
    found = _face_views(ctx, rec, frames, pool) if kind == "face" else _object_views(ctx, rec, frames, pool)
    folder = ctx.work.item_dir(rec["id"])
    rng = np.random.default_rng([ctx.cfg.work.seed, zlib.crc32(rec["id"].encode())])
    views = []
    for k, v in enumerate(found):
        image = v.pop("crop")
        if r.source == "augment":
            image = augment(image, rng)
        path = save_png(image, folder / f"ref_{k:02d}.png")
        views.append({**v, "image": ctx.work.rel(path), "source": "video", "dropped": None})
    if r.source == "held_out" and train_end < len(frames):
        rec["train_video"] = ctx.work.rel(_write_training_clip(video, frames[:train_end], folder / "train.mp4"))
    else:
        rec["train_video"] = rec["video"]
    rec["kind"] = kind
    rec["frames"] = {"total": int(len(frames)), "train": int(train_end)}
    rec["views"] = views + synth + given
    return "done", None


def _prepare(ctx: Context, todo: list[dict]) -> None:
    if any(item_kind(ctx, rec) == "face" and rec.get("video") for rec in todo):
        face_analyzer(ctx)  # a missing pack fails here, before any item


REFERENCES_STAGE = Stage("extract-references", _extract, _prepare, help="pick K views from each clip (yaw bins / FPS)")

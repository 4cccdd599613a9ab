"""Ground truth of a toy sample: exact frames, object / face maps, visible faces, reference views.

The truth sidecar (``truth.json`` in each sample folder written by
:func:`mvs2v_toy.dataset.write_toy_dataset`) stores the full :class:`ToyScene`, so the exact
frames and per-pixel object / face ids are re-rendered on load (the mp4 holds the same uint8
frames, and a SHA-256 of them in the sidecar proves that the renderer still agrees). It also lists,
for people and other tools, the yaw of every object in every frame, the faces visible in every
frame and in every reference view, and the faces the references show that frame 0 does not.

Sidecar format (``format: mvs2v-toy-truth``, ``version: 1``)::

    {"format": "mvs2v-toy-truth", "version": 1, "renderer_version": 1,
     "id": "toy-000003", "caption": "...", "split": "train",
     "scene": {...ToyScene.to_dict()...},
     "video": "video.mp4", "video_codec": "libx264rgb", "video_lossless": true, "fps": 8,
     "frames_sha256": "<sha256 of the uint8 frames [F, H, W, 3], C order>",
     "objects": [{"index": 0, "name": "red_cube", "shape": "cube", "faces": [...],
                  "face_colours": {...}, "face_patterns": {...},
                  "start_yaw": 180.0, "direction": "left", "speed_deg_per_frame": 11.25,
                  "yaw_per_frame": [...], "visible_faces_per_frame": [[...], ...],
                  "references": [{"image": "red_cube_front.png", "label": "front", "yaw": 0.0,
                                  "visible_faces": [...]}, ...],
                  "faces_in_references_not_in_first_frame": [...],
                  "target_faces": [...]}]}

``target_faces`` are those of ``faces_in_references_not_in_first_frame`` that some later frame
shows: the faces the face-accuracy metric scores. Paths are relative to the sample folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ._core import MVS2VError, parse_view_label
from .render import (RENDERER_VERSION, TARGET_HEIGHT, render_objects, render_reference, render_video, to_uint8,
                     visible_faces)
from .world import ToyScene, caption_for

__all__ = ["TRUTH_FORMAT", "TRUTH_VERSION", "TRUTH_FILE", "DEFAULT_REF_VIEWS", "ReferenceView", "ToyTruth",
           "truth_from_scene", "load_truth", "frames_sha256", "view_spec", "reference_size", "make_reference"]

TRUTH_FORMAT = "mvs2v-toy-truth"
TRUTH_VERSION = 1
TRUTH_FILE = "truth.json"
DEFAULT_REF_VIEWS: tuple[str, ...] = ("front", "left", "back", "right")


def frames_sha256(frames: np.ndarray) -> str:
    """SHA-256 of uint8 frames ``[F, H, W, 3]`` (C order)."""
    a = np.ascontiguousarray(frames, dtype=np.uint8)
    return hashlib.sha256(a.tobytes()).hexdigest()


def view_spec(view: str | float | int) -> tuple[str | None, float]:
    """``"left"`` -> ``("left", 90.0)``; ``45`` -> ``(None, 45.0)``; a numeric string is a yaw."""
    yaw = parse_view_label(view)
    if yaw is None:
        raise MVS2VError(f"reference view {view!r} is empty: use front/left/back/right or a yaw in degrees")
    text = str(view).strip().lower() if isinstance(view, str) else ""
    label = text if text in DEFAULT_REF_VIEWS else None
    return label, float(yaw)


@dataclass
class ReferenceView:
    """One reference view of one object.

    Attributes:
        object_index: which object of the scene.
        label: ``front``/``left``/``back``/``right`` or None for a plain yaw.
        yaw: the object's yaw in the view (degrees).
        image: uint8 ``[H, W, 3]``: the object alone, centred, on white.
        face_id: int16 ``[H, W]`` face index (-1 = background) of the render.
        visible: faces visible in the view (:func:`~mvs2v_toy.render.visible_faces`).
        path: the PNG in the sample folder, or None when the view was rendered on demand.
    """

    object_index: int
    label: str | None
    yaw: float
    image: np.ndarray
    face_id: np.ndarray
    visible: list[str]
    path: Path | None = None

    @property
    def name(self) -> str:
        return self.label if self.label is not None else f"yaw{self.yaw:g}"


@dataclass
class ToyTruth:
    """Everything known about a toy sample.

    Attributes:
        scene: the scene.
        caption: its caption.
        frames: uint8 ``[F, H, W, 3]``, the exact frames.
        object_id, face_id: int16 ``[F, H, W]`` per-pixel object index / face index (-1 = floor).
        references: per object, its reference views (those of the sample, in manifest order).
        sample_id: the manifest id ("" for a scene made on the spot).
        sample_dir: the sample folder, or None.
    """

    scene: ToyScene
    caption: str
    frames: np.ndarray
    object_id: np.ndarray
    face_id: np.ndarray
    references: list[list[ReferenceView]]
    sample_id: str = ""
    sample_dir: Path | None = None
    record: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    def object_mask(self, index: int) -> np.ndarray:
        """bool ``[F, H, W]``: where object ``index`` is seen."""
        return self.object_id == index

    def visible_faces(self, index: int, t: int) -> list[str]:
        """Faces of object ``index`` visible in frame ``t``."""
        return visible_faces(self.object_id[t], self.face_id[t], index, self.scene.objects[index].faces)

    def reference(self, index: int, view: str | float | int) -> ReferenceView:
        """The sample's reference view of object ``index`` at ``view`` (label or yaw), else a new render.

        A view the sample does not hold is rendered exactly as the dataset writer renders them.
        """
        label, yaw = view_spec(view)
        for ref in self.references[index]:
            if abs((ref.yaw - yaw + 180.0) % 360.0 - 180.0) < 1e-6:
                return ref
        size = self.references[index][0].image.shape[:2] if self.references[index] else (self.scene.height,
                                                                                           self.scene.width)
        return make_reference(self.scene, index, label if label is not None else yaw, size[1], size[0])

    def yaw_per_frame(self, index: int) -> list[float]:
        return [float(y) for y in self.scene.yaws()[:, index]]


def _augmentation(obj_record: Mapping[str, Any], yaw: float) -> tuple[float, float, float, float]:
    """``(zoom, shift_x, shift_y, yaw_jitter)`` of an augmented reference: random per object and view,
    but a pure function of them, so a stored sample re-renders to the same image."""
    key = zlib.crc32(json.dumps(obj_record, sort_keys=True).encode("utf-8"))
    rng = np.random.default_rng([key, int(round(yaw * 100)) % 36000])
    return (float(rng.uniform(0.75, 1.05)), float(rng.uniform(-0.12, 0.12)), float(rng.uniform(-0.1, 0.1)),
            float(rng.uniform(-15.0, 15.0)))


def reference_size(scene: ToyScene) -> tuple[int, int]:
    """Default ``(width, height)`` of a scene's reference images: the video size for centred
    references, a square of the video's height for the video camera (one object's share of a W2 frame)."""
    if scene.reference_camera == "centred":
        return scene.width, scene.height
    side = min(scene.width, scene.height)
    return side, side


def make_reference(scene: ToyScene, index: int, view: str | float | int, width: int, height: int,
                   path: Path | None = None) -> ReferenceView:
    """Render object ``index`` of ``scene`` alone at ``view`` (a label or a yaw in degrees), with the
    scene's reference camera (:attr:`~mvs2v_toy.world.ToyScene.reference_camera`)."""
    label, yaw = view_spec(view)
    obj = scene.objects[index]
    if scene.reference_camera == "centred":
        r = render_reference(obj, yaw, width, height, scene.elevation)
    else:
        zoom, dx, dy, jitter = (1.0, 0.0, 0.0, 0.0)
        if scene.reference_camera == "augmented":
            zoom, dx, dy, jitter = _augmentation(obj.to_dict(), yaw)
        r = render_objects([obj], [yaw + jitter], width, height, scene.elevation, scene.half_extent / zoom,
                           (dx, TARGET_HEIGHT + dy, 0.0), floor=None, positions=[(0.0, 0.0)])
    return ReferenceView(index, label, yaw, to_uint8(r.image), r.face_id,
                         visible_faces(r.object_id, r.face_id, 0, obj.faces), path)


def truth_from_scene(scene: ToyScene, ref_views: Sequence[str | float] = DEFAULT_REF_VIEWS,
                     ref_size: tuple[int, int] | None = None, sample_id: str = "") -> ToyTruth:
    """Render a scene's truth and its reference views.

    Args:
        scene: the scene.
        ref_views: the reference views of every object (labels or yaws).
        ref_size: ``(width, height)`` of the reference images; default the video size.
        sample_id: id to report.
    """
    if not ref_views:
        raise MVS2VError("ref_views is empty: give at least one reference view (e.g. front)")
    w, h = ref_size if ref_size is not None else reference_size(scene)
    video = render_video(scene)
    refs = [[make_reference(scene, i, v, w, h) for v in ref_views] for i in range(len(scene.objects))]
    return ToyTruth(scene, caption_for(scene), video.frames, video.object_id, video.face_id, refs, sample_id)


def reference_faces_not_in_first_frame(truth: ToyTruth, index: int,
                                       refs: Sequence[ReferenceView] | None = None) -> tuple[list[str], list[str]]:
    """``(faces the references show but frame 0 does not, those of them some later frame shows)``."""
    obj = truth.scene.objects[index]
    refs = truth.references[index] if refs is None else refs
    in_refs = {f for r in refs for f in r.visible}
    first = set(truth.visible_faces(index, 0))
    later = {f for t in range(1, truth.num_frames) for f in truth.visible_faces(index, t)}
    missing = [f for f in obj.faces if f in in_refs and f not in first]
    return missing, [f for f in missing if f in later]


def truth_record(truth: ToyTruth, video: str, codec: str, lossless: bool, fps: float, split: str) -> dict[str, Any]:
    """The sidecar JSON content for a written sample (paths relative to the sample folder)."""
    objects = []
    for i, obj in enumerate(truth.scene.objects):
        missing, target = reference_faces_not_in_first_frame(truth, i)
        objects.append({
            "index": i, "name": obj.name, "shape": obj.shape, "faces": list(obj.faces),
            "face_colours": dict(obj.colours), "face_patterns": dict(obj.patterns),
            "start_yaw": obj.start_yaw, "direction": obj.direction,
            "speed_deg_per_frame": obj.speed_deg_per_frame(truth.scene.frames),
            "yaw_per_frame": truth.yaw_per_frame(i),
            "visible_faces_per_frame": [truth.visible_faces(i, t) for t in range(truth.num_frames)],
            "references": [{"image": r.path.name if r.path else None, "label": r.label, "yaw": r.yaw,
                            "visible_faces": r.visible} for r in truth.references[i]],
            "faces_in_references_not_in_first_frame": missing,
            "target_faces": target,
        })
    return {"format": TRUTH_FORMAT, "version": TRUTH_VERSION, "renderer_version": RENDERER_VERSION,
            "id": truth.sample_id, "caption": truth.caption, "split": split, "scene": truth.scene.to_dict(),
            "video": video, "video_codec": codec, "video_lossless": bool(lossless), "fps": float(fps),
            "frames_sha256": frames_sha256(truth.frames), "objects": objects}


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except (OSError, ValueError) as exc:
        raise MVS2VError(f"cannot read the reference view {path} ({exc}); re-generate the toy sample") from None


def load_truth(source: str | os.PathLike | Mapping[str, Any] | ToyScene | ToyTruth) -> ToyTruth:
    """Load a sample's ground truth.

    Args:
        source: a sample folder (holding ``truth.json``), the ``truth.json`` file itself, its
            parsed content (a dict; references are then rendered, not read), a :class:`ToyScene`
            (rendered with the default reference views), or a :class:`ToyTruth` (returned as is).

    Raises:
        MVS2VError: missing or malformed sidecar, another format version, or a renderer that no
            longer reproduces the stored frames (re-generate the dataset).
    """
    if isinstance(source, ToyTruth):
        return source
    if isinstance(source, ToyScene):
        return truth_from_scene(source)
    sample_dir: Path | None = None
    if isinstance(source, Mapping):
        record = dict(source)
    else:
        p = Path(source)
        if p.is_dir():
            sample_dir, p = p, p / TRUTH_FILE
        else:
            sample_dir = p.parent
        if not p.is_file():
            raise MVS2VError(f"toy ground truth {p} not found: pass a sample folder written by write_toy_dataset "
                             f"(it holds {TRUTH_FILE}) or that file")
        try:
            record = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise MVS2VError(f"cannot read the toy ground truth {p} ({exc}); re-generate the sample") from None
    if not isinstance(record, dict) or record.get("format") != TRUTH_FORMAT:
        raise MVS2VError(f"{source} is not a toy ground-truth record (format {TRUTH_FORMAT!r} expected)")
    if record.get("version") != TRUTH_VERSION:
        raise MVS2VError(f"toy ground truth version {record.get('version')} is not supported (this mvs2v reads "
                         f"version {TRUTH_VERSION}); re-generate the dataset with this mvs2v")
    scene = ToyScene.from_dict(record.get("scene", {}))
    video = render_video(scene)
    stored = record.get("frames_sha256")
    if stored is not None and stored != frames_sha256(video.frames):
        raise MVS2VError(f"the toy renderer no longer reproduces sample {record.get('id')!r} (stored renderer "
                         f"version {record.get('renderer_version')}, this one {RENDERER_VERSION}); re-generate "
                         "the dataset with write_toy_dataset")
    refs: list[list[ReferenceView]] = []
    objects = record.get("objects", [])
    if len(objects) != len(scene.objects):
        raise MVS2VError(f"toy ground truth {source}: {len(objects)} object records for {len(scene.objects)} objects")
    for i, rec in enumerate(objects):
        views = []
        for ref in rec.get("references", []):
            view = ref.get("label") if ref.get("label") is not None else ref.get("yaw")
            path = sample_dir / ref["image"] if sample_dir is not None and ref.get("image") else None
            size = reference_size(scene)
            image = None
            if path is not None:
                if not path.is_file():
                    raise MVS2VError(f"reference view {path} of toy sample {record.get('id')!r} is missing; "
                                     "re-generate the sample")
                image = _read_png(path)
                size = (image.shape[1], image.shape[0])
            rv = make_reference(scene, i, view, size[0], size[1], path)
            if image is not None and not np.array_equal(image, rv.image):
                raise MVS2VError(f"reference view {path} differs from its render: the file was changed or the "
                                 "renderer differs; re-generate the sample")
            views.append(rv)
        refs.append(views)
    return ToyTruth(scene, str(record.get("caption", caption_for(scene))), video.frames, video.object_id,
                    video.face_id, refs, str(record.get("id", "")), sample_dir, record)

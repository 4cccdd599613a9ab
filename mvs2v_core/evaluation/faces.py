"""Faces in images: InsightFace detection (SCRFD) + ArcFace embeddings from a local model pack, and head yaw.

A small module of its own (the evaluation's FaceSim and subject crops use it; data curation can too):
nothing here knows about metrics or videos.

* :class:`FaceAnalyzer` -- loads an InsightFace *pack folder* (``buffalo_l`` layout: ``det_10g.onnx``
  the SCRFD detector with 5 landmarks, ``w600k_r50.onnx`` the ArcFace recogniser) through the
  ``insightface`` library's own model classes (``insightface.model_zoo.get_model``) on onnxruntime;
  nothing is downloaded. Images are RGB ``[H, W, 3]`` uint8 (converted to InsightFace's BGR here).
* :func:`yaw_from_landmarks` -- head yaw in degrees from the 5 landmarks (formula below).
* :func:`yaw_bin` -- the ``|yaw|`` bin label of a face (``"0-15"``, ``"15-30"``, ...).

Yaw from 5 points (left eye, right eye, nose tip, left and right mouth corner, in image order).
With ``m`` the eye midpoint, ``u`` the unit vector from the image-left eye to the image-right eye
and ``a`` half the eye distance::

    r   = <nose - m, u> / a
    yaw = degrees(atan(r / NOSE_DEPTH_RATIO))

This inverts an orthographic head turned by ``yaw`` about its vertical axis: the eyes sit at
``x = +-A`` in the face plane and the nose tip ``D`` in front of it, so they project to ``+-A cos(yaw)``
and ``D sin(yaw)`` and ``r = (D / A) tan(yaw)``. ``NOSE_DEPTH_RATIO = D / A = 0.85`` is a generic
adult face (pupils +-31.5 mm, nose tip about 27 mm in front of them). Projecting on the eye axis
makes it independent of in-plane roll. Positive yaw: the nose points to the image's right. It is an
estimate (perspective, pitch and landmark noise move it by several degrees), good for binning.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import CheckpointError, MVS2VError

__all__ = ["DetectedFace", "FaceAnalyzer", "DETECTOR_FILE", "RECOGNISER_FILE", "YAW_BIN_EDGES",
           "NOSE_DEPTH_RATIO", "yaw_from_landmarks", "yaw_bin", "yaw_bin_labels", "box_iou", "expand_box"]

DETECTOR_FILE = "det_10g.onnx"
RECOGNISER_FILE = "w600k_r50.onnx"
NOSE_DEPTH_RATIO = 0.85
# Bins of |yaw| in degrees: [0, 15), [15, 30), [30, 45), [45, 60), [60, 90].
YAW_BIN_EDGES: tuple[float, ...] = (0.0, 15.0, 30.0, 45.0, 60.0, 90.0)


def yaw_from_landmarks(kps: Any, depth_ratio: float = NOSE_DEPTH_RATIO) -> np.ndarray:
    """Head yaw in degrees from 5 landmarks (see the module docstring for the formula).

    Args:
        kps: ``[5, 2]`` or ``[N, 5, 2]`` pixel coordinates (left eye, right eye, nose, mouth left, mouth right).
        depth_ratio: nose depth over half the eye distance.

    Returns:
        float64 array of the leading shape (``[]`` for one face, ``[N]``).
    """
    p = np.asarray(kps, dtype=np.float64)
    if p.shape[-2:] != (5, 2):
        raise MVS2VError(f"yaw_from_landmarks expects landmarks [..., 5, 2], got {p.shape}")
    left, right, nose = p[..., 0, :], p[..., 1, :], p[..., 2, :]
    axis = right - left
    half = np.linalg.norm(axis, axis=-1) / 2.0
    u = axis / np.maximum(2.0 * half, 1e-12)[..., None]
    r = np.sum((nose - (left + right) / 2.0) * u, axis=-1) / np.maximum(half, 1e-12)
    return np.degrees(np.arctan(r / depth_ratio))


def yaw_bin_labels(edges: Sequence[float] = YAW_BIN_EDGES) -> list[str]:
    """Labels of the ``|yaw|`` bins: ``["0-15", "15-30", ...]``."""
    return [f"{edges[i]:g}-{edges[i + 1]:g}" for i in range(len(edges) - 1)]


def yaw_bin(yaw: float, edges: Sequence[float] = YAW_BIN_EDGES) -> str:
    """The bin label of ``|yaw|`` (the last bin includes its upper edge; beyond it counts as the last bin)."""
    a = abs(float(yaw))
    labels = yaw_bin_labels(edges)
    for i, label in enumerate(labels):
        if a < edges[i + 1]:
            return label
    return labels[-1]


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class DetectedFace:
    """One detected face.

    Attributes:
        box: ``(x0, y0, x1, y1)`` in pixels of the image it was found in.
        score: detector confidence in ``[0, 1]``.
        kps: ``[5, 2]`` landmarks (left eye, right eye, nose, mouth left, mouth right), pixels.
        yaw: degrees from :func:`yaw_from_landmarks`.
        embedding: ``[D]`` L2-normalized ArcFace embedding, when computed.
    """

    box: tuple[float, float, float, float]
    score: float
    kps: np.ndarray
    yaw: float
    embedding: np.ndarray | None = field(default=None, repr=False)

    @property
    def area(self) -> float:
        return max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1])


def _as_rgb_uint8(image: Any) -> np.ndarray:
    """``[H, W, 3]`` uint8, or float in [0, 1] -> uint8 ``[H, W, 3]``."""
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[-1] != 3:
        raise MVS2VError(f"a face image must be RGB [H, W, 3], got {a.shape}")
    if a.dtype != np.uint8:
        a = (np.clip(a.astype(np.float64), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return a


def _import_insightface() -> Any:
    try:
        import insightface.model_zoo as zoo
        from insightface.utils import face_align
    except ImportError as exc:
        raise MVS2VError(f"face analysis needs insightface and onnxruntime ({exc}): pip install insightface "
                         "onnxruntime (or pip install mvs2v[eval])") from None
    return zoo, face_align


class FaceAnalyzer:
    """SCRFD detection + ArcFace embeddings from an InsightFace pack folder (through the insightface library).

    Args:
        folder: the pack (e.g. ``~/.insightface/models/buffalo_l``) holding ``detector_file`` and
            ``recogniser_file``.
        det_size: the detector's square input side (images are letterboxed into it); 640 as InsightFace.
            A detector exported with a fixed input size uses that size.
        det_thresh: minimum detector score.
        providers: onnxruntime providers (default CPU).
        detector_file, recogniser_file: file names inside ``folder`` (antelopev2: ``scrfd_10g_bnkps.onnx``,
            ``glintr100.onnx``).
    """

    def __init__(self, folder: str | os.PathLike, det_size: int = 640, det_thresh: float = 0.5,
                 providers: Sequence[str] | None = None, detector_file: str = DETECTOR_FILE,
                 recogniser_file: str = RECOGNISER_FILE) -> None:
        root = Path(folder).expanduser()
        if not root.is_dir():
            raise CheckpointError(f"InsightFace pack folder not found: '{root}' (expected {detector_file} and "
                                  f"{recogniser_file}, e.g. the buffalo_l pack)")
        absent = [f for f in (detector_file, recogniser_file) if not (root / f).is_file()]
        if absent:
            raise CheckpointError(f"InsightFace pack '{root}' holds no {', '.join(absent)}")
        zoo, self._face_align = _import_insightface()
        providers = list(providers or ["CPUExecutionProvider"])
        try:
            self.detector = zoo.get_model(str(root / detector_file), providers=providers)
            self.recogniser = zoo.get_model(str(root / recogniser_file), providers=providers)
        except Exception as exc:  # onnxruntime / onnx raise many types on a bad file
            raise CheckpointError(f"cannot load the InsightFace pack '{root}': {exc}") from None
        if getattr(self.detector, "taskname", None) != "detection" or not getattr(self.detector, "use_kps", False):
            raise CheckpointError(f"'{root / detector_file}' is not an SCRFD detector with 5 landmarks")
        if getattr(self.recogniser, "taskname", None) != "recognition":
            raise CheckpointError(f"'{root / recogniser_file}' is not an ArcFace recogniser")
        shape = self.detector.session.get_inputs()[0].shape  # a detector exported at a fixed size keeps it
        fixed = len(shape) == 4 and all(isinstance(v, int) and v > 0 for v in shape[2:])
        self.det_size = (int(shape[3]), int(shape[2])) if fixed else (int(det_size), int(det_size))
        self.detector.prepare(0, input_size=self.det_size, det_thresh=float(det_thresh))
        self.recogniser.prepare(0)
        self.det_thresh = float(det_thresh)
        self.folder = root
        self.name = f"insightface:{root.name}"

    def detect(self, image: Any, max_faces: int = 0) -> list[DetectedFace]:
        """Faces in an RGB image ``[H, W, 3]`` (uint8 or float in [0, 1]), highest score first, without embeddings.

        ``max_faces > 0`` keeps the largest, most central ones (InsightFace's rule).
        """
        bgr = np.ascontiguousarray(_as_rgb_uint8(image)[..., ::-1])
        det, kpss = self.detector.detect(bgr, input_size=self.det_size, max_num=int(max_faces))
        faces = []
        for i in range(det.shape[0]):
            kps = np.asarray(kpss[i], dtype=np.float64)
            box = tuple(float(v) for v in det[i, :4])
            faces.append(DetectedFace(box, float(det[i, 4]), kps, float(yaw_from_landmarks(kps))))
        return sorted(faces, key=lambda f: -f.score)

    def embed(self, image: Any, faces: Sequence[DetectedFace]) -> np.ndarray:
        """ArcFace embeddings ``[N, D]`` (L2-normalized) of ``faces`` in ``image``; also stored on each face.

        Each face is aligned to ArcFace's 5-point template (InsightFace's ``norm_crop``) first.
        """
        if not faces:
            return np.zeros((0, 0), dtype=np.float32)
        bgr = np.ascontiguousarray(_as_rgb_uint8(image)[..., ::-1])
        size = int(self.recogniser.input_size[0])
        with warnings.catch_warnings():  # insightface's alignment calls a scikit-image API deprecated in 0.26
            warnings.simplefilter("ignore", FutureWarning)
            crops = [self._face_align.norm_crop(bgr, landmark=f.kps.astype(np.float32), image_size=size)
                     for f in faces]
        feats = np.asarray(self.recogniser.get_feat(crops), dtype=np.float64).reshape(len(faces), -1)
        feats = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
        for f, e in zip(faces, feats):
            f.embedding = e.astype(np.float32)
        return feats.astype(np.float32)

    def analyse(self, image: Any, max_faces: int = 0) -> list[DetectedFace]:
        """:meth:`detect` then :meth:`embed`: faces with their embeddings, highest score first."""
        faces = self.detect(image, max_faces)
        self.embed(image, faces)
        return faces

    def main_face(self, image: Any) -> DetectedFace | None:
        """The largest, most central face of an image (a reference portrait), with its embedding; None if none."""
        faces = self.analyse(image, max_faces=1)
        return faces[0] if faces else None


def expand_box(box: Sequence[float], scale: float, width: int, height: int) -> tuple[int, int, int, int]:
    """``box`` scaled by ``scale`` about its centre, clipped to the image, as integer ``(x0, y0, x1, y1)``."""
    cx, cy = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
    hw, hh = (box[2] - box[0]) * scale / 2.0, (box[3] - box[1]) * scale / 2.0
    x0, y0 = max(0, int(math.floor(cx - hw))), max(0, int(math.floor(cy - hh)))
    x1, y1 = min(width, int(math.ceil(cx + hw))), min(height, int(math.ceil(cy + hh)))
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)

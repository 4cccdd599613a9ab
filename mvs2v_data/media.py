"""Images and videos for the stages: reading (a bad file is an :class:`ItemError`), atomic PNG writes,
blur score, colour-histogram features and farthest-point sampling."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mvs2v_core.errors import MVS2VError
from mvs2v_core.utils import atomic_write

from .runner import ItemError

__all__ = ["read_rgb", "read_frames", "save_png", "blur_score", "colour_histograms", "farthest_points", "crop"]


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """``uint8 [H, W, 3]`` RGB of an image file (alpha onto white); an unreadable file is an ItemError."""
    from mvs2v_core.pipeline.images import load_image

    try:
        return np.asarray(load_image(path), dtype=np.uint8)
    except MVS2VError as exc:
        raise ItemError(str(exc)) from None


def read_frames(path: str | os.PathLike) -> np.ndarray:
    """``uint8 [F, H, W, 3]`` of a video file; an unreadable file is an ItemError."""
    from mvs2v_core.pipeline.video_io import read_video

    try:
        return read_video(path).numpy()
    except MVS2VError as exc:
        raise ItemError(str(exc)) from None


def save_png(image: np.ndarray, path: Path) -> Path:
    """Write ``uint8 [H, W, 3]`` as PNG atomically (an OSError such as a full disk propagates)."""
    from PIL import Image

    with atomic_write(path, suffix=".png") as tmp:
        Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(tmp, format="PNG")
    return path


def blur_score(image: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image (OpenCV): low = blurry (an image with no edges scores 0)."""
    import cv2

    grey = cv2.cvtColor(np.ascontiguousarray(image, dtype=np.uint8), cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def colour_histograms(images: Sequence[np.ndarray], bins: int = 8) -> np.ndarray:
    """``[N, bins**3]`` L2-normalized joint RGB histograms: the cheap feature when no DINOv2 / CLIP is set."""
    out = []
    for im in images:
        q = (np.asarray(im, dtype=np.int64) * bins) // 256
        idx = (q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]
        h = np.bincount(idx.ravel(), minlength=bins ** 3).astype(np.float64)
        out.append(h / max(np.linalg.norm(h), 1e-12))
    return np.stack(out)


def farthest_points(features: np.ndarray, k: int, first: int = 0, min_distance: float = 0.0) -> list[int]:
    """Indices of at most ``k`` rows of ``features [N, D]`` by farthest-point sampling from row ``first``.

    Each next pick is the row whose distance to the nearest picked row is largest (ties: lowest index);
    picking stops early when that distance is not above ``min_distance`` (only near-duplicates left).
    """
    n = len(features)
    picked = [int(first)]
    dist = np.linalg.norm(features - features[first], axis=1)
    while len(picked) < min(k, n):
        dist[picked] = -1.0
        nxt = int(np.argmax(dist))
        if dist[nxt] <= max(min_distance, 0.0):  # only (near-)duplicates of picked rows left
            break
        picked.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(features - features[nxt], axis=1))
    return picked


def crop(image: np.ndarray, box: Sequence[int]) -> np.ndarray:
    x0, y0, x1, y1 = (int(v) for v in box)
    return np.ascontiguousarray(image[y0:y1, x0:x1])


def mask_box(mask_path: str, width: int, height: int) -> tuple[int, int, int, int]:
    """The bounding box of a mask image's non-black pixels, scaled to ``width`` x ``height``."""
    m = read_rgb(mask_path).max(axis=-1)
    ys, xs = np.nonzero(m > 127)
    if len(xs) == 0:
        raise ItemError(f"the mask '{mask_path}' is empty (no white pixels): paint the subject white")
    sx, sy = width / m.shape[1], height / m.shape[0]
    x1, y1 = int(np.ceil((xs.max() + 1) * sx)), int(np.ceil((ys.max() + 1) * sy))
    return int(xs.min() * sx), int(ys.min() * sy), x1, y1


def augment(image: np.ndarray, rng: Any) -> np.ndarray:
    """A random crop (85-100 %) and brightness / contrast jitter: a reference no longer pixel-equal to a frame."""
    h, w = image.shape[:2]
    s = rng.uniform(0.85, 1.0)
    ch, cw = max(1, int(h * s)), max(1, int(w * s))
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    out = image[y:y + ch, x:x + cw].astype(np.float64)
    out = (out - out.mean()) * rng.uniform(0.9, 1.1) + out.mean() * rng.uniform(0.9, 1.1)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)

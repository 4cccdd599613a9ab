"""Reading training media: video frames, resolution buckets, reference views and their augmentation.

Reference views go through exactly the preprocessing of inference (:func:`load_image`, core's
single image decoder: every Pillow mode, 16-bit and float images scaled, NaN refused; then
:func:`letterbox` onto a white canvas of the video's size, then :func:`to_tensor`), so a trained
adapter sees the same kind of reference image in ComfyUI / ``mvs2v generate``. Augmented variants
(against the copy-paste failure, where the model pastes a reference frame into the video) change
the view *before* that letterboxing: a random crop, colour jitter, and a smaller random placement
of the subject on the white canvas.
"""

from __future__ import annotations

import math
import os
import random
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from PIL import Image, ImageEnhance

from mvs2v_core.errors import MVS2VError
from mvs2v_core.pipeline.images import WHITE, letterbox, load_image, to_tensor

__all__ = [
    "probe_video", "read_frames", "frame_indices", "pick_bucket", "resize_cover", "load_clip",
    "reference_view", "augment_view",
]


def _import_av():
    try:
        import av
    except ImportError:  # pragma: no cover - av is a train dependency
        raise MVS2VError("reading videos needs PyAV: pip install av (or pip install mvs2v[train])") from None
    return av


def probe_video(path: str | os.PathLike) -> tuple[int, int, int]:
    """``(frames, width, height)`` of a video; frames are counted by decoding when the header lacks them."""
    av = _import_av()
    p = Path(path)
    try:
        with av.open(str(p)) as container:
            if not container.streams.video:
                raise MVS2VError(f"video {p} has no video stream")
            stream = container.streams.video[0]
            width, height = int(stream.codec_context.width), int(stream.codec_context.height)
            n = int(stream.frames or 0)
            if n <= 0:
                n = sum(1 for _ in container.decode(video=0))
    except MVS2VError:
        raise
    except Exception as e:
        raise MVS2VError(f"cannot read video {p}: {e}") from None
    if n <= 0 or width <= 0 or height <= 0:
        raise MVS2VError(f"video {p} has no decodable frames")
    return n, width, height


def frame_indices(available: int, frames: int, stride: int, start: str) -> list[int]:
    """Indices of the frames to use: the longest 4n+1 run (at most ``frames``) at ``stride``.

    Args:
        available: frames in the file.
        frames: wanted frames (4n+1).
        stride: take every ``stride``-th frame.
        start: ``first`` or ``center``.
    """
    usable = min(frames, 1 + (available - 1) // stride)
    usable = 1 + (usable - 1) // 4 * 4
    span = (usable - 1) * stride + 1
    first = 0 if start == "first" else max(0, (available - span) // 2)
    return [first + i * stride for i in range(usable)]


def read_frames(path: str | os.PathLike, indices: Sequence[int]) -> torch.Tensor:
    """Decode only up to the last wanted frame: ``uint8 [len(indices), H, W, 3]``."""
    av = _import_av()
    wanted = set(indices)
    last = max(indices)
    got: dict[int, torch.Tensor] = {}
    try:
        with av.open(str(path)) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i in wanted:
                    got[i] = torch.from_numpy(frame.to_ndarray(format="rgb24"))
                if i >= last:
                    break
    except Exception as e:
        raise MVS2VError(f"cannot decode video {path}: {e}") from None
    if len(got) != len(wanted):
        raise MVS2VError(f"video {path} ended after {len(got)} of the {len(wanted)} frames needed")
    return torch.stack([got[i] for i in indices])


def pick_bucket(width: int, height: int, resolutions: Sequence[Sequence[int]]) -> tuple[int, int]:
    """The ``(width, height)`` bucket whose aspect ratio is nearest (in log space) to the video's."""
    aspect = math.log(width / height)
    best = min(resolutions, key=lambda r: (abs(math.log(r[0] / r[1]) - aspect), -r[0] * r[1]))
    return int(best[0]), int(best[1])


def resize_cover(frames: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """``uint8 [F, H0, W0, 3]`` -> float ``[3, F, height, width]`` in [-1, 1]: scale to cover, centre-crop."""
    x = frames.permute(0, 3, 1, 2).float() / 127.5 - 1.0  # [F, 3, H0, W0]
    h0, w0 = x.shape[-2:]
    scale = max(width / w0, height / h0)
    nh, nw = max(height, round(h0 * scale)), max(width, round(w0 * scale))
    if (nh, nw) != (h0, w0):
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
    top, left = (nh - height) // 2, (nw - width) // 2
    x = x[..., top:top + height, left:left + width].clamp(-1.0, 1.0)
    return x.permute(1, 0, 2, 3).contiguous()


def load_clip(path: str | os.PathLike, frames: int, stride: int, start: str,
              resolutions: Sequence[Sequence[int]]) -> tuple[torch.Tensor, tuple[int, int]]:
    """A training clip: float ``[3, F, H, W]`` in [-1, 1] and its bucket ``(width, height)``."""
    n, w, h = probe_video(path)
    idx = frame_indices(n, frames, stride, start)
    bucket = pick_bucket(w, h, resolutions)
    return resize_cover(read_frames(path, idx), *bucket), bucket


# ---- reference views -------------------------------------------------------------------------------


def _shift_hue(image: Image.Image, turns: float) -> Image.Image:
    if abs(turns) < 1e-6:
        return image
    h, s, v = image.convert("HSV").split()
    offset = int(round(turns * 255)) % 256
    h = h.point(lambda x: (x + offset) % 256)
    return Image.merge("HSV", (h, s, v)).convert("RGB")


def augment_view(image: Image.Image, width: int, height: int, rng: random.Random, *, crop: Sequence[float],
                 scale: Sequence[float], brightness: float, contrast: float, saturation: float,
                 hue: float) -> Image.Image:
    """A randomly cropped, colour-jittered view, letterboxed at a random smaller size and place.

    Returns:
        An RGB image of exactly ``width`` x ``height`` on white, like :func:`letterbox` makes.
    """
    w, h = image.size
    keep = rng.uniform(crop[0], crop[1])
    cw, ch = max(1, round(w * keep)), max(1, round(h * keep))
    x0, y0 = rng.randint(0, w - cw), rng.randint(0, h - ch)
    img = image.crop((x0, y0, x0 + cw, y0 + ch))
    img = ImageEnhance.Brightness(img).enhance(rng.uniform(1 - brightness, 1 + brightness))
    img = ImageEnhance.Contrast(img).enhance(rng.uniform(1 - contrast, 1 + contrast))
    img = ImageEnhance.Color(img).enhance(rng.uniform(1 - saturation, 1 + saturation))
    img = _shift_hue(img, rng.uniform(-hue, hue))
    s = rng.uniform(scale[0], scale[1])
    inner_w, inner_h = max(1, round(width * s)), max(1, round(height * s))
    inner = letterbox(img, inner_w, inner_h)
    canvas = Image.new("RGB", (width, height), WHITE)
    canvas.paste(inner, (rng.randint(0, width - inner_w), rng.randint(0, height - inner_h)))
    return canvas


def reference_view(path: str | os.PathLike, width: int, height: int, variant: int = 0, seed: int = 0,
                   augment: dict | None = None) -> torch.Tensor:
    """A reference view as the DiT's VAE sees it: float ``[3, height, width]`` in [-1, 1].

    Variant 0 is the inference preprocessing (letterbox on white); variant ``v > 0`` is
    :func:`augment_view` with a generator seeded from ``(seed, v)``.
    """
    image = load_image(path)
    if variant == 0 or not augment:
        return to_tensor(letterbox(image, width, height))
    rng = random.Random(f"{seed}:{variant}")
    params = {k: augment[k] for k in ("crop", "scale", "brightness", "contrast", "saturation", "hue")}
    return to_tensor(augment_view(image, width, height, rng, **params))

"""Reference-image loading and preprocessing.

Phantom (and the MV-S2V methods built on it) feed each reference image to the VAE after
*letterboxing* it: the image is scaled to fit inside the video frame keeping its aspect ratio and
centred on a white canvas. Transparent pixels are composited onto white for the same reason: the
models were trained with subjects cut out on white backgrounds.

Only Pillow and torch are imported here, so this module stays light.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import MVS2VError

try:  # Pillow is a hard dependency, but keep the import error readable.
    from PIL import Image, UnidentifiedImageError
except ImportError as exc:  # pragma: no cover - exercised only without Pillow
    raise ImportError("mvs2v needs Pillow: pip install pillow") from exc

__all__ = ["load_image", "letterbox", "to_tensor", "gray_image", "WHITE", "GRAY"]

WHITE = (255, 255, 255)
GRAY = (128, 128, 128)


def _has_transparency(image: Image.Image) -> bool:
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return True
    return image.mode == "P" and "transparency" in image.info


def _flatten_onto_white(image: Image.Image) -> Image.Image:
    """Return an RGB image; any alpha channel is composited onto white."""
    if _has_transparency(image):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, WHITE + (255,))
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    if image.mode != "RGB":
        return image.convert("RGB")
    return image


def load_image(path: str | os.PathLike) -> Image.Image:
    """Load an image file as an RGB :class:`PIL.Image.Image`.

    Images with transparency (RGBA, LA, palette images with a transparent colour) are
    alpha-composited onto white. EXIF orientation is applied so phone photos are upright.

    Raises:
        MVS2VError: the file does not exist, is a folder, or is not an image Pillow can read.
    """
    p = Path(path)
    if not p.exists():
        raise MVS2VError(f"Reference image not found: '{p}'. Check the path (relative paths are "
                         f"resolved from the current folder '{Path.cwd()}').")
    if p.is_dir():
        raise MVS2VError(f"Reference image path '{p}' is a folder; pass an image file "
                         "(.png, .jpg, .webp, ...).")
    try:
        with Image.open(p) as img:
            img.load()
            try:
                from PIL import ImageOps

                img = ImageOps.exif_transpose(img)
            except Exception:  # a broken EXIF block should not stop us
                pass
            return _flatten_onto_white(img).copy()
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError) as exc:
        raise MVS2VError(f"Cannot read '{p}' as an image ({exc}). Use a PNG, JPEG or WebP file.") from exc


def letterbox(image: Image.Image, width: int, height: int,
              background: tuple[int, int, int] = WHITE) -> Image.Image:
    """Fit ``image`` inside ``width`` x ``height`` keeping its aspect ratio, centred on a canvas.

    The image is scaled (up or down, bicubic) so that it touches the canvas on one axis; the rest
    is filled with ``background`` (white by default, as in Phantom's reference preprocessing).

    Returns:
        An RGB image of exactly ``width`` x ``height``.
    """
    if int(width) <= 0 or int(height) <= 0:
        raise MVS2VError(f"Letterbox size must be positive, got {width}x{height}.")
    width, height = int(width), int(height)
    image = _flatten_onto_white(image)
    w, h = image.size
    if w <= 0 or h <= 0:
        raise MVS2VError("Cannot letterbox an empty image (0 pixels wide or high).")
    scale = min(width / w, height / h)
    new_w = max(1, min(width, round(w * scale)))
    new_h = max(1, min(height, round(h * scale)))
    resized = image if (new_w, new_h) == (w, h) else image.resize((new_w, new_h), Image.BICUBIC)
    canvas = Image.new("RGB", (width, height), background)
    canvas.paste(resized, ((width - new_w) // 2, (height - new_h) // 2))
    return canvas


def to_tensor(image: Image.Image) -> torch.Tensor:
    """Convert a PIL image to a ``float32`` tensor of shape ``[3, H, W]`` in ``[-1, 1]``."""
    image = _flatten_onto_white(image)
    w, h = image.size
    data = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    t = data.view(h, w, 3).permute(2, 0, 1).to(torch.float32)
    return t.div_(127.5).sub_(1.0).contiguous()


def gray_image(width: int, height: int) -> Image.Image:
    """A mid-gray (128, 128, 128) RGB image, used for the ``gray`` empty-slot mode."""
    if int(width) <= 0 or int(height) <= 0:
        raise MVS2VError(f"Image size must be positive, got {width}x{height}.")
    return Image.new("RGB", (int(width), int(height)), GRAY)

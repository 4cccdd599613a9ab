"""Reference-image loading and preprocessing.

Phantom (and the MV-S2V methods built on it) feed each reference image to the VAE after
*letterboxing* it: the image is scaled to fit inside the video frame keeping its aspect ratio and
centred on a white canvas. Transparent pixels are composited onto white for the same reason: the
models were trained with subjects cut out on white backgrounds.

Every image file is decoded by ONE function, :func:`decode_image` (the CLI, the ComfyUI reference
folder and the trainer all use it), so every Pillow mode means the same everywhere:

* 8-bit modes (``1``, ``L``, ``P``, ``RGB``, ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``, ``RGBX``) go through
  Pillow's own colour conversion; ``LA``, ``La``, ``PA``, ``RGBA``, ``RGBa`` and a ``transparency``
  colour (PNG ``tRNS``) give an alpha channel (1 = opaque);
* 16-bit and 32-bit integer grayscale (``I;16``, ``I;16L``, ``I;16B``, ``I;16N``, ``I``) are read as
  16-bit data: value / 65535. Values outside 0..65535 are refused (save the image as 8- or 16-bit);
* 32-bit float grayscale (``F``, e.g. a float TIFF) is read as 0..1 when its largest value is at
  most 1, else as 0..255 when it is at most 255; negative values, values above 255, NaN and
  infinity are refused;
* anything else Pillow cannot convert is refused with a one-line message.

Only Pillow, numpy and torch are imported here, so this module stays light.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from ..errors import MVS2VError

try:  # Pillow is a hard dependency, but keep the import error readable.
    from PIL import Image, ImageOps, UnidentifiedImageError
except ImportError as exc:  # pragma: no cover - exercised only without Pillow
    raise ImportError("mvs2v needs Pillow: pip install pillow") from exc

__all__ = [
    "DecodedImage", "decode_image", "decode_pil", "on_white", "load_image", "letterbox", "to_tensor",
    "gray_image", "WHITE", "GRAY",
]

WHITE = (255, 255, 255)
GRAY = (128, 128, 128)

# Integer grayscale modes whose samples do not fit in 8 bits: read with numpy, scaled by 65535.
_WIDE_INT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_SIXTEEN_BIT = 65535.0


class DecodedImage(NamedTuple):
    """A decoded image, not yet composited.

    Attributes:
        rgb: ``float32 [H, W, 3]`` in [0, 1] (colour under transparent pixels kept as stored).
        alpha: ``float32 [H, W]`` in [0, 1] (1 = opaque), or None when the image has no transparency.
    """

    rgb: torch.Tensor
    alpha: torch.Tensor | None


def _u8(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32) / 255.0)


def _wide_gray(image: Image.Image, name: str) -> tuple[np.ndarray, float]:
    """Samples of an ``I;16*`` / ``I`` / ``F`` image as float64 and the value that means white."""
    values = np.asarray(image).astype(np.float64)
    if values.size == 0:
        raise MVS2VError(f"image {name} has no pixels")
    if image.mode != "F":
        lo, hi = values.min(), values.max()
        if lo < 0 or hi > _SIXTEEN_BIT:
            raise MVS2VError(
                f"image {name} is {image.mode} integer grayscale with values {lo:g}..{hi:g}, outside the 16-bit "
                "range 0..65535 that mvs2v reads it as; save it as an 8- or 16-bit PNG")
        return values, _SIXTEEN_BIT
    if not np.isfinite(values).all():
        bad = int((~np.isfinite(values)).sum())
        raise MVS2VError(f"image {name} is a float image with {bad} NaN or infinite pixel(s); "
                         "fix or re-export it (8- or 16-bit PNG)")
    lo, hi = values.min(), values.max()
    if lo < 0 or hi > 255:
        raise MVS2VError(
            f"image {name} is a float image with values {lo:g}..{hi:g}; mvs2v reads float images as 0..1 (or "
            "0..255): rescale it to that range or save it as an 8- or 16-bit PNG")
    return values, 1.0 if hi <= 1.0 else 255.0


def _decode_wide(image: Image.Image, name: str) -> DecodedImage:
    values, white = _wide_gray(image, name)
    alpha = None
    key = image.info.get("transparency")
    if isinstance(key, (int, float)) and not isinstance(key, bool):  # a tRNS grey level
        alpha = torch.from_numpy((values != float(key)).astype(np.float32))
    gray = torch.from_numpy((values / white).astype(np.float32))
    return DecodedImage(gray[..., None].expand(-1, -1, 3).contiguous(), alpha)


def decode_pil(image: Image.Image, name: str = "image") -> DecodedImage:
    """Decode a PIL image of any mode into float RGB and optional alpha (rules in the module docstring).

    Args:
        image: the image (already loaded).
        name: how messages name it (usually the file path).

    Raises:
        MVS2VError: a mode mvs2v cannot read, out-of-range or non-finite values.
    """
    if image.mode in _WIDE_INT_MODES or image.mode == "F":
        return _decode_wide(image, name)
    if image.mode == "La":  # premultiplied: Pillow converts it only to LA
        image = image.convert("LA")
    bands = image.getbands()
    has_alpha = "A" in bands or "a" in bands or "transparency" in image.info
    has_alpha = has_alpha or (image.mode == "P" and getattr(image.palette, "mode", "") == "RGBA")
    try:
        if has_alpha:
            rgba = np.asarray(image.convert("RGBA"))
            return DecodedImage(_u8(rgba[..., :3]), _u8(rgba[..., 3]))
        return DecodedImage(_u8(np.asarray(image.convert("RGB"))), None)
    except (ValueError, OSError) as exc:  # a mode Pillow cannot convert to RGB
        raise MVS2VError(f"image {name} has the pixel mode {image.mode!r}, which mvs2v cannot convert to RGB "
                         f"({exc}); save it as an 8-bit RGB or RGBA PNG") from None


def decode_image(path: str | os.PathLike, name: str | None = None) -> DecodedImage:
    """Read an image file: float RGB in [0, 1] and its alpha (or None); EXIF orientation applied.

    The single decoder of mvs2v: :func:`load_image` (CLI, pipeline, trainer) and the ComfyUI
    reference-folder loader both call it. Only Pillow's decoders read the file.

    Args:
        path: the file.
        name: how messages name it (default: the path; a ComfyUI server shows only the file name).

    Raises:
        MVS2VError: the file does not exist, is a folder, is not an image Pillow can read, or its
            pixels are refused by :func:`decode_pil`.
    """
    p = Path(path)
    shown = f"'{p}'" if name is None else repr(name)
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
                img = ImageOps.exif_transpose(img)
            except Exception:  # a broken EXIF block should not stop us
                pass
            return decode_pil(img, shown)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError) as exc:
        why = str(exc) if name is None else str(exc).replace(str(p), name)  # keep server paths private
        raise MVS2VError(f"cannot read {shown} as an image ({why}); use a PNG, JPEG or WebP file") from None


def on_white(decoded: DecodedImage) -> torch.Tensor:
    """``float32 [H, W, 3]`` in [0, 1]: the image alpha-composited onto white."""
    if decoded.alpha is None:
        return decoded.rgb
    a = decoded.alpha[..., None]
    return decoded.rgb * a + (1.0 - a)


def _to_pil_rgb(rgb: torch.Tensor) -> Image.Image:
    arr = (rgb.clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()
    return Image.fromarray(np.ascontiguousarray(arr), "RGB")


def _flatten_onto_white(image: Image.Image) -> Image.Image:
    """Return an 8-bit RGB image; any alpha is composited onto white, any mode decoded as above."""
    if image.mode == "RGB" and "transparency" not in image.info:
        return image
    return _to_pil_rgb(on_white(decode_pil(image)))


def load_image(path: str | os.PathLike) -> Image.Image:
    """Load an image file as an 8-bit RGB :class:`PIL.Image.Image`, transparency composited onto white.

    Decoded by :func:`decode_image` (every Pillow mode; EXIF orientation applied).

    Raises:
        MVS2VError: the file does not exist, is a folder, is not an image Pillow can read, or has
            values mvs2v refuses (NaN, out of range).
    """
    return _to_pil_rgb(on_white(decode_image(path)))


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

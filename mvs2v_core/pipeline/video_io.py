"""Writing and reading mp4 files with PyAV.

:func:`write_mp4` encodes H.264 (libx264, yuv420p) when the local FFmpeg build has it and falls
back to MPEG-4 Part 2 otherwise. :func:`write_lossless_mp4` writes RGB H.264 at quantizer 0 (else
PNG-in-mp4): the file decodes to exactly the frames given, for codecs whose metrics need exact
colours (``lossless_output``). The file is written to a temporary name in the destination folder
and moved into place with :func:`os.replace`, so an interrupted run never leaves a truncated mp4
under the final name. PyAV is imported lazily inside the functions.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import MVS2VError
from ..utils import atomic_write

__all__ = ["write_mp4", "write_lossless_mp4", "read_video", "video_pixel_format"]


def _import_av() -> Any:
    try:
        import av
    except ImportError as exc:
        raise MVS2VError("Writing and reading mp4 needs PyAV. Install it with "
                         "`pip install av` (or `pip install mvs2v[cli]`).") from exc
    return av


def _frames_to_uint8(frames: Any) -> torch.Tensor:
    """Validate ``frames`` ``[F, H, W, 3]`` and return them as a contiguous uint8 CPU tensor."""
    if not isinstance(frames, torch.Tensor):
        try:
            frames = torch.as_tensor(frames)
        except Exception as exc:
            raise MVS2VError(f"write_mp4 expects a tensor of frames [F, H, W, 3], got "
                             f"{type(frames).__name__}.") from exc
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise MVS2VError(f"write_mp4 expects frames shaped [F, H, W, 3] (RGB, channels last), got "
                         f"{tuple(frames.shape)}. Permute a [F, 3, H, W] tensor with "
                         "frames.permute(0, 2, 3, 1).")
    if frames.shape[0] == 0 or frames.shape[1] == 0 or frames.shape[2] == 0:
        raise MVS2VError(f"write_mp4 got an empty video of shape {tuple(frames.shape)}.")
    frames = frames.detach().cpu()
    if frames.dtype == torch.uint8:
        return frames.contiguous()
    if frames.is_floating_point():
        f = frames.float()
        if not torch.isfinite(f).all():
            raise MVS2VError("write_mp4 got frames containing NaN or infinite values; the "
                             "generation diverged (try another seed, fewer steps or float32).")
        return f.clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8).contiguous()
    raise MVS2VError(f"write_mp4 expects float frames in [0, 1] or uint8 frames, got {frames.dtype}.")


def _even_size(frames: torch.Tensor) -> torch.Tensor:
    """Pad odd heights/widths by one replicated edge pixel (yuv420p needs even sizes)."""
    _, h, w, _ = frames.shape
    pad_h, pad_w = h % 2, w % 2
    if pad_h:
        frames = torch.cat([frames, frames[:, -1:]], dim=1)
    if pad_w:
        frames = torch.cat([frames, frames[:, :, -1:]], dim=2)
    return frames.contiguous()


def _pick_codec(av: Any, codec: str | None) -> str:
    if codec is not None:
        if codec not in av.codecs_available:
            raise MVS2VError(f"Video codec '{codec}' is not available in this FFmpeg/PyAV build; "
                             "leave the codec unset to pick one automatically.")
        return codec
    for name in ("libx264", "h264", "mpeg4"):
        if name in av.codecs_available:
            try:
                av.codec.Codec(name, "w")
            except Exception:
                continue
            return name
    raise MVS2VError("PyAV has neither an H.264 nor an MPEG-4 encoder. Reinstall PyAV from the "
                     "official wheels (`pip install --force-reinstall av`).")


def write_mp4(frames: torch.Tensor, path: str | os.PathLike, fps: float = 16,
              codec: str | None = None, crf: int = 18) -> Path:
    """Encode ``frames`` to an mp4 file, atomically.

    Args:
        frames: ``[F, H, W, 3]`` RGB, either float in ``[0, 1]`` (clamped) or ``uint8``.
        path: destination file; missing parent folders are created.
        fps: frame rate (Wan 2.1 generates 16 fps, Wan 2.2 5B 24 fps).
        codec: force an encoder (``"libx264"``, ``"mpeg4"``...); default: H.264 if available.
        crf: H.264 constant-rate-factor (lower is better quality; 18 is visually lossless).

    Odd frame sizes are padded by one replicated edge pixel to even sizes (yuv420p).

    Returns:
        The path written.
    """
    av = _import_av()
    if fps is None or not (float(fps) > 0):
        raise MVS2VError(f"fps must be a positive number, got {fps!r}.")
    data = _even_size(_frames_to_uint8(frames))
    out = Path(path)
    if out.exists() and out.is_dir():
        raise MVS2VError(f"Output path '{out}' is a folder; pass a file name ending in .mp4.")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MVS2VError(f"Cannot create the output folder '{out.parent}': {exc}.") from exc
    codec_name = _pick_codec(av, codec)

    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=".part.mp4", dir=str(out.parent))
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        rate = Fraction(float(fps)).limit_denominator(1001)
        container = av.open(str(tmp), mode="w", format="mp4")
        try:
            stream = container.add_stream(codec_name, rate=rate)
            stream.width = int(data.shape[2])
            stream.height = int(data.shape[1])
            stream.pix_fmt = "yuv420p"
            if codec_name == "libx264":
                stream.options = {"crf": str(int(crf)), "preset": "medium"}
            elif codec_name == "mpeg4":
                stream.options = {"qscale": "2"}
                stream.bit_rate = max(2_000_000, int(data.shape[1] * data.shape[2] * float(fps) * 0.5))
            arr = data.numpy()
            for i in range(arr.shape[0]):
                frame = av.VideoFrame.from_ndarray(arr[i], format="rgb24")
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        finally:
            container.close()
        os.replace(tmp, out)
    except MVS2VError:
        tmp.unlink(missing_ok=True)
        raise
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise MVS2VError(f"Could not write the video '{out}' with codec {codec_name}: {exc}") from exc
    return out


def read_video(path: str | os.PathLike) -> torch.Tensor:
    """Decode every frame of a video file.

    Returns:
        ``uint8`` tensor ``[F, H, W, 3]`` (RGB).
    """
    av = _import_av()
    p = Path(path)
    if not p.is_file():
        raise MVS2VError(f"Video file not found: '{p}'.")
    frames = []
    try:
        with av.open(str(p)) as container:
            if not container.streams.video:
                raise MVS2VError(f"'{p}' has no video stream.")
            for frame in container.decode(video=0):
                frames.append(torch.from_numpy(frame.to_ndarray(format="rgb24")))
    except MVS2VError:
        raise
    except Exception as exc:
        raise MVS2VError(f"Cannot decode '{p}' as a video: {exc}") from exc
    if not frames:
        raise MVS2VError(f"'{p}' contains no decodable frames.")
    return torch.stack(frames)


def write_lossless_mp4(frames: np.ndarray, path: str | os.PathLike, fps: float = 8.0) -> tuple[str, bool]:
    """Write uint8 RGB frames ``[F, H, W, 3]`` to an mp4 that decodes to exactly the same frames.

    Uses RGB H.264 at quantizer 0 (``libx264rgb``), else PNG-in-mp4, both lossless and readable by
    PyAV / FFmpeg (and so by the trainer). Only when neither encoder exists does it fall back to
    :func:`write_mp4` (lossy yuv420p, with a warning).

    Returns:
        ``(codec name, lossless)``.
    """
    av = _import_av()
    data = np.ascontiguousarray(frames, dtype=np.uint8)
    if data.ndim != 4 or data.shape[-1] != 3 or 0 in data.shape:
        raise MVS2VError(f"write_lossless_mp4 expects uint8 frames [F, H, W, 3], got {data.shape}")
    out = Path(path)
    for codec, options in (("libx264rgb", {"qp": "0", "preset": "veryfast"}), ("png", {})):
        if codec not in av.codecs_available:
            continue
        try:
            with atomic_write(out, suffix=".mp4") as tmp:
                container = av.open(str(tmp), mode="w", format="mp4")
                try:
                    stream = container.add_stream(codec, rate=Fraction(float(fps)).limit_denominator(1001))
                    stream.width, stream.height = int(data.shape[2]), int(data.shape[1])
                    stream.pix_fmt = "rgb24"
                    stream.options = options
                    for frame in data:
                        for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                            container.mux(packet)
                    for packet in stream.encode():
                        container.mux(packet)
                finally:
                    container.close()
            return codec, True
        except MVS2VError:
            raise
        except Exception:  # this build's encoder refused; try the next one
            continue
    warnings.warn("neither libx264rgb nor png encoders exist in this PyAV build: the videos are written "
                  "lossy (yuv420p); ground-truth metrics still use exact re-rendered frames", stacklevel=2)
    write_mp4(data, out, fps=fps)
    return "lossy", False


def video_pixel_format(path: str | os.PathLike) -> str | None:
    """The pixel format of a video file's first stream (``rgb24``, ``yuv420p``...), or None if unknown."""
    try:
        with _import_av().open(str(path)) as container:
            return str(container.streams.video[0].codec_context.pix_fmt)
    except Exception:
        return None

"""Writing and reading mp4 files with PyAV.

:func:`write_mp4` encodes H.264 (libx264, yuv420p) when the local FFmpeg build has it and falls
back to MPEG-4 Part 2 otherwise. :func:`write_lossless_mp4` writes RGB H.264 at quantizer 0 (else
PNG-in-mp4): the file decodes to exactly the frames given, for codecs whose metrics need exact
colours (``lossless_output``). Both write through :func:`~mvs2v_core.utils.atomic_write` (a
temporary name in the destination folder, moved into place once the file is complete and its
frame count checked), so an interrupted or failed write never leaves a truncated mp4 under the
final name. A failed write (no permission, no space) raises :class:`~mvs2v_core.errors.OutputError`;
only a missing or refusing encoder changes the codec. PyAV is imported lazily inside the functions.
"""

from __future__ import annotations

import math
import os
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import MVS2VError, OutputError
from ..utils import atomic_write
from .outputs import describe_os_error

__all__ = ["write_mp4", "write_lossless_mp4", "read_video", "video_pixel_format", "frames_to_uint8"]


def _import_av() -> Any:
    try:
        import av
    except ImportError as exc:
        raise MVS2VError("Writing and reading mp4 needs PyAV. Install it with "
                         "`pip install av` (or `pip install mvs2v[cli]`).") from exc
    return av


def frames_to_uint8(frames: Any) -> torch.Tensor:
    """Validate ``frames`` ``[F, H, W, 3]`` (float in [0, 1], clamped, or uint8; NaN refused) and return
    them as a contiguous uint8 CPU tensor."""
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


def _prepare_target(path: str | os.PathLike) -> Path:
    """Refuse a folder at ``path`` and create its parent folders, before any encoding."""
    out = Path(path)
    if out.is_dir():
        raise OutputError(f"Output path '{out}' is a folder; pass a file name ending in .mp4.")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"Cannot create the output folder '{out.parent}': {describe_os_error(exc)}; "
                          "choose another location.") from exc
    return out


def _encode(av: Any, tmp: Path, data: np.ndarray, codec: str, pix_fmt: str, fps: float,
            options: dict[str, str], bit_rate: int | None = None) -> None:
    """Encode uint8 RGB ``data`` ``[F, H, W, 3]`` into the mp4 ``tmp``, then check it is complete."""
    container = av.open(str(tmp), mode="w", format="mp4")
    try:
        stream = container.add_stream(codec, rate=Fraction(float(fps)).limit_denominator(1001))
        stream.width, stream.height = int(data.shape[2]), int(data.shape[1])
        stream.pix_fmt = pix_fmt
        stream.options = options
        if bit_rate is not None:
            stream.bit_rate = bit_rate
        for frame in data:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    finally:
        container.close()
    # Success is reported only for a file whose index (written last) lists every frame: a write
    # that stopped early without an error (a full disk some FFmpeg builds do not report) fails here.
    try:
        with av.open(str(tmp)) as check:
            written = check.streams.video[0].frames
    except Exception as exc:
        raise OSError(f"the written file cannot be read back ({exc})") from exc
    if written not in (0, data.shape[0]):  # 0: the muxer did not count; the open above still passed
        raise OSError(f"the written file holds {written} of {data.shape[0]} frames")


def _write_error(out: Path, exc: BaseException, codec: str) -> OutputError:
    """One line for a failed video write: the plain OS reason, else the encoder's message."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return OutputError(f"Could not write the video '{out}': {describe_os_error(exc)}.")
    return OutputError(f"Could not write the video '{out}' with codec {codec}: {exc}")


def write_mp4(frames: torch.Tensor, path: str | os.PathLike, fps: float = 16,
              codec: str | None = None, crf: int = 18) -> Path:
    """Encode ``frames`` to an mp4 file, atomically (:func:`~mvs2v_core.utils.atomic_write`).

    Args:
        frames: ``[F, H, W, 3]`` RGB, either float in ``[0, 1]`` (clamped) or ``uint8``.
        path: destination file; missing parent folders are created.
        fps: frame rate (Wan 2.1 generates 16 fps, Wan 2.2 5B 24 fps).
        codec: force an encoder (``"libx264"``, ``"mpeg4"``...); default: H.264 if available.
        crf: H.264 constant-rate-factor (lower is better quality; 18 is visually lossless).

    Odd frame sizes are padded by one replicated edge pixel to even sizes (yuv420p).

    Returns:
        The path written.

    Raises:
        OutputError: the file could not be written (no permission, no space...); no file is left
            under the final name, an older one stays untouched.
    """
    av = _import_av()
    if fps is None or not (math.isfinite(float(fps)) and float(fps) > 0):
        raise MVS2VError(f"fps must be a positive number, got {fps!r}.")
    data = _even_size(frames_to_uint8(frames)).numpy()
    out = _prepare_target(path)
    codec_name = _pick_codec(av, codec)
    options, bit_rate = {}, None
    if codec_name == "libx264":
        options = {"crf": str(int(crf)), "preset": "medium"}
    elif codec_name == "mpeg4":
        options = {"qscale": "2"}
        bit_rate = max(2_000_000, int(data.shape[1] * data.shape[2] * float(fps) * 0.5))
    try:
        with atomic_write(out, suffix=".part.mp4") as tmp:
            _encode(av, tmp, data, codec_name, "yuv420p", fps, options, bit_rate)
    except MVS2VError:
        raise
    except Exception as exc:
        raise _write_error(out, exc, codec_name) from exc
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


def _encoder_missing(av: Any, codec: str) -> str | None:
    """Why this PyAV build cannot encode with ``codec``, or None when it can."""
    if codec not in av.codecs_available:
        return "not in this build"
    try:
        av.codec.Codec(codec, "w")
    except Exception as exc:  # UnknownCodecError / a decoder-only codec
        return str(exc) or type(exc).__name__
    return None


def _is_encoder_refusal(av: Any, exc: BaseException) -> bool:
    """An encoder that exists but refuses these settings (EINVAL, unsupported pixel format...).

    Never an ``OSError``: no permission, a full disk or a folder at the target is not a codec problem,
    and writing lossy instead would only fail again (or hide the problem)."""
    if isinstance(exc, OSError):
        return False
    # EINVAL is ArgumentError (a ValueError) in PyAV >= 14, av.error.ValueError before; an unknown
    # codec is UnknownCodecError (a ValueError); ENOSYS is a NotImplementedError.
    names = ("EncoderNotFoundError", "PatchWelcomeError", "ExperimentalError", "OptionNotFoundError")
    refusals = (ValueError, NotImplementedError, *(getattr(av.error, n) for n in names if hasattr(av.error, n)))
    return isinstance(exc, refusals)


def write_lossless_mp4(frames: np.ndarray, path: str | os.PathLike, fps: float = 8.0) -> tuple[str, bool]:
    """Write uint8 RGB frames ``[F, H, W, 3]`` to an mp4 that decodes to exactly the same frames.

    Uses RGB H.264 at quantizer 0 (``libx264rgb``), else PNG-in-mp4, both lossless and readable by
    PyAV / FFmpeg (and so by the trainer). Only when neither encoder exists or accepts the settings
    does it fall back to :func:`write_mp4` (lossy yuv420p, with a warning naming why).

    Returns:
        ``(codec name, lossless)``.

    Raises:
        OutputError: the file could not be written (no permission, no space, a folder at ``path``):
            no lossy fallback, no file under the final name, an older one untouched.
    """
    av = _import_av()
    if fps is None or not (math.isfinite(float(fps)) and float(fps) > 0):
        raise MVS2VError(f"fps must be a positive number, got {fps!r}.")
    data = np.ascontiguousarray(frames, dtype=np.uint8)
    if data.ndim != 4 or data.shape[-1] != 3 or 0 in data.shape:
        raise MVS2VError(f"write_lossless_mp4 expects uint8 frames [F, H, W, 3], got {data.shape}")
    out = _prepare_target(path)
    why_not: list[str] = []
    for codec, options in (("libx264rgb", {"qp": "0", "preset": "veryfast"}), ("png", {})):
        missing = _encoder_missing(av, codec)
        if missing is not None:
            why_not.append(f"{codec}: {missing}")
            continue
        try:
            with atomic_write(out, suffix=".part.mp4") as tmp:
                _encode(av, tmp, data, codec, "rgb24", fps, options)
            return codec, True
        except MVS2VError:
            raise
        except Exception as exc:
            if not _is_encoder_refusal(av, exc):
                raise _write_error(out, exc, codec) from exc
            why_not.append(f"{codec}: {exc}")  # this build's encoder refused; try the next one
    warnings.warn(f"no lossless encoder works in this PyAV build ({'; '.join(why_not)}): the video is written "
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

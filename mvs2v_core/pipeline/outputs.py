"""Output locations: check them before the expensive work, and keep the frames when a write fails.

A generation takes minutes to hours; finding out afterwards that ``--out`` names a folder, sits in
a read-only folder or on a full disk loses all of it. :func:`check_output_path` and
:func:`check_output_folder` refuse such targets in one line before any model is loaded;
:func:`check_video_output` is the ``mvs2v generate`` check (video, optional latents, free space).
If a write still fails after sampling (the disk filled up meanwhile), :func:`keep_frames` saves
the frames where it can, so that the caller can say where they are.

Standard library only (plus safetensors / torch inside :func:`keep_frames`): importing this
module stays light.
"""

from __future__ import annotations

import errno
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping

from ..errors import OutputError

if TYPE_CHECKING:  # annotations only
    import torch

__all__ = ["OutputError", "check_output_path", "check_output_folder", "check_video_output",
           "estimate_video_bytes", "describe_os_error", "keep_frames", "MIN_FREE_BYTES"]

MIB = 1 << 20
# Refuse below this much free space whatever the estimate: no video (nor its temporary copy) fits.
MIN_FREE_BYTES = 1 * MIB
# H.264 at crf 18 stores a clip in well under 1/20 of its raw RGB bytes; lossless RGB may need all.
LOSSY_RATIO = 20
# Refuse only when free space is below 1/REFUSE_DIVISOR of the estimate (plus MIN_FREE_BYTES):
# the video would have to compress that much better than expected. Between that and the
# estimate itself, warn.
REFUSE_DIVISOR = 50


def describe_os_error(exc: OSError) -> str:
    """A short, plain reason for a failed file operation (``no space left on the device``...)."""
    reasons = {
        errno.ENOSPC: "no space left on the device",
        errno.EDQUOT: "the disk quota is exhausted",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.EROFS: "the file system is read-only",
        errno.EISDIR: "the target is a folder",
        errno.ENOTDIR: "a part of the path is a file, not a folder",
        errno.ENAMETOOLONG: "the file name is too long",
    }
    return reasons.get(exc.errno, exc.strerror or str(exc) or type(exc).__name__)


def _nearest_existing(path: Path) -> Path:
    """``path`` or its nearest existing ancestor (the folder a writer would create the rest in)."""
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _check_writable_folder(folder: Path, what: str, target: Path) -> Path:
    """Refuse a ``folder`` (or the ancestor it would be created in) that is a file or not writable."""
    base = _nearest_existing(folder)
    if not base.is_dir():
        raise OutputError(f"{what} {target}: '{base}' is a file, not a folder; choose another location")
    try:  # the only reliable test (ACLs, read-only mounts, root): create a file there
        fd, probe = tempfile.mkstemp(prefix=".mvs2v-write-check.", dir=base)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"{what} {target}: cannot write in the folder '{base}' ({describe_os_error(exc)}); "
                          "choose a writable location") from exc
    return base


def estimate_video_bytes(frames: int, width: int, height: int, lossless: bool | None) -> int:
    """A generous size estimate of a ``frames x height x width`` video: raw RGB bytes when lossless,
    1/20 of them for H.264 (and when ``lossless`` is unknown, None: real Wan output is H.264)."""
    raw = max(0, int(frames)) * max(0, int(width)) * max(0, int(height)) * 3
    return raw if lossless else raw // LOSSY_RATIO


def _check_free_space(base: Path, expected: int, what: str, target: Path) -> None:
    """Refuse when free space is clearly too small for ``expected`` bytes; warn when it is tight."""
    try:
        free = shutil.disk_usage(base).free
    except OSError:  # some file systems do not say: the write itself will tell
        return
    floor = MIN_FREE_BYTES + expected // REFUSE_DIVISOR
    if free < floor:
        raise OutputError(f"{what} {target}: only {_size(free)} free on that disk, below the {_size(floor)} minimum "
                          f"for this video (about {_size(expected)}); free some space or choose another disk")
    if free < expected + MIN_FREE_BYTES:
        print(f"warning: {what} {target}: only {_size(free)} free on that disk, the video may need up to "
              f"{_size(expected)}; if the write fails the frames are kept elsewhere", file=sys.stderr)


def _size(n: int) -> str:
    """Bytes for a message: ``92.5 MiB``, or ``64 KiB`` below one MiB."""
    return f"{n / MIB:.1f} MiB" if n >= MIB else f"{max(1, round(n / 1024))} KiB"


def check_output_path(path: str | os.PathLike, suffix: str = ".mp4", what: str = "--out",
                      expected_bytes: int | None = None) -> Path:
    """Refuse, in one line, an output file the writer could not create; returns it as a Path.

    Refused: a target that is an existing folder, a wrong suffix (case-insensitive), a parent folder
    that is a file or is not writable (tested by creating and deleting a temporary file in it, or in
    its nearest existing ancestor: writers create missing folders), and, with ``expected_bytes``,
    free space clearly below it (a warning when merely tight). Nothing is left behind.
    """
    target = Path(path)
    if target.is_dir():
        raise OutputError(f"{what} {target} is a folder; give a file name ending in {suffix}")
    if suffix and target.suffix.lower() != suffix.lower():
        raise OutputError(f"{what} {target} must end in {suffix}")
    base = _check_writable_folder(target.parent, what, target)
    if expected_bytes is not None:
        _check_free_space(base, int(expected_bytes), what, target)
    return target


def check_output_folder(path: str | os.PathLike, what: str = "--out", files: Iterable[str] = ()) -> Path:
    """Refuse, in one line, an output folder that is a file or cannot be created / written in.

    ``files``: names the caller will write inside it; each must not be an existing folder.
    """
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{what} {folder} is an existing file, not a folder; give a folder path "
                          "(it is created if missing)")
    _check_writable_folder(folder, what, folder)
    for name in files:
        if (folder / name).is_dir():
            raise OutputError(f"{what} {folder}: '{folder / name}' is a folder where a file is written; "
                              "remove it or choose another folder")
    return folder


def check_video_output(out: str | os.PathLike, frames: int, width: int, height: int,
                       lossless: bool | None = None, latents: bool = False) -> Path:
    """The ``mvs2v generate`` output check: the ``.mp4`` target and free space for it, and with
    ``latents`` the ``<out>.latents.safetensors`` file next to it (see :func:`check_output_path`)."""
    target = check_output_path(out, ".mp4", "--out", estimate_video_bytes(frames, width, height, lossless))
    if latents:
        check_output_path(target.with_suffix(".latents.safetensors"), ".safetensors", "--save-latents target")
    return target


def _free_name(folder: Path, stem: str, suffix: str) -> Path:
    """``folder/stem+suffix``, or ``stem-1+suffix``... when taken: never overwrite kept frames."""
    candidate = folder / f"{stem}{suffix}"
    n = 1
    while candidate.exists():
        candidate = folder / f"{stem}-{n}{suffix}"
        n += 1
    return candidate


def keep_frames(frames: torch.Tensor, target: str | os.PathLike,
                extra: Mapping[str, torch.Tensor] | None = None,
                metadata: Mapping[str, str] | None = None) -> Path:
    """Save ``frames`` (uint8 ``[F, H, W, 3]``, key ``frames``) and ``extra`` tensors as
    ``<target stem>.frames.safetensors`` next to ``target``, else in a new folder in the system
    temp dir. Returns the file written; raises ``OSError`` when neither place can take it."""
    from ..utils import save_safetensors_atomic

    target = Path(target)
    tensors = {"frames": frames, **(extra or {})}
    meta = {"format": "mvs2v-frames", **(metadata or {})}
    try:
        kept = _free_name(target.parent, target.stem, ".frames.safetensors")
        save_safetensors_atomic(tensors, kept, meta)
        return kept
    except OSError:  # the target's folder is the problem (full, read-only): try the temp dir
        kept = Path(tempfile.mkdtemp(prefix="mvs2v-kept-")) / f"{target.stem}.frames.safetensors"
        try:
            save_safetensors_atomic(tensors, kept, meta)
        except OSError:
            shutil.rmtree(kept.parent, ignore_errors=True)
            raise
        return kept


def keep_frames_after(error: BaseException, frames: torch.Tensor, target: str | os.PathLike,
                      extra: Mapping[str, torch.Tensor] | None = None,
                      metadata: Mapping[str, str] | None = None) -> OutputError:
    """After ``error`` stopped writing ``target``: keep the frames (:func:`keep_frames`) and return
    the one-line error to raise, naming why the write failed and where the frames are now."""
    fps = (metadata or {}).get("fps", "16")
    try:
        kept = keep_frames(frames, target, extra, metadata)
    except (OSError, OutputError) as exc:
        reason = describe_os_error(exc) if isinstance(exc, OSError) else str(exc)
        return OutputError(f"{error} The frames could not be kept either, next to it nor in the temp dir "
                           f"({reason}): free some space and run again.")
    return OutputError(f"{error} The {frames.shape[0]} generated frames were kept in '{kept}' (key 'frames', uint8 "
                       "[F, H, W, 3]); once the location is fixed (space, permissions) re-encode them with "
                       "mvs2v_core.pipeline.video_io.write_mp4(safetensors.torch.load_file(<that file>)['frames'], "
                       f"<out.mp4>, fps={fps}).")

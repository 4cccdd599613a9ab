"""Small shared helpers: atomic file writes."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

if TYPE_CHECKING:  # annotations only: importing these helpers (e.g. to register a plug-in) stays light
    import torch


def _create_temp(folder: Path, prefix: str, suffix: str) -> Path:
    """Create a new empty file with a unique name in ``folder``, mode ``0o666`` minus the umask.

    ``tempfile.mkstemp`` always makes 0600 files; creating the file ourselves lets the kernel
    apply the umask, with no process-wide ``os.umask`` round trip (which would race other threads).
    """
    for _ in range(100):
        tmp = folder / f"{prefix}{secrets.token_hex(4)}{suffix}"
        try:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"no free temporary file name in '{folder}'")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; on success it replaces ``path`` in one step.

    A crash or an exception leaves an older file at ``path`` untouched and no temporary file
    behind. The new file keeps the mode of the file it replaces, else gets the umask default
    (``0o666 & ~umask``, like any new file; not mkstemp's 0600, which another user, e.g. a
    ComfyUI service account, could not read). A folder at ``path`` is refused before any work.
    """
    from .errors import OutputError

    path = Path(path)
    if path.is_dir():
        raise OutputError(f"'{path}' is a folder: give a file name for the output, or remove the folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    old_mode = path.stat().st_mode & 0o777 if path.exists() else None
    tmp = _create_temp(path.parent, f".{path.name}.", suffix)
    # The umask default, as the kernel just applied it; set again after the writer, since some
    # writers replace the file they are given (safetensors >= 0.7 writes 0600 and renames).
    try:
        mode = old_mode if old_mode is not None else tmp.stat().st_mode & 0o777
        yield tmp
        os.chmod(tmp, mode)
        with open(tmp, "rb+") as f:  # the bytes are durable before the rename makes them visible
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_safetensors_atomic(
    tensors: Mapping[str, torch.Tensor], path: str | os.PathLike, metadata: Mapping[str, str] | None = None
) -> None:
    """``safetensors.torch.save_file`` through :func:`atomic_write` (contiguous CPU copies)."""
    from safetensors.torch import save_file

    data = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    try:
        with atomic_write(path) as tmp:
            save_file(data, str(tmp), metadata=dict(metadata) if metadata else None)
    except Exception as exc:
        os_error = _as_os_error(exc, path)
        if os_error is None:
            raise
        raise os_error from exc


def _as_os_error(exc: BaseException, path: str | os.PathLike) -> OSError | None:
    """safetensors reports a full disk or a denied write as ``SafetensorError("... I/O error ...
    (os error 28)")``; return it as the ``OSError`` it is (so callers handle every write failure
    alike), or None for any other error."""
    import re

    if isinstance(exc, OSError) or type(exc).__name__ != "SafetensorError" or "I/O error" not in str(exc):
        return None
    match = re.search(r"os error (\d+)", str(exc))
    if match is None:
        return OSError(str(exc))
    code = int(match.group(1))
    return OSError(code, os.strerror(code), str(path))


def lazy_exports(package: str, exports: Mapping[str, str]):
    """``(__getattr__, __dir__)`` for a package whose names load their submodule on first use.

    ``exports`` maps a public name to the relative submodule defining it (``{"evaluate": ".evaluate"}``),
    so importing the package stays light (no matplotlib / av until a function needs them).
    """
    import importlib

    def __getattr__(name: str):
        if name in exports:
            return getattr(importlib.import_module(exports[name], package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__


def call_entry_points(group: str, register: Callable[..., Any], what: str) -> None:
    """Call every installed entry point of ``group`` with ``register`` (the plug-in registers through it).

    A plug-in that fails to load or register is reported with a warning naming it, and the others still
    run: one broken package must not take down the models or metrics of the rest.
    """
    import warnings
    from importlib.metadata import entry_points

    for ep in entry_points(group=group):
        try:
            ep.load()(register)
        except Exception as exc:  # noqa: BLE001 - any plug-in failure is reported, not raised
            warnings.warn(f"mvs2v: the {what} entry point {ep.name!r} ({ep.value}) failed: {exc!r}", stacklevel=3)

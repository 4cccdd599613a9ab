"""Small shared helpers: atomic file writes."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Mapping

if TYPE_CHECKING:  # annotations only: importing these helpers (e.g. to register a plug-in) stays light
    import torch


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; on success it replaces ``path`` in one step.

    A crash or an exception leaves an older file at ``path`` untouched and no temporary file
    behind. The new file keeps an existing file's permissions, else gets 0644 (mkstemp makes
    0600, which another user, e.g. a ComfyUI service account, could not read).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
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
    with atomic_write(path) as tmp:
        save_file(data, str(tmp), metadata=dict(metadata) if metadata else None)


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

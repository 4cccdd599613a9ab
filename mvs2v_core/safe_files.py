"""Refusing pickle files: mvs2v reads weights from ``.safetensors`` only.

Unpickling a file can run arbitrary code, so nothing in mvs2v calls ``torch.load``. Every loader
(DiT, VAE, text encoder, adapter, feature models) asks this module first, so the rule and its
message are written once:

* :func:`refuse_pickle` - a file that is a pickle by its name (``.pt``, ``.pth``, ``.bin``,
  ``.ckpt``...) or by its first bytes (a ``torch.save`` zip archive or a raw pickle stream, even
  when it is named ``.safetensors``);
* :func:`refuse_pickle_folder` - a model folder whose only weights are pickle files.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import CheckpointError

__all__ = ["PICKLE_SUFFIXES", "pickle_reason", "refuse_pickle", "refuse_pickle_folder"]

# ``.tar`` is the pre-1.6 torch.save archive format.
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle", ".tar")

_ZIP_MAGIC = b"PK\x03\x04"   # torch.save since PyTorch 1.6: a zip archive holding a pickle
_PICKLE_PROTO = 0x80         # a pickle stream (protocol >= 2) starts with PROTO, then the version


def _head_reason(path: Path) -> str | None:
    """Why the first bytes of ``path`` say pickle, or ``None`` (reads 4 bytes)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError:
        return None   # unreadable files are reported by the loader that opens them
    named_safetensors = path.suffix.lower() == ".safetensors"
    if head.startswith(_ZIP_MAGIC):
        what = "its bytes are a zip archive, the format of torch.save"
    elif len(head) >= 2 and head[0] == _PICKLE_PROTO and 2 <= head[1] <= 5:
        what = "its bytes are a Python pickle stream"
    else:
        return None
    return f"{what}: this is a pickle (torch.save) file, not safetensors" if named_safetensors else what


def pickle_reason(path: str | os.PathLike) -> str | None:
    """Why ``path`` is a pickle file (its suffix, or for an existing file its first bytes), else ``None``."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        return f"'{suffix}' files are PyTorch pickles"
    return _head_reason(p) if p.is_file() else None


def _refusal(path: Path, what: str, reason: str) -> CheckpointError:
    return CheckpointError(
        f"Refusing to load the {what} {path} ({reason}): mvs2v reads weights from .safetensors only, "
        "because loading a pickle can run arbitrary code. Use the .safetensors release of these weights, "
        "or convert the file once in a Python session you trust, e.g. "
        "`safetensors.torch.save_file(torch.load(PATH, weights_only=True), 'model.safetensors')`"
    )


def refuse_pickle(path: str | os.PathLike, what: str = "weights file") -> None:
    """Raise :class:`CheckpointError` if ``path`` is a pickle file by name or by its first bytes.

    Never unpickles anything; reads at most 4 bytes. A missing path passes (the caller reports it).

    Args:
        path: the file about to be loaded.
        what: what it should hold, for the message (``"VAE"``, ``"adapter"``...).
    """
    reason = pickle_reason(path)
    if reason is not None:
        raise _refusal(Path(path), what, reason)


def refuse_pickle_folder(folder: str | os.PathLike, what: str = "model folder") -> None:
    """Raise :class:`CheckpointError` if ``folder`` holds pickle weight files.

    Call it once the folder is known to have no ``.safetensors`` weights, so that the user hears
    "pickle only" rather than "no weights".
    """
    folder = Path(folder)
    pickles = sorted(f.name for f in folder.iterdir() if f.is_file() and f.suffix.lower() in PICKLE_SUFFIXES)
    if pickles:
        raise _refusal(folder, what, f"its only weights are pickle files: {', '.join(pickles[:4])}")

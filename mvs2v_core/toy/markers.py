"""Toy model folders: a JSON marker file (format, version, settings) that loaders detect them by."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import CheckpointError
from ..utils import atomic_write


def write_marker(folder: str | os.PathLike, marker: str, meta: dict) -> Path:
    """Write ``meta`` as ``folder/marker`` atomically; returns the folder."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / marker) as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return out


def read_marker(path: str | os.PathLike, marker: str, fmt: str, version: int, what: str,
                how_to_write: str) -> tuple[Path, dict]:
    """Read a marker written by :func:`write_marker` from a folder (or the marker file itself).

    Returns ``(folder, meta)``; a missing, unreadable, foreign or other-version marker raises a
    :class:`CheckpointError` that says how to write a good one (``how_to_write``).
    """
    p = Path(path)
    folder = p.parent if p.is_file() else p
    file = folder / marker
    if not file.is_file():
        raise CheckpointError(f"'{p}' is not a {what}: {marker} is missing. Write one with {how_to_write}.")
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read '{file}' ({exc}); write the {what} again with {how_to_write}") from None
    if not isinstance(meta, dict) or meta.get("format") != fmt or meta.get("version") != version:
        got = meta if not isinstance(meta, dict) else f"format {meta.get('format')!r}, version {meta.get('version')!r}"
        raise CheckpointError(f"'{file}' is not a version-{version} {fmt} file ({got})")
    return folder, meta


def has_marker(path: str | os.PathLike, marker: str) -> bool:
    """True when ``path`` is a folder holding ``marker``, or that marker file itself."""
    p = Path(path)
    return (p.is_dir() and (p / marker).is_file()) or (p.is_file() and p.name == marker)

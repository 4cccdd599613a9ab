"""Toy model folders: a JSON marker file (format, version, settings) that loaders detect them by.

Each folder also declares its kind (the marker's format) in core's ``mvs2v_component.json``
(:mod:`mvs2v_core.pipeline.components`), so ``mvs2v generate --vae / --text-encoder /
--vision-encoder`` and the trainer load it through core's component registry
(:mod:`mvs2v_toy.components`). The kinds, marker names and roles are defined here, importing
nothing heavy, so registering them stays cheap.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ._core import CheckpointError, atomic_write, write_declaration

PROVIDER = "mvs2v_toy"  # the package core names when a folder's kind has no registered loader

CODEC_MARKER = "toy_codec.json"
CODEC_FORMAT = "mvs2v-toy-codec"
TEXT_MARKER = "toy_text_encoder.json"
TEXT_FORMAT = "mvs2v-toy-text-encoder"
VISION_MARKER = "toy_vision_encoder.json"
VISION_FORMAT = "mvs2v-toy-vision-encoder"


def write_marker(folder: str | os.PathLike, marker: str, meta: dict, role: str) -> Path:
    """Write ``meta`` as ``folder/marker`` and the folder's kind declaration (``meta["format"]`` as a
    ``role`` component), each atomically; returns the folder."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / marker) as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    write_declaration(out, meta["format"], role, PROVIDER)
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

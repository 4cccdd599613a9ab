"""The work folder: one JSON record per item, written atomically, with the state of every stage.

Layout::

    work/
      items/<id>.json        the record (below)
      items/<id>/...         the item's files (generated image, video, reference crops)
      manifest.jsonl         written by the last step of `run` (or `mvs2v-data manifest`)

A record::

    {"id": "anna", "kind": "face", "subject": "anna", "prompt": "...", "caption": null,
     "image": "/abs/or/work-relative.png", "video": null, "mask": null, "given_views": [],
     "views": [{"image": "items/anna/ref_00.png", "yaw": -31.2, "frame": 61, "frontal": false,
                "source": "video", "bin": -30, "metrics": {"blur": 212.0, "identity": 0.61}, "dropped": null}],
     "stages": {"generate-images": {"state": "skipped", "reason": "image given"}, ...},
     "dropped": null | {"stage": "filter", "reason": "identity"}, "meta": {}}

A stage's state is ``done``, ``skipped`` (nothing to do for this item) or ``dropped`` (the item leaves
the pipeline; ``reason`` says why). A stage records its state only after its outputs are written,
so a run killed mid-stage redoes at most the items that were in flight, and never loses a record.
"""

from __future__ import annotations

import json
import os
import re
import zlib
from pathlib import Path
from typing import Any, Iterator

from mvs2v_core.errors import MVS2VError, OutputError
from mvs2v_core.utils import atomic_write

__all__ = ["WorkFolder", "STAGES", "parse_shard", "in_shard", "IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "write_text"]

STAGES = ("generate-images", "synthesize-views", "generate-videos", "caption", "extract-references", "filter")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
VIDEO_SUFFIXES = {".mp4", ".webm", ".mov", ".mkv", ".avi"}
ITEM_KEYS = {"id", "kind", "subject", "prompt", "caption", "image", "video", "mask", "views", "split", "meta"}
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def write_text(path: Path, text: str) -> None:
    """Atomic text write; a full disk or a denied write becomes one :class:`OutputError` line."""
    try:
        with atomic_write(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"cannot write '{path}' ({exc.strerror or exc}): free disk space or fix the "
                          "folder's permissions, then re-run the same command (finished items are kept)") from None


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)`` with ``0 <= I < N``; None -> ``(0, 1)``."""
    if not text:
        return 0, 1
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or not 0 <= int(m.group(1)) < int(m.group(2)):
        raise MVS2VError(f"--shard {text!r} must be I/N with 0 <= I < N, e.g. --shard 0/4 on the first of 4 machines")
    return int(m.group(1)), int(m.group(2))


def in_shard(item_id: str, shard: tuple[int, int]) -> bool:
    """Whether ``item_id`` belongs to shard ``(I, N)``: a stable hash, so adding items moves no old one."""
    return zlib.crc32(item_id.encode("utf-8")) % shard[1] == shard[0]


class WorkFolder:
    """Reads and writes item records under ``root/items``."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.items_dir = self.root / "items"

    def record_path(self, item_id: str) -> Path:
        return self.items_dir / f"{item_id}.json"

    def item_dir(self, item_id: str) -> Path:
        d = self.items_dir / item_id
        d.mkdir(parents=True, exist_ok=True)
        return d

    def rel(self, path: str | os.PathLike) -> str:
        """A path as stored in a record: relative to the work folder when inside it."""
        p = Path(path).resolve()
        try:
            return p.relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return str(p)

    def abs(self, stored: str) -> Path:
        p = Path(stored)
        return p if p.is_absolute() else self.root / p

    def save(self, record: dict[str, Any]) -> None:
        write_text(self.record_path(record["id"]), json.dumps(record, indent=1) + "\n")

    def load(self, item_id: str) -> dict[str, Any]:
        path = self.record_path(item_id)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise MVS2VError(f"the record '{path}' cannot be read ({exc}): delete it to start that item "
                             "again") from None

    def ids(self) -> list[str]:
        if not self.items_dir.is_dir():
            return []
        return sorted(p.stem for p in self.items_dir.glob("*.json") if not p.name.startswith("."))

    def records(self, shard: tuple[int, int] = (0, 1)) -> Iterator[dict[str, Any]]:
        for item_id in self.ids():
            if in_shard(item_id, shard):
                yield self.load(item_id)

    # ---- new items -----------------------------------------------------------------------------

    def ingest(self, inputs: Path | None, shard: tuple[int, int] = (0, 1)) -> int:
        """Add a record for every input item that has none yet (items of other shards are left to them).

        ``inputs``: a JSONL file (one item a line: ``id`` and any of ``prompt``, ``caption``, ``image``,
        ``video``, ``kind``, ``subject``, ``mask``, ``views``, ``split``, ``meta``; paths relative to the
        file), or a folder whose images and videos each become an item named by the file's stem.
        Returns how many records were added.
        """
        if inputs is None:
            return 0
        rows = list(_read_inputs(inputs))
        seen: set[str] = set()
        added = 0
        for where, row in rows:
            item_id = row["id"]
            if item_id in seen:
                raise MVS2VError(f"{where}: the id {item_id!r} is used twice: give every item its own id")
            seen.add(item_id)
            if not in_shard(item_id, shard) or self.record_path(item_id).exists():
                continue
            self.save(_new_record(row))
            added += 1
        return added


def _new_record(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "kind": row.get("kind"), "subject": row.get("subject") or row["id"],
            "prompt": row.get("prompt"), "caption": row.get("caption"), "image": row.get("image"),
            "video": row.get("video"), "mask": row.get("mask"), "given_views": row.get("views") or [],
            "split": row.get("split"), "views": [], "stages": {}, "dropped": None, "meta": row.get("meta") or {}}


def _read_inputs(inputs: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    if inputs.is_dir():
        for p in sorted(inputs.iterdir()):
            suffix = p.suffix.lower()
            if suffix in IMAGE_SUFFIXES | VIDEO_SUFFIXES and _ID.match(p.stem):
                key = "image" if suffix in IMAGE_SUFFIXES else "video"
                yield str(p), {"id": p.stem, key: str(p.resolve())}
        return
    if not inputs.is_file():
        raise MVS2VError(f"work.inputs '{inputs}' is neither a JSONL items file nor a folder of images / videos")
    for n, line in enumerate(inputs.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{inputs}:{n}"
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise MVS2VError(f"{where} is not JSON ({exc}): one item object a line") from None
        yield where, _check_row(row, where, inputs.parent)


def _check_row(row: Any, where: str, base: Path) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise MVS2VError(f"{where}: an item must be a JSON object, got {type(row).__name__}")
    unknown = sorted(set(row) - ITEM_KEYS)
    if unknown:
        raise MVS2VError(f"{where}: {unknown[0]!r} is not an item key; use {', '.join(sorted(ITEM_KEYS))} "
                         "(free-form data goes under meta)")
    if not isinstance(row.get("id"), str) or not _ID.match(row["id"]):
        raise MVS2VError(f"{where}: every item needs an 'id' of letters, digits, '.', '_' or '-' "
                         f"(got {row.get('id')!r})")
    if row.get("kind") not in (None, "face", "object"):
        raise MVS2VError(f"{where}: kind is {row['kind']!r}; use 'face' or 'object'")
    if not any(row.get(k) for k in ("prompt", "image", "video")):
        raise MVS2VError(f"{where}: item {row['id']!r} has none of prompt, image, video: give at least one")
    out = dict(row)
    for key in ("image", "video", "mask"):
        if out.get(key):
            out[key] = str((base / out[key]).resolve())
    views = []
    for v in out.get("views") or []:
        v = {"image": v} if isinstance(v, str) else dict(v)
        v["image"] = str((base / v["image"]).resolve())
        views.append(v)
    out["views"] = views
    return out

"""The trainer's JSONL manifest (docs/training.md) from the kept items of a work folder.

One row per item that passed ``filter``: the training clip (``train.mp4`` when references were held
out), the caption, one subject with its kept views (at most ``references.max_views``: the frontal one
first, then the views spreading the yaw range most), ``split`` (``val`` for a ``work.val_fraction``
share, by a hash of the id), ``quality`` (mean identity similarity of face items) and tags.
Paths are written relative to the manifest's folder. Written atomically; a re-run rewrites it whole.
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path
from typing import Any

from .runner import Context
from .work import write_text

__all__ = ["write_manifest", "manifest_row", "choose_views"]


def choose_views(views: list[dict], k: int) -> list[dict]:
    """At most ``k`` views: the frontal first, then greedily the one farthest in yaw from those chosen
    (views without a yaw keep their order)."""
    views = sorted(views, key=lambda v: not v.get("frontal"))
    if len(views) <= k:
        return views
    chosen = [views[0]]
    rest = views[1:]
    while len(chosen) < k:
        def gap(v: dict) -> float:
            if v.get("yaw") is None:
                return -1.0
            return min(abs(v["yaw"] - c["yaw"]) for c in chosen if c.get("yaw") is not None) if any(
                c.get("yaw") is not None for c in chosen) else 0.0
        best = max(rest, key=gap)
        chosen.append(best)
        rest.remove(best)
    return chosen


def manifest_row(ctx: Context, rec: dict, folder: Path) -> dict[str, Any]:
    def rel(stored: str) -> str:
        return Path(os.path.relpath(ctx.work.abs(stored).resolve(), folder.resolve())).as_posix()

    views = []
    for v in choose_views([v for v in rec["views"] if not v.get("dropped")], ctx.cfg.references.max_views):
        entry: dict[str, Any] = {"image": rel(v["image"])}
        if v.get("label"):
            entry["label"] = v["label"]
        elif v.get("yaw") is not None:
            entry["yaw"] = float(v["yaw"])
        if v.get("frontal"):
            entry["frontal"] = True
        views.append(entry)
    split = rec.get("split") or ("val" if zlib.crc32(rec["id"].encode()) % 10_000 < ctx.cfg.work.val_fraction * 10_000
                                 else "train")
    row: dict[str, Any] = {"id": rec["id"], "video": rel(rec.get("train_video") or rec["video"]),
                           "caption": rec["caption"], "subjects": [{"name": rec["subject"], "views": views}],
                           "split": split, "tags": ["mvs2v-data", rec.get("kind") or "object"],
                           "meta": {"prompt": rec.get("prompt"), "source_video": rel(rec["video"])}}
    if rec.get("quality") is not None:
        row["quality"] = rec["quality"]
    return row


def write_manifest(ctx: Context) -> tuple[Path, int]:
    """Write the manifest of every kept item (all shards: run it once the shards are done); (path, rows)."""
    path = ctx.work.root / ctx.cfg.output.manifest
    rows = [manifest_row(ctx, rec, path.parent) for rec in ctx.work.records()
            if rec["stages"].get("filter", {}).get("state") == "done" and not rec.get("dropped")]
    write_text(path, "".join(json.dumps(r) + "\n" for r in rows))
    return path, len(rows)

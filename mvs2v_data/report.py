"""``mvs2v-data report``: what the pipeline kept and dropped, and why.

Writes into ``<work>/report/`` (or ``--out``):

* ``report.json`` and ``report.txt`` -- per stage: items done / skipped / dropped, drops by reason;
  view drops by reason; which filters were off (the aesthetic filter without weights);
* ``yaw.png``, ``identity.png``, ``blur.png`` -- histograms of the reference views' measurements
  (kept and dropped stacked), when any view has that measurement;
* ``contact_sheet.png`` -- thumbnails of kept and dropped views with the reason under each.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from .runner import Context
from .work import STAGES, write_text

__all__ = ["write_report", "summarise"]

SHEET_COLUMNS = 8
THUMB = 96


def summarise(ctx: Context, records: list[dict]) -> dict[str, Any]:
    """Counts per stage and reason, view drops by reason, and the filters that were off."""
    stages: dict[str, Any] = {}
    for stage in STAGES:
        states = Counter(r["stages"][stage]["state"] for r in records if stage in r["stages"])
        reasons = Counter(r["stages"][stage]["reason"] for r in records
                          if r["stages"].get(stage, {}).get("state") == "dropped")
        stages[stage] = {"states": dict(states), "dropped_by_reason": dict(reasons)}
    views = [v for r in records for v in r.get("views", [])]
    f = ctx.cfg.filters
    off = []
    if not (f.aesthetic_model and f.aesthetic_clip):
        off.append("aesthetic: off (set filters.aesthetic_model and filters.aesthetic_clip to use it)")
    if f.blur_min <= 0:
        off.append("blur: off (filters.blur_min = 0)")
    kept = [r for r in records if "filter" in r["stages"] and not r.get("dropped")]
    return {"items": len(records), "kept": len(kept), "stages": stages,
            "views": {"total": len(views), "kept": sum(not v.get("dropped") for v in views),
                      "dropped_by_reason": dict(Counter(v["dropped"] for v in views if v.get("dropped")))},
            "filters_off": off}


def _histogram(views: list[dict], key: str, title: str, path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def values(dropped: bool) -> list[float]:
        return [float(v["metrics"][key]) for v in views
                if key in v.get("metrics", {}) and bool(v.get("dropped")) == dropped]

    kept, dropped = values(False), values(True)
    if not kept and not dropped:
        return False
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    ax.hist([kept, dropped], bins=20, stacked=True, label=["kept", "dropped"], color=["tab:green", "tab:red"])
    ax.set_title(title)
    ax.set_ylabel("views")
    ax.legend()
    fig.tight_layout()
    from mvs2v_core.utils import atomic_write

    with atomic_write(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return True


def _contact_sheet(ctx: Context, records: list[dict], path: Path, limit: int = 64) -> int:
    from PIL import Image, ImageDraw

    from mvs2v_core.utils import atomic_write

    tiles = []
    for r in records:
        for v in r.get("views", []):
            why = v.get("dropped") or (f"item: {r['dropped']['reason']}" if r.get("dropped") else "kept")
            kept = not v.get("dropped") and not r.get("dropped")
            tiles.append((ctx.work.abs(v["image"]), f"{r['id']}: {why}"[:22], kept))
    tiles = sorted(tiles, key=lambda t: not t[2])[:limit]
    if not tiles:
        return 0
    rows = (len(tiles) + SHEET_COLUMNS - 1) // SHEET_COLUMNS
    sheet = Image.new("RGB", (SHEET_COLUMNS * THUMB, rows * (THUMB + 14)), "white")
    draw = ImageDraw.Draw(sheet)
    for n, (image, text, ok) in enumerate(tiles):
        x, y = (n % SHEET_COLUMNS) * THUMB, (n // SHEET_COLUMNS) * (THUMB + 14)
        try:
            with Image.open(image) as im:
                thumb = im.convert("RGB")
            scale = (THUMB - 4) / max(thumb.size)  # small crops are enlarged too, so every tile is readable
            thumb = thumb.resize((max(1, round(thumb.width * scale)), max(1, round(thumb.height * scale))),
                                 Image.NEAREST if scale > 1 else Image.BICUBIC)
            sheet.paste(thumb, (x + 2, y + 2))
        except OSError:
            draw.text((x + 4, y + 40), "unreadable", fill="red")
        draw.text((x + 2, y + THUMB), text, fill="darkgreen" if ok else "red")
    with atomic_write(path, suffix=".png") as tmp:
        sheet.save(tmp, format="PNG")
    return len(tiles)


def write_report(ctx: Context, out: str | None = None) -> Path:
    """Write the report of the shard's records; returns its folder."""
    folder = Path(out) if out else ctx.work.root / "report"
    records = list(ctx.work.records(ctx.shard))
    summary = summarise(ctx, records)
    views = [v for r in records for v in r.get("views", [])]
    plots = {key: _histogram(views, key, title, folder / f"{name}.png") for key, name, title in
             [("yaw", "yaw", "reference yaw (degrees)"), ("identity", "identity", "ArcFace cosine to the frontal"),
              ("blur", "blur", "variance of the Laplacian")]}
    summary["plots"] = [k for k, made in plots.items() if made]
    summary["contact_sheet_tiles"] = _contact_sheet(ctx, records, folder / "contact_sheet.png")
    write_text(folder / "report.json", json.dumps(summary, indent=1) + "\n")
    lines = [f"{summary['items']} items, {summary['kept']} kept"]
    for stage, s in summary["stages"].items():
        states = ", ".join(f"{n} {k}" for k, n in sorted(s["states"].items())) or "not run"
        lines.append(f"{stage}: {states}")
        lines += [f"    dropped: {n} x {why}" for why, n in sorted(s["dropped_by_reason"].items())]
    lines.append(f"views: {summary['views']['kept']} of {summary['views']['total']} kept")
    lines += [f"    dropped: {n} x {why}" for why, n in sorted(summary["views"]["dropped_by_reason"].items())]
    lines += [f"note: {o}" for o in summary["filters_off"]]
    write_text(folder / "report.txt", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return folder


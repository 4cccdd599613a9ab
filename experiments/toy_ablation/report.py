"""Phase 4: every finished run collected into ``summary.json`` and the markdown tables of ``ablation.md``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from mvs2v_core.utils import atomic_write

from .arms import CONFIGS, AblationSettings
from .files import METRICS_FILE, TRAIN_CONFIG_FILE, Layout, load_train_config, read_json, write_json
from .score import METRICS

LABELS = {"psnr": "PSNR (dB)", "ssim": "SSIM", "s_v2r": "S_v->r", "s_r2v": "S_r->v",
          "hidden_face_accuracy": "hidden-face acc.", "face_accuracy_all": "face acc. (all)", "crosstalk": "crosstalk"}
TABLE_METRICS = ("hidden_face_accuracy", "psnr", "ssim", "s_v2r", "s_r2v", "face_accuracy_all", "crosstalk")
PAIRED_METRICS = ("hidden_face_accuracy", "psnr", "s_r2v", "s_v2r", "crosstalk")
DIGITS = {"psnr": 2}


def _stats(values: list[float]) -> dict:
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {"mean": mean, "std": std, "min": min(values), "max": max(values), "n": n}


def _fmt(st: dict | None, key: str) -> str:
    if st is None:
        return "n/a"
    d = DIGITS.get(key, 3)
    return f"{st['mean']:.{d}f} ± {st['std']:.{d}f}"


def _value(m: dict, key: str) -> str:
    v = m.get(key)
    return "n/a" if v is None else f"{v:.{DIGITS.get(key, 3)}f}"


def _config_entry(c: str, runs: dict[int, dict]) -> dict:
    """One arm over its seeds: statistics per metric, the per-seed means, the training time."""
    per_metric = {}
    for k in METRICS:
        vals = [r["means"][k] for r in runs.values() if r["means"].get(k) is not None]
        per_metric[k] = _stats(vals) if vals else None
    return {"config": asdict(CONFIGS[c]), "seeds": sorted(runs), "metrics": per_metric,
            "per_seed": {sd: r["means"] for sd, r in sorted(runs.items())},
            "train_minutes": _stats([r["train_seconds"] / 60 for r in runs.values()]) if runs else None}


def _paired(runs: dict[int, dict], base: dict[int, dict]) -> dict:
    """Per metric, the difference to the base run of the same seed, over the seeds both have."""
    common = sorted(set(runs) & set(base))
    diffs = {}
    for k in METRICS:
        d = [runs[sd]["means"][k] - base[sd]["means"][k] for sd in common
             if runs[sd]["means"].get(k) is not None and base[sd]["means"].get(k) is not None]
        diffs[k] = _stats(d) if d else None
    return {"seeds": common, "diff": diffs}


def _demo_runs(layout: Layout) -> dict:
    out = {}
    for path in sorted((layout.root / "demo").glob(f"*/{METRICS_FILE}")):
        r = read_json(path)
        steps = load_train_config(path.parent / TRAIN_CONFIG_FILE).total_steps
        out[path.parent.name] = {"means": r["means"], "steps": steps, "train_minutes": r["train_seconds"] / 60}
    return out


def aggregate(layout: Layout, s: AblationSettings, configs: Sequence[str], seeds: Sequence[int],
              command: str, refs: dict | None) -> dict:
    """Collect every finished run into ``summary.json`` and ``ablation.md`` (both written atomically)."""
    runs: dict[str, dict[int, dict]] = {c: {} for c in configs}
    for c in configs:
        for sd in seeds:
            path = layout.run(c, sd) / METRICS_FILE
            if path.is_file():
                runs[c][sd] = read_json(path)
    summary: dict[str, Any] = {"settings": s.to_json(), "command": command, "configs": {}, "paired": {}}
    for c in configs:
        summary["configs"][c] = _config_entry(c, runs[c])
    if "base" in configs:
        for c in configs:
            if c != "base":
                summary["paired"][c] = _paired(runs[c], runs["base"])
    summary["reference_rows"] = refs
    summary["demo_runs"] = _demo_runs(layout)
    write_json(layout.root / "summary.json", summary)
    with atomic_write(layout.root / "ablation.md") as tmp:
        tmp.write_text(markdown_table(summary), encoding="utf-8")
    return summary


def _header(summary: dict) -> list[str]:
    s = summary["settings"]
    views = ", ".join(s["eval_views"])
    return [f"Command: `{summary['command']}`", "",
            f"Held-out samples: {s['eval_samples']}; sampler: {s['solver']}, {s['sample_steps']} steps, shift "
            f"{s['sample_shift']}, ref_scale {s['ref_scale']}, text_scale {s['text_scale']}, seed {s['eval_seed']}; "
            f"multi-view runs are given the views {views}, single-view runs the front view; every run "
            f"is scored against the same views ({views}: S_v->r, S_r->v and the hidden faces). "
            "Values: mean ± standard deviation over seeds (sample std).", ""]


def _config_table(summary: dict) -> list[str]:
    lines = ["| config | change | seeds | " + " | ".join(LABELS[k] for k in TABLE_METRICS) + " |",
             "|" + "---|" * (3 + len(TABLE_METRICS))]
    for c, entry in summary["configs"].items():
        seeds = ",".join(str(x) for x in entry["seeds"]) or "none"
        cells = [_fmt(entry["metrics"].get(k), k) for k in TABLE_METRICS]
        lines.append(f"| {c} | {entry['config']['change']} | {seeds} | " + " | ".join(cells) + " |")
    return lines


def _reference_table(refs: dict) -> list[str]:
    lines = ["", "Reference rows (same held-out samples, no seeds):", "",
             "| row | " + " | ".join(LABELS[k] for k in TABLE_METRICS) + " |", "|---|" + "---|" * len(TABLE_METRICS)]
    names = {"truth": "true clips", "gray": "all-gray clip (128)",
             "t2v_base": "text-to-video base, no references (the pretrained start of every run)"}
    for key, label in names.items():
        m = refs.get(key) or {}
        lines.append(f"| {label} | " + " | ".join(_value(m, k) for k in TABLE_METRICS) + " |")
    return lines


def _demo_table(demo_runs: dict) -> list[str]:
    lines = ["", "Longer fine-tune of the bundled demo model (`--bundle-steps`; one seed, same evaluation):", "",
             "| run | fine-tune steps | " + " | ".join(LABELS[k] for k in TABLE_METRICS) + " |",
             "|---|---|" + "---|" * len(TABLE_METRICS)]
    for name, entry in demo_runs.items():
        lines.append(f"| {name} | {entry['steps']} | " + " | ".join(_value(entry["means"], k) for k in TABLE_METRICS)
                     + " |")
    return lines


def _paired_table(paired: dict) -> list[str]:
    lines = ["", "Paired difference to base (same seed, same data order and base model), mean ± std over seeds:", "",
             "| config | seeds | " + " | ".join("Δ " + LABELS[k] for k in PAIRED_METRICS) + " |",
             "|---|---|" + "---|" * len(PAIRED_METRICS)]
    for c, entry in paired.items():
        cells = []
        for k in PAIRED_METRICS:
            st = entry["diff"].get(k)
            d = DIGITS.get(k, 3)
            cells.append("n/a" if st is None else f"{st['mean']:+.{d}f} ± {st['std']:.{d}f}")
        lines.append(f"| {c} | {','.join(map(str, entry['seeds']))} | " + " | ".join(cells) + " |")
    return lines


def markdown_table(summary: dict) -> str:
    """The tables of ``ablation.md`` (mean ± standard deviation over seeds)."""
    lines = _header(summary) + _config_table(summary)
    if summary.get("reference_rows"):
        lines += _reference_table(summary["reference_rows"])
    if summary.get("demo_runs"):
        lines += _demo_table(summary["demo_runs"])
    if summary.get("paired"):
        lines += _paired_table(summary["paired"])
    return "\n".join(lines) + "\n"

"""A model folder scored with ``mvs2v toy-bench`` (:func:`mvs2v_toy.bench.run_toy_bench`), condensed for
the result files: per row and metric the mean with its 95% bootstrap interval over scenes, the bench's
paired intervals, and per-scene values (mean over the sampling seeds) of the metrics the report
compares between runs."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .arms import AblationSettings

# The numbers the report reads (the bench computes more; they stay in its own results.json).
SUMMARY_METRICS = ("reference_use", "slot_binding", "hidden_face_accuracy", "hidden_face_visible",
                   "hidden_face_normalised", "psnr", "ssim", "s_v2r", "s_r2v", "causal_crosstalk",
                   "causal_crosstalk_own", "causal_crosstalk_own_first", "causal_crosstalk_own_second")
# Per-scene values kept for paired comparisons between runs (on the same held-out scenes).
PAIRED_METRICS = ("reference_use", "slot_binding", "hidden_face_accuracy", "hidden_face_visible",
                  "hidden_face_normalised", "psnr", "s_r2v",
                  "causal_crosstalk", "causal_crosstalk_own", "causal_crosstalk_own_first",
                  "causal_crosstalk_own_second")
CURVE_METRICS = ("reference_use", "slot_binding", "hidden_face_accuracy", "hidden_face_normalised", "psnr")


def _round(v: float | None) -> float | None:
    return None if v is None else round(float(v), 5)


def _ci(ci: dict[str, Any]) -> dict[str, Any]:
    return {k: _round(ci[k]) if k != "n" else ci[k] for k in ("mean", "lo", "hi", "n")}


def per_scene_values(bench_dir: Path, rows: Sequence[str], scenes: int, seeds: Sequence[int]) -> dict[str, Any]:
    """``{row: {metric: [value of scene 0, 1, ...]}}`` from the bench's ``records.jsonl`` (the same numbers its
    intervals are computed from: per (row, scene, seed) by ``unit_values``, then the mean over seeds)."""
    from mvs2v_toy.bench_report import per_scene
    from mvs2v_toy.bench_score import unit_values

    groups: dict[tuple[str, int, int], list[dict]] = defaultdict(list)
    for line in (bench_dir / "records.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            r = json.loads(line)
            groups[(r["row"], int(r["scene"]), int(r["seed"]))].append(r)
    values = {key: unit_values(records) for key, records in groups.items()}
    return {row: {m: [_round(v) for v in per_scene(values, row, m, range(scenes), seeds).values()]
                  for m in PAIRED_METRICS} for row in rows}


def bench_world(model: Path, out: Path, world: str, scenes: int, seeds: Sequence[int], rows: Sequence[str],
                s: AblationSettings, batch: int, device: str = "cpu", log=print) -> dict[str, Any]:
    """Run (or resume: the bench skips finished clips) the bench of ``model`` on ``world`` (on ``device``); its
    condensed summary."""
    from mvs2v_toy.bench import run_toy_bench

    res = run_toy_bench(model, out, world=world, scenes=scenes, seeds=tuple(seeds), eval_seed=s.eval_seed,
                        rows=tuple(rows), batch=batch, steps=s.sample_steps, device=device, log=log)
    return condense(res, out, world, scenes, seeds, rows)


def condense(res: dict[str, Any], out: Path, world: str, scenes: int, seeds: Sequence[int],
             rows: Sequence[str]) -> dict[str, Any]:
    """A bench's ``results.json`` content ``res`` (its folder ``out``) as the result files' summary."""
    table = {row: {m: _ci(cis[m]) for m in SUMMARY_METRICS if m in cis} for row, cis in res["rows"].items()}
    paired = {name: {m: _ci(ci) for m, ci in cis.items()} for name, cis in res["paired"].items()}
    return {"world": world, "scenes": scenes, "seeds": list(seeds), "rows": table, "paired": paired,
            "per_scene": per_scene_values(out, rows, scenes, seeds), "notes": res.get("notes", []),
            "command": res["command"]}


def condense_folder(out: Path) -> dict[str, Any]:
    """A finished ``mvs2v toy-bench`` folder's summary, from its ``results.json`` and records."""
    res = json.loads((out / "results.json").read_text(encoding="utf-8"))
    st = res["settings"]
    return condense(res, out, st["world"], st["scenes"], st["seeds"], st["rows"])


def curve_point(step: int, summary: dict[str, Any], row: str) -> dict[str, Any]:
    """One point of a run's curve: the W1 numbers of its own row at ``step``."""
    cis = summary["rows"].get(row, {})
    return {"step": step, "scenes": summary["scenes"], "seeds": summary["seeds"], "row": row,
            "metrics": {m: cis[m] for m in CURVE_METRICS if m in cis}}

"""The numbers of the table, from the result files of finished runs (nothing is made up: a missing run
or metric gives None).

One arm, one bench row, one metric: the mean over training seeds of each run's mean, the spread of
those (min..max), and a 95% bootstrap interval over the held-out scenes of the per-scene values
averaged over the training seeds (:func:`~mvs2v_core.evaluation.stats.bootstrap_ci`). Comparisons
between arms pair the same scenes (:func:`~mvs2v_core.evaluation.stats.paired_bootstrap_ci`) over the
training seeds both arms have. The intervals are over scenes (and sampling seeds within a scene);
the spread shows the training seeds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mvs2v_core.errors import MVS2VError
from mvs2v_core.evaluation.stats import bootstrap_ci, paired_bootstrap_ci, ratio_bootstrap_ci

from mvs2v_toy.causal import MIN_VISIBLE_ACCURACY

from .arms import AblationSettings
from .results import DONE

Records = Sequence[dict[str, Any]]


def finished(records: dict[str, dict[str, Any]], arm: str, world: str = "w1") -> list[dict[str, Any]]:
    """The runs of ``arm`` that have ``world``'s numbers, by seed: finished runs, and runs trained to the end
    whose other world's bench is still to come (W2 costs about twice W1)."""
    def scored(r: dict[str, Any]) -> bool:
        trained = int(r.get("steps_done", 0)) >= int(r.get("steps_total", 1))
        return r.get("status") == DONE or (trained and bool((r.get("bench") or {}).get(world)))

    runs = [r for r in records.values() if r["arm"]["name"] == arm and scored(r)]
    return sorted(runs, key=lambda r: r["seed"])


def common_settings(records: dict[str, dict[str, Any]]) -> AblationSettings | None:
    """The settings every result file shares; refuse a folder that mixes two ablations."""
    settings = None
    for name, r in records.items():
        s = AblationSettings.from_json(r["settings"])
        if settings is None:
            settings, first = s, name
        elif s != settings:
            k, (a, b) = next(iter(settings.differences(s).items()))
            raise MVS2VError(f"the result files mix two ablations ({first}: {k} {a}, {name}: {k} {b}): keep one "
                             "ablation per --results folder")
    return settings


def _bench_row(r: dict[str, Any], world: str, row: str) -> dict[str, Any] | None:
    return (r.get("bench") or {}).get(world, {}).get("rows", {}).get(row)


def scene_values(runs: Records, world: str, row: str, metric: str, seeds: Sequence[int] | None = None
                 ) -> dict[int, float]:
    """Scene -> ``metric`` of ``row`` averaged over the runs (training seeds; only ``seeds`` when given)."""
    sums: dict[int, list[float]] = {}
    for r in runs:
        if seeds is not None and r["seed"] not in seeds:
            continue
        values = (r.get("bench") or {}).get(world, {}).get("per_scene", {}).get(row, {}).get(metric, [])
        for i, v in enumerate(values):
            if v is not None:
                sums.setdefault(i, []).append(float(v))
    return {i: sum(v) / len(v) for i, v in sums.items()}


def _normalised(runs: Records, world: str, row: str, seeds: Sequence[int] | None) -> dict[str, Any]:
    """Hidden / frame-0 face accuracy as the bench reports it: a ratio of scene means, not a mean of
    per-scene ratios, and None where frame 0 is painted below the toy's floor."""
    return ratio_bootstrap_ci(scene_values(runs, world, row, "hidden_face_accuracy", seeds),
                              scene_values(runs, world, row, "hidden_face_visible", seeds),
                              min_denominator=MIN_VISIBLE_ACCURACY)


def _seed_mean(r: dict[str, Any], world: str, row: str, metric: str) -> float | None:
    if metric == "hidden_face_normalised":  # recomputed: benches before the floor stored the raw ratio
        return _normalised([r], world, row, None)["mean"]
    b = _bench_row(r, world, row)
    return b[metric]["mean"] if b and metric in b else None


def cell(runs: Records, world: str, row: str, metric: str) -> dict[str, Any] | None:
    """``{mean, min, max, lo, hi, seeds, scenes}`` for one arm, row and metric; None when no run has it."""
    means = [(r["seed"], _seed_mean(r, world, row, metric)) for r in runs]
    means = [(sd, m) for sd, m in means if m is not None]
    if not means:
        return None
    values = [m for _, m in means]
    seeds = [sd for sd, _ in means]
    if metric == "hidden_face_normalised":
        ci = _normalised(runs, world, row, seeds)
    else:
        ci = bootstrap_ci(list(scene_values(runs, world, row, metric, seeds).values()))
    return {"mean": sum(values) / len(values), "min": min(values), "max": max(values), "lo": ci["lo"],
            "hi": ci["hi"], "seeds": seeds, "scenes": ci["n"]}


def paired(runs_a: Records, runs_b: Records, world: str, row_a: str, row_b: str, metric: str
           ) -> dict[str, Any] | None:
    """``a - b`` on the same scenes, over the training seeds both arms have; None without common seeds."""
    seeds = sorted({r["seed"] for r in runs_a} & {r["seed"] for r in runs_b})
    if not seeds:
        return None
    a = scene_values(runs_a, world, row_a, metric, seeds)
    b = scene_values(runs_b, world, row_b, metric, seeds)
    ci = paired_bootstrap_ci(a, b)
    return None if ci["mean"] is None else {**ci, "seeds": seeds}


def curve(runs: Records, metric: str = "reference_use") -> dict[int, dict[str, Any]]:
    """Step -> ``{mean, min, max, seeds, scenes}`` of ``metric`` over the runs' curve points."""
    points: dict[int, list[tuple[float, int]]] = {}
    for r in runs:
        for p in r.get("curve") or []:
            v = p.get("metrics", {}).get(metric, {}).get("mean")
            if v is not None:
                points.setdefault(int(p["step"]), []).append((float(v), int(p["scenes"])))
    return {step: {"mean": sum(v for v, _ in vs) / len(vs), "min": min(v for v, _ in vs),
                   "max": max(v for v, _ in vs), "seeds": len(vs), "scenes": max(n for _, n in vs)}
            for step, vs in sorted(points.items())}


def train_minutes(runs: Records) -> float | None:
    t = [r["train_seconds"] / 60 for r in runs if r.get("train_seconds")]
    return sum(t) / len(t) if t else None

"""``toy-bench`` results: means with bootstrap intervals over scenes, paired differences, the table, the bar.

Every number of a (row, scene) is first averaged over the sampling seeds, so the interval is over
scenes -- the unit that was sampled -- and a second seed narrows it only as much as it really
does. Intervals: :func:`~mvs2v_core.evaluation.stats.bootstrap_ci` (95%, percentile); the paired ones
(:func:`~mvs2v_core.evaluation.stats.paired_bootstrap_ci`) compare two rows on the same scenes.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from ._core import bootstrap_ci, paired_bootstrap_ci, ratio_bootstrap_ci
from .bench_score import PROBE_METRICS, SUBJECT_METRICS, VIDEO_METRICS
from .causal import MIN_VISIBLE_ACCURACY

__all__ = ["METRIC_LABELS", "PAIRED", "aggregate", "markdown_table", "check_bar", "format_bar"]

METRIC_LABELS = {
    "reference_use": "reference use", "slot_binding": "slot binding", "hidden_face_accuracy": "hidden-face acc.",
    "hidden_face_visible": "frame-0 face acc.", "hidden_face_normalised": "hidden / frame-0", "psnr": "PSNR (dB)",
    "ssim": "SSIM", "s_v2r": "S_v->r", "s_r2v": "S_r->v", "face_accuracy": "face acc. (refs)",
    "crosstalk": "crosstalk", "causal_crosstalk": "causal crosstalk (leak)",
    "causal_crosstalk_own": "own (follows its recoloured references)",
    "causal_crosstalk_own_first": "own, first subject", "causal_crosstalk_own_second": "own, second subject",
}
PAIRED = (("multi", "single"), ("multi", "copy"))
PAIRED_METRICS = ("hidden_face_accuracy", "hidden_face_visible", "psnr", "s_r2v")  # frame-0: a bar item compares it
ALL_METRICS = (*PROBE_METRICS, *SUBJECT_METRICS, *VIDEO_METRICS)


def _mean(values: Sequence[Any]) -> float | None:
    kept = [float(v) for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def per_scene(values: Mapping[tuple[str, int, int], Mapping[str, Any]], row: str, metric: str,
              scenes: Sequence[int], seeds: Sequence[int]) -> dict[int, float | None]:
    """Scene -> the metric of ``row`` averaged over the sampling seeds (None when no seed scored it)."""
    return {i: _mean([values.get((row, i, s), {}).get(metric) for s in seeds]) for i in scenes}


def aggregate(values: Mapping[tuple[str, int, int], Mapping[str, Any]], rows: Sequence[str], scenes: Sequence[int],
              seeds: Sequence[int], n_boot: int = 2000) -> dict[str, Any]:
    """``{"rows": {row: {metric: {mean, lo, hi, n}}}, "paired": {"multi-single": {metric: {...}}}}``.

    Args:
        values: ``(row, scene, seed)`` -> metric name -> number or None (:func:`~.bench_score.unit_values`).
    """
    table: dict[str, dict[str, Any]] = {}
    scene_means: dict[str, dict[str, dict[int, float | None]]] = {}
    for row in rows:
        scene_means[row] = {m: per_scene(values, row, m, scenes, seeds) for m in ALL_METRICS}
        table[row] = {m: bootstrap_ci(list(scene_means[row][m].values()), n_boot=n_boot) for m in ALL_METRICS}
        # A ratio of means: per-scene ratios explode on scenes whose frame-0 accuracy is near 0.
        table[row]["hidden_face_normalised"] = ratio_bootstrap_ci(
            scene_means[row]["hidden_face_accuracy"], scene_means[row]["hidden_face_visible"], n_boot=n_boot,
            min_denominator=MIN_VISIBLE_ACCURACY)
    paired: dict[str, dict[str, Any]] = {}
    for a, b in PAIRED:
        if a in rows and b in rows:
            paired[f"{a}-{b}"] = {m: paired_bootstrap_ci(scene_means[a][m], scene_means[b][m], n_boot=n_boot)
                                  for m in PAIRED_METRICS}
    return {"rows": table, "paired": paired}


def _cell(ci: Mapping[str, Any], digits: int) -> str:
    if ci.get("mean") is None:
        return "n/a"
    return f"{ci['mean']:.{digits}f} [{ci['lo']:.{digits}f}, {ci['hi']:.{digits}f}] ({ci['n']})"


def _digits(metric: str) -> int:
    return 2 if metric == "psnr" else 3


def markdown_table(summary: Mapping[str, Any], notes: Sequence[str] = ()) -> str:
    """Rows x metrics as ``mean [lo, hi] (n scenes)``; metrics no row scored are left out."""
    rows = summary["rows"]
    metrics = [m for m in ALL_METRICS if any(rows[r][m]["n"] for r in rows)]
    lines = ["| row | " + " | ".join(METRIC_LABELS[m] for m in metrics) + " |",
             "|---|" + "---|" * len(metrics)]
    for row, cis in rows.items():
        lines.append(f"| {row} | " + " | ".join(_cell(cis[m], _digits(m)) for m in metrics) + " |")
    if summary["paired"]:
        lines += ["", "| paired difference | " + " | ".join(METRIC_LABELS[m] for m in PAIRED_METRICS) + " |",
                  "|---|" + "---|" * len(PAIRED_METRICS)]
        for name, cis in summary["paired"].items():
            lines.append(f"| {name.replace('-', ' - ')} | "
                         + " | ".join(_cell(cis[m], _digits(m)) for m in PAIRED_METRICS) + " |")
    lines += ["", "Cells: mean [95% bootstrap interval over scenes] (scenes scored); each scene's value is the "
              "mean over its sampling seeds."]
    lines += [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def _mean_of(summary: Mapping[str, Any], row: str, metric: str) -> float | None:
    return summary["rows"].get(row, {}).get(metric, {}).get("mean")


def check_bar(summary: Mapping[str, Any]) -> list[tuple[str, bool | None, str]]:
    """Issue 11's bar for W1, line by line: ``(requirement, passed or None when a row is missing, numbers)``."""
    def m(row: str, metric: str) -> float | None:
        return _mean_of(summary, row, metric)

    def ci(row: str, metric: str) -> Mapping[str, Any]:
        return summary["rows"].get(row, {}).get(metric, {})

    def line(text: str, ok: Any, *numbers: float | None) -> tuple[str, bool | None, str]:
        shown = ", ".join("n/a" if v is None else f"{v:.3f}" for v in numbers)
        return text, None if any(v is None for v in numbers) else bool(ok), shown

    use, use_lo = m("multi", "reference_use"), ci("multi", "reference_use").get("lo")
    single_use = m("single", "reference_use")
    acc, single_acc = m("multi", "hidden_face_accuracy"), m("single", "hidden_face_accuracy")
    lines = [
        line("multi reference use >= 0.7 with 95% interval above 0.6 (mean, lo)",
             use is not None and use_lo is not None and use >= 0.7 and use_lo > 0.6, use, use_lo),
        line("single-view reference use on the same sides is 0", single_use == 0.0, single_use),
        line("hidden-face accuracy >= 0.8 (multi)", acc is not None and acc >= 0.8, acc),
        line("hidden-face accuracy >= single + 0.4 (multi, single)",
             acc is not None and single_acc is not None and acc >= single_acc + 0.4, acc, single_acc),
        line("slot binding >= 0.6 (multi)", (m("multi", "slot_binding") or 0.0) >= 0.6, m("multi", "slot_binding")),
    ]
    for metric, what in (("hidden_face_visible", "frame-0 face accuracy"), ("psnr", "PSNR")):
        lines.append(_no_worse_line(summary, metric, what, line))
    for metric, what in (("hidden_face_accuracy", "hidden-face accuracy"), ("psnr", "PSNR"), ("s_r2v", "S_r->v")):
        a, b = m("multi", metric), m("copy", metric)
        lines.append(line(f"beats the copy-of-frame-0 baseline on {what} (multi, copy)",
                          a is not None and b is not None and a > b, a, b))
    return lines


def _no_worse_line(summary: Mapping[str, Any], metric: str, what: str,
                   line: Callable[..., tuple[str, bool | None, str]]) -> tuple[str, bool | None, str]:
    """"multi no worse than single" on ``metric``: with the paired difference (same scenes and seeds), the data
    must not show multi worse (the 95% interval of multi - single reaches 0); without it, the means."""
    a, b = _mean_of(summary, "multi", metric), _mean_of(summary, "single", metric)
    diff = (summary.get("paired") or {}).get("multi-single", {}).get(metric)
    if diff and diff.get("mean") is not None:
        return line(f"{what} not below single-view's: paired multi - single not shown negative, its 95% interval "
                    "reaches 0 (multi, single, difference, lo, hi)", diff["hi"] >= 0.0,
                    a, b, diff["mean"], diff["lo"], diff["hi"])
    return line(f"{what} not below single-view's (multi, single; means, no paired difference)",
                a is not None and b is not None and a >= b, a, b)


def format_bar(lines: Sequence[tuple[str, bool | None, str]]) -> str:
    """One ``PASS`` / ``FAIL`` / ``MISSING`` line per requirement."""
    word = {True: "PASS", False: "FAIL", None: "MISSING"}
    return "\n".join(f"{word[ok]:7s} {text}: {numbers}" for text, ok, numbers in lines) + "\n"

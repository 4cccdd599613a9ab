"""The leaderboard of a benchmark run: mean per metric per model with bootstrap intervals, CSV, Markdown, plots.

Intervals are percentile bootstraps over cases (:func:`~mvs2v_core.evaluation.stats.bootstrap_ci`,
95%, seed 0) when a model has a metric on two cases or more; with one case the interval is the point.
With several models the Markdown also gives each one's difference from the first, paired over cases
(:func:`~mvs2v_core.evaluation.stats.paired_bootstrap_ci`).
"""

from __future__ import annotations

import csv
import io
import textwrap
from pathlib import Path
from typing import Any

from ..utils import atomic_write

__all__ = ["summarise", "write_leaderboard"]

CSV_COLUMNS = ("model", "metric", "mean", "lo", "hi", "n", "cases")


def summarise(results: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{model: {metric: {"mean", "lo", "hi", "n"}}}`` over the cases of each model (metric order: first seen)."""
    from ..evaluation.stats import bootstrap_ci

    table: dict[str, dict[str, dict[str, Any]]] = {}
    for model, per_case in results.items():
        values: dict[str, list[Any]] = {}
        for record in per_case.values():
            for metric, r in record["metrics"].items():
                values.setdefault(metric, []).append(r.get("value"))
        table[model] = {m: bootstrap_ci(v) for m, v in values.items()}
    return table


def _metrics(table: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    return list(dict.fromkeys(m for per_model in table.values() for m in per_model))


def _fmt(x: Any) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def _csv_text(table: dict[str, dict[str, dict[str, Any]]], cases: int) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for model, per_metric in table.items():
        for metric, s in per_metric.items():
            writer.writerow([model, metric, *("" if s[k] is None else repr(float(s[k])) for k in ("mean", "lo", "hi")),
                             s["n"], cases])
    return buf.getvalue()


def _markdown(table: dict[str, dict[str, dict[str, Any]]], results: dict[str, dict[str, dict[str, Any]]],
              definitions: dict[str, str]) -> str:
    metrics = _metrics(table)
    cases = max(len(per_case) for per_case in results.values())
    lines = [f"# Benchmark leaderboard ({cases} cases)", "",
             "Mean over cases; [95% bootstrap interval over cases] when a metric has two cases or more.", "",
             "| model | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
    for model, per_metric in table.items():
        cells = []
        for m in metrics:
            s = per_metric.get(m)
            if s is None or s["mean"] is None:
                cells.append("skipped")
            elif s["n"] >= 2:
                cells.append(f"{_fmt(s['mean'])} [{_fmt(s['lo'])}, {_fmt(s['hi'])}]")
            else:
                cells.append(_fmt(s["mean"]))
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    lines += _differences(table, results, metrics)
    lines += ["", "## Metrics", ""] + [f"- `{m}`: {definitions.get(m, '')}" for m in metrics]
    skipped = {reason for per_case in results.values() for r in per_case.values() for reason in r["skipped"].values()}
    if skipped:
        lines += ["", "## Skipped", ""] + [f"- {reason}" for reason in sorted(skipped)]
    return "\n".join(lines) + "\n"


def _differences(table: dict[str, dict[str, dict[str, Any]]], results: dict[str, dict[str, dict[str, Any]]],
                 metrics: list[str]) -> list[str]:
    """Markdown rows: each other model minus the first, per metric, paired over the cases both scored."""
    from ..evaluation.stats import paired_bootstrap_ci

    models = list(table)
    if len(models) < 2:
        return []

    def per_case(model: str, metric: str) -> dict[str, Any]:
        return {c: r["metrics"][metric]["value"] for c, r in results[model].items() if metric in r["metrics"]}

    lines = ["", f"## Differences from {models[0]}", "",
             "Mean over the cases both models scored of (model - " + models[0] + "), with its paired 95% bootstrap "
             "interval (pairing removes what a case's difficulty adds to both).", "",
             "| model | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
    for model in models[1:]:
        cells = []
        for m in metrics:
            d = paired_bootstrap_ci(per_case(model, m), per_case(models[0], m))
            cells.append("n/a" if d["mean"] is None else f"{d['mean']:+.4g} [{d['lo']:+.4g}, {d['hi']:+.4g}]")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return lines


def _plot(path: Path, metric: str, per_model: dict[str, dict[str, Any]], definition: str) -> None:
    """One bar per model with its interval as an error bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = [m for m, s in per_model.items() if s["mean"] is not None]
    means = [per_model[m]["mean"] for m in models]
    err = [[means[i] - per_model[m]["lo"] for i, m in enumerate(models)],
           [per_model[m]["hi"] - means[i] for i, m in enumerate(models)]]
    fig, ax = plt.subplots(figsize=(max(3.0, 1.2 * len(models) + 1.5), 3.2))
    ax.bar(range(len(models)), means, yerr=err, capsize=4, color="#4c78a8")
    ax.set_xticks(range(len(models)), models, rotation=20, ha="right")
    ax.set_title(metric)
    ax.set_ylabel("mean over cases (95% CI)")
    width_chars = int(fig.get_figwidth() * 20)  # about what fits at font size 6
    lines = textwrap.wrap(definition, width_chars)
    shown = "\n".join(lines[:3]) + (" ..." if len(lines) > 3 else "")
    fig.text(0.01, 0.01, shown, fontsize=6, color="#555555", va="bottom")
    fig.tight_layout(rect=(0, 0.03 * min(len(lines), 3) + 0.01, 1, 1))
    with atomic_write(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def write_leaderboard(out: Path, results: dict[str, dict[str, dict[str, Any]]], plots: bool = True) -> dict[str, Any]:
    """Write ``leaderboard.csv``, ``leaderboard.md`` and ``plots/<metric>.png``; returns the table and paths."""
    from ..evaluation.registry import available_metrics

    table = summarise(results)
    definitions = {n: m.description for n, m in available_metrics().items()}
    cases = max(len(per_case) for per_case in results.values())
    files = {"csv": out / "leaderboard.csv", "markdown": out / "leaderboard.md"}
    with atomic_write(files["csv"]) as tmp:
        tmp.write_text(_csv_text(table, cases), encoding="utf-8")
    with atomic_write(files["markdown"]) as tmp:
        tmp.write_text(_markdown(table, results, definitions), encoding="utf-8")
    plot_files = []
    if plots:
        for metric in _metrics(table):
            path = out / "plots" / f"{metric}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            _plot(path, metric, {m: t[metric] for m, t in table.items() if metric in t}, definitions.get(metric, ""))
            plot_files.append(str(path))
    return {"table": table, "files": {k: str(v) for k, v in files.items()}, "plots": plot_files}

"""The Markdown tables of the ablation (``results/ablation_table.md``), from the result files alone."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from mvs2v_toy.bench_report import METRIC_LABELS

from .aggregate import cell, common_settings, curve, finished, paired, train_minutes
from .arms import ARMS, AblationSettings
from .files import write_text
from .results import read_all, settings_argv

TABLE_FILE = "ablation_table.md"
W1_METRICS = (("reference_use", "reference use"), ("slot_binding", "slot binding"),
              ("hidden_face_accuracy", "hidden-face acc."), ("hidden_face_visible", "frame-0 face acc."),
              ("hidden_face_normalised", "hidden / frame-0"), ("psnr", "PSNR (dB)"), ("s_r2v", "S_r->v"))
# W2: "own" (how far a cube follows its recoloured references) is measured as the leak is, colour-set
# membership, so it is the precondition of the crosstalk test (issue 11: own >= 0.5, else inconclusive);
# reference use (each hidden face in its own new colour) is stricter and shown beside it.
W2_OWN = "causal_crosstalk_own"
W2_METRICS = tuple((m, METRIC_LABELS[m]) for m in (W2_OWN, "causal_crosstalk_own_first", "causal_crosstalk_own_second",
                                                   "causal_crosstalk", "reference_use"))
PAIRED_W1 = ("reference_use", "slot_binding", "hidden_face_accuracy", "psnr")
BASELINES = (("copy", "copy of frame 0 (no model)"), ("none", "base model, no references"),
             ("single", "base model given only the start view"))
ZERO_NOTE = ("Reference use of the copy and start-view-only rows is exactly 0 by construction: the two versions "
             "of a scene differ only in sides frame 0 and the start view do not show, so the inputs are identical.")


def _digits(metric: str) -> int:
    return 2 if metric == "psnr" else 3


def fmt_cell(c: dict[str, Any] | None, metric: str) -> str:
    """``mean [lo, hi] (min..max)``; the spread only with two or more training seeds."""
    if c is None:
        return "n/a"
    d = _digits(metric)
    text = f"{c['mean']:.{d}f} [{c['lo']:.{d}f}, {c['hi']:.{d}f}]"
    return text + (f" ({c['min']:.{d}f}..{c['max']:.{d}f})" if len(c["seeds"]) > 1 else "")


def fmt_diff(c: dict[str, Any] | None, metric: str) -> str:
    if c is None:
        return "n/a"
    d = _digits(metric)
    return f"{c['mean']:+.{d}f} [{c['lo']:+.{d}f}, {c['hi']:+.{d}f}]"


def _status(records: dict[str, dict[str, Any]], arm: str, world: str = "w1") -> str:
    """"not run", or what the unfinished runs of ``arm`` have done so far (``world``'s bench not done yet)."""
    partial = [r for r in records.values() if r["arm"]["name"] == arm and r.get("status") != "done"]
    s = common_settings(records)
    if not partial and s is not None and arm in s.redundant_arms():
        return "= base (trains as the base under these settings)"
    if not partial:
        return "not run"
    return "not finished: " + ", ".join(f"s{r['seed']} {r.get('steps_done', 0)}/{r['steps_total']} steps, "
                                        f"{world.upper()} bench {'done' if (r.get('bench') or {}).get(world) else 'to do'}"
                                        for r in sorted(partial, key=lambda r: r["seed"]))


def _w1_table(records: dict[str, dict[str, Any]]) -> list[str]:
    head = "| arm | change | row | seeds | " + " | ".join(label for _, label in W1_METRICS) + " | train min/run |"
    lines = [head, "|" + "---|" * (5 + len(W1_METRICS))]
    for arm in ARMS.values():
        runs = finished(records, arm.name)
        if not runs:
            lines.append(f"| {arm.name} | {arm.change} | {arm.own_row} | {_status(records, arm.name)} |"
                         + " |" * (len(W1_METRICS) + 1))
            continue
        cells = [fmt_cell(cell(runs, "w1", arm.own_row, m), m) for m, _ in W1_METRICS]
        minutes = train_minutes(runs)
        lines.append(f"| {arm.name} | {arm.change} | {arm.own_row} | {','.join(str(r['seed']) for r in runs)} | "
                     + " | ".join(cells) + f" | {'n/a' if minutes is None else f'{minutes:.0f}'} |")
    return lines


def _baseline_table(records: dict[str, dict[str, Any]], world: str) -> list[str]:
    runs = finished(records, "base")
    lines = ["| baseline | " + " | ".join(label for _, label in W1_METRICS) + " |", "|---|" + "---|" * len(W1_METRICS)]
    for row, label in BASELINES:
        if row not in ARMS["base"].bench_rows(world):
            continue
        if not any(c for m, _ in W1_METRICS if (c := cell(runs, world, row, m))):
            lines.append(f"| {label} | " + " | ".join("not run" for _ in W1_METRICS) + " |")
            continue
        lines.append(f"| {label} | " + " | ".join(fmt_cell(cell(runs, world, row, m), m) for m, _ in W1_METRICS) + " |")
    return lines


def _paired_table(records: dict[str, dict[str, Any]]) -> list[str]:
    base = finished(records, "base")
    lines = ["| arm - base | seeds | " + " | ".join(f"Δ {m.replace('_', ' ')}" for m in PAIRED_W1) + " |",
             "|---|---|" + "---|" * len(PAIRED_W1)]
    for arm in ARMS.values():
        if arm.name == "base":
            continue
        runs = finished(records, arm.name)
        diffs = [paired(runs, base, "w1", arm.own_row, "multi", m) for m in PAIRED_W1]
        seeds = next((d["seeds"] for d in diffs if d), None)
        shown = ",".join(map(str, seeds)) if seeds else "not run" if not runs or not base else "n/a"
        lines.append(f"| {arm.name} ({arm.own_row}) - base (multi) | {shown} | "
                     + " | ".join(fmt_diff(d, m) for d, m in zip(diffs, PAIRED_W1)) + " |")
    return lines


def _w2_table(records: dict[str, dict[str, Any]]) -> list[str]:
    vanilla = finished(records, "vanilla", "w2")
    lines = ["| arm | seeds | " + " | ".join(label for _, label in W2_METRICS) + " | leak - vanilla (paired) | "
             "verdict |", "|---|---|" + "---|" * (len(W2_METRICS) + 2)]
    for arm in (a for a in ARMS.values() if a.w2):
        runs = finished(records, arm.name, "w2")
        if not runs:
            lines.append(f"| {arm.name} | {_status(records, arm.name, 'w2')} |" + " |" * (len(W2_METRICS) + 2))
            continue
        cells = {m: cell(runs, "w2", "multi", m) for m, _ in W2_METRICS}
        diff = None if arm.name == "vanilla" else paired(runs, vanilla, "w2", "multi", "multi", "causal_crosstalk")
        own = cells[W2_OWN]
        verdict = "n/a" if own is None else "follows its references" if own["mean"] >= 0.5 else \
            "inconclusive (own < 0.5)"
        lines.append(f"| {arm.name} | {','.join(str(r['seed']) for r in runs)} | "
                     + " | ".join(fmt_cell(cells[m], m) for m, _ in W2_METRICS)
                     + f" | {'-' if arm.name == 'vanilla' else fmt_diff(diff, 'causal_crosstalk')} | {verdict} |")
    return lines


def _curve_table(records: dict[str, dict[str, Any]]) -> list[str]:
    curves = {a: curve(finished(records, a) or [r for r in records.values() if r["arm"]["name"] == a]) for a in ARMS}
    steps = sorted({st for c in curves.values() for st in c})
    if not steps:
        return ["No curve points yet (`--score-every`)."]
    lines = ["| arm | " + " | ".join(str(st) for st in steps) + " |", "|---|" + "---|" * len(steps)]
    for a, c in curves.items():
        if c:
            lines.append(f"| {a} | " + " | ".join(f"{c[st]['mean']:.3f}" if st in c else "" for st in steps) + " |")
    return lines


def _commands(records: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["| arm | command |", "|---|---|"]
    for arm in ARMS:
        runs = [r for r in records.values() if r["arm"]["name"] == arm]
        if runs:
            seeds = sorted(r["seed"] for r in runs)
            argv = shlex.split(runs[0]["command"])
            argv[argv.index("--seeds") + 1] = ",".join(map(str, seeds))
            cmd = shlex.join(argv)
            lines.append(f"| {arm} | `{cmd}` |")
    return lines


def _recipe(s: AblationSettings) -> str:
    """The training sequence in words (without the cycle length)."""
    anchor = "slots anchored on the start view, " if s.slot_anchor == "frontal" else ""
    if s.schedule:
        return anchor + ", then ".join(f"{steps} steps on {'+'.join(worlds)}" for worlds, steps in s.legs) + \
            f" ({s.world} data seed {s.data_seed}, curriculum data seed {s.curriculum_data_seed} and up)"
    return (anchor + (f"{s.curriculum_steps} steps on {s.curriculum_world} (seed {s.curriculum_data_seed}, "
                      f"{s.curriculum_samples} samples), then " if s.curriculum_steps else "")
            + "".join(f"{s.graded_steps} steps on {w} with the worlds before it, then " for w in s.graded_worlds)
            + ("the main world with all of them: " if s.graded_worlds and s.keep_mix else "")
            + f"{s.world} data (seed {s.data_seed}), {s.steps} steps")


def markdown(records: dict[str, dict[str, Any]]) -> str:
    """Every table of the ablation as one Markdown document."""
    s = common_settings(records) or AblationSettings()
    intro = [f"Settings: {' '.join(settings_argv(s))}; " + _recipe(s) + " in "
             f"{s.cycle_steps}-step cosine cycles (lr {s.learning_rate:g}, batch {s.batch_size}, view dropout "
             f"{s.dropout_prob}); bench: {s.bench_scenes} held-out scenes (eval seed {s.eval_seed}) x sampling seeds "
             f"{','.join(map(str, s.bench_seeds))}, {s.sample_steps} sampling steps. Init sha256: "
             + (", ".join(f"{k} {v[:12]}" for k, v in s.init_sha256.items()) or "n/a") + ".",
             "", "Cells: mean over training seeds [95% bootstrap interval over scenes of the seed-averaged per-scene "
             "values] (min..max of the training seeds' means, with two or more seeds). Missing runs show as "
             "\"not run\"."]
    parts = [("W1 (one cube): each arm on the row it was trained for", _w1_table(records)),
             ("W1 baselines (same scenes)", _baseline_table(records, "w1") + ["", ZERO_NOTE]),
             ("W1 paired differences to base (same scenes and training seeds)", _paired_table(records)),
             ("W2 (two cubes): own reference following and causal crosstalk per position scheme", _w2_table(records)),
             ("W2 baselines (same scenes)", _baseline_table(records, "w2") + ["", ZERO_NOTE]),
             ("Reference use along training (W1 curve points; the last column is the final bench)",
              _curve_table(records)),
             ("Commands that reproduce each row", _commands(records))]
    out = ["# Toy ablation on W1/W2", "", *intro]
    for title, lines in parts:
        out += ["", f"## {title}", "", *lines]
    return "\n".join(out) + "\n"


def write_report(results: Path) -> Path:
    """Write ``results/ablation_table.md`` atomically; returns its path."""
    path = results / TABLE_FILE
    write_text(path, markdown(read_all(results) if results.is_dir() else {}))
    return path

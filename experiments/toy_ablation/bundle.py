"""A finished run as the demo model of ``mvs2v demo`` (``mvs2v_toy/assets/toy_demo``): its exported model
folder, with its bench numbers in ``model.json`` (``bench``, ``metrics``) and a ``README.md``."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from mvs2v_core.errors import MVS2VError
from mvs2v_toy.bench_report import METRIC_LABELS

from .arms import parse_run_name
from .files import ENCODER_FOLDERS, Layout, read_json, write_json, write_text
from .models import is_exported
from .report import W1_METRICS, W2_METRICS, fmt_cell, fmt_diff
from .results import read_result

HEADLINE = {"w1": (("reference_use", "reference use"), ("slot_binding", "slot binding"),
                   ("hidden_face_accuracy", "hidden-face accuracy"), ("hidden_face_visible", "frame-0 face accuracy"),
                   ("psnr", "PSNR")),
            "w2": tuple((m, METRIC_LABELS[m]) for m in ("causal_crosstalk_own", "causal_crosstalk"))}


def bench_info(record: dict[str, Any], row: str) -> dict[str, Any]:
    """``model.json`` ``bench``: per world the headline numbers (what the demo prints) and every row."""
    out = {}
    for world, summary in (record.get("bench") or {}).items():
        cis = summary["rows"].get(row, {})
        scope = (f"{summary['scenes']} held-out {world.upper()} scenes x sampling seeds "
                 f"{','.join(map(str, summary['seeds']))} ({row} row)")
        out[world] = {"scope": scope, "command": summary["command"],
                      "headline": {label: cis[m] for m, label in HEADLINE.get(world, ())
                                   if cis.get(m, {}).get("mean") is not None},
                      "rows": summary["rows"], "paired": summary["paired"]}
    return out


def readme(info: dict[str, Any], record: dict[str, Any]) -> str:
    """The bundled model's README: what it is, where it came from, what it scored."""
    d = info["dit_config"]
    lines = []
    for world, metrics in (("w1", W1_METRICS), ("w2", W2_METRICS)):
        summary = (record.get("bench") or {}).get(world)
        if not summary:
            continue
        lines += ["", f"{world.upper()}: {summary['scenes']} held-out scenes x sampling seeds "
                  f"{','.join(map(str, summary['seeds']))}; cells: mean [95% bootstrap interval over scenes]; "
                  f"scored with `{summary['command']}`", "",
                  "| row | " + " | ".join(label for _, label in metrics) + " |", "|---|" + "---|" * len(metrics)]
        for row, cis in summary["rows"].items():
            cells = [fmt_cell({**cis[m], "seeds": [0]}, m) if m in cis and cis[m]["mean"] is not None else "n/a"
                     for m, _ in metrics]
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
        for pair, diffs in (summary.get("paired") or {}).items():  # the bar compares rows scene by scene
            lines.append(f"\nPaired over scenes, {pair.replace('-', ' - ')}: " + "; ".join(
                f"{METRIC_LABELS.get(m, m)} {fmt_diff(ci, m)}" for m, ci in diffs.items()))
    if not (record.get("bench") or {}).get("w2"):
        lines += ["", "W2: not scored yet (this run's W2 bench had not finished when it was bundled)."]
    data, init = info["dataset"], ", ".join(f"{k} {v}" for k, v in info["init_sha256"].items())
    trained = _training_phrase(info.get("curriculum"), info["finetune_steps"])
    return f"""# The toy demo model of `mvs2v demo`

A tiny Wan DiT ({info['parameters'] / 1e6:.2f} M parameters, width {d['dim']}, {d['num_layers']} blocks) fine-tuned
for {trained} ({data['world']}, {data['samples']} samples,
seed {data['seed']}; `docs/toy_world.md`) as run `{info['run']}` of the ablation (`docs/ablation.md`):
{info['config']['change']}. It started from the model with sha256 {init}.

Files: `dit.safetensors` (bf16, original Wan key layout), `adapter.safetensors` (proxy tokens / MFI and the
reference settings), `codec/`, `text_encoder/`, `vision_encoder/` (the toy codec and encoders), `model.json`.

Trained with (each table below names the command that scored it):

```
{record['command']}
```

How well it uses its references, against issue 11's bar, and what to try next: `docs/ablation.md`.

Sampler: {info['sampler']['solver']}, {info['sampler']['steps']} steps, shift {info['sampler']['shift']}, ref_scale
{info['sampler']['ref_scale']}, text_scale {info['sampler']['text_scale']}.
""" + "\n".join(lines) + "\n"


def _training_phrase(cur: dict[str, Any] | None, finetune_steps: int) -> str:
    """``"N steps on X, then ... steps on Y"``: a runner schedule's legs, or the curriculum and main stage."""
    if (cur or {}).get("schedule"):
        return ", then ".join(f"{leg['steps']} steps on {leg['worlds']}" for leg in cur["schedule"])
    first = (f"{cur['steps']} steps on the calibration world {cur['world'].upper()} ({cur['samples']} samples, seed "
             f"{cur['seed']}), then " if cur else "")
    graded = (cur or {}).get("graded", [])
    first += "".join(f"{g['steps']} steps on {g['world'].upper()} with the worlds before it, then " for g in graded)
    # A hand-made run names its later stages' world mixes itself (e.g. "W0sd+W12").
    stages = (cur or {}).get("stages", [])
    first += "".join(f"{st['steps']} steps on {st['worlds']}, then " for st in stages)
    mix = " together with the curriculum worlds" if (cur or {}).get("keep_mix") else ""
    main_steps = finetune_steps - (cur["steps"] if cur else 0) - sum(g["steps"] for g in graded) \
        - sum(st["steps"] for st in stages)
    return f"{first}{main_steps} steps on the hidden-colour toy worlds W1/W2{mix}"


def _replace(src: Path, dest: Path) -> None:
    """Copy a file or folder over ``dest`` (staged beside it, then moved in one step)."""
    staging = dest.parent / f".{dest.name}.bundle-tmp"
    shutil.rmtree(staging, ignore_errors=True)
    if src.is_dir():
        shutil.copytree(src, staging)
        shutil.rmtree(dest, ignore_errors=True)
    else:
        shutil.copyfile(src, staging)
    os.replace(staging, dest)


def bundle(layout: Layout, results: Path, run: str, dest: Path, log=print) -> Path:
    """Copy the finished run ``run`` (``ARM-sSEED``) into ``dest`` as the demo model."""
    arm, _ = parse_run_name(run)
    record = read_result(results, run)
    model = layout.run(run).model
    # The W1 bench is what the demo reads; a run whose W2 bench is still to come can be bundled (its
    # README and model.json then have no W2 numbers).
    if record is None or not (record.get("bench") or {}).get("w1") or not is_exported(model):
        raise MVS2VError(f"run {run} has no exported model with a W1 bench in {layout.root} (result file "
                         f"{results / (run + '.json')}): run the ablation for it first")
    return _copy_bundle(model, record, arm.own_row, dest, log)


def bundle_folders(model: Path, benches: list[Path], command: str, dest: Path, log=print) -> Path:
    """Bundle an exported model folder with the numbers of its ``mvs2v toy-bench`` folders (one per world, W1
    required): a model trained by hand (a config under ``results/manual_runs``), or a runner's model benched
    again with more rows. ``command`` says how it was trained; empty: the model's own ``training_command``
    (a runner's export records it)."""
    from .scoring import condense_folder

    if is_exported(model) and not command:
        command = read_json(model / "model.json").get("training_command", "")
        if not command:
            raise MVS2VError(f"{model / 'model.json'} does not say how the model was trained: give --bundle-command")

    summaries = {}
    for folder in benches:
        if not (folder / "results.json").is_file():
            raise MVS2VError(f"{folder} is not a finished mvs2v toy-bench folder (no results.json): score the model first")
        summary = condense_folder(folder)
        summaries[summary["world"]] = summary
    if "w1" not in summaries or not is_exported(model):
        raise MVS2VError(f"bundling needs an exported model folder ({model}) and a W1 bench folder among {benches}")
    return _copy_bundle(model, {"command": command, "bench": summaries}, "multi", dest, log)


def _copy_bundle(model: Path, record: dict[str, Any], row: str, dest: Path, log) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("dit.safetensors", "adapter.safetensors", *ENCODER_FOLDERS):
        _replace(model / name, dest / name)
    info = read_json(model / "model.json")
    info["training_command"] = record["command"]
    info["bench"] = bench_info(record, row)
    w1 = record["bench"]["w1"]["rows"].get(row, {})
    info["metrics"] = {m: ci["mean"] for m, ci in w1.items()}
    write_json(dest / "model.json", info)
    write_text(dest / "README.md", readme(info, record))
    size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    log(f"bundled {info.get('run', model)} into {dest} ({size / 1e6:.2f} MB)")
    return dest

"""``mvs2v bench``: generate every case with every model (or ComfyUI workflow), score, write a leaderboard.

Only argparse and the standard library are imported here; the models load when a case needs them.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..cli_inputs import DTYPES
from ..errors import MVS2VError

__all__ = ["add_bench_parser", "run_bench_command"]


def add_bench_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``mvs2v bench`` to the subparsers."""
    from ..evaluation.command import WEIGHT_FLAGS

    p = sub.add_parser("bench", help="benchmark models or schemes side by side on a case file: generate, score, "
                                     "leaderboard (resumable)",
                       description="Generate every case of --cases with every --model (pipeline API) or --workflow "
                                   "(a running ComfyUI), score each video with the metric registry, and write "
                                   "leaderboard.csv/.md and a plot per metric (docs/evaluation.md, Benchmark runner). "
                                   "A rerun skips finished (model, case) pairs.")
    p.add_argument("--cases", required=True, metavar="CASES.jsonl", help="one case a line: id, prompt, seed, subjects")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for videos/, results/, the leaderboard, plots/")
    g = p.add_argument_group("models: the pipeline API")
    g.add_argument("--model", dest="models", action="append", default=[], metavar="NAME=PATH[,key=value...]",
                   help="a DiT file or model folder (e.g. toy=mvs2v_toy/assets/toy_demo), with optional adapter=, "
                        "vae=, text_encoder=, vision_encoder=, scheme=, gap=, empty_slot_mode=, slots_per_subject=, "
                        "steps=, lora_strength= (repeatable: side by side)")
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    g.add_argument("--dtype", choices=DTYPES, default=None, help="DiT precision (default: bf16 on GPU, fp32 on CPU)")
    g = p.add_argument_group("models: a running ComfyUI")
    g.add_argument("--comfyui", metavar="URL", help="the ComfyUI server, e.g. http://127.0.0.1:8188")
    g.add_argument("--workflow", dest="workflows", action="append", default=[], metavar="[NAME=]API.json",
                   help="an API-format workflow with {{placeholders}} (repeatable: side by side)")
    g.add_argument("--timeout", type=float, default=1800.0, help="seconds one ComfyUI job may take (default 1800)")
    p.add_argument("--steps", type=int, help="sampling steps for every case and model (default: the case's, else the "
                                            "model's)")
    g = p.add_argument_group("scoring (as mvs2v eval)")
    g.add_argument("--eval-models", metavar="ROOT", help="folder holding dinov2/, clip/, insightface/, aesthetic/")
    for option, what in WEIGHT_FLAGS.items():
        g.add_argument("--" + option.replace("_", "-"), dest=option, metavar="FOLDER", help=what)
    g.add_argument("--metrics", metavar="NAME,...", help="only these metrics (default: every metric of real videos)")
    g.add_argument("--eval-device", default="cpu", help="torch device of the feature models (default cpu)")
    g.add_argument("--max-frames", type=int, metavar="N", help="frames sampled evenly for the model metrics")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots (no matplotlib needed)")
    p.set_defaults(handler=run_bench_command)
    return p


def _backends(args: argparse.Namespace) -> list[Any]:
    """The models to compare, every spec checked (nothing loads yet)."""
    from .backends import ComfyUIBackend, PipelineBackend, parse_model_spec, parse_workflow_spec

    if args.models and (args.workflows or args.comfyui):
        raise MVS2VError("mvs2v bench: give --model (pipeline API) or --comfyui URL with --workflow, not both")
    if args.steps is not None and args.steps < 1:
        raise MVS2VError(f"--steps {args.steps} must be at least 1")
    if args.models:
        specs = [parse_model_spec(t) for t in args.models]
        backends = [PipelineBackend(s, args.device, args.dtype, args.steps) for s in specs]
    elif args.comfyui and args.workflows:
        from ..comfyui_http import ComfyUIClient

        client = ComfyUIClient(args.comfyui, timeout=args.timeout)
        client.system_stats()  # a server that is down: one line now, not after the first case
        specs = [parse_workflow_spec(t) for t in args.workflows]
        backends = [ComfyUIBackend(s, client, args.steps, args.timeout) for s in specs]
    else:
        raise MVS2VError("mvs2v bench needs models: --model NAME=PATH (repeatable), or --comfyui URL and --workflow "
                         "API.json")
    names = [s.name for s in specs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise MVS2VError(f"mvs2v bench: model name {', '.join(twice)} is given twice; names label the leaderboard's "
                         "rows, make them unique (NAME=...)")
    return backends


def run_bench_command(args: argparse.Namespace) -> dict[str, Any]:
    """``mvs2v bench``: check everything, run the (model, case) pairs not yet done, write the leaderboard."""
    from ..evaluation.command import parse_metric_names, weights_from_args
    from ..pipeline.outputs import check_output_folder
    from .cases import load_cases
    from .leaderboard import write_leaderboard
    from .runner import EvalOptions, run_bench

    if args.max_frames is not None and args.max_frames < 1:
        raise MVS2VError(f"--max-frames {args.max_frames} must be at least 1 (or leave it out: every frame)")
    cases = load_cases(args.cases)
    options = EvalOptions(weights=weights_from_args(args), metrics=parse_metric_names(args.metrics), device=args.eval_device,
                          max_frames=args.max_frames)
    out = check_output_folder(args.out, "--out", ("leaderboard.csv", "leaderboard.md"))
    backends = _backends(args)
    for backend in backends:
        backend.check(cases)
    print(f"mvs2v bench: {len(cases)} cases x {len(backends)} models -> {out}")
    results = run_bench(backends, cases, Path(out), options)
    board = write_leaderboard(Path(out), results, plots=not args.no_plots)
    for model, per_metric in board["table"].items():
        cells = ", ".join(f"{m} {s['mean']:.4g}" for m, s in per_metric.items() if s["mean"] is not None)
        print(f"{model}: {cells}")
    print(f"wrote {board['files']['markdown']}, {board['files']['csv']} and {len(board['plots'])} plots")
    return {"results": results, **board}

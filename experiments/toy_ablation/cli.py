"""``python -m experiments.toy_ablation``: all phases, resumable; ``--bundle`` then writes the demo model."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from mvs2v_core.errors import MVS2VError

from .arms import CONFIGS, AblationSettings
from .bundle import bundle, pick_bundle_run
from .data import eval_rows, prepare_data
from .files import SETTINGS_FILE, Layout, read_json, write_json
from .report import aggregate
from .run import MODULE, demo_finetune, pretrain, run_grid
from .score import reference_rows
from .workers import pretrain_worker, run_worker

PROG = f"python -m {MODULE}"


def _check_settings(out: Path, s: AblationSettings) -> None:
    """Store the settings in a new folder; refuse to continue a folder made with other settings."""
    settings_path = out / SETTINGS_FILE
    if not settings_path.is_file():
        write_json(settings_path, s.to_json())
        return
    old = AblationSettings.from_json(read_json(settings_path))
    if old != s:
        diff = {k: (v, getattr(s, k)) for k, v in asdict(old).items() if v != getattr(s, k)}
        raise MVS2VError(f"{out} holds an ablation with other settings ({diff}, stored vs asked): use another "
                         "--out, or the stored settings to continue it")


def run_ablation(out: Path, s: AblationSettings, configs: Sequence[str], seeds: Sequence[int], jobs: int,
                 pretrain_threads: int, command: str, log=print) -> dict:
    """All phases (each skipped when its outputs exist); returns the summary."""
    layout = Layout(out)
    out.mkdir(parents=True, exist_ok=True)
    _check_settings(out, s)
    t0 = time.perf_counter()
    prepare_data(layout, s, log)
    eval_rows(layout, s)  # enough held-out samples, before hours of training
    pretrain(layout, s, pretrain_threads, log)
    failed = run_grid(layout, s, configs, seeds, jobs, log)
    refs = reference_rows(layout, s)
    summary = aggregate(layout, s, configs, seeds, command, refs)
    log(f"table: {out / 'ablation.md'} (total {(time.perf_counter() - t0) / 60:.1f} min this call)")
    if failed:
        raise MVS2VError(f"{len(failed)} run(s) failed: {', '.join(failed)}; see their worker.log, then run the same "
                         "command again (finished runs are kept)")
    return summary


def build_parser() -> argparse.ArgumentParser:
    d = AblationSettings()
    p = argparse.ArgumentParser(prog=PROG,
                                description="Toy-world ablation of position scheme, empty-slot mode, view count and MFI.")
    p.add_argument("--out", required=True, help="ablation folder (data, pretraining, runs, ablation.md); resumable")
    p.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated subset of {','.join(CONFIGS)}")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated fine-tune seeds (default 0,1,2)")
    p.add_argument("--jobs", type=int, default=2, help="fine-tune runs in parallel, one CPU thread each (default 2)")
    p.add_argument("--pretrain-threads", type=int, default=2, help="CPU threads of the pretraining (default 2)")
    p.add_argument("--samples", type=int, default=d.samples, help=f"toy dataset size (default {d.samples})")
    p.add_argument("--pretrain-steps", type=int, default=d.pretrain_steps)
    p.add_argument("--finetune-steps", type=int, default=d.finetune_steps)
    p.add_argument("--eval-samples", type=int, default=d.eval_samples)
    p.add_argument("--sample-steps", type=int, default=d.sample_steps, help="sampling steps of the evaluation")
    p.add_argument("--bundle", metavar="DEST", help="after the ablation, copy the best run here as the demo model")
    p.add_argument("--bundle-run", metavar="CONFIG-sSEED", help="the run to bundle (default: the best, see docs)")
    p.add_argument("--bundle-steps", type=int, default=0,
                   help="fine-tune the bundled config and seed again for this many steps (same recipe, "
                        "--pretrain-threads threads) and bundle that model instead (default 0: the ablation run)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--run-dir", help=argparse.SUPPRESS)
    return p


def _worker(args: argparse.Namespace) -> None:
    """Inside a child process of :mod:`.run`: the pretraining or one run."""
    import torch

    torch.set_num_threads(int(os.environ.get("MVS2V_ABLATION_THREADS", "1")))
    out = Path(args.out)
    layout = Layout(out)
    s = AblationSettings.from_json(read_json(out / SETTINGS_FILE))
    if args.worker == "pretrain":
        pretrain_worker(layout)
    else:
        run_worker(layout, s, args.worker, Path(args.run_dir) if args.run_dir else None)


def _grid(args: argparse.Namespace) -> tuple[list[str], list[int]]:
    """``--configs`` and ``--seeds``, checked."""
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown or not configs:
        raise MVS2VError(f"--configs: unknown {unknown}; choose from {', '.join(CONFIGS)}")
    try:
        seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    except ValueError:
        raise MVS2VError(f"--seeds {args.seeds!r} must be comma-separated integers, e.g. 0,1,2") from None
    if not seeds or args.jobs < 1 or args.pretrain_threads < 1:
        raise MVS2VError("--seeds needs at least one seed; --jobs and --pretrain-threads at least 1")
    return configs, seeds


def _ablation_and_bundle(args: argparse.Namespace, command: str) -> None:
    configs, seeds = _grid(args)
    s = AblationSettings(samples=args.samples, pretrain_steps=args.pretrain_steps,
                         finetune_steps=args.finetune_steps, eval_samples=args.eval_samples,
                         sample_steps=args.sample_steps)
    out = Path(args.out)
    summary = run_ablation(out, s, configs, seeds, args.jobs, args.pretrain_threads, command)
    if not args.bundle:
        return
    layout = Layout(out)
    run_name = args.bundle_run or pick_bundle_run(summary)
    run_dir = layout.runs / run_name
    if args.bundle_steps:
        run_dir = demo_finetune(layout, s, run_name, args.bundle_steps, args.pretrain_threads)
        aggregate(layout, s, configs, seeds, command, reference_rows(layout, s))
    bundle(layout, s, run_dir, Path(args.bundle), command)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        if args.worker:
            _worker(args)
        else:
            _ablation_and_bundle(args, f"{PROG} " + " ".join(argv))
    except MVS2VError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished runs and checkpoints are kept; run the same command to continue", file=sys.stderr)
        return 130
    return 0

"""``python -m experiments.toy_ablation``: the W1/W2 ablation (resumable), ``report``, ``--bundle``."""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from mvs2v_core.errors import MVS2VError

from .arms import ARMS, SLOT_ANCHORS, AblationSettings, parse_arms, parse_schedule, parse_seeds
from .data import init_hashes, prepare_data
from .files import DEFAULT_INIT, DEFAULT_RESULTS, MODULE, Layout, read_json, repo_path, write_json
from .handoff import read_handoff
from .report import write_report
from .results import is_done
from .run import fill_caches, prepare_runs, resolve_device, run_pool, todo_runs
from .workers import RunWorker, WorkerContext

PROG = f"python -m {MODULE}"


def check_settings(layout: Layout, s: AblationSettings) -> None:
    """Store the settings in a new ``--out``; refuse to continue one made with other settings."""
    if not layout.settings.is_file():
        write_json(layout.settings, s.to_json())
        return
    diff = AblationSettings.from_json(read_json(layout.settings)).differences(s)
    if diff:
        shown = ", ".join(f"{k} {a} (stored) vs {b}" for k, (a, b) in list(diff.items())[:4])
        raise MVS2VError(f"{layout.root} holds an ablation with other settings ({shown}): use another --out, or "
                         "the stored settings to continue it")


def run_ablation(layout: Layout, init: Path, s: AblationSettings, arms: Sequence[str], seeds: Sequence[int],
                 jobs: int, threads: int, ctx: WorkerContext, log=print) -> list[str]:
    """Every unfinished (arm, seed) run, then the table; returns the names of the runs that were started."""
    s = dataclasses.replace(s, init_sha256=init_hashes(init))
    layout.root.mkdir(parents=True, exist_ok=True)
    check_settings(layout, s)
    results = repo_path(ctx.results)
    same = [a for a in arms if a in s.redundant_arms()]
    if same:
        log(f"left out: {', '.join(same)} (trains exactly as the base under these settings)")
    todo = todo_runs(results, s, [a for a in arms if a not in same], seeds)
    for name in todo:  # a broken handoff is refused before any work, not in a worker's log
        read_handoff(results, name, s)
    t0 = time.perf_counter()
    failed: list[str] = []
    if todo:
        prepare_data(layout, s, log)
        prepare_runs(layout, s, init, todo)
        fill_caches(layout, todo, log)
        failed = run_pool(layout, ctx, todo, jobs, threads, log)
    table = write_report(results)
    log(f"{len(todo) - len(failed)} of {len(todo)} run(s) finished in {(time.perf_counter() - t0) / 60:.1f} min; "
        f"table: {table}")
    if failed:
        raise MVS2VError(f"{len(failed)} run(s) failed: {', '.join(failed)}; see their worker.log, then run the same "
                         "command again (finished work is kept)")
    return todo


def build_parser() -> argparse.ArgumentParser:
    d = AblationSettings()
    p = argparse.ArgumentParser(prog=PROG, description="W1/W2 ablation of views, position scheme, empty slots, MFI "
                                "and TS gap (issue 11). `report` alone rewrites the table from the result files.")
    p.add_argument("command", nargs="?", choices=["report", "handoff"],
                   help="report: only write the table from --results; handoff: write the unfinished runs under --out "
                   "into --results/handoff/ to commit, so that a later machine continues them")
    p.add_argument("--out", help="folder of the big files (data, checkpoints, models, bench videos); resumable")
    p.add_argument("--data", help="an existing dataset made with these settings (default: written under --out)")
    p.add_argument("--init", default=str(DEFAULT_INIT), help=f"toy model folder every arm starts from ({DEFAULT_INIT})")
    p.add_argument("--results", default=str(DEFAULT_RESULTS), help=f"result files and the table ({DEFAULT_RESULTS})")
    p.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated subset of {','.join(ARMS)}")
    p.add_argument("--seeds", default="0,1", help="training seeds (default 0,1)")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel (default 1)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads, split between the jobs")
    p.add_argument("--samples", type=int, default=d.samples, help=f"W12 dataset size (default {d.samples})")
    p.add_argument("--data-seed", type=int, default=d.data_seed, help=f"dataset seed (default {d.data_seed})")
    p.add_argument("--steps", type=int, help=f"fine-tune steps per run on W12 (default {d.steps})")
    p.add_argument("--curriculum-steps", type=int,
                   help=f"steps on the calibration world {d.curriculum_world} first (default {d.curriculum_steps}; "
                        "0: none)")
    p.add_argument("--curriculum-samples", type=int, default=d.curriculum_samples,
                   help=f"size of the calibration world's dataset (default {d.curriculum_samples})")
    p.add_argument("--graded", default="", metavar="WORLD,...",
                   help="graded curriculum: after the calibration world, these worlds in turn (e.g. w0s,w0sd), "
                        "each trained together with the worlds before it (default: none)")
    p.add_argument("--graded-steps", type=int, help=f"steps per graded world (with --graded; default {d.graded_steps})")
    p.add_argument("--keep-mix", action="store_true",
                   help="with --graded: the main stage keeps the curriculum worlds in the mix")
    p.add_argument("--schedule", default="", metavar="WORLD+WORLD:STEPS,...",
                   help="explicit legs instead of --curriculum-steps/--graded-steps/--steps, e.g. "
                        "w0:2400,w0+w0s+w0sd+w12:2086,w12:2400 (w2: the main world's two-object rows); datasets: "
                        "the calibration world, --graded worlds and the main world")
    p.add_argument("--slot-anchor", default=d.slot_anchor, choices=SLOT_ANCHORS,
                   help="the base's slot anchor (frontal: every arm is trained with slots anchored on the start "
                        "view, and the anchor arm is left out as it equals the base)")
    p.add_argument("--scenes", type=int, default=d.bench_scenes, help="held-out scenes of the final bench")
    p.add_argument("--sampling-seeds", default=",".join(map(str, d.bench_seeds)), help="sampling seeds of the bench")
    p.add_argument("--curve-scenes", type=int, default=d.curve_scenes, help="W1 scenes per curve point")
    p.add_argument("--eval-seed", type=int, default=d.eval_seed, help="seed of the held-out scenes")
    p.add_argument("--sample-steps", type=int, default=d.sample_steps, help="sampling steps of the bench")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, help="checkpoint interval (steps)")
    p.add_argument("--score-every", type=int, default=0, help="also score every N-th step's checkpoint into the "
                   "curve (W1, --curve-scenes scenes; a multiple of 200; 0: only the finished run)")
    p.add_argument("--bench-batch", type=int, default=16, help="videos per batched sampling run of the bench")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where the runs train and bench (auto: CUDA when torch sees a GPU, else the CPU; a run's "
                        "numbers then differ slightly from a CPU run of the same seed, and its result file says "
                        "which it was)")
    p.add_argument("--report-only", action="store_true", help="same as the `report` command")
    p.add_argument("--bundle", metavar="DEST", help="copy a finished run as the demo model into DEST (no training)")
    p.add_argument("--bundle-run", metavar="ARM-sSEED", default="base-s0", help="the run to bundle (base-s0)")
    p.add_argument("--bundle-model", metavar="DIR", help="with --bundle: bundle this exported model folder (a run "
                   "trained by hand) instead of a run of the grid; give its bench folders with --bundle-bench")
    p.add_argument("--bundle-bench", metavar="DIR", action="append", default=[],
                   help="with --bundle-model: a finished mvs2v toy-bench folder of it (W1 required, W2 optional)")
    p.add_argument("--bundle-command", metavar="TEXT", default="",
                   help="with --bundle-model: how the model was trained (written into model.json and the README; "
                        "default: the training command the model folder records, as a runner's export does)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    return p


STEP_OPTIONS = ("steps", "curriculum_steps", "graded_steps", "keep_mix")


def _step_settings(args: argparse.Namespace) -> dict:
    """The step counts: the schedule's legs, or the curriculum and main steps (never both; the step
    options default to None so that one given with its default value is still seen)."""
    if not args.schedule:
        d = AblationSettings()
        return {k: getattr(d, k) if getattr(args, k) is None else getattr(args, k) for k in STEP_OPTIONS}
    given = [f"--{k.replace('_', '-')}" for k in STEP_OPTIONS if getattr(args, k) not in (None, False)]
    if given:
        raise MVS2VError(f"--schedule replaces {', '.join(given)}: leave them out")
    return {"steps": 0, "curriculum_steps": 0, "graded_steps": 0, "keep_mix": False,
            "schedule": parse_schedule(args.schedule)}


def _settings(args: argparse.Namespace) -> AblationSettings:
    return AblationSettings(samples=args.samples, data_seed=args.data_seed,
                            **_step_settings(args), curriculum_samples=args.curriculum_samples,
                            graded_worlds=tuple(w for w in args.graded.split(",") if w), slot_anchor=args.slot_anchor,
                            bench_scenes=args.scenes, bench_seeds=tuple(parse_seeds(args.sampling_seeds,
                                                                                    "--sampling-seeds")),
                            curve_scenes=args.curve_scenes, eval_seed=args.eval_seed, sample_steps=args.sample_steps,
                            checkpoint_every=args.checkpoint_every)


def _context(args: argparse.Namespace, s: AblationSettings) -> WorkerContext:
    if args.score_every < 0 or args.score_every % s.checkpoint_every:
        raise MVS2VError(f"--score-every {args.score_every} must be 0 or a multiple of {s.checkpoint_every} "
                         "(the checkpoint interval)")
    if args.jobs < 1 or args.threads < 1 or args.bench_batch < 1:
        raise MVS2VError("--jobs, --threads and --bench-batch must be at least 1")
    device = args.device if args.worker else resolve_device(args.device)  # a worker gets the resolved one
    return WorkerContext(args.out, args.init, args.results, args.score_every, args.bench_batch, args.data or "",
                         device)


def _dispatch(args: argparse.Namespace) -> None:
    if args.command == "report" or args.report_only:
        print(Path(write_report(repo_path(args.results))).read_text(encoding="utf-8"))
        return
    if args.bundle and args.bundle_model:
        from .bundle import bundle_folders

        bundle_folders(Path(args.bundle_model), [Path(b) for b in args.bundle_bench], args.bundle_command,
                       Path(args.bundle))
        return
    if not args.out:
        raise MVS2VError("--out is required: the folder of the data, checkpoints and models")
    layout = Layout(Path(args.out), Path(args.data) if args.data else None)
    if args.bundle:
        from .bundle import bundle

        bundle(layout, repo_path(args.results), args.bundle_run, Path(args.bundle))
        return
    if args.command == "handoff":
        hand_off_runs(layout, args)
        return
    if args.worker:  # a child of run_pool: the settings are the stored ones
        import torch

        torch.set_num_threads(int(os.environ.get("MVS2V_ABLATION_THREADS", "1")))
        stored = AblationSettings.from_json(read_json(layout.settings))
        RunWorker(layout, _context(args, stored), args.worker)()
        return
    s = _settings(args)
    ctx = _context(args, s)
    run_ablation(layout, repo_path(args.init), s, parse_arms(args.arms), parse_seeds(args.seeds), args.jobs,
                 args.threads, ctx)


def hand_off_runs(layout: Layout, args: argparse.Namespace, log=print) -> None:
    """Every unfinished run under ``layout`` written as its handoff (see :mod:`.handoff`). The runner may keep
    running: only finished checkpoints are read."""
    if not layout.settings.is_file():
        raise MVS2VError(f"{layout.root} holds no ablation (no {layout.settings.name}): pass the --out of the runs")
    stored = AblationSettings.from_json(read_json(layout.settings))
    ctx = _context(args, stored)
    names = sorted(p.name for p in (layout.root / "runs").glob("*-s*") if (p / "train.toml").is_file())
    todo = [n for n in names if not is_done(repo_path(ctx.results), n, stored)]
    if not todo:
        log("handoff: no unfinished run under " + str(layout.root))
    for name in todo:
        written = RunWorker(layout, ctx, name, log).hand_off()
        carried = "".join(f", {n} {w} bench records" for w, n in written.bench_records.items()) if written else ""
        log(f"handoff: {name} " + (f"at step {written.step} of {stored.total_steps}{carried}" if written else
                                    "has nothing newer than its handoff (or no checkpoint at a stage boundary)"))


def _sigterm(signum, frame):  # the parent stops its workers on SIGTERM as on Ctrl-C
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    previous = signal.signal(signal.SIGTERM, _sigterm) if not args.worker else None
    try:
        _dispatch(args)
    except MVS2VError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: checkpoints and finished work are kept; run the same command to continue", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0

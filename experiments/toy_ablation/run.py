"""The parent process: write every run's ``train.toml``, fill the feature caches once, then one worker
process per unfinished run, ``jobs`` at a time, the CPU threads split between them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from mvs2v_core.errors import MVS2VError

from .arms import ARMS, AblationSettings, run_name
from .data import write_init_adapter
from .files import MODULE, REPO_ROOT, Layout, load_train_config, write_train_config
from .recipes import train_config
from .results import is_done
from .workers import WorkerContext


def resolve_device(name: str) -> str:
    """``--device`` as the workers get it: ``cuda`` or ``cpu`` (``auto``: CUDA when torch sees a GPU)."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise MVS2VError(f"--device cuda: torch {torch.__version__} sees no CUDA GPU here; use --device cpu (or auto), "
                         "or install a CUDA build of torch")
    return name


def worker_argv(layout: Layout, ctx: WorkerContext, name: str) -> list[str]:
    data = ["--data", str(layout.dataset)] if layout.dataset is not None else []
    return [sys.executable, "-m", MODULE, "--out", str(layout.root), *data, "--init", ctx.init,
            "--results", ctx.results, "--score-every", str(ctx.score_every), "--bench-batch", str(ctx.bench_batch),
            "--device", ctx.device, "--worker", name]


def spawn(argv: list[str], threads: int, log_path: Path, device: str = "cpu") -> subprocess.Popen:
    """A worker with ``threads`` CPU threads, its output appended to ``log_path``. On ``cpu`` it sees no GPU, so
    the trainer (accelerate takes a GPU whenever it sees one) stays on the CPU too."""
    python_path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               MVS2V_ABLATION_THREADS=str(threads), PYTHONPATH=python_path,
               PYTHONUNBUFFERED="1", **({"CUDA_VISIBLE_DEVICES": ""} if device == "cpu" else {}))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", encoding="utf-8") as logf:
        return subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, env=env)


def stop(procs: Sequence[subprocess.Popen]) -> None:
    """SIGTERM to the workers this process started (the trainer then checkpoints and exits)."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=300)
        except subprocess.TimeoutExpired:
            p.kill()


def prepare_runs(layout: Layout, s: AblationSettings, init: Path, names: Sequence[str]) -> None:
    """Each run's init adapter and ``train.toml`` (the exact, standalone record of the run)."""
    for name in names:
        arm_name, _, seed = name.rpartition("-s")
        arm = s.arm(ARMS[arm_name])
        adapter = write_init_adapter(init, arm, layout.init_adapter(arm.name))
        run = layout.run(name)
        run.root.mkdir(parents=True, exist_ok=True)
        write_train_config(run.config, train_config(layout, s, arm, int(seed), init, adapter),
                           f"ablation run {name} (written by {MODULE}; rerun alone with mvs2v-train train --config)")


def fill_caches(layout: Layout, names: Sequence[str], log=print) -> None:
    """Fill the feature caches here, once and by one process, before workers read them: one for plain
    references, one with vision-encoder features (MFI, the alignment loss)."""
    from mvs2v_train.cache import run_cache

    first_of_kind: dict[bool, str] = {}
    for name in names:
        first_of_kind.setdefault(ARMS[name.rpartition("-s")[0]].vision, name)
    for vision, name in first_of_kind.items():
        report = run_cache(load_train_config(layout.run(name).config), log=lambda m: None)
        log(f"cache ({'with vision features' if vision else 'references'}): {report.summary()}")


def todo_runs(results: Path, s: AblationSettings, arms: Sequence[str], seeds: Sequence[int]) -> list[str]:
    """Unfinished runs, seed by seed (every arm of seed 0 first); refuses results of other settings."""
    names = [run_name(a, sd) for sd in seeds for a in arms]
    return [n for n in names if not is_done(results, n, s)]


def run_pool(layout: Layout, ctx: WorkerContext, names: Sequence[str], jobs: int, threads: int,
             log=print) -> list[str]:
    """One worker per run, ``jobs`` at a time with ``threads // jobs`` threads each; returns the failed runs."""
    per_job = max(1, threads // jobs)
    failed: list[str] = []
    running: list[tuple[str, subprocess.Popen, float]] = []
    queue = list(names)
    try:
        while queue or running:
            while queue and len(running) < jobs:
                name = queue.pop(0)
                log(f"run {name}: started ({len(names) - len(queue)}/{len(names)}, {per_job} threads); "
                    f"log in {layout.run(name).log}")
                proc = spawn(worker_argv(layout, ctx, name), per_job, layout.run(name).log, ctx.device)
                running.append((name, proc, time.perf_counter()))
            time.sleep(1.0)
            for item in list(running):
                name, proc, t0 = item
                if proc.poll() is None:
                    continue
                running.remove(item)
                if proc.returncode == 0:
                    log(f"run {name}: done in {(time.perf_counter() - t0) / 60:.1f} min")
                else:
                    failed.append(name)
                    log(f"run {name}: FAILED (exit {proc.returncode}); see {layout.run(name).log}")
    except KeyboardInterrupt:
        stop([p for _, p, _ in running])
        raise
    return failed

"""The child processes: the pretraining, the grid of fine-tune runs (``jobs`` at a time, one CPU
thread each, resumable: a run with a ``metrics.json`` is done) and the longer demo-model fine-tune."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from mvs2v_core.errors import MVS2VError

from .arms import CONFIGS, AblationSettings, parse_run_name
from .files import METRICS_FILE, TRAIN_CONFIG_FILE, WORKER_LOG, Layout, load_train_config, write_train_config
from .recipes import finetune_config, pretrain_config
from .workers import write_random_dit

# `experiments` is not installed: the children find it from the repository root.
REPO_ROOT = Path(__file__).resolve().parents[2]
MODULE = "experiments.toy_ablation"


def spawn(args: list[str], layout: Layout, threads: int, log_path: Path) -> subprocess.Popen:
    """``python -m experiments.toy_ablation --out ROOT ARGS`` with ``threads`` CPU threads, output to ``log_path``."""
    python_path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               MVS2V_ABLATION_THREADS=str(threads), PYTHONPATH=python_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", encoding="utf-8") as logf:
        return subprocess.Popen([sys.executable, "-m", MODULE, "--out", str(layout.root), *args],
                                stdout=logf, stderr=subprocess.STDOUT, env=env)


def wait(procs: list[subprocess.Popen]) -> list[int]:
    """The exit codes; on Ctrl-C the workers are stopped first."""
    try:
        return [p.wait() for p in procs]
    except KeyboardInterrupt:
        stop(procs)
        raise


def stop(procs: Sequence[subprocess.Popen]) -> None:
    """SIGTERM to the workers this process started (the trainer then checkpoints and exits)."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=120)
        except subprocess.TimeoutExpired:
            p.kill()


def pretrain(layout: Layout, s: AblationSettings, threads: int, log=print) -> None:
    """Phase 2 in a child process (``threads`` CPU threads); writes ``pretrain/base.dit.safetensors``."""
    if layout.base_dit.is_file():
        return
    layout.pretrain.mkdir(parents=True, exist_ok=True)
    init = layout.pretrain / "init.safetensors"
    if not init.is_file():
        write_random_dit(init, s.data_seed)
    write_train_config(layout.pretrain / TRAIN_CONFIG_FILE, pretrain_config(layout, s),
                       f"text-to-video pretraining of the tiny toy DiT (written by {MODULE})")
    log(f"pretrain: {s.pretrain_steps} steps of text-to-video from random weights ({threads} threads); "
        f"log in {layout.pretrain / WORKER_LOG}")
    t0 = time.perf_counter()
    proc = spawn(["--worker", "pretrain"], layout, threads, layout.pretrain / WORKER_LOG)
    if wait([proc]) != [0]:
        raise MVS2VError(f"pretraining failed; see {layout.pretrain / WORKER_LOG}")
    log(f"pretrain: done in {(time.perf_counter() - t0) / 60:.1f} min")


def fill_caches(layout: Layout, todo: Sequence[tuple[str, int]], log=print) -> None:
    """Fill the feature caches here, once and by one process, before the workers read them: one for plain
    references, one with ViT features (MFI)."""
    from mvs2v_train.cache import run_cache

    first_of_kind: dict[bool, tuple[str, int]] = {}
    for c, sd in todo:
        first_of_kind.setdefault(CONFIGS[c].mfi, (c, sd))
    for mfi, (c, sd) in first_of_kind.items():
        report = run_cache(load_train_config(layout.run(c, sd) / TRAIN_CONFIG_FILE), log=lambda m: None)
        log(f"cache ({'with ViT features' if mfi else 'references'}): {report.summary()}")


def _run_pool(layout: Layout, todo: list[tuple[str, int]], jobs: int, log=print) -> list[str]:
    """One worker per run, ``jobs`` at a time; returns the names of the runs that failed."""
    failed: list[str] = []
    running: list[tuple[str, subprocess.Popen, float]] = []
    queue = list(todo)
    try:
        while queue or running:
            while queue and len(running) < jobs:
                c, sd = queue.pop(0)
                name = layout.run(c, sd).name
                log(f"run {name}: started ({len(todo) - len(queue)}/{len(todo)})")
                running.append((name, spawn(["--worker", name], layout, 1, layout.run(c, sd) / WORKER_LOG),
                                time.perf_counter()))
            time.sleep(2.0)
            for item in list(running):
                name, proc, t0 = item
                if proc.poll() is None:
                    continue
                running.remove(item)
                if proc.returncode == 0 and (layout.runs / name / METRICS_FILE).is_file():
                    log(f"run {name}: done in {(time.perf_counter() - t0) / 60:.1f} min")
                else:
                    failed.append(name)
                    log(f"run {name}: FAILED (exit {proc.returncode}); see {layout.runs / name / WORKER_LOG}")
    except KeyboardInterrupt:
        stop([p for _, p, _ in running])
        raise
    return failed


def run_grid(layout: Layout, s: AblationSettings, configs: Sequence[str], seeds: Sequence[int], jobs: int,
             log=print) -> list[str]:
    """Fine-tune and evaluate every (config, seed) without a ``metrics.json``, ``jobs`` at a time.

    Returns the names of the runs that failed (their ``worker.log`` says why).
    """
    todo = [(c, sd) for sd in seeds for c in configs if not (layout.run(c, sd) / METRICS_FILE).is_file()]
    if not todo:
        return []
    for c, sd in todo:  # configs first: a run's train.toml is the exact, standalone record of it
        run_dir = layout.run(c, sd)
        run_dir.mkdir(parents=True, exist_ok=True)
        write_train_config(run_dir / TRAIN_CONFIG_FILE, finetune_config(layout, s, CONFIGS[c], sd),
                           f"ablation run {c}, seed {sd} (written by {MODULE})")
    fill_caches(layout, todo, log)
    t_all = time.perf_counter()
    failed = _run_pool(layout, todo, jobs, log)
    log(f"runs: {len(todo) - len(failed)} of {len(todo)} finished in {(time.perf_counter() - t_all) / 60:.1f} min")
    return failed


def demo_finetune(layout: Layout, s: AblationSettings, run_name: str, steps: int, threads: int, log=print) -> Path:
    """The ablation run ``run_name``'s config and seed fine-tuned again for ``steps`` steps (``layout.demo_run``),
    evaluated like every run; returns its folder."""
    c, seed = parse_run_name(run_name)
    run_dir = layout.demo_run(c.name, seed)
    if (run_dir / METRICS_FILE).is_file():
        return run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = finetune_config(layout, s, c, seed, steps=steps, output_dir=run_dir)
    cfg["checkpoint"]["every_n_steps"] = 200
    write_train_config(run_dir / TRAIN_CONFIG_FILE, cfg,
                       f"demo model: {c.name}, seed {seed}, {steps} steps (written by {MODULE} --bundle-steps)")
    log(f"demo model: fine-tuning {c.name} (seed {seed}) for {steps} steps ({threads} threads); log in "
        f"{run_dir / WORKER_LOG}")
    t0 = time.perf_counter()
    proc = spawn(["--worker", f"{c.name}-s{seed}", "--run-dir", str(run_dir)], layout, threads, run_dir / WORKER_LOG)
    if wait([proc]) != [0] or not (run_dir / METRICS_FILE).is_file():
        raise MVS2VError(f"the demo-model fine-tune failed; see {run_dir / WORKER_LOG}")
    log(f"demo model: done in {(time.perf_counter() - t0) / 60:.1f} min")
    return run_dir

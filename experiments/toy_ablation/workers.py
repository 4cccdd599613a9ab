"""What one worker process does for one run (``--worker ARM-sSEED``): train in segments through the
trainer's API (resuming from the last checkpoint), score checkpoints along the way (the curve), export
the finished run as a toy model folder, bench it, and keep its result file up to date."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mvs2v_core.errors import MVS2VError

from .arms import AblationSettings, Arm, parse_run_name
from .files import Layout, RunLayout, load_train_config, read_json, repo_path, write_json
from .models import export_model, is_exported
from .results import DONE, run_command, update_result
from .scoring import bench_world, curve_point


@dataclass(frozen=True)
class WorkerContext:
    """What the worker needs besides the settings: the paths as the user gave them, and the knobs that do
    not change the numbers."""

    out: str
    init: str
    results: str
    score_every: int = 0
    bench_batch: int = 16
    data: str = ""

    def command(self, s: AblationSettings, arm: str, seed: int) -> str:
        return run_command(self.out, self.init, self.results, s, arm, [seed], self.score_every, self.data)


def segment_ends(steps: int, score_every: int) -> list[int]:
    """Where training pauses: every ``score_every`` steps (0: never), and at the end."""
    ends = list(range(score_every, steps, score_every)) if score_every else []
    return ends + [steps]


def checkpoint_at(run: RunLayout, step: int) -> Path | None:
    from mvs2v_train import checkpoint as ckpt

    path = run.checkpoints / ckpt.checkpoint_name(step)
    return path if (path / "trainer_state.json").is_file() else None


def steps_done(run: RunLayout) -> int:
    from mvs2v_train import checkpoint as ckpt

    latest = ckpt.find_latest(run.checkpoints)
    return 0 if latest is None else int(ckpt.read_trainer_state(latest)["global_step"])


def train_until(cfg: Any, run: RunLayout, stop: int, log) -> None:
    """Train (resuming from the last checkpoint) until step ``stop`` has a checkpoint; add the seconds spent
    to the run's ``state.json``."""
    from mvs2v_train.cache import run_cache
    from mvs2v_train.trainer import run_training

    done = steps_done(run)
    if done >= stop:
        return
    run_cache(cfg, log=log)  # a no-op: the parent filled the cache before starting workers
    t0 = time.perf_counter()
    result = run_training(cfg, resume="auto" if done else None, stop_at_step=stop, log=log)
    state = read_json(run.state) if run.state.is_file() else {"train_seconds": 0.0}
    state["train_seconds"] = round(state["train_seconds"] + time.perf_counter() - t0, 1)
    write_json(run.state, state)
    if result.final_step < stop:
        raise MVS2VError(f"training of {run.name} stopped at step {result.final_step}; run the same command to resume")


def final_loss(run: RunLayout) -> float | None:
    """Mean training loss of the last ten logged steps."""
    from mvs2v_train.trainer import read_log

    losses = [e["loss"] for e in read_log(run.train) if e.get("event") == "step"]
    tail = losses[-10:]
    return round(sum(tail) / len(tail), 5) if tail else None


class RunWorker:
    """One run's stages; every stage checks its own output first, so a rerun repeats nothing."""

    def __init__(self, layout: Layout, ctx: WorkerContext, name: str, log=print) -> None:
        arm, self.seed = parse_run_name(name, "--worker")
        self.layout, self.ctx, self.name, self.log = layout, ctx, name, log
        self.s = AblationSettings.from_json(read_json(layout.settings))
        self.arm = self.s.arm(arm)
        self.run = layout.run(name)
        self.cfg = load_train_config(self.run.config)
        self.results = repo_path(ctx.results)

    def record(self, **changes: Any) -> dict[str, Any]:
        arm: Arm = self.arm
        state = read_json(self.run.state) if self.run.state.is_file() else {}
        base = {"run": self.name, "arm": arm.to_json(), "seed": self.seed, "settings": self.s.to_json(),
                "command": self.ctx.command(self.s, arm.name, self.seed), "out": self.ctx.out, "init": self.ctx.init,
                "steps_total": self.s.total_steps, "steps_done": steps_done(self.run),
                "train_seconds": state.get("train_seconds"), "final_train_loss": final_loss(self.run)}
        return update_result(self.results, self.name, base, **changes)

    def export(self, step: int, dest: Path) -> Path:
        if not is_exported(dest):
            checkpoint = checkpoint_at(self.run, step)
            if checkpoint is None:
                raise MVS2VError(f"{self.name}: no checkpoint at step {step} to export")
            export_model(self.layout, self.cfg, checkpoint, dest, self.s, self.arm, self.name,
                         self.ctx.command(self.s, self.arm.name, self.seed))
        return dest

    def curve(self) -> list[dict]:
        return read_json(self.run.curve) if self.run.curve.is_file() else []

    def score_checkpoint(self, step: int) -> None:
        """One point of the curve: W1, ``curve_scenes`` scenes, the first sampling seed, the arm's own row."""
        curve = self.curve()
        if any(p["step"] == step for p in curve):
            return
        if checkpoint_at(self.run, step) is None:
            self.log(f"curve: {self.name} has no checkpoint at step {step} (pruned?); that point is left out")
            return
        model = self.export(step, self.run.step_model(step))
        summary = bench_world(model, self.run.curve_bench(step), "w1", self.s.curve_scenes, self.s.bench_seeds[:1],
                              (self.arm.own_row,), self.s, self.ctx.bench_batch)
        curve = sorted([*curve, curve_point(step, summary, self.arm.own_row)], key=lambda p: p["step"])
        write_json(self.run.curve, curve)
        self.record(curve=curve)

    def finish(self) -> None:
        """Export the finished run, bench it on its worlds, add the final curve point, mark it done."""
        model = self.export(self.s.total_steps, self.run.model)
        record = self.record(status="scoring")
        bench = dict(record.get("bench") or {})
        for world in self.arm.worlds():
            if world not in bench:
                bench[world] = bench_world(model, self.run.bench(world), world, self.s.bench_scenes,
                                           self.s.bench_seeds, self.arm.bench_rows(world), self.s,
                                           self.ctx.bench_batch)
                self.record(bench=bench)
        curve = [p for p in self.curve() if p["step"] != self.s.total_steps]
        curve.append(curve_point(self.s.total_steps, bench["w1"], self.arm.own_row))
        write_json(self.run.curve, curve)
        self.record(bench=bench, curve=curve, status=DONE)

    def __call__(self) -> None:
        for end in segment_ends(self.s.total_steps, self.ctx.score_every):
            train_until(self.cfg, self.run, end, self.log)
            self.record(status="training")
            if end < self.s.total_steps:
                self.score_checkpoint(end)
        self.finish()

"""What one worker process does for one run (``--worker ARM-sSEED``): train in segments through the
trainer's API (resuming from the last checkpoint), score checkpoints along the way (the curve), export
the finished run as a toy model folder, bench it, and keep its result file up to date."""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mvs2v_core.config_files import read_toml
from mvs2v_core.errors import MVS2VError

from .arms import AblationSettings, Arm, parse_run_name
from .files import Layout, load_train_config, read_json, repo_path, write_json, write_train_config
from .handoff import (HANDOFF_FILE, Handoff, continuation_config, copy_handoff, count_records, handoff_folder,
                      load_handoff, read_handoff, restore_bench, restore_model, stage_ends, write_handoff)
from .models import export_model, is_exported
from .results import DONE, is_done, read_result, result_lock, run_command, update_result
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
    device: str = "cpu"  # where the worker trains and benches ("cpu" or "cuda"; see run.resolve_device)

    def command(self, s: AblationSettings, arm: str, seed: int) -> str:
        return run_command(self.out, self.init, self.results, s, arm, [seed], self.score_every, self.data)


HANDOFF_COPY = "handoff"  # a continued trainer folder's own copy of the handoff it started from


def segment_ends(steps: int, score_every: int, boundaries: Sequence[int] = (), start: int = 0) -> list[int]:
    """Where training pauses after ``start``: every ``score_every`` steps (0: never), at every stage boundary
    (so that each has a checkpoint to hand off), and at the end."""
    ends = set(range(score_every, steps, score_every)) if score_every else set()
    return sorted(e for e in {*ends, *boundaries, steps} if start < e <= steps)


@dataclass(frozen=True)
class TrainPart:
    """One trainer folder's share of a run: its config and checkpoints, and the run's global step at which it
    starts (0, or the step of the handoff it continues)."""

    cfg: Any
    train: Path
    offset: int = 0
    handoff: Handoff | None = None

    @property
    def checkpoints(self) -> Path:
        return self.train / "checkpoints"

    def steps_done(self) -> int:
        """The run's global step reached in this part (its offset if it has no checkpoint yet)."""
        from mvs2v_train import checkpoint as ckpt

        latest = ckpt.find_latest(self.checkpoints)
        return self.offset + (0 if latest is None else int(ckpt.read_trainer_state(latest)["global_step"]))

    def checkpoint_at(self, step: int) -> Path | None:
        """The checkpoint of global ``step`` in this part, if it was written and kept."""
        from mvs2v_train import checkpoint as ckpt

        if step <= self.offset:
            return None
        path = self.checkpoints / ckpt.checkpoint_name(step - self.offset)
        return path if (path / "trainer_state.json").is_file() else None


def train_until(part: TrainPart, state_path: Path, name: str, stop: int, log) -> None:
    """Train ``part`` (resuming from its last checkpoint) until global step ``stop`` has a checkpoint; add the
    seconds spent to the run's ``state.json``."""
    from mvs2v_train.cache import run_cache
    from mvs2v_train.trainer import run_training

    done = part.steps_done()
    if done >= stop:
        return
    run_cache(part.cfg, log=log)  # a no-op: the parent filled the cache before starting workers
    t0 = time.perf_counter()
    result = run_training(part.cfg, resume="auto" if done > part.offset else None, stop_at_step=stop - part.offset,
                          log=log)
    state = read_json(state_path) if state_path.is_file() else {"train_seconds": 0.0}
    state["train_seconds"] = round(state["train_seconds"] + time.perf_counter() - t0, 1)
    write_json(state_path, state)
    if part.offset + result.final_step < stop:
        raise MVS2VError(f"training of {name} stopped at step {part.offset + result.final_step}; run the same "
                         "command to resume")


def final_loss(train: Path) -> float | None:
    """Mean training loss of the last ten logged steps."""
    from mvs2v_train.trainer import read_log

    losses = [e["loss"] for e in read_log(train) if e.get("event") == "step"]
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
        self.part = self._part()

    def _part(self) -> TrainPart:
        """Where training goes on: the trainer folder of this machine that is furthest along (the run's own, or
        one continuing a handoff), or a new one continuing the committed handoff when that is further still."""
        parts = [TrainPart(self.cfg, self.run.train)]
        for folder in sorted(self.run.root.glob("train_from_*")):
            if (folder / HANDOFF_COPY / HANDOFF_FILE).is_file():
                parts.append(self._continued(folder, load_handoff(folder / HANDOFF_COPY, self.s)))
        best = max(parts, key=TrainPart.steps_done)  # the first of equals: the run's own folder
        handoff = read_handoff(self.results, self.name, self.s)
        if handoff is None or best.steps_done() >= handoff.step:
            return best
        folder = self.run.continued(handoff.step)
        copy = copy_handoff(handoff, folder / HANDOFF_COPY, self.s)
        if handoff.step < self.s.total_steps:
            write_train_config(folder / "train.toml", continuation_config(read_toml(self.run.config), copy,
                                                                          folder / "train"),
                               f"ablation run {self.name} continued from its handoff at step {handoff.step}")
        self.log(f"{self.name}: continues from its handoff at step {handoff.step} ({handoff.folder})")
        return self._continued(folder, copy)

    def _continued(self, folder: Path, handoff: Handoff) -> TrainPart:
        config = folder / "train.toml"
        return TrainPart(load_train_config(config) if config.is_file() else self.cfg, folder / "train",
                         handoff.step, handoff)

    def train_seconds(self) -> float | None:
        """Training seconds of the run: on earlier machines (its handoff) and on this one (``state.json``)."""
        state = read_json(self.run.state) if self.run.state.is_file() else None
        handoff = self.part.handoff
        if state is None and handoff is None:
            return None
        return round((handoff.train_seconds if handoff else 0.0) + (state or {}).get("train_seconds", 0.0), 1)

    def record(self, **changes: Any) -> dict[str, Any]:
        arm: Arm = self.arm
        handoff = self.part.handoff
        base = {"run": self.name, "arm": arm.to_json(), "seed": self.seed, "settings": self.s.to_json(),
                "command": self.ctx.command(self.s, arm.name, self.seed), "out": self.ctx.out, "init": self.ctx.init,
                "steps_total": self.s.total_steps, "steps_done": self.part.steps_done(),
                "train_seconds": self.train_seconds(),
                "final_train_loss": final_loss(self.part.train)}
        if handoff is not None:
            how = ("the finished model, handed off before its benches were done"
                   if handoff.step == self.s.total_steps else
                   "from the bf16 export of the run at that step, with a fresh optimizer")
            base["continued_from"] = {"step": handoff.step, "handoffs": list(handoff.chain),
                                      "train_seconds_before": handoff.train_seconds,
                                      "how": how + " (a handoff between machines: experiments/toy_ablation/handoff.py)"}
        return update_result(self.results, self.name, base, **changes)

    def export(self, step: int, dest: Path) -> Path:
        if not is_exported(dest):
            part = self.part
            if part.handoff is not None and step == part.offset:
                return restore_model(part.handoff, self.layout.encoders, dest)
            checkpoint = part.checkpoint_at(step)
            if checkpoint is None:
                raise MVS2VError(f"{self.name}: no checkpoint at step {step} to export")
            export_model(self.layout, part.cfg, checkpoint, dest, self.s, self.arm, self.name,
                         self.ctx.command(self.s, self.arm.name, self.seed), step=step)
        return dest

    def curve(self) -> list[dict]:
        return read_json(self.run.curve) if self.run.curve.is_file() else []

    def score_checkpoint(self, step: int) -> None:
        """One point of the curve: W1, ``curve_scenes`` scenes, the first sampling seed, the arm's own row."""
        curve = self.curve()
        if any(p["step"] == step for p in curve):
            return
        if self.part.checkpoint_at(step) is None:
            self.log(f"curve: {self.name} has no checkpoint at step {step} (pruned?); that point is left out")
            return
        model = self.export(step, self.run.step_model(step))
        summary = bench_world(model, self.run.curve_bench(step), "w1", self.s.curve_scenes, self.s.bench_seeds[:1],
                              (self.arm.own_row,), self.s, self.ctx.bench_batch, self.ctx.device)
        curve = sorted([*curve, curve_point(step, summary, self.arm.own_row)], key=lambda p: p["step"])
        write_json(self.run.curve, curve)
        self.record(curve=curve)

    def finish(self) -> None:
        """Export the finished run, bench it on its worlds, add the final curve point, mark it done."""
        model = self.export(self.s.total_steps, self.run.model)
        record = self.record(status="scoring", device=self.ctx.device)
        bench = dict(record.get("bench") or {})
        for world in self.arm.worlds():
            if world not in bench:
                self._restore_bench(world, model)
                bench[world] = bench_world(model, self.run.bench(world), world, self.s.bench_scenes,
                                           self.s.bench_seeds, self.arm.bench_rows(world), self.s,
                                           self.ctx.bench_batch, self.ctx.device)
                self.record(bench=bench)
        curve = [p for p in self.curve() if p["step"] != self.s.total_steps]
        curve.append(curve_point(self.s.total_steps, bench["w1"], self.arm.own_row))
        write_json(self.run.curve, curve)
        with result_lock(self.results, self.name):  # a `handoff` running now sees both changes or neither
            self.record(bench=bench, curve=curve, status=DONE)
            done_with = handoff_folder(self.results, self.name)
            if done_with.is_dir():  # consumed: the git history keeps it
                shutil.rmtree(done_with)
                self.log(f"{self.name}: done; its handoff folder {done_with} is no longer needed and was removed")

    def _restore_bench(self, world: str, model: Path) -> None:
        """Start the ``world`` bench from the clips the run's handoff carries, if it carries more than are here."""
        handoff = self.part.handoff
        if handoff is not None and restore_bench(handoff, world, self.run.bench(world), model, self.log):
            self.log(f"{self.name}: its {world} bench goes on from the {handoff.bench_records[world]} records "
                     "handed off with the model")

    def unfinished_benches(self) -> dict[str, Path]:
        """The bench folders, by world, of benches begun here and not yet in the result file (clips a handoff
        carries are restored into them when that bench starts, and the worlds are benched in turn)."""
        done = (read_result(self.results, self.name) or {}).get("bench") or {}
        return {w: self.run.bench(w) for w in self.arm.worlds() if w not in done and count_records(self.run.bench(w))}

    def boundaries(self) -> list[int]:
        return stage_ends([{"steps": stage.steps} for stage in self.cfg.stages])

    def hand_off(self) -> Handoff | None:
        """Write the latest checkpoint at a stage boundary (or the finished model, with the clips of its unfinished
        benches) as the run's handoff; returns it, or None when the committed handoff is as far along."""
        part, total = self.part, self.s.total_steps
        steps = [e for e in self.boundaries() if part.checkpoint_at(e) is not None]
        if is_exported(self.run.model) or (part.handoff is not None and part.handoff.step == total):
            steps.append(total)
        step = max(steps, default=None)
        if step is None:
            return None
        with result_lock(self.results, self.name):  # the worker may finish meanwhile (see finish)
            if is_done(self.results, self.name, self.s):
                return None
            benches = self.unfinished_benches() if step == total else {}
            committed = read_handoff(self.results, self.name, self.s)
            newer = committed is None or step > committed.step or any(  # fewer clips here: not restored yet
                count_records(b) > committed.bench_records.get(w, 0) for w, b in benches.items())
            if not newer:
                return None
            model = self.export(step, self.run.model if step == total else self.run.step_model(step))
            folder = write_handoff(model, self.results, self.name, step, self.s, self.train_seconds() or 0.0,
                                   part.handoff, benches)
            written = load_handoff(folder, self.s)
            self.record(handoff={"step": step, "folder": str(folder.relative_to(self.results)),
                                 "bench_records": dict(written.bench_records)})
        return written

    def __call__(self) -> None:
        start = self.part.offset
        for end in segment_ends(self.s.total_steps, self.ctx.score_every, self.boundaries(), start):
            train_until(self.part, self.run.state, self.name, end, self.log)
            self.record(status="training", device=self.ctx.device)
            if end < self.s.total_steps and self.ctx.score_every and end % self.ctx.score_every == 0:
                self.score_checkpoint(end)
        self.finish()

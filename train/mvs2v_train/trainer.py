"""The training loop: accelerate (single process, DDP, FSDP), curriculum, checkpoints, validation.

One optimizer step:

1. the curriculum gives the stage of the global step (stage changes are logged) and its learning rate;
2. every process draws its share of the global batch; sample slot ``j`` of step ``s`` is a pure
   function of ``(seed, s, j)`` (data order, views, augmentation, noise), so the run does not depend
   on how the global batch is split across processes, and resuming repeats nothing and skips nothing;
3. examples that share a slot layout and shape go through one DiT forward; the backward of every
   forward but the last runs under ``no_sync`` so gradients are all-reduced once per step;
4. gradient clipping, AdamW step, logging (tqdm, JSONL, tensorboard), atomic checkpoints, validation.

SIGINT / SIGTERM (Ctrl-C, a cluster pre-emption) finish the current step, write a checkpoint and
exit, so no finished step is lost; ``--resume`` then continues exactly.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from mvs2v_core.errors import MVS2VError
from mvs2v_core.references.settings import EmptySlotMode
from mvs2v_core.utils import atomic_write, save_safetensors_atomic

from . import checkpoint as ckpt
from .config import TrainConfig
from .curriculum import Curriculum, StageLRScheduler, derive_seed, sample_at
from .data import Example, TrainData, group_examples
from .export import adapter_parts, export_checkpoint, export_model
from .model import TrainableModel, build_model
from .validation import Validator, heldout_loss, subject_inputs


@dataclass
class TrainResult:
    """What a call to :func:`run_training` did."""

    start_step: int
    final_step: int
    completed: bool
    checkpoint: Path | None = None
    adapter: Path | None = None
    losses: list[float] = field(default_factory=list)
    heldout: list[tuple[int, float]] = field(default_factory=list)
    skipped_samples: int = 0
    sync_max_abs_diff: float | None = None
    is_main: bool = True


class _JsonLog:
    """Append-only JSONL event log of the main process (``logs/train_log.jsonl``)."""

    def __init__(self, path: Path, enabled: bool, resume_step: int | None) -> None:
        self.path = path
        self.enabled = enabled
        if not enabled:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and path.is_file():
            # Drop what came after the checkpoint we resume from: those steps are about to be redone.
            kept = [ln for ln in path.read_text(encoding="utf-8").splitlines()
                    if ln.strip() and _step_of(ln) <= resume_step]
            with atomic_write(path) as tmp:
                tmp.write_text("".join(k + "\n" for k in kept), encoding="utf-8")
        elif resume_step is None and path.is_file():
            path.unlink()

    def write(self, **entry: Any) -> None:
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry, sort_keys=True) + "\n")


def _step_of(line: str) -> int:
    try:
        return int(json.loads(line).get("step", 0))
    except (json.JSONDecodeError, TypeError, ValueError):
        return 1 << 62


def read_log(output_dir: Path) -> list[dict]:
    """The events of ``logs/train_log.jsonl`` (for tools and tests)."""
    path = output_dir / "logs" / "train_log.jsonl"
    if not path.is_file():
        return []
    return [json.loads(ln) for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


def param_checksums(model: torch.nn.Module) -> torch.Tensor:
    """float64 ``[2 * n_trainable]``: sum and sum of squares of every trainable tensor (cheap desync probe)."""
    vals = []
    for _, p in sorted((n, p) for n, p in model.named_parameters() if p.requires_grad):
        d = p.detach().double()
        vals += [d.sum(), d.pow(2).sum()]
    return torch.stack(vals)


def _optimizer(model: TrainableModel, cfg: TrainConfig) -> tuple[torch.optim.Optimizer, list[list[str]]]:
    groups = model.parameter_groups(cfg)
    names = [g.pop("param_names") for g in groups]
    t = cfg.train
    opt = torch.optim.AdamW(groups, lr=cfg.stages[0].learning_rate, betas=tuple(t.betas), eps=t.eps,
                            weight_decay=t.weight_decay)
    return opt, names


def resolve_resume(cfg: TrainConfig, resume: str | None) -> Path | None:
    """``None``: a fresh run. ``"auto"``: the latest checkpoint of the run (error if none). Else a folder."""
    if resume is None:
        return None
    root = cfg.output_dir / "checkpoints"
    if resume == "auto":
        found = ckpt.find_latest(root)
        if found is None:
            raise MVS2VError(f"--resume: no checkpoint in {root}; start without --resume, or give a checkpoint folder")
        return found
    p = Path(resume)
    if p.name == ckpt.LATEST or (p.is_dir() and (p / ckpt.LATEST).is_file()):
        found = ckpt.find_latest(p.parent if p.name == ckpt.LATEST else p)
        if found is None:
            raise MVS2VError(f"--resume {resume}: no complete checkpoint there")
        return found
    if not (p / "trainer_state.json").is_file():
        raise MVS2VError(f"--resume {resume} is not a checkpoint folder (no trainer_state.json inside)")
    return p


def run_training(cfg: TrainConfig, resume: str | None = None, stop_at_step: int | None = None,
                 log: Callable[[str], None] | None = None) -> TrainResult:
    """Train as the config says. ``stop_at_step``: checkpoint and return after that many global steps."""
    run = _TrainingRun(cfg, resume, log)
    try:
        run.train(stop_at_step)
    finally:
        run.close()
    run.accelerator.end_training()
    return run.result


def _accelerator(cfg: TrainConfig) -> Any:
    from datetime import timedelta

    from accelerate import Accelerator
    from accelerate.utils import InitProcessGroupKwargs

    try:
        # Long timeout: the other processes wait while the main one samples validation videos.
        return Accelerator(mixed_precision=cfg.train.mixed_precision, cpu=_cpu_only_launch(),
                           kwargs_handlers=[InitProcessGroupKwargs(timeout=timedelta(hours=2))])
    except (RuntimeError, ValueError) as e:
        raise MVS2VError(f"accelerate could not set up this launch: {e}. Check `accelerate config` / the launch "
                         "flags (FSDP needs GPUs)") from None


def _usable_data(cfg: TrainConfig, say: Callable[[str], None]) -> tuple[TrainData, list[list[int]]]:
    """The manifest's usable samples and, per stage, the indices its filter lets through (checked non-empty)."""
    data = TrainData(cfg)
    say(f"data: {data.summary.describe()}")
    for line, why in data.summary.problems[:20]:
        say(f"  manifest line {line}: {why}")
    if len(data) == 0:
        raise MVS2VError("no manifest row is usable for training: fix the rows above and run `mvs2v-train cache`")
    eligible = [data.eligible(s) for s in cfg.stages]
    for s, e in zip(cfg.stages, eligible):
        if not e:
            raise MVS2VError(f"stage {s.name!r} has no sample that passes its filter {s.filter}: relax "
                             "[stages.filter] or add data (see `mvs2v-train validate-data`)")
    return data, eligible


def _validator(cfg: TrainConfig, device: torch.device) -> Validator | None:
    """The validation sampler when validation is on; its prompts are checked now, not after hours of training."""
    v = cfg.validation
    if not v.every_n_steps:
        return None
    validator = Validator(cfg, device if v.device == "auto" else torch.device("cpu"))
    for prompt in v.prompts:
        subject_inputs(cfg, prompt)
    if v.prompts and not (cfg.model.vae and cfg.model.text_encoder):
        raise MVS2VError("[[validation.prompts]] need model.vae and model.text_encoder to sample with")
    return validator


class _TrainingRun:
    """One call of :func:`run_training`: the prepared model, optimizer, data and logs, and the loop's state
    (global step counters, the result so far). Every process of a launch builds one."""

    def __init__(self, cfg: TrainConfig, resume: str | None, log: Callable[[str], None] | None) -> None:
        from accelerate.utils import DistributedType

        self.cfg = cfg
        self.accelerator = acc = _accelerator(cfg)
        self.main, self.rank, self.world = acc.is_main_process, acc.process_index, acc.num_processes
        self.fsdp = acc.distributed_type == DistributedType.FSDP
        # accelerate names the CPU "cpu:0" in multi-process runs, which safetensors refuses: use plain "cpu".
        self.device = torch.device("cpu") if acc.device.type == "cpu" else acc.device
        self.say = (log or (lambda m: print(m, file=sys.stderr))) if self.main else (lambda m: None)
        self.out, self.ckpt_root = cfg.output_dir, cfg.output_dir / "checkpoints"
        self.resume_path = resolve_resume(cfg, resume)
        if self.resume_path is None and (existing := ckpt.find_latest(self.ckpt_root)) is not None:
            raise MVS2VError(f"{self.out} already holds a run (checkpoint {existing.name}): continue it with --resume, "
                             "or set another train.output_dir (starting over here would overwrite its checkpoints "
                             "and logs)")
        self.data, self.eligible = _usable_data(cfg, self.say)
        # Under proxy / gray every slot makes tokens wherever it is filled: samples with different view
        # dropout draws share one forward (a batch of 8 would otherwise split into up to 8 forwards).
        self.mixed_layouts = cfg.references.empty_slot_mode != EmptySlotMode.DROP
        self.curriculum = Curriculum(cfg.stages)
        self.total = self.curriculum.total_steps

        model = build_model(cfg, device=self.device)
        model.touch_unused = not self.fsdp
        model.train()
        optimizer, self.group_names = _optimizer(model, cfg)
        self.scheduler = StageLRScheduler(optimizer, self.curriculum)
        self.prepared, self.optimizer = acc.prepare(model, optimizer)
        self.inner: TrainableModel = acc.unwrap_model(self.prepared)
        self.trainable = [p for p in self.prepared.parameters() if p.requires_grad]

        self.global_batch = cfg.train.batch_size * cfg.train.gradient_accumulation_steps * self.world
        self.start_step, self.samples_seen, self.skipped = 0, 0, 0
        if self.resume_path is not None:
            self._restore(self.resume_path)
        resumed = self.resume_path is not None
        self.jlog = _JsonLog(self.out / "logs" / "train_log.jsonl", self.main, self.start_step if resumed else None)
        self.writer = None
        if self.main and cfg.logging.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.out / "logs" / "tensorboard"),
                                        purge_step=self.start_step if resumed else None)
        self.validator = _validator(cfg, self.device)
        self.result = TrainResult(self.start_step, self.start_step, False, skipped_samples=self.skipped,
                                  is_main=self.main)
        self.stop_requested = False
        self.checked_at = -1
        self.previous_handlers: dict[int, Any] = {}
        if threading_main():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous_handlers[sig] = signal.signal(sig, self._on_signal)
        self.bar = None
        if self.main and cfg.logging.progress_bar:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, initial=self.start_step, desc="train", unit="step", dynamic_ncols=True,
                            file=sys.stderr)
        self.progress = self.bar.write if self.bar is not None else self.say

    def _restore(self, path: Path) -> None:
        """Continue from checkpoint ``path``: weights, optimizer, scheduler, RNG and counters."""
        state = ckpt.read_trainer_state(path)
        if state.get("config_fingerprint") != self.cfg.fingerprint():
            self.say("warning: the config changed since this checkpoint was written; the run continues with the new "
                     "config, so it will not match an uninterrupted run")
        if int(state.get("global_batch", self.global_batch)) != self.global_batch:
            self.say(f"warning: the global batch was {state['global_batch']} and is now {self.global_batch} "
                     "(processes x batch x accumulation): the data order from here on differs from the original run")
        tensors = ckpt.read_trainable(path)
        if self.fsdp:
            _load_fsdp_state(self.prepared, self.optimizer, tensors, path, self.group_names, self.main)
        else:
            ckpt.load_trainable_into(self.inner, tensors, path)
            self.optimizer.load_state_dict(ckpt.read_optimizer(path, self.group_names))
        self.scheduler.load_state_dict(state["scheduler"])
        ckpt.restore_rank_rng(path, self.rank)
        scaler = self.accelerator.scaler
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        self.start_step = int(state["global_step"])
        self.samples_seen = int(state["samples_seen"])
        self.skipped = int(state.get("skipped_samples", 0))
        self.say(f"resumed from {path} at step {self.start_step}")

    def _on_signal(self, signum, _frame) -> None:
        self.stop_requested = True
        self.say(f"\nsignal {signum}: finishing this step, then writing a checkpoint")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
        for sig, handler in self.previous_handlers.items():
            signal.signal(sig, handler)

    # ---- checkpoints, sync checks, validation ----------------------------------------------------------

    def trainer_state(self, step: int) -> dict:
        pos = self.curriculum.locate(min(step, self.total - 1))
        scaler = self.accelerator.scaler
        return {
            "global_step": step, "stage_index": pos.index, "stage_name": pos.stage.name,
            "step_in_stage": pos.step_in_stage if step < self.total else pos.stage.steps,
            "samples_seen": self.samples_seen, "skipped_samples": self.skipped, "seed": self.cfg.train.seed,
            "config_fingerprint": self.cfg.fingerprint(), "world_size": self.world, "global_batch": self.global_batch,
            "scheduler": self.scheduler.state_dict(), "model_config": self.inner.dit.config.to_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "optimizer_groups": self.group_names, "total_steps": self.total,
        }

    def save(self, step: int) -> Path:
        """Write checkpoint ``step`` (every process takes part; staged, then committed by the main one)."""
        acc, root = self.accelerator, self.ckpt_root
        partial = root / f".{ckpt.checkpoint_name(step)}.partial"
        if self.main:
            ckpt.begin(root, step)
        acc.wait_for_everyone()
        ckpt.write_rank_rng(partial, self.rank)
        trainable_sd, frozen, optim_sd = _gather_state(self.prepared, self.inner, self.optimizer, self.fsdp, self.cfg)
        path = root / ckpt.checkpoint_name(step)
        if self.main:
            ckpt.write_main(partial, trainable_sd, optim_sd, self.group_names, self.trainer_state(step))
            if frozen:
                save_safetensors_atomic(frozen, partial / "frozen_parts.safetensors")
        acc.wait_for_everyone()
        if self.main:
            ckpt.commit(root, partial, step, self.cfg.checkpoint.keep_last)
            self.jlog.write(event="checkpoint", step=step, path=str(path))
        acc.wait_for_everyone()
        return path

    def sync_check(self, step: int) -> float | None:
        """DDP: every process must hold the same weights (checksums gathered and compared)."""
        if self.world == 1 or self.fsdp or self.checked_at == step:
            return None
        self.checked_at = step
        sums = param_checksums(self.inner).to(self.device)
        gathered = self.accelerator.gather(sums[None])
        diff = float((gathered - gathered[0:1]).abs().max())
        self.jlog.write(event="sync_check", step=step, max_abs_diff=diff, processes=self.world)
        r = self.result
        r.sync_max_abs_diff = diff if r.sync_max_abs_diff is None else max(r.sync_max_abs_diff, diff)
        if diff > 0:
            raise MVS2VError(f"the {self.world} processes hold different weights at step {step} (max checksum "
                             f"difference {diff:g}): the run is out of sync; resume from the last checkpoint")
        return diff

    def validate(self, step: int) -> None:
        """Held-out loss and the validation prompts' samples (main process; every FSDP process takes part)."""
        if self.validator is None:
            return
        if self.main or self.fsdp:
            net = self.prepared if self.fsdp else self.inner
            self.inner.eval()
            try:
                loss = heldout_loss(net, self.data, self.cfg, self.device)
            finally:
                self.inner.train()
            files: list[Path] = []
            if self.cfg.validation.prompts:
                files = self.validator.run(self.inner, step, self.out / "samples", self.writer if self.main else None,
                                           wrapped=self.prepared if self.fsdp else None, write=self.main)
            if self.main:
                if loss is not None:
                    self.result.heldout.append((step, loss))
                    if self.writer is not None:
                        self.writer.add_scalar("val/loss", loss, step)
                self.jlog.write(event="validation", step=step, heldout_loss=loss, files=[str(f) for f in files])
                self.say(f"validation at step {step}: held-out loss {loss if loss is not None else 'n/a'}"
                         + (f", {len(files)} files in {self.out / 'samples'}" if files else ""))
        self.accelerator.wait_for_everyone()

    # ---- the loop ----------------------------------------------------------------------------------------

    def train(self, stop_at_step: int | None) -> None:
        """Steps from the start (or resumed) step to ``stop_at_step`` or the end, then the export when done."""
        end = self.total if stop_at_step is None else min(self.total, stop_at_step)
        resumed = self.resume_path is not None
        if self.start_step >= self.total:
            self.say("the run is already complete; exporting the adapter")
        elif not resumed:
            self.validate(self.start_step)  # the baseline every later validation compares with
        prev_stage = -1
        if resumed and self.start_step < end:
            pos = self.curriculum.locate(self.start_step)
            prev_stage = pos.index  # a resume is not a stage change: the log has each change once
            self.progress(f"continuing stage {pos.index + 1}/{len(self.cfg.stages)} {pos.stage.name!r} at its step "
                          f"{pos.step_in_stage + 1} of {pos.stage.steps}")
        step, loss_ema, last_good = self.start_step, None, None
        v_every = self.cfg.validation.every_n_steps
        while step < end:
            pos = self.curriculum.locate(step)
            if pos.index != prev_stage:
                self._announce_stage(step, pos)
                prev_stage = pos.index
            lr = self.scheduler.apply(step)
            units, local_skips = self._draw(step, pos)
            if units:
                last_good = units[-1]
            else:
                # Every sample of this process failed: still join the collectives of the step, with the
                # last good batch at weight 0 (or no batch at all on the very first step).
                units = [None if last_good is None else _zero_weight(last_good)]
            stats, grad_norm = self._optimizer_step(units, local_skips)
            step += 1
            step_loss = self._account(step, stats)
            loss_ema = step_loss if loss_ema is None else 0.9 * loss_ema + 0.1 * step_loss
            if self.bar is not None:
                self.bar.update(1)
                self.bar.set_postfix(stage=pos.stage.name, loss=f"{loss_ema:.4f}", lr=f"{lr:.2e}", refresh=False)
            if self.main and (step % self.cfg.logging.every_n_steps == 0 or step == end):
                align = float(stats[4] / stats[5]) if stats[5] > 0 else None
                self._log_step(step, pos.index, step_loss, lr, grad_norm, align)
            every = self.cfg.logging.sync_check_every_n_steps
            if every and step % every == 0:
                self.sync_check(step)
            stop_now = bool(stats[3] > 0)
            if step % self.cfg.checkpoint.every_n_steps == 0 or stop_now or step == end:
                self.sync_check(step)
                self.result.checkpoint = self.save(step)
            if v_every and (step % v_every == 0 or step == self.total):
                self.validate(step)
            if stop_now:
                self.say(f"stopped at step {step}; continue with --resume")
                break
        if self.result.final_step >= self.total:
            self._finish()

    def _announce_stage(self, step: int, pos: Any) -> None:
        s = pos.stage
        msg = (f"stage {pos.index + 1}/{len(self.cfg.stages)} {s.name!r} from step {step}: views={s.views}, "
               f"lr={s.learning_rate:g}, {len(self.eligible[pos.index])} samples")
        self.progress(msg)
        self.jlog.write(event="stage", step=step, stage=pos.index, name=s.name, views=s.views,
                        samples=len(self.eligible[pos.index]))
        if self.writer is not None:
            self.writer.add_text("curriculum/stage", msg, step)

    def _draw(self, step: int, pos: Any) -> tuple[list[Any], int]:
        """This process's share of the global batch of ``step``, grouped into forward units, and how many of its
        samples could not be read. Slot ``j`` of the step is a pure function of (seed, step, j)."""
        cfg, B, world = self.cfg, self.cfg.train.batch_size, self.world
        micro: list[list[Example]] = []
        local_skips = 0
        for m in range(cfg.train.gradient_accumulation_steps):
            examples = []
            for i in range(B):
                slot = m * world * B + self.rank * B + i
                position = pos.step_in_stage * self.global_batch + slot
                idx = sample_at(self.eligible[pos.index], cfg.train.seed, pos.index, position)
                seed = derive_seed(cfg.train.seed, "sample", step, slot)
                try:
                    examples.append(self.data.example(idx, seed, pos.stage))
                except MVS2VError as e:
                    local_skips += 1
                    sample = self.data.samples[idx]
                    self.progress(f"warning: skipping sample {sample.id} (manifest line {sample.line}): {e}")
            micro.append(examples)
        text_len = self.inner.dit.config.text_len
        return [g for ex in micro if ex for g in group_examples(ex, text_len, self.mixed_layouts)], local_skips

    def _optimizer_step(self, units: list[Any], local_skips: int) -> tuple[torch.Tensor, float | None]:
        """Forward and backward of every unit (gradients all-reduced once, on the last), clipping, AdamW.
        Returns the step's ``[loss sum, samples used, skips, stop requested, alignment loss sum, samples with an
        alignment target]``, summed over processes, and the gradient norm before clipping."""
        acc, t = self.accelerator, self.cfg.train
        norm = 1.0 / (t.batch_size * t.gradient_accumulation_steps)
        loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        align_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        used = aligned = 0
        for k, unit in enumerate(units):
            ctx = contextlib.nullcontext() if k == len(units) - 1 else acc.no_sync(self.prepared)
            with ctx:
                with acc.autocast():
                    loss = self.prepared(unit.to(self.device) if unit is not None else None)
                acc.backward(loss * norm)
            if self.inner.last_align is not None:  # the logged loss is the velocity loss; alignment apart
                align, with_target = self.inner.last_align
                align_sum += align.double()
                aligned += with_target
                loss = loss - self.inner.align_weight * align
            loss_sum += loss.detach().double()
            used += int((unit.weight > 0).sum()) if unit is not None else 0
        grad_norm = None
        if t.max_grad_norm > 0:
            gn = acc.clip_grad_norm_(self.trainable, t.max_grad_norm)
            grad_norm = float(gn) if gn is not None else None
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        stats = torch.tensor([float(loss_sum), used, local_skips, float(self.stop_requested), float(align_sum),
                              aligned],
                             dtype=torch.float64, device=self.device)
        if self.world > 1:
            stats = acc.reduce(stats, reduction="sum")
        return stats, grad_norm

    def _account(self, step: int, stats: torch.Tensor) -> float:
        """Counters and the result after step ``step``; the step's mean loss (a non-finite one stops the run)."""
        step_loss = float(stats[0] / max(1.0, float(stats[1])))
        self.samples_seen += self.global_batch
        self.skipped += int(stats[2])
        r = self.result
        r.losses.append(step_loss)
        r.final_step = step
        r.skipped_samples = self.skipped
        if not math.isfinite(step_loss):
            raise MVS2VError(f"the loss became {step_loss} at step {step}: lower the learning rate or use bf16 "
                             "instead of fp16; resume from the last checkpoint")
        return step_loss

    def _log_step(self, step: int, stage: int, loss: float, lr: float, grad_norm: float | None,
                  align: float | None = None) -> None:
        """``loss``: the velocity loss per sample; ``align``: the alignment loss per sample that has a target."""
        extra = {} if align is None else {"align_loss": align}
        self.jlog.write(event="step", step=step, stage=stage, loss=loss, lr=lr, grad_norm=grad_norm,
                        samples_seen=self.samples_seen, skipped=self.skipped, **extra)
        w = self.writer
        if w is not None:
            w.add_scalar("train/loss", loss, step)
            w.add_scalar("train/lr", lr, step)
            w.add_scalar("curriculum/stage", stage, step)
            w.add_scalar("data/skipped_samples", self.skipped, step)
            if grad_norm is not None:
                w.add_scalar("train/grad_norm", grad_norm, step)
            if align is not None:
                w.add_scalar("train/align_loss", align, step)

    def _finish(self) -> None:
        """The run is complete: export the adapter (FSDP: from the full checkpoint just written)."""
        self.result.completed = True
        adapter = self.out / "adapter.safetensors"
        if self.main:
            if self.fsdp:  # the live parameters are shards
                export_checkpoint(self.cfg, ckpt.find_latest(self.ckpt_root), adapter)  # type: ignore[arg-type]
            else:
                export_model(self.cfg, self.inner, adapter, self.result.final_step, self.samples_seen)
            self.jlog.write(event="export", step=self.result.final_step, path=str(adapter))
            self.say(f"done: adapter written to {adapter}")
        self.accelerator.wait_for_everyone()
        self.result.adapter = adapter


def _zero_weight(batch: Any) -> Any:
    import dataclasses

    return dataclasses.replace(batch, weight=torch.zeros_like(batch.weight))


def _cpu_only_launch() -> bool:
    """A multi-process launch (torchrun / accelerate launch) on a machine without CUDA: accelerate only
    joins the processes (gloo) when told to run on the CPU."""
    import os

    return not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1


def threading_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _gather_state(prepared: Any, inner: TrainableModel, optimizer: Any, fsdp: bool,
                  cfg: TrainConfig) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict]:
    """Full (unsharded) trainable tensors, frozen adapter parts (proxy / MFI loaded but not trained) and
    optimizer state. Every process must call it (FSDP gathers); only the main process's result is whole."""
    names = [n for n, p in inner.named_parameters() if p.requires_grad]
    if not fsdp:
        params = dict(inner.named_parameters())
        trainable = {n: params[n] for n in names}
        frozen = {k: t for k, t in adapter_parts(inner).items() if k not in trainable}
        return trainable, frozen, optimizer.state_dict()
    # FSDP (1 or 2): torch's distributed state-dict helpers gather full tensors onto the main process,
    # keyed by parameter name; frozen base weights are skipped.
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict

    opts = StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=True)
    trainable = get_model_state_dict(prepared, options=opts)
    osd = get_optimizer_state_dict(prepared, optimizer.optimizer, options=opts)
    frozen: dict[str, torch.Tensor] = {}
    if cfg.model.init_adapter:  # frozen proxy / MFI can only come from the init adapter, unchanged
        from mvs2v_core.adapter import load_adapter

        init = load_adapter(cfg.resolve(cfg.model.init_adapter))
        for key, t in (("proxy.tokens", init.proxy_tokens), ("mfi.proj.weight", init.mfi_weight),
                       ("mfi.proj.bias", init.mfi_bias)):
            if t is not None and key not in trainable:
                frozen[key] = t.float()
    return trainable, frozen, osd


def _load_fsdp_state(prepared: Any, optimizer: Any, tensors: dict[str, torch.Tensor], path: Path,
                     group_names: list[list[str]], main: bool) -> None:
    """Load full trainable tensors and optimizer state into an FSDP-wrapped model (broadcast from the main
    process)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict, set_optimizer_state_dict

    opts = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True, strict=False)
    model_sd = tensors if main else {}
    optim_sd = ckpt.read_optimizer(path, group_names, keyed_by_name=True) if main else {}
    set_model_state_dict(prepared, model_sd, options=opts)
    set_optimizer_state_dict(prepared, optimizer.optimizer, optim_sd, options=opts)


__all__ = ["run_training", "TrainResult", "read_log", "param_checksums", "resolve_resume"]

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
    from datetime import timedelta

    from accelerate import Accelerator
    from accelerate.utils import DistributedType, InitProcessGroupKwargs

    try:
        # Long timeout: the other processes wait while the main one samples validation videos.
        accelerator = Accelerator(mixed_precision=cfg.train.mixed_precision, cpu=_cpu_only_launch(),
                                  kwargs_handlers=[InitProcessGroupKwargs(timeout=timedelta(hours=2))])
    except (RuntimeError, ValueError) as e:
        raise MVS2VError(f"accelerate could not set up this launch: {e}. Check `accelerate config` / the launch "
                         "flags (FSDP needs GPUs)") from None
    main = accelerator.is_main_process
    rank, world = accelerator.process_index, accelerator.num_processes
    fsdp = accelerator.distributed_type == DistributedType.FSDP
    # accelerate names the CPU "cpu:0" in multi-process runs, which safetensors refuses: use plain "cpu".
    device = torch.device("cpu") if accelerator.device.type == "cpu" else accelerator.device
    say = (log or (lambda m: print(m, file=sys.stderr))) if main else (lambda m: None)

    out = cfg.output_dir
    ckpt_root = out / "checkpoints"
    resume_path = resolve_resume(cfg, resume)
    if resume_path is None and (existing := ckpt.find_latest(ckpt_root)) is not None:
        raise MVS2VError(f"{out} already holds a run (checkpoint {existing.name}): continue it with --resume, or "
                         "set another train.output_dir (starting over here would overwrite its checkpoints and logs)")

    data = TrainData(cfg)
    # Under proxy / gray every slot makes tokens wherever it is filled: samples with different view
    # dropout draws share one forward (a batch of 8 would otherwise split into up to 8 forwards).
    mixed_layouts = cfg.references.empty_slot_mode != EmptySlotMode.DROP
    say(f"data: {data.summary.describe()}")
    for line, why in data.summary.problems[:20]:
        say(f"  manifest line {line}: {why}")
    if len(data) == 0:
        raise MVS2VError("no manifest row is usable for training: fix the rows above and run `mvs2v-train cache`")
    curriculum = Curriculum(cfg.stages)
    eligible = [data.eligible(s) for s in cfg.stages]
    for s, e in zip(cfg.stages, eligible):
        if not e:
            raise MVS2VError(f"stage {s.name!r} has no sample that passes its filter {s.filter}: relax "
                             "[stages.filter] or add data (see `mvs2v-train validate-data`)")

    model = build_model(cfg, device=device)
    model.touch_unused = not fsdp
    model.train()
    optimizer, group_names = _optimizer(model, cfg)
    scheduler = StageLRScheduler(optimizer, curriculum)
    prepared, optimizer = accelerator.prepare(model, optimizer)
    inner: TrainableModel = accelerator.unwrap_model(prepared)
    trainable = [p for p in prepared.parameters() if p.requires_grad]

    B, A = cfg.train.batch_size, cfg.train.gradient_accumulation_steps
    global_batch = B * A * world
    start_step, samples_seen, skipped = 0, 0, 0
    if resume_path is not None:
        state = ckpt.read_trainer_state(resume_path)
        if state.get("config_fingerprint") != cfg.fingerprint():
            say("warning: the config changed since this checkpoint was written; the run continues with the new "
                "config, so it will not match an uninterrupted run")
        if int(state.get("global_batch", global_batch)) != global_batch:
            say(f"warning: the global batch was {state['global_batch']} and is now {global_batch} (processes x "
                "batch x accumulation): the data order from here on differs from the original run")
        tensors = ckpt.read_trainable(resume_path)
        if fsdp:
            _load_fsdp_state(prepared, optimizer, tensors, resume_path, group_names, main)
        else:
            ckpt.load_trainable_into(inner, tensors, resume_path)
            optimizer.load_state_dict(ckpt.read_optimizer(resume_path, group_names))
        scheduler.load_state_dict(state["scheduler"])
        ckpt.restore_rank_rng(resume_path, rank)
        if accelerator.scaler is not None and state.get("scaler"):
            accelerator.scaler.load_state_dict(state["scaler"])
        start_step = int(state["global_step"])
        samples_seen = int(state["samples_seen"])
        skipped = int(state.get("skipped_samples", 0))
        say(f"resumed from {resume_path} at step {start_step}")

    total = curriculum.total_steps
    end = total if stop_at_step is None else min(total, stop_at_step)
    jlog = _JsonLog(out / "logs" / "train_log.jsonl", main, start_step if resume_path is not None else None)
    writer = None
    if main and cfg.logging.tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "logs" / "tensorboard"), purge_step=start_step if resume_path else None)
    validator = None
    v = cfg.validation
    if v.every_n_steps:
        validator = Validator(cfg, device if v.device == "auto" else torch.device("cpu"))
        for prompt in v.prompts:  # fail now, not after hours of training
            subject_inputs(cfg, prompt)
        if v.prompts and not (cfg.model.vae and cfg.model.text_encoder):
            raise MVS2VError("[[validation.prompts]] need model.vae and model.text_encoder to sample with")
    result = TrainResult(start_step, start_step, False, skipped_samples=skipped, is_main=main)

    stop_requested = {"flag": False}

    def on_signal(signum, _frame):
        stop_requested["flag"] = True
        say(f"\nsignal {signum}: finishing this step, then writing a checkpoint")

    previous_handlers = {}
    if threading_main():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous_handlers[sig] = signal.signal(sig, on_signal)

    def trainer_state(step: int) -> dict:
        pos = curriculum.locate(min(step, total - 1))
        return {
            "global_step": step, "stage_index": pos.index, "stage_name": pos.stage.name,
            "step_in_stage": pos.step_in_stage if step < total else pos.stage.steps,
            "samples_seen": samples_seen, "skipped_samples": skipped, "seed": cfg.train.seed,
            "config_fingerprint": cfg.fingerprint(), "world_size": world, "global_batch": global_batch,
            "scheduler": scheduler.state_dict(), "model_config": inner.dit.config.to_dict(),
            "scaler": accelerator.scaler.state_dict() if accelerator.scaler is not None else None,
            "optimizer_groups": group_names, "total_steps": total,
        }

    def save(step: int) -> Path:
        partial = ckpt_root / f".{ckpt.checkpoint_name(step)}.partial"
        if main:
            ckpt.begin(ckpt_root, step)
        accelerator.wait_for_everyone()
        ckpt.write_rank_rng(partial, rank)
        trainable_sd, frozen, optim_sd = _gather_state(prepared, inner, optimizer, fsdp, cfg)
        path = ckpt_root / ckpt.checkpoint_name(step)
        if main:
            ckpt.write_main(partial, trainable_sd, optim_sd, group_names, trainer_state(step))
            if frozen:
                save_safetensors_atomic(frozen, partial / "frozen_parts.safetensors")
        accelerator.wait_for_everyone()
        if main:
            ckpt.commit(ckpt_root, partial, step, cfg.checkpoint.keep_last)
            jlog.write(event="checkpoint", step=step, path=str(path))
        accelerator.wait_for_everyone()
        return path

    checked_at = {"step": -1}

    def sync_check(step: int) -> float | None:
        if world == 1 or fsdp or checked_at["step"] == step:
            return None
        checked_at["step"] = step
        sums = param_checksums(inner).to(device)
        gathered = accelerator.gather(sums[None])
        diff = float((gathered - gathered[0:1]).abs().max())
        jlog.write(event="sync_check", step=step, max_abs_diff=diff, processes=world)
        result.sync_max_abs_diff = diff if result.sync_max_abs_diff is None else max(result.sync_max_abs_diff, diff)
        if diff > 0:
            raise MVS2VError(f"the {world} processes hold different weights at step {step} (max checksum difference "
                             f"{diff:g}): the run is out of sync; resume from the last checkpoint")
        return diff

    def validate(step: int) -> None:
        if validator is None:
            return
        runs_here = main or fsdp
        if runs_here:
            net = prepared if fsdp else inner
            inner.eval()
            try:
                loss = heldout_loss(net, data, cfg, device)
            finally:
                inner.train()
            files: list[Path] = []
            if v.prompts:
                files = validator.run(inner, step, out / "samples", writer if main else None,
                                      wrapped=prepared if fsdp else None, write=main)
            if main:
                if loss is not None:
                    result.heldout.append((step, loss))
                    if writer is not None:
                        writer.add_scalar("val/loss", loss, step)
                jlog.write(event="validation", step=step, heldout_loss=loss, files=[str(f) for f in files])
                say(f"validation at step {step}: held-out loss {loss if loss is not None else 'n/a'}"
                    + (f", {len(files)} files in {out / 'samples'}" if files else ""))
        accelerator.wait_for_everyone()

    bar = None
    if main and cfg.logging.progress_bar:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=start_step, desc="train", unit="step", dynamic_ncols=True, file=sys.stderr)
    progress = bar.write if bar is not None else say

    try:
        if start_step >= total:
            say("the run is already complete; exporting the adapter")
        elif resume_path is None:
            validate(start_step)  # the baseline every later validation compares with
        prev_stage = -1
        if resume_path is not None and start_step < end:
            pos = curriculum.locate(start_step)
            prev_stage = pos.index  # a resume is not a stage change: the log has each change once
            progress(f"continuing stage {pos.index + 1}/{len(cfg.stages)} {pos.stage.name!r} at its step "
                     f"{pos.step_in_stage + 1} of {pos.stage.steps}")
        loss_ema = None
        last_good = None
        step = start_step
        while step < end:
            pos = curriculum.locate(step)
            if pos.index != prev_stage:
                s = pos.stage
                msg = (f"stage {pos.index + 1}/{len(cfg.stages)} {s.name!r} from step {step}: views={s.views}, "
                       f"lr={s.learning_rate:g}, {len(eligible[pos.index])} samples")
                progress(msg)
                jlog.write(event="stage", step=step, stage=pos.index, name=s.name, views=s.views,
                           samples=len(eligible[pos.index]))
                if writer is not None:
                    writer.add_text("curriculum/stage", msg, step)
                prev_stage = pos.index
            lr = scheduler.apply(step)

            micro: list[list[Example]] = []
            local_skips = 0
            for m in range(A):
                examples = []
                for i in range(B):
                    slot = m * world * B + rank * B + i
                    position = pos.step_in_stage * global_batch + slot
                    idx = sample_at(eligible[pos.index], cfg.train.seed, pos.index, position)
                    try:
                        examples.append(data.example(idx, derive_seed(cfg.train.seed, "sample", step, slot), pos.stage))
                    except MVS2VError as e:
                        local_skips += 1
                        progress(f"warning: skipping sample {data.samples[idx].id} "
                                 f"(manifest line {data.samples[idx].line}): {e}")
                micro.append(examples)
            units = [g for ex in micro if ex for g in group_examples(ex, inner.dit.config.text_len, mixed_layouts)]
            if units:
                last_good = units[-1]
            else:
                # Every sample of this process failed: still join the collectives of the step, with the
                # last good batch at weight 0 (or no batch at all on the very first step).
                units = [None if last_good is None else _zero_weight(last_good)]

            norm = 1.0 / (B * A)
            loss_sum = torch.zeros((), device=device, dtype=torch.float64)
            used = 0
            for k, unit in enumerate(units):
                sync = k == len(units) - 1
                ctx = contextlib.nullcontext() if sync else accelerator.no_sync(prepared)
                with ctx:
                    with accelerator.autocast():
                        loss = prepared(unit.to(device) if unit is not None else None)
                    accelerator.backward(loss * norm)
                loss_sum += loss.detach().double()
                used += int((unit.weight > 0).sum()) if unit is not None else 0
            grad_norm = None
            if cfg.train.max_grad_norm > 0:
                gn = accelerator.clip_grad_norm_(trainable, cfg.train.max_grad_norm)
                grad_norm = float(gn) if gn is not None else None
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1

            stats = torch.tensor([float(loss_sum), used, local_skips, float(stop_requested["flag"])],
                                 dtype=torch.float64, device=device)
            if world > 1:
                stats = accelerator.reduce(stats, reduction="sum")
            step_loss = float(stats[0] / max(1.0, float(stats[1])))
            samples_seen += global_batch
            skipped += int(stats[2])
            result.losses.append(step_loss)
            result.final_step = step
            result.skipped_samples = skipped
            loss_ema = step_loss if loss_ema is None else 0.9 * loss_ema + 0.1 * step_loss
            if not math.isfinite(step_loss):
                raise MVS2VError(f"the loss became {step_loss} at step {step}: lower the learning rate or use bf16 "
                                 "instead of fp16; resume from the last checkpoint")

            if bar is not None:
                bar.update(1)
                bar.set_postfix(stage=pos.stage.name, loss=f"{loss_ema:.4f}", lr=f"{lr:.2e}", refresh=False)
            if main and (step % cfg.logging.every_n_steps == 0 or step == end):
                jlog.write(event="step", step=step, stage=pos.index, loss=step_loss, lr=lr, grad_norm=grad_norm,
                           samples_seen=samples_seen, skipped=skipped)
                if writer is not None:
                    writer.add_scalar("train/loss", step_loss, step)
                    writer.add_scalar("train/lr", lr, step)
                    writer.add_scalar("curriculum/stage", pos.index, step)
                    writer.add_scalar("data/skipped_samples", skipped, step)
                    if grad_norm is not None:
                        writer.add_scalar("train/grad_norm", grad_norm, step)
            if cfg.logging.sync_check_every_n_steps and step % cfg.logging.sync_check_every_n_steps == 0:
                sync_check(step)
            stop_now = bool(stats[3] > 0)
            if step % cfg.checkpoint.every_n_steps == 0 or stop_now or step == end:
                sync_check(step)
                result.checkpoint = save(step)
            if v.every_n_steps and (step % v.every_n_steps == 0 or step == total):
                validate(step)
            if stop_now:
                say(f"stopped at step {step}; continue with --resume")
                break

        if result.final_step >= total:
            result.completed = True
            adapter = out / "adapter.safetensors"
            if main:
                if fsdp:  # the live parameters are shards: export from the full checkpoint just written
                    export_checkpoint(cfg, ckpt.find_latest(ckpt_root), adapter)  # type: ignore[arg-type]
                else:
                    export_model(cfg, inner, adapter, result.final_step, samples_seen)
                jlog.write(event="export", step=result.final_step, path=str(adapter))
                say(f"done: adapter written to {adapter}")
            accelerator.wait_for_everyone()
            result.adapter = adapter
    finally:
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.flush()
            writer.close()
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)
    accelerator.end_training()
    return result


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

"""What the child processes do (``--worker``): the pretraining, and one run's fine-tune + evaluation,
through the trainer's API (``run_cache`` + ``run_training``, resuming an interrupted run)."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

from mvs2v_core.errors import MVS2VError

from .arms import TOY_DIT, AblationSettings, parse_run_name
from .files import METRICS_FILE, TRAIN_CONFIG_FILE, WORKER_LOG, Layout, load_train_config, write_json
from .score import evaluate_model


def write_random_dit(path: Path, seed: int) -> None:
    """The tiny DiT with random weights (seeded), in the Wan key layout with its config in the metadata."""
    import torch

    from mvs2v_core.model.config import WanConfig
    from mvs2v_core.model.loading import dit_config_metadata
    from mvs2v_core.model.transformer import WanDiT
    from mvs2v_core.utils import save_safetensors_atomic

    cfg = WanConfig(**TOY_DIT)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = WanDiT(cfg)
    save_safetensors_atomic(model.state_dict(), path,
                            {"format": "wan-dit", "note": f"random init (seed {seed})", **dit_config_metadata(cfg)})


def train(config_path: Path, log_path: Path) -> None:
    """``mvs2v-train cache`` + ``train`` (resuming an interrupted run) for one config, in this process."""
    from mvs2v_train import checkpoint as ckpt
    from mvs2v_train.cache import run_cache
    from mvs2v_train.trainer import run_training

    cfg = load_train_config(config_path)
    with open(log_path, "a", encoding="utf-8") as logf:
        def log(msg: str) -> None:
            logf.write(msg + "\n")
            logf.flush()

        run_cache(cfg, log=log)
        resume = "auto" if ckpt.find_latest(cfg.output_dir / "checkpoints") is not None else None
        result = run_training(cfg, resume=resume, log=log)
    if not result.completed:
        raise MVS2VError(f"training in {cfg.output_dir} stopped at step {result.final_step}; run again to resume")


def pretrain_worker(layout: Layout) -> None:
    """Train the text-to-video base, then write its DiT as ``pretrain/base.dit.safetensors``."""
    import torch

    from mvs2v_train import checkpoint as ckpt
    from mvs2v_train.export import write_full_dit

    config_path = layout.pretrain / TRAIN_CONFIG_FILE
    train(config_path, layout.pretrain / WORKER_LOG)
    cfg = load_train_config(config_path)
    latest = ckpt.find_latest(cfg.output_dir / "checkpoints")
    trained = {k: v for k, v in ckpt.read_trainable(latest).items() if k.startswith("dit.")}  # type: ignore[arg-type]
    # float32 master weights: every fine-tune starts from exactly the same base.
    write_full_dit(cfg, trained, layout.pretrain / "base.safetensors", torch.float32)


def run_worker(layout: Layout, s: AblationSettings, name: str, run_dir: Path | None = None) -> None:
    """Train (or resume) the run ``<config>-s<seed>`` whose ``train.toml`` is in ``run_dir`` (default the grid's
    folder of that name), then evaluate it and write ``metrics.json``."""
    c, seed = parse_run_name(name, "--worker")
    run_dir = run_dir or layout.runs / name
    t0 = time.perf_counter()
    if not (run_dir / "adapter.safetensors").is_file():
        train(run_dir / TRAIN_CONFIG_FILE, run_dir / WORKER_LOG)
    t_train = time.perf_counter() - t0
    metrics = evaluate_model(layout, s, run_dir / "adapter.dit.safetensors", run_dir / "adapter.safetensors",
                             run_dir / "eval", views=s.views_of(c), mfi=c.mfi)
    metrics.update(run=name, config=asdict(c), seed=seed, train_seconds=round(t_train, 1),
                   eval_seconds=round(time.perf_counter() - t0 - t_train, 1), settings=s.to_json(),
                   final_train_loss=final_loss(run_dir))
    write_json(run_dir / METRICS_FILE, metrics)


def final_loss(run_dir: Path) -> float | None:
    """Mean training loss of the last ten logged steps."""
    from mvs2v_train.trainer import read_log

    losses = [e["loss"] for e in read_log(run_dir) if e.get("event") == "step"]
    tail = losses[-10:]
    return round(sum(tail) / len(tail), 5) if tail else None

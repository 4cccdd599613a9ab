"""One-factor-at-a-time ablation of the MV-S2V / HarmoView design choices in the toy world.

``python -m mvs2v_train.toy_ablation --out DIR`` runs, resumably, everything that
``docs/ablation.md`` reports:

1. **data** (``DIR/data``): a toy-world dataset (:func:`mvs2v_core.toy.write_toy_dataset`, 32x32,
   9 frames, four labelled reference views per object) plus the toy codec, text encoder and vision
   encoder; its ``val`` split is the held-out evaluation set. A copy of the manifest without the
   reference views (``manifest_t2v.jsonl``) is the text-to-video pretraining data.
2. **pretrain** (``DIR/pretrain``): a tiny Wan DiT (:data:`TOY_DIT`) from random weights, trained as
   plain text-to-video, shared by every run. It plays the part of the pretrained Wan / Phantom-Wan
   that MV-S2V and HarmoView fine-tune: the position schemes, empty-slot modes, view counts and MFI
   only differ in how references are added to a model that can already make the videos.
3. **runs** (``DIR/runs/<config>-s<seed>``): per ablation config (:data:`CONFIGS`) and seed, a full
   fine-tune of every DiT weight (plus proxy tokens / MFI projector where the config has them) with
   the Progressive View Curriculum, through ``mvs2v-train`` (the run's ``train.toml`` reruns it
   alone), then the evaluation: ``mvs2v generate`` (the CLI's code path, the same sampler settings for
   every run) on a fixed list of held-out samples, scored by :func:`mvs2v_core.evaluation.evaluate`.
   Each run ends by writing ``metrics.json`` atomically; runs that have one are skipped, an
   interrupted run resumes from its last checkpoint.
4. **table** (``DIR/ablation.md``, ``DIR/summary.json``, both atomic): mean and standard deviation
   over seeds per metric and config, the paired difference to the base config, and reference rows
   (the true clips, an all-gray clip, the text-to-video base without references).

Two fine-tune runs go in parallel (``--jobs``), each with one CPU thread; the pretraining uses
``--pretrain-threads``. Settings are stored in ``DIR/settings.json``; continuing a folder with other
settings is refused, so a table always comes from one set of settings.

``--bundle DEST`` then copies the chosen run (default: the best seed of the config with the best
mean hidden-face accuracy) with the toy encoders into ``DEST`` as the demo model of ``mvs2v demo``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from mvs2v_core.errors import MVS2VError
from mvs2v_core.utils import atomic_write

__all__ = ["AblationConfig", "AblationSettings", "CONFIGS", "TOY_DIT", "run_ablation", "aggregate", "main"]

SETTINGS_FILE = "settings.json"
METRICS_FILE = "metrics.json"
DEMO_MODEL_FORMAT = "mvs2v-toy-demo-model"

# The tiny DiT: width 256 with two 128-wide heads (ComfyUI infers heads = width // 128), 4 blocks,
# 48 latent channels (the toy codec), 32-wide text (the toy text encoder), captions padded to 32
# tokens (the longest toy caption has 24). About 3.9 M parameters: 7.7 MB in bf16.
TOY_DIT = dict(dim=256, ffn_dim=512, num_heads=2, num_layers=4, in_dim=48, out_dim=48, text_dim=32,
               text_len=32, family="mvs2v-toy")


@dataclass(frozen=True)
class AblationConfig:
    """One ablation arm: what it changes relative to the base (TS-RoPE, proxy, multi-view, no MFI)."""

    name: str
    scheme: str = "ts"
    empty_slot_mode: str = "proxy"
    multi_view: bool = True
    mfi: bool = False
    change: str = "base: TS-RoPE, proxy empty slots, multi-view, no MFI"


CONFIGS: dict[str, AblationConfig] = {c.name: c for c in (
    AblationConfig("base"),
    AblationConfig("vanilla", scheme="vanilla", change="position scheme vanilla (Phantom: slots follow the video)"),
    AblationConfig("ss", scheme="ss", change="position scheme SS-RoPE (spatial shift)"),
    AblationConfig("jump", scheme="jump", change="position scheme Jump-RoPE (HarmoView)"),
    AblationConfig("gray", empty_slot_mode="gray", change="empty slots = mid-gray latent"),
    AblationConfig("drop", empty_slot_mode="drop", change="empty slots dropped"),
    AblationConfig("single", multi_view=False, change="single view: trained and evaluated with the front view only"),
    AblationConfig("mfi", mfi=True, change="with MFI (frontal-view patch features after the text)"),
)}


@dataclass(frozen=True)
class AblationSettings:
    """Everything that changes the numbers (stored in ``settings.json``)."""

    samples: int = 6000
    data_seed: int = 0
    size: int = 32
    frames: int = 9
    two_object_prob: float = 0.3
    val_fraction: float = 0.05
    batch_size: int = 8
    pretrain_steps: int = 6000
    pretrain_lr: float = 2e-3
    finetune_steps: int = 300
    finetune_lr: float = 5e-4
    timestep_shift: float = 3.0
    eval_samples: int = 24
    eval_views: tuple[str, ...] = ("front", "left", "back")
    sample_steps: int = 20
    sample_shift: float = 3.0
    solver: str = "unipc"
    ref_scale: float = 2.0
    text_scale: float = 3.0
    eval_seed: int = 0

    def to_json(self) -> dict:
        d = asdict(self)
        d["eval_views"] = list(self.eval_views)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "AblationSettings":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise MVS2VError(f"settings.json has unknown keys {unknown}: it was written by another mvs2v version")
        d = dict(d)
        if "eval_views" in d:
            d["eval_views"] = tuple(d["eval_views"])
        return cls(**d)


# ---- small helpers ------------------------------------------------------------------------------


def _write_json(path: Path, data: Any) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"no TOML form for {v!r}")


def to_toml(config: dict) -> str:
    """A trainer config dict (sections of scalars and lists, ``stages`` a list of tables) as TOML text."""
    lines: list[str] = []
    for section, table in config.items():
        if section == "stages":
            continue
        lines.append(f"[{section}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in table.items()]
        lines.append("")
    for stage in config.get("stages", []):
        lines.append("[[stages]]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in stage.items() if k != "filter"]
        if "filter" in stage:
            lines.append("[stages.filter]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in stage["filter"].items()]
        lines.append("")
    return "\n".join(lines)


def _write_toml(path: Path, config: dict, header: str) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(header + "\n" + to_toml(config), encoding="utf-8")


@dataclass
class Layout:
    """The folders of an ablation under ``root``."""

    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def pretrain(self) -> Path:
        return self.root / "pretrain"

    @property
    def base_dit(self) -> Path:
        return self.pretrain / "base.dit.safetensors"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    def run(self, config: str, seed: int) -> Path:
        return self.runs / f"{config}-s{seed}"

    @property
    def reference_rows(self) -> Path:
        return self.root / "reference_rows.json"

    def demo_run(self, config: str, seed: int) -> Path:
        """The longer fine-tune of the bundled demo model (``--bundle-steps``)."""
        return self.root / "demo" / f"{config}-s{seed}"


# ---- phase 1: data ----------------------------------------------------------------------------------


def prepare_data(layout: Layout, s: AblationSettings, log=print) -> None:
    """Write the toy dataset, its encoders and the text-to-video manifest (once)."""
    from mvs2v_core.toy import save_toy_encoders, write_toy_dataset

    data = layout.data
    if (data / "manifest_t2v.jsonl").is_file() and (data / "vision_encoder").is_dir():
        return
    t0 = time.perf_counter()
    if not (data / "manifest.jsonl").is_file():
        summary = write_toy_dataset(data, s.samples, seed=s.data_seed, width=s.size, height=s.size, frames=s.frames,
                                    two_object_prob=s.two_object_prob, val_fraction=s.val_fraction)
        log(f"data: {summary.samples} samples ({summary.train} train, {summary.val} val, {summary.two_object} with "
            f"two objects) in {time.perf_counter() - t0:.0f}s")
    save_toy_encoders(data)
    rows = [json.loads(line) for line in (data / "manifest.jsonl").read_text(encoding="utf-8").splitlines() if line]
    with atomic_write(data / "manifest_t2v.jsonl") as tmp:
        tmp.write_text("".join(json.dumps({**r, "subjects": []}) + "\n" for r in rows), encoding="utf-8")


def eval_rows(layout: Layout, s: AblationSettings) -> list[dict]:
    """The held-out samples every run is scored on: the first ``eval_samples`` rows of the ``val`` split."""
    rows = [json.loads(line) for line in (layout.data / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
            if line.strip()]
    val = [r for r in rows if r.get("split") == "val"][: s.eval_samples]
    if len(val) < s.eval_samples:
        raise MVS2VError(f"the dataset has only {len(val)} held-out (val) samples but --eval-samples is "
                         f"{s.eval_samples}: raise --samples or lower --eval-samples")
    return val


# ---- trainer configs --------------------------------------------------------------------------------


def _common_config(layout: Layout, s: AblationSettings, output_dir: Path) -> dict:
    data = layout.data.resolve()
    return {
        "model": {"dit": "", "dtype": "fp32", "vae": str(data / "codec"), "text_encoder": str(data / "text_encoder")},
        "references": {"slots_per_subject": 4, "scheme": "ts", "empty_slot_mode": "gray", "ref_timestep": "same"},
        "data": {"manifest": str(data / "manifest.jsonl"), "cache_dir": str(layout.root.resolve() / "cache"),
                 "resolutions": [[s.size, s.size]], "frames": s.frames, "min_frames": s.frames,
                 "max_text_tokens": TOY_DIT["text_len"], "cache_shard_items": 256},
        # No pixel augmentation: a colour jitter would change the very face colours the metrics read.
        "augment": {"variants": 1, "clean_prob": 1.0, "shuffle_subjects": 0.5, "shuffle_views": 0.0,
                    "subject_drop": 0.0, "reference_drop": 0.1, "caption_drop": 0.1},
        "train": {"output_dir": str(output_dir.resolve()), "seed": 0, "batch_size": s.batch_size,
                  "mixed_precision": "no", "gradient_checkpointing": False, "betas": [0.9, 0.99],
                  "weight_decay": 0.0, "max_grad_norm": 1.0},
        "timesteps": {"sampling": "shifted", "shift": s.timestep_shift},
        "trainable": {"proxy": False, "mfi": False, "lora": False, "full": True},
        "checkpoint": {"every_n_steps": 100, "keep_last": 2},
        "logging": {"every_n_steps": 10, "tensorboard": False, "progress_bar": False},
        "validation": {"every_n_steps": 0},
    }


def pretrain_config(layout: Layout, s: AblationSettings) -> dict:
    """Text-to-video pretraining of the random tiny DiT (rows without references)."""
    cfg = _common_config(layout, s, layout.pretrain)
    cfg["model"]["dit"] = str((layout.pretrain / "init.safetensors").resolve())
    cfg["data"]["manifest"] = str((layout.data / "manifest_t2v.jsonl").resolve())
    cfg["data"]["cache_dir"] = str((layout.root / "cache_t2v").resolve())
    cfg["checkpoint"]["every_n_steps"] = 500
    cfg["stages"] = [{"name": "text-to-video", "steps": s.pretrain_steps, "learning_rate": s.pretrain_lr,
                      "warmup_steps": min(100, s.pretrain_steps), "lr_schedule": "cosine", "min_lr_ratio": 0.05,
                      "views": "full"}]
    return cfg


def finetune_config(layout: Layout, s: AblationSettings, c: AblationConfig, seed: int, steps: int | None = None,
                    output_dir: Path | None = None) -> dict:
    """The fine-tune of one ablation arm: full DiT (+ proxy / MFI), HarmoView's curriculum stages 1-3.

    ``steps`` (default ``s.finetune_steps``) and ``output_dir`` (default the grid's run folder) serve the
    longer run of the bundled demo model.
    """
    cfg = _common_config(layout, s, output_dir or layout.run(c.name, seed))
    cfg["model"]["dit"] = str(layout.base_dit.resolve())
    cfg["references"].update(scheme=c.scheme, empty_slot_mode=c.empty_slot_mode)
    cfg["trainable"]["proxy"] = c.empty_slot_mode == "proxy"
    cfg["train"]["seed"] = int(seed)
    if c.mfi:
        cfg["model"]["vision_encoder"] = str((layout.data / "vision_encoder").resolve())
        cfg["trainable"]["mfi"] = True
        cfg["data"]["cache_dir"] = str((layout.root / "cache_mfi").resolve())
    n = s.finetune_steps if steps is None else int(steps)
    n1 = max(1, round(0.15 * n))
    n2 = max(1, round(0.15 * n))
    n3 = max(1, n - n1 - n2)
    lr = s.finetune_lr
    if c.multi_view:
        stages = [
            {"name": "single-view", "steps": n1, "learning_rate": lr, "warmup_steps": min(20, n1), "views": "single",
             "single_view": "frontal"},
            {"name": "single-or-full", "steps": n2, "learning_rate": lr, "views": "single_or_full",
             "full_view_prob": 0.5, "filter": {"min_views": 2}},
            {"name": "view-dropout", "steps": n3, "learning_rate": lr, "views": "dropout", "dropout_prob": 1.0,
             "keep_frontal": True, "lr_schedule": "cosine", "min_lr_ratio": 0.1, "filter": {"min_views": 2}},
        ]
    else:  # the same schedule, every stage with the frontal view only
        stages = [
            {"name": "single-view", "steps": n1, "learning_rate": lr, "warmup_steps": min(20, n1), "views": "single",
             "single_view": "frontal"},
            {"name": "single-view-2", "steps": n2, "learning_rate": lr, "views": "single", "single_view": "frontal"},
            {"name": "single-view-3", "steps": n3, "learning_rate": lr, "views": "single", "single_view": "frontal",
             "lr_schedule": "cosine", "min_lr_ratio": 0.1},
        ]
    cfg["stages"] = stages
    return cfg


def _load(config_path: Path):
    from .config import load_config

    return load_config(config_path)


# ---- phase 2: pretraining ---------------------------------------------------------------------------


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


def _train(config_path: Path, log_path: Path) -> None:
    """``mvs2v-train cache`` + ``train`` (resuming an interrupted run) for one config, in this process."""
    from . import checkpoint as ckpt
    from .cache import run_cache
    from .trainer import run_training

    cfg = _load(config_path)
    with open(log_path, "a", encoding="utf-8") as logf:
        def log(msg: str) -> None:
            logf.write(msg + "\n")
            logf.flush()

        run_cache(cfg, log=log)
        resume = "auto" if ckpt.find_latest(cfg.output_dir / "checkpoints") is not None else None
        result = run_training(cfg, resume=resume, log=log)
    if not result.completed:
        raise MVS2VError(f"training in {cfg.output_dir} stopped at step {result.final_step}; run again to resume")


def pretrain(layout: Layout, s: AblationSettings, threads: int, log=print) -> None:
    """Phase 2 in a child process (``threads`` CPU threads); writes ``pretrain/base.dit.safetensors``."""
    if layout.base_dit.is_file():
        return
    layout.pretrain.mkdir(parents=True, exist_ok=True)
    init = layout.pretrain / "init.safetensors"
    if not init.is_file():
        write_random_dit(init, s.data_seed)
    _write_toml(layout.pretrain / "train.toml", pretrain_config(layout, s),
                "# text-to-video pretraining of the tiny toy DiT (written by mvs2v_train.toy_ablation)")
    log(f"pretrain: {s.pretrain_steps} steps of text-to-video from random weights ({threads} threads); "
        f"log in {layout.pretrain / 'worker.log'}")
    t0 = time.perf_counter()
    proc = _spawn(["--worker", "pretrain"], layout, threads, layout.pretrain / "worker.log")
    if _wait([proc]) != [0]:
        raise MVS2VError(f"pretraining failed; see {layout.pretrain / 'worker.log'}")
    log(f"pretrain: done in {(time.perf_counter() - t0) / 60:.1f} min")


def _pretrain_worker(layout: Layout) -> None:
    from . import checkpoint as ckpt
    from .export import write_full_dit

    config_path = layout.pretrain / "train.toml"
    _train(config_path, layout.pretrain / "worker.log")
    cfg = _load(config_path)
    latest = ckpt.find_latest(cfg.output_dir / "checkpoints")
    trained = {k: v for k, v in ckpt.read_trainable(latest).items() if k.startswith("dit.")}  # type: ignore[arg-type]
    import torch

    # float32 master weights: every fine-tune starts from exactly the same base.
    write_full_dit(cfg, trained, layout.pretrain / "base.safetensors", torch.float32)


# ---- phase 3: runs ----------------------------------------------------------------------------------


def _spawn(args: list[str], layout: Layout, threads: int, log_path: Path) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               MVS2V_ABLATION_THREADS=str(threads))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    logf = open(log_path, "a", encoding="utf-8")
    try:
        return subprocess.Popen([sys.executable, "-m", "mvs2v_train.toy_ablation", "--out", str(layout.root), *args],
                                stdout=logf, stderr=subprocess.STDOUT, env=env)
    finally:
        logf.close()


def _wait(procs: list[subprocess.Popen]) -> list[int]:
    try:
        return [p.wait() for p in procs]
    except KeyboardInterrupt:
        _stop(procs)
        raise


def _stop(procs: Sequence[subprocess.Popen]) -> None:
    """SIGTERM to the workers this process started (the trainer then checkpoints and exits)."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=120)
        except subprocess.TimeoutExpired:
            p.kill()


def run_grid(layout: Layout, s: AblationSettings, configs: Sequence[str], seeds: Sequence[int], jobs: int,
             log=print) -> list[str]:
    """Fine-tune and evaluate every (config, seed) without a ``metrics.json``, ``jobs`` at a time.

    Returns the names of the runs that failed (their ``worker.log`` says why).
    """
    from .cache import run_cache

    todo = [(c, sd) for sd in seeds for c in configs if not (layout.run(c, sd) / METRICS_FILE).is_file()]
    if not todo:
        return []
    for c, sd in todo:  # configs first: a run's train.toml is the exact, standalone record of it
        run_dir = layout.run(c, sd)
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_toml(run_dir / "train.toml", finetune_config(layout, s, CONFIGS[c], sd),
                    f"# ablation run {c}, seed {sd} (written by mvs2v_train.toy_ablation)")
    # Caches are filled here, once and by one process: one for plain references, one with ViT features (MFI).
    first_of_kind: dict[bool, tuple[str, int]] = {}
    for c, sd in todo:
        first_of_kind.setdefault(CONFIGS[c].mfi, (c, sd))
    for mfi, (c, sd) in first_of_kind.items():
        report = run_cache(_load(layout.run(c, sd) / "train.toml"), log=lambda m: None)
        log(f"cache ({'with ViT features' if mfi else 'references'}): {report.summary()}")
    failed: list[str] = []
    running: list[tuple[str, subprocess.Popen, float]] = []
    queue = list(todo)
    t_all = time.perf_counter()
    try:
        while queue or running:
            while queue and len(running) < jobs:
                c, sd = queue.pop(0)
                name = layout.run(c, sd).name
                log(f"run {name}: started ({len(todo) - len(queue)}/{len(todo)})")
                running.append((name, _spawn(["--worker", name], layout, 1, layout.run(c, sd) / "worker.log"),
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
                    log(f"run {name}: FAILED (exit {proc.returncode}); see {layout.runs / name / 'worker.log'}")
    except KeyboardInterrupt:
        _stop([p for _, p, _ in running])
        raise
    log(f"runs: {len(todo) - len(failed)} of {len(todo)} finished in {(time.perf_counter() - t_all) / 60:.1f} min")
    return failed


def _run_worker(layout: Layout, s: AblationSettings, name: str, run_dir: Path | None = None) -> None:
    """Train (or resume) the run ``<config>-s<seed>`` whose ``train.toml`` is in ``run_dir`` (default the grid's
    folder of that name), then evaluate it and write ``metrics.json``."""
    config, _, seed = name.rpartition("-s")
    c = CONFIGS[config]
    run_dir = run_dir or layout.runs / name
    t0 = time.perf_counter()
    if not (run_dir / "adapter.safetensors").is_file():
        _train(run_dir / "train.toml", run_dir / "worker.log")
    t_train = time.perf_counter() - t0
    metrics = evaluate_model(layout, s, run_dir / "adapter.dit.safetensors", run_dir / "adapter.safetensors",
                             run_dir / "eval", views=s.eval_views if c.multi_view else ("front",), mfi=c.mfi)
    metrics.update(run=name, config=asdict(c), seed=int(seed), train_seconds=round(t_train, 1),
                   eval_seconds=round(time.perf_counter() - t0 - t_train, 1), settings=s.to_json(),
                   final_train_loss=_final_loss(run_dir))
    _write_json(run_dir / METRICS_FILE, metrics)


def _final_loss(run_dir: Path) -> float | None:
    from .trainer import read_log

    losses = [e["loss"] for e in read_log(run_dir) if e.get("event") == "step"]
    tail = losses[-10:]
    return round(sum(tail) / len(tail), 5) if tail else None


# ---- evaluation ---------------------------------------------------------------------------------------


def generate_args(s: AblationSettings, dit: Path, adapter: Path | None, data: Path, row: dict,
                  views: Sequence[str], out: Path, mfi: bool) -> list[str]:
    """``mvs2v generate`` arguments for one held-out sample (its caption, the given views of each subject)."""
    argv = ["generate", "--dit", str(dit), "--vae", str(data / "codec"), "--text-encoder", str(data / "text_encoder")]
    if adapter is not None:
        argv += ["--adapter", str(adapter)]
    if mfi:
        argv += ["--vision-encoder", str(data / "vision_encoder")]
    for subject in row["subjects"] if adapter is not None else []:
        chosen = [v for v in subject["views"] if v.get("label") in views]
        argv += ["--subject", subject["name"] + "=" + ",".join(f"{data / v['image']}@{v['label']}" for v in chosen)]
    argv += ["--prompt", row["caption"], "--width", str(s.size), "--height", str(s.size), "--frames", str(s.frames),
             "--steps", str(s.sample_steps), "--shift", str(s.sample_shift), "--solver", s.solver,
             "--ref-scale", str(s.ref_scale), "--text-scale", str(s.text_scale), "--seed", str(s.eval_seed),
             "--device", "cpu", "--dtype", "fp32", "--fps", "8", "--out", str(out)]
    return argv


def score_sample(video: Any, truth: Any, views: Sequence[str], common_views: Sequence[str]) -> dict:
    """The per-sample numbers of the table.

    Every run is scored against the same ``common_views`` (the multi-view runs' references), so a
    single-view run is measured on the views it was not given too: ``s_v2r`` / ``s_r2v`` against
    those views, ``hidden_face_accuracy`` on the faces they reveal that frame 0 hides (the same pixels
    for every run). ``face_accuracy`` is the same score on the faces revealed by the views the run
    was given (``views``).
    """
    from mvs2v_core.evaluation.evaluate import (
        evaluate,
        load_generated,
        resolve_references,
    )
    from mvs2v_core.evaluation.toy_metrics import face_accuracy

    frames = load_generated(video)
    names = [o.name for o in truth.scene.objects]
    m = evaluate(frames, truth, references={n: list(common_views) for n in names})
    given, _ = face_accuracy(frames, truth, resolve_references(truth, {n: list(views) for n in names}))
    rs = m["reference_similarity"]
    return {
        "id": truth.sample_id, "objects": len(names), "psnr": m["psnr"], "ssim": m["ssim"],
        "s_v2r": rs["s_v2r"], "s_r2v": rs["s_r2v"], "truth_s_v2r": rs["truth"]["s_v2r"],
        "truth_s_r2v": rs["truth"]["s_r2v"],
        "face_accuracy": given["value"], "hidden_face_accuracy": m["face_accuracy"]["value"],
        "hidden_face_pixels": m["face_accuracy"]["pixels"], "face_accuracy_all": m["face_accuracy_all"]["value"],
        "crosstalk": m["crosstalk"]["value"] if m["crosstalk"] else None,
    }


METRICS = ("psnr", "ssim", "s_v2r", "s_r2v", "hidden_face_accuracy", "face_accuracy", "face_accuracy_all",
           "crosstalk")


def mean_metrics(per_sample: list[dict]) -> dict:
    """Means over the samples that have a value (crosstalk: two-object samples only)."""
    out: dict[str, Any] = {}
    for k in (*METRICS, "truth_s_v2r", "truth_s_r2v"):
        vals = [r[k] for r in per_sample if r.get(k) is not None]
        out[k] = float(sum(vals) / len(vals)) if vals else None
        out[f"{k}_n"] = len(vals)
    return out


def evaluate_model(layout: Layout, s: AblationSettings, dit: Path, adapter: Path | None, out: Path,
                   views: Sequence[str], mfi: bool) -> dict:
    """Generate every held-out sample with ``mvs2v generate`` and score it; returns means + per-sample rows."""
    from mvs2v_core.cli import build_parser, run_generate
    from mvs2v_core.toy import load_truth

    data = layout.data.resolve()
    out.mkdir(parents=True, exist_ok=True)
    per_sample = []
    sampling_seconds = 0.0
    for row in eval_rows(layout, s):
        video = out / f"{row['id']}.mp4"
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            result = run_generate(build_parser().parse_args(generate_args(s, dit, adapter, data, row, views, video, mfi)))
        sampling_seconds += result["timings"].get("sampling", 0.0)
        truth = load_truth(data / Path(row["meta"]["truth"]).parent)
        per_sample.append(score_sample(video, truth, views, s.eval_views))
    return {"means": mean_metrics(per_sample), "per_sample": per_sample, "views": list(views),
            "sampling_seconds": round(sampling_seconds, 2)}


def reference_rows(layout: Layout, s: AblationSettings) -> dict:
    """Rows that anchor the table: the true clips, an all-gray clip, the text-to-video base (no references)."""
    if layout.reference_rows.is_file():
        return json.loads(layout.reference_rows.read_text(encoding="utf-8"))
    import numpy as np

    from mvs2v_core.toy import load_truth

    data = layout.data.resolve()
    truth_rows, gray_rows = [], []
    for row in eval_rows(layout, s):
        truth = load_truth(data / Path(row["meta"]["truth"]).parent)
        truth_rows.append(score_sample(truth.frames, truth, s.eval_views, s.eval_views))
        gray_rows.append(score_sample(np.full_like(truth.frames, 128), truth, s.eval_views, s.eval_views))
    base = evaluate_model(layout, s, layout.base_dit, None, layout.pretrain / "eval", s.eval_views, mfi=False)
    rows = {"truth": mean_metrics(truth_rows), "gray": mean_metrics(gray_rows), "t2v_base": base["means"]}
    _write_json(layout.reference_rows, rows)
    return rows


# ---- phase 4: the table -----------------------------------------------------------------------------------

LABELS = {"psnr": "PSNR (dB)", "ssim": "SSIM", "s_v2r": "S_v->r", "s_r2v": "S_r->v",
          "hidden_face_accuracy": "hidden-face acc.", "face_accuracy_all": "face acc. (all)", "crosstalk": "crosstalk"}
TABLE_METRICS = ("hidden_face_accuracy", "psnr", "ssim", "s_v2r", "s_r2v", "face_accuracy_all", "crosstalk")
DIGITS = {"psnr": 2}


def _stats(values: list[float]) -> dict:
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {"mean": mean, "std": std, "min": min(values), "max": max(values), "n": n}


def _fmt(st: dict | None, key: str) -> str:
    if st is None:
        return "n/a"
    d = DIGITS.get(key, 3)
    return f"{st['mean']:.{d}f} ± {st['std']:.{d}f}"


def aggregate(layout: Layout, s: AblationSettings, configs: Sequence[str], seeds: Sequence[int],
              command: str, refs: dict | None) -> dict:
    """Collect every finished run into ``summary.json`` and ``ablation.md`` (both written atomically)."""
    runs: dict[str, dict[int, dict]] = {c: {} for c in configs}
    for c in configs:
        for sd in seeds:
            path = layout.run(c, sd) / METRICS_FILE
            if path.is_file():
                runs[c][sd] = json.loads(path.read_text(encoding="utf-8"))
    summary: dict[str, Any] = {"settings": s.to_json(), "command": command, "configs": {}, "paired": {}}
    for c in configs:
        per_metric = {}
        for k in METRICS:
            vals = [r["means"][k] for r in runs[c].values() if r["means"].get(k) is not None]
            per_metric[k] = _stats(vals) if vals else None
        summary["configs"][c] = {"config": asdict(CONFIGS[c]), "seeds": sorted(runs[c]), "metrics": per_metric,
                                 "per_seed": {sd: r["means"] for sd, r in sorted(runs[c].items())},
                                 "train_minutes": _stats([r["train_seconds"] / 60 for r in runs[c].values()])
                                 if runs[c] else None}
    if "base" in configs:
        for c in configs:
            if c == "base":
                continue
            common = sorted(set(runs[c]) & set(runs["base"]))
            diffs = {}
            for k in METRICS:
                d = [runs[c][sd]["means"][k] - runs["base"][sd]["means"][k] for sd in common
                     if runs[c][sd]["means"].get(k) is not None and runs["base"][sd]["means"].get(k) is not None]
                diffs[k] = _stats(d) if d else None
            summary["paired"][c] = {"seeds": common, "diff": diffs}
    summary["reference_rows"] = refs
    summary["demo_runs"] = {}
    for path in sorted((layout.root / "demo").glob(f"*/{METRICS_FILE}")):
        r = json.loads(path.read_text(encoding="utf-8"))
        summary["demo_runs"][path.parent.name] = {
            "means": r["means"], "steps": _load(path.parent / "train.toml").total_steps,
            "train_minutes": r["train_seconds"] / 60}
    _write_json(layout.root / "summary.json", summary)
    with atomic_write(layout.root / "ablation.md") as tmp:
        tmp.write_text(markdown_table(summary), encoding="utf-8")
    return summary


def markdown_table(summary: dict) -> str:
    """The tables of ``ablation.md`` (mean ± standard deviation over seeds)."""
    s = summary["settings"]
    head = "| config | change | seeds | " + " | ".join(LABELS[k] for k in TABLE_METRICS) + " |"
    sep = "|" + "---|" * (3 + len(TABLE_METRICS))
    lines = [f"Command: `{summary['command']}`", "",
             f"Held-out samples: {s['eval_samples']}; sampler: {s['solver']}, {s['sample_steps']} steps, shift "
             f"{s['sample_shift']}, ref_scale {s['ref_scale']}, text_scale {s['text_scale']}, seed {s['eval_seed']}; "
             f"multi-view runs are given the views {', '.join(s['eval_views'])}, single-view runs the front view; every run "
             f"is scored against the same views ({', '.join(s['eval_views'])}: S_v->r, S_r->v and the hidden faces). "
             "Values: mean ± standard deviation over seeds (sample std).", "", head, sep]
    for c, entry in summary["configs"].items():
        seeds = ",".join(str(x) for x in entry["seeds"]) or "none"
        cells = [_fmt(entry["metrics"].get(k), k) for k in TABLE_METRICS]
        lines.append(f"| {c} | {entry['config']['change']} | {seeds} | " + " | ".join(cells) + " |")
    refs = summary.get("reference_rows")
    if refs:
        lines += ["", "Reference rows (same held-out samples, no seeds):", "",
                  "| row | " + " | ".join(LABELS[k] for k in TABLE_METRICS) + " |", "|---|" + "---|" * len(TABLE_METRICS)]
        names = {"truth": "true clips", "gray": "all-gray clip (128)",
                 "t2v_base": "text-to-video base, no references (the pretrained start of every run)"}
        for key, label in names.items():
            m = refs.get(key) or {}
            cells = []
            for k in TABLE_METRICS:
                v = m.get(k)
                cells.append("n/a" if v is None else f"{v:.{DIGITS.get(k, 3)}f}")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if summary.get("demo_runs"):
        lines += ["", "Longer fine-tune of the bundled demo model (`--bundle-steps`; one seed, same evaluation):", "",
                  "| run | fine-tune steps | " + " | ".join(LABELS[k] for k in TABLE_METRICS) + " |",
                  "|---|---|" + "---|" * len(TABLE_METRICS)]
        for name, entry in summary["demo_runs"].items():
            m = entry["means"]
            cells = ["n/a" if m.get(k) is None else f"{m[k]:.{DIGITS.get(k, 3)}f}" for k in TABLE_METRICS]
            lines.append(f"| {name} | {entry['steps']} | " + " | ".join(cells) + " |")
    if summary.get("paired"):
        keys = ("hidden_face_accuracy", "psnr", "s_r2v", "s_v2r", "crosstalk")
        lines += ["", "Paired difference to base (same seed, same data order and base model), mean ± std over seeds:", "",
                  "| config | seeds | " + " | ".join("Δ " + LABELS[k] for k in keys) + " |",
                  "|---|---|" + "---|" * len(keys)]
        for c, entry in summary["paired"].items():
            cells = []
            for k in keys:
                st = entry["diff"].get(k)
                if st is None:
                    cells.append("n/a")
                else:
                    d = DIGITS.get(k, 3)
                    cells.append(f"{st['mean']:+.{d}f} ± {st['std']:.{d}f}")
            lines.append(f"| {c} | {','.join(map(str, entry['seeds']))} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ---- bundling the demo model --------------------------------------------------------------------------------


def pick_bundle_run(summary: dict) -> str:
    """The run to bundle: the best seed (hidden-face accuracy) of the config with the best mean of it."""
    best_c, best_v = None, -1.0
    for c, entry in summary["configs"].items():
        st = entry["metrics"].get("hidden_face_accuracy")
        if st is not None and st["mean"] > best_v:
            best_c, best_v = c, st["mean"]
    if best_c is None:
        raise MVS2VError("no finished run to bundle: run the ablation first")
    per_seed = summary["configs"][best_c]["per_seed"]
    seed = max(per_seed, key=lambda sd: per_seed[sd]["hidden_face_accuracy"] or -1.0)
    return f"{best_c}-s{seed}"


def bundle_readme(info: dict) -> str:
    """The bundled model's README.md: what it is, how it was trained, what it scored."""
    c, d, m = info["config"], info["dit_config"], info["metrics"]
    metric_lines = "\n".join(f"| {LABELS[k]} | {'n/a' if m.get(k) is None else format(m[k], '.3f')} |"
                             for k in TABLE_METRICS)
    return f"""# The toy demo model of `mvs2v demo`

A tiny Wan DiT ({info['parameters'] / 1e6:.2f} M parameters, width {d['dim']}, {d['num_heads']} heads of 128,
{d['num_layers']} blocks, {d['in_dim']} latent channels, text width {d['text_dim']}, text length {d['text_len']}) trained
from random weights on the toy world (`docs/toy_world.md`): text-to-video pretraining, then {info['finetune_steps']}
fine-tune steps with the config and seed of ablation run `{info['run']}` (`docs/ablation.md`): {c['change']}.

Files: `dit.safetensors` (bf16, original Wan key layout, config in the safetensors metadata),
`adapter.safetensors` (mvs2v adapter: proxy tokens / MFI projector and the position scheme),
`codec/`, `text_encoder/`, `vision_encoder/` (the toy codec and encoders), `model.json` (everything below,
machine-readable).

Trained with:

```
{info['training_command']}
```

(the run's own trainer config is in `model.json` under `train_config`; dataset seed {info['dataset']['seed']},
{info['dataset']['samples']} samples, {info['frames']} frames of {info['width']}x{info['height']}).

Sampler of the demo and of the ablation: {info['sampler']['solver']}, {info['sampler']['steps']} steps, shift
{info['sampler']['shift']}, ref_scale {info['sampler']['ref_scale']}, text_scale {info['sampler']['text_scale']};
references: {', '.join(info['eval_views'])}.

Mean over the ablation's held-out samples:

| metric | value |
|---|---|
{metric_lines}
"""


def demo_finetune(layout: Layout, s: AblationSettings, run_name: str, steps: int, threads: int, log=print) -> Path:
    """The ablation run ``run_name``'s config and seed fine-tuned again for ``steps`` steps (``layout.demo_run``),
    evaluated like every run; returns its folder."""
    config, _, seed = run_name.rpartition("-s")
    if config not in CONFIGS or not seed.isdigit():
        raise MVS2VError(f"--bundle-run {run_name!r} must look like CONFIG-sSEED, e.g. base-s0")
    run_dir = layout.demo_run(config, int(seed))
    if (run_dir / METRICS_FILE).is_file():
        return run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = finetune_config(layout, s, CONFIGS[config], int(seed), steps=steps, output_dir=run_dir)
    cfg["checkpoint"]["every_n_steps"] = 200
    _write_toml(run_dir / "train.toml", cfg, f"# demo model: {config}, seed {seed}, {steps} steps "
                                             "(written by mvs2v_train.toy_ablation --bundle-steps)")
    log(f"demo model: fine-tuning {config} (seed {seed}) for {steps} steps ({threads} threads); log in "
        f"{run_dir / 'worker.log'}")
    t0 = time.perf_counter()
    proc = _spawn(["--worker", f"{config}-s{seed}", "--run-dir", str(run_dir)], layout, threads, run_dir / "worker.log")
    if _wait([proc]) != [0] or not (run_dir / METRICS_FILE).is_file():
        raise MVS2VError(f"the demo-model fine-tune failed; see {run_dir / 'worker.log'}")
    log(f"demo model: done in {(time.perf_counter() - t0) / 60:.1f} min")
    return run_dir


def bundle(layout: Layout, s: AblationSettings, run_dir: Path, dest: Path, command: str, log=print) -> Path:
    """Copy a finished run (a grid run or the ``--bundle-steps`` run) as the demo model: ``dit.safetensors`` (bf16,
    Wan key layout), ``adapter.safetensors``, the toy ``codec/``, ``text_encoder/``, ``vision_encoder/``,
    ``model.json`` (config, command, metrics) and ``README.md``."""
    import torch
    from safetensors.torch import load_file

    from mvs2v_core.model.loading import dit_config_metadata, load_dit
    from mvs2v_core.utils import save_safetensors_atomic

    run_name = run_dir.name
    metrics_path = run_dir / METRICS_FILE
    if not metrics_path.is_file():
        raise MVS2VError(f"run {run_dir} has no {METRICS_FILE}: it is not finished (or does not exist)")
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    dest.mkdir(parents=True, exist_ok=True)
    dit = load_dit(run_dir / "adapter.dit.safetensors")
    sd = {k: v.to(torch.bfloat16) for k, v in load_file(str(run_dir / "adapter.dit.safetensors")).items()}
    save_safetensors_atomic(sd, dest / "dit.safetensors",
                            {"format": "wan-dit", "note": f"mvs2v toy demo model ({run_name})",
                             **dit_config_metadata(dit.config)})
    shutil.copyfile(run_dir / "adapter.safetensors", dest / ".adapter.tmp")
    os.replace(dest / ".adapter.tmp", dest / "adapter.safetensors")
    for folder in ("codec", "text_encoder", "vision_encoder"):
        target = dest / folder
        staging = dest / f".{folder}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(layout.data / folder, staging)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    c = CONFIGS[metrics["config"]["name"]]
    info = {
        "format": DEMO_MODEL_FORMAT, "version": 1, "run": run_name, "config": asdict(c),
        "dit_config": dit.config.to_dict(), "parameters": int(sum(v.numel() for v in sd.values())),
        "mfi": c.mfi, "frames": s.frames, "width": s.size, "height": s.size,
        "sampler": {"steps": s.sample_steps, "shift": s.sample_shift, "solver": s.solver, "ref_scale": s.ref_scale,
                    "text_scale": s.text_scale},
        "eval_views": list(s.eval_views) if c.multi_view else ["front"],
        "dataset": {"seed": s.data_seed, "samples": s.samples, "two_object_prob": s.two_object_prob,
                    "val_fraction": s.val_fraction},
        "training_command": command, "finetune_steps": _load(run_dir / "train.toml").total_steps,
        "train_config": (run_dir / "train.toml").read_text(encoding="utf-8").replace(str(layout.root.resolve()),
                                                                                       "<ablation folder>"),
        "metrics": metrics["means"], "train_seconds": metrics.get("train_seconds"),
    }
    _write_json(dest / "model.json", info)
    with atomic_write(dest / "README.md") as tmp:
        tmp.write_text(bundle_readme(info), encoding="utf-8")
    size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    log(f"bundled {run_dir} into {dest} ({size / 1e6:.2f} MB)")
    return dest


# ---- driver ----------------------------------------------------------------------------------------------


def run_ablation(out: Path, s: AblationSettings, configs: Sequence[str], seeds: Sequence[int], jobs: int,
                 pretrain_threads: int, command: str, log=print) -> dict:
    """All phases (each skipped when its outputs exist); returns the summary."""
    layout = Layout(out)
    out.mkdir(parents=True, exist_ok=True)
    settings_path = out / SETTINGS_FILE
    if settings_path.is_file():
        old = AblationSettings.from_json(json.loads(settings_path.read_text(encoding="utf-8")))
        if old != s:
            diff = {k: (v, getattr(s, k)) for k, v in asdict(old).items() if v != getattr(s, k)}
            raise MVS2VError(f"{out} holds an ablation with other settings ({diff}, stored vs asked): use another "
                             "--out, or the stored settings to continue it")
    else:
        _write_json(settings_path, s.to_json())
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
    p = argparse.ArgumentParser(prog="python -m mvs2v_train.toy_ablation",
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


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    try:
        if args.worker:
            import torch

            torch.set_num_threads(int(os.environ.get("MVS2V_ABLATION_THREADS", "1")))
            layout = Layout(out)
            s = AblationSettings.from_json(json.loads((out / SETTINGS_FILE).read_text(encoding="utf-8")))
            if args.worker == "pretrain":
                _pretrain_worker(layout)
            else:
                _run_worker(layout, s, args.worker, Path(args.run_dir) if args.run_dir else None)
            return 0
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
        s = AblationSettings(samples=args.samples, pretrain_steps=args.pretrain_steps,
                             finetune_steps=args.finetune_steps, eval_samples=args.eval_samples,
                             sample_steps=args.sample_steps)
        command = "python -m mvs2v_train.toy_ablation " + " ".join(argv)
        summary = run_ablation(out, s, configs, seeds, args.jobs, args.pretrain_threads, command)
        if args.bundle:
            layout = Layout(out)
            run_name = args.bundle_run or pick_bundle_run(summary)
            run_dir = layout.runs / run_name
            if args.bundle_steps:
                run_dir = demo_finetune(layout, s, run_name, args.bundle_steps, args.pretrain_threads)
                aggregate(layout, s, configs, seeds, command, reference_rows(layout, s))
            bundle(layout, s, run_dir, Path(args.bundle), command)
    except MVS2VError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished runs and checkpoints are kept; run the same command to continue", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

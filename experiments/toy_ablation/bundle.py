"""A finished run as the demo model of ``mvs2v demo`` (``mvs2v_toy/assets/toy_demo``): ``dit.safetensors``
(bf16, Wan key layout), ``adapter.safetensors``, the toy ``codec/``, ``text_encoder/``, ``vision_encoder/``,
``model.json`` (config, command, metrics) and ``README.md``."""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict
from pathlib import Path

from mvs2v_core.errors import MVS2VError
from mvs2v_core.utils import atomic_write
from mvs2v_toy.demo import DEMO_MODEL_FORMAT

from .arms import CONFIGS, AblationSettings
from .files import METRICS_FILE, TRAIN_CONFIG_FILE, Layout, load_train_config, read_json, write_json
from .report import LABELS, TABLE_METRICS

ENCODER_FOLDERS = ("codec", "text_encoder", "vision_encoder")


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


def _write_models(layout: Layout, run_dir: Path, dest: Path) -> tuple[dict, int]:
    """The run's DiT in bf16, its adapter and the toy encoders into ``dest`` (each replaced atomically);
    returns the DiT config and its parameter count."""
    import torch
    from safetensors.torch import load_file

    from mvs2v_core.model.loading import dit_config_metadata, load_dit
    from mvs2v_core.utils import save_safetensors_atomic

    dit = load_dit(run_dir / "adapter.dit.safetensors")
    sd = {k: v.to(torch.bfloat16) for k, v in load_file(str(run_dir / "adapter.dit.safetensors")).items()}
    save_safetensors_atomic(sd, dest / "dit.safetensors",
                            {"format": "wan-dit", "note": f"mvs2v toy demo model ({run_dir.name})",
                             **dit_config_metadata(dit.config)})
    shutil.copyfile(run_dir / "adapter.safetensors", dest / ".adapter.tmp")
    os.replace(dest / ".adapter.tmp", dest / "adapter.safetensors")
    for folder in ENCODER_FOLDERS:
        target = dest / folder
        staging = dest / f".{folder}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(layout.data / folder, staging)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    return dit.config.to_dict(), int(sum(v.numel() for v in sd.values()))


def model_info(layout: Layout, s: AblationSettings, run_dir: Path, metrics: dict, dit_config: dict,
               parameters: int, command: str) -> dict:
    """``model.json``: the run's arm, DiT, sampler, dataset, command, trainer config and metrics."""
    c = CONFIGS[metrics["config"]["name"]]
    config_path = run_dir / TRAIN_CONFIG_FILE
    return {
        "format": DEMO_MODEL_FORMAT, "version": 1, "run": run_dir.name, "config": asdict(c),
        "dit_config": dit_config, "parameters": parameters,
        "mfi": c.mfi, "frames": s.frames, "width": s.size, "height": s.size,
        "sampler": {"steps": s.sample_steps, "shift": s.sample_shift, "solver": s.solver, "ref_scale": s.ref_scale,
                    "text_scale": s.text_scale},
        "eval_views": list(s.views_of(c)),
        "dataset": {"seed": s.data_seed, "samples": s.samples, "two_object_prob": s.two_object_prob,
                    "val_fraction": s.val_fraction},
        "training_command": command, "finetune_steps": load_train_config(config_path).total_steps,
        "train_config": config_path.read_text(encoding="utf-8").replace(str(layout.root.resolve()),
                                                                        "<ablation folder>"),
        "metrics": metrics["means"], "train_seconds": metrics.get("train_seconds"),
    }


def bundle(layout: Layout, s: AblationSettings, run_dir: Path, dest: Path, command: str, log=print) -> Path:
    """Copy a finished run (a grid run or the ``--bundle-steps`` run) as the demo model into ``dest``."""
    metrics_path = run_dir / METRICS_FILE
    if not metrics_path.is_file():
        raise MVS2VError(f"run {run_dir} has no {METRICS_FILE}: it is not finished (or does not exist)")
    metrics = read_json(metrics_path)
    dest.mkdir(parents=True, exist_ok=True)
    dit_config, parameters = _write_models(layout, run_dir, dest)
    info = model_info(layout, s, run_dir, metrics, dit_config, parameters, command)
    write_json(dest / "model.json", info)
    with atomic_write(dest / "README.md") as tmp:
        tmp.write_text(bundle_readme(info), encoding="utf-8")
    size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    log(f"bundled {run_dir} into {dest} ({size / 1e6:.2f} MB)")
    return dest

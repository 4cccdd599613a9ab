"""A checkpoint as a toy model folder (the layout of ``mvs2v_toy/assets/toy_demo``): ``dit.safetensors``
(bf16, Wan key layout), ``adapter.safetensors``, the toy ``codec/``, ``text_encoder/``, ``vision_encoder/``
and ``model.json`` (the keys ``mvs2v demo`` and ``mvs2v toy-bench`` read)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from mvs2v_toy.demo import DEMO_MODEL_FORMAT

from .arms import AblationSettings, Arm
from .data import dataset_seeds
from .files import ENCODER_FOLDERS, Layout, read_json, write_json

ALL_VIEWS = ["front", "left", "back", "right"]


def model_info(s: AblationSettings, arm: Arm, run: str, step: int, dit_config: dict, parameters: int,
               command: str, dataset: dict[str, Any]) -> dict[str, Any]:
    """``model.json`` of an exported run (``metrics`` and ``bench`` are filled in by ``--bundle``); ``dataset``
    is the training set's ``dataset.json``."""
    return {
        "format": DEMO_MODEL_FORMAT, "version": 2, "run": run, "step": step, "config": arm.to_json(),
        "dit_config": dit_config, "parameters": parameters, "mfi": arm.mfi,
        "frames": s.frames, "width": 32, "height": 32,
        "sampler": {"steps": s.sample_steps, "shift": s.sample_shift, "solver": s.solver, "ref_scale": s.ref_scale,
                    "text_scale": s.text_scale},
        # The views written for a held-out scene; a single-view arm is given only the start view among them.
        "eval_views": list(ALL_VIEWS), "reference_views": "start" if arm.views == "single" else "all",
        "eval": {"world": "w1", "seed": s.eval_seed},
        "dataset": {"seed": s.data_seed, "samples": s.samples, "world": s.world,
                    "two_object_prob": dataset["two_object_prob"], "val_fraction": s.val_fraction},
        "curriculum": curriculum_info(s),
        "training_command": command, "finetune_steps": step, "init_sha256": dict(s.init_sha256),
    }


def curriculum_info(s: AblationSettings) -> dict[str, Any] | None:
    """``model.json``'s account of the curriculum (``graded`` and ``keep_mix`` only when graded), or of the
    schedule (its legs, and the seeds of the datasets they draw on)."""
    if s.schedule:
        return {"schedule": [{"worlds": "+".join(w.upper() for w in worlds), "steps": steps}
                             for worlds, steps in s.legs],
                "dataset_seeds": dataset_seeds(s), "samples": s.curriculum_samples}
    if not s.curriculum_steps:
        return None
    info: dict[str, Any] = {"world": s.curriculum_world, "steps": s.curriculum_steps, "seed": s.curriculum_data_seed,
                            "samples": s.curriculum_samples}
    if s.graded_worlds:
        seeds = dataset_seeds(s)
        info["graded"] = [{"world": w, "steps": s.graded_steps, "seed": seeds[w]} for w in s.graded_worlds]
        info["keep_mix"] = s.keep_mix
    return info


def _copy_encoders(data: Path, dest: Path) -> None:
    for name in ENCODER_FOLDERS:
        shutil.copytree(data / name, dest / name)


def export_model(layout: Layout, cfg: Any, checkpoint: Path, dest: Path, s: AblationSettings, arm: Arm,
                 run: str, command: str, step: int | None = None) -> Path:
    """Write the checkpoint as a toy model folder at ``dest`` (built beside it, then moved in one step).

    Uses the trainer's own export (what ``mvs2v-train export`` runs): the adapter, and the full DiT in bf16.
    ``step``: the run's global step of the checkpoint (default: the trainer's own count, which starts again at
    0 in a run continued from a handoff).
    """
    from mvs2v_core.model.loading import load_dit
    from mvs2v_train import checkpoint as ckpt
    from mvs2v_train.export import export_checkpoint

    staging = dest.parent / f".{dest.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    export_checkpoint(cfg, checkpoint, staging / "adapter.safetensors")
    os.replace(staging / "adapter.dit.safetensors", staging / "dit.safetensors")
    _copy_encoders(layout.encoders, staging)
    dit = load_dit(staging / "dit.safetensors")
    parameters = int(sum(p.numel() for p in dit.parameters()))
    step = int(ckpt.read_trainer_state(checkpoint)["global_step"]) if step is None else step
    dataset = read_json(layout.data / "dataset.json")
    write_json(staging / "model.json", model_info(s, arm, run, step, dit.config.to_dict(), parameters, command,
                                                  dataset))
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(staging, dest)
    return dest


def is_exported(folder: Path) -> bool:
    """A finished export (``model.json`` is written last, and the folder is moved in whole)."""
    return (folder / "model.json").is_file() and (folder / "dit.safetensors").is_file()

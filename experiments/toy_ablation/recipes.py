"""The trainer config (``mvs2v-train`` TOML as a dict) of one run: the W12 demo recipe with one change."""

from __future__ import annotations

import math
from pathlib import Path

from .arms import Arm, AblationSettings
from .files import Layout

TEXT_TOKENS = 32  # the toy DiT's text length; the longest W12 caption has fewer tokens
RESOLUTIONS = [[32, 32], [64, 32]]  # W1 (one cube) and W2 (two cubes side by side)


def world_tag(world: str) -> str:
    """The manifest tag of a world's rows in the merged curriculum manifest; ``w2`` in a schedule leg is the
    main (W12) world's two-object rows, tagged by the dataset writer."""
    return "objects-2" if world == "w2" else f"world-{world}"


def cycle_stages(s: AblationSettings, arm: Arm) -> list[dict]:
    """The run's stages as ``s.cycle_steps``-step cosine cycles (the last one shorter if it does not divide):
    ``s.curriculum_steps`` on the calibration world, ``s.graded_steps`` per graded world together with the
    worlds before it, then ``s.steps`` on the main world (with the curriculum worlds too under ``keep_mix``);
    or, with a schedule, each leg's steps on its worlds."""
    if s.schedule:
        return [stage for i, (worlds, steps) in enumerate(s.legs, start=1)
                for stage in _cycles(s, arm, f"leg{i}-{'+'.join(worlds)}", list(worlds), steps)]
    if not s.curriculum_steps:
        return _cycles(s, arm, "cycle", None, s.steps)
    worlds = s.curriculum_worlds
    stages = _cycles(s, arm, worlds[0], [worlds[0]], s.curriculum_steps)
    for i, world in enumerate(worlds[1:], start=2):
        stages += _cycles(s, arm, world, list(worlds[:i]), s.graded_steps)
    return stages + _cycles(s, arm, s.world, [*worlds, s.world] if s.keep_mix else [s.world], s.steps)


def _cycles(s: AblationSettings, arm: Arm, name: str, worlds: list[str] | None, steps: int) -> list[dict]:
    """``steps`` in cycles on the rows of ``worlds`` (``None``: every row of the manifest)."""
    stages, done, k = [], 0, 1
    while done < steps:
        n = min(s.cycle_steps, steps - done)
        stage = {"name": f"{name}-{k}", "steps": n, "learning_rate": s.learning_rate,
                 "warmup_steps": min(s.warmup_steps, n), "lr_schedule": "cosine", "min_lr_ratio": s.min_lr_ratio}
        if worlds is not None:
            stage["filter"] = {"tags": [world_tag(w) for w in worlds]}
        if arm.views == "single":
            stage.update(views="single", single_view="frontal")  # the start view: frontal in the W manifests
        else:
            stage.update(views="dropout", dropout_prob=s.dropout_prob, keep_frontal=True)
        stages.append(stage)
        done, k = done + n, k + 1
    return stages


def keep_last(s: AblationSettings) -> int:
    """Enough checkpoints to keep every one of the run (the curve scores them after the fact)."""
    return math.ceil(s.total_steps / s.checkpoint_every) + 1


def train_config(layout: Layout, s: AblationSettings, arm: Arm, seed: int, init: Path,
                 init_adapter: Path | None) -> dict:
    """The run's config: full fine-tune from ``init`` (+ proxy tokens / MFI where the arm has them)."""
    enc, run = layout.encoders.resolve(), layout.run(f"{arm.name}-s{seed}")
    model = {"dit": str((init / "dit.safetensors").resolve()), "dtype": "fp32", "vae": str(enc / "codec"),
             "text_encoder": str(enc / "text_encoder")}
    if init_adapter is not None:
        model["init_adapter"] = str(init_adapter.resolve())
    if arm.vision:
        model["vision_encoder"] = str(enc / "vision_encoder")
    # The toy DiT's width; the block is left to the trainer's default (a third of the depth: block 1 of 4).
    align = {"align": {"weight": arm.align, "projector_dim": 256}} if arm.align > 0 else {}
    return {
        "model": model,
        "references": {"slots_per_subject": 4, "scheme": arm.scheme, "gap": arm.gap,
                       "empty_slot_mode": arm.empty_slot_mode, "ref_timestep": arm.ref_timestep,
                       "ref_attention": arm.ref_attention,
                       **({"slot_anchor": arm.slot_anchor} if arm.slot_anchor != "canonical" else {})},
        "data": {"manifest": str(layout.manifest(s).resolve()), "cache_dir": str(layout.cache(arm.vision).resolve()),
                 "resolutions": RESOLUTIONS, "frames": s.frames, "min_frames": s.frames,
                 "max_text_tokens": TEXT_TOKENS, "cache_shard_items": 256},
        # No pixel augmentation (it would change the colours the metrics read); no subject shuffling: a
        # W2 caption names its subjects left to right, in the manifest's order.
        "augment": {"variants": 1, "clean_prob": 1.0, "shuffle_subjects": 0.0, "shuffle_views": 0.0,
                    "subject_drop": 0.0, "reference_drop": 0.1, "caption_drop": 0.1},
        "train": {"output_dir": str(run.train.resolve()), "seed": int(seed), "batch_size": s.batch_size,
                  "mixed_precision": "no", "gradient_checkpointing": False, "betas": [0.9, 0.99],
                  "weight_decay": 0.0, "max_grad_norm": 1.0},
        "timesteps": {"sampling": "shifted", "shift": s.timestep_shift},
        "trainable": {"proxy": arm.empty_slot_mode == "proxy", "mfi": arm.mfi, "lora": False, "full": True},
        "checkpoint": {"every_n_steps": s.checkpoint_every, "keep_last": keep_last(s)},
        "logging": {"every_n_steps": 20, "tensorboard": False, "progress_bar": False},
        "validation": {"every_n_steps": 0},
        "stages": cycle_stages(s, arm),
        **align,
    }


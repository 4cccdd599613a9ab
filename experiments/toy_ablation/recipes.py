"""The trainer configs (``mvs2v-train`` TOML as dicts) of the pretraining and of each arm's fine-tune."""

from __future__ import annotations

from pathlib import Path

from .arms import TOY_DIT, AblationConfig, AblationSettings
from .files import Layout


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


def curriculum_stages(steps: int, lr: float, multi_view: bool) -> list[dict]:
    """HarmoView's Progressive View Curriculum, stages 1-3 (15% / 15% / the rest of ``steps``, each at
    least one step); a single-view arm keeps the schedule with the frontal view in every stage."""
    n1 = max(1, round(0.15 * steps))
    n2 = max(1, round(0.15 * steps))
    n3 = max(1, steps - n1 - n2)
    first = {"name": "single-view", "steps": n1, "learning_rate": lr, "warmup_steps": min(20, n1), "views": "single",
             "single_view": "frontal"}
    if multi_view:
        return [
            first,
            {"name": "single-or-full", "steps": n2, "learning_rate": lr, "views": "single_or_full",
             "full_view_prob": 0.5, "filter": {"min_views": 2}},
            {"name": "view-dropout", "steps": n3, "learning_rate": lr, "views": "dropout", "dropout_prob": 1.0,
             "keep_frontal": True, "lr_schedule": "cosine", "min_lr_ratio": 0.1, "filter": {"min_views": 2}},
        ]
    return [
        first,
        {"name": "single-view-2", "steps": n2, "learning_rate": lr, "views": "single", "single_view": "frontal"},
        {"name": "single-view-3", "steps": n3, "learning_rate": lr, "views": "single", "single_view": "frontal",
         "lr_schedule": "cosine", "min_lr_ratio": 0.1},
    ]


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
    cfg["stages"] = curriculum_stages(n, s.finetune_lr, c.multi_view)
    return cfg

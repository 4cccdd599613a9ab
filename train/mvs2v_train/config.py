"""The trainer's TOML configuration: one dataclass per section, every key checked.

A config file has the sections ``[model]``, ``[references]``, ``[data]``, ``[augment]``,
``[train]``, ``[timesteps]``, ``[trainable]``, ``[lora]``, ``[checkpoint]``, ``[logging]``,
``[validation]`` and one ``[[stages]]`` table per curriculum stage (see ``train/configs/`` for
commented examples). Relative paths are resolved from the config file's folder. An unknown key, a
wrong type or an out-of-range value is a :class:`ConfigError` that names the key and the fix, so a
typo never silently falls back to a default.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, get_args, get_origin, get_type_hints

from mvs2v_core.errors import MVS2VError
from mvs2v_core.references.layout import EMPTY_SLOT_MODES, parse_view_label
from mvs2v_core.references.positions import PLACEMENTS, SCHEMES, PositionScheme

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    try:
        import tomli as tomllib
    except ImportError:  # pragma: no cover
        tomllib = None  # type: ignore[assignment]


class ConfigError(MVS2VError):
    """A config file that cannot be used as written (the message names the key and the fix)."""


VIEW_POLICIES = ("single", "single_or_full", "dropout", "full")
TIMESTEP_SAMPLINGS = ("shifted", "logit_normal", "uniform")
LOSS_WEIGHTINGS = ("none", "cosmap", "sigma_sqrt")
LR_SCHEDULES = ("constant", "cosine", "linear")
MIXED_PRECISIONS = ("no", "bf16", "fp16")
DTYPES = ("fp32", "bf16", "fp16")
SOLVERS = ("unipc", "euler", "heun")
SINGLE_VIEW_CHOICES = ("frontal", "random")
VIDEO_FORMATS = ("mp4", "webp")
FRAME_STARTS = ("first", "center")

# The Wan DiT's nn.Linear modules a LoRA can target, by suffix.
DEFAULT_LORA_TARGETS = (
    "self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o",
    "cross_attn.q", "cross_attn.k", "cross_attn.v", "cross_attn.o",
    "ffn.0", "ffn.2",
)


# ---- sections ------------------------------------------------------------------------------------


@dataclass
class ModelSection:
    """``[model]``: the base DiT and the frozen encoders (local safetensors files/folders only).

    Attributes:
        dit: base Wan / Phantom-Wan DiT (.safetensors file, sharded index or diffusers folder).
        config: named config to check the DiT against (``wan2.1-t2v-1.3b``...); "" infers it.
        dtype: storage dtype of the frozen base weights (trainable weights are always float32).
        vae: Wan VAE (diffusers folder or single .safetensors), used by ``cache`` and validation.
        text_encoder: umT5 folder, used by ``cache`` and validation.
        vision_encoder: CLIP / SigLIP vision folder for MFI ("" when MFI is off).
        init_adapter: an exported mvs2v adapter to start from (proxy tokens, MFI, LoRA), or "".
    """

    dit: str = ""
    config: str = ""
    dtype: str = "bf16"
    vae: str = ""
    text_encoder: str = ""
    vision_encoder: str = ""
    init_adapter: str = ""

    def check(self) -> None:
        _choice("model.dtype", self.dtype, DTYPES)
        if not self.dit:
            raise ConfigError("model.dit is empty: set it to the base Wan DiT .safetensors file")


@dataclass
class ReferencesSection:
    """``[references]``: slots, position scheme and empty-slot handling, exactly as at inference."""

    slots_per_subject: int = 4
    scheme: str = "ts"
    gap: float = 8.0
    ref_gap: float = 9.0
    identity_gap: float = 24.0
    placement: str = "after"
    empty_slot_mode: str = "proxy"
    ref_timestep: str = "same"

    def check(self) -> None:
        _int_range("references.slots_per_subject", self.slots_per_subject, 1, 64)
        _choice("references.scheme", self.scheme, SCHEMES)
        _choice("references.placement", self.placement, PLACEMENTS)
        _choice("references.empty_slot_mode", self.empty_slot_mode, EMPTY_SLOT_MODES)
        _choice("references.ref_timestep", self.ref_timestep, ("same", "zero"))
        try:
            self.position_scheme()
        except MVS2VError as e:
            raise ConfigError(f"[references]: {e}") from None

    def position_scheme(self) -> PositionScheme:
        return PositionScheme(self.scheme, self.gap, self.ref_gap, self.identity_gap, self.placement)


@dataclass
class DataSection:
    """``[data]``: the manifest, the cache and how videos become latents.

    Attributes:
        manifest: JSONL manifest (one sample per line).
        cache_dir: folder of the latent / embedding cache (safetensors shards + index.json).
        resolutions: ``[[width, height], ...]`` buckets; each video goes to the bucket nearest to its
            aspect ratio, is resized to cover it and centre-cropped.
        frames: video frames per sample (4n+1); shorter videos use their longest 4n+1 prefix.
        min_frames: videos with fewer usable frames are reported as bad rows.
        frame_stride: take every n-th frame.
        frame_start: ``first`` frames or the ``center`` of the clip.
        max_text_tokens: prompts are cut to this many tokens (Wan: 512).
        cache_shard_items: items per cache shard file (a crash loses at most one shard of work).
    """

    manifest: str = ""
    cache_dir: str = "cache"
    resolutions: list = field(default_factory=lambda: [[832, 480]])
    frames: int = 81
    min_frames: int = 1
    frame_stride: int = 1
    frame_start: str = "first"
    max_text_tokens: int = 512
    cache_shard_items: int = 64

    def check(self) -> None:
        if not self.manifest:
            raise ConfigError("data.manifest is empty: set it to your JSONL manifest")
        if not isinstance(self.resolutions, list) or not self.resolutions:
            raise ConfigError("data.resolutions must be a list of [width, height] pairs, e.g. [[832, 480]]")
        for r in self.resolutions:
            if (not isinstance(r, list) or len(r) != 2 or not all(isinstance(v, int) and not isinstance(v, bool)
                                                                   and v > 0 for v in r)):
                raise ConfigError(f"data.resolutions entry {r!r} must be [width, height] with positive integers")
        _int_range("data.frames", self.frames, 1, 100000)
        if (self.frames - 1) % 4:
            lo = (self.frames - 1) // 4 * 4 + 1
            raise ConfigError(f"data.frames {self.frames} is not of the form 4n+1 the Wan VAE needs: use {lo} or {lo + 4}")
        _int_range("data.min_frames", self.min_frames, 1, self.frames)
        _int_range("data.frame_stride", self.frame_stride, 1, 1000)
        _choice("data.frame_start", self.frame_start, FRAME_STARTS)
        _int_range("data.max_text_tokens", self.max_text_tokens, 1, 100000)
        _int_range("data.cache_shard_items", self.cache_shard_items, 1, 100000)


@dataclass
class AugmentSection:
    """``[augment]``: reference augmentation against copy-paste (the model pasting a reference frame).

    Pixel augmentations are baked into ``variants`` cached versions of every view (variant 0 is the
    clean letterboxed image); each training draw picks one. The rest happen per draw on latents.

    Attributes:
        variants: cached versions per view image (1 = no pixel augmentation).
        crop: range of the kept side fraction of a random crop of the view image.
        scale: range of the subject's size on the white canvas after letterboxing.
        brightness, contrast, saturation: colour jitter strength (factor in [1-x, 1+x]).
        hue: hue shift in turns, in [-x, x].
        clean_prob: probability of drawing the clean variant 0.
        shuffle_subjects: probability of shuffling the order of the subjects (their position blocks).
        shuffle_views: probability of shuffling the slot order of *unlabelled* views (labelled views
            always go to the slot of their yaw).
        subject_drop: per subject, probability of dropping it (at least one subject stays).
        reference_drop: probability of zeroing every reference latent (and MFI feature): the
            model then learns the "no reference" condition of the three-pass guidance.
        caption_drop: probability of training on the empty prompt (the guidance's negative).
    """

    variants: int = 4
    crop: list = field(default_factory=lambda: [0.8, 1.0])
    scale: list = field(default_factory=lambda: [0.75, 1.0])
    brightness: float = 0.1
    contrast: float = 0.1
    saturation: float = 0.1
    hue: float = 0.02
    clean_prob: float = 0.25
    shuffle_subjects: float = 0.5
    shuffle_views: float = 0.5
    subject_drop: float = 0.0
    reference_drop: float = 0.05
    caption_drop: float = 0.1

    def check(self) -> None:
        _int_range("augment.variants", self.variants, 1, 64)
        for name in ("crop", "scale"):
            _unit_range(f"augment.{name}", getattr(self, name), positive=True)
        for name in ("brightness", "contrast", "saturation"):
            _float_range(f"augment.{name}", getattr(self, name), 0.0, 1.0)
        _float_range("augment.hue", self.hue, 0.0, 0.5)
        for name in ("clean_prob", "shuffle_subjects", "shuffle_views", "subject_drop", "reference_drop", "caption_drop"):
            _float_range(f"augment.{name}", getattr(self, name), 0.0, 1.0)

    def pixel_params(self) -> dict:
        """What changes the cached variants (part of their cache key)."""
        return {k: getattr(self, k) for k in ("variants", "crop", "scale", "brightness", "contrast", "saturation", "hue")}


@dataclass
class TrainSection:
    """``[train]``: run folder, batch, optimizer, precision."""

    output_dir: str = "runs/mvs2v"
    seed: int = 0
    batch_size: int = 1
    gradient_accumulation_steps: int = 1
    mixed_precision: str = "bf16"
    gradient_checkpointing: bool = True
    weight_decay: float = 0.0
    betas: list = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    max_grad_norm: float = 1.0

    def check(self) -> None:
        _int_range("train.seed", self.seed, 0, 2**63 - 1)
        _int_range("train.batch_size", self.batch_size, 1, 4096)
        _int_range("train.gradient_accumulation_steps", self.gradient_accumulation_steps, 1, 4096)
        _choice("train.mixed_precision", self.mixed_precision, MIXED_PRECISIONS)
        _float_range("train.weight_decay", self.weight_decay, 0.0, 10.0)
        if not (isinstance(self.betas, list) and len(self.betas) == 2
                and all(isinstance(b, (int, float)) and 0 <= b < 1 for b in self.betas)):
            raise ConfigError(f"train.betas must be two numbers in [0, 1), e.g. [0.9, 0.999]; got {self.betas!r}")
        _float_range("train.eps", self.eps, 0.0, 1.0, low_open=True)
        _float_range("train.max_grad_norm", self.max_grad_norm, 0.0, 1e9)


@dataclass
class TimestepsSection:
    """``[timesteps]``: how training noise levels are drawn; ``t = 1000 * sigma``.

    Attributes:
        sampling: ``shifted`` (uniform u, then Wan's shift ``k u / (1 + (k-1) u)``), ``logit_normal``
            (sigmoid of a normal, then the shift when ``shift != 1``) or ``uniform``.
        shift: the shift ``k`` (Wan: 5 for 480p, 3 for 720p; 1 = none).
        logit_mean, logit_std: the normal of ``logit_normal``.
        min_timestep, max_timestep: draw only in [min, max] (Wan2.2 A14B: the high-noise expert
            takes t >= 875, the low-noise expert t < 875). The distribution is truncated exactly,
            not clipped.
        weighting: per-sample loss weight: ``none``, ``cosmap`` or ``sigma_sqrt`` (1/sigma^2, capped).
    """

    sampling: str = "shifted"
    shift: float = 5.0
    logit_mean: float = 0.0
    logit_std: float = 1.0
    min_timestep: float = 0.0
    max_timestep: float = 1000.0
    weighting: str = "none"

    def check(self) -> None:
        _choice("timesteps.sampling", self.sampling, TIMESTEP_SAMPLINGS)
        _choice("timesteps.weighting", self.weighting, LOSS_WEIGHTINGS)
        _float_range("timesteps.shift", self.shift, 0.0, 1000.0, low_open=True)
        _float_range("timesteps.logit_std", self.logit_std, 0.0, 100.0, low_open=True)
        _float_range("timesteps.logit_mean", self.logit_mean, -100.0, 100.0)
        _float_range("timesteps.min_timestep", self.min_timestep, 0.0, 1000.0)
        _float_range("timesteps.max_timestep", self.max_timestep, 0.0, 1000.0)
        if self.max_timestep - self.min_timestep < 1.0:
            raise ConfigError(
                f"timesteps.min_timestep {self.min_timestep} must be at least 1 below max_timestep {self.max_timestep}"
            )


@dataclass
class TrainableSection:
    """``[trainable]``: which parts learn. The rest of the DiT stays frozen (unless ``full``)."""

    proxy: bool = True
    mfi: bool = False
    lora: bool = True
    full: bool = False
    proxy_lr_scale: float = 1.0
    mfi_lr_scale: float = 1.0
    mfi_vit_dim: int = 0

    def check(self) -> None:
        if self.full and self.lora:
            raise ConfigError("trainable.full and trainable.lora are both true: a full fine-tune already trains "
                              "every weight; set lora = false (or full = false for a LoRA)")
        if not (self.proxy or self.mfi or self.lora or self.full):
            raise ConfigError("[trainable] turns every part off: enable at least one of proxy, mfi, lora, full")
        _float_range("trainable.proxy_lr_scale", self.proxy_lr_scale, 0.0, 1e6, low_open=True)
        _float_range("trainable.mfi_lr_scale", self.mfi_lr_scale, 0.0, 1e6, low_open=True)
        _int_range("trainable.mfi_vit_dim", self.mfi_vit_dim, 0, 1 << 20)


@dataclass
class LoraSection:
    """``[lora]``: rank, alpha and the target nn.Linear modules (by name suffix, e.g. ``self_attn.q``)."""

    rank: int = 32
    alpha: float = 32.0
    targets: list = field(default_factory=lambda: list(DEFAULT_LORA_TARGETS))
    dropout: float = 0.0

    def check(self) -> None:
        _int_range("lora.rank", self.rank, 1, 4096)
        _float_range("lora.alpha", self.alpha, 0.0, 1e6, low_open=True)
        _float_range("lora.dropout", self.dropout, 0.0, 0.99)
        if not isinstance(self.targets, list) or not self.targets or not all(isinstance(t, str) and t for t in self.targets):
            raise ConfigError("lora.targets must be a non-empty list of module names such as [\"self_attn.q\", \"ffn.0\"]")


@dataclass
class StageFilter:
    """``[stages.filter]``: which manifest samples a stage trains on.

    Attributes:
        splits: manifest splits to use.
        min_views: the sample's subject with the most views must have at least this many (2+ keeps
            multi-view samples only; rows without subjects then drop out).
        min_quality: the row's ``quality`` must be at least this (rows without one drop out).
        tags: the row must have at least one of these tags (empty = any row).
    """

    splits: list = field(default_factory=lambda: ["train"])
    min_views: int = 1
    min_quality: float | None = None
    tags: list = field(default_factory=list)

    def check(self, where: str) -> None:
        if not isinstance(self.splits, list) or not all(isinstance(s, str) for s in self.splits) or not self.splits:
            raise ConfigError(f"{where}.splits must be a non-empty list of split names, e.g. [\"train\"]")
        _int_range(f"{where}.min_views", self.min_views, 1, 64)
        if self.min_quality is not None and not isinstance(self.min_quality, (int, float)):
            raise ConfigError(f"{where}.min_quality must be a number")
        if not isinstance(self.tags, list) or not all(isinstance(t, str) for t in self.tags):
            raise ConfigError(f"{where}.tags must be a list of strings (a sample needs at least one of them)")


@dataclass
class StageSection:
    """One ``[[stages]]`` table: a Progressive View Curriculum stage.

    Attributes:
        name: shown in logs and progress.
        steps: optimizer steps of this stage.
        learning_rate: peak learning rate of the stage.
        warmup_steps: linear warm-up at the start of the stage.
        lr_schedule: after warm-up: ``constant``, ``cosine`` or ``linear`` decay to ``min_lr_ratio``.
        min_lr_ratio: end of the decay, as a fraction of ``learning_rate``.
        views: the view policy: ``single`` (one view per subject), ``single_or_full`` (one view or
            all, per sample), ``dropout`` (a random 1..K views per subject), ``full`` (all views).
        full_view_prob: ``single_or_full``: probability of the full-view configuration.
        dropout_prob: ``dropout``: probability that a sample gets dropout (else all its views);
            1.0 for stage 3, lower for stage 4 ("less dropout").
        single_view: which view stays when one is kept: the ``frontal`` one or a ``random`` one.
        keep_frontal: ``dropout``: always keep the frontal view (MFI reads it).
        filter: the stage's data filter (see :class:`StageFilter`).
    """

    name: str = "stage"
    steps: int = 1000
    learning_rate: float = 1e-4
    warmup_steps: int = 0
    lr_schedule: str = "constant"
    min_lr_ratio: float = 0.0
    views: str = "dropout"
    full_view_prob: float = 0.5
    dropout_prob: float = 1.0
    single_view: str = "frontal"
    keep_frontal: bool = True
    filter: StageFilter = field(default_factory=StageFilter)

    def check(self, where: str) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"{where}.name must be a non-empty string")
        _int_range(f"{where}.steps", self.steps, 1, 10**9)
        _float_range(f"{where}.learning_rate", self.learning_rate, 0.0, 1.0, low_open=True)
        _int_range(f"{where}.warmup_steps", self.warmup_steps, 0, self.steps)
        _choice(f"{where}.lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _float_range(f"{where}.min_lr_ratio", self.min_lr_ratio, 0.0, 1.0)
        _choice(f"{where}.views", self.views, VIEW_POLICIES)
        _float_range(f"{where}.full_view_prob", self.full_view_prob, 0.0, 1.0)
        _float_range(f"{where}.dropout_prob", self.dropout_prob, 0.0, 1.0)
        _choice(f"{where}.single_view", self.single_view, SINGLE_VIEW_CHOICES)
        self.filter.check(f"{where}.filter")


@dataclass
class CheckpointSection:
    """``[checkpoint]``: full-state checkpoints (atomic) every N steps; the last ``keep_last`` are kept."""

    every_n_steps: int = 500
    keep_last: int = 3

    def check(self) -> None:
        _int_range("checkpoint.every_n_steps", self.every_n_steps, 1, 10**9)
        _int_range("checkpoint.keep_last", self.keep_last, 1, 10**6)


@dataclass
class LoggingSection:
    """``[logging]``: console / JSONL / tensorboard logging every N steps."""

    every_n_steps: int = 10
    tensorboard: bool = True
    progress_bar: bool = True
    sync_check_every_n_steps: int = 0

    def check(self) -> None:
        _int_range("logging.every_n_steps", self.every_n_steps, 1, 10**9)
        _int_range("logging.sync_check_every_n_steps", self.sync_check_every_n_steps, 0, 10**9)


@dataclass
class ValidationSubject:
    """One subject of a validation prompt: view images with optional labels."""

    name: str = "subject"
    images: list = field(default_factory=list)
    labels: list = field(default_factory=list)
    frontal: int | None = None

    def check(self, where: str) -> None:
        if not self.images or not all(isinstance(p, str) for p in self.images):
            raise ConfigError(f"{where}.images must be a non-empty list of image paths")
        if self.labels:
            if len(self.labels) != len(self.images):
                raise ConfigError(f"{where}.labels has {len(self.labels)} entries for {len(self.images)} images: "
                                  "give one label per image (or none)")
            for lab in self.labels:
                try:
                    parse_view_label(lab if lab != "" else None)
                except MVS2VError as e:
                    raise ConfigError(f"{where}.labels: {e}") from None


@dataclass
class ValidationPrompt:
    """One ``[[validation.prompts]]`` entry."""

    prompt: str = ""
    negative_prompt: str = ""
    seed: int = 0
    subjects: list = field(default_factory=list)

    def check(self, where: str) -> None:
        if not isinstance(self.prompt, str):
            raise ConfigError(f"{where}.prompt must be a string")
        _int_range(f"{where}.seed", self.seed, 0, 2**63 - 1)
        for i, s in enumerate(self.subjects):
            s.check(f"{where}.subjects[{i}]")


@dataclass
class ValidationSection:
    """``[validation]``: sample videos with the mvs2v_core pipeline every N steps, plus a held-out loss.

    Attributes:
        every_n_steps: 0 turns sampling off.
        width, height, frames, steps, shift, solver, ref_scale, text_scale: the sampler settings,
            the same meaning as ``mvs2v generate``.
        formats: files written per prompt (``mp4``, ``webp``).
        fps: frame rate of the written files.
        loss_split: manifest split of the held-out loss ("" turns it off).
        loss_samples: at most this many held-out samples.
        loss_sigmas: the fixed noise levels of the held-out loss.
        device: where the VAE / text / vision encoders live during validation (``cpu`` or
            ``auto`` = the training device).
        prompts: the ``[[validation.prompts]]``.
    """

    every_n_steps: int = 0
    width: int = 832
    height: int = 480
    frames: int = 81
    steps: int = 30
    shift: float = 5.0
    solver: str = "unipc"
    ref_scale: float = 5.0
    text_scale: float = 7.5
    formats: list = field(default_factory=lambda: ["mp4"])
    fps: float = 16.0
    loss_split: str = "val"
    loss_samples: int = 8
    loss_sigmas: list = field(default_factory=lambda: [0.1, 0.3, 0.5, 0.7, 0.9])
    device: str = "auto"
    prompts: list = field(default_factory=list)

    def check(self) -> None:
        _int_range("validation.every_n_steps", self.every_n_steps, 0, 10**9)
        _int_range("validation.steps", self.steps, 1, 1000)
        _int_range("validation.width", self.width, 1, 100000)
        _int_range("validation.height", self.height, 1, 100000)
        _int_range("validation.frames", self.frames, 1, 100000)
        _choice("validation.solver", self.solver, SOLVERS)
        _float_range("validation.shift", self.shift, 0.0, 1000.0, low_open=True)
        _float_range("validation.ref_scale", self.ref_scale, 0.0, 100.0)
        _float_range("validation.text_scale", self.text_scale, 0.0, 100.0)
        _float_range("validation.fps", self.fps, 0.0, 1000.0, low_open=True)
        if not isinstance(self.formats, list) or not all(f in VIDEO_FORMATS for f in self.formats):
            raise ConfigError(f"validation.formats must be a list drawn from {list(VIDEO_FORMATS)}, got {self.formats!r}")
        _int_range("validation.loss_samples", self.loss_samples, 0, 10**6)
        if (not isinstance(self.loss_sigmas, list) or not self.loss_sigmas
                or not all(isinstance(s, (int, float)) and 0 < s <= 1 for s in self.loss_sigmas)):
            raise ConfigError("validation.loss_sigmas must be a non-empty list of noise levels in (0, 1]")
        _choice("validation.device", self.device, ("auto", "cpu"))
        for i, p in enumerate(self.prompts):
            p.check(f"validation.prompts[{i}]")


# ---- the whole file ------------------------------------------------------------------------------


@dataclass
class TrainConfig:
    """A parsed, validated trainer config. ``path`` is the file it came from (paths resolve from it)."""

    model: ModelSection = field(default_factory=ModelSection)
    references: ReferencesSection = field(default_factory=ReferencesSection)
    data: DataSection = field(default_factory=DataSection)
    augment: AugmentSection = field(default_factory=AugmentSection)
    train: TrainSection = field(default_factory=TrainSection)
    timesteps: TimestepsSection = field(default_factory=TimestepsSection)
    trainable: TrainableSection = field(default_factory=TrainableSection)
    lora: LoraSection = field(default_factory=LoraSection)
    stages: list = field(default_factory=list)
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)
    logging: LoggingSection = field(default_factory=LoggingSection)
    validation: ValidationSection = field(default_factory=ValidationSection)
    path: str = ""

    # ---- derived -------------------------------------------------------------------------------
    @property
    def total_steps(self) -> int:
        return sum(s.steps for s in self.stages)

    @property
    def base_dir(self) -> Path:
        return Path(self.path).resolve().parent if self.path else Path.cwd()

    def resolve(self, value: str) -> Path:
        """A config path, relative to the config file's folder."""
        p = Path(os.path.expanduser(value))
        return p if p.is_absolute() else self.base_dir / p

    @property
    def output_dir(self) -> Path:
        return self.resolve(self.train.output_dir)

    @property
    def cache_dir(self) -> Path:
        return self.resolve(self.data.cache_dir)

    @property
    def uses_mfi(self) -> bool:
        return bool(self.trainable.mfi or self.model.vision_encoder)

    def check(self) -> None:
        for name in ("model", "references", "data", "augment", "train", "timesteps", "trainable", "lora",
                     "checkpoint", "logging", "validation"):
            getattr(self, name).check()
        if not self.stages:
            raise ConfigError("the config has no [[stages]]: add at least one curriculum stage with steps and views")
        names = set()
        for i, s in enumerate(self.stages):
            s.check(f"stages[{i}] ({s.name!r})")
            if s.name in names:
                raise ConfigError(f"two stages are named {s.name!r}: give every stage its own name")
            names.add(s.name)
        if self.trainable.mfi and not self.model.vision_encoder:
            raise ConfigError("trainable.mfi is true but model.vision_encoder is empty: MFI needs the CLIP / SigLIP "
                              "vision folder whose features it projects")
        if self.model.vision_encoder and not self.trainable.mfi and not self.model.init_adapter:
            raise ConfigError("model.vision_encoder is set but trainable.mfi is false and there is no init_adapter "
                              "with an MFI projector: set trainable.mfi = true, or remove model.vision_encoder")
        if (self.references.empty_slot_mode == "proxy" and not self.trainable.proxy and not self.model.init_adapter):
            raise ConfigError("references.empty_slot_mode is 'proxy' but trainable.proxy is false and there is no "
                              "init_adapter with proxy tokens: the empty slots would hold untrained random vectors. "
                              "Set trainable.proxy = true or use empty_slot_mode 'gray' / 'drop'")
        if self.trainable.proxy and self.references.empty_slot_mode != "proxy":
            raise ConfigError(f"trainable.proxy is true but references.empty_slot_mode is "
                              f"{self.references.empty_slot_mode!r}: proxy tokens are only used in 'proxy' mode; "
                              "set trainable.proxy = false or empty_slot_mode = 'proxy'")

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("path", None)
        return d

    def fingerprint(self) -> str:
        """Hash of everything that changes what a training step computes (not run length, logging)."""
        d = self.to_dict()
        for k in ("checkpoint", "logging", "validation"):
            d.pop(k, None)
        d["train"].pop("output_dir", None)
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


_SECTIONS: dict[str, type] = {
    "model": ModelSection, "references": ReferencesSection, "data": DataSection, "augment": AugmentSection,
    "train": TrainSection, "timesteps": TimestepsSection, "trainable": TrainableSection, "lora": LoraSection,
    "checkpoint": CheckpointSection, "logging": LoggingSection, "validation": ValidationSection,
}


def _build(cls: type, table: Any, where: str) -> Any:
    """A section dataclass from a TOML table, refusing unknown keys and wrong types."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"[{where}] must be a table (key = value lines), got {type(table).__name__}")
    hints = get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise ConfigError(f"[{where}] has unknown key(s) {', '.join(unknown)}; the known keys are "
                          f"{', '.join(sorted(known))}")
    kwargs = {}
    for key, value in table.items():
        kwargs[key] = _convert(hints[key], value, f"{where}.{key}")
    return cls(**kwargs)


def _convert(hint: Any, value: Any, where: str) -> Any:
    if hint is StageFilter:
        return _build(StageFilter, value, where)
    origin = get_origin(hint)
    args = get_args(hint)
    if origin is not None and type(None) in args:  # Optional[X]
        inner = [a for a in args if a is not type(None)][0]
        return _convert(inner, value, where)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string (in quotes), got {value!r}")
        return value
    if hint is list or origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list ([...]), got {value!r}")
        return value
    return value


def _choice(where: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ConfigError(f"{where} is {value!r}; use one of {', '.join(map(repr, choices))}")


def _int_range(where: str, value: Any, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{where} must be an integer in [{lo}, {hi}], got {value!r}")


def _float_range(where: str, value: Any, lo: float, hi: float, low_open: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > lo if low_open else value >= lo) and value <= hi
    if not ok:
        bracket = "(" if low_open else "["
        raise ConfigError(f"{where} must be a number in {bracket}{lo}, {hi}], got {value!r}")


def _unit_range(where: str, value: Any, positive: bool) -> None:
    if (not isinstance(value, list) or len(value) != 2 or not all(isinstance(v, (int, float)) for v in value)
            or not (0 < value[0] <= value[1] <= 1)):
        raise ConfigError(f"{where} must be [low, high] with 0 < low <= high <= 1, got {value!r}")


def parse_config(data: Mapping[str, Any], path: str | os.PathLike = "") -> TrainConfig:
    """A :class:`TrainConfig` from an already-parsed TOML mapping (validated)."""
    unknown = sorted(set(data) - set(_SECTIONS) - {"stages"})
    if unknown:
        raise ConfigError(f"unknown section(s) {', '.join(unknown)}; the sections are "
                          f"{', '.join(sorted([*_SECTIONS, 'stages']))}")
    kwargs: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        if name in data:
            kwargs[name] = _build(cls, data[name], name)
    if "validation" in kwargs or "validation" in data:
        raw = data.get("validation", {})
        val = kwargs.get("validation", ValidationSection())
        prompts = []
        for i, p in enumerate(raw.get("prompts", []) if isinstance(raw, Mapping) else []):
            if not isinstance(p, Mapping):
                raise ConfigError(f"validation.prompts[{i}] must be a table")
            p = dict(p)
            subjects = [_build(ValidationSubject, s, f"validation.prompts[{i}].subjects[{j}]")
                        for j, s in enumerate(p.pop("subjects", []))]
            prompt = _build(ValidationPrompt, p, f"validation.prompts[{i}]")
            prompt.subjects = subjects
            prompts.append(prompt)
        val.prompts = prompts
        kwargs["validation"] = val
    stages = data.get("stages", [])
    if not isinstance(stages, list):
        raise ConfigError("'stages' must be an array of tables: write each stage as [[stages]]")
    kwargs["stages"] = [_build(StageSection, s, f"stages[{i}]") for i, s in enumerate(stages)]
    cfg = TrainConfig(**kwargs, path=str(path))
    cfg.check()
    return cfg


def parse_override(text: str) -> tuple[list[str], Any]:
    """``section.key=VALUE`` (VALUE in TOML syntax; bare words are strings) -> (key path, value)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r} must look like section.key=value, e.g. --set train.seed=3")
    key, raw = text.split("=", 1)
    parts = [p.strip() for p in key.strip().split(".")]
    if len(parts) < 2 or not all(parts):
        raise ConfigError(f"--set {text!r}: the key must name a section and a key, e.g. train.seed")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except Exception:
        value = raw
    return parts, value


def load_config(path: str | os.PathLike, overrides: list[str] | None = None) -> TrainConfig:
    """Read, override (``section.key=value``) and validate a TOML config file."""
    p = Path(path)
    if tomllib is None:  # pragma: no cover
        raise ConfigError("reading TOML on Python 3.10 needs the 'tomli' package: pip install tomli")
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} not found")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p} is not valid TOML: {e}") from None
    for text in overrides or []:
        keys, value = parse_override(text)
        node: Any = data
        for k in keys[:-1]:
            if k.isdigit() and isinstance(node, list):
                idx = int(k)
                if idx >= len(node):
                    raise ConfigError(f"--set {text!r}: there is no entry {idx} (the list has {len(node)})")
                node = node[idx]
            else:
                node = node.setdefault(k, {})
            if not isinstance(node, (dict, list)):
                raise ConfigError(f"--set {text!r}: {k!r} is not a section")
        node[keys[-1]] = value
    return parse_config(data, p)


__all__ = [
    "ConfigError", "TrainConfig", "ModelSection", "ReferencesSection", "DataSection", "AugmentSection",
    "TrainSection", "TimestepsSection", "TrainableSection", "LoraSection", "StageSection", "StageFilter",
    "CheckpointSection", "LoggingSection", "ValidationSection", "ValidationPrompt", "ValidationSubject",
    "load_config", "parse_config", "DEFAULT_LORA_TARGETS", "VIEW_POLICIES",
]

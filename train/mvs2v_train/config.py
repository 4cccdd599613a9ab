"""The trainer's TOML configuration: one pydantic model per table, every key checked.

A config file has the tables ``[model]``, ``[references]``, ``[data]``, ``[augment]``, ``[train]``,
``[timesteps]``, ``[trainable]``, ``[lora]``, ``[checkpoint]``, ``[logging]``, ``[validation]`` and
one ``[[stages]]`` table per curriculum stage (see ``train/configs/`` for commented examples).
Relative paths are resolved from the config file's folder.

Validation is pydantic v2 in strict mode (``"3"`` is not an integer, ``1`` is not ``true``), so a
typo never silently falls back to a default. Every problem becomes one line of a
:class:`ConfigError` that names the key as a dotted path (``stages[2].views``), the bad value and
what is allowed. ``[references]`` is the trainer's spelling of
:class:`~mvs2v_core.references.settings.ReferenceSettings`: its defaults, option enums and checks
all come from that contract, and :meth:`ReferencesSection.settings` is how the trainer reads it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Mapping, get_args

from pydantic import (BaseModel, ConfigDict, Field, PositiveInt, PrivateAttr, ValidationError, ValidationInfo,
                      field_validator, model_validator)

from mvs2v_core.config_files import (ConfigError, describe_validation_error, read_toml, toml_module,
                                     validation_problems)
from mvs2v_core.errors import MVS2VError
from mvs2v_core.references.layout import parse_view_label
from mvs2v_core.references.settings import (DEFAULT_EMPTY_SLOT_MODE, DEFAULT_GAP, DEFAULT_IDENTITY_GAP,
                                            DEFAULT_PLACEMENT, DEFAULT_REF_ATTENTION, DEFAULT_REF_GAP,
                                            DEFAULT_REF_TIMESTEP, DEFAULT_SCHEME, DEFAULT_SLOT_ANCHOR,
                                            DEFAULT_SLOTS_PER_SUBJECT, EmptySlotMode, Placement, PositionScheme,
                                            RefAttention, ReferenceSettings, RefTimestep, SchemeName, SlotAnchor,
                                            parse_option)
from mvs2v_core.sampling.solvers import SOLVERS


ViewPolicy = Literal["single", "single_or_full", "dropout", "full"]
TimestepSampling = Literal["shifted", "logit_normal", "uniform"]
LossWeighting = Literal["none", "cosmap", "sigma_sqrt"]
LrSchedule = Literal["constant", "cosine", "linear"]
MixedPrecision = Literal["no", "bf16", "fp16"]
Dtype = Literal["fp32", "bf16", "fp16"]
SolverName = Literal[tuple(SOLVERS)]  # type: ignore[valid-type]  # the sampler's registry is the source
SingleView = Literal["frontal", "random"]
VideoFormat = Literal["mp4", "webp"]
FrameStart = Literal["first", "center"]
VIEW_POLICIES: tuple[str, ...] = get_args(ViewPolicy)

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Count = Annotated[int, Field(ge=1, le=10**9)]
Seed = Annotated[int, Field(ge=0, le=2**63 - 1)]
Scale = Annotated[float, Field(gt=0.0, le=1e6)]

# The Wan DiT's nn.Linear modules a LoRA can target, by suffix.
DEFAULT_LORA_TARGETS = (
    "self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o",
    "cross_attn.q", "cross_attn.k", "cross_attn.v", "cross_attn.o",
    "ffn.0", "ffn.2",
)


class _Table(BaseModel):
    """A TOML table: unknown keys, wrong types and NaN / inf are refused; values are frozen once read."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


# ---- tables -------------------------------------------------------------------------------------


class ModelSection(_Table):
    """``[model]``: the base DiT and the frozen encoders (local safetensors files/folders only).

    Attributes:
        dit: base Wan / Phantom-Wan DiT (.safetensors file, sharded index or diffusers folder).
        config: named config to check the DiT against (``wan2.1-t2v-1.3b``...); "" infers it.
        dtype: storage dtype of the frozen base weights (trainable weights are always float32).
        vae: Wan VAE (diffusers folder or single .safetensors), used by ``cache`` and validation.
        text_encoder: umT5 folder, used by ``cache`` and validation.
        vision_encoder: the vision folder (CLIP / SigLIP, or DINOv2 for the alignment loss) whose features MFI
            and the ``[align]`` loss use ("" when neither is on).
        init_adapter: an exported mvs2v adapter to start from (proxy tokens, MFI, LoRA), or "".
    """

    dit: str = ""
    config: str = ""
    dtype: Dtype = "bf16"
    vae: str = ""
    text_encoder: str = ""
    vision_encoder: str = ""
    init_adapter: str = ""


# How each flat [references] key is checked by, and read back from, the one contract.
_THROUGH_CONTRACT: dict[str, Callable[[Any], Any]] = {
    "slots_per_subject": lambda v: ReferenceSettings(slots_per_subject=v).slots_per_subject,
    "scheme": lambda v: PositionScheme(name=v).name,
    "gap": lambda v: PositionScheme(gap=v).gap,
    "ref_gap": lambda v: PositionScheme(ref_gap=v).ref_gap,
    "identity_gap": lambda v: PositionScheme(identity_gap=v).identity_gap,
    "placement": lambda v: PositionScheme(placement=v).placement,
    "empty_slot_mode": lambda v: ReferenceSettings(empty_slot_mode=v).empty_slot_mode,
    "ref_timestep": lambda v: ReferenceSettings(ref_timestep=v).ref_timestep,
    "ref_attention": lambda v: parse_option(RefAttention, v, "reference attention mode"),
    "slot_anchor": lambda v: parse_option(SlotAnchor, v, "slot anchor"),
}


class ReferencesSection(_Table):
    """``[references]``: the flat TOML spelling of :class:`ReferenceSettings`, exactly as at inference.

    Defaults, allowed values and checks are the contract's (``mvs2v_core.references.settings``);
    the empty-slot mode defaults to ``gray`` there, so a config that trains proxy tokens says
    ``empty_slot_mode = "proxy"``.
    """

    slots_per_subject: int = DEFAULT_SLOTS_PER_SUBJECT
    scheme: SchemeName = DEFAULT_SCHEME
    gap: float = DEFAULT_GAP
    ref_gap: float = DEFAULT_REF_GAP
    identity_gap: float = DEFAULT_IDENTITY_GAP
    placement: Placement = DEFAULT_PLACEMENT
    empty_slot_mode: EmptySlotMode = DEFAULT_EMPTY_SLOT_MODE
    ref_timestep: RefTimestep = DEFAULT_REF_TIMESTEP
    ref_attention: RefAttention = DEFAULT_REF_ATTENTION
    slot_anchor: SlotAnchor = DEFAULT_SLOT_ANCHOR

    @field_validator("scheme", "placement", "empty_slot_mode", "ref_timestep", "ref_attention", "slot_anchor",
                     mode="before")
    @classmethod
    def _parse_option(cls, value: Any, info: ValidationInfo) -> Any:
        """Options are parsed by the contract (its messages list the allowed values and their meaning)."""
        return _contract_value(info.field_name, value)

    @field_validator("slots_per_subject", "gap", "ref_gap", "identity_gap")
    @classmethod
    def _check_number(cls, value: Any, info: ValidationInfo) -> Any:
        return _contract_value(info.field_name, value)

    @model_validator(mode="after")
    def _contract_accepts(self) -> "ReferencesSection":
        try:
            self.settings()
        except MVS2VError as e:
            raise ValueError(str(e)) from None
        return self

    def position_scheme(self) -> PositionScheme:
        return PositionScheme(self.scheme, self.gap, self.ref_gap, self.identity_gap, self.placement)

    def settings(self) -> ReferenceSettings:
        """The table as the one reference-settings type that inference and the adapter use."""
        return ReferenceSettings(self.slots_per_subject, self.position_scheme(), self.empty_slot_mode, self.ref_timestep,
                                 self.ref_attention, self.slot_anchor)


def _contract_value(key: str, value: Any) -> Any:
    try:
        return _THROUGH_CONTRACT[key](value)
    except MVS2VError as e:
        raise ValueError(str(e)) from None


class DataSection(_Table):
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
    resolutions: list[Annotated[list[PositiveInt], Field(min_length=2, max_length=2)]] = Field(
        default_factory=lambda: [[832, 480]], min_length=1)
    frames: int = Field(81, ge=1, le=100000)
    min_frames: int = Field(1, ge=1)
    frame_stride: int = Field(1, ge=1, le=1000)
    frame_start: FrameStart = "first"
    max_text_tokens: int = Field(512, ge=1, le=100000)
    cache_shard_items: int = Field(64, ge=1, le=100000)

    @field_validator("frames")
    @classmethod
    def _four_n_plus_one(cls, value: int) -> int:
        if (value - 1) % 4:
            lo = (value - 1) // 4 * 4 + 1
            raise ValueError(f"{value} is not of the form 4n+1 the Wan VAE needs: use {lo} or {lo + 4}")
        return value

    @field_validator("min_frames")
    @classmethod
    def _at_most_frames(cls, value: int, info: ValidationInfo) -> int:
        frames = info.data.get("frames")
        if frames is not None and value > frames:
            raise ValueError(f"{value} is more than data.frames ({frames}): use at most {frames}")
        return value


class AugmentSection(_Table):
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

    variants: int = Field(4, ge=1, le=64)
    crop: list[float] = Field(default_factory=lambda: [0.8, 1.0])
    scale: list[float] = Field(default_factory=lambda: [0.75, 1.0])
    brightness: Probability = 0.1
    contrast: Probability = 0.1
    saturation: Probability = 0.1
    hue: float = Field(0.02, ge=0.0, le=0.5)
    clean_prob: Probability = 0.25
    shuffle_subjects: Probability = 0.5
    shuffle_views: Probability = 0.5
    subject_drop: Probability = 0.0
    reference_drop: Probability = 0.05
    caption_drop: Probability = 0.1

    @field_validator("crop", "scale")
    @classmethod
    def _unit_interval(cls, value: list[float]) -> list[float]:
        if len(value) != 2 or not 0 < value[0] <= value[1] <= 1:
            raise ValueError(f"must be [low, high] with 0 < low <= high <= 1, got {value!r}")
        return value

    def pixel_params(self) -> dict:
        """What changes the cached variants (part of their cache key)."""
        return {k: getattr(self, k) for k in ("variants", "crop", "scale", "brightness", "contrast", "saturation", "hue")}


class TrainSection(_Table):
    """``[train]``: run folder, batch, optimizer, precision."""

    output_dir: str = "runs/mvs2v"
    seed: Seed = 0
    batch_size: int = Field(1, ge=1, le=4096)
    gradient_accumulation_steps: int = Field(1, ge=1, le=4096)
    mixed_precision: MixedPrecision = "bf16"
    gradient_checkpointing: bool = True
    weight_decay: float = Field(0.0, ge=0.0, le=10.0)
    betas: list[Annotated[float, Field(ge=0.0, lt=1.0)]] = Field(default_factory=lambda: [0.9, 0.999],
                                                               min_length=2, max_length=2)
    eps: float = Field(1e-8, gt=0.0, le=1.0)
    max_grad_norm: float = Field(1.0, ge=0.0, le=1e9)


class TimestepsSection(_Table):
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

    sampling: TimestepSampling = "shifted"
    shift: float = Field(5.0, gt=0.0, le=1000.0)
    logit_mean: float = Field(0.0, ge=-100.0, le=100.0)
    logit_std: float = Field(1.0, gt=0.0, le=100.0)
    min_timestep: float = Field(0.0, ge=0.0, le=1000.0)
    max_timestep: float = Field(1000.0, ge=0.0, le=1000.0)
    weighting: LossWeighting = "none"

    @field_validator("max_timestep")
    @classmethod
    def _above_min(cls, value: float, info: ValidationInfo) -> float:
        low = info.data.get("min_timestep")
        if low is not None and value - low < 1.0:
            raise ValueError(f"{value} must be at least 1 above timesteps.min_timestep ({low})")
        return value


class TrainableSection(_Table):
    """``[trainable]``: which parts learn. The rest of the DiT stays frozen (unless ``full``).

    ``proxy`` left out follows ``references.empty_slot_mode`` (true exactly in ``proxy`` mode);
    :class:`TrainConfig` fills it in, so in a loaded config it is always a bool.
    """

    proxy: bool | None = None
    mfi: bool = False
    lora: bool = True
    full: bool = False
    proxy_lr_scale: Scale = 1.0
    mfi_lr_scale: Scale = 1.0
    mfi_vit_dim: int = Field(0, ge=0, le=1 << 20)

    @field_validator("full")
    @classmethod
    def _not_with_lora(cls, value: bool, info: ValidationInfo) -> bool:
        if value and info.data.get("lora"):
            raise ValueError("true together with trainable.lora: a full fine-tune already trains every weight; "
                             "set lora = false (or full = false for a LoRA)")
        return value


class AlignSection(_Table):
    """``[align]``: a training-only loss that aligns the reference tokens' hidden states with a frozen
    vision encoder's patch features (REPA's representation alignment, applied to the reference tokens as
    RefAlign does).

    The hidden states of every filled reference slot after DiT block ``block`` go through a small MLP
    (trained, never exported) and are scored by ``1 - cos`` against the ``model.vision_encoder``
    features of that slot's image, resized to the slot's token grid. The term added to each sample's loss
    is ``weight`` times the mean over its filled slots' tokens. Empty slots, samples without references
    and the reference-drop pass have no target.

    Attributes:
        weight: the loss weight; 0 turns the loss off (REPA used 0.5).
        block: the DiT block whose output is aligned (0-based); left out: a third of the depth, as REPA
            (block 8 of 28).
        projector_dim: the MLP's hidden width (REPA: 2048).
    """

    weight: float = Field(0.0, ge=0.0, le=100.0)
    block: int | None = Field(None, ge=0, le=1024)
    projector_dim: int = Field(2048, ge=1, le=1 << 16)

    @property
    def enabled(self) -> bool:
        return self.weight > 0


class LoraSection(_Table):
    """``[lora]``: rank, alpha and the target nn.Linear modules (by name suffix, e.g. ``self_attn.q``)."""

    rank: int = Field(32, ge=1, le=4096)
    alpha: Scale = 32.0
    targets: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=lambda: list(DEFAULT_LORA_TARGETS),
                                                              min_length=1)
    dropout: float = Field(0.0, ge=0.0, le=0.99)


class StageFilter(_Table):
    """``[stages.filter]``: which manifest samples a stage trains on.

    Attributes:
        splits: manifest splits to use.
        min_views: the sample's subject with the most views must have at least this many (2+ keeps
            multi-view samples only; rows without subjects then drop out).
        min_quality: the row's ``quality`` must be at least this (rows without one drop out).
        tags: the row must have at least one of these tags (empty = any row).
    """

    splits: list[str] = Field(default_factory=lambda: ["train"], min_length=1)
    min_views: int = Field(1, ge=1, le=64)
    min_quality: float | None = None
    tags: list[str] = Field(default_factory=list)


class StageSection(_Table):
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

    name: str = Field("stage", min_length=1)
    steps: Count = 1000
    learning_rate: float = Field(1e-4, gt=0.0, le=1.0)
    warmup_steps: int = Field(0, ge=0)
    lr_schedule: LrSchedule = "constant"
    min_lr_ratio: Probability = 0.0
    views: ViewPolicy = "dropout"
    full_view_prob: Probability = 0.5
    dropout_prob: Probability = 1.0
    single_view: SingleView = "frontal"
    keep_frontal: bool = True
    filter: StageFilter = Field(default_factory=StageFilter)

    @field_validator("warmup_steps")
    @classmethod
    def _within_stage(cls, value: int, info: ValidationInfo) -> int:
        steps = info.data.get("steps")
        if steps is not None and value > steps:
            raise ValueError(f"{value} is longer than the stage ({steps} steps): use at most {steps}")
        return value


class CheckpointSection(_Table):
    """``[checkpoint]``: full-state checkpoints (atomic) every N steps; the last ``keep_last`` are kept."""

    every_n_steps: Count = 500
    keep_last: int = Field(3, ge=1, le=10**6)


class LoggingSection(_Table):
    """``[logging]``: console / JSONL / tensorboard logging every N steps."""

    every_n_steps: Count = 10
    tensorboard: bool = True
    progress_bar: bool = True
    sync_check_every_n_steps: int = Field(0, ge=0, le=10**9)


class ValidationSubject(_Table):
    """One subject of a validation prompt: view images with optional labels (``front``, ``90``...)."""

    name: str = "subject"
    images: list[str] = Field(default_factory=list, min_length=1, validate_default=True)
    labels: list[str | int | float] = Field(default_factory=list)
    frontal: int | None = None

    @field_validator("labels")
    @classmethod
    def _one_label_per_image(cls, value: list, info: ValidationInfo) -> list:
        images = info.data.get("images")
        if value and images is not None and len(value) != len(images):
            raise ValueError(f"has {len(value)} entries for {len(images)} images: give one label per image (or none)")
        for label in value:
            try:
                parse_view_label(label if label != "" else None)
            except MVS2VError as e:
                raise ValueError(str(e)) from None
        return value


class ValidationPrompt(_Table):
    """One ``[[validation.prompts]]`` entry."""

    prompt: str = ""
    negative_prompt: str = ""
    seed: Seed = 0
    subjects: list[ValidationSubject] = Field(default_factory=list)


class ValidationSection(_Table):
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

    every_n_steps: int = Field(0, ge=0, le=10**9)
    width: int = Field(832, ge=1, le=100000)
    height: int = Field(480, ge=1, le=100000)
    frames: int = Field(81, ge=1, le=100000)
    steps: int = Field(30, ge=1, le=1000)
    shift: float = Field(5.0, gt=0.0, le=1000.0)
    solver: SolverName = "unipc"
    ref_scale: float = Field(5.0, ge=0.0, le=100.0)
    text_scale: float = Field(7.5, ge=0.0, le=100.0)
    formats: list[VideoFormat] = Field(default_factory=lambda: ["mp4"])
    fps: float = Field(16.0, gt=0.0, le=1000.0)
    loss_split: str = "val"
    loss_samples: int = Field(8, ge=0, le=10**6)
    loss_sigmas: list[Annotated[float, Field(gt=0.0, le=1.0)]] = Field(
        default_factory=lambda: [0.1, 0.3, 0.5, 0.7, 0.9], min_length=1)
    device: Literal["auto", "cpu"] = "auto"
    prompts: list[ValidationPrompt] = Field(default_factory=list)


# ---- the whole file ------------------------------------------------------------------------------


class TrainConfig(_Table):
    """A parsed, validated trainer config. ``path`` is the file it came from (paths resolve from it)."""

    model: ModelSection = Field(default_factory=ModelSection)
    references: ReferencesSection = Field(default_factory=ReferencesSection)
    data: DataSection = Field(default_factory=DataSection)
    augment: AugmentSection = Field(default_factory=AugmentSection)
    train: TrainSection = Field(default_factory=TrainSection)
    timesteps: TimestepsSection = Field(default_factory=TimestepsSection)
    trainable: TrainableSection = Field(default_factory=TrainableSection, validate_default=True)
    lora: LoraSection = Field(default_factory=LoraSection)
    align: AlignSection = Field(default_factory=AlignSection)
    stages: list[StageSection] = Field(default_factory=list)
    checkpoint: CheckpointSection = Field(default_factory=CheckpointSection)
    logging: LoggingSection = Field(default_factory=LoggingSection)
    validation: ValidationSection = Field(default_factory=ValidationSection)
    _path: str = PrivateAttr("")

    @field_validator("trainable")
    @classmethod
    def _proxy_follows_empty_slot_mode(cls, trainable: TrainableSection, info: ValidationInfo) -> TrainableSection:
        """``trainable.proxy`` left out: train proxy tokens exactly when the empty slots use them."""
        if trainable.proxy is not None:
            return trainable
        refs = info.data.get("references")
        mode = refs.empty_slot_mode if refs is not None else DEFAULT_EMPTY_SLOT_MODE
        return trainable.model_copy(update={"proxy": mode == EmptySlotMode.PROXY})

    @model_validator(mode="after")
    def _consistent(self) -> "TrainConfig":
        """Rules that span tables; every broken one is reported (one line each)."""
        problems = [*_required_problems(self), *_trainable_problems(self), *_anchor_problems(self),
                    *_align_problems(self)]
        if problems:
            raise ValueError("\n".join(problems))
        return self

    # ---- derived -------------------------------------------------------------------------------
    @property
    def path(self) -> str:
        return self._path

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

    def to_dict(self) -> dict:
        """Every value as plain JSON types (enums as their strings)."""
        return self.model_dump(mode="json")

    def fingerprint(self) -> str:
        """Hash of everything that changes what a training step computes (not run length, logging)."""
        d = self.to_dict()
        for k in ("checkpoint", "logging", "validation"):
            d.pop(k, None)
        d["train"].pop("output_dir", None)
        # Defaults of options added later are left out, so runs started before they existed resume.
        if d["references"].get("ref_attention") == RefAttention.FULL.value:
            del d["references"]["ref_attention"]
        if d["references"].get("slot_anchor") == SlotAnchor.CANONICAL.value:
            del d["references"]["slot_anchor"]
        if not self.align.enabled:
            del d["align"]
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _required_problems(cfg: TrainConfig) -> list[str]:
    problems = []
    if not cfg.model.dit:
        problems.append("model.dit is empty: set it to the base Wan DiT .safetensors file")
    if not cfg.data.manifest:
        problems.append("data.manifest is empty: set it to your JSONL manifest")
    if not cfg.stages:
        problems.append("the config has no [[stages]]: add at least one curriculum stage with steps and views")
    names = [s.name for s in cfg.stages]
    problems += [f"two stages are named {n!r}: give every stage its own name"
                 for n in sorted({n for n in names if names.count(n) > 1})]
    return problems


def _anchor_problems(cfg: TrainConfig) -> list[str]:
    """Slots anchored on the frontal view need that view in every sample: a stage that may drop it
    would anchor the slots on another view and teach the model the wrong angles."""
    if cfg.references.slot_anchor != SlotAnchor.FRONTAL:
        return []
    problems = []
    for i, st in enumerate(cfg.stages):
        if st.views == "dropout" and not st.keep_frontal:
            problems.append(f"stages[{i}] ({st.name}) may drop the frontal view but references.slot_anchor is "
                            "'frontal': set keep_frontal = true")
        elif st.views in ("single", "single_or_full") and st.single_view != "frontal":
            problems.append(f"stages[{i}] ({st.name}) keeps a random single view but references.slot_anchor is "
                            "'frontal': set single_view = \"frontal\"")
    return problems


def _align_problems(cfg: TrainConfig) -> list[str]:
    """The alignment loss needs the encoder whose features it aligns to, and reference tokens that run
    through the blocks with the video (cached references run apart, through ``forward_reference``)."""
    if not cfg.align.enabled:
        return []
    problems = []
    if not cfg.model.vision_encoder:
        problems.append("align.weight > 0 but model.vision_encoder is empty: set it to the vision folder whose "
                        "patch features the reference tokens are aligned to (e.g. DINOv2, CLIP or SigLIP)")
    if cfg.references.ref_attention == RefAttention.CACHED:
        problems.append("align.weight > 0 with references.ref_attention = 'cached': the alignment reads the "
                        "reference tokens inside the video's blocks; use ref_attention = 'full' or align.weight = 0")
    return problems


def _trainable_problems(cfg: TrainConfig) -> list[str]:
    t, m, mode = cfg.trainable, cfg.model, cfg.references.empty_slot_mode
    problems = []
    if not (t.proxy or t.mfi or t.lora or t.full):
        problems.append("[trainable] turns every part off: enable at least one of proxy, mfi, lora, full")
    if t.full and m.dtype != "fp32":
        problems.append("trainable.full needs model.dtype = \"fp32\" (float32 master weights); bf16 compute comes "
                        "from train.mixed_precision")
    if t.mfi and not m.vision_encoder:
        problems.append("trainable.mfi is true but model.vision_encoder is empty: MFI needs the CLIP / SigLIP "
                        "vision folder whose features it projects")
    if m.vision_encoder and not t.mfi and not m.init_adapter and not cfg.align.enabled:
        problems.append("model.vision_encoder is set but neither MFI (trainable.mfi, or an init_adapter with an "
                        "MFI projector) nor the alignment loss (align.weight > 0) uses it: set one of them, or "
                        "remove model.vision_encoder")
    if mode == EmptySlotMode.PROXY and not t.proxy and not m.init_adapter:
        problems.append("references.empty_slot_mode is 'proxy' but trainable.proxy is false and there is no "
                        "init_adapter with proxy tokens: the empty slots would hold untrained random vectors. "
                        "Set trainable.proxy = true or use empty_slot_mode 'gray' / 'drop'")
    if t.proxy and mode != EmptySlotMode.PROXY:
        problems.append(f"trainable.proxy is true but references.empty_slot_mode is {mode.value!r}: proxy tokens "
                        "are only used in 'proxy' mode; set trainable.proxy = false or empty_slot_mode = 'proxy'")
    return problems


def describe_error(error: Mapping[str, Any]) -> list[str]:
    """One pydantic error (an item of ``ValidationError.errors()``) as config problem lines."""
    return describe_validation_error(error, TrainConfig)


def parse_config(data: Mapping[str, Any], path: str | os.PathLike = "") -> TrainConfig:
    """A :class:`TrainConfig` from an already-parsed TOML mapping (validated).

    Raises:
        ConfigError: every problem found, one line each.
    """
    try:
        cfg = TrainConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(*validation_problems(e, TrainConfig), source=str(path)) from None
    cfg._path = str(path)
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
        value = toml_module().loads(f"v = {raw}")["v"]
    except Exception:
        value = raw
    return parts, value


def load_config(path: str | os.PathLike, overrides: list[str] | None = None) -> TrainConfig:
    """Read, override (``section.key=value``) and validate a TOML config file."""
    p = Path(path)
    data = read_toml(p)
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
    "TrainSection", "TimestepsSection", "TrainableSection", "LoraSection", "AlignSection", "StageSection", "StageFilter",
    "CheckpointSection", "LoggingSection", "ValidationSection", "ValidationPrompt", "ValidationSubject",
    "load_config", "parse_config", "parse_override", "describe_error", "DEFAULT_LORA_TARGETS", "VIEW_POLICIES",
]

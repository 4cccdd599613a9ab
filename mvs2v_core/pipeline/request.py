"""What one generation asks for and gives back, and the checks made before anything loads:
:class:`SubjectInput`, :class:`GenerationSettings`, :class:`EncodedConditioning`, :class:`ModelFiles`,
:class:`GenerationResult`, the settings and size checks, the reference layout of a request
(:func:`layout_for`), context windows and guidance passes. The pipeline (:mod:`.generate`) and batched
generation (:mod:`.batch`) both build on it."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from ..adapter import Adapter, load_adapter
from ..errors import MVS2VError
from ..references.layout import ReferenceLayout
from ..references.settings import ReferenceSettings
from ..sampling.guidance import phantom_weights
from ..sampling.windows import FUSE_METHODS, ContextWindows


@dataclass
class SubjectInput:
    """One subject: its view images (paths or PIL images), optional view labels, the frontal view."""

    name: str
    images: Sequence[Any]
    labels: Sequence[str | float | None] | None = None
    frontal: int | None = None


@dataclass
class GenerationSettings:
    """Everything about one generation except the models.

    ``ref_scale`` / ``text_scale`` are Phantom's three-pass scales (defaults 5.0 / 7.5, as Phantom);
    with no subjects, ``text_scale`` is a plain CFG scale.

    Context windows (long videos, :mod:`~mvs2v_core.sampling.windows`): ``context_frames`` is the
    window length in video frames (``4n + 1`` for the Wan VAE, like ``frames``; None: no windows),
    ``context_overlap`` the overlap in video frames, turned into ``context_overlap // 4`` latent
    frames as ComfyUI's Wan context-window node does (None: a third of the window's latent frames,
    rounded down), ``context_fuse`` the blending (``pyramid`` or ``overlap-linear``).
    """

    prompt: str
    negative_prompt: str = ""
    width: int = 832
    height: int = 480
    frames: int = 81
    steps: int = 50
    seed: int = 0
    shift: float = 5.0
    solver: str = "unipc"
    ref_scale: float = 5.0
    text_scale: float = 7.5
    references: ReferenceSettings | None = None  # None: the adapter's settings, else the defaults
    max_batch_passes: int | None = None
    check_memory: bool = True  # refuse up front a size whose memory estimate is clearly above what is free
    context_frames: int | None = None
    context_overlap: int | None = None
    context_fuse: str = FUSE_METHODS[0]

    def __post_init__(self) -> None:
        check_generation_settings(self)


@dataclass
class EncodedConditioning:
    """The encoded inputs of one generation (batch 1; contexts zero-padded to at least ``text_len``).

    ``context`` / ``negative``: prompt / negative prompt ``[1, L, text_dim]`` (with MFI, ``context`` has
    the frontal views' tokens appended); ``ref_latents``: ``[1, C, S, h, w]`` or None without subjects;
    ``neg_ref`` / ``neg_noref``: the negative context of Phantom's passes with / without references.
    """

    context: torch.Tensor
    negative: torch.Tensor
    ref_latents: torch.Tensor | None
    neg_ref: torch.Tensor | None
    neg_noref: torch.Tensor | None


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _require_int(name: str, value: Any, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise MVS2VError(f"{_flag(name)} must be an integer {bound}, got {value!r}")


def _require_number(name: str, value: Any, low: float, inclusive: bool, hint: str) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < low or (value == low and not inclusive):
        bound = f">= {low:g}" if inclusive else f"> {low:g}"
        raise MVS2VError(f"{_flag(name)} must be a finite number {bound}, got {value!r}: {hint}")


def check_generation_settings(s: GenerationSettings) -> None:
    """Refuse values no model can use, before any model is loaded.

    Whether width / height / frames suit the VAE's factors needs the VAE (:func:`check_video_size`);
    whether the size fits in memory needs the DiT (:mod:`~mvs2v_core.pipeline.memory`).
    """
    from ..sampling.solvers import SOLVERS

    for name in ("prompt", "negative_prompt"):
        if not isinstance(getattr(s, name), str):
            raise MVS2VError(f"{_flag(name)} must be text, got {type(getattr(s, name)).__name__}")
    for name in ("width", "height", "frames", "steps"):
        _require_int(name, getattr(s, name), 1)
    _require_int("seed", s.seed, 0, 2**64 - 1)
    if s.max_batch_passes is not None:
        _require_int("max_batch_passes", s.max_batch_passes, 1)
    _require_number("shift", s.shift, 0.0, False, "Wan uses 5 for 480p, 3 for 720p")
    for name in ("ref_scale", "text_scale"):
        _require_number(name, getattr(s, name), 0.0, True, "1 turns guidance off; Phantom uses 5 and 7.5")
    if s.solver not in SOLVERS:
        raise MVS2VError(f"--solver {s.solver!r} is unknown: use one of {', '.join(sorted(SOLVERS))}")
    check_context_settings(s)


def check_context_settings(s: GenerationSettings) -> None:
    """The context-window options alone (their form for the VAE is checked by :func:`context_windows`)."""
    if s.context_frames is None:
        if s.context_overlap is not None:
            raise MVS2VError("--context-overlap was given without --context-frames: give the window length too "
                             "(e.g. --context-frames 81), or drop --context-overlap")
    else:
        _require_int("context_frames", s.context_frames, 1)
        if s.context_overlap is not None:
            _require_int("context_overlap", s.context_overlap, 0)
            if s.context_overlap >= s.context_frames:
                raise MVS2VError(f"--context-overlap {s.context_overlap} must be shorter than the window "
                                 f"(--context-frames {s.context_frames}): e.g. a third of it")
    if s.context_fuse not in FUSE_METHODS:
        raise MVS2VError(f"--context-fuse {s.context_fuse!r} is unknown: use one of {', '.join(FUSE_METHODS)}")


def context_windows(s: GenerationSettings, temporal_factor: int) -> ContextWindows | None:
    """The windows of ``s`` in latent frames for a VAE of ``temporal_factor``, or None without windows.

    ``context_frames`` must be of the VAE's form ``temporal_factor * n + 1`` (as ``frames``); it maps to
    ``n + 1`` latent frames, the overlap to ``context_overlap // temporal_factor`` (ComfyUI's rounding).
    """
    check_context_settings(s)
    if s.context_frames is None:
        return None
    tf = temporal_factor
    if (s.context_frames - 1) % tf:
        lo = max(1, (s.context_frames - 1) // tf * tf + 1)
        raise MVS2VError(f"--context-frames {s.context_frames} is not of the form {tf}n+1 that the VAE needs: "
                         f"use {lo} or {lo + tf}")
    length = 1 + (s.context_frames - 1) // tf
    overlap = length // 3 if s.context_overlap is None else s.context_overlap // tf
    return ContextWindows(length, overlap, s.context_fuse)


def guidance_passes(settings: GenerationSettings, has_references: bool) -> int:
    """Model passes per step: Phantom's three with references (zero-weight ones skipped), else CFG's two."""
    if has_references:
        return sum(w != 0.0 for w in phantom_weights(settings.ref_scale, settings.text_scale))
    return 1 if settings.text_scale in (0.0, 1.0) else 2


@dataclass(frozen=True)
class ModelFiles:
    """Where the models of a generation are: local files only, weights in safetensors.

    Attributes:
        dit: a Wan / Phantom-Wan DiT (.safetensors file, sharded index or folder, diffusers folder).
        vae: a Wan VAE (single file or diffusers folder), or a folder declaring another codec kind.
        text_encoder: a umT5 folder, or a folder declaring another text-encoder kind.
        adapter: an mvs2v adapter file, or an already loaded :class:`Adapter`; None for none.
        vision_encoder: the CLIP / SigLIP vision folder an MFI adapter was trained with.
        model_config: a named DiT config to check the checkpoint against (default: inferred).
        lora_strength: strength of the adapter's LoRA.
    """

    dit: str | os.PathLike
    vae: str | os.PathLike
    text_encoder: str | os.PathLike
    adapter: str | os.PathLike | Adapter | None = None
    vision_encoder: str | os.PathLike | None = None
    model_config: str | None = None
    lora_strength: float = 1.0

    def load_adapter(self) -> Adapter | None:
        if self.adapter is None or isinstance(self.adapter, Adapter):
            return self.adapter
        return load_adapter(self.adapter)


def resolve_device(device: str | torch.device | None, dtype: str | torch.dtype | None) -> tuple[torch.device, torch.dtype]:
    """``None`` -> cuda when available, else cpu; dtype ``None`` -> bf16 on GPU, fp32 on CPU."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise MVS2VError(f"device {device!r} is not a device torch knows: use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MVS2VError("device cuda was asked for but no CUDA GPU is available: use cpu")
    if dtype is None:
        dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    elif isinstance(dtype, str):
        names = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
        if dtype not in names:
            raise MVS2VError(f"dtype {dtype!r} is unknown: use one of {', '.join(names)}")
        dtype = names[dtype]
    return dev, dtype


@dataclass
class GenerationResult:
    """``video``: ``[F, H, W, 3]`` float in [0, 1]; ``latents``: ``[1, C, f, h, w]``; ``timings`` in seconds."""

    video: torch.Tensor
    latents: torch.Tensor
    layout: ReferenceLayout | None
    timings: dict[str, float]

    def save(self, path: str | os.PathLike, fps: float, lossless: bool, latents: bool = False) -> dict[str, str]:
        """Write the video (lossless RGB or H.264), and with ``latents`` the final latents next to it
        (``<name>.latents.safetensors``); both atomically. Returns ``{"video": ..., ["latents": ...]}``.

        Sampling is never lost to a failed write: if the video cannot be written (no permission, a
        full disk, a folder at ``path``), the frames (uint8 ``[F, H, W, 3]``, key ``frames``) and the
        latents are kept in ``<name>.frames.safetensors`` next to it, else in the system temp dir,
        and the :class:`~mvs2v_core.errors.OutputError` raised names that file and the reason.
        """
        from ..errors import OutputError
        from ..utils import save_safetensors_atomic
        from .outputs import describe_os_error, keep_frames_after
        from .video_io import frames_to_uint8, write_lossless_mp4, write_mp4

        out = Path(path)
        frames = frames_to_uint8(self.video)  # refuses NaN frames before anything is written
        try:
            if lossless:
                write_lossless_mp4(frames.numpy(), out, fps)
            else:
                write_mp4(frames, out, fps=fps)
        except MVS2VError as exc:  # any failure after the frames passed their check: keep them
            raise keep_frames_after(exc, frames, out, {"latents": self.latents},
                                    {"fps": str(fps), "video": str(out)}) from exc
        written = {"video": str(out)}
        if latents:
            lat_path = out.with_suffix(".latents.safetensors")
            try:
                save_safetensors_atomic({"latents": self.latents.contiguous()}, lat_path)
            except (OSError, OutputError) as exc:
                reason = describe_os_error(exc) if isinstance(exc, OSError) else str(exc)
                raise OutputError(f"Wrote the video '{out}' but not the latents '{lat_path}': {reason}.") from exc
            written["latents"] = str(lat_path)
        return written


def check_video_size(width: int, height: int, frames: int, spatial_multiple: int, temporal_factor: int) -> None:
    """Refuse sizes the VAE and the patch grid cannot represent, naming the nearest valid values."""
    if frames < 1 or (frames - 1) % temporal_factor != 0:
        lo = max(1, (frames - 1) // temporal_factor * temporal_factor + 1)
        raise MVS2VError(
            f"--frames {frames} is not of the form {temporal_factor}n+1 that the Wan VAE needs: "
            f"use {lo} or {lo + temporal_factor}"
        )
    for name, v in (("width", width), ("height", height)):
        if v < spatial_multiple or v % spatial_multiple != 0:
            down = max(spatial_multiple, v // spatial_multiple * spatial_multiple)
            raise MVS2VError(
                f"--{name} {v} must be a positive multiple of {spatial_multiple} for this VAE and model: "
                f"use {down} or {down + spatial_multiple}"
            )


def refuse_context_windows_in_batch(settings: Sequence[GenerationSettings]) -> None:
    """Batched generation has no context windows yet: refuse them rather than sample without them."""
    if any(s.context_frames is not None for s in settings):
        raise MVS2VError("context windows (--context-frames) are not supported by batched generation yet: "
                         "generate long videos one at a time with MVS2VPipeline.generate")


def layout_for(subjects: Sequence[SubjectInput], references: ReferenceSettings) -> ReferenceLayout:
    """Place the subjects' views into slots (see :meth:`ReferenceLayout.build`)."""
    return ReferenceLayout.build(
        [list(s.labels) if s.labels is not None else len(s.images) for s in subjects],
        references.slots_per_subject,
        names=[s.name for s in subjects],
        frontal=[s.frontal for s in subjects],
        slot_anchor=references.slot_anchor,
    )

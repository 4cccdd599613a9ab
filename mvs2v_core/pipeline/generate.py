"""Standalone multi-view subject-to-video generation: text + reference views -> video.

The flow follows Phantom-Wan, with multi-view slots: every reference view is letterboxed onto a
white canvas of the output size and VAE-encoded alone into one latent frame; the frames go into
their view slots; the DiT sees them after the video tokens with the chosen position scheme; the
three-pass guidance contrasts no references / references / references + prompt.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ..adapter import Adapter, load_adapter, require_compatible
from ..errors import MVS2VError
from ..model.transformer import WanDiT
from ..model.reference_kv import ReferenceKVMemo
from ..references.conditioning import ReferenceConditioning
from ..references.layout import ReferenceLayout
from ..references.mfi import MFIProjector
from ..references.settings import ReferenceSettings
from ..sampling.guidance import CFGGuidance, Condition, Guidance, NoGuidance, PhantomGuidance, phantom_weights
from ..sampling.sampler import make_noise, sample
from ..sampling.windows import FUSE_METHODS, REFERENCE_FRAMES_KEY, ContextWindows, windowed_model_fn
from .images import gray_image, letterbox, load_image, to_tensor
from .memory import ForwardMemory, check_forward_memory, forward_memory, uses_math_attention


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


class MVS2VPipeline:
    """DiT + VAE + text encoder (+ optional adapter parts) on one device.

    Args:
        dit: the Wan DiT.
        vae: a :class:`~mvs2v_core.pipeline.vae.WanVAE`.
        text_encoder: a :class:`~mvs2v_core.pipeline.text.TextEncoder`.
        proxy_tokens: ``[K, dim]`` from an adapter, for the ``proxy`` empty-slot mode.
        mfi: an :class:`MFIProjector` and ``vision_encoder`` a callable images ``[N, 3, H, W]`` in
            [-1, 1] -> features ``[N, tokens, vit_dim]``; both or neither.
    """

    def __init__(
        self,
        dit: WanDiT,
        vae: Any,
        text_encoder: Any,
        proxy_tokens: torch.Tensor | None = None,
        mfi: MFIProjector | None = None,
        vision_encoder: Callable[[torch.Tensor], torch.Tensor] | None = None,
        device: str | torch.device = "cpu",
        adapter: Adapter | None = None,
    ) -> None:
        if (mfi is None) != (vision_encoder is None):
            raise MVS2VError(
                "MFI needs both the adapter's projector and a vision encoder: give --vision-encoder with an "
                "MFI adapter, or use an adapter without MFI"
            )
        if vae.z_dim != dit.config.in_dim:
            raise MVS2VError(
                f"the VAE makes {vae.z_dim}-channel latents but the DiT takes {dit.config.in_dim}: use the VAE "
                "of the same Wan release (Wan2.1 VAE for 1.3B/14B, Wan2.2 VAE for TI2V-5B)"
            )
        self.dit = dit
        self.vae = vae
        self.text_encoder = text_encoder
        self.proxy_tokens = proxy_tokens
        self.mfi = mfi
        self.vision_encoder = vision_encoder
        self.device = torch.device(device)
        self.adapter = adapter
        self.load_seconds = 0.0

    @classmethod
    def from_files(
        cls,
        files: ModelFiles,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
    ) -> "MVS2VPipeline":
        """Load and assemble everything a generation needs: DiT, adapter (LoRA merged at its
        strength, proxy tokens, MFI projector), VAE / codec, text and vision encoders.

        The adapter is checked against the DiT before the other models load; its reference
        settings become :attr:`default_references`. The VAE runs in float32.
        """
        from ..adapter import apply_lora
        from ..model.loading import load_dit
        from .text import load_text_encoder
        from .vae import load_vae

        t0 = time.perf_counter()
        dev, dt = resolve_device(device, dtype)
        adapter = files.load_adapter()
        if adapter is not None and adapter.has_mfi and files.vision_encoder is None:
            raise MVS2VError("this adapter uses MFI: give the vision encoder it was trained with (--vision-encoder)")
        dit = load_dit(files.dit, config=files.model_config, device=dev, dtype=dt)
        mfi = vision = proxy = None
        if adapter is not None:
            require_compatible(adapter, dit.config)
            if adapter.lora:
                apply_lora(dit, adapter.lora, files.lora_strength)
            if adapter.proxy_tokens is not None:
                proxy = adapter.proxy_tokens.to(dev)
        vae = load_vae(files.vae, device=dev, dtype=torch.float32)
        text_encoder = load_text_encoder(files.text_encoder, device=dev)
        if adapter is not None and adapter.has_mfi:
            from .vision import load_vision_encoder

            mfi = adapter.mfi_projector(dev)
            vision = load_vision_encoder(files.vision_encoder, device=dev)  # type: ignore[arg-type]
        pipe = cls(dit, vae, text_encoder, proxy, mfi, vision, device=dev, adapter=adapter)
        pipe.load_seconds = time.perf_counter() - t0
        return pipe

    @property
    def default_references(self) -> ReferenceSettings:
        """The adapter's reference settings when there is one, else the contract's defaults."""
        return self.adapter.metadata.references if self.adapter is not None else ReferenceSettings()

    def resolve_references(self, references: ReferenceSettings | None) -> ReferenceSettings:
        """``references`` (default: :attr:`default_references`), checked against the adapter."""
        refs = references if references is not None else self.default_references
        if self.adapter is not None:
            require_compatible(self.adapter, self.dit.config, refs)
        return refs

    @property
    def lossless_output(self) -> bool:
        """Whether videos of this pipeline should be stored losslessly (the codec says so)."""
        return bool(getattr(self.vae, "lossless_output", False))

    # ---- conditioning ------------------------------------------------------------------------
    def encode_text(self, prompts: Sequence[str]) -> torch.Tensor:
        """``[len(prompts), max(text_len, longest), text_dim]``, zero-padded like Wan."""
        embs = self.text_encoder.encode(list(prompts))
        text_len = self.dit.config.text_len
        longest = max(text_len, max(e.shape[0] for e in embs))
        out = torch.zeros(len(embs), longest, embs[0].shape[-1])
        for i, e in enumerate(embs):
            out[i, : e.shape[0]] = e.float().cpu()
        if out.shape[-1] != self.dit.config.text_dim:
            raise MVS2VError(
                f"the text encoder outputs width {out.shape[-1]} but the DiT expects {self.dit.config.text_dim}: "
                "use the umT5 encoder of the same Wan release"
            )
        return out

    def reference_images(
        self, subjects: Sequence[SubjectInput], layout: ReferenceLayout, width: int, height: int
    ) -> torch.Tensor:
        """Letterboxed slot images ``[S, 3, H, W]`` in [-1, 1], token order; empty slots are mid-gray."""
        gray = to_tensor(gray_image(width, height))
        slots = []
        for subj, sl in zip(subjects, layout.subjects):
            for slot in sl.slots:
                if slot.filled:
                    img = subj.images[slot.source]  # type: ignore[index]
                    pil = load_image(img) if isinstance(img, (str, Path)) else img
                    slots.append(to_tensor(letterbox(pil, width, height)))
                else:
                    slots.append(gray)
        return torch.stack(slots)

    def encode_references(self, images: torch.Tensor) -> torch.Tensor:
        """Each slot image alone through the VAE: ``[S, 3, H, W]`` -> ``[1, C, S, h, w]``."""
        lat = self.vae.encode_images(images.to(self.vae.device, self.vae.dtype))  # [S, C, 1, h, w]
        return lat[:, :, 0].permute(1, 0, 2, 3).unsqueeze(0).float()

    def mfi_features(self, images: torch.Tensor, layout: ReferenceLayout) -> torch.Tensor:
        """Frontal view of each subject through the vision encoder: ``[1, n_subjects, tokens, vit_dim]``."""
        frontal = images[layout.frontal_slots()]
        feats = self.vision_encoder(frontal)  # type: ignore[misc]
        return feats.unsqueeze(0)

    def encode_conditioning(
        self,
        s: GenerationSettings,
        subjects: Sequence[SubjectInput],
        layout: ReferenceLayout | None,
        timings: dict[str, float] | None = None,
    ) -> EncodedConditioning:
        """Prompt, negative prompt and reference views of one generation, encoded (see
        :class:`EncodedConditioning`); adds ``text_encode`` / ``reference_encode`` seconds to ``timings``."""
        timings = {} if timings is None else timings
        t0 = time.perf_counter()
        ctx = self.encode_text([s.prompt, s.negative_prompt])
        pos_ctx, neg_ctx = ctx[:1], ctx[1:]
        timings["text_encode"] = time.perf_counter() - t0

        ref_lat = None
        neg_ref_ctx = neg_noref_ctx = None
        t1 = time.perf_counter()
        if layout is not None:
            images = self.reference_images(subjects, layout, s.width, s.height)
            ref_lat = self.encode_references(images)
            if self.mfi is not None:
                feats = self.mfi_features(images, layout).to(self.device)
                pos_ctx = self.mfi.append(pos_ctx.to(self.device), feats, self.dit.config.text_len).cpu()
                # Passes without the prompt keep the MFI tokens only when they keep the references.
                neg_ref_ctx = self.mfi.append(neg_ctx.to(self.device), feats, self.dit.config.text_len).cpu()
                neg_noref_ctx = self.mfi.append(neg_ctx.to(self.device), torch.zeros_like(feats), self.dit.config.text_len).cpu()
            else:
                neg_ref_ctx = neg_noref_ctx = neg_ctx
        timings["reference_encode"] = time.perf_counter() - t1
        return EncodedConditioning(pos_ctx, neg_ctx, ref_lat, neg_ref_ctx, neg_noref_ctx)

    # ---- generation --------------------------------------------------------------------------
    @torch.no_grad()
    def generate_batch(
        self,
        settings: Sequence[GenerationSettings],
        subjects: Sequence[Sequence[SubjectInput]],
        progress: Callable[[dict], None] | None = None,
    ) -> list[GenerationResult]:
        """Many generations of one size in few batched sampling runs (:func:`.batch.generate_batch`)."""
        from .batch import generate_batch

        return generate_batch(self, settings, subjects, progress)

    @torch.no_grad()
    def generate(
        self,
        settings: GenerationSettings,
        subjects: Sequence[SubjectInput] = (),
        progress: Callable[[dict], None] | None = None,
    ) -> GenerationResult:
        s = settings
        check_generation_settings(s)  # again: the dataclass may have been changed since it was made
        timings: dict[str, float] = {}
        self.check_size(s)
        refs = self.resolve_references(s.references)
        layout = layout_for(subjects, refs) if subjects else None
        if s.check_memory:  # before any encoder runs: a size that cannot fit costs nothing
            check_forward_memory(*self.estimate_memory(s, layout, refs), self.device)
        t0 = time.perf_counter()
        enc = self.encode_conditioning(s, subjects, layout, timings)
        guidance = self._guidance(s, enc.context, enc.negative, enc.ref_latents, enc.neg_ref, enc.neg_noref)
        model_fn = self._model_fn(refs, layout, self.context_windows(s))
        noise = make_noise(self.latent_shape(s), s.seed, device=self.device)

        step_times: list[float] = []
        last = [time.perf_counter()]

        def on_step(info: dict) -> None:
            now = time.perf_counter()
            step_times.append(now - last[0])
            last[0] = now
            if progress is not None:
                progress(info)

        t2 = time.perf_counter()
        latents = sample(model_fn, noise, guidance, s.steps, s.shift, s.solver, callback=on_step)
        timings["sampling"] = time.perf_counter() - t2
        timings["per_step"] = sum(step_times) / max(1, len(step_times))

        t3 = time.perf_counter()
        frames = self.decode_frames(latents)
        timings["vae_decode"] = time.perf_counter() - t3
        timings["total"] = time.perf_counter() - t0
        return GenerationResult(frames, latents.cpu(), layout, timings)

    def check_size(self, s: GenerationSettings) -> None:
        """Refuse a width, height, frame count or context window this VAE and patch size cannot take (one line,
        before any work)."""
        ph, pw = self.dit.config.patch_size[1:]
        check_video_size(s.width, s.height, s.frames, self.vae.spatial_factor * max(ph, pw), self.vae.temporal_factor)
        self.context_windows(s)

    def context_windows(self, s: GenerationSettings) -> ContextWindows | None:
        """``s``'s context windows in latent frames (:func:`context_windows`), checked against the patch size."""
        windows = context_windows(s, self.vae.temporal_factor)
        pt = self.dit.config.patch_size[0]
        if windows is not None and (windows.length % pt or windows.overlap % pt):
            raise MVS2VError(f"context windows of {windows.length} latent frames with overlap {windows.overlap} do "
                             f"not split into this DiT's temporal patches of {pt}: use multiples of {pt} latent frames")
        return windows

    def latent_shape(self, s: GenerationSettings) -> tuple[int, int, int, int, int]:
        """``[1, C, f, h, w]``: the latents (and the noise) of one video of ``s``'s size."""
        sf, tf = self.vae.spatial_factor, self.vae.temporal_factor
        return (1, self.dit.config.in_dim, 1 + (s.frames - 1) // tf, s.height // sf, s.width // sf)

    def decode_frames(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents ``[1, C, f, h, w]`` -> video frames ``[F, H, W, 3]`` in ``[0, 1]`` (float32, CPU)."""
        video = self.vae.decode(latents.to(self.vae.device, self.vae.dtype)).float().cpu()  # [1, 3, F, H, W]
        return ((video[0].permute(1, 2, 3, 0) + 1) / 2).clamp(0, 1)

    def estimate_memory(
        self, settings: GenerationSettings, layout: ReferenceLayout | None, references: ReferenceSettings
    ) -> tuple[ForwardMemory, ForwardMemory]:
        """Peak memory of one DiT forward of this generation (see :mod:`~mvs2v_core.pipeline.memory`):
        ``(as it will run, with one pass per call)``. Under CUDA with no ``max_batch_passes`` the
        sampler halves the passes per call on an out-of-memory error, so both are the single pass."""
        s, cfg = settings, self.dit.config
        sf, tf = self.vae.spatial_factor, self.vae.temporal_factor
        pt, ph, pw = cfg.patch_size
        per_frame = (s.height // sf // ph) * (s.width // sf // pw)
        slots = len(layout.kept_slots(references.empty_slot_mode)) if layout is not None else 0
        frames = 1 + (s.frames - 1) // tf
        windows = self.context_windows(s)
        if windows is not None:  # one window per model call (the blended output is one latent, not counted)
            frames = min(frames, windows.length)
        tokens = frames // pt * per_frame
        cached = slots * per_frame if references.cached else 0
        tokens += 0 if references.cached else slots * per_frame
        passes = guidance_passes(s, layout is not None)
        batch = min(passes, s.max_batch_passes or passes)
        if s.max_batch_passes is None and self.device.type == "cuda":
            batch = 1  # CUDA raises OutOfMemoryError, on which the sampler halves the batch (the CPU does not)
        math_attention = uses_math_attention(self.device, self.dit.dtype, cfg.head_dim)
        first, single = (forward_memory(cfg, tokens, n, self.dit.dtype, math_attention, cached) for n in (batch, 1))
        return first, single

    def _guidance(
        self,
        s: GenerationSettings,
        pos: torch.Tensor,
        neg: torch.Tensor,
        ref_lat: torch.Tensor | None,
        neg_ref: torch.Tensor | None,
        neg_noref: torch.Tensor | None,
    ) -> Guidance:
        dev = self.device
        if ref_lat is None:
            cond: Condition = {"context": pos.to(dev)}
            if s.text_scale == 1.0:
                return NoGuidance(cond=cond, max_batch_passes=s.max_batch_passes)
            return CFGGuidance(cond=cond, uncond={"context": neg.to(dev)}, scale=s.text_scale, max_batch_passes=s.max_batch_passes)
        ref_lat = ref_lat.to(dev)
        return PhantomGuidance(
            ref_text={"context": pos.to(dev), "ref_latents": ref_lat},
            ref_neg={"context": neg_ref.to(dev), "ref_latents": ref_lat},  # type: ignore[union-attr]
            # Phantom's "no reference" pass: the same slots, zero latents (keeps the token layout).
            no_ref_neg={"context": neg_noref.to(dev), "ref_latents": torch.zeros_like(ref_lat)},  # type: ignore[union-attr]
            ref_scale=s.ref_scale,
            text_scale=s.text_scale,
            max_batch_passes=s.max_batch_passes,
        )

    def _model_fn(self, references: ReferenceSettings, layout: ReferenceLayout | None,
                  windows: ContextWindows | None = None):
        """``(x, t, cond) -> v``; under cached references, each distinct set of reference latents has its
        keys/values computed once per generation (this closure) and reused at every step. With ``windows``
        the DiT runs per context window (:func:`windowed_model_fn`), the references placed after the
        window length in every window, so one cache serves every window too."""
        dit = self.dit
        dtype = dit.dtype
        memo = ReferenceKVMemo() if references.cached else None

        def model_fn(x: torch.Tensor, t: torch.Tensor, cond: Condition) -> torch.Tensor:
            refs, cache = None, None
            if cond.get("ref_latents") is not None:
                refs = ReferenceConditioning(
                    cond["ref_latents"].to(dtype), layout, references, self.proxy_tokens,  # type: ignore[arg-type]
                    reference_frames=cond.get(REFERENCE_FRAMES_KEY),
                )
                if memo is not None:
                    grid = dit.patch_grid(x.shape)  # the cache is keyed by where the references sit, not the window
                    basis = dit.reference_grid(refs, grid)
                    cache = memo.get(refs.latents, basis, lambda: dit.reference_cache(refs, grid))
            return dit(x.to(dtype), t, cond["context"].to(dtype), refs=refs, ref_cache=cache).float()

        return model_fn if windows is None else windowed_model_fn(model_fn, windows)

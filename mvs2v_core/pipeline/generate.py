"""Standalone multi-view subject-to-video generation: text + reference views -> video.

The flow follows Phantom-Wan, with multi-view slots: every reference view is letterboxed onto a
white canvas of the output size and VAE-encoded alone into one latent frame; the frames go into
their view slots; the DiT sees them after the video tokens with the chosen position scheme; the
three-pass guidance contrasts no references / references / references + prompt.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ..adapter import Adapter, require_compatible
from ..errors import MVS2VError
from ..model.transformer import WanDiT
from ..model.reference_kv import ReferenceKVMemo
from ..references.conditioning import ReferenceConditioning
from ..references.layout import ReferenceLayout
from ..references.mfi import MFIProjector
from ..references.settings import ReferenceSettings
from ..sampling.guidance import CFGGuidance, Condition, Guidance, NoGuidance, PhantomGuidance
from ..sampling.sampler import make_noise, sample
from ..sampling.windows import REFERENCE_FRAMES_KEY, ContextWindows, windowed_model_fn
from .images import gray_image, letterbox, load_image, to_tensor
from .memory import ForwardMemory, check_forward_memory, forward_memory, uses_math_attention
from .request import (
    check_generation_settings,
    check_video_size,
    context_windows,
    EncodedConditioning,
    GenerationResult,
    GenerationSettings,
    guidance_passes,
    layout_for,
    ModelFiles,
    resolve_device,
    SubjectInput,
)

# The request and result types live in .request; importing them from here keeps working.
__all__ = ["MVS2VPipeline", "check_generation_settings", "check_video_size", "context_windows", "EncodedConditioning",
           "GenerationResult", "GenerationSettings", "guidance_passes", "layout_for", "ModelFiles", "resolve_device",
           "SubjectInput"]


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

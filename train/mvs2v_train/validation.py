"""Validation during training: sample videos through the mvs2v_core pipeline, and a held-out loss.

Sampling builds an :class:`~mvs2v_core.pipeline.generate.MVS2VPipeline` around the model being trained
(its DiT with the live LoRA, its proxy tokens, its MFI projector) and calls ``generate`` with the same
:class:`GenerationSettings` that ``mvs2v generate`` builds from its flags. So a validation video is what
the exported adapter gives in the CLI for the same seed (the LoRA is applied unmerged here and merged
there: equal up to float rounding), which is how likeness "lost between trainer samples and ComfyUI"
cannot happen silently.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from mvs2v_core.errors import MVS2VError
from mvs2v_core.pipeline.generate import GenerationResult, GenerationSettings, MVS2VPipeline, SubjectInput
from mvs2v_core.utils import atomic_write, save_safetensors_atomic

from .config import TrainConfig, ValidationPrompt
from .curriculum import derive_seed
from .data import TrainData, collate
from .model import TrainableModel


def generation_settings(cfg: TrainConfig, prompt: ValidationPrompt) -> GenerationSettings:
    """The settings ``mvs2v generate`` would use for this prompt with the exported adapter."""
    v = cfg.validation
    return GenerationSettings(
        prompt=prompt.prompt, negative_prompt=prompt.negative_prompt, width=v.width, height=v.height,
        frames=v.frames, steps=v.steps, seed=prompt.seed, shift=v.shift, solver=v.solver, ref_scale=v.ref_scale,
        text_scale=v.text_scale, references=cfg.references.settings(),
    )


def subject_inputs(cfg: TrainConfig, prompt: ValidationPrompt) -> list[SubjectInput]:
    out = []
    for s in prompt.subjects:
        labels = [None if lab == "" else lab for lab in s.labels] if s.labels else None
        images = [str(cfg.resolve(p)) for p in s.images]
        for p in images:
            if not Path(p).is_file():
                raise MVS2VError(f"validation image {p} (subject {s.name!r}) does not exist")
        out.append(SubjectInput(s.name, images, labels, s.frontal))
    return out


class _WrappedDiT:
    """Looks like a WanDiT to the pipeline but runs through the (FSDP-)wrapped training model."""

    def __init__(self, wrapped: Callable, dit: Any) -> None:
        self._wrapped = wrapped
        self.config = dit.config
        self.dtype = dit.dtype

    def __call__(self, x, timestep, context, clip_fea=None, refs=None):
        return self._wrapped(None, velocity={"x": x, "timestep": timestep, "context": context, "refs": refs})


class _WrappedMFI:
    """``MFIProjector.append`` through the wrapped model (its weights are only whole inside its forward)."""

    def __init__(self, wrapped: Callable) -> None:
        self._wrapped = wrapped

    def append(self, context, features, text_len=512):
        return self._wrapped(None, mfi_append=(context, features, text_len))


@dataclass
class Validator:
    """Loads the frozen encoders once (on ``device``) and samples the configured prompts.

    ``device`` is where the VAE / text / vision encoders live (``validation.device``); the sampling
    itself runs where the DiT is.
    """

    cfg: TrainConfig
    device: torch.device
    _vae: Any = None
    _text: Any = None
    _vision: Any = None

    def _load(self) -> None:
        from mvs2v_core.pipeline.text import load_text_encoder
        from mvs2v_core.pipeline.vae import load_vae

        m = self.cfg.model
        for name in ("vae", "text_encoder"):
            if not getattr(m, name):
                raise MVS2VError(f"validation sampling needs model.{name}; set it or set validation.every_n_steps = 0")
        if self._vae is None:
            self._vae = load_vae(self.cfg.resolve(m.vae), device=self.device, dtype=torch.float32)
            self._text = load_text_encoder(self.cfg.resolve(m.text_encoder), device=self.device)
        if self._vision is None and m.vision_encoder:
            from mvs2v_core.pipeline.vision import load_vision_encoder

            self._vision = load_vision_encoder(self.cfg.resolve(m.vision_encoder), device=self.device)

    def pipeline(self, model: TrainableModel, wrapped: Callable | None = None) -> MVS2VPipeline:
        """The inference pipeline around the live model (``wrapped``: route DiT calls through FSDP)."""
        self._load()
        dit_device = next(model.dit.parameters()).device
        if wrapped is None:
            proxy = model.proxy_tokens()
            return MVS2VPipeline(model.dit, self._vae, self._text, proxy.detach() if proxy is not None else None,
                                 model.mfi, self._vision if model.mfi is not None else None, device=dit_device)
        # Sharded: the pipeline gets stand-ins; the live proxy tokens go in inside the wrapped forward.
        cfg = model.dit.config
        proxy = torch.zeros(model.references.slots_per_subject, cfg.dim) if model.proxy is not None else None
        mfi = _WrappedMFI(wrapped) if model.mfi is not None else None
        return MVS2VPipeline(_WrappedDiT(wrapped, model.dit), self._vae, self._text, proxy, mfi,  # type: ignore[arg-type]
                             self._vision if model.mfi is not None else None, device=dit_device)

    def generate(self, model: TrainableModel, prompt: ValidationPrompt,
                 wrapped: Callable | None = None) -> GenerationResult:
        pipe = self.pipeline(model, wrapped)
        was_training = model.training
        model.eval()
        try:
            return pipe.generate(generation_settings(self.cfg, prompt), subject_inputs(self.cfg, prompt))
        finally:
            model.train(was_training)

    def run(self, model: TrainableModel, step: int, out_dir: Path, writer: Any = None,
            wrapped: Callable | None = None, write: bool = True) -> list[Path]:
        """Sample every prompt; write mp4 / webp / latents under ``out_dir/step_XXXXXXXX``."""
        paths: list[Path] = []
        folder = out_dir / f"step_{step:08d}"
        for i, prompt in enumerate(self.cfg.validation.prompts):
            result = self.generate(model, prompt, wrapped)
            if not write:
                continue
            stem = folder / f"prompt_{i:02d}"
            paths += write_outputs(result, stem, self.cfg.validation.formats, self.cfg.validation.fps)
            if writer is not None:
                writer.add_image(f"validation/prompt_{i:02d}", frame_strip(result.video), step)
                writer.add_text(f"validation/prompt_{i:02d}", prompt.prompt, step)
        return paths


def frame_strip(video: torch.Tensor) -> torch.Tensor:
    """First / middle / last frame side by side: ``[F, H, W, 3]`` in [0, 1] -> ``[3, H, 3W]``."""
    f = video.shape[0]
    picks = sorted({0, f // 2, f - 1})
    return torch.cat([video[i] for i in picks], dim=1).permute(2, 0, 1).clamp(0, 1)


def write_webp(video: torch.Tensor, path: Path, fps: float) -> Path:
    """Animated WebP of ``[F, H, W, 3]`` in [0, 1], written atomically."""
    from PIL import Image

    frames = [Image.fromarray((f.clamp(0, 1) * 255).round().to(torch.uint8).numpy()) for f in video]
    with atomic_write(path, suffix=".webp") as tmp:
        frames[0].save(tmp, format="WEBP", save_all=True, append_images=frames[1:], duration=int(round(1000 / fps)),
                       loop=0, quality=90)
    return path


def write_outputs(result: GenerationResult, stem: Path, formats: list[str], fps: float) -> list[Path]:
    from mvs2v_core.pipeline.video_io import write_mp4

    out = []
    stem.parent.mkdir(parents=True, exist_ok=True)
    if "mp4" in formats:
        out.append(write_mp4(result.video, stem.with_suffix(".mp4"), fps=fps))
    if "webp" in formats:
        out.append(write_webp(result.video, stem.with_suffix(".webp"), fps))
    lat = stem.with_suffix(".latents.safetensors")
    save_safetensors_atomic({"latents": result.latents.contiguous()}, lat)
    out.append(lat)
    return out


@torch.no_grad()
def heldout_loss(model: Callable, data: TrainData, cfg: TrainConfig, device: torch.device,
                 split: str | None = None, limit: int | None = None) -> float | None:
    """Mean velocity MSE over held-out samples at fixed noise levels, fixed noise, all views, no augmentation.

    The same number for the same weights, whatever the step: comparable across the run.
    ``model`` is the (possibly wrapped) :class:`TrainableModel`. None when the split has no samples.
    """
    v = cfg.validation
    split = v.loss_split if split is None else split
    if not split:
        return None
    indices = data.indices_in_split(split)[: (v.loss_samples if limit is None else limit)]
    if not indices:
        return None
    total, count = 0.0, 0
    for i in indices:
        examples = []
        for j, s in enumerate(v.loss_sigmas):
            ex = data.example(i, derive_seed(cfg.train.seed, "heldout", i, j), None, deterministic_eval=True,
                              sigma=float(s))
            ex.weight = 1.0
            examples.append(ex)
        # The velocity MSE alone: the alignment loss (training only) is left out.
        batch = dataclasses.replace(collate(examples, model_text_len(model)), align_features=None,
                                    align_filled=None).to(device)
        total += float(model(batch))
        count += len(examples)
    loss = total / count
    return loss if math.isfinite(loss) else float("nan")


def model_text_len(model: Any) -> int:
    inner = getattr(model, "module", model)
    return int(inner.dit.config.text_len)


__all__ = ["Validator", "generation_settings", "subject_inputs", "heldout_loss", "write_outputs", "frame_strip"]

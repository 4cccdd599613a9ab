"""Vision encoder for MFI and the trainer's alignment loss: a local CLIP / SigLIP / DINOv2 vision tower
(transformers) -> patch features.

Features are the penultimate hidden states, the layer Wan's I2V branch takes from CLIP-ViT-H
(``[N, 257, 1280]`` at 224 px); SigLIP towers give ``[N, tokens, 1152]``, DINOv2 ``[N, 1 (+ registers)
+ patches, width]`` at the processor's crop size.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import CheckpointError
from ..safe_files import require_all_finite

# The published normalisations; used when the folder has no preprocessor_config.json.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VisionEncoder:
    """Callable: images ``[N, 3, H, W]`` in [-1, 1] -> features ``[N, tokens, width]`` (float32)."""

    def __init__(self, model: Any, image_size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        self.model = model.eval().requires_grad_(False)
        self.image_size = image_size
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)

    @property
    def width(self) -> int:
        return int(self.model.config.hidden_size)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        dev = next(self.model.parameters()).device
        x = (images.float().to(dev) + 1) / 2
        x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bicubic", align_corners=False).clamp(0, 1)
        x = (x - self.mean.to(dev)) / self.std.to(dev)
        out = self.model(pixel_values=x.to(next(self.model.parameters()).dtype), output_hidden_states=True)
        return out.hidden_states[-2].float()


def load_vision_encoder(path: str | os.PathLike, device: str | torch.device = "cpu",
                        dtype: torch.dtype = torch.float32) -> VisionEncoder:
    """Load a transformers CLIP or SigLIP vision model from a local folder (safetensors only).

    A folder declaring another encoder kind (:mod:`~mvs2v_core.pipeline.components`; e.g. the toy
    world's patch encoder) loads with the loader registered for that kind.
    """
    p = Path(path)
    from .components import find_component

    kind = find_component(p, "vision_encoder")
    if kind is not None:
        return kind.loader(p, device=device, dtype=dtype)
    if not (p / "config.json").is_file():
        raise CheckpointError(
            f"{p} is not a vision-model folder: it needs config.json and model.safetensors "
            "(e.g. a CLIP-ViT-H/14 or SigLIP folder saved with transformers)"
        )
    if not any(p.glob("*.safetensors")):
        raise CheckpointError(f"{p} has no .safetensors weights; convert the weights to safetensors first")
    from transformers import AutoConfig, CLIPVisionModel, Dinov2Model, SiglipVisionModel

    cfg = AutoConfig.from_pretrained(str(p), local_files_only=True)
    kind = getattr(cfg, "model_type", "")
    if "siglip" in kind:
        model_class, mean, std = SiglipVisionModel, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    elif "clip" in kind:
        model_class, mean, std = CLIPVisionModel, CLIP_MEAN, CLIP_STD
    elif kind.startswith("dinov2"):
        model_class, mean, std = Dinov2Model, IMAGENET_MEAN, IMAGENET_STD
    else:
        raise CheckpointError(f"{p} holds a {kind or 'unknown'} model; give a CLIP, SigLIP or DINOv2 vision model")
    model = model_class.from_pretrained(str(p), local_files_only=True, use_safetensors=True)
    vision_cfg = getattr(model.config, "vision_config", model.config)
    image_size = int(vision_cfg.image_size)
    pre = p / "preprocessor_config.json"
    if pre.is_file():
        info = json.loads(pre.read_text())
        mean = tuple(info.get("image_mean", mean))
        std = tuple(info.get("image_std", std))
        if kind.startswith("dinov2"):  # DINOv2's config says 518 (its pretraining size); it is run at the crop
            image_size = _crop_size(info, image_size)
    require_all_finite(model.state_dict(), p)
    return VisionEncoder(model.to(device, dtype), image_size, mean, std)


def _crop_size(info: dict, default: int) -> int:
    """The square size a transformers image processor crops to (``crop_size`` as an int or a dict)."""
    crop = info.get("crop_size", default) if info.get("do_center_crop", True) else info.get("size", default)
    if isinstance(crop, dict):
        crop = crop.get("height", crop.get("shortest_edge", default))
    return int(crop)

"""Image feature extractors for the reference-similarity metrics.

A :class:`FeatureExtractor` maps images ``[N, 3, H, W]`` in ``[0, 1]`` to L2-normalized features
``[N, D]``; the cosine similarity of two images is the dot product of their features.

* :class:`HFImageFeatureExtractor` -- DINOv2 (``pooler_output``: the layer-normed CLS token) or
  CLIP (the projected image embedding) from a LOCAL transformers folder, as MV-S2V uses DINO and
  CLIP. transformers is imported lazily; nothing is downloaded.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import CheckpointError, MVS2VError
from ..safe_files import refuse_pickle_folder

__all__ = ["FeatureExtractor", "HFImageFeatureExtractor", "IMAGENET_MEAN", "IMAGENET_STD", "CLIP_MEAN", "CLIP_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class FeatureExtractor(ABC):
    """Images ``[N, 3, H, W]`` in ``[0, 1]`` (float, or uint8 0..255) -> L2-normalized ``[N, D]`` float32.

    Subclasses implement :meth:`extract`; ``__call__`` validates the input and normalizes the output.
    """

    name: str = "features"

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise MVS2VError(f"{type(self).__name__} expects images [N, 3, H, W], got {shape}; permute "
                             "[N, H, W, 3] frames with .permute(0, 3, 1, 2)")
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        if x.shape[0] == 0:
            raise MVS2VError(f"{type(self).__name__} got no images")
        feats = self.extract(x.clamp(0.0, 1.0))
        return F.normalize(feats.float(), dim=-1, eps=1e-12)

    @abstractmethod
    def extract(self, images: torch.Tensor) -> torch.Tensor:
        """Raw features ``[N, D]`` of float images ``[N, 3, H, W]`` in ``[0, 1]``."""


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read '{path}' ({exc})") from None


def _size_from(value: Any) -> int | None:
    """An image size from a preprocessor config entry (int, or dict with height/shortest_edge)."""
    if isinstance(value, int):
        return value
    if isinstance(value, dict):
        for key in ("height", "shortest_edge", "width"):
            if isinstance(value.get(key), int):
                return int(value[key])
    return None


class HFImageFeatureExtractor(FeatureExtractor):
    """DINOv2 or CLIP image features from a local transformers folder.

    Preprocessing (done here, in torch, so no image-processor package is needed): resize the
    shorter side to ``S`` (bicubic, antialiased), centre-crop ``S x S``, normalize with the model's
    mean/std. ``S`` and mean/std come from ``preprocessor_config.json`` when the folder has one
    (``crop_size``, ``image_mean``, ``image_std``), else DINOv2: 224 and ImageNet statistics,
    CLIP: the config's ``image_size`` and CLIP statistics.

    Features: DINOv2 -> ``pooler_output`` (the layer-normed CLS token); ``clip`` (full CLIP) ->
    the projected image embedding; ``clip_vision_model`` -> ``image_embeds`` when the folder is a
    ``CLIPVisionModelWithProjection``, else ``pooler_output``.

    Args:
        path: the model folder (``config.json`` + ``*.safetensors``).
        device, dtype: where to run the model.
        image_size: override ``S``.
        batch_size: images per forward pass.
    """

    SUPPORTED = ("dinov2", "clip", "clip_vision_model")

    def __init__(self, path: str | os.PathLike, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32, image_size: int | None = None, batch_size: int = 32) -> None:
        p = Path(path).expanduser()
        if not p.exists():
            raise CheckpointError(f"feature model not found: '{p}'. Pass a local DINOv2 or CLIP folder "
                                  "(config.json + model.safetensors), e.g. a download of facebook/dinov2-base")
        if not p.is_dir() or not (p / "config.json").is_file():
            raise CheckpointError(f"'{p}' is not a transformers model folder (no config.json). Pass a local DINOv2 "
                                  "or CLIP folder, or --extractor toy for the toy world's fixed features")
        if not list(p.glob("*.safetensors")) and not list(p.glob("*.safetensors.index.json")):
            refuse_pickle_folder(p, "feature model folder")
            raise CheckpointError(f"'{p}' has a config.json but no .safetensors weights")
        config = _read_json(p / "config.json")
        kind = config.get("model_type")
        if kind not in self.SUPPORTED:
            raise CheckpointError(f"'{p}' holds a {kind!r} model; the evaluation supports "
                                  f"{', '.join(self.SUPPORTED)} (DINOv2 or CLIP)")
        try:
            import transformers
        except ImportError:
            raise MVS2VError("DINOv2/CLIP features need transformers: pip install transformers "
                             "(or pip install mvs2v[eval])") from None
        if kind == "dinov2":
            cls = transformers.AutoModel
        elif kind == "clip":
            cls = transformers.CLIPModel
        elif "CLIPVisionModelWithProjection" in (config.get("architectures") or []):
            cls = transformers.CLIPVisionModelWithProjection
        else:
            cls = transformers.CLIPVisionModel
        try:
            model = cls.from_pretrained(str(p), local_files_only=True, use_safetensors=True)
        except Exception as exc:
            raise CheckpointError(f"cannot load the feature model '{p}': {exc}") from None
        self.model = model.to(device=device, dtype=dtype).eval().requires_grad_(False)
        self.kind = kind
        self.device, self.dtype = torch.device(device), dtype
        self.batch_size = max(1, int(batch_size))
        self.name = f"{kind}:{p.name}"
        pre = _read_json(p / "preprocessor_config.json") if (p / "preprocessor_config.json").is_file() else {}
        vision_cfg = config.get("vision_config", config) if kind == "clip" else config
        default_size = 224 if kind == "dinov2" else int(vision_cfg.get("image_size", 224))
        self.image_size = int(image_size or _size_from(pre.get("crop_size")) or _size_from(pre.get("size"))
                              or default_size)
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if kind == "dinov2" else (CLIP_MEAN, CLIP_STD)
        self.mean = torch.tensor(pre.get("image_mean", mean), dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(pre.get("image_std", std), dtype=torch.float32).view(1, 3, 1, 1)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` in [0, 1] -> normalized ``[N, 3, S, S]``."""
        s = self.image_size
        h, w = images.shape[-2:]
        scale = s / min(h, w)
        nh, nw = max(s, round(h * scale)), max(s, round(w * scale))
        x = F.interpolate(images, size=(nh, nw), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
        top, left = (nh - s) // 2, (nw - s) // 2
        x = x[..., top:top + s, left:left + s]
        return (x - self.mean) / self.std

    @torch.no_grad()
    def extract(self, images: torch.Tensor) -> torch.Tensor:
        out = []
        for start in range(0, images.shape[0], self.batch_size):
            x = self.preprocess(images[start:start + self.batch_size]).to(self.device, self.dtype)
            if self.kind == "clip":
                res = self.model.get_image_features(pixel_values=x)
                feats = res if isinstance(res, torch.Tensor) else res.pooler_output
            else:
                res = self.model(pixel_values=x)
                feats = getattr(res, "image_embeds", None)
                if feats is None:
                    feats = res.pooler_output
            out.append(feats.float().cpu())
        return torch.cat(out, dim=0)

"""Image feature extractors for the reference-similarity metrics.

A :class:`FeatureExtractor` maps images ``[N, 3, H, W]`` in ``[0, 1]`` to L2-normalized features
``[N, D]``; the cosine similarity of two images is the dot product of their features.

* :class:`ToyFeatureExtractor` -- a fixed, training-free feature for the toy world (documented
  below and in ``docs/toy_world.md``).
* :class:`HFImageFeatureExtractor` -- DINOv2 (``pooler_output``: the layer-normed CLS token) or
  CLIP (the projected image embedding) from a LOCAL transformers folder, as MV-S2V uses DINO and
  CLIP. transformers is imported lazily; nothing is downloaded.
"""

from __future__ import annotations

import json
import math
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import CheckpointError, MVS2VError

__all__ = ["FeatureExtractor", "ToyFeatureExtractor", "HFImageFeatureExtractor", "load_feature_extractor",
           "IMAGENET_MEAN", "IMAGENET_STD", "CLIP_MEAN", "CLIP_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle")


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


def _hue_sat_val(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """HSV of ``[N, 3, H, W]`` images: hue in ``[0, 1)`` (0 for grays), saturation, value; each ``[N, H, W]``."""
    r, g, b = images.unbind(1)
    maxc = images.amax(1)
    delta = maxc - images.amin(1)
    sat = torch.where(maxc > 0, delta / maxc.clamp_min(1e-12), torch.zeros_like(maxc))
    safe = delta.clamp_min(1e-12)
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    hue = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    hue = torch.where(delta > 0, torch.remainder(hue / 6.0, 1.0), torch.zeros_like(hue))
    return hue, sat, maxc


def _background_to_white(images: torch.Tensor, max_angle: float = 6.0, max_ratio: float = 1.0 / 0.7) -> torch.Tensor:
    """Paint the background white: pixels like the median colour of the image border.

    A pixel is background when its colour direction is within ``max_angle`` degrees of the border
    median's and its brightness (norm) within a factor ``max_ratio`` of it. (A toy floor is one hue
    with a checker of brightness 1 and 0.8; a reference background is white; object faces differ
    from the floor's hue, and the gray tops are far darker than white.)
    """
    n, _, h, w = images.shape
    border = torch.cat([images[:, :, 0, :], images[:, :, -1, :], images[:, :, :, 0], images[:, :, :, -1]], dim=2)
    bg = border.median(dim=2).values  # [N, 3]
    bg_norm = bg.norm(dim=1).clamp_min(1e-6)[:, None, None]
    norm = images.norm(dim=1)
    cos = (images * bg[:, :, None, None]).sum(1) / (norm.clamp_min(1e-6) * bg_norm)
    ratio = norm / bg_norm
    is_bg = (cos >= math.cos(math.radians(max_angle))) & (ratio <= max_ratio) & (ratio >= 1.0 / max_ratio)
    return torch.where(is_bg[:, None], torch.ones_like(images), images)


class ToyFeatureExtractor(FeatureExtractor):
    """Fixed colour-layout features for toy-world images (no weights, deterministic).

    First the background is painted white (:func:`_background_to_white`: pixels like the median
    border colour), so a video frame on a coloured floor and a reference on white compare by their
    object alone. Then three blocks, each L2-normalized, concatenated with equal weight (then
    L2-normalized again):

    1. **hue histogram** of the whole image: ``hue_bins`` bins, each pixel adds ``saturation * value``
       split linearly between its two nearest bin centres (grays, white and black add nothing, so a
       white reference background and the floor's shading do not count as colour);
    2. **spatial hue histograms**: the same on a ``grid x grid`` split of the image (which face is on
       which side: a view and its mirror image differ);
    3. **thumbnail**: the image average-pooled to ``thumb x thumb`` RGB, minus 0.5.

    ``D = hue_bins * (1 + grid**2) + 3 * thumb**2`` (312 by default).
    """

    name = "toy-colour-layout"

    def __init__(self, hue_bins: int = 24, grid: int = 2, thumb: int = 8) -> None:
        if hue_bins < 2 or grid < 1 or thumb < 1:
            raise MVS2VError(f"ToyFeatureExtractor needs hue_bins >= 2, grid >= 1, thumb >= 1; got "
                             f"{hue_bins}, {grid}, {thumb}")
        self.hue_bins, self.grid, self.thumb = int(hue_bins), int(grid), int(thumb)

    @property
    def dim(self) -> int:
        return self.hue_bins * (1 + self.grid ** 2) + 3 * self.thumb ** 2

    def extract(self, images: torch.Tensor) -> torch.Tensor:
        n, _, h, w = images.shape
        if h < self.grid or w < self.grid:
            raise MVS2VError(f"images of {w}x{h} pixels are smaller than the {self.grid}x{self.grid} feature grid")
        images = _background_to_white(images)
        hue, sat, val = _hue_sat_val(images)
        weight = (sat * val).reshape(n, -1)
        pos = hue.reshape(n, -1) * self.hue_bins
        lo = torch.floor(pos)
        frac = pos - lo
        lo = lo.long() % self.hue_bins
        hi = (lo + 1) % self.hue_bins
        rows = (torch.arange(h) * self.grid // h)[:, None]
        cols = (torch.arange(w) * self.grid // w)[None, :]
        cell = (rows * self.grid + cols).reshape(1, -1).expand(n, -1)
        cells = self.grid * self.grid
        hist = torch.zeros(n, cells * self.hue_bins)
        hist.scatter_add_(1, cell * self.hue_bins + lo, weight * (1 - frac))
        hist.scatter_add_(1, cell * self.hue_bins + hi, weight * frac)
        grid_hist = hist.reshape(n, cells, self.hue_bins)
        global_hist = grid_hist.sum(1)
        thumb = F.adaptive_avg_pool2d(images, (self.thumb, self.thumb)).reshape(n, -1) - 0.5
        blocks = [F.normalize(global_hist, dim=1, eps=1e-12), F.normalize(grid_hist.reshape(n, -1), dim=1, eps=1e-12),
                  F.normalize(thumb, dim=1, eps=1e-12)]
        return torch.cat(blocks, dim=1) / math.sqrt(3.0)


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
            pickles = sorted(x.name for x in p.iterdir() if x.suffix.lower() in _PICKLE_SUFFIXES)
            if pickles:
                raise CheckpointError(f"'{p}' only has pickle weights ({', '.join(pickles[:3])}); refusing to load "
                                      "them (pickles can run code). Use the model's .safetensors release")
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


def load_feature_extractor(spec: str | os.PathLike | None = "toy",
                           device: str | torch.device = "cpu") -> FeatureExtractor:
    """``"toy"`` (or None) -> :class:`ToyFeatureExtractor`; a folder path -> :class:`HFImageFeatureExtractor`."""
    if spec is None or str(spec) == "toy":
        return ToyFeatureExtractor()
    return HFImageFeatureExtractor(spec, device=device)

"""A fixed patch-feature "vision encoder" for MFI in the toy world.

Same interface as :class:`mvs2v_core.pipeline.vision.VisionEncoder`: images ``[N, 3, H, W]`` in
[-1, 1] -> features ``[N, tokens, width]``. The image is resized to ``image_size``, cut into
``patch x patch`` pixel patches, and each patch's raw pixels are one token (width
``3 * patch * patch``), plus one mean-colour token first (as CLIP's class token comes first). These
are exactly the "raw, low-level appearance" features MFI injects, with nothing learned, so the
toy world can test MFI without a downloaded ViT.

A saved encoder is a folder holding ``toy_vision_encoder.json`` (the marker and its settings).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import CheckpointError
from ..utils import atomic_write

VISION_MARKER = "toy_vision_encoder.json"
VISION_FORMAT = "mvs2v-toy-vision-encoder"


class ToyVisionEncoder:
    """Patch pixels as tokens: ``[N, 3, H, W]`` -> ``[N, 1 + (image_size / patch)^2, 3 * patch^2]``."""

    def __init__(self, image_size: int = 32, patch: int = 8) -> None:
        if image_size % patch:
            raise CheckpointError(f"toy vision encoder: image size {image_size} is not a multiple of patch {patch}")
        self.image_size = image_size
        self.patch = patch

    @property
    def width(self) -> int:
        return 3 * self.patch * self.patch

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(images.float(), size=(self.image_size, self.image_size), mode="area")
        tokens = F.unfold(x, kernel_size=self.patch, stride=self.patch).transpose(1, 2)  # [N, P, 3*p*p]
        mean = x.mean(dim=(2, 3))  # [N, 3]
        first = mean.repeat_interleave(self.patch * self.patch, dim=1)[:, None]  # colour token, same width
        return torch.cat([first, tokens], dim=1)


def is_toy_vision_encoder(path: str | os.PathLike) -> bool:
    p = Path(path)
    return p.is_dir() and (p / VISION_MARKER).is_file()


def save_toy_vision_encoder(encoder: ToyVisionEncoder, folder: str | os.PathLike) -> Path:
    out = Path(folder)
    with atomic_write(out / VISION_MARKER) as tmp:
        tmp.write_text(json.dumps({"format": VISION_FORMAT, "image_size": encoder.image_size, "patch": encoder.patch}))
    return out


def load_toy_vision_encoder(path: str | os.PathLike) -> ToyVisionEncoder:
    marker = Path(path) / VISION_MARKER
    try:
        info = json.loads(marker.read_text())
        if info.get("format") != VISION_FORMAT:
            raise ValueError(f"format is {info.get('format')!r}")
        return ToyVisionEncoder(int(info["image_size"]), int(info["patch"]))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"'{marker}' is not a valid toy vision encoder ({e}); write it with save_toy_vision_encoder") from None

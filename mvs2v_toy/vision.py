"""A fixed patch-feature "vision encoder" for MFI in the toy world.

Same interface as :class:`mvs2v_core.pipeline.vision.VisionEncoder` (a
:class:`~mvs2v_core.pipeline.components.VisionEncoderProtocol`): images ``[N, 3, H, W]`` in
[-1, 1] -> features ``[N, tokens, width]``. The image is resized to ``image_size``, cut into
``patch x patch`` pixel patches, and each patch's raw pixels are one token (width
``3 * patch * patch``), plus one mean-colour token first (as CLIP's class token comes first). These
are exactly the "raw, low-level appearance" features MFI injects, with nothing learned, so the
toy world can test MFI without a downloaded ViT.

A saved encoder is a folder holding ``toy_vision_encoder.json`` (the marker and its settings).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F

from ._core import CheckpointError
from .markers import VISION_FORMAT, VISION_MARKER, has_marker, read_marker, write_marker

VISION_VERSION = 1


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
    return has_marker(path, VISION_MARKER)


def save_toy_vision_encoder(encoder: ToyVisionEncoder, folder: str | os.PathLike) -> Path:
    meta = {"format": VISION_FORMAT, "version": VISION_VERSION, "image_size": encoder.image_size,
            "patch": encoder.patch}
    return write_marker(folder, VISION_MARKER, meta, "vision_encoder")


def load_toy_vision_encoder(path: str | os.PathLike) -> ToyVisionEncoder:
    _, meta = read_marker(path, VISION_MARKER, VISION_FORMAT, VISION_VERSION, "toy vision encoder",
                          "mvs2v_toy.vision.save_toy_vision_encoder(ToyVisionEncoder(), folder)")
    try:
        return ToyVisionEncoder(int(meta["image_size"]), int(meta["patch"]))
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"toy vision encoder marker in '{path}' is malformed ({e!r}); write it again") from None

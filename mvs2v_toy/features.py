"""The toy world's image features for ``S_v->r`` / ``S_r->v``: :class:`ToyFeatureExtractor`.

A fixed, training-free colour-layout feature (documented below and in ``docs/toy_world.md``), with
the :class:`~mvs2v_core.evaluation.features.FeatureExtractor` interface of core's DINOv2 / CLIP
extractor. :func:`load_feature_extractor` picks one by the ``--extractor`` value of ``mvs2v eval``.
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F

from ._core import FeatureExtractor, HFImageFeatureExtractor, MVS2VError

__all__ = ["ToyFeatureExtractor", "load_feature_extractor"]


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


def load_feature_extractor(spec: str | os.PathLike | None = "toy",
                           device: str | torch.device = "cpu") -> FeatureExtractor:
    """``"toy"`` (or None) -> :class:`ToyFeatureExtractor`; a folder path -> :class:`HFImageFeatureExtractor`."""
    if spec is None or str(spec) == "toy":
        return ToyFeatureExtractor()
    return HFImageFeatureExtractor(spec, device=device)

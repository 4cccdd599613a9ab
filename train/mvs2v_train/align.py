"""Reference alignment loss: the reference tokens' hidden states pulled toward a vision encoder's features.

REPA (representation alignment) adds to the diffusion loss a term that makes a DiT's intermediate
hidden states predict a frozen vision encoder's patch features through a small MLP; RefAlign applies it
to the reference tokens of a reference-to-video model, training only. Here: the output of DiT block
``align.block`` is read with a forward hook (the DiT is not changed), the tokens of every *filled*
reference slot go through :class:`ReferenceAlignment`'s projector, and each token is scored by ``1 - cos``
against the ``model.vision_encoder`` features of that slot's image, resized to the slot's token grid.

The projector is trained with the model and saved in checkpoints, but it is not part of the adapter:
inference never runs it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from mvs2v_core.errors import MVS2VError


def patch_grid_features(features: torch.Tensor) -> torch.Tensor:
    """Vision features ``[..., T, D]`` -> their patch grid ``[..., g, g, D]``.

    The patch tokens are the last ``g * g`` of the ``T`` (``g = floor(sqrt(T))``); the ones before are
    class / register tokens (CLIP and the toy encoder: 1, DINOv2 with registers: 5, SigLIP: 0), fewer
    than ``g`` and at most 8, so that a non-square grid is not mistaken for a square one.
    """
    tokens = features.shape[-2]
    g = math.isqrt(tokens)
    leading = tokens - g * g
    if g == 0 or leading >= max(g, 2) or leading > 8:
        raise MVS2VError(f"vision features with {tokens} tokens are not a square patch grid (plus a few class "
                         "tokens): the alignment loss needs an encoder that sees a square image")
    return features[..., tokens - g * g:, :].unflatten(-2, (g, g))


def grid_targets(features: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``[B, S, T, D]`` features -> ``[B, S, height, width, D]`` targets (bilinear resize of the patch grid)."""
    grid = patch_grid_features(features.float())  # [B, S, g, g, D]
    b, s = grid.shape[:2]
    x = rearrange(grid, "b s h w d -> (b s) d h w")
    if x.shape[-2:] != (height, width):
        x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)
    return rearrange(x, "(b s) d h w -> b s h w d", b=b, s=s)


class ReferenceAlignment(nn.Module):
    """The projector (an MLP, ``dim -> hidden -> hidden -> feature_dim``, SiLU) and the loss.

    Args:
        dim: the DiT's hidden width.
        feature_dim: the vision encoder's feature width.
        hidden: the MLP's hidden width.
        block: the DiT block whose output is aligned.
    """

    def __init__(self, dim: int, feature_dim: int, hidden: int, block: int) -> None:
        super().__init__()
        self.block = int(block)
        self.proj = nn.Sequential(nn.Linear(dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                  nn.Linear(hidden, feature_dim))

    def per_sample_loss(self, hidden: torch.Tensor, num_video: int, kept: tuple[int, ...],
                        grid_hw: tuple[int, int], features: torch.Tensor, filled: torch.Tensor) -> torch.Tensor:
        """Mean ``1 - cos`` over each sample's filled slots' tokens; 0 for a sample with none.

        Args:
            hidden: block output ``[B, L, dim]`` (video tokens first, then the kept slots' tokens).
            num_video: video tokens at the front of ``hidden``.
            kept: the slot index of each kept slot, in token order.
            grid_hw: ``(H', W')`` tokens per slot.
            features: ``[B, S, T, D]`` one image's features per slot (S = every slot of the layout).
            filled: ``[B, S]`` bool, slots whose image is the target (filled, not reference-dropped).

        Returns:
            ``[B]`` float32.
        """
        h, w = grid_hw
        refs = hidden[:, num_video: num_video + len(kept) * h * w].float()
        refs = rearrange(refs, "b (s h w) d -> b s h w d", s=len(kept), h=h, w=w)
        index = list(kept)
        target = grid_targets(features[:, index], h, w).to(refs.device)
        mask = filled[:, index].to(refs.device, torch.float32)  # [B, S_kept]
        pred = self.proj(refs)
        cos = F.cosine_similarity(pred, target, dim=-1).mean(dim=(2, 3))  # [B, S_kept]
        return ((1.0 - cos) * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


class BlockOutput:
    """A forward hook on one DiT block that keeps the block's output of the current forward pass.

    Used as a context manager around one forward: outside it the hook does nothing, so the
    recomputation of gradient checkpointing in the backward pass leaves the kept tensor alone.
    """

    def __init__(self, block: nn.Module) -> None:
        self.output: torch.Tensor | None = None
        self._active = False
        self._handle = block.register_forward_hook(self._keep)

    def _keep(self, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        if self._active:
            self.output = output

    def __enter__(self) -> "BlockOutput":
        self.output, self._active = None, True
        return self

    def __exit__(self, *exc: object) -> None:
        self._active = False

    def remove(self) -> None:
        self._handle.remove()


__all__ = ["ReferenceAlignment", "BlockOutput", "grid_targets", "patch_grid_features"]

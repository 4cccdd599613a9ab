"""Multi-level Feature Injection (HarmoView): frontal-view ViT features appended to the text context.

A single linear layer maps ViT patch features (width ``vit_dim``: 1280 for the CLIP-ViT-H that Wan
I2V uses, 1152 for SigLIP, ...) to the text-encoder width (4096 for umT5). The projected tokens of
each subject's frontal view are appended after the (zero-padded) text tokens, so the DiT's own
cross-attention sees them next to the prompt. Cross-attention has no positions, so only the set of
tokens matters, not where they sit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import MVS2VError


class MFIProjector(nn.Module):
    """ViT features ``[..., vit_dim]`` -> text-space tokens ``[..., text_dim]``; parameter ``proj``."""

    def __init__(self, vit_dim: int = 1280, text_dim: int = 4096) -> None:
        super().__init__()
        self.vit_dim = vit_dim
        self.text_dim = text_dim
        self.proj = nn.Linear(vit_dim, text_dim)
        # Start near zero so a fresh projector leaves the base model's behaviour almost unchanged.
        nn.init.normal_(self.proj.weight, std=1e-3)
        nn.init.zeros_(self.proj.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.shape[-1] != self.vit_dim:
            raise MVS2VError(
                f"MFI features have width {features.shape[-1]} but the projector expects {self.vit_dim}: "
                f"use the vision encoder the adapter was trained with (width {self.vit_dim})"
            )
        return self.proj(features.to(self.proj.weight.dtype))

    def append(self, context: torch.Tensor, features: torch.Tensor, text_len: int = 512) -> torch.Tensor:
        """Append projected frontal-view features to a text context.

        Args:
            context: ``[B, Lt, text_dim]`` text embeddings (real tokens, or already padded).
            features: ``[B, n_subjects, n_tokens, vit_dim]`` (or ``[B, n_tokens, vit_dim]``), the
                frontal view of each subject.
            text_len: the text is zero-padded to this length first, as the DiT would.

        Returns:
            ``[B, max(Lt, text_len) + n_subjects * n_tokens, text_dim]``.
        """
        if features.ndim == 3:
            features = features[:, None]
        if features.ndim != 4:
            raise MVS2VError(
                f"MFI features must be [batch, subjects, tokens, width], got shape {tuple(features.shape)}"
            )
        if context.shape[-1] != self.text_dim:
            raise MVS2VError(
                f"text context has width {context.shape[-1]} but the MFI projector outputs {self.text_dim}"
            )
        if features.shape[0] != context.shape[0]:
            raise MVS2VError(
                f"MFI features are for {features.shape[0]} samples but the context has {context.shape[0]}"
            )
        if context.shape[1] < text_len:
            context = F.pad(context, (0, 0, 0, text_len - context.shape[1]))
        tokens = self(features).flatten(1, 2).to(context.dtype)
        return torch.cat([context, tokens], dim=1)


class ProxyTokens(nn.Module):
    """Learnable proxy vectors for empty view slots: ``tokens`` ``[slots_per_subject, dim]``.

    One vector per slot index (shared by all subjects, so a model trained with one subject works
    with two). It is broadcast over the empty slot's whole h x w token grid after patch embedding,
    so it does not depend on the resolution.
    """

    def __init__(self, slots_per_subject: int, dim: int, init_std: float = 0.02) -> None:
        super().__init__()
        self.tokens = nn.Parameter(torch.randn(slots_per_subject, dim) * init_std)

"""3D rotary position embedding of the Wan DiT, driven by explicit position ids.

The head dim ``d`` is split over the axes t : h : w as ``d - 4*(d//6) : 2*(d//6) : 2*(d//6)``, theta
10000, and adjacent channel pairs ``(2i, 2i+1)`` are rotated together, as in the original Wan code.
Positions are float, so fractional and negative positions work; the position schemes in
:mod:`mvs2v_core.references.positions` only produce ids, this module turns ids into rotations.
"""

from __future__ import annotations

import torch


def rope_axis_dims(head_dim: int) -> tuple[int, int, int]:
    """Channels per axis (t, h, w) for a head of ``head_dim`` channels."""
    hw = 2 * (head_dim // 6)
    return head_dim - 2 * hw, hw, hw


def rope_inv_freqs(head_dim: int, theta: float = 10000.0) -> list[torch.Tensor]:
    """Per axis, the inverse frequencies ``theta ** (-2i / d_axis)``; float64, ``[d_axis / 2]`` each."""
    out = []
    for d in rope_axis_dims(head_dim):
        out.append(1.0 / theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    return out


def rope_cos_sin(
    position_ids: torch.Tensor, head_dim: int, theta: float = 10000.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotation tables for position ids.

    Args:
        position_ids: ``[L, 3]`` (t, h, w) float positions.
        head_dim: channels per attention head.

    Returns:
        ``(cos, sin)``, each ``[L, head_dim // 2]`` float32: angles are formed in float64 so that
        large positions (reference gaps) lose no precision.
    """
    if position_ids.ndim != 2 or position_ids.shape[-1] != 3:
        raise ValueError(f"position ids must be [L, 3], got {tuple(position_ids.shape)}")
    pos = position_ids.to(torch.float64)
    angles = [
        torch.outer(pos[:, axis], f.to(pos.device)) for axis, f in enumerate(rope_inv_freqs(head_dim, theta))
    ]
    ang = torch.cat(angles, dim=-1)
    return ang.cos().float(), ang.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent channel pairs of ``x``.

    Args:
        x: ``[B, L, heads, head_dim]``.
        cos, sin: ``[L, head_dim // 2]`` from :func:`rope_cos_sin`.

    Returns:
        Tensor of the shape and dtype of ``x``; the rotation is computed in float32.
    """
    xf = x.float().unflatten(-1, (-1, 2))
    x1, x2 = xf[..., 0], xf[..., 1]
    c = cos[:, None, :]
    s = sin[:, None, :]
    out = torch.stack((x1 * c - x2 * s, x1 * s + x2 * c), dim=-1).flatten(-2)
    return out.type_as(x)

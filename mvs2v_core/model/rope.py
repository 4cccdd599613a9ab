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


# Devices whose complex64 multiply the rotation uses; elsewhere (e.g. MPS) it runs in real arithmetic.
COMPLEX_ROPE_DEVICES = ("cpu", "cuda")


def rope_rotation(cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """The rotation ``cos + i sin`` as one complex table, built once per forward.

    Args:
        cos, sin: ``[L, head_dim // 2]`` from :func:`rope_cos_sin`.

    Returns:
        complex64 ``[L, 1, head_dim // 2]`` (broadcast over the heads), for :func:`apply_rope`.
    """
    return torch.complex(cos.float(), sin.float()).unsqueeze(-2)


def _pairs_as_complex(xf: torch.Tensor) -> torch.Tensor:
    """A float32 ``[..., d]`` tensor viewed as ``[..., d / 2]`` complex64 (adjacent pairs), copying only
    when the memory layout does not allow the view."""
    pairs = xf.unflatten(-1, (-1, 2))
    if pairs.stride(-1) != 1 or pairs.storage_offset() % 2 or any(st % 2 for st in pairs.stride()[:-1]):
        pairs = pairs.contiguous()
    return torch.view_as_complex(pairs)


def _apply_rope_real(xf: torch.Tensor, c: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """The same rotation in real arithmetic; ``xf`` float32, ``c``, ``s`` ``[L, 1, head_dim // 2]``."""
    x1, x2 = xf.unflatten(-1, (-1, 2)).unbind(-1)
    out = torch.empty_like(xf)
    out[..., 0::2] = x1 * c - x2 * s
    out[..., 1::2] = x1 * s + x2 * c
    return out


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor | None = None) -> torch.Tensor:
    """Rotate adjacent channel pairs of ``x``: pair ``(x1, x2)`` becomes ``(x1 c - x2 s, x1 s + x2 c)``.

    One complex multiply (as the original Wan code does): a single pass over ``x``, no per-call
    stacking of the two halves.

    Args:
        x: ``[B, L, heads, head_dim]``.
        cos, sin: ``[L, head_dim // 2]`` from :func:`rope_cos_sin`; or ``cos`` alone holding the
            complex table of :func:`rope_rotation` (``[L, 1, head_dim // 2]`` or ``[L, head_dim // 2]``)
            and ``sin`` None, which is what :class:`~mvs2v_core.model.transformer.WanDiT` passes.

    Returns:
        Tensor of the shape and dtype of ``x``; the rotation is computed in float32.
    """
    if sin is None and not cos.is_complex():
        raise ValueError("apply_rope: give real cos and sin tables, or the complex table of rope_rotation")
    xf = x.float()
    if xf.device.type not in COMPLEX_ROPE_DEVICES:
        c, s = (cos.real, cos.imag) if sin is None else (cos.float(), sin.float())
        c, s = (c, s) if c.ndim == 3 else (c.unsqueeze(-2), s.unsqueeze(-2))
        return _apply_rope_real(xf, c, s).type_as(x)
    if sin is None:
        rot = cos if cos.ndim == 3 else cos.unsqueeze(-2)
    else:
        rot = rope_rotation(cos, sin)
    return torch.view_as_real(_pairs_as_complex(xf) * rot).flatten(-2).type_as(x)

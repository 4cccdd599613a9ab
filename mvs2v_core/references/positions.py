"""Position ids for the DiT's 3D RoPE: video tokens plus reference slots.

Wan's DiT rotates queries and keys with a 3D RoPE over the axes ``(t, h, w)``. Following ComfyUI's
Wan ``rope_encode``, the ids are explicit float rows ``[t, h, w]`` (one per token), so fractional
and negative positions work and each scheme is just a different table of ids. Every function here
is pure: the result depends only on the arguments (no module state, no randomness), and the ids
have no batch dimension, so every sample of a batch gets the same positions.

Token order (see :mod:`mvs2v_core.references.layout`): the ``F*H*W`` video tokens in t-major
raster order, then one latent frame of ``H*W`` tokens per reference slot, subject-major,
slot-minor. Positions are always computed for the FULL layout (filled and empty slots); under the
``drop`` empty-slot mode the rows of empty slots are removed and all other rows are unchanged, so
a slot's position never depends on which other slots happen to be filled.

Schemes (``F`` = video latent frames, ``K`` = slots per subject, slot ``k`` of subject ``j``):

``vanilla`` (Phantom-Wan)
    slot ``i`` (token order, over all slots) at ``t = F + i``; same ``h, w`` grid as the video.
``ts`` (MV-S2V TS-RoPE)
    subject 0 starts at ``t = F + gap``; the views of one subject sit on adjacent ``t``
    (``start_j + k``); subject ``j+1`` starts at ``end_j + 1 + gap``. ``gap=0`` with one subject
    is vanilla.
``ss`` (MV-S2V SS-RoPE, the spatial-shift ablation)
    the views of a subject share one ``t`` and are shifted along ``w`` by ``k*W``; subject ``j``
    at ``t = F + gap + j*(1 + gap)``.
``jump`` (HarmoView Jump-RoPE)
    adjacent views within a subject, ``identity_gap`` empty indices between subjects, and
    ``ref_gap`` empty indices between the whole reference block and the video. ``placement=
    "after"``: the first slot is at ``F + ref_gap``; ``"before"``: the last slot is at
    ``-1 - ref_gap`` and the block extends to negative ``t`` while the video stays at ``0..F-1``.

Defaults (neither paper states its shift; the full reasoning is in ``docs/positions.md``).
Wan's head dim is 128, so the t axis gets ``128 - 4*(128//6) = 44`` dims = 22 frequencies
``10000**(-2i/44)`` from 1 rad/index down to ~1.5e-4 rad/index; RoPE only sees *relative*
distances, and a Wan 2.1 / 2.2-A14B clip (81 frames -> 21 latent frames) spans at most 20 indices.

* ``gap = 8`` (ts, ss): the nearest views of two subjects are then 9 indices apart, farther than
  the farthest views of one subject for any ``K <= 9`` (``K - 1``), so "other subject" is always
  farther than "other view". 8 latent frames are ~32 video frames (~2 s at 16 fps): a distance the
  base model saw inside clips (related but clearly different content), and the references stay
  close to Phantom's contiguous prior that MV-S2V fine-tunes from.
* ``ref_gap = 9`` (jump): the first reference sits at ``F + 9``, exactly where ComfyUI's Wan2.2-S2V
  puts its reference frames (``max(30, F + 9)``) for the 21-frame case.
* ``identity_gap = 24`` (jump): larger than the longest distance inside a Wan 2.1 / 2.2-A14B clip
  (20), so two identities are never as close as two frames of one pretraining clip (HarmoView's
  "significant" gap for isolation), while 17 of the 22 t frequencies still turn by less than pi
  over that distance, so it stays in a range the RoPE resolves instead of a far-off region where
  the base model sees the references as unrelated noise.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..errors import MVS2VError
from .layout import ReferenceLayout
from .settings import (
    EmptySlotMode,
    Placement,
    PositionScheme,
    SchemeName,
    parse_option,
)

Grid = tuple[int, int, int]


# ---- per-slot placement (the core of each scheme) ------------------------------------------------


def slot_time_index(num_video_frames: int, layout: ReferenceLayout, scheme: PositionScheme) -> list[float]:
    """The t index of every slot, in token order, before any dropping.

    Args:
        num_video_frames: F, the video's latent frames.
        layout: the reference layout (only its subject and slot counts matter).
        scheme: the position scheme.

    Returns:
        ``layout.num_slots`` floats; entry ``j*K + k`` is slot ``k`` of subject ``j``.
    """
    f = _check_frames(num_video_frames)
    n, k = layout.num_subjects, layout.slots_per_subject
    if scheme.name == SchemeName.VANILLA:
        return [float(f + i) for i in range(n * k)]
    if scheme.name == SchemeName.SS:
        # One t per subject; views are told apart by the w shift (see slot_w_offset).
        return [f + scheme.gap + j * (1 + scheme.gap) for j in range(n) for _ in range(k)]
    # ts and jump: each subject is a block of K adjacent t, blocks separated by a fixed gap. Slot
    # t = start_j + k with start_j computed first, so views of a subject are exactly adjacent even
    # with fractional gaps (no rounding drift between views).
    between = scheme.gap if scheme.name == SchemeName.TS else scheme.identity_gap
    rel = [j * (k + between) for j in range(n)]  # subject starts, relative to the first one
    if scheme.name == SchemeName.TS:
        first = f + scheme.gap
    elif scheme.placement == Placement.AFTER:
        first = f + scheme.ref_gap
    else:
        # The last slot lands at -1 - ref_gap, leaving ref_gap empty indices before video t = 0.
        last = (rel[-1] if rel else 0.0) + (k - 1)
        first = -1.0 - scheme.ref_gap - last
    return [float(first + r + v) for r in rel for v in range(k)]


def slot_w_offset(width: int, layout: ReferenceLayout, scheme: PositionScheme) -> list[float]:
    """The w shift of every slot, in token order, before any dropping.

    Zero everywhere except under ``ss``, where slot ``k`` of a subject is shifted by ``k * width``
    so its views tile side by side along w at one shared t.

    Args:
        width: W, the grid width in patches.
    """
    if scheme.name != SchemeName.SS:
        return [0.0] * layout.num_slots
    return [float(v * width) for _ in range(layout.num_subjects) for v in range(layout.slots_per_subject)]


def slot_positions(
    grid: Sequence[int], layout: ReferenceLayout, scheme: PositionScheme
) -> list[tuple[float, float]]:
    """Per slot (token order, before dropping): ``(t, w_offset)``."""
    f, _, w = _check_grid(grid)
    return list(zip(slot_time_index(f, layout, scheme), slot_w_offset(w, layout, scheme)))


# ---- id tables -----------------------------------------------------------------------------------


def _check_frames(num_video_frames: int) -> int:
    if isinstance(num_video_frames, bool) or not isinstance(num_video_frames, int) or num_video_frames < 1:
        raise MVS2VError(f"the video must have at least 1 latent frame, got {num_video_frames!r}")
    return num_video_frames


def _check_grid(grid: Sequence[int]) -> Grid:
    try:
        f, h, w = (int(x) for x in grid)
        ok = all(not isinstance(x, bool) and int(x) == x for x in grid)
    except (TypeError, ValueError):
        ok = False
    if not ok or min(f, h, w) < 1:
        raise MVS2VError(
            f"grid {grid!r} is not a video grid: give (frames, height, width) in patches, three "
            "integers >= 1 (latent frames, latent height / 2, latent width / 2)"
        )
    return f, h, w


def _plane(h: int, w: int, device: torch.device | str | None) -> torch.Tensor:
    """``[H*W, 2]`` float32 (h, w) rows in raster order (h, then w)."""
    hh = torch.arange(h, dtype=torch.float32, device=device)
    ww = torch.arange(w, dtype=torch.float32, device=device)
    return torch.stack(torch.meshgrid(hh, ww, indexing="ij"), dim=-1).reshape(h * w, 2)


def video_position_ids(grid: Sequence[int], device: torch.device | str | None = None) -> torch.Tensor:
    """Plain Wan positions of the video tokens.

    Args:
        grid: ``(F, H, W)`` in patches.

    Returns:
        ``[F*H*W, 3]`` float32 rows ``(t, h, w)`` in t-major raster order (t, then h, then w).
    """
    f, h, w = _check_grid(grid)
    plane = _plane(h, w, device)
    t = torch.arange(f, dtype=torch.float32, device=device).repeat_interleave(h * w).unsqueeze(1)
    return torch.cat([t, plane.repeat(f, 1)], dim=1)


def reference_position_ids(
    grid: Sequence[int],
    layout: ReferenceLayout,
    scheme: PositionScheme,
    empty_slot_mode: EmptySlotMode | str = EmptySlotMode.GRAY,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Positions of the reference tokens.

    Args:
        grid: ``(F, H, W)`` of the video in patches; each slot is one ``H x W`` latent frame.
        layout: the reference layout.
        scheme: the position scheme.
        empty_slot_mode: ``proxy`` / ``gray`` keep every slot, ``drop`` removes empty slots' rows.

    Returns:
        ``[n_kept_slots*H*W, 3]`` float32 rows ``(t, h, w)``: kept slots in token order, each in
        raster order (h, then w).
    """
    f, h, w = _check_grid(grid)
    kept = layout.kept_slots(empty_slot_mode)  # validates the mode
    if not kept:
        return torch.zeros(0, 3, dtype=torch.float32, device=device)
    t_idx = slot_time_index(f, layout, scheme)
    w_off = slot_w_offset(w, layout, scheme)
    plane = _plane(h, w, device)
    rows = []
    for i in kept:
        block = plane.clone()
        block[:, 1] += w_off[i]
        t = torch.full((h * w, 1), t_idx[i], dtype=torch.float32, device=device)
        rows.append(torch.cat([t, block], dim=1))
    return torch.cat(rows, dim=0)


def build_position_ids(
    grid: Sequence[int],
    layout: ReferenceLayout | None,
    scheme: PositionScheme,
    empty_slot_mode: EmptySlotMode | str = EmptySlotMode.GRAY,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """All position ids of the DiT sequence.

    Returns:
        ``[L, 3]`` float32 with ``L = F*H*W + n_kept_slots*H*W``: video rows then reference rows.
        There is no batch dimension: every sample in a batch shares these ids.
    """
    empty_slot_mode = parse_option(EmptySlotMode, empty_slot_mode, "empty-slot mode")
    video = video_position_ids(grid, device=device)
    if layout is None:
        return video
    return torch.cat([video, reference_position_ids(grid, layout, scheme, empty_slot_mode, device)], dim=0)


__all__ = [
    "PositionScheme",  # defined in .settings, with the other reference settings
    "slot_time_index",
    "slot_w_offset",
    "slot_positions",
    "video_position_ids",
    "reference_position_ids",
    "build_position_ids",
]

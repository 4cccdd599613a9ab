"""The reference-token path: one implementation, used by :class:`~mvs2v_core.model.transformer.WanDiT`
and by the ComfyUI patch of a native Wan model (``nodes/patch.py``).

Given the video's patch grid, the reference layout and the :class:`ReferenceSettings`, a
:class:`ReferenceTokenPlan` says

* which slots produce tokens (every slot, or only the filled ones under ``drop``),
* which of those are empty slots that become the adapter's proxy vector (under ``proxy``),
* the position id of every token of the sequence (video rows, then reference rows), and
* the timestep of every reference frame (the video's, or 0).

With ``reference_frames = N`` the references are placed as if the video had ``N`` frames while the
video rows stay this call's own: what every window of a long video needs (context windows), so
that a window shorter than the others, or one with an extra leading frame, still sees the
references at the positions every other window sees them.

The sequence is always ``[video tokens | kept slot 0 | kept slot 1 | ...]``, each slot one latent
frame of ``H*W`` patches. Both callers patch-embed the kept slots with the model's own Conv3d and
append them after the video tokens; the plan does the rest, so the two agree by construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ..errors import MVS2VError
from .layout import ReferenceLayout
from .positions import reference_position_ids, video_position_ids
from .settings import EmptySlotMode, RefTimestep, ReferenceSettings


def proxy_slot_table(layout: ReferenceLayout, settings: ReferenceSettings) -> list[tuple[int, int]]:
    """Under ``proxy``: ``(kept position, view index)`` of every empty slot, else ``[]``.

    The kept position counts the slots that produce tokens (token order); the view index picks
    the proxy vector (one per slot index, shared by all subjects).
    """
    if settings.empty_slot_mode != EmptySlotMode.PROXY:
        return []
    filled, views = layout.filled, layout.slot_view()
    kept = layout.kept_slots(settings.empty_slot_mode)
    return [(pos, views[s]) for pos, s in enumerate(kept) if not filled[s]]


def check_proxy_tokens(
    layout: ReferenceLayout, settings: ReferenceSettings, proxy_tokens: torch.Tensor | None, remedy: str
) -> None:
    """Refuse a layout whose empty slots need proxy vectors that are missing or of the wrong shape.

    Args:
        proxy_tokens: ``[K, dim]`` or None.
        remedy: how the user gets proxy tokens where they are (CLI flag, node to connect...).
    """
    if not proxy_slot_table(layout, settings):
        return
    if proxy_tokens is None:
        raise MVS2VError(
            f"the reference layout has empty slots and the empty-slot mode is 'proxy', but no proxy tokens "
            f"were given: {remedy}, or use the 'gray' or 'drop' mode"
        )
    if proxy_tokens.ndim != 2 or proxy_tokens.shape[0] != layout.slots_per_subject:
        raise MVS2VError(
            f"proxy tokens have shape {tuple(proxy_tokens.shape)} but the layout has "
            f"{layout.slots_per_subject} slots per subject: use an adapter trained with "
            f"{layout.slots_per_subject} slots per subject, or change the slots per subject"
        )


def check_sample_layouts(layout: ReferenceLayout, sample_layouts: Sequence[ReferenceLayout],
                         settings: ReferenceSettings) -> None:
    """Refuse per-sample layouts that cannot share one forward: under ``drop`` the kept slots (and so the
    token count) depend on which slots are filled; otherwise the subjects and slot counts must agree."""
    if settings.empty_slot_mode == EmptySlotMode.DROP:
        raise MVS2VError("per-sample layouts need every slot to make tokens: use 'proxy' or 'gray', or batch only "
                         "samples with the same filled slots under 'drop'")
    for lay in sample_layouts:
        if (lay.num_subjects, lay.slots_per_subject) != (layout.num_subjects, layout.slots_per_subject):
            raise MVS2VError(f"per-sample layouts must have the batch layout's {layout.num_subjects} subject(s) x "
                             f"{layout.slots_per_subject} slots, got {lay.num_subjects} x {lay.slots_per_subject}")


def extend_timesteps(
    timestep: torch.Tensor, video_frames: int, tokens_per_frame: int, ref_frames: int, mode: RefTimestep
) -> torch.Tensor:
    """Timesteps for video + reference frames, at the granularity they came in.

    Args:
        timestep: ``[B]`` (one per sample), ``[B, F]`` (one per video latent frame, as ComfyUI
            gives Wan 2.2) or ``[B, F*H*W]`` (one per video token).
        video_frames: F; tokens_per_frame: H*W (patches); ref_frames: slots that produce tokens.
        mode: ``same``: references take the sample's timestep (its largest when it varies, i.e.
            the clip's noise level); ``zero``: references are clean, t = 0.

    Returns:
        ``timestep`` itself for ``[B]`` with ``same`` (every token shares it); else ``[B, F + S]``
        per frame, or ``[B, (F + S)*H*W]`` when the input was per token.
    """
    if ref_frames == 0:
        return timestep
    if timestep.ndim == 1:
        if mode == RefTimestep.SAME:
            return timestep
        b = timestep.shape[0]
        return torch.cat([timestep[:, None].expand(b, video_frames), timestep.new_zeros(b, ref_frames)], dim=1)
    if timestep.ndim != 2:
        raise MVS2VError(f"timesteps of shape {tuple(timestep.shape)} are not understood (expected [B] or [B, L])")
    b, n = timestep.shape
    if n == video_frames:
        per = 1
    elif n == video_frames * tokens_per_frame:
        per = tokens_per_frame
    else:
        raise MVS2VError(
            f"timesteps of shape {tuple(timestep.shape)} match neither {video_frames} frames nor "
            f"{video_frames * tokens_per_frame} tokens of the video"
        )
    if mode == RefTimestep.ZERO:
        ref = timestep.new_zeros(b, ref_frames * per)
    else:
        ref = timestep.amax(dim=1, keepdim=True).expand(b, ref_frames * per)
    return torch.cat([timestep, ref], dim=1)


@dataclass(frozen=True)
class ReferenceTokenPlan:
    """Where the reference tokens of one forward pass go, for one video grid.

    Attributes:
        grid: ``(F, H, W)``, the video in patches.
        settings: the reference settings.
        kept: slot indices (token order) that produce tokens.
        proxy_fill: ``(kept position, view index)`` per empty slot that becomes a proxy vector.
        reference_frames: the video length (frames of the grid) the references are placed after;
            ``grid[0]`` (None) unless :meth:`build` was given another.
    """

    grid: tuple[int, int, int]
    layout: ReferenceLayout
    settings: ReferenceSettings
    kept: tuple[int, ...]
    proxy_fill: tuple[tuple[int, int], ...]
    sample_proxy_fill: tuple[tuple[tuple[int, int], ...], ...] | None = None
    reference_frames: int | None = None

    @classmethod
    def build(cls, grid: Sequence[int], layout: ReferenceLayout, settings: ReferenceSettings,
              sample_layouts: Sequence[ReferenceLayout] | None = None,
              reference_frames: int | None = None) -> "ReferenceTokenPlan":
        """The plan for ``layout``; ``sample_layouts`` (one per sample) lets the samples of one batch fill
        different slots under ``proxy`` / ``gray``, where every slot makes tokens at a position that does
        not depend on which slots are filled: only the proxy fill differs per sample.

        Args:
            grid: ``(F, H, W)`` of this call's video, in patches.
            reference_frames: place the references as if the video had this many frames (in the grid's
                units, >= F); None: the call's own F. The video rows, timesteps and token counts stay F's.
        """
        if layout.slots_per_subject != settings.slots_per_subject:
            raise MVS2VError(
                f"the reference layout has {layout.slots_per_subject} slots per subject but the settings say "
                f"{settings.slots_per_subject}: build the layout with the settings' slot count"
            )
        f, h, w = (int(x) for x in grid)
        basis = f if reference_frames is None else int(reference_frames)
        if basis < f:
            raise MVS2VError(f"references placed after {reference_frames} frames cannot follow a video of {f} "
                             f"frames: give reference_frames >= the call's frames (the longest window)")
        kept = tuple(layout.kept_slots(settings.empty_slot_mode))
        per_sample = None
        if sample_layouts is not None:
            check_sample_layouts(layout, sample_layouts, settings)
            per_sample = tuple(tuple(proxy_slot_table(lay, settings)) for lay in sample_layouts)
        return cls((f, h, w), layout, settings, kept, tuple(proxy_slot_table(layout, settings)), per_sample, basis)

    @property
    def reference_grid(self) -> tuple[int, int, int]:
        """``(reference_frames, H, W)``: the grid the reference positions are computed for."""
        frames = self.grid[0] if self.reference_frames is None else self.reference_frames
        return (frames, self.grid[1], self.grid[2])

    @property
    def tokens_per_frame(self) -> int:
        return self.grid[1] * self.grid[2]

    @property
    def num_video_tokens(self) -> int:
        return self.grid[0] * self.tokens_per_frame

    @property
    def num_reference_tokens(self) -> int:
        return len(self.kept) * self.tokens_per_frame

    def select_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """``[B, C, S, h, w]`` (one frame per slot, every slot) -> ``[B, C, S_kept, h, w]``."""
        if latents.ndim != 5 or latents.shape[2] != self.layout.num_slots:
            raise MVS2VError(
                f"reference latents {tuple(latents.shape)} do not hold one frame per slot "
                f"({self.layout.num_slots} slots): give [batch, channels, slots, height, width]"
            )
        return latents[:, :, list(self.kept)]

    def position_ids(self, device: torch.device | str | None = None) -> torch.Tensor:
        """``[L, 3]`` float32 ``(t, h, w)`` rows: the video's (from 0), then every kept slot's, placed after
        :attr:`reference_frames` frames (:meth:`reference_position_ids`)."""
        return torch.cat([video_position_ids(self.grid, device), self.reference_position_ids(device)], dim=0)

    def reference_position_ids(self, device: torch.device | str | None = None) -> torch.Tensor:
        """``[S_kept*H*W, 3]`` float32: the kept slots' rows alone (what the cached references need)."""
        return reference_position_ids(self.reference_grid, self.layout, self.settings.scheme,
                                      self.settings.empty_slot_mode, device)

    def fill_proxies(self, tokens: torch.Tensor, proxy_tokens: torch.Tensor | None,
                     start: int | None = None) -> torch.Tensor:
        """Put each empty slot's proxy vector over that slot's whole ``H*W`` token grid.

        Args:
            tokens: ``[B, L, dim]``, the whole sequence (video first) after patch embedding, or the
                reference tokens alone with ``start = 0``.
            proxy_tokens: ``[K, dim]``; needed when :attr:`proxy_fill` is not empty.
            start: where the first kept slot's tokens begin in ``tokens`` (default: after the video).

        Returns:
            ``tokens`` itself when nothing is filled, else a new tensor (differentiable in both).
        """
        per_sample = self.sample_proxy_fill is not None
        fills = list(self.sample_proxy_fill) if per_sample else [self.proxy_fill]  # type: ignore[arg-type]
        if per_sample and len(fills) != tokens.shape[0]:
            raise MVS2VError(f"{len(fills)} per-sample layouts for a batch of {tokens.shape[0]}: give one per sample")
        if not any(fills):
            return tokens
        if proxy_tokens is None:
            raise MVS2VError("empty slots need proxy tokens under the 'proxy' mode, but none were given")
        n = self.tokens_per_frame
        first = self.num_video_tokens if start is None else int(start)
        proxy = proxy_tokens.to(device=tokens.device, dtype=tokens.dtype)
        out = tokens.clone()
        for b, fill in enumerate(fills):
            rows = slice(b, b + 1) if per_sample else slice(None)
            for pos, view in fill:
                at = first + pos * n
                out[rows, at : at + n] = proxy[view]  # broadcast over the rows and the slot's n tokens
        return out

    def timesteps(self, timestep: torch.Tensor) -> torch.Tensor:
        """The video's timesteps extended over the reference frames (see :func:`extend_timesteps`)."""
        return extend_timesteps(
            timestep, self.grid[0], self.tokens_per_frame, len(self.kept), self.settings.ref_timestep
        )


__all__ = ["ReferenceTokenPlan", "proxy_slot_table", "check_proxy_tokens", "check_sample_layouts", "extend_timesteps"]

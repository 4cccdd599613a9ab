"""Context windows for long videos: run the model on overlapping windows of latent frames and blend.

A video longer than what the model handles well (or than what fits in memory) is split along its
latent frames into windows of ``length`` frames overlapping by ``overlap`` frames. Every model call
sees one window: its frames get positions from 0 (as if it were a clip of its own, what ComfyUI's
context windows give a Wan model too) and every reference slot, placed after ``length`` frames in
every window (:data:`REFERENCE_FRAMES_KEY`), so no window sees the references anywhere else and
there is no reference "flash" at a window border. The windows' predictions are blended frame by
frame with weights divided by their sum.

Schedule (the semantics of ComfyUI's ``static_standard``, written here from its description):
windows start at 0 and step by ``length - overlap``; the first window that would reach the last
frame is shifted back to end exactly at it, and is the last. A video of at most ``length`` frames is
one window. Every window has exactly ``min(length, frames)`` frames, so the references sit at the
same positions in all of them and, under cached references, one key/value cache serves them all.

Blending (``fuse``):

``pyramid`` (default, as ComfyUI's default)
    frame ``i`` of a window weighs ``min(i + 1, length - i)``: highest in the middle, 1 at both
    edges, so an overlap moves from one window to the next over its whole width.
``overlap-linear``
    weight 1 everywhere except over the first / last ``overlap`` frames of a window that has a
    neighbour on that side, which ramp linearly ``k / (overlap + 1)`` (``k = 1 .. overlap``) up /
    down; two windows overlapping by exactly ``overlap`` frames then sum to 1 before the division.

All guidance passes run in each window (the wrapper goes around the model function that
:func:`~mvs2v_core.sampling.guidance.run_passes` calls), so the guided velocity is the blend of the
windows' guided velocities (the guidance combination and the blend are both linear).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import MVS2VError
from . import FUSE_METHODS
from .guidance import Condition, ModelFn

__all__ = ["FUSE_METHODS", "REFERENCE_FRAMES_KEY", "ContextWindows", "windowed_model_fn"]

REFERENCE_FRAMES_KEY = "reference_frames"
"""Condition key the windowed model function sets on every window call: the latent frames the
references are placed after (the window length). A model function that adds references must pass
it on (``ReferenceConditioning.reference_frames``); one without references may ignore it."""


def _positive_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise MVS2VError(f"context-window {name} must be an integer >= {low}, got {value!r}")
    return value


@dataclass(frozen=True)
class ContextWindows:
    """Windows of ``length`` latent frames overlapping by ``overlap``, blended with ``fuse``.

    Attributes:
        length: latent frames per window (>= 1).
        overlap: latent frames two neighbouring windows share (0 <= overlap < length).
        fuse: ``pyramid`` or ``overlap-linear`` (see the module docstring).
    """

    length: int
    overlap: int = 0
    fuse: str = FUSE_METHODS[0]

    def __post_init__(self) -> None:
        _positive_int("length", self.length, 1)
        _positive_int("overlap", self.overlap, 0)
        if self.overlap >= self.length:
            raise MVS2VError(f"the context overlap ({self.overlap} latent frames) must be shorter than the window "
                             f"({self.length}): lower the overlap or lengthen the window")
        if self.fuse not in FUSE_METHODS:
            raise MVS2VError(f"context fuse method {self.fuse!r} is unknown: use one of {', '.join(FUSE_METHODS)}")

    def schedule(self, num_frames: int) -> list[range]:
        """The windows over ``num_frames`` latent frames, in order; each a ``range`` of ``min(length,
        num_frames)`` consecutive frames. Together they cover every frame."""
        f = _positive_int("frame count", num_frames, 1)
        if f <= self.length:
            return [range(f)]
        step = self.length - self.overlap
        starts, s = [], 0
        while s + self.length < f:  # a window that ends before the last frame
            starts.append(s)
            s += step
        starts.append(f - self.length)  # the last window, shifted back to end at the last frame
        return [range(a, a + self.length) for a in starts]

    def window_weights(self, window: range, num_frames: int) -> Tensor:
        """``[len(window)]`` float64 raw blending weights of one window (all > 0)."""
        n = len(window)
        if self.fuse == "pyramid":
            return torch.tensor([float(min(i + 1, n - i)) for i in range(n)], dtype=torch.float64)
        w = torch.ones(n, dtype=torch.float64)
        o = min(self.overlap, n)
        ramp = torch.arange(1, o + 1, dtype=torch.float64) / (o + 1)  # k / (overlap + 1), never 0
        if o and window.start > 0:  # a window before this one: fade in
            w[:o] = ramp
        if o and window.stop < num_frames:  # a window after this one: fade out
            w[n - o:] = torch.minimum(w[n - o:], ramp.flip(0))
        return w

    def blend_weights(self, num_frames: int) -> list[Tensor]:
        """Per window of :meth:`schedule`, ``[len(window)]`` float64 weights divided by their sum over all
        windows at each frame: at every frame the windows' weights add up to 1."""
        windows = self.schedule(num_frames)
        raw = [self.window_weights(w, num_frames) for w in windows]
        total = torch.zeros(num_frames, dtype=torch.float64)
        for w, r in zip(windows, raw):
            total[w.start:w.stop] += r
        return [r / total[w.start:w.stop] for w, r in zip(windows, raw)]


def windowed_model_fn(model_fn: ModelFn, windows: ContextWindows, frame_dim: int = 2) -> ModelFn:
    """``model_fn`` run per context window, its predictions blended.

    Args:
        model_fn: ``(x [B, C, F, H, W], t [B], cond) -> v`` of ``x``'s shape; it receives each window's
            frames ``x[:, :, a:b]`` and ``cond`` plus :data:`REFERENCE_FRAMES_KEY` = the window length.
        windows: the window length, overlap and blending.
        frame_dim: the latent frame axis of ``x`` (2 for ``[B, C, F, H, W]``).

    Returns:
        ``(x, t, cond) -> v``: for every frame, the weighted mean of the predictions of the windows
        that hold it (one window: that window's prediction, unchanged up to the weight 1).
    """
    cache: dict[int, tuple[list[range], list[Tensor]]] = {}  # per frame count: one schedule per generation

    def fn(x: Tensor, t: Tensor, cond: Condition) -> Tensor:
        f = int(x.shape[frame_dim])
        if f not in cache:
            cache[f] = (windows.schedule(f), windows.blend_weights(f))
        plan, weights = cache[f]
        sub = {**cond, REFERENCE_FRAMES_KEY: len(plan[0])}  # the same basis in every window
        out: Tensor | None = None
        for window, w in zip(plan, weights):
            pred = model_fn(x.narrow(frame_dim, window.start, len(window)), t, sub)
            if pred.shape[frame_dim] != len(window):
                raise MVS2VError(f"the model returned {pred.shape[frame_dim]} frames for a window of {len(window)}: "
                                 "it must return one prediction per input frame")
            if out is None:
                shape = list(pred.shape)
                shape[frame_dim] = f
                out = pred.new_zeros(shape)
            view = [1] * pred.ndim
            view[frame_dim] = len(window)
            out.narrow(frame_dim, window.start, len(window)).add_(pred * w.to(pred).view(view))
        return out  # type: ignore[return-value]

    return fn

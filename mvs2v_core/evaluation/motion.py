"""Motion of a clip from dense optical flow: amplitude and temporal variation (OpenCV Farneback).

Flow ``v_t(p)`` (pixels) from frame ``t`` to ``t+1`` is computed on grayscale frames (ITU-R 601
luma) at the clip's own resolution with ``cv2.calcOpticalFlowFarneback`` and the usual parameters
(pyramid scale 0.5, 3 levels, window 15, 3 iterations, poly_n 5, poly_sigma 1.2)::

    amplitude = mean over t = 0..F-2 of  mean over pixels p of |v_t(p)|          [pixels / frame]
    variation = mean over t = 0..F-3 of  mean over pixels p of |v_{t+1}(p) - v_t(p)|  [pixels / frame^2]

``amplitude`` is OpenS2V-Eval's kind of motion amplitude (mean Farneback magnitude); it scales with
the resolution, so ``amplitude_per_diagonal`` (divided by the frame diagonal in pixels) is also
given for comparing clips of different sizes. ``variation`` is the mean per-pixel change of the
flow between consecutive frame pairs (an Eulerian acceleration): 0 for a still clip and for motion
at constant velocity, large for jitter and sudden stops -- lower is smoother. It needs 3 frames.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import MVS2VError

__all__ = ["FARNEBACK_PARAMS", "optical_flow", "motion_statistics"]

FARNEBACK_PARAMS = {"pyr_scale": 0.5, "levels": 3, "winsize": 15, "iterations": 3, "poly_n": 5,
                    "poly_sigma": 1.2, "flags": 0}


def _import_cv2() -> Any:
    try:
        import cv2
    except ImportError:
        raise MVS2VError("motion metrics need OpenCV: pip install opencv-python-headless "
                         "(or pip install mvs2v[eval])") from None
    return cv2


def _gray(frames: Any) -> np.ndarray:
    """``[F, H, W, 3]`` uint8 or float in [0, 1] -> uint8 luma ``[F, H, W]``."""
    a = np.asarray(frames)
    if a.ndim != 4 or a.shape[-1] != 3:
        raise MVS2VError(f"motion metrics expect frames [F, H, W, 3], got {a.shape}")
    x = a.astype(np.float64) / 255.0 if a.dtype == np.uint8 else np.clip(a.astype(np.float64), 0.0, 1.0)
    luma = x @ np.array([0.299, 0.587, 0.114])
    return (luma * 255.0 + 0.5).astype(np.uint8)


def optical_flow(frames: Any) -> np.ndarray:
    """Farneback flow between consecutive frames.

    Args:
        frames: ``[F, H, W, 3]`` uint8 or float in [0, 1], ``F >= 2``.

    Returns:
        float32 ``[F-1, H, W, 2]``: ``(dx, dy)`` in pixels from frame ``t`` to ``t+1``.
    """
    cv2 = _import_cv2()
    gray = _gray(frames)
    if gray.shape[0] < 2:
        raise MVS2VError(f"optical flow needs at least 2 frames, got {gray.shape[0]}")
    flows = [cv2.calcOpticalFlowFarneback(gray[t], gray[t + 1], None, **FARNEBACK_PARAMS)
             for t in range(gray.shape[0] - 1)]
    return np.stack(flows).astype(np.float32)


def motion_statistics(frames: Any, flow: np.ndarray | None = None) -> dict[str, Any]:
    """Amplitude and variation of a clip's motion (definitions in the module docstring).

    Args:
        frames: ``[F, H, W, 3]``, ``F >= 2``.
        flow: its :func:`optical_flow`, when already computed.

    Returns:
        ``{"amplitude", "amplitude_per_diagonal", "amplitude_per_pair" [F-1], "variation" (None for
        F = 2), "variation_per_step" [F-2], "resolution" [H, W]}``.
    """
    flow = optical_flow(frames) if flow is None else np.asarray(flow, dtype=np.float32)
    h, w = flow.shape[1:3]
    per_pair = np.linalg.norm(flow, axis=-1).mean(axis=(1, 2)).astype(np.float64)
    steps = (np.linalg.norm(np.diff(flow, axis=0), axis=-1).mean(axis=(1, 2)).astype(np.float64)
             if flow.shape[0] >= 2 else np.zeros(0))
    amplitude = float(per_pair.mean())
    return {"amplitude": amplitude, "amplitude_per_diagonal": amplitude / float(np.hypot(h, w)),
            "amplitude_per_pair": per_pair.tolist(),
            "variation": float(steps.mean()) if steps.size else None, "variation_per_step": steps.tolist(),
            "resolution": [int(h), int(w)]}

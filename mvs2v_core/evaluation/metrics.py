"""Generic video metrics: PSNR, SSIM, MV-S2V's bidirectional reference similarity, colour classes.

All images are float in ``[0, 1]`` (uint8 inputs are divided by 255), channels last
``[..., H, W, 3]`` unless stated otherwise.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import MVS2VError

__all__ = ["PSNR_CAP", "as_float_frames", "psnr", "psnr_per_frame", "ssim", "gaussian_window",
           "reference_similarity", "classify_colours"]

# PSNR of (numerically) identical images is infinite; reports cap it here so JSON stays finite.
PSNR_CAP = 100.0


def as_float_frames(frames: Any) -> torch.Tensor:
    """uint8 / float array or tensor ``[..., H, W, 3]`` -> float64 tensor in ``[0, 1]``."""
    t = torch.as_tensor(np.asarray(frames)) if not isinstance(frames, torch.Tensor) else frames
    if t.dtype == torch.uint8:
        return t.double() / 255.0
    if not t.is_floating_point():
        raise MVS2VError(f"frames must be uint8 or float in [0, 1], got {t.dtype}")
    return t.double().clamp(0.0, 1.0)


def _check_pair(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    if a.shape != b.shape:
        raise MVS2VError(f"{what}: the two inputs differ in shape {tuple(a.shape)} vs {tuple(b.shape)}")
    if a.ndim < 3 or a.shape[-1] != 3:
        raise MVS2VError(f"{what} expects RGB images [..., H, W, 3], got {tuple(a.shape)}")


def psnr(a: Any, b: Any, cap: float | None = PSNR_CAP) -> float:
    """PSNR in dB over all pixels of ``a`` and ``b`` (peak 1.0): ``10 log10(1 / MSE)``.

    For a clip this is the PSNR of the clip's overall MSE (not a mean of per-frame PSNRs, which an
    identical frame would make infinite). Identical inputs give ``inf``, capped at ``cap``
    (:data:`PSNR_CAP` = 100 dB; ``cap=None`` keeps ``inf``).
    """
    x, y = as_float_frames(a), as_float_frames(b)
    _check_pair(x, y, "psnr")
    mse = float(((x - y) ** 2).mean())
    value = math.inf if mse == 0.0 else 10.0 * math.log10(1.0 / mse)
    return value if cap is None else min(value, float(cap))


def psnr_per_frame(a: Any, b: Any, cap: float | None = PSNR_CAP) -> list[float]:
    """PSNR of each frame of two clips ``[F, H, W, 3]``."""
    x, y = as_float_frames(a), as_float_frames(b)
    _check_pair(x, y, "psnr_per_frame")
    return [psnr(x[i], y[i], cap) for i in range(x.shape[0])]


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Normalized 1-D Gaussian ``[size]`` (float64)."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    g = torch.exp(-(x ** 2) / (2.0 * sigma ** 2))
    return g / g.sum()


def ssim(a: Any, b: Any, window: int = 11, sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03,
         data_range: float = 1.0) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004) of images ``[..., H, W, 3]``.

    Local statistics use an ``window x window`` Gaussian (sigma 1.5), 'valid' positions only (no
    padding); ``C1 = (k1 L)^2``, ``C2 = (k2 L)^2`` with ``L = data_range``::

        SSIM = mean over positions and channels of
               (2 mu_a mu_b + C1) (2 cov_ab + C2) / ((mu_a^2 + mu_b^2 + C1) (var_a + var_b + C2))

    with biased (Gaussian-weighted) variances. Each RGB channel is scored separately and averaged.

    Returns:
        float64 tensor of the leading shape (``[]`` for one image, ``[F]`` for a clip).
    """
    x, y = as_float_frames(a), as_float_frames(b)
    _check_pair(x, y, "ssim")
    h, w = x.shape[-3], x.shape[-2]
    if h < window or w < window:
        raise MVS2VError(f"ssim needs images of at least {window}x{window} pixels (the window), got {w}x{h}")
    lead = x.shape[:-3]
    x = x.reshape(-1, h, w, 3).permute(0, 3, 1, 2).reshape(-1, 1, h, w)
    y = y.reshape(-1, h, w, 3).permute(0, 3, 1, 2).reshape(-1, 1, h, w)
    g = gaussian_window(window, sigma)
    gh, gw = g.view(1, 1, -1, 1), g.view(1, 1, 1, -1)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, gh), gw)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x ** 2
    var_y = blur(y * y) - mu_y ** 2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    smap = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    per_channel = smap.mean(dim=(1, 2, 3)).reshape(-1, 3)
    return per_channel.mean(dim=1).reshape(lead)


def reference_similarity(frame_features: torch.Tensor, reference_features: torch.Tensor) -> dict[str, Any]:
    """MV-S2V's bidirectional similarity from L2-normalized features.

    With ``S[t, r] = <frame_t, ref_r>`` (cosine similarity)::

        S_v->r = mean over frames t of  max over references r of S[t, r]
        S_r->v = mean over references r of  max over frames t of S[t, r]

    ``S_v->r`` asks whether every frame looks like some reference view; ``S_r->v`` whether every
    reference view appears somewhere in the video (a view the video never shows lowers it).

    Args:
        frame_features: ``[F, D]``; reference_features: ``[R, D]``.

    Returns:
        ``{"s_v2r", "s_r2v", "matrix" [F][R], "best_reference_per_frame", "best_frame_per_reference",
        "frame_best", "reference_best"}`` (plain Python numbers and lists).
    """
    fv, fr = frame_features.double(), reference_features.double()
    if fv.ndim != 2 or fr.ndim != 2 or fv.shape[1] != fr.shape[1] or fv.shape[0] == 0 or fr.shape[0] == 0:
        raise MVS2VError(f"reference_similarity expects features [F, D] and [R, D] with one D, got "
                         f"{tuple(fv.shape)} and {tuple(fr.shape)}")
    sim = fv @ fr.T
    frame_best, best_ref = sim.max(dim=1)
    ref_best, best_frame = sim.max(dim=0)
    return {"s_v2r": float(frame_best.mean()), "s_r2v": float(ref_best.mean()), "matrix": sim.tolist(),
            "frame_best": frame_best.tolist(), "reference_best": ref_best.tolist(),
            "best_reference_per_frame": best_ref.tolist(), "best_frame_per_reference": best_frame.tolist()}


def classify_colours(pixels: Any, class_colours: Sequence[Sequence[float]], min_norm: float = 1e-3) -> np.ndarray:
    """Class of each pixel: the class colour with the most similar direction (largest cosine).

    Lambert shading and the toy patterns only scale a colour, so the direction ``rgb / |rgb|`` of
    a rendered pixel equals its face colour's. Pixels darker than ``min_norm`` have no direction
    and get class -1.

    Args:
        pixels: ``[..., 3]`` float in [0, 1] or uint8.
        class_colours: ``[K, 3]``.

    Returns:
        int64 array of the leading shape, values in ``-1..K-1``.
    """
    p = as_float_frames(pixels).numpy()
    c = np.asarray(class_colours, dtype=np.float64)
    if c.ndim != 2 or c.shape[1] != 3 or c.shape[0] == 0:
        raise MVS2VError(f"class_colours must be [K, 3], got {c.shape}")
    c = c / np.linalg.norm(c, axis=1, keepdims=True)
    norm = np.linalg.norm(p, axis=-1)
    cos = (p @ c.T) / np.maximum(norm, 1e-12)[..., None]
    out = cos.argmax(axis=-1).astype(np.int64)
    out[norm < min_norm] = -1
    return out

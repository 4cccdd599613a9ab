"""Evaluation pictures: the side-by-side strip (Pillow) and the metrics plot (matplotlib, Agg).

Both are written atomically. matplotlib is imported lazily, with the non-interactive Agg
backend, so evaluation runs on machines without a display.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import MVS2VError
from ..utils import atomic_write

__all__ = ["write_strip", "strip_image", "write_plot", "require_matplotlib", "StripRow", "rows_image", "write_rows",
           "frame_indices"]

_BG = (255, 255, 255)
_LABEL_W = 44
_CAPTION_H = 12


def _fit(image: np.ndarray, h: int, w: int) -> np.ndarray:
    from PIL import Image

    if image.shape[:2] == (h, w):
        return image
    return np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))


@dataclass
class StripRow:
    """One row of a strip picture: a label at the left and tiles, each with a caption above it.

    Attributes:
        label: the row's name (``"refs"``, ``"gen"``...), a few characters.
        images: uint8 ``[h, w, 3]`` tiles (resized to the strip's tile size when they differ).
        captions: one short caption per tile (``"t3"``, ``"left 90°"``), or empty for none.
    """

    label: str
    images: Sequence[np.ndarray]
    captions: Sequence[str] = ()


def frame_indices(n: int, max_frames: int) -> list[int]:
    """At most ``max_frames`` frame indices of an ``n``-frame clip, evenly spaced, first and last included."""
    k = min(n, max(2, int(max_frames)))
    return sorted({int(round(x)) for x in np.linspace(0, n - 1, k)})


def rows_image(rows: Sequence[StripRow], tile_hw: tuple[int, int], scale: int = 4, gap: int = 2) -> np.ndarray:
    """Rows of tiles upscaled by ``scale`` (nearest neighbour), captions above every tile, as uint8 ``[H, W, 3]``."""
    from PIL import Image, ImageDraw

    h, w = tile_hw
    cell_w, cell_h = w * scale + gap, h * scale + gap + _CAPTION_H
    cols = max([len(r.images) for r in rows] + [1])
    label_w = max([_LABEL_W] + [6 * len(r.label) + 6 for r in rows])
    canvas = Image.new("RGB", (label_w + cols * cell_w, len(rows) * cell_h), _BG)
    draw = ImageDraw.Draw(canvas)
    for r, row in enumerate(rows):
        top = r * cell_h
        draw.text((2, top + _CAPTION_H + (h * scale) // 2 - 5), row.label, fill=(0, 0, 0))
        for c, img in enumerate(row.images):
            tile = Image.fromarray(np.ascontiguousarray(_fit(img, h, w), dtype=np.uint8)).resize(
                (w * scale, h * scale), Image.NEAREST)
            canvas.paste(tile, (label_w + c * cell_w, top + _CAPTION_H))
            if c < len(row.captions) and row.captions[c]:
                draw.text((label_w + c * cell_w + 2, top + 1), row.captions[c], fill=(0, 0, 0))
    return np.asarray(canvas, dtype=np.uint8).copy()


def write_rows(path: str | os.PathLike, rows: Sequence[StripRow], tile_hw: tuple[int, int], scale: int = 4,
               gap: int = 2) -> Path:
    """Write :func:`rows_image` as a PNG (atomically)."""
    from PIL import Image

    out = Path(path)
    with atomic_write(out, suffix=".png") as tmp:
        Image.fromarray(rows_image(rows, tile_hw, scale, gap)).save(tmp, format="PNG")
    return out


def write_strip(path: str | os.PathLike, references: Sequence[np.ndarray], generated: np.ndarray,
                truth: np.ndarray, scale: int = 4, max_frames: int = 17, gap: int = 2,
                reference_labels: Sequence[str] = ()) -> Path:
    """Three rows -- references | generated | truth -- upscaled by ``scale`` (nearest neighbour).

    Args:
        path: the PNG to write.
        references: uint8 ``[h, w, 3]`` reference views (resized to the frame size if needed).
        generated, truth: uint8 ``[F, H, W, 3]`` clips of one shape.
        max_frames: at most this many frames are shown, evenly spaced (always first and last).
        reference_labels: a caption per reference view (e.g. ``"left 90°"``); frames are captioned ``t0``...
    """
    from PIL import Image

    canvas = Image.fromarray(strip_image(references, generated, truth, scale, max_frames, gap, reference_labels))
    out = Path(path)
    with atomic_write(out, suffix=".png") as tmp:
        canvas.save(tmp, format="PNG")
    return out


def strip_image(references: Sequence[np.ndarray], generated: np.ndarray, truth: np.ndarray, scale: int = 4,
                max_frames: int = 17, gap: int = 2, reference_labels: Sequence[str] = ()) -> np.ndarray:
    """The picture :func:`write_strip` writes, as uint8 ``[height, width, 3]``."""
    if generated.shape != truth.shape or generated.ndim != 4:
        raise MVS2VError(f"the strip needs generated and truth clips of one shape [F, H, W, 3], got "
                         f"{generated.shape} and {truth.shape}")
    idx = frame_indices(generated.shape[0], max_frames)
    times = [f"t{t}" for t in idx]
    rows = [StripRow("refs", list(references), list(reference_labels)),
            StripRow("gen", [generated[t] for t in idx], times), StripRow("truth", [truth[t] for t in idx], times)]
    return rows_image(rows, generated.shape[1:3], scale, gap)


def require_matplotlib() -> Any:
    """Import matplotlib with the Agg backend, or raise a clear error."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        raise MVS2VError("the evaluation plot needs matplotlib: pip install matplotlib (or pip install "
                         "mvs2v[eval]), or skip the plot with --no-plot") from None
    return plt


def write_plot(path: str | os.PathLike, result: dict[str, Any]) -> Path:
    """Four panels from an :func:`mvs2v_toy.evaluate.evaluate` result: per-frame PSNR and
    SSIM; per-frame best reference similarity (generated and truth) per subject; the frame x view
    similarity matrix of the first subject; per-frame face accuracy on the revealed faces."""
    plt = require_matplotlib()
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    frames = np.arange(int(result["frames"]))

    ax = axes[0][0]
    if result.get("psnr_per_frame") is not None:
        ax.plot(frames, result["psnr_per_frame"], "o-", color="tab:blue", label="PSNR (dB)")
        ax.set_ylabel("PSNR (dB)")
        ax2 = ax.twinx()
        ax2.plot(frames, result["ssim_per_frame"], "s--", color="tab:orange", label="SSIM")
        ax2.set_ylabel("SSIM")
        ax2.set_ylim(0, 1.05)
    ax.set_title(f"vs truth: PSNR {result['psnr']:.2f} dB, SSIM {result['ssim']:.3f}")
    ax.set_xlabel("frame")

    ax = axes[0][1]
    rs = result["reference_similarity"]
    truth_rs = rs.get("truth", {}).get("per_subject", [])
    for k, subj in enumerate(rs["per_subject"]):
        line, = ax.plot(frames, subj["frame_best"], "o-", label=f"{subj['name']} gen")
        if k < len(truth_rs):
            ax.plot(frames, truth_rs[k]["frame_best"], ":", color=line.get_color(), label=f"{subj['name']} truth")
    ax.set_title(f"best reference similarity per frame (S_v->r {rs['s_v2r']:.3f}, S_r->v {rs['s_r2v']:.3f})",
                 fontsize=9)
    ax.set_xlabel("frame")
    ax.legend(fontsize=7)

    ax = axes[1][0]
    subj = rs["per_subject"][0]
    mat = np.asarray(subj["matrix"], dtype=np.float64)
    im = ax.imshow(mat.T, aspect="auto", cmap="viridis", interpolation="nearest")
    ax.set_yticks(range(len(subj["views"])))
    ax.set_yticklabels(subj["views"])
    ax.set_xlabel("frame")
    ax.set_title(f"{subj['name']}: frame x reference similarity", fontsize=9)
    fig.colorbar(im, ax=ax)

    ax = axes[1][1]
    fa = result.get("face_accuracy") or {}
    per_frame = [np.nan if v is None else v for v in fa.get("per_frame", [])]
    if per_frame:
        ax.plot(frames[: len(per_frame)], per_frame, "o-", color="tab:green")
    value = fa.get("value")
    ct = result.get("crosstalk")
    title = "face accuracy (revealed faces): " + ("n/a" if value is None else f"{value:.3f}")
    if ct is not None:
        title += f"; crosstalk {ct['value']:.3f}"
    ax.set_title(title, fontsize=9)
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("frame")

    fig.suptitle(f"{result.get('sample', '')}: {result.get('caption', '')}", fontsize=9)
    fig.tight_layout()
    out = Path(path)
    try:
        with atomic_write(out, suffix=".png") as tmp:
            fig.savefig(tmp, format="png", dpi=90)
    finally:
        plt.close(fig)
    return out

"""Evaluate a generated video against a toy sample: ``evaluate`` and the ``mvs2v eval`` command.

:func:`evaluate` computes, for a generated clip and the sample it was generated for:

* MV-S2V's bidirectional reference similarity ``S_v->r`` / ``S_r->v`` per subject (and their
  mean over subjects), with any :class:`~mvs2v_core.evaluation.features.FeatureExtractor`; the same
  numbers for the true clip are reported alongside as a reference point;
* PSNR and SSIM against the exact true frames;
* face accuracy on the faces the references reveal, on all faces, hidden-face accuracy normalised
  by accuracy on the faces frame 0 shows, and two-subject crosstalk (:mod:`~mvs2v_toy.metrics`,
  :mod:`~mvs2v_toy.causal`).

Every number comes from core's one metric registry (:mod:`mvs2v_core.evaluation.registry`; the
toy metrics register from :mod:`~mvs2v_toy.metric_plugins`); a metric that does not apply (crosstalk
on one subject) is None and its reason is listed under ``skipped``. ``mvs2v eval --list-metrics``
prints the registry, the causal probes (reference use, slot binding, causal crosstalk) included.

Frames for the reference similarity: by default each subject's frames are cropped to a fixed
square window around where that subject truly is (the union of its true masks over the clip,
padded by 15% per side), resized to the reference size -- the references show the object alone
and centred, so this compares like with like and keeps the other subject out. ``crop=False``
uses the full frames, as for videos without ground truth.

:func:`run_eval` is the future ``mvs2v eval --video X --sample DIR --out DIR``; it writes
``metrics.json``, ``strip.png`` (references | generated | truth) and ``eval_plot.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ._core import (
    FeatureExtractor,
    MVS2VError,
    atomic_write,
    check_output_folder,
    compute_metrics,
    format_metric_table,
    get_metric,
    video_pixel_format,
)
from .eval_args import add_eval_args
from .features import ToyFeatureExtractor, load_feature_extractor
from .metric_plugins import register_metrics
from .truth import ReferenceView, ToyTruth, load_truth

__all__ = ["evaluate", "run_eval", "add_eval_args", "resolve_references", "subject_window", "load_generated",
           "video_pixel_format", "definitions", "EVAL_FORMAT", "EVAL_METRICS", "CROP_MARGIN"]

EVAL_FORMAT = "mvs2v-eval"
CROP_MARGIN = 0.15

# The per-video metrics of metrics.json, in order; their definitions come from the registry.
EVAL_METRICS = ("psnr", "ssim", "face_accuracy", "face_accuracy_all", "hidden_face_accuracy", "crosstalk")
SIMILARITY_METRICS = ("s_v2r", "s_r2v")

register_metrics()  # idempotent; a pip install also has them through the mvs2v.metrics entry point


def definitions() -> dict[str, str]:
    """Metric name -> its one-line definition, from the registry (written into metrics.json)."""
    return {name: get_metric(name).description for name in (*SIMILARITY_METRICS, *EVAL_METRICS)}


def load_generated(video: Any) -> np.ndarray:
    """A generated clip as uint8 ``[F, H, W, 3]``: a video file path, or an array / tensor ``[F, H, W, 3]``
    (uint8, or float in ``[0, 1]`` like :class:`~mvs2v_core.pipeline.generate.GenerationResult`'s ``video``)."""
    if isinstance(video, (str, os.PathLike)):
        from ._core import read_video

        return read_video(video).numpy()
    t = video if isinstance(video, torch.Tensor) else torch.as_tensor(np.asarray(video))
    if t.ndim != 4 or t.shape[-1] != 3:
        raise MVS2VError(f"a generated video must be frames [F, H, W, 3], got {tuple(t.shape)}")
    if t.dtype == torch.uint8:
        return t.cpu().numpy()
    if not t.is_floating_point():
        raise MVS2VError(f"generated frames must be uint8 or float in [0, 1], got {t.dtype}")
    if not bool(torch.isfinite(t).all()):
        raise MVS2VError("the generated video contains NaN or infinite values")
    return (t.detach().cpu().double().clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()


def resolve_references(truth: ToyTruth, references: Any = None) -> list[list[ReferenceView]]:
    """The reference views the model was given, per object.

    Args:
        references: None (every view of the sample), a mapping ``subject name -> views``, or a
            sequence with one list of views per object, where a view is a label
            (front/left/back/right) or a yaw in degrees. Views the sample does not hold are rendered.
    """
    objects = truth.scene.objects
    names = [o.name for o in objects]
    if references is None:
        out = [list(r) for r in truth.references]
    elif isinstance(references, Mapping):
        unknown = sorted(set(references) - set(names))
        if unknown:
            raise MVS2VError(f"references name unknown subject(s) {unknown}; this sample's subjects are {names}")
        missing = [n for n in names if n not in references]
        if missing:
            raise MVS2VError(f"references give no views for subject(s) {missing}; give views for every subject "
                             f"({names})")
        out = [[truth.reference(i, v) for v in references[n]] for i, n in enumerate(names)]
    else:
        refs = list(references)
        if len(refs) != len(objects):
            raise MVS2VError(f"references give views for {len(refs)} subjects but the sample has {len(objects)} "
                             f"({names})")
        out = [[truth.reference(i, v) for v in views] for i, views in enumerate(refs)]
    for name, views in zip(names, out):
        if not views:
            raise MVS2VError(f"subject {name!r} has no reference views to evaluate against")
    return out


def subject_window(truth: ToyTruth, index: int, margin: float = CROP_MARGIN) -> tuple[int, int, int]:
    """``(top, left, size)`` of the square crop around object ``index`` (see the module docstring)."""
    mask = truth.object_mask(index).any(axis=0)
    h, w = mask.shape
    if not mask.any():
        return 0, 0, min(h, w)
    rows, cols = np.nonzero(mask)
    cy, cx = (rows.min() + rows.max() + 1) / 2.0, (cols.min() + cols.max() + 1) / 2.0
    side = max(rows.max() + 1 - rows.min(), cols.max() + 1 - cols.min())
    size = int(min(min(h, w), np.ceil(side * (1.0 + 2.0 * margin))))
    top = int(np.clip(round(cy - size / 2.0), 0, h - size))
    left = int(np.clip(round(cx - size / 2.0), 0, w - size))
    return top, left, size


def _to_nchw(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0


def _crop(frames: np.ndarray, window: tuple[int, int, int] | None, size_hw: tuple[int, int]) -> torch.Tensor:
    """uint8 ``[F, H, W, 3]`` -> float ``[F, 3, h, w]``, cropped to ``window`` and resized to ``size_hw``."""
    x = _to_nchw(frames)
    if window is not None:
        top, left, s = window
        x = x[..., top:top + s, left:left + s]
    if tuple(x.shape[-2:]) != tuple(size_hw):
        x = F.interpolate(x, size=size_hw, mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
    return x


def _features(frames: np.ndarray, truth: ToyTruth, refs: list[list[ReferenceView]], extractor: FeatureExtractor,
              crop: bool) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per subject: features of its (cropped) frames ``[F, D]`` and of its reference views ``[R, D]``."""
    video_features, reference_features = [], []
    for i, views in enumerate(refs):
        ref_imgs = np.stack([_ensure_size(v.image, views[0].image.shape[:2]) for v in views])
        size_hw = ref_imgs.shape[1:3]
        video_features.append(extractor(_crop(frames, subject_window(truth, i) if crop else None, size_hw)))
        reference_features.append(extractor(_to_nchw(ref_imgs)))
    return video_features, reference_features


def _similarity(frames: np.ndarray, truth: ToyTruth, refs: list[list[ReferenceView]], extractor: FeatureExtractor,
                crop: bool) -> dict[str, Any]:
    video_features, reference_features = _features(frames, truth, refs, extractor, crop)
    results, _ = compute_metrics({"video_features": video_features, "reference_features": reference_features},
                                 SIMILARITY_METRICS)
    per_subject = [{"name": truth.scene.objects[i].name, "views": [v.name for v in views], **sim}
                   for i, (views, sim) in enumerate(zip(refs, results["s_v2r"]["per_subject"]))]
    return {"s_v2r": float(results["s_v2r"]["value"]), "s_r2v": float(results["s_r2v"]["value"]),
            "per_subject": per_subject}


def _ensure_size(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    if image.shape[:2] == tuple(hw):
        return image
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((hw[1], hw[0]), Image.BILINEAR))


@dataclass
class _Details:
    generated: np.ndarray
    truth: ToyTruth
    references: list[list[ReferenceView]]


def _evaluate(generated_video: Any, truth_source: Any, references: Any = None,
              extractor: FeatureExtractor | None = None, crop: bool = True) -> tuple[dict[str, Any], _Details]:
    truth = load_truth(truth_source)
    frames = load_generated(generated_video)
    if frames.shape != truth.frames.shape:
        f, h, w, _ = truth.frames.shape
        raise MVS2VError(f"the generated video has shape {frames.shape[:3]} (frames, height, width) but the sample "
                         f"{truth.sample_id or ''} has {(f, h, w)}: generate it with --frames {f} --width {w} "
                         f"--height {h}")
    refs = resolve_references(truth, references)
    extractor = extractor or ToyFeatureExtractor()
    similarity = _similarity(frames, truth, refs, extractor, crop)
    similarity["truth"] = _similarity(truth.frames, truth, refs, extractor, crop)
    for s in similarity["truth"]["per_subject"]:  # the truth's matrices add nothing a reader needs
        for key in ("matrix", "best_frame_per_reference", "best_reference_per_frame"):
            s.pop(key, None)
    metrics, skipped = compute_metrics({"video": frames, "truth_video": truth.frames, "truth": truth,
                                        "references": refs}, EVAL_METRICS)
    result = {
        "format": EVAL_FORMAT, "version": 1,
        "sample": truth.sample_id, "caption": truth.caption,
        "frames": int(frames.shape[0]), "width": int(frames.shape[2]), "height": int(frames.shape[1]),
        "extractor": getattr(extractor, "name", type(extractor).__name__),
        "crop": "truth-window" if crop else "full-frame",
        "references": {truth.scene.objects[i].name: [v.name for v in views] for i, views in enumerate(refs)},
        "reference_similarity": similarity,
        "psnr": metrics["psnr"]["value"], "psnr_per_frame": metrics["psnr"]["per_frame"],
        "ssim": metrics["ssim"]["value"], "ssim_per_frame": metrics["ssim"]["per_frame"],
        "face_accuracy": metrics["face_accuracy"], "face_accuracy_all": metrics["face_accuracy_all"],
        "hidden_face_accuracy": metrics.get("hidden_face_accuracy"),
        "crosstalk": metrics.get("crosstalk"),
        "skipped": sorted(skipped.values()),
        "definitions": definitions(),
    }
    return result, _Details(frames, truth, refs)


def evaluate(generated_video: Any, truth_sample_dir_or_spec: Any, references: Any = None,
             extractor: FeatureExtractor | None = None, crop: bool = True) -> dict[str, Any]:
    """Every metric of a generated clip against a toy sample.

    Args:
        generated_video: a video file, or frames ``[F, H, W, 3]`` (uint8, or float in [0, 1]).
        truth_sample_dir_or_spec: a sample folder, its ``truth.json``, the parsed record, or a
            :class:`~mvs2v_toy.truth.ToyTruth`.
        references: the reference views the model was given (see :func:`resolve_references`);
            default every view of the sample. They define both the reference-similarity
            references and which faces count as revealed by the references.
        extractor: image features for ``S_v->r`` / ``S_r->v`` (default :class:`ToyFeatureExtractor`).
        crop: crop each subject's frames to its true window (default) or use full frames.

    Returns:
        A JSON-ready dict (see ``docs/toy_world.md``): ``reference_similarity`` (``s_v2r``,
        ``s_r2v``, ``per_subject``, ``truth``), ``psnr``, ``psnr_per_frame``, ``ssim``,
        ``ssim_per_frame``, ``face_accuracy``, ``face_accuracy_all``, ``hidden_face_accuracy``,
        ``crosstalk`` (None for one subject), ``skipped`` (why a metric did not run), ``definitions``.
    """
    return _evaluate(generated_video, truth_sample_dir_or_spec, references, extractor, crop)[0]


# ---- command line (the arguments are in .args) ------------------------------------------------


def _parse_views(items: Sequence[str], names: list[str]) -> Any:
    if not items:
        return None
    shared: list[str] | None = None
    per: dict[str, list[str]] = {}
    for item in items:
        name, sep, rest = item.partition("=")
        views = [v.strip() for v in (rest if sep else item).split(",") if v.strip()]
        if not views:
            raise MVS2VError(f"--views {item!r} names no view; use e.g. --views front,left")
        if sep:
            per[name.strip()] = views
        else:
            shared = views
    if shared is not None and per:
        raise MVS2VError("--views: give either one list for every subject or NAME=... lists, not both")
    return {n: shared for n in names} if shared is not None else per


def _json_ready(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _json_ready(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_ready(v) for v in x]
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    return x


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def run_eval(args: argparse.Namespace) -> dict[str, Any]:
    """``mvs2v eval``: evaluate, then write ``metrics.json``, ``strip.png`` and ``eval_plot.png`` in ``--out``;
    with ``--list-metrics``, print the metric registry instead."""
    from ._core import require_matplotlib, write_plot, write_strip

    if getattr(args, "list_metrics", False):
        print(format_metric_table())
        return {"metrics": None, "files": {}}
    missing = [flag for flag in ("video", "sample", "out") if not getattr(args, flag, None)]
    if missing:
        raise MVS2VError(f"mvs2v eval needs {', '.join('--' + m for m in missing)} (or --list-metrics to list the "
                         "metrics)")
    if not args.no_plot:
        require_matplotlib()  # fail before the work, not after it
    if not Path(args.video).is_file():
        raise MVS2VError(f"--video {args.video} does not exist")
    out = check_output_folder(args.out, "--out", ("metrics.json", "strip.png", "eval_plot.png"))
    truth = load_truth(args.sample)
    references = _parse_views(args.views, [o.name for o in truth.scene.objects])
    extractor = load_feature_extractor(args.extractor, device=args.eval_device)
    result, details = _evaluate(args.video, truth, references, extractor, crop=not args.no_crop)
    result["video"] = str(args.video)
    pix_fmt = video_pixel_format(args.video)
    result["video_pixel_format"] = pix_fmt
    if pix_fmt is not None and pix_fmt.startswith(("yuv420", "yuvj420", "yuv422", "yuvj422", "nv12")):
        # At toy sizes chroma subsampling alone costs ~0.1-0.3 face accuracy and adds crosstalk.
        print(f"warning: {args.video} stores colour at reduced resolution ({pix_fmt}); at toy sizes this alone "
              "blurs face colours and lowers PSNR, face accuracy and crosstalk scores. Write generated toy videos "
              "losslessly (mvs2v_core.pipeline.video_io.write_lossless_mp4) to measure the model, not the mp4 codec.",
              file=sys.stderr)
    files = {"metrics": str(out / "metrics.json"), "strip": str(out / "strip.png")}
    try:
        with atomic_write(out / "metrics.json") as tmp:
            tmp.write_text(json.dumps(_json_ready(result), indent=2, allow_nan=False) + "\n", encoding="utf-8")
        refs = [v.image for views in details.references for v in views]
        labels = [f"{v.name} {v.yaw % 360:g}°" for views in details.references for v in views]
        write_strip(out / "strip.png", refs, details.generated, details.truth.frames, reference_labels=labels)
        if not args.no_plot:
            write_plot(out / "eval_plot.png", result)
            files["plot"] = str(out / "eval_plot.png")
    except OSError as exc:  # the folder passed the check, then filled up or changed: one line, not a traceback
        raise MVS2VError(f"--out {out}: could not write the results ({exc.strerror or exc}); free some space "
                         "or choose another folder") from exc
    rs = result["reference_similarity"]
    fa = result["face_accuracy"]["value"]
    hidden = result["hidden_face_accuracy"] or {}
    ct = result["crosstalk"]
    print(f"{result['sample']}: S_v->r {rs['s_v2r']:.4f} (truth {rs['truth']['s_v2r']:.4f})  "
          f"S_r->v {rs['s_r2v']:.4f} (truth {rs['truth']['s_r2v']:.4f})  PSNR {result['psnr']:.2f} dB  "
          f"SSIM {result['ssim']:.4f}  face acc {_number(fa)}  hidden-face acc {_number(hidden.get('value'))} "
          f"(normalised {_number(hidden.get('normalised'))})"
          + ("" if ct is None else f"  crosstalk {ct['value']:.4f}"))
    print("wrote " + ", ".join(files.values()))
    return {"metrics": result, "files": files}

"""Scoring a ``toy-bench`` unit: one JSON record per clip, every number from core's metric registry.

* ``orig``: the per-video metrics of :func:`~mvs2v_toy.evaluate.evaluate` against the scene's truth,
  with S_v->r / S_r->v against all four reference views whatever the row was given (so the rows
  are compared on the same references).
* ``recolour<k>``: the ``reference_use`` probe of object ``k`` (``orig`` vs this clip), and on
  two-object scenes ``causal_crosstalk`` from ``k`` to the other object.
* ``swap<k>``: the ``slot_binding`` probe of object ``k`` (``orig`` vs this clip).

A probe with nothing to score (no true pixel of the faces in frames >= 1) records None and the
registry's reason.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ._core import compute_metrics
from .bench_plan import Job, Unit
from .evaluate import evaluate
from .metric_plugins import register_metrics

__all__ = ["VIDEO_METRICS", "PROBE_METRICS", "SUBJECT_METRICS", "copy_clip", "score_unit", "unit_values"]

register_metrics()  # idempotent: the probes must be in the registry even without a pip install

VIDEO_METRICS = ("psnr", "ssim", "s_v2r", "s_r2v", "face_accuracy", "hidden_face_accuracy", "hidden_face_visible",
                 "hidden_face_normalised", "crosstalk")
PROBE_METRICS = ("reference_use", "slot_binding", "causal_crosstalk", "causal_crosstalk_own")
# W2: ``own`` per subject (recolouring object k's references, k = its place in the caption and the slots),
# because the second subject can lag the first (its reference positions differ by scheme).
SUBJECT_METRICS = {"causal_crosstalk_own_first": "recolour0", "causal_crosstalk_own_second": "recolour1"}


def copy_clip(job: Job) -> np.ndarray:
    """The ``copy`` baseline: the true frame 0 of the job's version, repeated ``[F, H, W, 3]``."""
    frames = job.truth.frames
    return np.repeat(frames[:1], frames.shape[0], axis=0)


def _video_metrics(clip: np.ndarray, job: Job) -> dict[str, Any]:
    m = evaluate(clip, job.truth)
    hidden = m["hidden_face_accuracy"] or {}
    crosstalk = m["crosstalk"]
    out = {"psnr": m["psnr"], "ssim": m["ssim"], "s_v2r": m["reference_similarity"]["s_v2r"],
           "s_r2v": m["reference_similarity"]["s_r2v"], "face_accuracy": m["face_accuracy"]["value"],
           "hidden_face_accuracy": hidden.get("value"), "hidden_face_visible": hidden.get("visible"),
           "hidden_face_normalised": hidden.get("normalised"),
           "crosstalk": None if crosstalk is None else crosstalk["value"]}
    return {k: _plain(v) for k, v in out.items()}


def _probe(name: str, inputs: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    results, skipped = compute_metrics(inputs, [name])
    return results.get(name), skipped.get(name)


def _plain(value: Any) -> Any:
    """numpy scalars as Python numbers (for JSON)."""
    return value.item() if isinstance(value, np.generic) else value


def _json_numbers(d: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: _plain(d.get(k)) for k in keys}


def _recolour_metrics(unit: Unit, job: Job, orig: np.ndarray, clip: np.ndarray) -> tuple[dict[str, Any], list[str]]:
    k = int(job.variant.removeprefix("recolour"))
    pair = {"video_pair": (orig, clip), "truth_pair": (unit.scene.truth, job.truth)}
    notes = []
    use, why = _probe("reference_use", {**pair, "subject": k})
    metrics: dict[str, Any] = {"reference_use": None if use is None else _plain(use["value"])}
    if use is not None:
        metrics["reference_use_detail"] = _json_numbers(use, ("follow_a", "follow_b", "pixels"))
    elif why:
        notes.append(why)
    if len(unit.scene.truth.scene.objects) == 2:
        talk, why = _probe("causal_crosstalk", {**pair, "source": k, "target": 1 - k})
        metrics["causal_crosstalk"] = None if talk is None else _plain(talk["leak"])
        metrics["causal_crosstalk_own"] = None if talk is None else _plain(talk["own"])
        if why:
            notes.append(why)
    return metrics, notes


def _swap_metrics(unit: Unit, job: Job, orig: np.ndarray, clip: np.ndarray) -> tuple[dict[str, Any], list[str]]:
    k = int(job.variant.removeprefix("swap"))
    out, why = _probe("slot_binding", {"video_pair": (orig, clip), "truth": job.truth,
                                       "swapped_views": job.swap, "subject": k})
    metrics: dict[str, Any] = {"slot_binding": None if out is None else _plain(out["value"]),
                               "views": list(job.swap or ())}
    if out is not None:
        metrics["slot_binding_detail"] = _json_numbers(out, ("follow", "stay", "pixels"))
    return metrics, [why] if why else []


def score_unit(unit: Unit, clips: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
    """One record per job of ``unit``.

    Args:
        unit: the unit.
        clips: uint8 ``[F, H, W, 3]`` per generated variant (``orig`` at least, unless the row is ``copy``).

    Returns:
        ``[{"key", "row", "scene", "seed", "variant", "generated", "notes", "metrics"}, ...]``.
    """
    def clip_of(job: Job) -> np.ndarray:
        if unit.row == "copy":
            return copy_clip(job)
        return clips["orig"] if job.same_as_orig else clips[job.variant]

    orig = clip_of(unit.jobs[0])
    records = []
    for job in unit.jobs:
        clip = clip_of(job)
        notes: list[str] = []
        if job.variant == "orig":
            metrics = _video_metrics(clip, job)
            notes.append(f"caption: {job.truth.caption}")
        elif job.variant.startswith("recolour"):
            metrics, notes = _recolour_metrics(unit, job, orig, clip)
        else:
            metrics, notes = _swap_metrics(unit, job, orig, clip)
        if job.same_as_orig:
            notes.append("inputs identical to orig (checked): the orig clip is this version's generation, so its "
                         "reference use is exactly 0 by construction")
        records.append({"key": unit.key(job.variant), "row": unit.row, "scene": unit.scene.index, "seed": unit.seed,
                        "variant": job.variant, "generated": unit.row != "copy" and not job.same_as_orig,
                        "notes": notes, "metrics": metrics})
    return records


def _mean(values: list[Any]) -> float | None:
    kept = [float(v) for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def unit_values(records: list[dict[str, Any]]) -> dict[str, float | None]:
    """The numbers of one (row, scene, seed): the ``orig`` metrics, each probe averaged over its
    objects (``recolour<k>`` / ``swap<k>``; None-valued ones skipped), and ``own`` per subject (W2)."""
    by_variant = {r["variant"]: r["metrics"] for r in records}
    out: dict[str, float | None] = {k: by_variant.get("orig", {}).get(k) for k in VIDEO_METRICS}
    probes = [m for v, m in by_variant.items() if v != "orig"]
    for name in PROBE_METRICS:
        out[name] = _mean([m.get(name) for m in probes if name in m])
    for name, variant in SUBJECT_METRICS.items():
        out[name] = by_variant.get(variant, {}).get("causal_crosstalk_own")
    return out

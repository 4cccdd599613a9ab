"""The one registry of evaluation metrics: what each needs, and computing every one whose needs are met.

A :class:`Metric` names the inputs it reads (``inputs``), the ones it uses when given
(``optional_inputs``), the model weights it needs if any (``weights``: what they are and which
input holds their folder) and a ``compute(inputs) -> dict`` returning at least ``"value"``.
:func:`compute_metrics` runs the metrics whose inputs are present; each of the others is *skipped*
with a one-line reason (the missing input, or the folder it looked in for weights), and the rest
still run. A metric may also raise :class:`MetricNotApplicable` (crosstalk on a one-subject
scene): it is skipped with that reason.

Two kinds share the registry: ``video`` metrics score one generated clip; ``probe`` metrics are
causal tests that compare several generations (e.g. two versions of a scene that differ only in
what the references show) and read ``video_pair`` / ``truth_pair``. ``mvs2v eval --list-metrics``
prints the whole registry (:func:`format_metric_table`).

Input names used so far (a new metric should reuse them where they fit):

===================== =====================================================================
``video``             generated frames ``[F, H, W, 3]``, uint8 or float in ``[0, 1]``
``truth_video``       the true frames, same shape
``video_features``    per subject, features of its (cropped) frames ``[F, D]``, L2-normalized
``reference_features`` per subject, features of its reference views ``[R, D]``, L2-normalized
``truth``             a ground truth object (the toy world's ``ToyTruth``)
``references``        per subject, the reference views the model was given
``video_pair``        ``(generated a, generated b)``: two generations of a probe
``truth_pair``        ``(truth a, truth b)``: the two versions of a scene a probe generated
``subject``           index of the subject a probe scores (``source`` / ``target``: two of them)
``swapped_views``     the two reference view labels a slot-binding probe exchanged
===================== =====================================================================

Where metrics come from: core registers its model-agnostic ones here (PSNR, SSIM, ``S_v->r``,
``S_r->v``); other packages call :func:`register_metric` when they are imported (inside ComfyUI
nothing is pip-installed) and/or declare an entry point of group ``mvs2v.metrics`` (called once,
on the first look-up, with a ``register_metric`` that keeps explicit registrations), exactly like
the component registry (:mod:`mvs2v_core.pipeline.components`). Core never names those packages.

Nothing heavy is imported here (metrics import numpy / torch when they run), so registering is cheap.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

from ..errors import MVS2VError
from ..utils import call_entry_points
from .metric import METRIC_KINDS, Metric, MetricNotApplicable, MetricWeights, missing_requirement
from .real_metrics import REAL_METRICS

__all__ = ["Metric", "MetricWeights", "MetricNotApplicable", "METRIC_KINDS", "ENTRY_POINT_GROUP", "register_metric",
           "get_metric", "available_metrics", "missing_requirement", "compute_metrics", "format_metric_table"]

ENTRY_POINT_GROUP = "mvs2v.metrics"

_METRICS: dict[str, Metric] = {}
_entry_points_loaded = False


def register_metric(metric: Metric, replace: bool = True) -> None:
    """Register ``metric`` (a later registration of a name replaces the earlier one unless ``replace=False``)."""
    if not isinstance(metric, Metric):
        raise MVS2VError(f"register_metric takes a Metric, got {type(metric).__name__}")
    if replace or metric.name not in _METRICS:
        _METRICS[metric.name] = metric


def _register_if_new(metric: Metric) -> None:
    # Inside ComfyUI the pack's own toy package registered its metrics on import; a pip-installed copy of
    # mvs2v in the same environment offers the same names built on its own copy of core: keep the pack's.
    if getattr(metric, "name", None) in _METRICS:
        return
    register_metric(metric, replace=False)


def _load_entry_points() -> None:
    """Call every ``mvs2v.metrics`` entry point once; explicit registrations stay (see the components registry)."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    _register_real_metrics()
    call_entry_points(ENTRY_POINT_GROUP, _register_if_new, "metrics")


def available_metrics(kind: str | None = None) -> dict[str, Metric]:
    """Every registered metric by name (entry points included), sorted by kind then name; ``kind`` filters."""
    _load_entry_points()
    if kind is not None and kind not in METRIC_KINDS:
        raise MVS2VError(f"metric kind {kind!r} is unknown: use one of {', '.join(METRIC_KINDS)}")
    chosen = [m for m in _METRICS.values() if kind is None or m.kind == kind]
    return {m.name: m for m in sorted(chosen, key=lambda m: (METRIC_KINDS.index(m.kind), m.name))}


def get_metric(name: str) -> Metric:
    """The metric called ``name``; a one-line error lists the registered names."""
    metrics = available_metrics()
    if name not in metrics:
        raise MVS2VError(f"metric {name!r} is not registered; registered metrics: {', '.join(metrics) or 'none'} "
                         "(mvs2v eval --list-metrics shows what each needs)")
    return metrics[name]


def compute_metrics(inputs: Mapping[str, Any], names: Iterable[str] | None = None,
                    kind: str | None = None) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Compute every metric in ``names`` (default: all registered, of ``kind`` if given) whose needs are met.

    Args:
        inputs: input name -> value (see the module docstring); None values count as missing.
        names: the metrics to compute (an unknown name is an error: nothing runs).
        kind: ``"video"`` or ``"probe"`` to restrict the default selection.

    Returns:
        ``(results, skipped)``: metric name -> its result dict (with ``"value"``), and metric name
        -> one-line reason it did not run.
    """
    if names is None:
        chosen = list(available_metrics(kind).values())
    else:
        chosen = [get_metric(n) for n in names]
    results: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    for metric in chosen:
        reason = missing_requirement(metric, inputs)
        if reason is not None:
            skipped[metric.name] = f"{metric.name}: {reason}"
            continue
        try:
            out = metric.compute(inputs)
        except MetricNotApplicable as exc:
            skipped[metric.name] = f"{metric.name}: {exc}"
            continue
        if not isinstance(out, dict) or "value" not in out:
            raise MVS2VError(f"metric {metric.name!r} ({metric.provider}) returned {type(out).__name__} without "
                             "a 'value'; a metric's compute must return a dict with 'value'")
        results[metric.name] = out
    return results, skipped


def format_metric_table(metrics: Mapping[str, Metric] | None = None) -> str:
    """The registry as text: one block per metric (kind, inputs, weights, provider, description)."""
    metrics = available_metrics() if metrics is None else metrics
    lines = []
    for m in metrics.values():
        needs = ", ".join(sorted(m.inputs)) + (f" (optional: {', '.join(sorted(m.optional_inputs))})"
                                               if m.optional_inputs else "")
        weights = "none" if m.weights is None else f"{m.weights.description} ({m.weights.flag})"
        lines += [f"{m.name}  [{m.kind}, {m.provider}]", f"    inputs:  {needs}", f"    weights: {weights}",
                  f"    {m.description}"]
    return "\n".join(lines)


# ---- core's model-agnostic metrics --------------------------------------------------------------


def _psnr(inputs: Mapping[str, Any]) -> dict[str, Any]:
    from .metrics import as_float_frames, psnr, psnr_per_frame

    gen, true = as_float_frames(inputs["video"]), as_float_frames(inputs["truth_video"])
    return {"value": psnr(gen, true), "per_frame": psnr_per_frame(gen, true)}


def _ssim(inputs: Mapping[str, Any]) -> dict[str, Any]:
    from .metrics import as_float_frames, ssim

    per_frame = ssim(as_float_frames(inputs["video"]), as_float_frames(inputs["truth_video"]))
    return {"value": float(per_frame.mean()), "per_frame": per_frame.reshape(-1).tolist()}


def _per_subject_similarity(inputs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """:func:`~.metrics.reference_similarity` of each subject (a single ``[F, D]`` tensor is one subject)."""
    from .metrics import reference_similarity

    frames, refs = inputs["video_features"], inputs["reference_features"]
    if getattr(frames, "ndim", None) == 2:
        frames, refs = [frames], [refs]
    if len(frames) != len(refs):
        raise MVS2VError(f"reference similarity: features of {len(frames)} subjects' frames but of {len(refs)} "
                         "subjects' references; give one of each per subject")
    return [reference_similarity(f, r) for f, r in zip(frames, refs)]


def _similarity(key: str) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    def compute(inputs: Mapping[str, Any]) -> dict[str, Any]:
        per_subject = _per_subject_similarity(inputs)
        return {"value": sum(s[key] for s in per_subject) / len(per_subject), "per_subject": per_subject}

    return compute


_CORE_METRICS = (
    Metric("psnr", "10*log10(1/MSE) over all frames and pixels in [0,1], capped at 100 dB",
           frozenset({"video", "truth_video"}), _psnr),
    Metric("ssim", "Gaussian-window (11, sigma 1.5) SSIM per RGB channel, valid positions, mean over channels and "
           "frames", frozenset({"video", "truth_video"}), _ssim),
    Metric("s_v2r", "mean over frames of the best cosine similarity to any of the subject's reference views",
           frozenset({"video_features", "reference_features"}), _similarity("s_v2r")),
    Metric("s_r2v", "mean over the subject's reference views of the best cosine similarity to any frame",
           frozenset({"video_features", "reference_features"}), _similarity("s_r2v")),
)
for _metric in _CORE_METRICS:
    register_metric(_metric)


def _register_real_metrics() -> None:
    """Core's metrics of real videos (:mod:`.real_metrics`), on the first look-up.

    An explicit registration of the same name made before stays.
    """
    for metric in REAL_METRICS:
        register_metric(metric, replace=False)

"""Model-agnostic evaluation of generated videos: MV-S2V's bidirectional reference similarity, PSNR, SSIM.

* :mod:`.features` -- :class:`FeatureExtractor` and DINOv2 / CLIP features from local transformers
  folders.
* :mod:`.metrics` -- PSNR, SSIM, ``S_v->r`` / ``S_r->v``, colour classification.
* :mod:`.report` -- the side-by-side strip and the metrics plot.
* :mod:`.registry` -- THE metric registry: every metric and probe with the inputs and weights it
  needs; :func:`compute_metrics` runs those whose needs are met and says why the others did not.
* :mod:`.faces` -- InsightFace detection + ArcFace embeddings from a local pack, head yaw from 5 landmarks.
* :mod:`.motion` -- Farneback optical flow: motion amplitude and variation.
* :mod:`.clip_scores` -- CLIP text-image alignment, the LAION aesthetic MLP.
* :mod:`.real_metrics` -- the metrics of real videos in the registry (``docs/evaluation.md``).
* :mod:`.stats` -- bootstrap confidence intervals over scenes (plain and paired).

* :mod:`.command` -- ``mvs2v eval``: the real-video mode, and the hook through which a plug-in adds
  its own mode (the toy world's ``--sample`` mode).

Metrics that need a ground truth (the toy world's face accuracy, crosstalk and causal probes) live
with that world, in ``mvs2v_toy``, and join the registry from there. See
``docs/toy_world.md`` for the exact definitions. The names below are imported on first use;
matplotlib and transformers only inside the functions that need them.
"""

from __future__ import annotations

from ..utils import lazy_exports

_EXPORTS = {
    "FeatureExtractor": ".features", "HFImageFeatureExtractor": ".features",
    "PSNR_CAP": ".metrics", "psnr": ".metrics", "ssim": ".metrics", "reference_similarity": ".metrics",
    "classify_colours": ".metrics",
    "write_strip": ".report", "strip_image": ".report", "write_plot": ".report",
    "Metric": ".registry", "MetricWeights": ".registry", "MetricNotApplicable": ".registry",
    "register_metric": ".registry", "get_metric": ".registry", "available_metrics": ".registry",
    "compute_metrics": ".registry", "format_metric_table": ".registry",
    "FaceAnalyzer": ".faces", "DetectedFace": ".faces", "yaw_from_landmarks": ".faces", "yaw_bin": ".faces",
    "optical_flow": ".motion", "motion_statistics": ".motion",
    "CLIPTextImage": ".clip_scores", "AestheticMLP": ".clip_scores",
    "REAL_METRIC_NAMES": ".real_metrics", "weights_from_root": ".real_metrics",
    "bootstrap_ci": ".stats", "paired_bootstrap_ci": ".stats", "ratio_bootstrap_ci": ".stats",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

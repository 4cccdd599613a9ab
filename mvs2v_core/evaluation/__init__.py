"""Evaluation of generated videos: MV-S2V's bidirectional reference similarity and toy ground-truth metrics.

* :mod:`.features` -- :class:`FeatureExtractor` and its implementations (toy colour-layout
  features; DINOv2 / CLIP from local transformers folders).
* :mod:`.metrics` -- PSNR, SSIM, ``S_v->r`` / ``S_r->v``, colour classification.
* :mod:`.toy_metrics` -- face accuracy on faces the references reveal, two-subject crosstalk.
* :mod:`.evaluate` -- :func:`evaluate` and :func:`run_eval` (``mvs2v eval``).
* :mod:`.args` -- ``mvs2v eval``'s arguments (argparse only).
* :mod:`.report` -- the side-by-side strip and the metrics plot.

See ``docs/toy_world.md`` for the exact definitions. The names below are imported on first use;
matplotlib and transformers only inside the functions that need them.
"""

from __future__ import annotations

from ..utils import lazy_exports

_EXPORTS = {
    "evaluate": ".evaluate", "run_eval": ".evaluate", "add_eval_args": ".args",
    "FeatureExtractor": ".features", "ToyFeatureExtractor": ".features", "HFImageFeatureExtractor": ".features",
    "load_feature_extractor": ".features",
    "PSNR_CAP": ".metrics", "psnr": ".metrics", "ssim": ".metrics", "reference_similarity": ".metrics",
    "classify_colours": ".metrics",
    "face_accuracy": ".toy_metrics", "crosstalk": ".toy_metrics",
    "write_strip": ".report", "strip_image": ".report", "write_plot": ".report",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

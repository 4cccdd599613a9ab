"""A multi-view toy world with exact ground truth, for training and measuring MV-S2V on a CPU.

* :mod:`.world` -- scenes (one or two turning objects with distinct faces), captions, random scenes.
* :mod:`.render` -- the numpy ray caster (frames, per-pixel object and face ids, reference views).
* :mod:`.truth` -- the ground truth of a sample and its ``truth.json`` sidecar.
* :mod:`.dataset` -- :func:`write_toy_dataset`: videos, reference PNGs, truth and ``manifest.jsonl``.
* :mod:`.codec` -- :class:`ToyCodec`, an exactly invertible latent codec (a core ``LatentCodec``).
* :mod:`.text` -- :class:`ToyTextEncoder`, fixed word embeddings (a core ``TextEncoderProtocol``).
* :mod:`.vision` -- :class:`ToyVisionEncoder`, patch pixels as MFI features (a core ``VisionEncoderProtocol``).
* :mod:`.components` -- registers those three with core's component registry (on import).
* :mod:`.metrics` -- face accuracy on faces the references reveal, two-subject crosstalk.
* :mod:`.counterfactual`, :mod:`.causal` -- scene versions that differ only in hidden colours, and the
  causal probes on them (reference use, slot binding, causal crosstalk, hidden-face accuracy).
* :mod:`.metric_plugins` -- registers the toy metrics and probes in core's metric registry (on import).
* :mod:`.features` -- :class:`ToyFeatureExtractor`, fixed colour-layout features for ``S_v->r`` / ``S_r->v``.
* :mod:`.evaluate` -- :func:`evaluate` and :func:`run_eval` (``mvs2v eval``).
* :mod:`.demo` -- ``mvs2v demo``: the bundled toy model (``assets/toy_demo/``) end to end.
* :mod:`.cli` -- the ``demo``, ``eval`` and ``toy-data`` commands (the ``mvs2v.cli`` entry point).
* :mod:`.args`, :mod:`.eval_args` -- their arguments (argparse only).
* :mod:`._core` -- the toy world's only import of ``mvs2v_core`` (pip install or ComfyUI pack).

See ``docs/toy_world.md``. Only numpy, torch and Pillow are needed (PyAV to write videos). The
names below are imported on first use, so ``import mvs2v_toy`` stays light (no torch).
"""

from __future__ import annotations

from ._core import lazy_exports
from .components import register_components
from .metric_plugins import register_metrics

_EXPORTS = {
    "ToyCodec": ".codec", "is_toy_codec": ".codec", "load_codec": ".codec", "save_codec": ".codec",
    "ToyTextEncoder": ".text", "is_toy_text_encoder": ".text", "load_toy_text_encoder": ".text",
    "save_toy_text_encoder": ".text",
    "ToyVisionEncoder": ".vision", "is_toy_vision_encoder": ".vision", "load_toy_vision_encoder": ".vision",
    "save_toy_vision_encoder": ".vision",
    "ToyObject": ".world", "ToyScene": ".world", "caption_for": ".world", "sample_scene": ".world",
    "render_frame": ".render", "render_reference": ".render", "render_video": ".render",
    "ToyTruth": ".truth", "load_truth": ".truth", "truth_from_scene": ".truth",
    "write_toy_dataset": ".dataset", "save_toy_encoders": ".dataset", "write_lossless_mp4": ".dataset",
    "run_toy_dataset": ".dataset", "add_toy_dataset_args": ".args",
    "face_accuracy": ".metrics", "crosstalk": ".metrics",
    "hidden_faces": ".counterfactual", "revealed_hidden_faces": ".counterfactual", "recolour_hidden": ".counterfactual",
    "swap_views": ".counterfactual", "reference_use": ".causal", "slot_binding": ".causal",
    "causal_crosstalk": ".causal", "hidden_face_accuracy": ".causal",
    "ToyFeatureExtractor": ".features", "load_feature_extractor": ".features",
    "evaluate": ".evaluate", "run_eval": ".evaluate", "add_eval_args": ".eval_args",
    "run_demo": ".demo", "run_random_demo": ".demo",
}

__all__ = sorted([*_EXPORTS, "register_components", "register_metrics"])


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

# Inside ComfyUI nothing is pip-installed, so there are no entry points: importing the package is
# what makes core's loaders know the toy codec and encoders, and core's metric registry the toy metrics.
register_components()
register_metrics()

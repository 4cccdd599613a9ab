"""A multi-view toy world with exact ground truth, for training and measuring MV-S2V on a CPU.

* :mod:`.world` -- scenes (one or two turning objects with distinct faces), captions, random scenes.
* :mod:`.render` -- the numpy ray caster (frames, per-pixel object and face ids, reference views).
* :mod:`.truth` -- the ground truth of a sample and its ``truth.json`` sidecar.
* :mod:`.dataset` -- :func:`write_toy_dataset`: videos, reference PNGs, truth and ``manifest.jsonl``.
* :mod:`.codec` -- :class:`ToyCodec`, an exactly invertible latent codec with the ``WanVAE`` interface.
* :mod:`.text` -- :class:`ToyTextEncoder`, fixed word embeddings with the ``TextEncoder`` interface.
* :mod:`.vision` -- :class:`ToyVisionEncoder`, patch pixels as MFI features (the vision-encoder interface).
* :mod:`.args` -- the ``toy-data`` command's arguments (argparse only).

See ``docs/toy_world.md``. Only numpy, torch and Pillow are needed (PyAV to write videos). The
names below are imported on first use, so ``import mvs2v_core.toy.args`` stays light.
"""

from __future__ import annotations

from ..utils import lazy_exports

_EXPORTS = {
    "ToyCodec": ".codec", "is_toy_codec": ".codec", "load_codec": ".codec", "save_codec": ".codec",
    "ToyTextEncoder": ".text", "is_toy_text_encoder": ".text", "load_toy_text_encoder": ".text",
    "save_toy_text_encoder": ".text",
    "ToyObject": ".world", "ToyScene": ".world", "caption_for": ".world", "sample_scene": ".world",
    "render_frame": ".render", "render_reference": ".render", "render_video": ".render",
    "ToyTruth": ".truth", "load_truth": ".truth", "truth_from_scene": ".truth",
    "write_toy_dataset": ".dataset", "save_toy_encoders": ".dataset", "write_lossless_mp4": ".dataset",
    "run_toy_dataset": ".dataset", "add_toy_dataset_args": ".args",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

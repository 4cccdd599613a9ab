"""The toy world's only door to ``mvs2v_core``: every core name a toy module uses comes from here.

Why one module: the toy package is imported in two ways.

* Installed with pip, ``mvs2v_core`` and ``mvs2v_toy`` are top-level packages, so core is
  ``mvs2v_core``.
* Inside ComfyUI nothing is installed: ComfyUI imports the repository root as ONE package under
  whatever name its folder has (``custom_nodes/<name>/``), so core is ``<name>.mvs2v_core`` and
  an absolute ``import mvs2v_core`` would fail (or, worse, load a second copy whose classes and
  component registry differ from the ones the nodes use).

Both packages are siblings either way, so core is found from this module's own package name:
``__package__.rpartition(".")[0]`` is ``""`` when installed and ``"<name>"`` inside ComfyUI. The
other toy modules import only relatively (``from ._core import MVS2VError``, ``from .truth import
...``), so this is the one place that knows the difference.

Names are imported from core on first use (a module ``__getattr__``), so importing the toy package
(which registers its components, and its commands in ``mvs2v --help``) does not import torch.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

__all__ = ["CORE_PACKAGE", "core_module"]


def _core_package() -> str:
    parent = (__package__ or "").rpartition(".")[0]
    return f"{parent}.mvs2v_core" if parent else "mvs2v_core"


CORE_PACKAGE = _core_package()

# name -> the core module (relative to the core package) that defines it
_NAMES = {
    "MVS2VError": "errors", "CheckpointError": "errors",
    "atomic_write": "utils", "save_safetensors_atomic": "utils", "lazy_exports": "utils",
    "parse_view_label": "references.layout",
    "register_component": "pipeline.components", "write_declaration": "pipeline.components",
    "write_mp4": "pipeline.video_io", "write_lossless_mp4": "pipeline.video_io", "read_video": "pipeline.video_io",
    "video_pixel_format": "pipeline.video_io", "check_output_folder": "pipeline.outputs",
    "WanConfig": "model.config", "WanDiT": "model.transformer",
    "GenerationSettings": "pipeline.request", "ModelFiles": "pipeline.request", "MVS2VPipeline": "pipeline.generate",
    "check_generation_settings": "pipeline.request",
    "SubjectInput": "pipeline.request", "ReferenceSettings": "references.settings",
    "PSNR_CAP": "evaluation.metrics", "as_float_frames": "evaluation.metrics", "classify_colours": "evaluation.metrics",
    "psnr": "evaluation.metrics", "psnr_per_frame": "evaluation.metrics", "ssim": "evaluation.metrics",
    "reference_similarity": "evaluation.metrics",
    "Metric": "evaluation.registry", "MetricNotApplicable": "evaluation.registry",
    "register_metric": "evaluation.registry", "available_metrics": "evaluation.registry",
    "compute_metrics": "evaluation.registry", "format_metric_table": "evaluation.registry",
    "get_metric": "evaluation.registry",
    "bootstrap_ci": "evaluation.stats", "paired_bootstrap_ci": "evaluation.stats",
    "ratio_bootstrap_ci": "evaluation.stats",
    "FeatureExtractor": "evaluation.features", "HFImageFeatureExtractor": "evaluation.features",
    "require_matplotlib": "evaluation.report", "strip_image": "evaluation.report", "write_plot": "evaluation.report",
    "write_strip": "evaluation.report", "StripRow": "evaluation.report", "frame_indices": "evaluation.report",
    "write_rows": "evaluation.report",
}


def core_module(name: str) -> ModuleType:
    """The core module ``name`` (relative to the core package, e.g. ``"pipeline.components"``)."""
    return importlib.import_module(f"{CORE_PACKAGE}.{name}")


def __getattr__(name: str) -> Any:
    module = _NAMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r} (add it to _NAMES)")
    value = getattr(core_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*__all__, *_NAMES])

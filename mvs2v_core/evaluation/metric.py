"""What a metric is: :class:`Metric` (its inputs, weights, kind and ``compute``), :class:`MetricWeights`,
:class:`MetricNotApplicable`, and :func:`missing_requirement`. The registry (:mod:`.registry`) and the
modules whose metrics it registers (:mod:`.real_metrics`) both import it; it imports neither."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from ..errors import MVS2VError

METRIC_KINDS = ("video", "probe")


class MetricNotApplicable(Exception):
    """Raised by a metric's ``compute`` when these inputs give it nothing to measure (it is then skipped)."""


@dataclass(frozen=True)
class MetricWeights:
    """Model weights a metric needs.

    Attributes:
        description: what they are (``"a DINOv2 or CLIP transformers folder"``).
        option: the input holding their folder; a command line spells it as a flag
            (``"face_model"`` -> ``--face-model``).
        files: files the folder must hold (checked before the metric runs).
    """

    description: str
    option: str
    files: tuple[str, ...] = ()

    @property
    def flag(self) -> str:
        return "--" + self.option.replace("_", "-")


@dataclass(frozen=True)
class Metric:
    """One registered metric.

    Attributes:
        name: unique name; also its key in results.
        description: one line saying exactly what is measured (reports print it as the definition).
        inputs: the input names it needs (see the module docstring).
        compute: ``compute(inputs: Mapping[str, Any]) -> dict`` with at least ``"value"``.
        optional_inputs: inputs it uses when present.
        weights: model weights it needs, or None.
        kind: ``"video"`` (one generated clip) or ``"probe"`` (several generations).
        provider: the package that registered it.
    """

    name: str
    description: str
    inputs: frozenset[str]
    compute: Callable[[Mapping[str, Any]], dict[str, Any]] = field(repr=False)
    optional_inputs: frozenset[str] = frozenset()
    weights: MetricWeights | None = None
    kind: str = "video"
    provider: str = "mvs2v_core"

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", frozenset(self.inputs))
        object.__setattr__(self, "optional_inputs", frozenset(self.optional_inputs))
        if not self.name or not self.name.replace("_", "").isalnum():
            raise MVS2VError(f"metric name {self.name!r} must be letters, digits and underscores")
        if self.kind not in METRIC_KINDS:
            raise MVS2VError(f"metric {self.name!r}: kind {self.kind!r} is not one of {', '.join(METRIC_KINDS)}")
        if not callable(self.compute):
            raise MVS2VError(f"metric {self.name!r}: compute must be callable")


def missing_requirement(metric: Metric, inputs: Mapping[str, Any]) -> str | None:
    """Why ``metric`` cannot run on ``inputs`` (one line), or None when it can. A None input counts as missing."""
    missing = sorted(k for k in metric.inputs if inputs.get(k) is None)
    if missing:
        return f"needs input {', '.join(missing)}"
    w = metric.weights
    if w is None:
        return None
    folder = inputs.get(w.option)
    if folder is None:
        return f"needs {w.description}: give its folder with {w.flag}"
    path = Path(os.fspath(folder))
    if not path.is_dir():
        return f"needs {w.description}: {w.flag} {path} is not a folder"
    absent = [f for f in w.files if not (path / f).is_file()]
    if absent:
        return f"needs {w.description}: {path} holds no {', '.join(absent)}"
    return None

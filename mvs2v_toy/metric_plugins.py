"""The toy world's metrics and causal probes, registered in core's one metric registry.

:func:`register_metrics` runs when the package is imported (inside ComfyUI nothing is
pip-installed) and is the ``mvs2v.metrics`` entry point of a pip install (core calls it with its
own ``register_metric``). ``mvs2v eval --list-metrics`` prints them with core's. Nothing heavy is
imported here: each metric imports its module when it runs.

Per-video metrics read ``video`` (generated frames) and ``truth`` (a :class:`~mvs2v_toy.truth.ToyTruth`);
the probes (kind ``probe``) read ``video_pair`` and ``truth_pair`` (or ``truth`` and ``swapped_views``).
Definitions: :mod:`mvs2v_toy.metrics` and :mod:`mvs2v_toy.causal`.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

__all__ = ["register_metrics", "TOY_METRIC_NAMES"]

PROVIDER = "mvs2v_toy"


def _face_accuracy(inputs: Mapping[str, Any]) -> dict[str, Any]:
    from .metrics import face_accuracy

    return face_accuracy(inputs["video"], inputs["truth"], inputs.get("references"))[0]


def _face_accuracy_all(inputs: Mapping[str, Any]) -> dict[str, Any]:
    from .metrics import face_accuracy

    return face_accuracy(inputs["video"], inputs["truth"], inputs.get("references"))[1]


def _crosstalk(inputs: Mapping[str, Any]) -> dict[str, Any]:
    from ._core import MetricNotApplicable
    from .metrics import crosstalk

    out = crosstalk(inputs["video"], inputs["truth"])
    if out is None:
        raise MetricNotApplicable("needs a scene with two subjects")
    return out


def _hidden_face_accuracy(inputs: Mapping[str, Any]) -> dict[str, Any]:
    from .causal import hidden_face_accuracy

    return hidden_face_accuracy(inputs["video"], inputs["truth"], inputs.get("subject"))


def _recoloured_subject(inputs: Mapping[str, Any], key: str = "subject") -> int:
    """The given subject index, else the one object whose colours differ between the two versions."""
    from ._core import MetricNotApplicable

    if inputs.get(key) is not None:
        return int(inputs[key])
    truth_a, truth_b = inputs["truth_pair"]
    changed = [i for i, (a, b) in enumerate(zip(truth_a.scene.objects, truth_b.scene.objects))
               if dict(a.colours) != dict(b.colours)]
    if len(changed) != 1:
        raise MetricNotApplicable(f"the two versions recolour {len(changed)} subjects; give {key}=INDEX")
    return changed[0]


def _not_scored(out: dict[str, Any], what: str) -> dict[str, Any]:
    from ._core import MetricNotApplicable

    if out["value"] is None:
        raise MetricNotApplicable(f"no true pixel of {what} appears in frames >= 1")
    return out


def _reference_use(inputs: Mapping[str, Any]) -> dict[str, Any]:
    from .causal import reference_use

    gen_a, gen_b = inputs["video_pair"]
    truth_a, truth_b = inputs["truth_pair"]
    return _not_scored(reference_use(gen_a, gen_b, truth_a, truth_b, _recoloured_subject(inputs)),
                       "the recoloured faces")


def _slot_binding(inputs: Mapping[str, Any]) -> dict[str, Any]:
    from .causal import slot_binding

    gen_orig, gen_swap = inputs["video_pair"]
    index = int(inputs.get("subject") or 0)
    return _not_scored(slot_binding(gen_orig, gen_swap, inputs["truth"], index, inputs["swapped_views"]),
                       "the swapped views' faces")


def _causal_crosstalk(inputs: Mapping[str, Any]) -> dict[str, Any]:
    from ._core import MetricNotApplicable
    from .causal import causal_crosstalk

    gen_a, gen_b = inputs["video_pair"]
    truth_a, truth_b = inputs["truth_pair"]
    n = len(truth_a.scene.objects)
    if n < 2:
        raise MetricNotApplicable("needs a scene with two subjects")
    source = _recoloured_subject(inputs, "source")
    target = int(inputs["target"]) if inputs.get("target") is not None else 1 - source if n == 2 else None
    if target is None:
        raise MetricNotApplicable("give target=INDEX")
    return _not_scored(causal_crosstalk(gen_a, gen_b, truth_a, truth_b, source, target), "the target subject")


_VIDEO = frozenset({"video", "truth"})
_PAIR = frozenset({"video_pair", "truth_pair"})

# (name, description, inputs, optional inputs, compute, kind)
_SPECS: tuple[tuple[str, str, frozenset, frozenset, Callable[[Mapping[str, Any]], dict[str, Any]], str], ...] = (
    ("face_accuracy", "fraction of true pixels (frames >= 1) of faces shown by the references but not by frame 0 "
     "whose generated colour is classified as that face's colour", _VIDEO, frozenset({"references"}),
     _face_accuracy, "video"),
    ("face_accuracy_all", "the same over every object pixel of every frame", _VIDEO, frozenset({"references"}),
     _face_accuracy_all, "video"),
    ("hidden_face_accuracy", "accuracy on true pixels (frames >= 1) of hued faces frame 0 hides and a later frame "
     "shows; 'visible' = accuracy on the hued faces frame 0 shows (all frames); normalised = value / visible",
     _VIDEO, frozenset({"subject"}), _hidden_face_accuracy, "video"),
    ("crosstalk", "mean over ordered subject pairs (A,B) of the fraction of B's true pixels classified as a colour "
     "only A has (never gray), minus the same fraction on the truth", _VIDEO, frozenset(), _crosstalk, "video"),
    ("reference_use", "two versions differing only in a subject's hidden colours: 1/2 [P(gen_a in colour_a) - "
     "P(gen_a in colour_b) + P(gen_b in colour_b) - P(gen_b in colour_a)] on those faces' true pixels (frames >= 1); "
     "0 for a model that ignores references", _PAIR, frozenset({"subject"}), _reference_use, "probe"),
    ("slot_binding", "two reference slots' images exchanged: P(gen_swap paints a face in the other view's colour) - "
     "P(gen_orig does) on the two faces' true pixels (frames >= 1)",
     frozenset({"video_pair", "truth", "swapped_views"}), frozenset({"subject"}), _slot_binding, "probe"),
    ("causal_crosstalk", "only the source subject's hidden colours change: reference_use with set membership on ALL "
     "of the target's true pixels (frames >= 1) = leak; 'own' = the same on the source's recoloured faces",
     _PAIR, frozenset({"source", "target"}), _causal_crosstalk, "probe"),
)
TOY_METRIC_NAMES: tuple[str, ...] = tuple(spec[0] for spec in _SPECS)


def register_metrics(register: Callable[..., None] | None = None) -> None:
    """Register the toy metrics and probes.

    Args:
        register: the ``register_metric`` of the core copy asking (an entry point is called with it);
            default: that of the core package next to this one.
    """
    from ._core import Metric

    if register is None:
        from ._core import register_metric as register
    for name, description, inputs, optional, compute, kind in _SPECS:
        register(Metric(name, description, inputs, compute, optional_inputs=optional, kind=kind, provider=PROVIDER))

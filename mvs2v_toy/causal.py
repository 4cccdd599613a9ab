"""Causal metrics: does the generated video follow its reference views, and the right slot of them?

The pixel metrics of :mod:`mvs2v_toy.metrics` score one generation; a model that never looks at its
references but paints plausible colours can still score well on them. These probes compare
generations that differ only in what the references show (:mod:`mvs2v_toy.counterfactual`), so a
model that ignores its references scores exactly 0 by construction.

Every pixel is classified by colour direction (:func:`~mvs2v_core.evaluation.metrics.classify_colours`,
as in the other toy metrics), among the colours of the scene (for a pair of versions: of both
versions). Scored pixels always come from the TRUE render (masks and face ids), frames ``t >= 1``
only: frame 0 shows none of the hidden faces. Frames are ``[F, H, W, 3]`` uint8 or float in ``[0, 1]``
with the truth's shape. Every value is computed from integer pixel counts, so "exactly 0" is exact.

* :func:`reference_use` -- version ``b`` recolours object ``index``'s hidden faces. On those faces'
  pixels, ``value = 1/2 [P(gen_a = colour_a) - P(gen_a = colour_b) + P(gen_b = colour_b) - P(gen_b = colour_a)]``:
  0 when ``gen_a == gen_b``, 1 when each generation paints its own version's colours.
* :func:`slot_binding` -- ``gen_swap`` was generated with the images of two reference views exchanged
  between their slots. On the two faces' pixels: ``follow = P(gen_swap = the other face's colour)``,
  ``stay = P(gen_swap = own colour)``, ``value = follow - P(gen_orig = the other face's colour)``.
* :func:`causal_crosstalk` -- version ``b`` recolours only object ``source``'s hidden faces. ``own``
  is :func:`reference_use` with set membership (any of source's changed colours of a version) on
  source's recoloured faces; ``leak`` is the same on all of ``target``'s pixels: how far the other
  subject follows references that are not its own. ``value = leak``.
* :func:`hidden_face_accuracy` -- accuracy on revealed hidden faces, on the hued faces frame 0 shows
  (all frames), and their ratio (how much of the model's drawing skill reaches the hidden faces).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ._core import MVS2VError, classify_colours
from .counterfactual import revealed_hidden_faces, view_face
from .truth import ToyTruth
from .world import HUED_FACES, PALETTE

__all__ = ["reference_use", "slot_binding", "causal_crosstalk", "hidden_face_accuracy"]


def _classes(frames: Any, truth: ToyTruth, names: Sequence[str], what: str) -> np.ndarray:
    """Class index (into ``names``) of every pixel of ``frames`` ``[F, H, W, 3]``, -1 for black."""
    shape = tuple(np.shape(frames))
    if shape != tuple(truth.frames.shape):
        raise MVS2VError(f"{what}: generated frames have shape {shape} but the truth has {tuple(truth.frames.shape)}; "
                         "generate with the sample's frames, height and width")
    return classify_colours(frames, [PALETTE[n] for n in names])


def _union_names(truth_a: ToyTruth, truth_b: ToyTruth) -> list[str]:
    names = list(truth_a.scene.colours_in_scene())
    return names + [n for n in truth_b.scene.colours_in_scene() if n not in names]


def _check_index(truth: ToyTruth, index: int, what: str) -> None:
    if not 0 <= int(index) < len(truth.scene.objects):
        raise MVS2VError(f"{what}: object index {index} is out of range (the scene has {len(truth.scene.objects)})")


def _changed_faces(truth_a: ToyTruth, truth_b: ToyTruth, index: int, what: str) -> list[str]:
    """Faces of object ``index`` whose colour differs between the versions (checked: nothing else differs)."""
    _check_index(truth_a, index, what)
    if not (np.array_equal(truth_a.object_id, truth_b.object_id) and np.array_equal(truth_a.face_id, truth_b.face_id)):
        raise MVS2VError(f"{what}: the two versions differ in geometry; make truth_b from truth_a's scene with "
                         "mvs2v_toy.counterfactual.recolour_hidden")
    objs_a, objs_b = truth_a.scene.objects, truth_b.scene.objects
    others = [i for i in range(len(objs_a)) if i != index and dict(objs_a[i].colours) != dict(objs_b[i].colours)]
    if others or truth_a.scene.floor_colour != truth_b.scene.floor_colour:
        raise MVS2VError(f"{what}: the versions must differ only in object {index}'s colours, but the floor or "
                         f"object(s) {others} differ too")
    changed = [f for f in objs_a[index].faces if objs_a[index].colours[f] != objs_b[index].colours[f]]
    if not changed:
        raise MVS2VError(f"{what}: the two versions give object {index} the same colours; recolour its hidden faces "
                         "(mvs2v_toy.counterfactual.recolour_hidden)")
    return changed


def _face_pixels(truth: ToyTruth, index: int, faces: Sequence[str]) -> np.ndarray:
    """bool ``[F, H, W]``: true pixels of ``faces`` of object ``index`` in frames ``t >= 1``."""
    obj = truth.scene.objects[index]
    ids = [obj.faces.index(f) for f in faces]
    sel = (truth.object_id == index) & np.isin(truth.face_id, ids)
    sel[0] = False
    return sel


def _face_classes(truth: ToyTruth, index: int, names: Sequence[str]) -> np.ndarray:
    """``[n_faces]``: class index of each face colour of object ``index``."""
    obj = truth.scene.objects[index]
    return np.array([names.index(obj.colours[f]) for f in obj.faces], dtype=np.int64)


def _contrast(hits_own_a: int, hits_other_a: int, hits_own_b: int, hits_other_b: int, n: int) -> float | None:
    """``1/2 [P_a(own) - P_a(other) + P_b(own) - P_b(other)]`` from counts (exactly 0 for equal generations)."""
    return (hits_own_a - hits_other_a + hits_own_b - hits_other_b) / (2.0 * n) if n else None


def reference_use(gen_a: Any, gen_b: Any, truth_a: ToyTruth, truth_b: ToyTruth, index: int) -> dict[str, Any]:
    """The counterfactual delta of object ``index`` (see the module docstring).

    Args:
        gen_a, gen_b: generations of version a / b, ``[F, H, W, 3]``.
        truth_a, truth_b: the two versions (b = a with object ``index``'s hidden faces recoloured).
        index: the recoloured object.

    Returns:
        ``{"value", "follow_a", "follow_b", "cross_a", "cross_b", "pixels", "faces"}``: ``follow_x`` =
        P(gen_x painted in version x's colour), ``cross_x`` = P(gen_x in the other version's colour);
        numbers are None when no pixel is scored (the recoloured faces never come into view).
    """
    faces = _changed_faces(truth_a, truth_b, index, "reference_use")
    names = _union_names(truth_a, truth_b)
    sel = _face_pixels(truth_a, index, faces)
    face_ids = truth_a.face_id[sel].astype(np.int64)
    colour_a = _face_classes(truth_a, index, names)[face_ids]
    colour_b = _face_classes(truth_b, index, names)[face_ids]
    pred_a = _classes(gen_a, truth_a, names, "reference_use")[sel]
    pred_b = _classes(gen_b, truth_b, names, "reference_use")[sel]
    n = int(sel.sum())
    aa, ab = int((pred_a == colour_a).sum()), int((pred_a == colour_b).sum())
    bb, ba = int((pred_b == colour_b).sum()), int((pred_b == colour_a).sum())
    share = (lambda k: k / n if n else None)
    return {"value": _contrast(aa, ab, bb, ba, n), "follow_a": share(aa), "follow_b": share(bb),
            "cross_a": share(ab), "cross_b": share(ba), "pixels": n, "faces": faces}


def slot_binding(gen_orig: Any, gen_swap: Any, truth: ToyTruth, index: int, views: Sequence[str]) -> dict[str, Any]:
    """How far colours follow two exchanged reference slots (see the module docstring).

    Args:
        gen_orig: generation with the references in their own slots.
        gen_swap: generation with the images of ``views`` exchanged between their two slots.
        truth: the scene's truth (the references of ``gen_orig``).
        index: the object whose views were exchanged.
        views: the two view labels (e.g. from :func:`~mvs2v_toy.counterfactual.swap_views`).

    Returns:
        ``{"value", "follow", "stay", "orig_other", "pixels", "faces"}`` (None numbers when no pixel is scored).
    """
    if len(views) != 2:
        raise MVS2VError(f"slot_binding needs the two exchanged view labels, got {list(views)}")
    _check_index(truth, index, "slot_binding")
    faces = [view_face(truth, index, v) for v in views]
    if faces[0] == faces[1]:
        raise MVS2VError(f"slot_binding: views {list(views)} show the same face {faces[0]!r}; exchange two views that "
                         "show different faces (mvs2v_toy.counterfactual.swap_views)")
    names = list(truth.scene.colours_in_scene())
    own_of_face = _face_classes(truth, index, names)
    other_of_face = own_of_face.copy()
    obj = truth.scene.objects[index]
    i0, i1 = obj.faces.index(faces[0]), obj.faces.index(faces[1])
    other_of_face[i0], other_of_face[i1] = own_of_face[i1], own_of_face[i0]
    sel = _face_pixels(truth, index, faces)
    face_ids = truth.face_id[sel].astype(np.int64)
    own, other = own_of_face[face_ids], other_of_face[face_ids]
    pred_swap = _classes(gen_swap, truth, names, "slot_binding")[sel]
    pred_orig = _classes(gen_orig, truth, names, "slot_binding")[sel]
    n = int(sel.sum())
    follow, stay = int((pred_swap == other).sum()), int((pred_swap == own).sum())
    orig_other = int((pred_orig == other).sum())
    share = (lambda k: k / n if n else None)
    return {"value": (follow - orig_other) / n if n else None, "follow": share(follow), "stay": share(stay),
            "orig_other": share(orig_other), "pixels": n, "faces": faces}


def _membership_contrast(pred_a: np.ndarray, pred_b: np.ndarray, set_a: list[int], set_b: list[int]) -> float | None:
    n = int(pred_a.size)
    own_a, other_a = int(np.isin(pred_a, set_a).sum()), int(np.isin(pred_a, set_b).sum())
    own_b, other_b = int(np.isin(pred_b, set_b).sum()), int(np.isin(pred_b, set_a).sum())
    return _contrast(own_a, other_a, own_b, other_b, n)


def causal_crosstalk(gen_a: Any, gen_b: Any, truth_a: ToyTruth, truth_b: ToyTruth, source: int,
                     target: int) -> dict[str, Any]:
    """How far ``target`` follows ``source``'s recoloured references (``leak``), beside ``own``.

    See the module docstring for the definitions.

    Returns:
        ``{"value" (= leak), "leak", "own", "pixels_own", "pixels_target", "faces"}``; both exactly 0
        when ``gen_a == gen_b``.
    """
    _check_index(truth_a, target, "causal_crosstalk")
    if int(source) == int(target):
        raise MVS2VError("causal_crosstalk: source and target must be two different objects")
    faces = _changed_faces(truth_a, truth_b, source, "causal_crosstalk")
    names = _union_names(truth_a, truth_b)
    obj_a, obj_b = truth_a.scene.objects[source], truth_b.scene.objects[source]
    set_a = sorted({names.index(obj_a.colours[f]) for f in faces})
    set_b = sorted({names.index(obj_b.colours[f]) for f in faces})
    pred_a = _classes(gen_a, truth_a, names, "causal_crosstalk")
    pred_b = _classes(gen_b, truth_b, names, "causal_crosstalk")
    own_sel = _face_pixels(truth_a, source, faces)
    target_sel = truth_a.object_id == target
    target_sel[0] = False
    own = _membership_contrast(pred_a[own_sel], pred_b[own_sel], set_a, set_b)
    leak = _membership_contrast(pred_a[target_sel], pred_b[target_sel], set_a, set_b)
    return {"value": leak, "leak": leak, "own": own, "pixels_own": int(own_sel.sum()),
            "pixels_target": int(target_sel.sum()), "faces": faces}


# Below this frame-0 accuracy the model does not draw the object at all (a scene's 6-11 colours put
# chance at 0.09-0.17), and hidden / visible would divide noise by noise: normalised is None there.
MIN_VISIBLE_ACCURACY = 0.2


def hidden_face_accuracy(gen: Any, truth: ToyTruth, index: int | None = None) -> dict[str, Any]:
    """Accuracy on revealed hidden faces, normalised by accuracy on the hued faces frame 0 shows.

    ``value``: fraction of true pixels (frames ``t >= 1``) of the revealed hidden faces
    (:func:`~mvs2v_toy.counterfactual.revealed_hidden_faces`) painted in that face's colour;
    ``visible``: the same on every pixel (all frames) of the hued faces visible in frame 0;
    ``normalised = value / visible`` (None when ``visible < MIN_VISIBLE_ACCURACY``). Over object
    ``index``, or all objects when None.

    Returns:
        ``{"value", "visible", "normalised", "pixels", "visible_pixels", "per_object"}`` (None where
        nothing is scored).
    """
    names = list(truth.scene.colours_in_scene())
    pred = _classes(gen, truth, names, "hidden_face_accuracy")
    indices = range(len(truth.scene.objects)) if index is None else [int(index)]
    totals = np.zeros(4, dtype=np.int64)  # hidden hits, hidden pixels, visible hits, visible pixels
    per_object = []
    for i in indices:
        _check_index(truth, i, "hidden_face_accuracy")
        obj = truth.scene.objects[i]
        mask = truth.object_id == i
        true_class = np.full(truth.face_id.shape, -2, dtype=np.int64)  # -2: no class (not this object)
        true_class[mask] = _face_classes(truth, i, names)[truth.face_id[mask].astype(np.int64)]
        correct = pred == true_class
        hidden = revealed_hidden_faces(truth, i)
        shown = [f for f in HUED_FACES[obj.shape] if f in truth.visible_faces(i, 0)]
        hidden_sel = _face_pixels(truth, i, hidden)
        shown_sel = mask & np.isin(truth.face_id, [obj.faces.index(f) for f in shown])
        counts = np.array([(correct & hidden_sel).sum(), hidden_sel.sum(), (correct & shown_sel).sum(),
                           shown_sel.sum()], dtype=np.int64)
        totals += counts
        per_object.append({"name": obj.name, "hidden_faces": hidden, "visible_faces": shown,
                           **_accuracies(counts)})
    return {**_accuracies(totals), "per_object": per_object}


def _accuracies(counts: np.ndarray) -> dict[str, Any]:
    hits, n, vis_hits, vis_n = (int(c) for c in counts)
    value = hits / n if n else None
    visible = vis_hits / vis_n if vis_n else None
    normalised = value / visible if value is not None and visible and visible >= MIN_VISIBLE_ACCURACY else None
    return {"value": value, "visible": visible, "normalised": normalised, "pixels": n, "visible_pixels": vis_n}

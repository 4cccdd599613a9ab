"""Counterfactual versions of a toy scene: which faces only the references know, and new colours for them.

The causal probes (:mod:`mvs2v_toy.causal`) generate a held-out scene twice, from two versions
that differ only in the colours of faces frame 0 does not show. The caption, the noise and
frame 0 are then identical, so any difference between the two generations can only come from the
reference views. A model that ignores its references paints both versions alike.

* :func:`hidden_faces` -- the hued faces of an object that the first frame does not show.
* :func:`revealed_hidden_faces` -- those of them that a later frame shows (what can be scored).
* :func:`recolour_hidden` -- the scene with those faces in hues no face or floor of the scene uses.
* :func:`swap_views` / :func:`view_face` -- two reference views showing revealed hidden faces, for
  the slot-binding probe, and the face a view shows.

Visible means what :func:`~mvs2v_toy.render.visible_faces` says (at least 5% of the object's
pixels and at least 2 pixels), the same rule as the truth's ``target_faces``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ._core import MVS2VError
from .render import render_frame, visible_faces
from .truth import ReferenceView, ToyTruth
from .world import HUED_FACES, HUES, ToyScene

__all__ = ["hidden_faces", "revealed_hidden_faces", "recolour_hidden", "swap_views", "view_face"]


def _check_index(scene: ToyScene, index: int) -> None:
    if not 0 <= int(index) < len(scene.objects):
        raise MVS2VError(f"object index {index} is out of range: the scene has {len(scene.objects)} object(s)")


def _hidden(scene: ToyScene, index: int, first_frame_faces: Sequence[str]) -> list[str]:
    obj = scene.objects[index]
    return [f for f in HUED_FACES[obj.shape] if f not in first_frame_faces]


def hidden_faces(scene: ToyScene, index: int) -> list[str]:
    """Hued faces of object ``index`` not visible in the scene's true frame 0 (in the shape's face order)."""
    _check_index(scene, index)
    frame0 = render_frame(scene, 0)
    return _hidden(scene, index, visible_faces(frame0.object_id, frame0.face_id, index, scene.objects[index].faces))


def revealed_hidden_faces(truth: ToyTruth, index: int) -> list[str]:
    """The :func:`hidden_faces` of object ``index`` that some true frame ``t >= 1`` shows."""
    _check_index(truth.scene, index)
    hidden = _hidden(truth.scene, index, truth.visible_faces(index, 0))
    later = {f for t in range(1, truth.num_frames) for f in truth.visible_faces(index, t)}
    return [f for f in hidden if f in later]


def recolour_hidden(scene: ToyScene, index: int, rng: np.random.Generator,
                    faces: Sequence[str] | None = None) -> ToyScene:
    """A copy of ``scene`` where ``faces`` of object ``index`` get new hues.

    The new hues are drawn (without repetition) from the hues that no face of any object and not
    the floor use, so the two versions share no colour on those faces and a painted pixel says which
    version it follows. Everything else (geometry, patterns, the other faces, the caption) is kept.

    Args:
        scene: the scene.
        index: the object to recolour.
        rng: the random source (same state, same new hues).
        faces: the faces to recolour (hued faces of the object); default :func:`hidden_faces`.

    Raises:
        MVS2VError: a face that is not a hued face of the object, no face to recolour, or fewer unused
            hues than faces.
    """
    _check_index(scene, index)
    obj = scene.objects[index]
    chosen = hidden_faces(scene, index) if faces is None else list(dict.fromkeys(faces))
    bad = [f for f in chosen if f not in HUED_FACES[obj.shape]]
    if bad:
        raise MVS2VError(f"recolour_hidden: {bad} are not hued faces of the {obj.shape} {obj.name!r} "
                         f"(hued faces: {', '.join(HUED_FACES[obj.shape])})")
    if not chosen:
        raise MVS2VError(f"recolour_hidden: object {obj.name!r} has no hidden face to recolour (frame 0 shows all "
                         "of its hued faces); pass faces=... to choose some")
    used = set(scene.colours_in_scene())
    free = [h for h in HUES if h not in used]
    if len(free) < len(chosen):
        raise MVS2VError(f"recolour_hidden: {len(chosen)} faces {chosen} of {obj.name!r} need new hues but only "
                         f"{len(free)} of the {len(HUES)} hues are unused in the scene; recolour fewer faces "
                         "(faces=...) or use a scene with fewer hues")
    picks = rng.permutation(len(free))[: len(chosen)]
    new = {face: free[int(k)] for face, k in zip(chosen, picks)}
    return scene.with_object(index, obj.with_colours(new))


def view_face(truth: ToyTruth, index: int, view: str | float | ReferenceView) -> str:
    """The hued face of object ``index`` that covers most of its pixels in reference ``view`` (label, yaw
    or a :class:`~mvs2v_toy.truth.ReferenceView`); a view rendered on demand when the sample lacks it."""
    _check_index(truth.scene, index)
    ref = view if isinstance(view, ReferenceView) else truth.reference(index, view)
    obj = truth.scene.objects[index]
    ids = ref.face_id[ref.face_id >= 0].astype(np.int64)
    counts = np.bincount(ids, minlength=len(obj.faces))
    hued = [obj.faces.index(f) for f in HUED_FACES[obj.shape]]
    best = max(hued, key=lambda i: int(counts[i]))
    if counts[best] == 0:
        raise MVS2VError(f"reference view {ref.name} of {obj.name!r} shows none of its hued faces")
    return obj.faces[best]


def swap_views(truth: ToyTruth, index: int) -> tuple[str, str] | None:
    """Two labelled reference views of object ``index`` whose faces (:func:`view_face`) are distinct
    revealed hidden faces, e.g. ``("left", "back")``: exchanging their images between their slots is
    the slot-binding probe. The first two such views in reference order; None when fewer than two.
    """
    revealed = set(revealed_hidden_faces(truth, index))
    found: list[tuple[str, str]] = []
    for ref in truth.references[index]:
        if ref.label is None:
            continue
        face = view_face(truth, index, ref)
        if face in revealed and all(face != f for _, f in found):
            found.append((ref.label, face))
        if len(found) == 2:
            return found[0][0], found[1][0]
    return None

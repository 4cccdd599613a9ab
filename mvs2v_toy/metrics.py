"""Ground-truth metrics of the toy world: face accuracy on newly revealed faces, and crosstalk.

Both classify each generated pixel by colour: its class is the scene colour (every face colour of
every object, and the floor colour) whose direction ``rgb / |rgb|`` is closest (largest cosine;
:func:`~mvs2v_core.evaluation.metrics.classify_colours`). Shading and patterns only scale a
colour in the toy world, so on the true frames every pixel is classified as its own face colour.
Masks and face ids always come from the TRUE render: the metrics ask "does the generated video
show the right colour where the truth has this face / this object?".

**Face accuracy (faces revealed later).** For object ``o`` with reference views ``R_o`` (the
views the model was given):

* ``faces_in_references_not_in_first_frame`` = faces visible in some view of ``R_o`` and not
  visible in true frame 0;
* ``target_faces`` = those of them visible in at least one true frame ``t >= 1``.

(Visible: the face covers >= 5% of the object's pixels in that render and >= 2 pixels.) The
scored pixels are every pixel of frames ``t >= 1`` whose true face is a target face of its true
object; a pixel is correct when its generated colour is classified as that face's colour.
Accuracy = correct / scored, over all objects. It is ``None`` when no pixel is scored (e.g. the
references only show what frame 0 already shows). ``face_accuracy_all`` is the same over every
object pixel of every frame.

**Crosstalk** (two-object scenes). For the ordered pair (A, B): ``E_A`` = colours of A's faces
that B does not have, never the neutral gray (a sphere has no gray face, so gray would otherwise
count as "only A's" and an all-gray clip would score 0.25); ``x`` = fraction of the pixels inside
B's true mask (all frames) whose generated colour is classified as a colour of ``E_A``; the same
fraction on the true frames is subtracted (it is 0 by construction, the subtraction keeps the
metric honest if a world ever shares colours). Crosstalk = mean over (A, B) and (B, A); 0 is
ideal, 1 means B is painted entirely in A's colours.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ._core import as_float_frames, classify_colours
from .truth import ReferenceView, ToyTruth, reference_faces_not_in_first_frame
from .world import NEUTRAL, PALETTE

__all__ = ["scene_classes", "face_accuracy", "crosstalk"]


def scene_classes(truth: ToyTruth) -> tuple[list[str], np.ndarray]:
    """Colour names of the scene (objects' faces, then the floor) and their RGB ``[K, 3]``."""
    names = truth.scene.colours_in_scene()
    return names, np.array([PALETTE[n] for n in names], dtype=np.float64)


def _classify(frames: Any, truth: ToyTruth) -> tuple[np.ndarray, list[str]]:
    names, colours = scene_classes(truth)
    return classify_colours(as_float_frames(frames), colours), names


def face_accuracy(generated: Any, truth: ToyTruth,
                  references: Sequence[Sequence[ReferenceView]] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Face accuracy on the faces the references reveal, and on all faces.

    Args:
        generated: ``[F, H, W, 3]`` frames (uint8 or float in [0, 1]) of the truth's shape.
        truth: the sample's :class:`ToyTruth`.
        references: per object, the reference views the model was given (default: the sample's).

    Returns:
        ``(face_accuracy, face_accuracy_all)`` dicts; see the module docstring.
    """
    pred, names = _classify(generated, truth)
    refs = truth.references if references is None else references
    n_frames = truth.num_frames
    per_object = []
    frame_hits = np.zeros(n_frames, dtype=np.int64)
    frame_total = np.zeros(n_frames, dtype=np.int64)
    all_hits = all_total = 0
    for i, obj in enumerate(truth.scene.objects):
        true_class = np.full(truth.face_id.shape, -2, dtype=np.int64)
        mask = truth.object_id == i
        for fi, face in enumerate(obj.faces):
            true_class[mask & (truth.face_id == fi)] = names.index(obj.colours[face])
        correct = (pred == true_class) & mask
        all_hits += int(correct.sum())
        all_total += int(mask.sum())
        missing, target = reference_faces_not_in_first_frame(truth, i, refs[i])
        per_face = {}
        obj_hits = obj_total = 0
        for face in target:
            sel = mask & (truth.face_id == obj.faces.index(face))
            sel[0] = False  # frame 0 does not count: the target faces are those it does not show
            n, k = int(sel.sum()), int((correct & sel).sum())
            per_face[face] = {"pixels": n, "value": k / n if n else None}
            obj_hits, obj_total = obj_hits + k, obj_total + n
            frame_hits += (correct & sel).sum(axis=(1, 2))
            frame_total += sel.sum(axis=(1, 2))
        per_object.append({"name": obj.name, "faces_in_references_not_in_first_frame": missing,
                           "target_faces": target, "pixels": obj_total,
                           "value": obj_hits / obj_total if obj_total else None, "per_face": per_face})
    total = int(frame_total.sum())
    revealed = {
        "value": float(frame_hits.sum()) / total if total else None,
        "pixels": total,
        "per_object": per_object,
        "per_frame": [float(h) / t if t else None for h, t in zip(frame_hits, frame_total)],
    }
    overall = {"value": all_hits / all_total if all_total else None, "pixels": all_total}
    return revealed, overall


def crosstalk(generated: Any, truth: ToyTruth) -> dict[str, Any] | None:
    """Two-subject crosstalk (see the module docstring); None for one-object scenes."""
    objects = truth.scene.objects
    if len(objects) < 2:
        return None
    pred_gen, names = _classify(generated, truth)
    pred_true, _ = _classify(truth.frames, truth)
    pairs = []
    for a in range(len(objects)):
        for b in range(len(objects)):
            if a == b:
                continue
            own_b = set(objects[b].colours.values())
            # Gray is every object's neutral (tops, bottoms), never a colour that marks A.
            exclusive = sorted({c for c in objects[a].colours.values() if c not in own_b and c != NEUTRAL})
            idx = [names.index(c) for c in exclusive]
            mask = truth.object_id == b
            n = int(mask.sum())
            gen = float(np.isin(pred_gen[mask], idx).sum()) / n if n else 0.0
            ref = float(np.isin(pred_true[mask], idx).sum()) / n if n else 0.0
            pairs.append({"from": objects[a].name, "to": objects[b].name, "colours": exclusive, "pixels": n,
                          "generated": gen, "truth": ref, "value": gen - ref})
    return {"value": float(np.mean([p["value"] for p in pairs])), "pairs": pairs}

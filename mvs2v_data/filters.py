"""filter: drop bad reference views, then items without enough good views; every drop records its reason.

Per view (in this order; the first failed check is the reason):

* ``unreadable`` -- the view's image cannot be decoded;
* ``blur`` -- variance of the Laplacian below ``filters.blur_min`` (0 = off);
* ``aesthetic`` -- LAION-style MLP score on CLIP features below ``aesthetic_min`` (only when
  ``aesthetic_model`` and ``aesthetic_clip`` are set; else off, and the report says so);
* faces only: ``no face`` / ``several faces``; ``pose`` -- ``|yaw - target| > pose_tolerance`` where the
  target is the requested yaw (synthesized views), the bin (video views) or the given yaw;
  ``identity`` -- ArcFace cosine to the frontal reference below the curve ``identity_curve`` at ``|yaw|``.

Per item: ``coverage`` -- fewer than ``min_views`` kept views, or (faces) kept yaws spanning less than
``min_yaw_spread`` degrees; ``no reference face`` -- no face in the frontal reference.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mvs2v_core.errors import CheckpointError

from .config import identity_threshold
from .faces import manifest_yaw
from .media import blur_score, read_rgb
from .references import face_analyzer, item_kind
from .runner import Context, ItemError, Stage

__all__ = ["FILTER_STAGE", "AestheticScorer", "yaw_target"]


class AestheticScorer:
    """LAION's improved aesthetic predictor: linear layers (no activations, as LAION's MLP) on the
    L2-normalized CLIP image embedding. ``mlp``: a safetensors file of ``*.weight`` / ``*.bias`` pairs,
    applied in the numeric order of their names (``layers.0``, ``layers.2``, ...)."""

    def __init__(self, mlp: str, clip: str) -> None:
        import re

        from safetensors.numpy import load_file

        from mvs2v_core.evaluation.features import HFImageFeatureExtractor

        try:
            tensors = load_file(mlp)
        except Exception as exc:  # safetensors raises its own types on a bad file
            raise CheckpointError(f"filters.aesthetic_model '{mlp}' is not a readable safetensors file "
                                  f"({exc})") from None
        names = sorted((k[: -len(".weight")] for k in tensors if k.endswith(".weight")),
                       key=lambda n: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", n)])
        self.layers = [(tensors[f"{n}.weight"].astype(np.float64), tensors.get(f"{n}.bias")) for n in names]
        if not self.layers or self.layers[-1][0].shape[0] != 1:
            raise CheckpointError(f"filters.aesthetic_model '{mlp}' is not an MLP ending in one output")
        self.clip = HFImageFeatureExtractor(clip)

    def __call__(self, image: np.ndarray) -> float:
        import torch

        x = self.clip(torch.from_numpy(np.array(image[None])).permute(0, 3, 1, 2)).numpy().astype(np.float64)
        for w, b in self.layers:
            x = x @ w.T + (0.0 if b is None else b)
        return float(x.ravel()[0])


def yaw_target(view: dict) -> float | None:
    """The yaw a view should show: requested (synthesized), its bin (video) or its given yaw; None if unknown."""
    for key in ("requested_yaw", "bin"):
        if view.get(key) is not None:
            return float(view[key])
    return float(view["yaw"]) if view.get("source") == "given" and view.get("yaw") is not None else None


def _aesthetic(ctx: Context) -> Any:
    f = ctx.cfg.filters
    if not (f.aesthetic_model and f.aesthetic_clip):
        return None
    return ctx.resource("aesthetic", lambda: AestheticScorer(str(ctx.cfg.resolve(f.aesthetic_model)),
                                                               str(ctx.cfg.resolve(f.aesthetic_clip))))


def _reference_embedding(ctx: Context, rec: dict) -> np.ndarray | None:
    """ArcFace embedding of the frontal reference: the item's portrait, else its frontal view."""
    sources = [rec["image"]] if rec.get("image") else []
    sources += [v["image"] for v in rec["views"] if v.get("frontal")]
    for src in sources:
        face = face_analyzer(ctx).main_face(read_rgb(ctx.work.abs(src)))
        if face is not None:
            return face.embedding
    return None


def _check_view(ctx: Context, view: dict, kind: str, ref: np.ndarray | None) -> str | None:
    f = ctx.cfg.filters
    try:
        image = read_rgb(ctx.work.abs(view["image"]))
    except ItemError:
        return "unreadable"
    m = view.setdefault("metrics", {})
    m["blur"] = round(blur_score(image), 3)
    if f.blur_min > 0 and m["blur"] < f.blur_min:
        return "blur"
    scorer = _aesthetic(ctx)
    if scorer is not None:
        m["aesthetic"] = round(scorer(image), 4)
        if m["aesthetic"] < f.aesthetic_min:
            return "aesthetic"
    if kind != "face":
        return None
    faces = face_analyzer(ctx).analyse(image)
    m["faces"] = len(faces)
    if len(faces) != 1:
        return "no face" if not faces else "several faces"
    yaw = manifest_yaw(faces[0].yaw)
    m["yaw"] = round(yaw, 2)
    target = yaw_target(view)
    if target is not None and abs(yaw - target) > f.pose_tolerance:
        return "pose"
    view["yaw"] = round(yaw, 2)
    if ref is not None:
        m["identity"] = round(float(np.dot(faces[0].embedding, ref)), 4)
        m["identity_min"] = round(identity_threshold(f.identity_curve, yaw), 4)
        if m["identity"] < m["identity_min"]:
            return "identity"
    return None


def _coverage(ctx: Context, kind: str, kept: list[dict]) -> str | None:
    f = ctx.cfg.filters
    if len(kept) < f.min_views:
        return f"coverage: {len(kept)} good views, filters.min_views is {f.min_views}"
    yaws = [v["yaw"] for v in kept if v.get("yaw") is not None]
    if kind == "face" and f.min_yaw_spread > 0 and (not yaws or max(yaws) - min(yaws) < f.min_yaw_spread):
        spread = max(yaws) - min(yaws) if yaws else 0.0
        return f"coverage: the views span {spread:.1f} degrees of yaw, filters.min_yaw_spread is {f.min_yaw_spread:g}"
    return None


def _filter(ctx: Context, rec: dict) -> tuple[str, str | None]:
    kind = item_kind(ctx, rec)
    ref = None
    if kind == "face":
        ref = _reference_embedding(ctx, rec)
        if ref is None:
            return "dropped", "no reference face"
    for view in rec["views"]:
        view["dropped"] = _check_view(ctx, view, kind, ref)
    kept = [v for v in rec["views"] if not v["dropped"]]
    if kept and not any(v.get("frontal") for v in kept):  # the frontal view was dropped: the nearest to 0 takes over
        best = min(kept, key=lambda v: abs(v["yaw"]) if v.get("yaw") is not None else 0.0)
        best["frontal"] = True
    ids = [v["metrics"]["identity"] for v in kept if "identity" in v.get("metrics", {})]
    rec["quality"] = round(float(np.clip(np.mean(ids), 0.0, 1.0)), 4) if ids else None
    reason = _coverage(ctx, kind, kept)
    return ("dropped", reason) if reason else ("done", None)


def _prepare(ctx: Context, todo: list[dict]) -> None:
    if any(item_kind(ctx, r) == "face" for r in todo):
        face_analyzer(ctx)
    _aesthetic(ctx)  # a bad aesthetic model fails before any item


FILTER_STAGE = Stage("filter", _filter, _prepare, help="blur, aesthetic, identity, face count, pose, coverage")

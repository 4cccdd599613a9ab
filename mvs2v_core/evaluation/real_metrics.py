"""Metrics for real generated videos, registered in core's metric registry (definitions: docs/evaluation.md).

Each declares the inputs it reads and the weights folder it needs (:class:`~.registry.MetricWeights`);
one whose folder is missing is skipped with a one-line reason naming the folder (or the flag to give),
and the others still run. Nothing heavy is imported here: numpy, torch, transformers, OpenCV and
insightface are imported by the metric that runs. Loaded models and computed features are cached for
the process (keyed by folder and by a hash of the pixels), so ``s_v2r_dino`` and ``s_r2v_dino`` share
one pass over the frames.

Inputs (besides the registry's ``video``):

======================= =============================================================================
``reference_images``    per subject, its reference images ``[H, W, 3]`` (uint8 or float in [0, 1]);
                        one array ``[R, H, W, 3]`` or one list of images is a single subject
``subject_boxes``       per subject, None, one box ``(x0, y0, x1, y1)`` in frame pixels for every frame,
                        or ``[F, 4]`` (a row of NaN: absent in that frame)
``subject_masks``       per subject, None or a boolean mask ``[F, H, W]`` (or ``[H, W]`` for every frame);
                        its bounding box is the crop
``subject_kinds``       per subject, ``"person"`` or ``"object"`` (default: person where a face model is given)
``prompt``              the text prompt
``max_frames``          frames sampled evenly for the model-based metrics (default: all)
``eval_device``         torch device of the transformers models (default cpu)
``dino_model`` ...      the weights folders: ``dino_model``, ``clip_model``, ``face_model``, ``aesthetic_model``
======================= =============================================================================
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Mapping

from .metric import Metric, MetricNotApplicable, MetricWeights, missing_requirement

__all__ = ["REAL_METRICS", "REAL_METRIC_NAMES", "DINO_WEIGHTS", "CLIP_WEIGHTS", "FACE_WEIGHTS", "AESTHETIC_WEIGHTS",
           "WEIGHT_SUBFOLDERS", "weights_from_root", "clear_caches", "FACE_CROP_SCALE"]

DINO_WEIGHTS = MetricWeights("a DINOv2 transformers folder (e.g. facebook/dinov2-base)", "dino_model", ("config.json",))
CLIP_WEIGHTS = MetricWeights("a CLIP transformers folder (e.g. openai/clip-vit-large-patch14)", "clip_model",
                             ("config.json",))
# The file names are faces.DETECTOR_FILE / RECOGNISER_FILE (not imported: faces.py imports numpy).
FACE_WEIGHTS = MetricWeights("an InsightFace pack folder (det_10g.onnx + w600k_r50.onnx, e.g. buffalo_l)",
                             "face_model", ("det_10g.onnx", "w600k_r50.onnx"))
AESTHETIC_WEIGHTS = MetricWeights("the LAION aesthetic MLP (aesthetic_mlp.safetensors)", "aesthetic_model",
                                  ("aesthetic_mlp.safetensors",))
# Sub-folders of one models root (weights_from_root).
WEIGHT_SUBFOLDERS = {"dino_model": "dinov2", "clip_model": "clip", "face_model": "insightface",
                     "aesthetic_model": "aesthetic"}
# A face crop is the detected face box scaled by this about its centre (head and some hair).
FACE_CROP_SCALE = 1.6

_CACHE: OrderedDict[tuple, Any] = OrderedDict()
_CACHE_SIZE = 32


def weights_from_root(root: str | Path) -> dict[str, Path]:
    """The weights inputs for one models root: ``root/dinov2``, ``root/clip``, ``root/insightface``, ``root/aesthetic``.

    Every option gets its folder (present or not), so a missing one is skipped with a reason naming it.
    """
    base = Path(root).expanduser()
    return {option: base / sub for option, sub in WEIGHT_SUBFOLDERS.items()}


def clear_caches() -> None:
    """Forget loaded models and computed features."""
    _CACHE.clear()


def _cached(key: tuple, make: Callable[[], Any]) -> Any:
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    value = make()
    _CACHE[key] = value
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return value


def _load(key: tuple, make: Callable[[], Any]) -> Any:
    """A cached model; a folder that does not load skips the metric with its one-line reason (others still run)."""
    from ..errors import MVS2VError

    try:
        return _cached(key, make)
    except MVS2VError as exc:
        raise MetricNotApplicable(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None


def _digest(images: Any) -> str:
    """A hash of a list of images (shapes and pixels)."""
    h = hashlib.blake2b(digest_size=16)
    for im in images:
        h.update(str(im.shape).encode())
        h.update(im.tobytes())
    return h.hexdigest()


def _require(weights: MetricWeights, inputs: Mapping[str, Any]) -> Path:
    """The folder of ``weights`` in ``inputs``; MetricNotApplicable with the registry's one-line reason if unusable."""
    probe = Metric("weights_check", "", frozenset(), lambda _: {}, weights=weights)
    reason = missing_requirement(probe, inputs)
    if reason is not None:
        raise MetricNotApplicable(reason)
    return Path(inputs[weights.option]).expanduser().resolve()


# ---- inputs -----------------------------------------------------------------------------------------


def _uint8(image: Any) -> Any:
    """One image ``[H, W, 3]`` -> uint8 numpy."""
    import numpy as np

    from ..errors import MVS2VError

    a = np.asarray(image)
    if a.ndim != 3 or a.shape[-1] != 3:
        raise MVS2VError(f"an image must be RGB [H, W, 3], got {a.shape}")
    if a.dtype != np.uint8:
        a = (np.clip(a.astype(np.float64), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return np.ascontiguousarray(a)


def _video(inputs: Mapping[str, Any]) -> tuple[Any, list[int]]:
    """The sampled frames (uint8 ``[N, H, W, 3]``) and their indices in the clip (``max_frames`` evenly spaced)."""
    import numpy as np

    from ..errors import MVS2VError

    v = np.asarray(inputs["video"])
    if v.ndim != 4 or v.shape[-1] != 3 or v.shape[0] == 0:
        raise MVS2VError(f"video must be frames [F, H, W, 3], got {v.shape}")
    n = v.shape[0]
    k = inputs.get("max_frames")
    idx = list(range(n)) if not k or int(k) >= n else sorted(set(np.linspace(0, n - 1, int(k)).round().astype(int)))
    return np.stack([_uint8(v[i]) for i in idx]), [int(i) for i in idx]


def _references(inputs: Mapping[str, Any]) -> list[list[Any]]:
    """``reference_images`` as per subject, a list of uint8 images ``[H, W, 3]``."""
    import numpy as np

    from ..errors import MVS2VError

    refs = inputs["reference_images"]
    if isinstance(refs, np.ndarray) and refs.ndim == 4:
        refs = [refs]
    elif isinstance(refs, (list, tuple)) and refs and np.asarray(refs[0]).ndim == 3 and not isinstance(refs[0], list):
        refs = [refs]
    subjects = [[_uint8(im) for im in subject] for subject in refs]
    if not subjects or any(len(s) == 0 for s in subjects):
        raise MVS2VError("reference_images must hold at least one image per subject")
    return subjects


def _per_subject(inputs: Mapping[str, Any], key: str, index: int) -> Any:
    value = inputs.get(key)
    if value is None:
        return None
    return value[index] if index < len(value) else None


# ---- models and features ------------------------------------------------------------------------------


def _device(inputs: Mapping[str, Any]) -> str:
    return str(inputs.get("eval_device") or "cpu")


def _extractor(folder: Path, device: str) -> Any:
    from .features import HFImageFeatureExtractor

    return _load(("extractor", str(folder), device), lambda: HFImageFeatureExtractor(folder, device=device))


def _features(extractor: Any, images: list[Any]) -> Any:
    """L2-normalized features ``[N, D]`` (torch) of uint8 images of any sizes (same-size runs share a batch)."""
    import numpy as np
    import torch

    def make() -> Any:
        out, start = [], 0
        while start < len(images):
            end = start
            while end < len(images) and images[end].shape == images[start].shape:
                end += 1
            batch = torch.from_numpy(np.stack(images[start:end])).permute(0, 3, 1, 2)
            out.append(extractor(batch))
            start = end
        return torch.cat(out)

    return _cached(("features", extractor.name, id(extractor), _digest(images)), make)


def _face_analyzer(folder: Path) -> Any:
    from .faces import FaceAnalyzer

    return _load(("faces", str(folder)), lambda: FaceAnalyzer(folder))


def _faces(analyzer: Any, image: Any) -> list[Any]:
    """Every face of an image with its embedding (cached)."""
    return _cached(("face_analysis", str(analyzer.folder), _digest([image])), lambda: analyzer.analyse(image))


def _reference_faces(analyzer: Any, refs: list[Any]) -> list[Any]:
    """The main face of each reference image (None where it shows none)."""
    return [_cached(("main_face", str(analyzer.folder), _digest([r])), lambda r=r: analyzer.main_face(r)) for r in refs]


# ---- reference similarity on DINOv2 / CLIP features ----------------------------------------------------


def _feature_similarity(weights: MetricWeights, key: str) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    def compute(inputs: Mapping[str, Any]) -> dict[str, Any]:
        from .metrics import reference_similarity

        extractor = _extractor(_require(weights, inputs), _device(inputs))
        frames, idx = _video(inputs)
        frame_feats = _features(extractor, list(frames))
        per_subject = []
        for refs in _references(inputs):
            sim = reference_similarity(frame_feats, _features(extractor, refs))
            per_subject.append({k: sim[k] for k in ("s_v2r", "s_r2v", "frame_best", "reference_best")})
        return {"value": sum(s[key] for s in per_subject) / len(per_subject), "per_subject": per_subject,
                "frames": idx, "extractor": extractor.name}

    return compute


# ---- subject crops (Nexus-like), crosstalk ---------------------------------------------------------------


def _crop(image: Any, box: Any) -> Any:
    h, w = image.shape[:2]
    x0, y0 = max(0, int(box[0])), max(0, int(box[1]))
    x1, y1 = min(w, int(round(box[2]))), min(h, int(round(box[3])))
    return image[y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)]


def _given_boxes(inputs: Mapping[str, Any], index: int, idx: list[int]) -> list[Any] | None:
    """Per sampled frame, the subject's box from ``subject_masks`` or ``subject_boxes`` (None: absent there)."""
    import numpy as np

    mask = _per_subject(inputs, "subject_masks", index)
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        m = np.broadcast_to(m, (max(idx) + 1,) + m.shape) if m.ndim == 2 else m
        out = []
        for i in idx:
            ys, xs = np.nonzero(m[i])
            out.append(None if ys.size == 0 else (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
        return out
    box = _per_subject(inputs, "subject_boxes", index)
    if box is None:
        return None
    b = np.asarray(box, dtype=np.float64)
    rows = [b] * len(idx) if b.ndim == 1 else [b[i] for i in idx]
    return [None if not np.all(np.isfinite(r)) else tuple(r) for r in rows]


def _face_boxes(inputs: Mapping[str, Any], frames: Any, refs: list[Any]) -> tuple[list[Any], list[Any]]:
    """Per frame, the face most like the subject's reference faces (box scaled by FACE_CROP_SCALE); reference crops."""
    import numpy as np

    from .faces import expand_box

    analyzer = _face_analyzer(_require(FACE_WEIGHTS, inputs))
    ref_faces = _reference_faces(analyzer, refs)
    found = [f for f in ref_faces if f is not None]
    if not found:
        raise MetricNotApplicable("no face found in the subject's reference images")
    ref_emb = np.stack([f.embedding for f in found])
    boxes = []
    for frame in frames:
        faces = _faces(analyzer, frame)
        if not faces:
            boxes.append(None)
            continue
        best = max(faces, key=lambda f: float((ref_emb @ f.embedding).max()))
        boxes.append(expand_box(best.box, FACE_CROP_SCALE, frame.shape[1], frame.shape[0]))
    ref_crops = [r if f is None else _crop(r, expand_box(f.box, FACE_CROP_SCALE, r.shape[1], r.shape[0]))
                 for r, f in zip(refs, ref_faces)]
    return boxes, ref_crops


def _subject_crops(inputs: Mapping[str, Any], index: int, frames: Any, idx: list[int],
                   refs: list[Any]) -> dict[str, Any]:
    """The subject's crops in the sampled frames and the references to compare them with.

    Returns ``{"crops", "frames" (indices in the clip), "references", "method"}``; MetricNotApplicable
    when the subject has no box, no mask and is not a person with a face model given.
    """
    boxes, ref_crops, method = _given_boxes(inputs, index, idx), refs, "box"
    if _per_subject(inputs, "subject_masks", index) is not None:
        method = "mask"
    if boxes is None:
        kind = _per_subject(inputs, "subject_kinds", index) or "person"
        if kind != "person":
            raise MetricNotApplicable(f"subject {index} is an object without subject_boxes or subject_masks")
        if inputs.get(FACE_WEIGHTS.option) is None:
            raise MetricNotApplicable(f"subject {index}: needs subject_boxes or subject_masks, or a face model "
                                      f"({FACE_WEIGHTS.flag}) to crop a person's face")
        boxes, ref_crops = _face_boxes(inputs, frames, refs)
        method = "face"
    kept = [(i, _crop(f, b)) for i, f, b in zip(idx, frames, boxes) if b is not None]
    if not kept:
        raise MetricNotApplicable(f"subject {index} appears in no sampled frame")
    return {"crops": [c for _, c in kept], "frames": [i for i, _ in kept], "references": ref_crops, "method": method}


def _all_subject_crops(inputs: Mapping[str, Any]) -> tuple[list[dict[str, Any] | None], dict[int, str]]:
    frames, idx = _video(inputs)
    crops, reasons = [], {}
    for i, refs in enumerate(_references(inputs)):
        try:
            crops.append(_subject_crops(inputs, i, frames, idx, refs))
        except MetricNotApplicable as exc:
            crops.append(None)
            reasons[i] = str(exc)
    return crops, reasons


def _subject_crop_similarity(inputs: Mapping[str, Any]) -> dict[str, Any]:
    from .metrics import reference_similarity

    extractor = _extractor(_require(DINO_WEIGHTS, inputs), _device(inputs))
    crops, reasons = _all_subject_crops(inputs)
    per_subject = []
    for i, c in enumerate(crops):
        if c is None:
            continue
        sim = reference_similarity(_features(extractor, c["crops"]), _features(extractor, c["references"]))
        per_subject.append({"subject": i, "s_v2r": sim["s_v2r"], "s_r2v": sim["s_r2v"], "method": c["method"],
                            "frames": c["frames"]})
    if not per_subject:
        raise MetricNotApplicable("; ".join(reasons.values()))
    return {"value": sum(s["s_v2r"] for s in per_subject) / len(per_subject),
            "s_r2v": sum(s["s_r2v"] for s in per_subject) / len(per_subject),
            "per_subject": per_subject, "skipped_subjects": reasons, "extractor": extractor.name}


def _subject_crosstalk(inputs: Mapping[str, Any]) -> dict[str, Any]:
    from .metrics import reference_similarity

    if len(_references(inputs)) < 2:
        raise MetricNotApplicable("needs a scene with two subjects")
    extractor = _extractor(_require(DINO_WEIGHTS, inputs), _device(inputs))
    crops, reasons = _all_subject_crops(inputs)
    if any(c is None for c in crops):
        raise MetricNotApplicable("; ".join(reasons.values()))
    crop_feats = [_features(extractor, c["crops"]) for c in crops]
    ref_feats = [_features(extractor, c["references"]) for c in crops]
    n = len(crops)
    matrix = [[reference_similarity(crop_feats[a], ref_feats[b])["s_v2r"] for b in range(n)] for a in range(n)]
    pairs = [(a, b) for a in range(n) for b in range(n) if a != b]
    cross = sum(matrix[a][b] for a, b in pairs) / len(pairs)
    own = sum(matrix[a][a] for a in range(n)) / n
    baseline = sum(reference_similarity(ref_feats[a], ref_feats[b])["s_v2r"] for a, b in pairs) / len(pairs)
    return {"value": cross, "own": own, "margin": own - cross, "reference_baseline": baseline, "matrix": matrix,
            "extractor": extractor.name}


# ---- faces ------------------------------------------------------------------------------------------------


def _subject_face_scores(analyzer: Any, frames: Any, idx: list[int], refs: list[Any]) -> dict[str, Any]:
    """One subject's FaceSim: per frame, the best-matching face's best cosine to a reference face, and its yaw."""
    import numpy as np

    from .faces import yaw_bin

    ref_faces = _reference_faces(analyzer, refs)
    found = [f for f in ref_faces if f is not None]
    if not found:
        raise MetricNotApplicable("no face found in its reference images")
    ref_emb = np.stack([f.embedding for f in found]).astype(np.float64)
    sims, yaws, frames_used = [], [], []
    for i, frame in zip(idx, frames):
        faces = _faces(analyzer, frame)
        if not faces:
            continue
        scores = [float((ref_emb @ f.embedding.astype(np.float64)).max()) for f in faces]
        best = int(np.argmax(scores))
        sims.append(scores[best])
        yaws.append(faces[best].yaw)
        frames_used.append(i)
    return {"value": float(np.mean(sims)) if sims else None, "similarity": sims, "yaw": yaws, "frames": frames_used,
            "detection_rate": len(sims) / len(idx), "reference_faces": len(found),
            "reference_yaw_bins": _bin_counts([f.yaw for f in found]), "bins": [yaw_bin(y) for y in yaws]}


def _bin_counts(yaws: list[float]) -> dict[str, int]:
    from .faces import yaw_bin, yaw_bin_labels

    counts = {label: 0 for label in yaw_bin_labels()}
    for y in yaws:
        counts[yaw_bin(y)] += 1
    return counts


def _face_similarity(inputs: Mapping[str, Any]) -> dict[str, Any]:
    from .faces import yaw_bin_labels

    analyzer = _face_analyzer(_require(FACE_WEIGHTS, inputs))
    frames, idx = _video(inputs)
    per_subject, reasons = [], {}
    for i, refs in enumerate(_references(inputs)):
        if (_per_subject(inputs, "subject_kinds", i) or "person") != "person":
            continue
        try:
            per_subject.append({"subject": i, **_subject_face_scores(analyzer, frames, idx, refs)})
        except MetricNotApplicable as exc:
            reasons[i] = f"subject {i}: {exc}"
    if not per_subject:
        raise MetricNotApplicable("; ".join(reasons.values()) or "no person subject")
    pooled = [(s, b) for p in per_subject for s, b in zip(p["similarity"], p["bins"])]
    if not pooled:
        raise MetricNotApplicable(f"no face detected in any of the {len(idx)} sampled frames")
    by_yaw = {}
    for label in yaw_bin_labels():
        vals = [s for s, b in pooled if b == label]
        by_yaw[label] = {"mean": sum(vals) / len(vals) if vals else None, "count": len(vals)}
    scored = [p["value"] for p in per_subject if p["value"] is not None]
    return {"value": sum(scored) / len(scored), "by_yaw": by_yaw, "per_subject": per_subject,
            "skipped_subjects": reasons, "model": analyzer.name}


# ---- motion, text, aesthetics --------------------------------------------------------------------------------


def _motion(inputs: Mapping[str, Any]) -> dict[str, Any]:
    import numpy as np

    from ..errors import MVS2VError
    from .motion import motion_statistics

    v = np.asarray(inputs["video"])
    frames = np.stack([_uint8(f) for f in v]) if v.ndim == 4 else v
    try:
        return _cached(("motion", _digest([frames])), lambda: motion_statistics(frames))
    except MVS2VError as exc:
        if "OpenCV" in str(exc) or "at least 2 frames" in str(exc):
            raise MetricNotApplicable(str(exc)) from None
        raise


def _motion_amplitude(inputs: Mapping[str, Any]) -> dict[str, Any]:
    m = _motion(inputs)
    return {"value": m["amplitude"], "per_diagonal": m["amplitude_per_diagonal"], "per_pair": m["amplitude_per_pair"],
            "resolution": m["resolution"]}


def _motion_variation(inputs: Mapping[str, Any]) -> dict[str, Any]:
    m = _motion(inputs)
    if m["variation"] is None:
        raise MetricNotApplicable("needs at least 3 frames")
    amp = m["amplitude"]
    return {"value": m["variation"], "per_step": m["variation_per_step"],
            "relative": m["variation"] / amp if amp > 0 else 0.0}


def _clip(inputs: Mapping[str, Any]) -> Any:
    from .clip_scores import CLIPTextImage

    folder, device = _require(CLIP_WEIGHTS, inputs), _device(inputs)
    return _load(("clip_text_image", str(folder), device), lambda: CLIPTextImage(folder, device=device))


def _text_alignment(inputs: Mapping[str, Any]) -> dict[str, Any]:
    prompt = inputs["prompt"]
    if not isinstance(prompt, str) or not prompt.strip():
        raise MetricNotApplicable("needs a non-empty prompt")
    clip = _clip(inputs)
    frames, idx = _video(inputs)
    image = _features(clip.images, list(frames))
    cos = (image.double() @ clip.text_features([prompt])[0].double()).tolist()
    return {"value": sum(cos) / len(cos), "clip_score": 100.0 * sum(max(c, 0.0) for c in cos) / len(cos),
            "per_frame": cos, "frames": idx, "model": clip.name}


def _aesthetic(inputs: Mapping[str, Any]) -> dict[str, Any]:
    from ..errors import MVS2VError
    from .clip_scores import AestheticMLP

    folder = _require(AESTHETIC_WEIGHTS, inputs)
    mlp = _load(("aesthetic", str(folder)), lambda: AestheticMLP(folder))
    extractor = _extractor(_require(CLIP_WEIGHTS, inputs), _device(inputs))
    frames, idx = _video(inputs)
    try:
        scores = mlp(_features(extractor, list(frames))).tolist()
    except MVS2VError as exc:  # a CLIP of another width than the MLP's
        raise MetricNotApplicable(str(exc)) from None
    return {"value": sum(scores) / len(scores), "per_frame": scores, "frames": idx, "model": extractor.name}


# ---- the registry entries ----------------------------------------------------------------------------------

_VIDEO_REFS = frozenset({"video", "reference_images"})
_SAMPLING = frozenset({"max_frames", "eval_device"})
_CROPS = frozenset({"subject_boxes", "subject_masks", "subject_kinds", "face_model"}) | _SAMPLING

REAL_METRICS: tuple[Metric, ...] = (
    Metric("s_v2r_dino", "S_v->r on DINOv2 features of full frames: mean over frames of the best cosine to any of "
           "the subject's reference images, mean over subjects", _VIDEO_REFS,
           _feature_similarity(DINO_WEIGHTS, "s_v2r"), _SAMPLING, DINO_WEIGHTS),
    Metric("s_r2v_dino", "S_r->v on DINOv2 features of full frames: mean over reference images of the best cosine "
           "to any frame, mean over subjects", _VIDEO_REFS, _feature_similarity(DINO_WEIGHTS, "s_r2v"), _SAMPLING,
           DINO_WEIGHTS),
    Metric("s_v2r_clip", "S_v->r on CLIP image embeddings of full frames (as s_v2r_dino)", _VIDEO_REFS,
           _feature_similarity(CLIP_WEIGHTS, "s_v2r"), _SAMPLING, CLIP_WEIGHTS),
    Metric("s_r2v_clip", "S_r->v on CLIP image embeddings of full frames (as s_r2v_dino)", _VIDEO_REFS,
           _feature_similarity(CLIP_WEIGHTS, "s_r2v"), _SAMPLING, CLIP_WEIGHTS),
    Metric("face_similarity", "ArcFace cosine between each frame's best-matching detected face and the subject's "
           "nearest reference face, mean over frames with a face, then over person subjects; by_yaw splits it by "
           "the frame face's |yaw| (0-15, 15-30, 30-45, 45-60, 60-90 degrees)", _VIDEO_REFS,
           _face_similarity, frozenset({"subject_kinds"}) | _SAMPLING, FACE_WEIGHTS),
    Metric("subject_crop_similarity", "DINOv2 S_v->r between the subject's crops (given box or mask; a person's "
           "best-matching face box x1.6 otherwise) and its (face-cropped) references, mean over subjects",
           _VIDEO_REFS, _subject_crop_similarity, _CROPS, DINO_WEIGHTS),
    Metric("subject_crosstalk", "DINOv2 S_v->r of each subject's crops against the OTHER subject's references, mean "
           "over ordered pairs (higher = more leakage); 'own' = the same against its own, margin = own - value",
           _VIDEO_REFS, _subject_crosstalk, _CROPS, DINO_WEIGHTS),
    Metric("motion_amplitude", "mean Farneback optical-flow magnitude between consecutive frames, pixels per frame "
           "at the video's resolution (per_diagonal: divided by the frame diagonal)", frozenset({"video"}),
           _motion_amplitude),
    Metric("motion_variation", "mean per-pixel |flow_{t+1} - flow_t| over consecutive frame pairs, pixels per "
           "frame^2 (0 = still or constant velocity; lower = smoother)", frozenset({"video"}), _motion_variation),
    Metric("text_alignment", "mean over sampled frames of the cosine between CLIP's image and prompt embeddings "
           "(clip_score = 100 * mean max(cos, 0))", frozenset({"video", "prompt"}), _text_alignment, _SAMPLING,
           CLIP_WEIGHTS),
    Metric("aesthetic", "mean over sampled frames of LAION's aesthetic MLP on the normalized CLIP image embedding "
           f"(also needs the CLIP folder it was trained on, {CLIP_WEIGHTS.flag})", frozenset({"video"}), _aesthetic,
           frozenset({"clip_model"}) | _SAMPLING, AESTHETIC_WEIGHTS),
)
REAL_METRIC_NAMES: tuple[str, ...] = tuple(m.name for m in REAL_METRICS)

"""Faces for data curation: core's :class:`~mvs2v_core.evaluation.faces.FaceAnalyzer` on the best provider.

The analyzer (SCRFD detection, 5 landmarks, ArcFace) is core's, one implementation for evaluation and
curation; this module only picks the onnxruntime provider and converts yaws to the manifest's sign.

Yaw sign: InsightFace's landmark yaw is positive when the nose points to the image's right, i.e. the
camera sees the subject's *right* cheek. The trainer's view labels put ``left`` at +90 (the subject's
left side), so records and manifests store ``manifest_yaw = -insightface_yaw``.
"""

from __future__ import annotations

from typing import Any, Sequence

from mvs2v_core.errors import MVS2VError

__all__ = ["best_providers", "make_analyzer", "manifest_yaw"]

PREFERRED = ("CUDAExecutionProvider", "CPUExecutionProvider")


def best_providers(available: Sequence[str] | None = None, requested: Sequence[str] = ()) -> list[str]:
    """onnxruntime providers to use: ``requested`` (each must be available), else CUDA then CPU.

    ``available`` defaults to ``onnxruntime.get_available_providers()`` (a test passes its own).
    """
    if available is None:
        try:
            import onnxruntime
        except ImportError:
            raise MVS2VError("face analysis needs onnxruntime: pip install 'mvs2v[data]' "
                             "(or 'mvs2v[data-gpu]' for CUDA)") from None
        available = onnxruntime.get_available_providers()
    if requested:
        missing = [p for p in requested if p not in available]
        if missing:
            raise MVS2VError(f"faces.providers asks for {', '.join(missing)}, which this onnxruntime does not "
                             f"have (it has {', '.join(available)}); install onnxruntime-gpu for CUDA, or set "
                             "faces.providers = [] for the best available")
        return list(requested)
    return [p for p in PREFERRED if p in available] or ["CPUExecutionProvider"]


def make_analyzer(pack: str, det_size: int, det_thresh: float, providers: Sequence[str] = ()) -> Any:
    """A FaceAnalyzer of the pack folder on :func:`best_providers`."""
    from mvs2v_core.evaluation.faces import FaceAnalyzer

    if not pack:
        raise MVS2VError("face items need an InsightFace pack: set faces.pack to a folder holding det_10g.onnx "
                         "and w600k_r50.onnx (e.g. buffalo_l), or give the items kind = 'object'")
    return FaceAnalyzer(pack, det_size=det_size, det_thresh=det_thresh, providers=best_providers(None, providers))


def manifest_yaw(insightface_yaw: float) -> float:
    """The manifest's yaw (+ = the subject's left side seen) of an InsightFace yaw (see the module docstring)."""
    return -float(insightface_yaw) + 0.0  # + 0.0: no negative zero in the records

"""A tiny InsightFace pack for the data tests, in the pack layout (det_10g.onnx + w600k_r50.onnx).

Reuses the recogniser and ONNX helpers of tests/core/test_real_metrics_faces.py and adds a detector
whose number of faces is set by the image's mean BLUE value: blue 0 -> no face, 128 -> one face
(centred, box (32, 32)-(96, 96)), 255 -> two faces (the second at (80, 0)-(112, 32)). As there, the
mean RED value turns the head (``red_for_yaw``) and the colour decides the ArcFace embedding, so a
test sets a frame's face count, yaw and identity by its colour. Frames are 128 x 128.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

_spec = importlib.util.spec_from_file_location(
    "mvs2v_test_real_metrics_faces", Path(__file__).resolve().parents[1] / "core" / "test_real_metrics_faces.py")
faces_tests = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(faces_tests)  # type: ignore[union-attr]

from onnx import TensorProto, helper  # noqa: E402

SIDE = faces_tests.SIDE
SECOND_ROW = (1 * 8 + 6) * 2  # stride 16, cell (y 1, x 6), anchor 0: centre (96, 16)
red_for_yaw = faces_tests.red_for_yaw


def write_counting_detector(path: Path) -> None:
    """The tests' SCRFD-signature detector with the face scores driven by the mean blue value."""
    t = faces_tests
    scores, boxes, kps = t._detector_outputs()
    scores[1][t.FACE_ROW] = 0.7
    scores[1][SECOND_ROW] = 0.2
    boxes[1][SECOND_ROW] = 1.0
    kps[1][SECOND_ROW] = kps[1][t.FACE_ROW] * 0.5
    nodes, outputs = [], []
    blue_mask = np.zeros_like(scores[1])
    blue_mask[[t.FACE_ROW, SECOND_ROW]] = 0.5
    nodes += [t._const("b_starts", [2], np.int64), t._const("b_ends", [3], np.int64),
              t._const("b_axes", [1], np.int64), t._const("b_shape", [1, 1], np.int64),
              t._const("blue_mask", blue_mask),
              helper.make_node("Slice", ["input.1", "b_starts", "b_ends", "b_axes"], ["blue"]),
              helper.make_node("ReduceMean", ["blue"], ["blue_mean4"], axes=[1, 2, 3], keepdims=1),
              helper.make_node("Reshape", ["blue_mean4", "b_shape"], ["blue_mean"]),
              helper.make_node("Mul", ["blue_mean", "blue_mask"], ["blue_shift"])]
    for s, a in zip(t.STRIDES, scores):
        nodes.append(t._const(f"score_base_{s}", a))
        if s == 16:
            nodes.append(helper.make_node("Add", [f"score_base_{s}", "blue_shift"], [f"score_{s}"]))
        else:
            nodes.append(helper.make_node("Identity", [f"score_base_{s}"], [f"score_{s}"]))
        outputs.append(helper.make_tensor_value_info(f"score_{s}", TensorProto.FLOAT, list(a.shape)))
    for s, a in zip(t.STRIDES, boxes):
        nodes.append(t._const(f"bbox_{s}", a))
        outputs.append(helper.make_tensor_value_info(f"bbox_{s}", TensorProto.FLOAT, list(a.shape)))
    mask = np.zeros_like(kps[1])
    mask[t.FACE_ROW, 4] = t.NOSE_GAIN
    nodes += [t._const("starts", [0], np.int64), t._const("ends", [1], np.int64), t._const("axes", [1], np.int64),
              t._const("shape11", [1, 1], np.int64), t._const("nose_mask", mask), t._const("zero", np.zeros((1, 1))),
              helper.make_node("Slice", ["input.1", "starts", "ends", "axes"], ["red"]),
              helper.make_node("ReduceMean", ["red"], ["red_mean4"], axes=[1, 2, 3], keepdims=1),
              helper.make_node("Reshape", ["red_mean4", "shape11"], ["red_mean"]),
              helper.make_node("Mul", ["red_mean", "nose_mask"], ["nose_shift"])]
    for s, a in zip(t.STRIDES, kps):
        nodes.append(t._const(f"kps_base_{s}", a))
        nodes.append(helper.make_node("Add", [f"kps_base_{s}", "nose_shift" if s == 16 else "zero"], [f"kps_{s}"]))
        outputs.append(helper.make_tensor_value_info(f"kps_{s}", TensorProto.FLOAT, list(a.shape)))
    image = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, SIDE, SIDE])
    t._save(helper.make_graph(nodes, "scrfd_counting", [image], outputs), path)


def write_pack(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_counting_detector(folder / "det_10g.onnx")
    faces_tests.write_recogniser(folder / "w600k_r50.onnx")
    return folder


def face_frame(yaw: float = 0.0, faces: int = 1, green: int = 255) -> np.ndarray:
    """A 128 x 128 frame the tiny pack sees with ``faces`` faces (0, 1, 2), the first turned by ``yaw``
    (InsightFace's sign), of the identity ``green`` (255 and 0 are far apart)."""
    img = np.zeros((SIDE, SIDE, 3), dtype=np.uint8)
    img[..., 0] = np.clip(red_for_yaw(yaw), 0, 255)
    img[..., 1] = green
    img[..., 2] = {0: 0, 1: 128, 2: 255}[faces]
    return img

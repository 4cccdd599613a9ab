"""FaceSim, face crops and head yaw (mvs2v_core.evaluation.faces) with tiny ONNX models in InsightFace's pack layout.

The tests build a pack folder holding ``det_10g.onnx`` and ``w600k_r50.onnx`` with the real models'
signatures: an SCRFD detector (input ``[1, 3, 128, 128]``, 9 outputs: scores, boxes and 5 landmarks
for strides 8, 16, 32 with 2 anchors per cell) and an ArcFace recogniser (``[N, 3, 112, 112]`` ->
``[N, 512]``). The detector "sees" one face centred at (64, 64) whose nose moves right with the
mean red value of the image, so a test sets a frame's yaw by its colour; the recogniser pools the
aligned crop to 4x4 and projects it, so faces of one colour share one embedding. Both load through
the insightface library like a downloaded pack.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from mvs2v_core.evaluation import faces as faces_mod
from mvs2v_core.evaluation.faces import (
    NOSE_DEPTH_RATIO,
    YAW_BIN_EDGES,
    FaceAnalyzer,
    expand_box,
    yaw_bin,
    yaw_bin_labels,
    yaw_from_landmarks,
)
from mvs2v_core.evaluation.real_metrics import FACE_WEIGHTS, clear_caches
from mvs2v_core.evaluation.registry import compute_metrics

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("insightface")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

SIDE = 128
STRIDES = (8, 16, 32)
FACE_ROW = (4 * 8 + 4) * 2  # stride 16, cell (y 4, x 4), anchor 0: centre (64, 64)
HALF_EYES = 0.8  # half the eye distance, in stride-16 units (12.8 px)
NOSE_GAIN = 1.0  # nose x shift in stride units per unit of normalized mean red ((v - 127.5) / 128)


def _const(name: str, array, dtype=np.float32) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(array, dtype=dtype), name))


def _detector_outputs() -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Scores, box distances and landmark offsets (stride units) per stride; one face at FACE_ROW of stride 16."""
    scores, boxes, kps = [], [], []
    for s in STRIDES:
        n = (SIDE // s) ** 2 * 2
        sc, bx, kp = np.full((n, 1), 0.01), np.ones((n, 4)), np.zeros((n, 10))
        if s == 16:
            sc[FACE_ROW] = 0.95
            bx[FACE_ROW] = 2.0  # box (32, 32)-(96, 96)
            kp[FACE_ROW] = [-HALF_EYES, -0.6, HALF_EYES, -0.6, 0.0, 0.2, -0.6, 1.0, 0.6, 1.0]
        scores.append(sc), boxes.append(bx), kps.append(kp)
    return scores, boxes, kps


def write_detector(path: Path) -> None:
    """An SCRFD-signature detector: 9 outputs; the face's nose x offset = NOSE_GAIN * mean normalized red."""
    scores, boxes, kps = _detector_outputs()
    nodes, outputs = [], []
    for group, arrays in (("score", scores), ("bbox", boxes)):
        for s, a in zip(STRIDES, arrays):
            nodes.append(_const(f"{group}_{s}", a))
            outputs.append(helper.make_tensor_value_info(f"{group}_{s}", TensorProto.FLOAT, list(a.shape)))
    mask = np.zeros_like(kps[1])
    mask[FACE_ROW, 4] = NOSE_GAIN
    nodes += [_const("starts", [0], np.int64), _const("ends", [1], np.int64), _const("axes", [1], np.int64),
              _const("shape11", [1, 1], np.int64), _const("nose_mask", mask), _const("zero", np.zeros((1, 1))),
              helper.make_node("Slice", ["input.1", "starts", "ends", "axes"], ["red"]),
              helper.make_node("ReduceMean", ["red"], ["red_mean4"], axes=[1, 2, 3], keepdims=1),
              helper.make_node("Reshape", ["red_mean4", "shape11"], ["red_mean"]),
              helper.make_node("Mul", ["red_mean", "nose_mask"], ["nose_shift"])]
    for s, a in zip(STRIDES, kps):
        nodes.append(_const(f"kps_base_{s}", a))
        nodes.append(helper.make_node("Add", [f"kps_base_{s}", "nose_shift"] if s == 16 else
                                      [f"kps_base_{s}", "zero"], [f"kps_{s}"]))
        outputs.append(helper.make_tensor_value_info(f"kps_{s}", TensorProto.FLOAT, list(a.shape)))
    image = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, SIDE, SIDE])
    graph = helper.make_graph(nodes, "scrfd_tiny", [image], outputs)
    _save(graph, path)


def write_recogniser(path: Path, dim: int = 512) -> None:
    """An ArcFace-signature recogniser: [N, 3, 112, 112] -> average pool 28 -> flatten 48 -> [N, dim]."""
    w = np.random.default_rng(0).standard_normal((48, dim)).astype(np.float32)
    nodes = [helper.make_node("AveragePool", ["input.1"], ["pooled"], kernel_shape=[28, 28], strides=[28, 28]),
             helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
             helper.make_node("MatMul", ["flat", "proj"], ["embedding"])]
    graph = helper.make_graph(nodes, "arcface_tiny",
                              [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["N", 3, 112, 112])],
                              [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", dim])],
                              [numpy_helper.from_array(w, "proj")])
    _save(graph, path)


def _save(graph: onnx.GraphProto, path: Path) -> None:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for node in model.graph.node:  # the node names InsightFace inspects (ArcFace: no Sub/Mul at the start)
        node.name = node.name or f"{node.op_type.lower()}_{node.output[0]}"
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("buffalo_tiny")
    write_detector(folder / "det_10g.onnx")
    write_recogniser(folder / "w600k_r50.onnx")
    return folder


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_caches()
    yield
    clear_caches()


def red_for_yaw(yaw_deg: float) -> int:
    """The red value (others 128) whose frame the tiny detector shows turned by ``yaw_deg``."""
    shift = HALF_EYES * NOSE_DEPTH_RATIO * math.tan(math.radians(yaw_deg))  # stride units
    return int(round(127.5 + 128.0 * shift / NOSE_GAIN))  # the blob's channel 0 is R, (v - 127.5) / 128


def frame(red: int, green: int = 128) -> np.ndarray:
    img = np.full((SIDE, SIDE, 3), 128, dtype=np.uint8)
    img[..., 0], img[..., 1] = red, green
    return img


# ---- yaw from landmarks --------------------------------------------------------------------------------------------


def turned_landmarks(yaw_deg: float, roll_deg: float = 0.0, scale: float = 20.0) -> np.ndarray:
    """5 landmarks of a generic head turned by ``yaw`` (orthographic), rolled in the image plane, at (100, 80)."""
    a, d = 1.0, NOSE_DEPTH_RATIO  # eyes at x = +-A, nose tip D in front
    pts3 = np.array([[-a, -0.6, 0.0], [a, -0.6, 0.0], [0.0, 0.2, d], [-0.7, 1.0, 0.2], [0.7, 1.0, 0.2]])
    t = math.radians(yaw_deg)
    x = pts3[:, 0] * math.cos(t) + pts3[:, 2] * math.sin(t)
    pts = np.stack([x, pts3[:, 1]], axis=1) * scale
    r = math.radians(roll_deg)
    rot = np.array([[math.cos(r), -math.sin(r)], [math.sin(r), math.cos(r)]])
    return pts @ rot.T + np.array([100.0, 80.0])


@pytest.mark.parametrize("yaw", [0.0, 10.0, -25.0, 50.0, 70.0])
@pytest.mark.parametrize("roll", [0.0, 20.0])
def test_yaw_from_landmarks_inverts_a_turned_head(yaw: float, roll: float) -> None:
    assert float(yaw_from_landmarks(turned_landmarks(yaw, roll))) == pytest.approx(yaw, abs=1e-9)


def test_yaw_bins_and_batch_shape() -> None:
    assert yaw_bin_labels() == ["0-15", "15-30", "30-45", "45-60", "60-90"]
    assert [yaw_bin(y) for y in (0, 14.9, -15, 44.99, 45, -59, 60, 89, 95)] == \
        ["0-15", "0-15", "15-30", "30-45", "45-60", "45-60", "60-90", "60-90", "60-90"]
    batch = np.stack([turned_landmarks(y) for y in (5.0, 50.0)])
    assert yaw_from_landmarks(batch).shape == (2,)
    # a face turned past the 45-degree edge lands in 45-60, one just before it in 30-45
    assert yaw_bin(float(yaw_from_landmarks(turned_landmarks(46.0)))) == "45-60"
    assert yaw_bin(float(yaw_from_landmarks(turned_landmarks(44.0)))) == "30-45"
    assert YAW_BIN_EDGES[0] == 0 and expand_box((10, 10, 20, 30), 2.0, 100, 100) == (5, 0, 25, 40)


# ---- the pack through insightface ----------------------------------------------------------------------------------


def test_pack_loads_through_insightface_and_detects_the_designed_face(pack: Path) -> None:
    analyzer = FaceAnalyzer(pack)
    assert type(analyzer.detector).__name__ == "SCRFD" and type(analyzer.recogniser).__name__ == "ArcFaceONNX"
    faces = analyzer.analyse(frame(128))
    assert len(faces) == 1
    f = faces[0]
    assert f.score == pytest.approx(0.95, abs=1e-6)
    assert f.box == pytest.approx((32.0, 32.0, 96.0, 96.0), abs=1e-4)
    assert f.kps[0] == pytest.approx([64 - 12.8, 64 - 9.6], abs=1e-3)
    assert f.kps[1] == pytest.approx([76.8, 54.4], abs=1e-3)
    assert f.embedding.shape == (512,) and np.linalg.norm(f.embedding) == pytest.approx(1.0, abs=1e-5)
    assert abs(f.yaw) < 1.0  # red 128: the nose is (almost) between the eyes


@pytest.mark.parametrize("yaw", [20.0, 50.0])
def test_a_frame_turned_past_a_bin_edge_is_detected_in_that_bin(pack: Path, yaw: float) -> None:
    analyzer = FaceAnalyzer(pack)
    f = analyzer.detect(frame(red_for_yaw(yaw)))[0]
    assert f.yaw == pytest.approx(yaw, abs=1.5)  # red is quantized to integers
    assert yaw_bin(f.yaw) == yaw_bin(yaw)


def test_missing_pack_files_and_wrong_models_are_one_line(pack: Path, tmp_path: Path) -> None:
    from mvs2v_core.errors import CheckpointError

    with pytest.raises(CheckpointError, match="holds no det_10g.onnx"):
        FaceAnalyzer(tmp_path)
    (tmp_path / "det_10g.onnx").write_bytes((pack / "w600k_r50.onnx").read_bytes())  # a recogniser as detector
    (tmp_path / "w600k_r50.onnx").write_bytes((pack / "w600k_r50.onnx").read_bytes())
    with pytest.raises(CheckpointError, match="not an SCRFD detector"):
        FaceAnalyzer(tmp_path)
    assert FACE_WEIGHTS.files == (faces_mod.DETECTOR_FILE, faces_mod.RECOGNISER_FILE)


# ---- FaceSim through the registry ----------------------------------------------------------------------------------


def face_inputs(pack: Path, video: np.ndarray, refs: list, **kw) -> dict:
    return {"video": video, "reference_images": refs, "face_model": pack, **kw}


def test_face_similarity_identical_frames_is_one_and_bins_show_the_yaw(pack: Path) -> None:
    ref = frame(128)
    results, skipped = compute_metrics(face_inputs(pack, np.stack([ref] * 4), [[ref]]), ["face_similarity"])
    assert not skipped
    r = results["face_similarity"]
    assert r["value"] == pytest.approx(1.0, abs=1e-5)
    assert r["by_yaw"]["0-15"] == {"mean": pytest.approx(1.0, abs=1e-5), "count": 4}
    assert r["per_subject"][0]["detection_rate"] == 1.0 and r["per_subject"][0]["reference_yaw_bins"]["0-15"] == 1
    # two frames turned 50 degrees: they land in 45-60, the frontal ones stay in 0-15
    turned = frame(red_for_yaw(50.0))
    results, _ = compute_metrics(face_inputs(pack, np.stack([ref, ref, turned, turned]), [[ref]]),
                                 ["face_similarity"])
    by_yaw = results["face_similarity"]["by_yaw"]
    assert by_yaw["0-15"]["count"] == 2 and by_yaw["45-60"]["count"] == 2
    assert by_yaw["0-15"]["mean"] == pytest.approx(1.0, abs=1e-5)
    assert by_yaw["45-60"]["mean"] < 0.999  # another colour, another crop: a lower similarity, shown in its bin
    assert by_yaw["30-45"] == {"mean": None, "count": 0}


def test_face_similarity_skips_with_the_folder_and_objects(pack: Path, tmp_path: Path) -> None:
    ref = frame(128)
    video = np.stack([ref] * 2)
    _, skipped = compute_metrics({"video": video, "reference_images": [[ref]], "face_model": tmp_path / "none"},
                                 ["face_similarity"])
    assert skipped["face_similarity"] == f"face_similarity: needs {FACE_WEIGHTS.description}: --face-model " \
                                         f"{tmp_path / 'none'} is not a folder"
    _, skipped = compute_metrics(face_inputs(pack, video, [[ref]], subject_kinds=["object"]), ["face_similarity"])
    assert skipped["face_similarity"] == "face_similarity: no person subject"


def test_subject_crop_falls_back_to_the_face_of_a_person(pack: Path, tmp_path: Path) -> None:
    from test_real_metrics import tiny_hf_model

    dino = tiny_hf_model("dinov2", tmp_path / "dino")
    ref = frame(128)
    results, skipped = compute_metrics({"video": np.stack([ref] * 3), "reference_images": [[ref]], "face_model": pack,
                                        "dino_model": dino}, ["subject_crop_similarity"])
    assert not skipped
    r = results["subject_crop_similarity"]
    assert r["per_subject"][0]["method"] == "face" and r["value"] == pytest.approx(1.0, abs=1e-5)

"""mvs2v-data on faces, with InsightFace run for real on tiny ONNX models in the pack layout.

The pack (tests/data/data_face_pack.py) sees a frame's face count in its blue value, its yaw in its
red value and its identity in its green value, so every case below has a known answer.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from data_helpers import write_clip, write_items, write_png

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("insightface")
pytest.importorskip("cv2")

from data_face_pack import face_frame, write_pack  # noqa: E402

from mvs2v_core.errors import MVS2VError  # noqa: E402
from mvs2v_data.config import identity_threshold  # noqa: E402
from mvs2v_data.faces import best_providers, make_analyzer, manifest_yaw  # noqa: E402


@pytest.fixture(scope="module")
def pack(tmp_path_factory) -> Path:
    return write_pack(tmp_path_factory.mktemp("buffalo_tiny"))


def config(tmp: Path, pack: Path, curve: str = "[[0, 0.45], [30, 0.40], [90, 0.2]]", spread: int = 30) -> Path:
    path = tmp / "data.toml"
    path.write_text(f"""
[work]
dir = "work"
inputs = "items.jsonl"
[faces]
pack = "{pack}"
[references]
yaw_bins = [0, -30, 30]
bin_tolerance = 10
[filters]
blur_min = 0
min_views = 2
min_yaw_spread = {spread}
identity_curve = {curve}
""")
    return path


def faceless_clip(tmp: Path) -> str:
    """A clip with no face in it: the items of a test then have only the views they were given."""
    return write_clip(np.stack([face_frame(0, faces=0)] * 4), tmp / "faceless.mp4")


def record(tmp: Path, item: str) -> dict:
    return json.loads((tmp / "work" / "items" / f"{item}.json").read_text())


# ---- provider choice -------------------------------------------------------------------------------------


def test_the_best_provider_is_cuda_when_there_else_cpu() -> None:
    assert best_providers(["AzureExecutionProvider", "CPUExecutionProvider", "CUDAExecutionProvider"]) == [
        "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert best_providers(["AzureExecutionProvider", "CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert best_providers(["CPUExecutionProvider"], ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    with pytest.raises(MVS2VError, match="CUDAExecutionProvider, which this onnxruntime does not have.*onnxruntime-gpu"):
        best_providers(["CPUExecutionProvider"], ["CUDAExecutionProvider"])


def test_the_analyzer_runs_on_the_chosen_provider(pack: Path) -> None:
    analyzer = make_analyzer(str(pack), 640, 0.5)
    import onnxruntime

    expected = best_providers(onnxruntime.get_available_providers())
    assert analyzer.detector.session.get_providers()[0] == expected[0]
    with pytest.raises(MVS2VError, match="set faces.pack"):
        make_analyzer("", 640, 0.5)


def test_identity_threshold_relaxes_with_yaw() -> None:
    curve = [[0.0, 0.5], [30.0, 0.4], [90.0, 0.1]]
    assert [identity_threshold(curve, y) for y in (0, 15, -30, 60, 120)] == pytest.approx([0.5, 0.45, 0.4, 0.25, 0.1])
    assert manifest_yaw(30.0) == -30.0 and str(manifest_yaw(0.0)) == "0.0"


# ---- references and filters ----------------------------------------------------------------------------


def test_face_references_by_yaw_bin_then_identity_and_coverage(tmp_path: Path, pack: Path, data_cli) -> None:
    # 12 training frames, then the held-out quarter: yaws 0, +30, -30 and a two-face frame (never a reference)
    tail = [face_frame(0), face_frame(30), face_frame(-30), face_frame(30, faces=2)]
    anna = write_clip(np.stack([face_frame(0)] * 12 + tail), tmp_path / "anna.mp4")
    stranger_tail = [face_frame(y, green=0) for y in (0, 30, -30, 0)]
    bob = write_clip(np.stack([face_frame(0)] * 12 + stranger_tail), tmp_path / "bob.mp4")
    portrait = write_png(face_frame(0), tmp_path / "portrait.png")
    write_items(tmp_path / "items.jsonl", [
        {"id": "anna", "image": portrait, "video": anna, "caption": "a woman turns her head", "kind": "face"},
        {"id": "bob", "image": portrait, "video": bob, "caption": "someone else", "kind": "face"}])
    rc, out, err = data_cli("run", "--config", config(tmp_path, pack))
    assert rc == 0, err
    anna_rec, bob_rec = record(tmp_path, "anna"), record(tmp_path, "bob")
    assert [(v["frame"], v["bin"]) for v in anna_rec["views"]] == [(12, 0), (13, -30), (14, 30)]
    assert [v["yaw"] for v in anna_rec["views"]] == pytest.approx([0.0, -30.0, 30.0], abs=1.5)
    assert [v["frontal"] for v in anna_rec["views"]] == [True, False, False]
    assert anna_rec["frames"] == {"total": 16, "train": 12} and anna_rec["dropped"] is None
    sims = [v["metrics"]["identity"] for v in anna_rec["views"]]
    assert sims[0] == pytest.approx(1.0, abs=1e-4) and 0.85 < sims[1] < 0.97
    # bob's clip shows another identity: every view fails identity, the item fails coverage
    assert [v["dropped"] for v in bob_rec["views"]] == ["identity"] * 3
    assert bob_rec["dropped"] == {"stage": "filter", "reason": "coverage: 0 good views, filters.min_views is 2"}
    rows = [json.loads(line) for line in (tmp_path / "work" / "manifest.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["anna"]
    views = rows[0]["subjects"][0]["views"]
    assert views[0] == {"image": "items/anna/ref_00.png", "yaw": pytest.approx(0.0, abs=1.5), "frontal": True}
    assert [v["yaw"] for v in views] == pytest.approx([0.0, -30.0, 30.0], abs=1.5)
    assert rows[0]["video"] == "items/anna/train.mp4" and rows[0]["quality"] > 0.85
    from mvs2v_core.pipeline.video_io import read_video

    train = read_video(tmp_path / "work" / "items" / "anna" / "train.mp4").numpy()
    assert train.shape[0] == 12  # no reference frame in it; a lossless source stays lossless
    assert np.array_equal(train, read_video(anna).numpy()[:12])


@pytest.mark.parametrize("curve, kept", [("[[0, 0.95], [30, 0.90]]", True), ("[[0, 0.95], [30, 0.95]]", False)])
def test_the_identity_threshold_depends_on_yaw(tmp_path: Path, pack: Path, data_cli, curve: str, kept: bool) -> None:
    # the 30-degree view's cosine to the frontal is ~0.92: kept when the curve relaxes to 0.90 at 30 degrees
    views = [{"image": write_png(face_frame(0), tmp_path / "front.png"), "yaw": 0},
             {"image": write_png(face_frame(30), tmp_path / "side.png"), "yaw": -30}]
    write_items(tmp_path / "items.jsonl", [{"id": "p", "image": views[0]["image"], "views": views,
                                            "video": faceless_clip(tmp_path), "caption": "c", "kind": "face"}])
    rc, _, err = data_cli("run", "--config", config(tmp_path, pack, curve, spread=20))
    assert rc == 0, err
    rec = record(tmp_path, "p")
    assert rec["views"][1]["metrics"]["identity_min"] == (0.9 if kept else 0.95)
    assert (rec["views"][1]["dropped"] is None) is kept
    assert (rec["dropped"] is None) is kept


def test_faceless_two_face_and_wrong_pose_views_are_dropped_with_their_reason(tmp_path: Path, pack: Path,
                                                                             data_cli) -> None:
    frames = {"front": face_frame(0), "none": face_frame(0, faces=0), "two": face_frame(0, faces=2),
              "pose": face_frame(30), "good": face_frame(-30)}
    paths = {k: write_png(v, tmp_path / f"{k}.png") for k, v in frames.items()}
    views = [{"image": paths["front"], "yaw": 0}, {"image": paths["none"]}, {"image": paths["two"]},
             {"image": paths["pose"], "yaw": 60}, {"image": paths["good"], "yaw": 30}]
    clip = faceless_clip(tmp_path)
    write_items(tmp_path / "items.jsonl", [
        {"id": "c", "image": paths["front"], "views": views, "video": clip, "caption": "c", "kind": "face"},
        {"id": "faceless", "image": paths["none"], "views": views[:2], "video": clip, "caption": "c", "kind": "face"}])
    assert data_cli("run", "--config", config(tmp_path, pack))[0] == 0
    rec = record(tmp_path, "c")
    assert [v["dropped"] for v in rec["views"]] == [None, "no face", "several faces", "pose", None]
    assert rec["views"][3]["metrics"]["yaw"] == pytest.approx(-30.0, abs=1.5)
    assert record(tmp_path, "faceless")["dropped"] == {"stage": "filter", "reason": "no reference face"}
    rc, out, _ = data_cli("report", "--config", tmp_path / "data.toml")
    report = json.loads((tmp_path / "work" / "report" / "report.json").read_text())
    assert report["views"]["dropped_by_reason"] == {"no face": 1, "several faces": 1, "pose": 1}
    assert report["stages"]["filter"]["dropped_by_reason"] == {"no reference face": 1}
    assert "aesthetic: off" in out and {"yaw", "identity", "blur"} <= set(report["plots"])
    assert report["contact_sheet_tiles"] == 7

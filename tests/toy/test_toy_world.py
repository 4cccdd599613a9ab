"""Tests for the toy world: scenes, the ray caster, ground truth and the dataset writer."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from mvs2v_core.errors import MVS2VError
from mvs2v_toy.render import render_frame, render_reference, render_video, to_uint8, visible_faces
from mvs2v_toy.truth import load_truth, truth_from_scene
from mvs2v_toy.world import (
    HUES, OBJECT_SPACING, PALETTE, SPEEDS, ToyObject, ToyScene, caption_for, sample_scene, vocabulary,
)

CUBE_COLOURS = {"front": "red", "left": "green", "back": "blue", "right": "yellow", "top": "gray", "bottom": "gray"}
PLAIN_CUBE = {f: "plain" for f in CUBE_COLOURS}


def make_cube(**kw) -> ToyObject:
    return ToyObject("cube", dict(CUBE_COLOURS), dict(PLAIN_CUBE), **kw)


def direction(rgb) -> np.ndarray:
    v = np.asarray(rgb, dtype=np.float64)
    return v / np.linalg.norm(v)


def centre_colour_is(image: np.ndarray, name: str) -> bool:
    """The centre pixel's colour direction is that palette colour's (shading only scales it)."""
    h, w, _ = image.shape
    c = image[h // 2, w // 2]
    return float(direction(c) @ direction(PALETTE[name])) > 0.9999


# ---- palette and scenes ----------------------------------------------------------------------------


def test_palette_directions_are_well_separated() -> None:
    names = list(PALETTE)
    dirs = np.stack([direction(PALETTE[n]) for n in names])
    cos = dirs @ dirs.T
    np.fill_diagonal(cos, -1)
    # Face classification by colour direction relies on this separation.
    assert math.degrees(math.acos(cos.max())) > 15.0


def test_scene_validation_errors() -> None:
    cube = make_cube()
    with pytest.raises(MVS2VError, match="distinct"):
        ToyScene((cube,), floor_colour="red")
    with pytest.raises(MVS2VError, match="one or two"):
        ToyScene((), floor_colour="red")
    with pytest.raises(MVS2VError, match="exactly its faces"):
        ToyObject("cube", {"front": "red"}, dict(PLAIN_CUBE))
    with pytest.raises(MVS2VError, match="apart"):
        other = ToyObject("sphere", {"cap": "cyan", "body": "mint"}, {"cap": "plain", "body": "plain"},
                          position=(0.3, 0.0))
        ToyScene((dataclasses.replace(cube, position=(-0.3, 0.0)), other), floor_colour="violet")


def test_caption_grammar_and_vocabulary() -> None:
    cube = make_cube(start_view="back", direction="left", speed="slowly")
    scene = ToyScene((cube,), floor_colour="orange")
    assert caption_for(scene) == "a red cube slowly turns left from its back on an orange floor"
    rng = np.random.default_rng(3)
    words = set(vocabulary())
    for _ in range(30):
        cap = caption_for(sample_scene(rng, two_object_prob=0.5))
        assert set(cap.split()) <= words


def test_sample_scene_is_deterministic_and_hues_distinct() -> None:
    a = sample_scene(np.random.default_rng(7), two_object_prob=1.0)
    b = sample_scene(np.random.default_rng(7), two_object_prob=1.0)
    assert a == b and len(a.objects) == 2
    assert a.floor_colour in HUES
    c = sample_scene(np.random.default_rng(8), two_object_prob=1.0)
    assert c != a


# ---- renderer ---------------------------------------------------------------------------------------


def test_render_is_deterministic() -> None:
    scene = sample_scene(np.random.default_rng(1), two_object_prob=1.0)
    v1, v2 = render_video(scene), render_video(scene)
    assert np.array_equal(v1.frames, v2.frames)
    assert np.array_equal(v1.face_id, v2.face_id) and np.array_equal(v1.object_id, v2.object_id)
    assert v1.frames.shape == (scene.frames, scene.height, scene.width, 3) and v1.frames.dtype == np.uint8


@pytest.mark.parametrize("yaw,face", [(0, "front"), (90, "left"), (180, "back"), (270, "right"), (-90, "right")])
def test_cube_yaw_shows_the_labelled_face_at_the_centre(yaw: float, face: str) -> None:
    cube = make_cube()
    r = render_reference(cube, yaw, 32, 32)
    assert centre_colour_is(r.image, CUBE_COLOURS[face])
    assert cube.faces[int(r.face_id[16, 16])] == face
    assert visible_faces(r.object_id, r.face_id, 0, cube.faces) == [face, "top"]


def test_turning_left_moves_the_front_face_to_the_image_left() -> None:
    cube = make_cube()
    r0, r1 = render_reference(cube, 0, 48, 48), render_reference(cube, 20, 48, 48)
    front = cube.faces.index("front")
    col0 = np.nonzero(r0.face_id == front)[1].mean()
    col1 = np.nonzero(r1.face_id == front)[1].mean()
    assert col1 < col0 - 1.0
    # ... and the left face comes into view on the image's right side.
    left_cols = np.nonzero(r1.face_id == cube.faces.index("left"))[1]
    assert left_cols.size > 0 and left_cols.mean() > col1


@pytest.mark.parametrize("speed", list(SPEEDS))
@pytest.mark.parametrize("turn", ["left", "right"])
def test_per_frame_yaw_is_speed_times_t(speed: str, turn: str) -> None:
    frames = 9
    cube = make_cube(start_view="left", direction=turn, speed=speed)
    scene = ToyScene((cube,), floor_colour="violet", frames=frames)
    yaws = scene.yaws()[:, 0]
    sign = 1 if turn == "left" else -1
    per_frame = SPEEDS[speed] / (frames - 1)
    assert np.allclose(yaws, 90.0 + sign * per_frame * np.arange(frames))
    assert yaws[-1] == pytest.approx(90.0 + sign * SPEEDS[speed])
    # The last frame shows what a reference at the final yaw shows (the camera is the same).
    final = (90.0 + sign * SPEEDS[speed]) % 360
    if final % 90 == 0:
        label = {0: "front", 90: "left", 180: "back", 270: "right"}[int(final)]
        last = render_frame(scene, frames - 1)
        assert centre_colour_is(last.image, CUBE_COLOURS[label])


def test_two_object_masks_are_disjoint_and_both_visible() -> None:
    rng = np.random.default_rng(11)
    for _ in range(3):
        scene = sample_scene(rng, two_object_prob=1.0)
        v = render_video(scene)
        a, b = v.object_id == 0, v.object_id == 1
        assert not (a & b).any()
        assert a.any(axis=(1, 2)).all() and b.any(axis=(1, 2)).all()
        # Object 0 is left of object 1 (caption order is left to right), and they never touch.
        assert np.nonzero(a)[2].max() < np.nonzero(b)[2].min()
    assert OBJECT_SPACING > 2 * 0.7071


def test_reference_is_centred_on_white() -> None:
    sphere = ToyObject("sphere", {"cap": "cyan", "body": "mint"}, {"cap": "plain", "body": "plain"})
    r = render_reference(sphere, 0, 32, 32)
    img = to_uint8(r.image)
    assert (img[0] == 255).all() and (img[-1] == 255).all()
    rows, cols = np.nonzero(r.object_id == 0)
    assert abs(rows.mean() - 15.5) < 1.5 and abs(cols.mean() - 15.5) < 1.5
    assert r.face_id[16, 16] == 0  # the cap faces the camera at yaw 0


# ---- ground truth -----------------------------------------------------------------------------------


def test_truth_lists_faces_revealed_by_references() -> None:
    cube = make_cube(start_view="front", direction="left", speed="quickly")
    truth = truth_from_scene(ToyScene((cube,), floor_colour="violet"))
    from mvs2v_toy.truth import reference_faces_not_in_first_frame

    assert truth.visible_faces(0, 0) == ["front", "top"]
    missing, target = reference_faces_not_in_first_frame(truth, 0)
    assert missing == ["left", "back", "right"]
    assert target == ["left", "back", "right"]  # 270 degrees of turn shows them all
    only_front = [truth.reference(0, "front")]
    assert reference_faces_not_in_first_frame(truth, 0, only_front) == ([], [])


# ---- dataset ----------------------------------------------------------------------------------------


def test_write_toy_dataset_is_deterministic_and_exact(tmp_path: Path) -> None:
    pytest.importorskip("av")
    from mvs2v_core.pipeline.video_io import read_video
    from mvs2v_toy.dataset import write_toy_dataset

    s1 = write_toy_dataset(tmp_path / "a", 4, seed=5, frames=9, two_object_prob=0.5)
    s2 = write_toy_dataset(tmp_path / "b", 4, seed=5, frames=9, two_object_prob=0.5)
    rows1 = (tmp_path / "a" / "manifest.jsonl").read_text().splitlines()
    rows2 = (tmp_path / "b" / "manifest.jsonl").read_text().splitlines()
    assert rows1 == rows2 and len(rows1) == 4 and s1.samples == 4 and s1.lossless
    assert s1.train + s1.val == 4 and s1 == dataclasses.replace(s2, out_dir=s1.out_dir, manifest=s1.manifest)
    for row in map(json.loads, rows1):
        sample = tmp_path / "a" / Path(row["video"]).parent
        truth = load_truth(sample)
        assert truth.caption == row["caption"]
        assert np.array_equal(read_video(tmp_path / "a" / row["video"]).numpy(), truth.frames)  # lossless
        record = json.loads((sample / "truth.json").read_text())
        obj = record["objects"][0]
        assert len(obj["yaw_per_frame"]) == 9 and len(obj["visible_faces_per_frame"]) == 9
        assert [s["name"] for s in row["subjects"]] == [o["name"] for o in record["objects"]]
        assert [v["label"] for v in row["subjects"][0]["views"]] == ["front", "left", "back", "right"]
    # A larger dataset with the same seed starts with the same samples.
    write_toy_dataset(tmp_path / "c", 5, seed=5, frames=9, two_object_prob=0.5)
    assert (tmp_path / "c" / "manifest.jsonl").read_text().splitlines()[:4] == rows1
    with pytest.raises(MVS2VError, match="already exists"):
        write_toy_dataset(tmp_path / "a", 2, seed=5)


def test_manifest_rows_validate_with_the_trainer_parser(tmp_path: Path) -> None:
    pytest.importorskip("av")
    try:
        from mvs2v_train.manifest import read_manifest
    except ImportError as exc:  # the trainer package is optional for mvs2v_core
        pytest.skip(f"mvs2v_train.manifest is not importable ({exc}); cannot cross-check the row format")
    from mvs2v_toy.dataset import write_toy_dataset

    write_toy_dataset(tmp_path, 3, seed=2, frames=9, two_object_prob=1.0, ref_views=("front", "back", 45))
    report = read_manifest(tmp_path / "manifest.jsonl", slots_per_subject=4, check_files=True)
    assert report.problems == [] and len(report.samples) == 3
    views = report.samples[0].subjects[0].views
    assert [v.label for v in views] == ["front", "back", 45.0]


def test_load_truth_detects_a_changed_record(tmp_path: Path) -> None:
    pytest.importorskip("av")
    from mvs2v_toy.dataset import write_toy_dataset

    write_toy_dataset(tmp_path, 1, seed=0, frames=5)
    sample = tmp_path / "samples" / "000000"
    record = json.loads((sample / "truth.json").read_text())
    first = record["scene"]["objects"][0]
    first["direction"] = "right" if first["direction"] == "left" else "left"
    with pytest.raises(MVS2VError, match="no longer reproduces"):
        load_truth(record)
    with pytest.raises(MVS2VError, match="not found"):
        load_truth(tmp_path / "nope")


def test_toy_data_command_writes_dataset_and_encoders(tmp_path: Path) -> None:
    pytest.importorskip("av")
    import argparse

    from mvs2v_toy.codec import load_codec
    from mvs2v_toy.dataset import add_toy_dataset_args, run_toy_dataset
    from mvs2v_toy.text import load_toy_text_encoder

    parser = argparse.ArgumentParser()
    add_toy_dataset_args(parser)
    args = parser.parse_args(["--out", str(tmp_path), "--samples", "2", "--frames", "5", "--views", "front,135",
                              "--codec-factor", "2", "--text-dim", "8"])
    summary = run_toy_dataset(args)
    assert summary.samples == 2
    row = json.loads((tmp_path / "manifest.jsonl").read_text().splitlines()[0])
    assert row["subjects"][0]["views"][1]["yaw"] == 135.0
    assert load_codec(tmp_path / "codec").z_dim == 12
    text = load_toy_text_encoder(tmp_path / "text_encoder")
    assert text.dim == 8 and text.encode(row["caption"])[0].shape[0] == len(row["caption"].split()) + 1

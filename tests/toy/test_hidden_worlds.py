"""The hidden-colour worlds W1/W2: captions name no colour, references use the video's camera."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mvs2v_core.errors import MVS2VError
from mvs2v_toy.dataset import write_toy_dataset
from mvs2v_toy.truth import load_truth, truth_from_scene
from mvs2v_toy.args import WORLD_NAMES
from mvs2v_toy.world import PALETTE, ToyScene, WORLDS, caption_for, world_spec


def scenes(world: str, n: int, frames: int = 9) -> list[ToyScene]:
    spec = world_spec(world)
    return [spec.sample(np.random.default_rng([7, i]), frames) for i in range(n)]


@pytest.mark.parametrize("world", ["w0", "w1", "w2"])
def test_captions_name_no_object_colour(world: str) -> None:
    for scene in scenes(world, 20):
        caption = caption_for(scene)
        words = set(caption.split())
        object_colours = {c for o in scene.objects for c in o.colours.values()}
        assert not words & (object_colours - {scene.floor_colour}), caption
        assert scene.floor_colour in words  # the floor is still named
        assert all(o.shape in words for o in scene.objects)
        assert not any(c in o.name for o in scene.objects for c in PALETTE), [o.name for o in scene.objects]


def test_w1_and_w2_objects_have_the_same_pixel_size() -> None:
    one, two = scenes("w1", 1)[0], scenes("w2", 1)[0]
    assert (one.width, one.height) == (32, 32) and (two.width, two.height) == (64, 32)
    assert one.half_extent == two.half_extent  # world units per pixel are equal
    assert len(one.objects) == 1 and len(two.objects) == 2
    assert [o.name for o in two.objects] == ["left_cube", "right_cube"]


def test_w1_reference_is_a_frame_minus_the_background() -> None:
    """A W1 reference view renders the object with the video's own camera: at a frame whose yaw equals the
    view's, the object's pixels are exactly the reference's pixels, and the rest is white."""
    checked = 0
    for scene in scenes("w1", 12):
        truth = truth_from_scene(scene)
        obj = scene.objects[0]
        for t, yaw in enumerate(scene.yaws()[:, 0]):
            for ref in truth.references[0]:
                if abs((yaw - ref.yaw + 180.0) % 360.0 - 180.0) > 1e-9:
                    continue
                mask = truth.object_id[t] == 0
                assert np.array_equal(truth.frames[t][mask], ref.image[mask])
                assert (ref.image[~mask] == 255).all()
                checked += 1
        assert obj.start_view in {r.label for r in truth.references[0]}
    assert checked >= 12  # frame 0 at least, for every scene


def test_augmented_references_differ_but_reload_exactly(tmp_path: Path) -> None:
    write_toy_dataset(tmp_path / "aug", 3, seed=3, frames=5, world="w1", reference_camera="augmented")
    write_toy_dataset(tmp_path / "vid", 3, seed=3, frames=5, world="w1")
    a = load_truth(tmp_path / "aug" / "samples" / "000000")  # re-renders and compares every PNG
    v = load_truth(tmp_path / "vid" / "samples" / "000000")
    assert np.array_equal(a.frames, v.frames)
    assert any(not np.array_equal(x.image, y.image) for x, y in zip(a.references[0], v.references[0]))


def test_w12_dataset_flags_the_start_view_as_frontal(tmp_path: Path) -> None:
    summary = write_toy_dataset(tmp_path / "d", 16, seed=5, frames=5, world="w12")
    rows = [json.loads(line) for line in summary.manifest.read_text().splitlines()]
    assert any(len(r["subjects"]) == 2 for r in rows) and any(len(r["subjects"]) == 1 for r in rows)
    for r in rows:
        truth = json.loads((tmp_path / "d" / r["meta"]["truth"]).read_text())
        for subject, obj in zip(r["subjects"], truth["scene"]["objects"]):
            frontal = [v["label"] for v in subject["views"] if v.get("frontal")]
            assert frontal == [obj["start_view"]]
    settings = json.loads((tmp_path / "d" / "dataset.json").read_text())
    assert settings["world"] == "w12" and settings["reference_camera"] == "video"


def test_world_errors_are_one_line() -> None:
    with pytest.raises(MVS2VError, match="toy world 'w3' is unknown"):
        world_spec("w3")
    with pytest.raises(MVS2VError, match="classic toy world renders centred references"):
        write_toy_dataset("/nonexistent", 1, world="classic", reference_camera="video")
    assert set(WORLDS) == {"classic", "w0", "w0s", "w0sd", "w1", "w2", "w12"} == set(WORLD_NAMES)


W1_FIRST = ("left", "right", "quickly", "yellow")  # W1 scene [7, 0] before W0 existed


def test_w0_is_the_calibration_world_and_w1_scenes_are_unchanged() -> None:
    """W0: one cube from its front turning left 180 degrees, hidden colours still random; adding the
    ``directions`` choice must not move W1's held-out scenes (the bench's scene i is fixed by its seed)."""
    w0 = scenes("w0", 12)
    assert {(o.start_view, o.direction, o.speed) for s in w0 for o in s.objects} == {("front", "left", "")}
    assert len({s.objects[0].colours["back"] for s in w0}) > 3
    w1 = scenes("w1", 40)
    assert {o.direction for s in w1 for o in s.objects} == {"left", "right"}
    first = w1[0].objects[0]
    assert (first.start_view, first.direction, first.speed, first.colours["front"]) == W1_FIRST


def test_graded_worlds_free_one_choice_of_w1_at_a_time() -> None:
    """W0 -> W0s (any start view) -> W0sd (any direction too) -> W1 (two speeds too)."""
    def choices(world: str) -> list[set]:
        objs = [o for s in scenes(world, 60) for o in s.objects]
        return [{o.start_view for o in objs}, {o.direction for o in objs}, {o.speed for o in objs}]

    views = {"front", "left", "back", "right"}
    assert choices("w0s") == [views, {"left"}, {""}]
    assert choices("w0sd") == [views, {"left", "right"}, {""}]
    assert choices("w1") == [views, {"left", "right"}, {"", "quickly"}]

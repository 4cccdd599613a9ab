"""Tests for counterfactual scene versions (mvs2v_toy.counterfactual)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mvs2v_core.errors import MVS2VError
from mvs2v_toy.counterfactual import hidden_faces, recolour_hidden, revealed_hidden_faces, swap_views, view_face
from mvs2v_toy.truth import truth_from_scene
from mvs2v_toy.world import HUED_FACES, world_spec

SIDES = HUED_FACES["cube"]


def w1_scene(seed: int, **motion):
    scene = world_spec("w1").sample(np.random.default_rng(seed), 9)
    if motion:
        scene = scene.with_object(0, dataclasses.replace(scene.objects[0], **motion))
    return scene


def test_hidden_faces_are_the_sides_frame_0_does_not_show() -> None:
    for seed in range(4):
        scene = w1_scene(seed)
        start = scene.objects[0].start_view
        # W1 starts exactly at a labelled view: the other three sides are edge-on or behind.
        assert hidden_faces(scene, 0) == [f for f in SIDES if f != start]
    w2 = world_spec("w2").sample(np.random.default_rng(0), 9)
    for i, obj in enumerate(w2.objects):
        assert hidden_faces(w2, i) == [f for f in SIDES if f != obj.start_view]
    with pytest.raises(MVS2VError, match="out of range"):
        hidden_faces(w2, 2)


@pytest.mark.parametrize("motion, revealed", [
    (dict(start_view="front", direction="left", speed=""), ["left", "back"]),
    (dict(start_view="front", direction="right", speed=""), ["back", "right"]),
    (dict(start_view="front", direction="left", speed="quickly"), ["left", "back", "right"]),
    (dict(start_view="back", direction="left", speed=""), ["front", "right"]),
])
def test_revealed_hidden_faces_follow_the_turn(motion: dict, revealed: list[str]) -> None:
    truth = truth_from_scene(w1_scene(5, **motion))
    assert revealed_hidden_faces(truth, 0) == revealed


def test_recolour_hidden_changes_only_the_hidden_faces_with_unused_hues() -> None:
    for seed in range(3):
        scene = w1_scene(seed)
        new = recolour_hidden(scene, 0, np.random.default_rng(7))
        old_obj, new_obj = scene.objects[0], new.objects[0]
        hidden = hidden_faces(scene, 0)
        changed = [f for f in old_obj.faces if old_obj.colours[f] != new_obj.colours[f]]
        assert changed == hidden
        fresh = [new_obj.colours[f] for f in hidden]
        assert len(set(fresh)) == len(fresh) and not set(fresh) & set(scene.colours_in_scene())
        assert dataclasses.replace(new_obj, colours=old_obj.colours) == old_obj  # nothing else changed
        assert new.floor_colour == scene.floor_colour and new.frames == scene.frames
        a, b = truth_from_scene(scene), truth_from_scene(new)
        assert np.array_equal(a.frames[0], b.frames[0])  # frame 0 cannot tell the versions apart
        assert not np.array_equal(a.frames[1:], b.frames[1:])
        assert np.array_equal(a.face_id, b.face_id) and a.caption == b.caption


def test_recolour_hidden_is_deterministic_per_rng_and_takes_chosen_faces() -> None:
    scene = w1_scene(2)
    one = recolour_hidden(scene, 0, np.random.default_rng(11))
    assert one == recolour_hidden(scene, 0, np.random.default_rng(11))
    others = {tuple(recolour_hidden(scene, 0, np.random.default_rng(s)).objects[0].colours.items()) for s in range(8)}
    assert len(others) > 1
    face = hidden_faces(scene, 0)[0]
    only = recolour_hidden(scene, 0, np.random.default_rng(0), faces=[face])
    changed = [f for f in SIDES if only.objects[0].colours[f] != scene.objects[0].colours[f]]
    assert changed == [face]


def test_recolour_hidden_errors_are_clear() -> None:
    w2 = world_spec("w2").sample(np.random.default_rng(0), 9)  # 9 of the 12 hues in use: 3 left
    assert len(hidden_faces(w2, 0)) == 3
    recolour_hidden(w2, 0, np.random.default_rng(0))  # exactly enough
    with pytest.raises(MVS2VError, match=r"4 faces .* need new hues but only 3 of the 12 hues are unused"):
        recolour_hidden(w2, 0, np.random.default_rng(0), faces=list(SIDES))
    with pytest.raises(MVS2VError, match=r"\['top'\] are not hued faces"):
        recolour_hidden(w2, 1, np.random.default_rng(0), faces=["top"])
    with pytest.raises(MVS2VError, match="no hidden face"):
        recolour_hidden(w2, 1, np.random.default_rng(0), faces=[])


def test_swap_views_returns_two_views_of_revealed_hidden_faces() -> None:
    truth = truth_from_scene(w1_scene(5, start_view="front", direction="left", speed=""))
    assert swap_views(truth, 0) == ("left", "back")
    for seed in range(4):
        truth = truth_from_scene(w1_scene(seed))
        views = swap_views(truth, 0)
        revealed = revealed_hidden_faces(truth, 0)
        assert views is not None and len(revealed) >= 2
        # With the video's camera, the view at label L shows face L the most.
        assert [view_face(truth, 0, v) for v in views] == list(views)
        assert set(views) <= set(revealed)
    # References that show only one revealed hidden face leave nothing to swap.
    scene = w1_scene(5, start_view="front", direction="left", speed="")
    assert swap_views(truth_from_scene(scene, ref_views=("front", "left")), 0) is None

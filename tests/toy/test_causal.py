"""Tests for the causal metrics (mvs2v_toy.causal), the crosstalk fix, and the probes in the registry."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from mvs2v_core.errors import MVS2VError
from mvs2v_core.evaluation.registry import compute_metrics
from mvs2v_toy.causal import causal_crosstalk, hidden_face_accuracy, reference_use, slot_binding
from mvs2v_toy.counterfactual import hidden_faces, recolour_hidden, revealed_hidden_faces, swap_views, view_face
from mvs2v_toy.eval_args import add_eval_args
from mvs2v_toy.evaluate import run_eval
from mvs2v_toy.metrics import crosstalk
from mvs2v_toy.render import to_uint8
from mvs2v_toy.truth import truth_from_scene
from mvs2v_toy.world import PALETTE, ToyObject, ToyScene, world_spec


def pair(world: str, seed: int, index: int = 0):
    scene = world_spec(world).sample(np.random.default_rng(seed), 9)
    other = recolour_hidden(scene, index, np.random.default_rng(seed + 100))
    return truth_from_scene(scene), truth_from_scene(other)


@pytest.fixture(scope="module")
def w1_pairs():
    return [pair("w1", seed) for seed in range(3)]


@pytest.fixture(scope="module")
def w2_pair():
    return pair("w2", 1, index=0)


# ---- reference use -----------------------------------------------------------------------------------


def test_reference_use_is_one_for_the_truth_and_minus_one_when_versions_are_crossed(w1_pairs) -> None:
    for a, b in w1_pairs:
        good = reference_use(a.frames, b.frames, a, b, 0)
        assert good["value"] >= 0.95 and good["follow_a"] >= 0.95 and good["follow_b"] >= 0.95
        assert good["pixels"] > 500 and good["faces"] == hidden_faces(a.scene, 0)
        crossed = reference_use(b.frames, a.frames, a, b, 0)
        assert crossed["value"] == pytest.approx(-good["value"])


def test_reference_use_is_exactly_zero_for_a_model_that_ignores_references(w1_pairs) -> None:
    a, b = w1_pairs[0]
    rng = np.random.default_rng(0)
    noise_u8 = rng.integers(0, 256, size=a.frames.shape, dtype=np.uint8)
    noise_f = rng.random(a.frames.shape)
    for x in (a.frames, b.frames, noise_u8, noise_f, np.repeat(a.frames[:1], a.num_frames, axis=0)):
        assert reference_use(x, x, a, b, 0)["value"] == 0.0
    assert reference_use(a.frames, a.frames, a, b, 0)["value"] == 0.0


def test_reference_use_input_checks(w1_pairs, w2_pair) -> None:
    a, b = w1_pairs[0]
    with pytest.raises(MVS2VError, match="same colours"):
        reference_use(a.frames, a.frames, a, a, 0)
    with pytest.raises(MVS2VError, match="shape"):
        reference_use(a.frames[:3], b.frames[:3], a, b, 0)
    with pytest.raises(MVS2VError, match="differ in geometry"):
        reference_use(a.frames, b.frames, a, w1_pairs[1][1], 0)
    w2a, w2b = w2_pair
    with pytest.raises(MVS2VError, match="only in object 1's colours"):
        reference_use(w2a.frames, w2b.frames, w2a, w2b, 1)


# ---- slot binding ------------------------------------------------------------------------------------


def test_slot_binding_is_one_when_colours_follow_the_swapped_slots(w1_pairs) -> None:
    for truth, _ in w1_pairs:
        views = swap_views(truth, 0)
        f1, f2 = (view_face(truth, 0, v) for v in views)
        obj = truth.scene.objects[0]
        swapped = truth.scene.with_object(0, obj.with_colours({f1: obj.colours[f2], f2: obj.colours[f1]}))
        gen_swap = truth_from_scene(swapped).frames
        res = slot_binding(truth.frames, gen_swap, truth, 0, views)
        assert res["value"] >= 0.95 and res["follow"] >= 0.95 and res["stay"] <= 0.05 and res["faces"] == [f1, f2]
        same = slot_binding(truth.frames, truth.frames, truth, 0, views)
        assert same["value"] == 0.0 and same["stay"] >= 0.95
        x = np.random.default_rng(1).integers(0, 256, size=truth.frames.shape, dtype=np.uint8)
        assert slot_binding(x, x, truth, 0, views)["value"] == 0.0
    with pytest.raises(MVS2VError, match="same face"):
        slot_binding(truth.frames, truth.frames, truth, 0, ("left", "left"))


# ---- causal crosstalk --------------------------------------------------------------------------------


def test_causal_crosstalk_on_the_truth_has_no_leak_and_full_own(w2_pair) -> None:
    a, b = w2_pair
    res = causal_crosstalk(a.frames, b.frames, a, b, 0, 1)
    assert res["leak"] == 0.0 and res["value"] == 0.0 and res["own"] >= 0.95 and res["pixels_target"] > 500
    x = np.random.default_rng(2).random(a.frames.shape)
    same = causal_crosstalk(x, x, a, b, 0, 1)
    assert same["leak"] == 0.0 and same["own"] == 0.0


def test_causal_crosstalk_sees_the_other_subject_wear_the_new_colour(w2_pair) -> None:
    a, b = w2_pair
    new_colour = b.scene.objects[0].colours[res_face(a, b)]
    fake_b = b.frames.copy()
    fake_b[b.object_id == 1] = to_uint8(np.array(PALETTE[new_colour]) * 0.8)
    res = causal_crosstalk(a.frames, fake_b, a, b, 0, 1)
    # gen_b paints every target pixel (frames >= 1) in one of source's new colours, gen_a in none of either:
    # 1/2 [0 - 0 + 1 - 0]
    assert res["leak"] == pytest.approx(0.5) and res["own"] >= 0.95
    with pytest.raises(MVS2VError, match="two different objects"):
        causal_crosstalk(a.frames, b.frames, a, b, 0, 0)


def res_face(a, b) -> str:
    return next(f for f in a.scene.objects[0].faces if a.scene.objects[0].colours[f] != b.scene.objects[0].colours[f])


# ---- hidden-face accuracy ----------------------------------------------------------------------------


def test_hidden_face_accuracy_on_truth_and_on_a_frozen_first_frame(w1_pairs, w2_pair) -> None:
    for truth in (w1_pairs[0][0], w2_pair[0]):
        res = hidden_face_accuracy(truth.frames, truth)
        assert res["value"] == 1.0 and res["visible"] == 1.0 and res["normalised"] == 1.0 and res["pixels"] > 0
    truth = w1_pairs[0][0]
    frozen = hidden_face_accuracy(np.repeat(truth.frames[:1], truth.num_frames, axis=0), truth, 0)
    # frame 0 shows one side; where the hidden sides later are, a frozen clip shows that side or floor
    assert frozen["value"] < 0.2 and frozen["visible"] > frozen["value"] and frozen["normalised"] < 0.3
    assert frozen["per_object"][0]["hidden_faces"] == revealed_hidden_faces(truth, 0)


def test_normalised_hidden_face_accuracy_is_undefined_where_frame_0_is_not_drawn() -> None:
    from mvs2v_toy.causal import MIN_VISIBLE_ACCURACY, _accuracies

    # hidden 4/10, visible 5/100: below the floor 4 / 0.05 = 8 would be noise divided by noise
    low = _accuracies(np.array([4, 10, 5, 100]))
    assert low["value"] == 0.4 and low["visible"] == 0.05 < MIN_VISIBLE_ACCURACY and low["normalised"] is None
    at_floor = _accuracies(np.array([4, 10, 20, 100]))
    assert at_floor["normalised"] == pytest.approx(0.4 / 0.2)


# ---- the crosstalk fix -------------------------------------------------------------------------------


def test_crosstalk_no_longer_counts_gray_as_a_colour_only_one_subject_has() -> None:
    faces = ("front", "left", "back", "right")
    cube = ToyObject("cube", {**dict(zip(faces, ("red", "green", "blue", "yellow"))), "top": "gray", "bottom": "gray"},
                     {f: "plain" for f in (*faces, "top", "bottom")}, position=(-0.8, 0.0))
    sphere = ToyObject("sphere", {"cap": "cyan", "body": "magenta"}, {"cap": "plain", "body": "plain"},
                       position=(0.8, 0.0), start_view="back")
    truth = truth_from_scene(ToyScene((cube, sphere), floor_colour="lime", frames=5))
    gray = np.full_like(truth.frames, 128)
    res = crosstalk(gray, truth)
    assert res["value"] == 0.0  # was 0.25: gray counted as "only the cube's" on the sphere
    assert all("gray" not in p["colours"] for p in res["pairs"])
    assert crosstalk(truth.frames, truth)["value"] == 0.0


# ---- the probes in the registry and mvs2v eval --list-metrics ----------------------------------------


def test_probes_run_through_the_registry(w1_pairs, w2_pair) -> None:
    a, b = w1_pairs[0]
    views = swap_views(a, 0)
    inputs = {"video_pair": (a.frames, b.frames), "truth_pair": (a, b)}
    results, skipped = compute_metrics(inputs, kind="probe")
    assert results["reference_use"]["value"] == reference_use(a.frames, b.frames, a, b, 0)["value"]
    assert skipped["causal_crosstalk"] == "causal_crosstalk: needs a scene with two subjects"
    assert skipped["slot_binding"] == "slot_binding: needs input swapped_views, truth"
    results, _ = compute_metrics({"video_pair": (a.frames, a.frames), "truth": a, "swapped_views": views},
                                 ["slot_binding"])
    assert results["slot_binding"]["value"] == 0.0
    w2a, w2b = w2_pair
    results, skipped = compute_metrics({"video_pair": (w2a.frames, w2b.frames), "truth_pair": (w2a, w2b)},
                                       ["causal_crosstalk", "reference_use"])
    assert not skipped and results["causal_crosstalk"]["leak"] == 0.0 and results["reference_use"]["value"] >= 0.95
    results, _ = compute_metrics({"video": a.frames, "truth": a}, ["hidden_face_accuracy", "crosstalk"])
    assert results["hidden_face_accuracy"]["normalised"] == 1.0 and "crosstalk" not in results


def test_eval_lists_the_registry_and_needs_its_files_otherwise(capsys) -> None:
    parser = argparse.ArgumentParser()
    add_eval_args(parser)
    run_eval(parser.parse_args(["--list-metrics"]))
    out = capsys.readouterr().out
    for line in ("reference_use  [probe, mvs2v_toy]", "psnr  [video, mvs2v_core]", "inputs:  truth_pair, video_pair",
                 "hidden_face_accuracy  [video, mvs2v_toy]"):
        assert line in out
    with pytest.raises(MVS2VError, match="mvs2v eval needs --sample, --out"):
        run_eval(parser.parse_args(["--video", "x.mp4"]))

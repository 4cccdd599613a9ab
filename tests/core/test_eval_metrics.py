"""Tests for the evaluation metrics: PSNR, SSIM, bidirectional reference similarity, toy truth metrics."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from mvs2v_core.errors import MVS2VError
from mvs2v_core.evaluation.metrics import PSNR_CAP, classify_colours, psnr, reference_similarity, ssim
from mvs2v_toy.evaluate import evaluate, subject_window
from mvs2v_toy.features import ToyFeatureExtractor
from mvs2v_toy.metrics import crosstalk, face_accuracy
from mvs2v_toy.render import render_reference, to_uint8
from mvs2v_toy.truth import truth_from_scene
from mvs2v_toy.world import PALETTE, ToyObject, ToyScene

CUBE_FACES = ("front", "left", "back", "right", "top", "bottom")


def cube(colours: tuple[str, str, str, str], **kw) -> ToyObject:
    faces = dict(zip(CUBE_FACES[:4], colours), top="gray", bottom="gray")
    return ToyObject("cube", faces, {f: "plain" for f in CUBE_FACES}, **kw)


def one_cube_truth(frames: int = 9):
    obj = cube(("red", "green", "blue", "yellow"), start_view="front", direction="left", speed="quickly")
    return truth_from_scene(ToyScene((obj,), floor_colour="violet", frames=frames))


def two_object_truth(frames: int = 9):
    a = cube(("red", "green", "blue", "yellow"), position=(-0.8, 0.0), direction="left")
    b = ToyObject("sphere", {"cap": "cyan", "body": "magenta"}, {"cap": "plain", "body": "plain"},
                  position=(0.8, 0.0), start_view="back", direction="right", speed="slowly")
    return truth_from_scene(ToyScene((a, b), floor_colour="lime", frames=frames))


# ---- PSNR / SSIM ------------------------------------------------------------------------------------


def test_psnr_identical_is_capped_or_infinite_and_hand_checkable() -> None:
    rng = np.random.default_rng(0)
    a = rng.random((3, 16, 16, 3))
    assert psnr(a, a) == PSNR_CAP == 100.0
    assert psnr(a, a, cap=None) == math.inf
    b = np.clip(a, 0.0, 0.9)
    c = b + 0.1  # MSE 0.01 -> exactly 20 dB
    assert psnr(b, c) == pytest.approx(20.0, abs=1e-9)
    assert psnr(np.zeros((4, 4, 3), np.uint8), np.full((4, 4, 3), 255, np.uint8)) == pytest.approx(0.0)
    with pytest.raises(MVS2VError, match="differ in shape"):
        psnr(a, a[:2])


def test_ssim_identical_is_one_and_constant_images_match_the_formula() -> None:
    rng = np.random.default_rng(1)
    img = rng.random((2, 20, 20, 3))
    assert torch.allclose(ssim(img, img), torch.ones(2, dtype=torch.float64))
    # Constant images: variances and covariance vanish, so SSIM = (2ab + C1) / (a^2 + b^2 + C1).
    a, b = 0.5, 0.25
    c1 = 0.01 ** 2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    value = float(ssim(np.full((16, 16, 3), a), np.full((16, 16, 3), b)))
    assert value == pytest.approx(expected, abs=1e-12)
    assert value == pytest.approx(0.80006, abs=1e-5)
    # More noise, less similarity; symmetric.
    noisy1 = np.clip(img[0] + 0.05 * rng.standard_normal(img[0].shape), 0, 1)
    noisy2 = np.clip(img[0] + 0.2 * rng.standard_normal(img[0].shape), 0, 1)
    s1, s2 = float(ssim(img[0], noisy1)), float(ssim(img[0], noisy2))
    assert 1.0 > s1 > s2
    assert float(ssim(noisy1, img[0])) == pytest.approx(s1, abs=1e-12)
    with pytest.raises(MVS2VError, match="at least 11x11"):
        ssim(np.zeros((8, 8, 3)), np.zeros((8, 8, 3)))


# ---- reference similarity ---------------------------------------------------------------------------


def reference_views():
    obj = cube(("red", "green", "blue", "yellow"))
    views = np.stack([to_uint8(render_reference(obj, y, 32, 32).image) for y in (0, 90, 180, 270)])
    return torch.from_numpy(views).permute(0, 3, 1, 2).float() / 255.0


def test_video_made_of_the_references_scores_one_both_ways() -> None:
    ext = ToyFeatureExtractor()
    refs = reference_views()
    video = refs[[0, 0, 1, 2, 2, 3, 1]]
    r = reference_similarity(ext(video), ext(refs))
    assert r["s_v2r"] == pytest.approx(1.0, abs=1e-6) and r["s_r2v"] == pytest.approx(1.0, abs=1e-6)
    assert r["best_reference_per_frame"] == [0, 0, 1, 2, 2, 3, 1]


def test_a_missing_view_lowers_s_r2v_by_the_computable_amount() -> None:
    ext = ToyFeatureExtractor()
    refs = reference_views()
    feats = ext(refs).double()
    video = refs[[0, 1, 1, 2]]  # never shows view 3 (right)
    r = reference_similarity(ext(video), ext(refs))
    best_for_missing = float((feats[3] @ feats[:3].T).max())
    assert best_for_missing < 0.999
    assert r["s_v2r"] == pytest.approx(1.0, abs=1e-6)
    assert r["s_r2v"] == pytest.approx((3.0 + best_for_missing) / 4.0, abs=1e-6)
    assert r["s_r2v"] < 1.0 - 1e-3


def test_toy_features_are_normalized_and_ignore_the_background() -> None:
    ext = ToyFeatureExtractor()
    truth = one_cube_truth()
    f = ext(torch.from_numpy(truth.frames).permute(0, 3, 1, 2))
    assert f.shape == (9, ext.dim) and torch.allclose(f.norm(dim=1), torch.ones(9))
    # Frame 0 (front, on the floor) matches the front reference best, by a margin.
    top, left, size = subject_window(truth, 0)
    crop = torch.from_numpy(truth.frames[:1, top:top + size, left:left + size]).permute(0, 3, 1, 2).float() / 255
    crop = torch.nn.functional.interpolate(crop, size=(32, 32), mode="bilinear", antialias=True)
    sims = (ext(crop) @ ext(reference_views()).T)[0]
    assert int(sims.argmax()) == 0 and float(sims[0]) > 0.9 and float(sims[0] - sims[1:].max()) > 0.05


# ---- toy ground-truth metrics -----------------------------------------------------------------------


def test_classify_colours_by_direction() -> None:
    classes = [PALETTE["red"], PALETTE["blue"], PALETTE["gray"]]
    pixels = np.array([[0.45, 0.0675, 0.0675], [0.1, 0.1, 0.1], [0.0, 0.0, 0.0], [0.05, 0.1, 0.5]])
    assert classify_colours(pixels, classes).tolist() == [0, 2, -1, 1]


def test_face_accuracy_is_one_on_truth_and_lower_when_frozen() -> None:
    truth = one_cube_truth()
    revealed, overall = face_accuracy(truth.frames, truth)
    assert revealed["value"] == 1.0 and overall["value"] == 1.0
    assert revealed["per_object"][0]["target_faces"] == ["left", "back", "right"]
    assert revealed["pixels"] > 50 and revealed["per_frame"][0] is None
    frozen = np.repeat(truth.frames[:1], truth.num_frames, axis=0)
    frozen_revealed, frozen_all = face_accuracy(frozen, truth)
    assert frozen_revealed["value"] < 0.2 and frozen_all["value"] < 1.0
    # References that show nothing new leave nothing to score.
    none, _ = face_accuracy(truth.frames, truth, [[truth.reference(0, "front")]])
    assert none["value"] is None and none["pixels"] == 0


def test_crosstalk_zero_on_truth_positive_when_b_wears_a_colours() -> None:
    truth = two_object_truth()
    ct = crosstalk(truth.frames, truth)
    assert ct is not None and ct["value"] == 0.0 and {p["to"] for p in ct["pairs"]} == {"red_cube", "magenta_sphere"}
    painted = truth.frames.copy()
    b_mask = truth.object_mask(1)
    painted[b_mask] = to_uint8(np.array(PALETTE["green"]) * 0.8)  # a colour only the cube (A) has
    ct2 = crosstalk(painted, truth)
    pair = next(p for p in ct2["pairs"] if p["to"] == "magenta_sphere")
    assert pair["value"] == pytest.approx(1.0) and pair["truth"] == 0.0
    assert ct2["value"] == pytest.approx(0.5)  # the other direction is still clean
    assert crosstalk(one_cube_truth().frames, one_cube_truth()) is None


# ---- evaluate ---------------------------------------------------------------------------------------


def test_evaluate_truth_vs_frozen_video() -> None:
    truth = two_object_truth()
    good = evaluate(truth.frames, truth)
    assert good["psnr"] == PSNR_CAP and good["ssim"] == pytest.approx(1.0)
    assert good["face_accuracy"]["value"] == 1.0 and good["crosstalk"]["value"] == 0.0
    rs = good["reference_similarity"]
    assert rs["s_v2r"] == pytest.approx(rs["truth"]["s_v2r"]) and 0.5 < rs["s_r2v"] <= 1.0
    frozen = np.repeat(truth.frames[:1], truth.num_frames, axis=0)
    bad = evaluate(torch.from_numpy(frozen).float() / 255.0, truth)  # float frames in [0, 1] work too
    assert bad["psnr"] < 40 and bad["face_accuracy"]["value"] < good["face_accuracy"]["value"]
    assert bad["reference_similarity"]["s_r2v"] < rs["s_r2v"]
    only_front = evaluate(truth.frames, truth, references={"red_cube": ["front"], "magenta_sphere": ["front"]})
    assert only_front["references"] == {"red_cube": ["front"], "magenta_sphere": ["front"]}
    with pytest.raises(MVS2VError, match="--frames 9 --width 32 --height 32"):
        evaluate(truth.frames[:5], truth)
    with pytest.raises(MVS2VError, match="unknown subject"):
        evaluate(truth.frames, truth, references={"blue_cube": ["front"]})
    scene2 = dataclasses.replace(truth.scene, frames=5)  # a bare scene is a valid spec too
    assert evaluate(truth_from_scene(scene2).frames, scene2)["face_accuracy_all"]["value"] == 1.0

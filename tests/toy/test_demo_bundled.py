"""`mvs2v demo`: the bundled toy model end to end (the README's main job), and its error paths."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mvs2v_core.cli import main
from mvs2v_core.errors import MVS2VError
from mvs2v_core.evaluation.metrics import as_float_frames, psnr
from mvs2v_core.pipeline.video_io import read_video
from mvs2v_toy import load_truth
from mvs2v_toy.demo import DEMO_ASSETS, demo_model_info, run_demo


def test_bundled_model_is_small_and_complete():
    info = demo_model_info()
    size = sum(p.stat().st_size for p in DEMO_ASSETS.rglob("*") if p.is_file())
    assert size < 10 * 1024 * 1024, f"the bundled demo model is {size / 1e6:.1f} MB; the limit is 10 MB"
    assert info["dit_config"]["dim"] % 128 == 0 and info["dit_config"]["num_heads"] == info["dit_config"]["dim"] // 128
    assert "toy_ablation" in info["training_command"]
    assert info["eval"]["world"] == "w1" and info["eval_views"] == ["front", "left", "back", "right"]


@pytest.mark.slow
def test_bundled_demo_end_to_end(tmp_path, capsys):
    from mvs2v_toy.causal import reference_use

    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--seed", "1", "--steps", "10"]) == 0
    printed = capsys.readouterr().out
    assert "ms/step" in printed and "end to end" in printed and "reference use on this scene" in printed
    for name in ("video.mp4", "video_recoloured.mp4", "comparison.png", "strip.png", "metrics.json", "demo.json",
                 "sample/truth.json", "sample/video.mp4", "recoloured/truth.json"):
        assert (out / name).is_file(), name

    truth, twin = load_truth(out / "sample"), load_truth(out / "recoloured")
    video, other = read_video(out / "video.mp4").numpy(), read_video(out / "video_recoloured.mp4").numpy()
    assert video.shape == truth.frames.shape == (9, 32, 32, 3)  # a W1 scene
    assert not set(truth.caption.split()) & {c for c in truth.scene.objects[0].colours.values() if c != "gray"}
    # The twin differs from the scene only in the colours of the sides frame 0 hides.
    assert np.array_equal(twin.frames[0], truth.frames[0]) and not np.array_equal(twin.frames, truth.frames)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["video_pixel_format"] == "gbrp"  # lossless RGB: the colours the metrics read are exact
    assert metrics["psnr"] == pytest.approx(psnr(as_float_frames(video), as_float_frames(truth.frames)), abs=1e-6)
    gray = psnr(as_float_frames(np.full_like(truth.frames, 128)), as_float_frames(truth.frames))
    assert metrics["psnr"] > gray, (metrics["psnr"], gray)  # a trained model draws the scene, not noise

    demo = json.loads((out / "demo.json").read_text())
    # The printed reference use is the causal metric of the two saved (lossless) videos.
    again = reference_use(video, other, truth, twin, 0)
    assert demo["causal"]["reference_use"]["value"] == pytest.approx(again["value"], abs=1e-12)
    assert demo["metrics"]["reference_use"] == pytest.approx(again["value"], abs=1e-12)
    t = demo["timings"]
    assert 0 < t["per_sampling_step"] < t["sampling_3_videos"] <= t["end_to_end"]
    assert demo["steps"] == 10 and demo["metrics"]["psnr_all_gray_clip"] == pytest.approx(gray)
    assert demo["command"].startswith("mvs2v generate ") and "'" in demo["command"]  # shell-quoted prompt


def test_demo_scene_is_chosen_by_the_seed_and_is_deterministic(tmp_path):
    from mvs2v_toy.demo import held_out_scene

    info = demo_model_info()
    a, i = held_out_scene(info, 2)
    b, j = held_out_scene(info, 2)
    c, _ = held_out_scene(info, 3)
    assert a == b and i == j and a != c


def test_demo_without_the_bundled_model_says_what_to_do(tmp_path):
    with pytest.raises(MVS2VError, match="--random-models"):
        run_demo(tmp_path / "out", assets=tmp_path / "missing")


@pytest.mark.slow
def test_random_models_demo_still_runs(tmp_path):
    out = tmp_path / "rnd"
    assert main(["demo", "--random-models", "--out", str(out), "--steps", "2"]) == 0
    assert (out / "video.mp4").is_file() and (out / "assets" / "tiny_dit.safetensors").is_file()

"""Tests for the ``mvs2v eval`` entry points and the DINOv2 / CLIP feature extractors (tiny local models)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mvs2v_core.errors import CheckpointError, MVS2VError
from mvs2v_core.evaluation.features import HFImageFeatureExtractor
from mvs2v_toy.evaluate import _parse_views, add_eval_args, run_eval
from mvs2v_toy.features import ToyFeatureExtractor, load_feature_extractor


def eval_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_eval_args(parser)
    return parser.parse_args(list(argv))


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("av")
    from mvs2v_toy.dataset import write_toy_dataset

    out = tmp_path_factory.mktemp("toyds")
    write_toy_dataset(out, 1, seed=4, frames=9, two_object_prob=1.0)
    return out / "samples" / "000000"


def test_run_eval_writes_metrics_strip_and_plot(sample: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="the plot needs matplotlib (pip install mvs2v[eval])")
    out = tmp_path / "eval"
    res = run_eval(eval_args("--video", str(sample / "video.mp4"), "--sample", str(sample), "--out", str(out)))
    metrics = json.loads((out / "metrics.json").read_text())
    # The sample's own (lossless) video is the truth.
    assert metrics["psnr"] == 100.0 and metrics["face_accuracy_all"]["value"] == 1.0
    assert metrics["crosstalk"]["value"] == 0.0 and metrics == json.loads(json.dumps(res["metrics"]))
    for name in ("strip.png", "eval_plot.png"):
        with Image.open(out / name) as im:
            assert im.size[0] > 100 and im.size[1] > 100
    with Image.open(out / "strip.png") as im:  # 3 rows of 32 px frames at 4x
        assert im.size[1] >= 3 * 32 * 4


def test_run_eval_warns_about_chroma_subsampled_videos(sample: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    from mvs2v_core.pipeline.video_io import write_mp4
    from mvs2v_toy.truth import load_truth

    truth = load_truth(sample)
    lossy = write_mp4(torch.from_numpy(truth.frames), tmp_path / "lossy.mp4", fps=8)
    res = run_eval(eval_args("--video", str(lossy), "--sample", str(sample), "--out", str(tmp_path / "e"),
                             "--no-plot"))
    assert res["metrics"]["video_pixel_format"] == "yuv420p" and "reduced resolution" in capsys.readouterr().err
    assert res["metrics"]["psnr"] < 40  # the codec alone moves the numbers: hence the warning
    lossless = run_eval(eval_args("--video", str(sample / "video.mp4"), "--sample", str(sample), "--out",
                                  str(tmp_path / "e2"), "--no-plot"))
    assert lossless["metrics"]["video_pixel_format"] in ("gbrp", "rgb24") and "reduced" not in capsys.readouterr().err


def test_run_eval_views_and_errors(sample: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    res = run_eval(eval_args("--video", str(sample / "video.mp4"), "--sample", str(sample), "--out", str(out),
                             "--views", "front,back", "--no-plot", "--no-crop"))
    assert not (out / "eval_plot.png").exists() and (out / "strip.png").is_file()
    assert all(v == ["front", "back"] for v in res["metrics"]["references"].values())
    assert res["metrics"]["crop"] == "full-frame"
    with pytest.raises(MVS2VError, match="does not exist"):
        run_eval(eval_args("--video", str(tmp_path / "none.mp4"), "--sample", str(sample), "--out", str(out),
                           "--no-plot"))
    assert _parse_views(["a=front", "b=left,90"], ["a", "b"]) == {"a": ["front"], "b": ["left", "90"]}
    with pytest.raises(MVS2VError, match="not both"):
        _parse_views(["front", "a=left"], ["a"])


def test_feature_extractor_input_checks() -> None:
    ext = load_feature_extractor("toy")
    assert isinstance(ext, ToyFeatureExtractor)
    u8 = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    assert torch.allclose(ext(u8), ext(u8.float() / 255.0))
    with pytest.raises(MVS2VError, match=r"\[N, 3, H, W\]"):
        ext(torch.zeros(2, 16, 16, 3))


# ---- DINOv2 / CLIP through transformers ------------------------------------------------------------


def test_hf_extractor_error_paths(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        HFImageFeatureExtractor(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="no config.json"):
        HFImageFeatureExtractor(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "dinov2"}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"not really")
    with pytest.raises(CheckpointError, match="pickle"):
        HFImageFeatureExtractor(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(CheckpointError, match="supports dinov2, clip"):
        HFImageFeatureExtractor(tmp_path)


def _tiny_model(kind: str, folder: Path) -> int:
    """Save a tiny random transformers model of ``kind``; returns its feature width."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                  image_size=32, patch_size=8)
    if kind == "dinov2":
        model, width = transformers.Dinov2Model(transformers.Dinov2Config(**vision)), 32
    elif kind == "clip_vision_model":
        cfg = transformers.CLIPVisionConfig(projection_dim=16, **vision)
        model, width = transformers.CLIPVisionModelWithProjection(cfg), 16
    else:
        text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, vocab_size=99)
        cfg = transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=24)
        model, width = transformers.CLIPModel(cfg), 24
    model.save_pretrained(str(folder))
    return width


@pytest.mark.parametrize("kind", ["dinov2", "clip_vision_model", "clip"])
def test_hf_extractor_on_a_tiny_local_model(kind: str, tmp_path: Path) -> None:
    width = _tiny_model(kind, tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"crop_size": {"height": 32, "width": 32}}))
    ext = load_feature_extractor(str(tmp_path))
    assert isinstance(ext, HFImageFeatureExtractor) and ext.image_size == 32
    images = torch.rand(3, 3, 40, 48, generator=torch.Generator().manual_seed(1))
    f = ext(images)
    assert f.shape == (3, width) and torch.allclose(f.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.allclose(ext(images), f)  # deterministic
    assert not torch.allclose(f[0], f[1])
    ext.batch_size = 2  # batching does not change the result
    assert torch.allclose(ext(images), f, atol=1e-5)
    assert np.isfinite(f.numpy()).all()


def test_run_eval_out_must_be_a_folder_checked_before_the_work(sample: Path, tmp_path: Path) -> None:
    existing = tmp_path / "results.json"
    existing.write_text("{}")
    missing_sample = str(tmp_path / "no-such-sample")  # evaluating first would fail on this instead
    with pytest.raises(MVS2VError, match=r"^--out .*results\.json is an existing file, not a folder; give a folder"):
        run_eval(eval_args("--video", str(sample / "video.mp4"), "--sample", missing_sample, "--out", str(existing),
                           "--no-plot"))
    assert existing.read_text() == "{}"


def test_run_eval_write_failure_is_one_line(sample: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from mvs2v_toy import _core

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_core, "write_strip", full_disk, raising=False)
    with pytest.raises(MVS2VError, match=r"^--out .*: could not write the results \(No space left on device\)"):
        run_eval(eval_args("--video", str(sample / "video.mp4"), "--sample", str(sample), "--out",
                           str(tmp_path / "e"), "--no-plot"))

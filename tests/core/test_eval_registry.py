"""Tests for the one metric registry (mvs2v_core.evaluation.registry)."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

from mvs2v_core.errors import MVS2VError
from mvs2v_core.evaluation import registry
from mvs2v_core.evaluation.metrics import psnr, reference_similarity, ssim
from mvs2v_core.evaluation.registry import (
    Metric,
    MetricNotApplicable,
    MetricWeights,
    available_metrics,
    compute_metrics,
    format_metric_table,
    get_metric,
    register_metric,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fresh(monkeypatch):
    """The registry, restored after the test (entry points already loaded)."""
    available_metrics()
    monkeypatch.setattr(registry, "_METRICS", dict(registry._METRICS))
    return registry


def clips(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 256, size=(3, 16, 16, 3), dtype=np.uint8)
    gen = np.clip(truth.astype(np.int64) + rng.integers(-20, 21, size=truth.shape), 0, 255).astype(np.uint8)
    return gen, truth


def test_core_metrics_are_registered_with_their_inputs() -> None:
    metrics = available_metrics()
    assert {"psnr", "ssim", "s_v2r", "s_r2v"} <= set(metrics)
    assert metrics["psnr"].inputs == {"video", "truth_video"} and metrics["psnr"].weights is None
    assert metrics["s_r2v"].inputs == {"video_features", "reference_features"}
    assert all(m.provider == "mvs2v_core" for n, m in metrics.items() if n in ("psnr", "ssim", "s_v2r", "s_r2v"))
    assert list(available_metrics("video")) == sorted(available_metrics("video"))  # listed by name


def test_compute_runs_what_it_can_and_says_why_not_the_rest() -> None:
    gen, truth = clips()
    results, skipped = compute_metrics({"video": gen, "truth_video": truth}, ["psnr", "ssim", "s_v2r"])
    assert results["psnr"]["value"] == pytest.approx(psnr(gen, truth), abs=1e-12)
    assert results["ssim"]["value"] == pytest.approx(float(ssim(gen, truth).mean()), abs=1e-12)
    assert len(results["ssim"]["per_frame"]) == 3 and len(results["psnr"]["per_frame"]) == 3
    assert skipped == {"s_v2r": "s_v2r: needs input reference_features, video_features"}
    # None counts as missing
    _, skipped = compute_metrics({"video": gen, "truth_video": None}, ["psnr"])
    assert skipped == {"psnr": "psnr: needs input truth_video"}


def test_reference_similarity_through_the_registry_matches_the_function() -> None:
    g = torch.Generator().manual_seed(0)
    frames = [torch.nn.functional.normalize(torch.randn(5, 8, generator=g), dim=1) for _ in range(2)]
    refs = [torch.nn.functional.normalize(torch.randn(4, 8, generator=g), dim=1) for _ in range(2)]
    results, skipped = compute_metrics({"video_features": frames, "reference_features": refs}, ["s_v2r", "s_r2v"])
    direct = [reference_similarity(f, r) for f, r in zip(frames, refs)]
    assert not skipped
    assert results["s_v2r"]["value"] == pytest.approx(np.mean([d["s_v2r"] for d in direct]), abs=1e-12)
    assert results["s_r2v"]["value"] == pytest.approx(np.mean([d["s_r2v"] for d in direct]), abs=1e-12)
    one, _ = compute_metrics({"video_features": frames[0], "reference_features": refs[0]}, ["s_r2v"])
    assert one["s_r2v"]["value"] == pytest.approx(direct[0]["s_r2v"], abs=1e-12)
    with pytest.raises(MVS2VError, match="2 subjects' frames but of 1"):
        compute_metrics({"video_features": frames, "reference_features": refs[:1]}, ["s_v2r"])


def test_weights_are_checked_before_the_metric_runs(fresh, tmp_path: Path) -> None:
    calls = []
    weights = MetricWeights("a face recognition model folder", "face_model", files=("model.safetensors",))
    register_metric(Metric("face_sim", "cosine similarity of face embeddings", {"video"},
                           lambda inputs: calls.append(inputs["face_model"]) or {"value": 0.5}, weights=weights))
    gen, _ = clips()
    _, skipped = compute_metrics({"video": gen}, ["face_sim"])
    assert skipped["face_sim"] == "face_sim: needs a face recognition model folder: give its folder with --face-model"
    _, skipped = compute_metrics({"video": gen, "face_model": tmp_path / "nope"}, ["face_sim"])
    assert skipped["face_sim"].endswith(f"--face-model {tmp_path / 'nope'} is not a folder")
    _, skipped = compute_metrics({"video": gen, "face_model": tmp_path}, ["face_sim"])
    assert skipped["face_sim"] == (f"face_sim: needs a face recognition model folder: {tmp_path} holds no "
                                   "model.safetensors")
    assert calls == []
    (tmp_path / "model.safetensors").write_bytes(b"x")
    results, skipped = compute_metrics({"video": gen, "face_model": str(tmp_path)}, ["face_sim"])
    assert results == {"face_sim": {"value": 0.5}} and not skipped and calls == [str(tmp_path)]
    table = format_metric_table()
    assert "face_sim  [video, mvs2v_core]" in table
    assert "weights: a face recognition model folder (--face-model)" in table


def test_a_metric_that_does_not_apply_is_skipped_and_the_others_still_run(fresh) -> None:
    def needs_two(inputs):
        raise MetricNotApplicable("needs a scene with two subjects")

    register_metric(Metric("pairwise", "x", {"video"}, needs_two))
    gen, truth = clips()
    results, skipped = compute_metrics({"video": gen, "truth_video": truth}, ["pairwise", "psnr"])
    assert set(results) == {"psnr"} and skipped == {"pairwise": "pairwise: needs a scene with two subjects"}


def test_default_selection_kinds_and_bad_metrics(fresh) -> None:
    register_metric(Metric("pair_probe", "a probe", {"video_pair"}, lambda i: {"value": 1.0}, kind="probe"))
    gen, truth = clips()
    results, skipped = compute_metrics({"video": gen, "truth_video": truth}, kind="video")
    assert {"psnr", "ssim"} <= set(results) and "pair_probe" not in {**results, **skipped}
    results, skipped = compute_metrics({"video_pair": (gen, gen)}, kind="probe")
    assert results["pair_probe"] == {"value": 1.0} and "psnr" not in skipped
    with pytest.raises(MVS2VError, match="'nonsense' is not registered; registered metrics: .*psnr"):
        compute_metrics({}, ["psnr", "nonsense"])
    with pytest.raises(MVS2VError, match="kind 'batch' is not one of video, probe"):
        Metric("x", "x", {"video"}, lambda i: {"value": 0}, kind="batch")
    with pytest.raises(MVS2VError, match="letters, digits and underscores"):
        Metric("s v2r", "x", {"video"}, lambda i: {"value": 0})
    register_metric(Metric("no_value", "x", {"video"}, lambda i: {"score": 1}))
    with pytest.raises(MVS2VError, match="without a 'value'"):
        compute_metrics({"video": gen}, ["no_value"])
    # a later registration replaces, unless replace=False (what entry points use)
    register_metric(Metric("psnr", "other", {"video"}, lambda i: {"value": 0.0}), replace=False)
    assert get_metric("psnr").description.startswith("10*log10")


def test_entry_points_register_without_replacing_explicit_ones(fresh, monkeypatch) -> None:
    class FakeEntryPoint:
        name, value = "fake", "fake:register"

        def load(self):
            def register(reg):
                reg(Metric("plugin_metric", "from a plug-in", {"video"}, lambda i: {"value": 2.0}, provider="fake"))
                reg(Metric("psnr", "hijack", {"video"}, lambda i: {"value": -1.0}, provider="fake"))
            return register

    class BrokenEntryPoint:
        name, value = "broken", "broken:register"

        def load(self):
            raise ImportError("no such module")

    import importlib.metadata

    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda group: [FakeEntryPoint(), BrokenEntryPoint()] if group == registry.ENTRY_POINT_GROUP
                        else [])
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    with pytest.warns(UserWarning, match="'broken'"):
        metrics = available_metrics()
    assert metrics["plugin_metric"].provider == "fake" and metrics["psnr"].provider == "mvs2v_core"


def test_the_toy_world_declares_and_registers_its_metrics() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    assert declared["mvs2v.metrics"] == {"toy": "mvs2v_toy.metric_plugins:register_metrics"}
    module, _, attr = declared["mvs2v.metrics"]["toy"].partition(":")
    assert callable(getattr(importlib.import_module(module), attr))
    import mvs2v_toy  # noqa: F401  (registers on import, as inside ComfyUI)

    metrics = available_metrics()
    video_metrics = set(available_metrics("video"))
    assert {"face_accuracy", "face_accuracy_all", "hidden_face_accuracy", "crosstalk"} <= video_metrics
    assert set(available_metrics("probe")) >= {"reference_use", "slot_binding", "causal_crosstalk"}
    assert metrics["reference_use"].inputs == {"video_pair", "truth_pair"}
    assert metrics["crosstalk"].provider == "mvs2v_toy"

"""The toy-world ablation runner (``python -m experiments.toy_ablation``): a miniature grid end to end,
resuming, refusing other settings, the table's statistics, bundling a run as the demo model."""

from __future__ import annotations

import json
import math

import pytest

import experiments.toy_ablation as ta
from mvs2v_train.config import load_config, parse_config

TINY = ["--samples", "60", "--pretrain-steps", "2", "--finetune-steps", "3", "--eval-samples", "1",
        "--sample-steps", "2", "--configs", "base,single", "--seeds", "0", "--jobs", "2", "--pretrain-threads", "1"]


@pytest.mark.slow
def test_tiny_grid_end_to_end_resumes_and_bundles(tmp_path):
    out = tmp_path / "abl"
    assert ta.main(["--out", str(out), *TINY]) == 0

    table = (out / "ablation.md").read_text()
    assert "| base |" in table and "| single |" in table and "all-gray clip" in table
    summary = json.loads((out / "summary.json").read_text())
    assert summary["configs"]["base"]["seeds"] == [0] and summary["paired"]["single"]["seeds"] == [0]
    base = json.loads((out / "runs" / "base-s0" / "metrics.json").read_text())
    single = json.loads((out / "runs" / "single-s0" / "metrics.json").read_text())
    assert base["views"] == ["front", "left", "back"] and single["views"] == ["front"]
    for m in (base, single):
        assert set(ta.METRICS) <= set(m["means"]) and len(m["per_sample"]) == 1
        assert math.isfinite(m["means"]["psnr"]) and 0.0 <= m["means"]["face_accuracy_all"] <= 1.0
    truth_row = summary["reference_rows"]["truth"]
    assert truth_row["psnr"] == 100.0 and truth_row["face_accuracy_all"] == 1.0

    # Each run's train.toml is a valid trainer config that reruns it alone.
    cfg = load_config(out / "runs" / "single-s0" / "train.toml")
    assert cfg.trainable.full and {s.views for s in cfg.stages} == {"single"}
    cfg = load_config(out / "runs" / "base-s0" / "train.toml")
    assert [s.views for s in cfg.stages] == ["single", "single_or_full", "dropout"] and cfg.trainable.proxy

    # A second call finds everything done and changes nothing.
    stamp = (out / "runs" / "base-s0" / "metrics.json").stat().st_mtime_ns
    assert ta.main(["--out", str(out), *TINY]) == 0
    assert (out / "runs" / "base-s0" / "metrics.json").stat().st_mtime_ns == stamp
    # Other settings in the same folder are refused instead of mixing two tables.
    other = [a if a != "3" else "4" for a in TINY]
    assert ta.main(["--out", str(out), *other]) == 2

    # The demo model: the chosen run's config and seed fine-tuned again (longer in real use), evaluated, bundled.
    dest = tmp_path / "demo_model"
    assert ta.main(["--out", str(out), *TINY, "--bundle", str(dest), "--bundle-run", "base-s0",
                    "--bundle-steps", "2"]) == 0
    from mvs2v_core.model.loading import load_dit
    from mvs2v_toy.demo import demo_model_info

    info = demo_model_info(dest)
    assert info["eval_views"] == ["front", "left", "back"] and info["run"] == "base-s0"
    assert info["finetune_steps"] == 3  # the three curriculum stages get at least one step each
    assert load_dit(dest / "dit.safetensors").config.text_len == 32
    assert "Longer fine-tune of the bundled demo model" in (out / "ablation.md").read_text()
    assert (dest / "README.md").is_file() and (dest / "codec").is_dir()


def _fake_run(out, config, seed, hfa, psnr):
    means = {k: 0.5 for k in ta.METRICS}
    means.update(hidden_face_accuracy=hfa, psnr=psnr, crosstalk=None)
    run = out / "runs" / f"{config}-s{seed}"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"means": means, "train_seconds": 60.0}))


def test_table_statistics_and_pick(tmp_path):
    for seed, (hb, hs, pb, ps) in enumerate([(0.5, 0.2, 14.0, 13.0), (0.7, 0.2, 16.0, 13.5)]):
        _fake_run(tmp_path, "base", seed, hb, pb)
        _fake_run(tmp_path, "single", seed, hs, ps)
    s = ta.AblationSettings()
    summary = ta.aggregate(ta.Layout(tmp_path), s, ["base", "single"], [0, 1], "cmd", None)
    hfa = summary["configs"]["base"]["metrics"]["hidden_face_accuracy"]
    assert hfa["mean"] == pytest.approx(0.6) and hfa["std"] == pytest.approx(math.sqrt(0.02))  # sample std
    diff = summary["paired"]["single"]["diff"]["psnr"]
    assert diff["mean"] == pytest.approx(-1.75) and diff["std"] == pytest.approx(math.sqrt(2 * 0.75 ** 2))
    assert summary["configs"]["base"]["metrics"]["crosstalk"] is None
    table = (tmp_path / "ablation.md").read_text()
    assert "| base | base: TS-RoPE" in table and "0.600 ± 0.141" in table and "-1.75 ± 1.06" in table
    assert ta.pick_bundle_run(summary) == "base-s1"


def test_trainer_reads_the_toy_vision_encoder_width(tmp_path):
    from mvs2v_toy.vision import ToyVisionEncoder, save_toy_vision_encoder
    from mvs2v_train.model import vision_width

    folder = save_toy_vision_encoder(ToyVisionEncoder(32, 8), tmp_path / "vision")
    assert vision_width(folder) == 3 * 8 * 8  # the MFI projector's input width: one token per 8x8 patch


def test_single_view_runs_are_scored_against_the_same_views_as_multi_view_runs():
    import numpy as np

    from mvs2v_toy.truth import truth_from_scene
    from mvs2v_toy.world import ToyObject, ToyScene

    faces = dict(front="red", left="green", back="blue", right="yellow", top="gray", bottom="gray")
    obj = ToyObject("cube", faces, {f: "plain" for f in faces}, start_view="front", direction="left", speed="quickly")
    truth = truth_from_scene(ToyScene((obj,), floor_colour="violet", frames=9))
    common = ("front", "left", "back")
    frozen = np.repeat(truth.frames[:1], truth.num_frames, axis=0)  # never shows what frame 0 hides
    multi = ta.score_sample(frozen, truth, common, common)
    single = ta.score_sample(frozen, truth, ("front",), common)
    # Same video: every number scored against the common views is the same, whatever the run was given.
    for key in ("hidden_face_accuracy", "hidden_face_pixels", "s_v2r", "s_r2v", "psnr"):
        assert single[key] == multi[key], key
    assert multi["hidden_face_pixels"] > 0 and multi["hidden_face_accuracy"] < 0.2
    assert single["face_accuracy"] is None  # the front view reveals nothing frame 0 hides
    assert multi["face_accuracy"] == multi["hidden_face_accuracy"]
    assert ta.score_sample(truth.frames, truth, ("front",), common)["hidden_face_accuracy"] == 1.0


def test_written_train_configs_are_what_the_trainer_parses(tmp_path):
    # The runner writes each config dict as TOML (tomli_w); the trainer must read back the same config.
    from experiments.toy_ablation.files import write_train_config
    from experiments.toy_ablation.recipes import finetune_config, pretrain_config

    layout, s = ta.Layout(tmp_path), ta.AblationSettings()
    for name, cfg in [("pretrain", pretrain_config(layout, s)),
                      *((c, finetune_config(layout, s, ta.CONFIGS[c], 1)) for c in ("base", "single", "mfi"))]:
        path = tmp_path / f"{name}.toml"
        write_train_config(path, cfg, f"{name} (test)")
        assert path.read_text(encoding="utf-8").startswith(f"# {name} (test)\n")
        assert load_config(path) == parse_config(cfg, path), name
    cfg = load_config(tmp_path / "mfi.toml")
    assert cfg.trainable.mfi and [st.steps for st in cfg.stages] == [45, 45, 210]

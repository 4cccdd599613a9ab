"""``mvs2v eval`` on real videos (mvs2v_core.evaluation.command) end to end, through ``mvs2v_core.cli.main``.

Videos are written losslessly with PyAV, references as PNG files; the DINOv2 / CLIP folders and the
InsightFace pack are the tiny models of tests/core/test_real_metrics*.py, made in a temporary folder
(no downloads, CPU). The toy mode (``--sample``) is the toy world's, added to core's command through
the ``mvs2v.cli`` entry point; its own tests are tests/toy/test_eval_run.py.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mvs2v_core.cli import main
from mvs2v_core.evaluation.command import EvalModes, add_eval_parser, dumps_record
from mvs2v_core.evaluation.real_metrics import REAL_METRIC_NAMES, clear_caches
from test_real_metrics import texture, tiny_hf_model

pytest.importorskip("av")
pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("eval_cli_models")
    return {"dino": tiny_hf_model("dinov2", root / "dinov2"), "clip": tiny_hf_model("clip", root / "clip"),
            "root": root}


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_caches()
    yield
    clear_caches()


def write_video(frames: np.ndarray, path: Path) -> Path:
    from mvs2v_core.pipeline.video_io import read_video, write_lossless_mp4

    _, lossless = write_lossless_mp4(frames, path, fps=8)
    assert lossless and np.array_equal(read_video(path).numpy(), frames)  # the scores below rely on exact pixels
    return path


def write_png(image: np.ndarray, path: Path) -> str:
    Image.fromarray(image).save(path)
    return str(path)


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    rc = main(["eval", *map(str, argv)])
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture
def scene(tmp_path: Path) -> dict:
    """One subject: three reference PNGs and a video made of them (the third shown twice)."""
    refs = [texture(1), texture(2), texture(3)]
    paths = [write_png(r, tmp_path / f"ref{i}.png") for i, r in enumerate(refs)]
    video = write_video(np.stack([refs[0], refs[1], refs[2], refs[2]]), tmp_path / "gen.mp4")
    return {"video": video, "subject": "cube=" + ",".join(paths), "refs": refs, "paths": paths, "tmp": tmp_path}


# ---- the real mode end to end --------------------------------------------------------------------------------------


def test_a_video_made_of_the_references_scores_one_and_lists_every_skip(scene: dict, models: dict,
                                                                        capsys: pytest.CaptureFixture) -> None:
    out = scene["tmp"] / "eval"
    rc, stdout, err = run(capsys, "--video", scene["video"], "--subject", scene["subject"] + "@front",
                          "--prompt", "a cube", "--dino-model", models["dino"], "--clip-model", models["clip"],
                          "--out", out)
    assert rc == 0 and err == ""
    text = (out / "metrics.json").read_text()
    record = json.loads(text)
    assert record["format"] == "mvs2v-eval-real" and (record["frames"], record["width"]) == (4, 32)
    assert record["subjects"]["cube"]["images"] == scene["paths"] and record["subjects"]["cube"]["labels"][2] == "front"
    m, skipped = record["metrics"], record["skipped"]
    for name in ("s_v2r_dino", "s_r2v_dino", "s_v2r_clip", "s_r2v_clip"):
        assert m[name]["value"] == pytest.approx(1.0, abs=1e-5), name
    assert {"text_alignment", "motion_amplitude", "motion_variation"} <= set(m)
    assert set(m) | set(skipped) == set(REAL_METRIC_NAMES) and not set(m) & set(skipped)
    assert skipped["face_similarity"] == ("face_similarity: needs an InsightFace pack folder (det_10g.onnx + "
                                          "w600k_r50.onnx, e.g. buffalo_l): give its folder with --face-model")
    assert skipped["subject_crosstalk"] == "subject_crosstalk: needs a scene with two subjects"
    assert "--face-model" in skipped["subject_crop_similarity"] and "--aesthetic-model" in skipped["aesthetic"]
    assert set(record["definitions"]) == set(REAL_METRIC_NAMES)
    # one line per metric, per skip and per definition, in the file and in the table
    lines = text.splitlines()
    for name in REAL_METRIC_NAMES:
        assert sum(line.lstrip().startswith(f'"{name}": ') for line in lines) == 2, name  # result or skip + definition
        row = [line for line in stdout.splitlines() if line.startswith(name + " ")]
        assert len(row) == 1, name
        assert ("skipped" in row[0]) == (name in skipped)
    assert "1.0000" in next(line for line in stdout.splitlines() if line.startswith("s_r2v_dino "))
    assert f"wrote {out / 'metrics.json'}" in stdout


def test_missing_references_or_prompt_skip_with_their_flag_and_a_root_names_its_folders(
        scene: dict, models: dict, capsys: pytest.CaptureFixture) -> None:
    out = scene["tmp"] / "eval"
    rc, stdout, _ = run(capsys, "--video", scene["video"], "--eval-models", models["root"], "--out", out)
    assert rc == 0
    record = json.loads((out / "metrics.json").read_text())
    skipped = record["skipped"]
    assert skipped["s_v2r_dino"] == "s_v2r_dino: needs input reference_images (give --subject NAME=IMG,...)"
    assert skipped["text_alignment"] == "text_alignment: needs input prompt (give --prompt)"
    assert record["weights"]["face_model"] == str(models["root"] / "insightface")
    # the root has dinov2/ and clip/ but no insightface/: named in the reason
    rc, _, _ = run(capsys, "--video", scene["video"], "--subject", scene["subject"], "--eval-models", models["root"],
                   "--out", out, "--metrics", "face_similarity,s_r2v_dino")
    skipped = json.loads((out / "metrics.json").read_text())["skipped"]
    assert rc == 0 and list(skipped) == ["face_similarity"]
    assert skipped["face_similarity"].endswith(f"--face-model {models['root'] / 'insightface'} is not a folder")


def test_two_subjects_with_boxes_masks_and_kinds(tmp_path: Path, models: dict, capsys: pytest.CaptureFixture) -> None:
    a, b = texture(4), texture(5)
    frame = np.zeros((32, 64, 3), dtype=np.uint8)
    frame[:, :32], frame[:, 32:] = a, b
    video = write_video(np.stack([frame] * 3), tmp_path / "two.mp4")
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"a": [0, 0, 32, 32]}))
    mask = np.zeros((32, 64), dtype=np.uint8)
    mask[:, 32:] = 255
    out = tmp_path / "eval"
    rc, _, err = run(capsys, "--video", video, "--subject", f"a={write_png(a, tmp_path / 'a.png')}",
                     "--subject", f"b={write_png(b, tmp_path / 'b.png')}", "--boxes", boxes,
                     "--mask", f"b={write_png(mask, tmp_path / 'mask_b.png')}", "--kind", "a=object",
                     "--kind", "b=object", "--dino-model", models["dino"], "--out", out,
                     "--metrics", "subject_crop_similarity,subject_crosstalk")
    assert rc == 0, err
    record = json.loads((out / "metrics.json").read_text())
    crop = record["metrics"]["subject_crop_similarity"]
    assert crop["value"] == pytest.approx(1.0, abs=1e-5)
    assert [s["method"] for s in crop["per_subject"]] == ["box", "mask"]
    ct = record["metrics"]["subject_crosstalk"]
    assert ct["own"] == pytest.approx(1.0, abs=1e-5) and ct["value"] < 1.0 - 1e-4
    assert record["subjects"]["a"]["kind"] == "object" and record["subjects"]["b"]["mask"]
    # per-frame boxes: null where absent; that frame is left out of the subject's crops
    boxes.write_text(json.dumps({"a": [[0, 0, 32, 32], None, [0, 0, 32, 32]], "b": [32, 0, 64, 32]}))
    rc, _, err = run(capsys, "--video", video, "--subject", f"a={tmp_path / 'a.png'}", "--subject",
                     f"b={tmp_path / 'b.png'}", "--boxes", boxes, "--dino-model", models["dino"], "--out", out,
                     "--metrics", "subject_crop_similarity")
    per_subject = json.loads((out / "metrics.json").read_text())["metrics"]["subject_crop_similarity"]["per_subject"]
    assert rc == 0 and per_subject[0]["frames"] == [0, 2] and per_subject[1]["frames"] == [0, 1, 2]


def test_face_similarity_through_the_command(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("insightface")
    from test_real_metrics_faces import frame, write_detector, write_recogniser

    pack = tmp_path / "insightface"
    pack.mkdir()
    write_detector(pack / "det_10g.onnx")
    write_recogniser(pack / "w600k_r50.onnx")
    ref = frame(128)
    video = write_video(np.stack([ref] * 3), tmp_path / "face.mp4")
    rc, stdout, err = run(capsys, "--video", video, "--subject", f"me={write_png(ref, tmp_path / 'me.png')}",
                          "--face-model", pack, "--out", tmp_path / "eval", "--metrics", "face_similarity")
    assert rc == 0, err
    r = json.loads((tmp_path / "eval" / "metrics.json").read_text())["metrics"]["face_similarity"]
    assert r["value"] == pytest.approx(1.0, abs=1e-5) and r["by_yaw"]["0-15"]["count"] == 3
    assert stdout.splitlines()[1].startswith("face_similarity ")


def test_no_metric_ran_is_one_line_after_writing_the_reasons(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    video = write_video(texture(6)[None], tmp_path / "still.mp4")  # one frame: no motion to measure
    rc, stdout, err = run(capsys, "--video", video, "--out", tmp_path / "eval", "--metrics", "motion_amplitude")
    assert rc == 2 and err.count("\n") == 1 and err.startswith("error: mvs2v eval: no metric ran")
    skipped = json.loads((tmp_path / "eval" / "metrics.json").read_text())["skipped"]
    assert "at least 2 frames" in skipped["motion_amplitude"] and "skipped" in stdout


# ---- bad input: one line, before anything is decoded or loaded -----------------------------------------------------


def test_bad_input_is_one_line_before_any_work(scene: dict, models: dict, capsys: pytest.CaptureFixture,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from mvs2v_core.pipeline import video_io

    def no_decoding(*_a, **_k):
        raise AssertionError("the video was decoded before the flags were checked")

    monkeypatch.setattr(video_io, "read_video", no_decoding)
    tmp, video, subject = scene["tmp"], scene["video"], scene["subject"]
    boxes = tmp / "boxes.json"
    boxes.write_text(json.dumps({"dog": [0, 0, 8, 8]}))
    bad_box = tmp / "bad_box.json"
    bad_box.write_text(json.dumps({"cube": [8, 8, 4, 20]}))
    (tmp / "taken").write_text("a file")
    base = ("--video", video, "--out", tmp / "eval")
    cases = [
        ((), "mvs2v eval needs --video and --out"),
        (("--video", tmp / "none.mp4", "--out", tmp / "eval"), "--video .*none.mp4 does not exist"),
        ((*base, "--subject", "cube"), "--subject 'cube' must look like NAME=IMG"),
        ((*base, "--subject", f"cube={tmp / 'none.png'}"),
         "reference image .*none.png of subject 'cube' does not exist"),
        ((*base, "--subject", subject, "--subject", subject), "subject names must be unique"),
        ((*base, "--subject", subject, "--boxes", tmp / "no.json"), "--boxes .*no.json does not exist"),
        ((*base, "--subject", subject, "--boxes", boxes), "names dog, which no --subject gives"),
        ((*base, "--subject", subject, "--boxes", bad_box), r"x1 > x0 and y1 > y0, got \[8, 8, 4, 20\]"),
        ((*base, "--subject", subject, "--kind", "cube=car"), "the kind must be one of person, object"),
        ((*base, "--subject", subject, "--kind", "dog=object"), "names no --subject"),
        ((*base, "--subject", subject, "--mask", f"cube={tmp / 'm.png'}"), "does not exist; give a mask image"),
        ((*base, "--dino-model", tmp / "nodino"), "--dino-model .*nodino is not a folder; give the DINOv2"),
        ((*base, "--eval-models", tmp / "noroot"), "--eval-models .*noroot is not a folder"),
        ((*base, "--max-frames", "0"), "--max-frames 0 must be at least 1"),
        ((*base, "--metrics", "no_such"), "metric 'no_such' is not registered"),
        ((*base, "--metrics", "s_v2r_dino,text_alignment"),
         r"no metric can run: s_v2r_dino: needs input reference_images \(give --subject NAME=IMG,...\); "
         r"text_alignment: needs input prompt \(give --prompt\)"),
        (("--video", video, "--out", tmp / "taken"), "--out .*taken is an existing file, not a folder"),
        ((*base, "--sample", tmp, "--subject", subject), "--subject belongs to the real mode"),
        ((*base, "--views", "front"), r"--views belongs to the toy mode \(--sample\), not the real mode"),
    ]
    for argv, message in cases:
        rc, _, err = run(capsys, *argv)
        assert rc == 2 and err.count("\n") == 1 and re.search(message, err), (argv, err)
    assert not (tmp / "eval").exists()


def test_bad_boxes_and_masks_against_the_video_are_one_line(scene: dict, models: dict,
                                                            capsys: pytest.CaptureFixture) -> None:
    tmp = scene["tmp"]
    boxes = tmp / "boxes.json"
    cases = [({"cube": [[0, 0, 8, 8]] * 3}, None, "has 3 per-frame boxes but the video has 4 frames"),
             ({"cube": [40, 0, 48, 8]}, None, "its box [40.0, 0.0, 48.0, 8.0] lies outside the 32x32 frame"),
             ({}, np.zeros((16, 16), np.uint8), "mask_cube.png is 16x16 but the video is 32x32")]
    for data, mask, message in cases:
        boxes.write_text(json.dumps(data))
        extra = () if mask is None else ("--mask", f"cube={write_png(mask, tmp / 'mask_cube.png')}")
        rc, _, err = run(capsys, "--video", scene["video"], "--subject", scene["subject"], "--boxes", boxes, *extra,
                         "--dino-model", models["dino"], "--out", tmp / "eval")
        assert rc == 2 and err.count("\n") == 1 and message in err, err


# ---- modes: core's command, a plug-in's mode, the toy world's through the entry point ------------------------------


def test_help_shows_every_mode_and_imports_no_torch() -> None:
    code = ("import sys; from mvs2v_core.cli import build_parser\n"
            "p = build_parser(); e = p._subparsers._group_actions[0].choices['eval']; h = e.format_help()\n"
            "assert 'real mode' in h and 'toy mode' in h and '--subject' in h and '--sample' in h, h\n"
            "print(sorted(m for m in ('torch', 'numpy', 'safetensors', 'PIL') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_a_plugin_mode_is_selected_by_its_flag_and_its_flags_stay_its_own() -> None:
    parser = argparse.ArgumentParser(prog="mvs2v")
    sub = parser.add_subparsers(dest="command")
    evaluate = add_eval_parser(sub)
    calls = []

    def add(p) -> None:
        p.add_argument("--world")
        p.add_argument("--strict", action="store_true")

    evaluate.add_eval_mode("mine", "world", add, lambda args: calls.append(args.world) or "done")
    args = parser.parse_args(["eval", "--world", "w1", "--strict", "--video", "v.mp4"])
    assert args.handler(args) == "done" and calls == ["w1"]
    from mvs2v_core.errors import MVS2VError

    with pytest.raises(MVS2VError, match=r"--strict belongs to the mine mode \(--world\), not the real mode"):
        args = parser.parse_args(["eval", "--strict", "--video", "v.mp4", "--out", "o"])
        args.handler(args)
    with pytest.raises(MVS2VError, match="already has a mode called 'mine'"):
        evaluate.add_eval_mode("mine", "world", add, print)
    modes: EvalModes = args.eval_modes
    with pytest.raises(MVS2VError, match="its arguments add no flag with dest 'nothing'"):
        modes.add("other", "nothing", lambda p: p.add_argument("--else"), print)


def test_toy_mode_through_core_command_writes_todays_outputs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from mvs2v_toy.dataset import write_toy_dataset
    from mvs2v_toy.eval_args import add_eval_args
    from mvs2v_toy.evaluate import run_eval

    write_toy_dataset(tmp_path / "ds", 1, seed=4, frames=9, two_object_prob=1.0)
    sample = tmp_path / "ds" / "samples" / "000000"
    rc, stdout, err = run(capsys, "--video", sample / "video.mp4", "--sample", sample, "--out", tmp_path / "cli",
                          "--no-plot", "--views", "front,left")
    assert rc == 0, err
    parser = argparse.ArgumentParser()
    add_eval_args(parser)
    direct = run_eval(parser.parse_args(["--video", str(sample / "video.mp4"), "--sample", str(sample), "--out",
                                         str(tmp_path / "direct"), "--no-plot", "--views", "front,left"]))
    assert json.loads((tmp_path / "cli" / "metrics.json").read_text()) == json.loads(json.dumps(direct["metrics"]))
    assert direct["metrics"]["psnr"] == 100.0 and (tmp_path / "cli" / "strip.png").is_file()
    rc, stdout, _ = run(capsys, "--list-metrics")
    assert rc == 0 and "psnr  [video, mvs2v_core]" in stdout and "hidden_face_accuracy  [video, mvs2v_toy]" in stdout
    assert "s_v2r_dino  [video, mvs2v_core]" in stdout


def test_metrics_json_keeps_one_line_per_entry_and_no_nan() -> None:
    record = {"format": "x", "metrics": {"a": {"value": 1.0, "per_frame": [1, 2]}, "b": {"value": None}},
              "skipped": {}, "definitions": {"a": "first", "b": "second"}}
    text = dumps_record(record)
    assert json.loads(text) == record and '    "a": {"value": 1.0, "per_frame": [1, 2]},' in text.splitlines()
    with pytest.raises(ValueError):
        dumps_record({"metrics": {"a": {"value": float("nan")}}})

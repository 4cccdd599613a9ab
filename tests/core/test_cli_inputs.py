"""Bad inputs to `mvs2v generate` / `mvs2v info` (issue 10): each one line, before any model loads.

Values (NaN / inf labels and numbers, --fps 0), the memory estimate and its refusal, Ctrl-C, the
default frontal view, commas and '@' in file names, the light `--help`, and `info` on damaged files.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from mvs2v_core.cli import build_parser, main, subjects_from_args
from mvs2v_core.cli_inputs import parse_subject, parse_view, split_view
from mvs2v_core.errors import MVS2VError
from mvs2v_core.model.config import WanConfig
from mvs2v_core.pipeline import memory
from mvs2v_core.pipeline.generate import GenerationSettings
from mvs2v_core.references.layout import ReferenceLayout, parse_view_label

REPO = Path(__file__).resolve().parents[2]
TOY = REPO / "mvs2v_toy" / "assets" / "toy_demo"


def run_error(argv: list[str], capsys) -> str:
    """Run the CLI, expect exit 2 and one `error:` line without a traceback; return that line."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    line = err[err.index("error: "):]
    assert line.count("\n") <= 1, line
    return line


def toy_generate(tmp_path: Path, *extra: str) -> list[str]:
    ref = tmp_path / "ref.png"
    Image.new("RGB", (32, 32), (200, 40, 40)).save(ref)
    return ["generate", "--dit", str(TOY / "dit.safetensors"), "--vae", str(TOY / "codec"),
            "--text-encoder", str(TOY / "text_encoder"), "--adapter", str(TOY / "adapter.safetensors"),
            "--subject", f"cube={ref}@front", "--prompt", "a red cube turns", "--out", str(tmp_path / "o.mp4"),
            "--device", "cpu", *extra]


# ---- values ------------------------------------------------------------------------------------


@pytest.mark.parametrize("label", ["nan", "NaN", "inf", "-inf", "Infinity", float("nan"), float("inf")])
def test_non_finite_view_labels_are_refused(label):
    with pytest.raises(MVS2VError, match="not a finite angle"):
        parse_view_label(label)
    assert parse_view_label("-90") == 270.0 and parse_view_label("45deg") == 45.0


@pytest.mark.parametrize(("flag", "value", "words"), [
    ("--fps", "0", "--fps 0 must be a finite number > 0"),
    ("--fps", "-8", "--fps -8"),
    ("--fps", "nan", "--fps nan"),
    ("--shift", "nan", "--shift"),
    ("--ref-scale", "inf", "--ref-scale"),
    ("--text-scale", "-1", "--text-scale"),
    ("--seed", "-1", "--seed"),
    ("--steps", "0", "--steps"),
    ("--frames", "0", "--frames"),
    ("--width", "-16", "--width"),
    ("--max-batch-passes", "0", "--max-batch-passes"),
    ("--lora-strength", "nan", "--lora-strength"),
    ("--gap", "nan", "gap"),
])
def test_values_are_checked_before_any_file_is_read(tmp_path, capsys, flag, value, words):
    # A --dit that does not exist: the value's own message must come first.
    argv = ["generate", "--dit", str(tmp_path / "missing.safetensors"), "--vae", str(tmp_path),
            "--text-encoder", str(tmp_path), "--prompt", "p", "--out", str(tmp_path / "o.mp4"), flag, value]
    assert words in run_error(argv, capsys)


def test_generation_settings_validate_themselves():
    with pytest.raises(MVS2VError, match="--steps"):
        GenerationSettings(prompt="p", steps=0)
    with pytest.raises(MVS2VError, match="--solver"):
        GenerationSettings(prompt="p", solver="dpm")
    with pytest.raises(MVS2VError, match="--seed"):
        GenerationSettings(prompt="p", seed=2**64)
    GenerationSettings(prompt="p", seed=2**64 - 1, ref_scale=0, text_scale=1)


# ---- memory ------------------------------------------------------------------------------------


def test_memory_estimate_scales_as_its_formula():
    cfg = WanConfig(dim=256, ffn_dim=512, num_heads=2, num_layers=4, in_dim=48, out_dim=48, text_dim=32,
                    patch_size=(1, 2, 2))
    one = memory.forward_memory(cfg, 1000, 1)
    # Per (pass, token): max(9 * dim, 4 * dim + 2 * ffn_dim) float32 values + the latent in / out.
    assert one.activation_bytes == 1000 * (max(9 * 256, 4 * 256 + 2 * 512) + 2 * 48 * 4) * 4
    assert memory.forward_memory(cfg, 2000, 1).total_bytes == 2 * one.total_bytes  # linear in tokens
    assert memory.forward_memory(cfg, 1000, 3).total_bytes == 3 * one.total_bytes  # and in passes
    assert one.attention_bytes == 0  # a fused SDPA kernel keeps no L x L matrix
    m1 = memory.forward_memory(cfg, 1000, 1, math_attention=True).attention_bytes
    assert m1 == 2 * 2 * 1000**2 * 4  # 2 heads x (scores + softmax) x L^2 float32
    assert memory.forward_memory(cfg, 2000, 1, math_attention=True).attention_bytes == 4 * m1  # quadratic
    # A wide FFN dominates; its hidden layer is in the DiT's dtype, so bf16 halves that term.
    wide = WanConfig(dim=256, ffn_dim=4096, num_heads=2, num_layers=4, in_dim=48, out_dim=48, text_dim=32)
    fp32, bf16 = (memory.forward_memory(wide, 1000, 1, dt).activation_bytes for dt in (torch.float32, torch.bfloat16))
    assert fp32 - bf16 == 1000 * 2 * 4096 * 2
    # What this machine's torch does on the CPU: a fused kernel, so no quadratic term.
    assert not memory.uses_math_attention(torch.device("cpu"), torch.float32, 128)
    assert memory.available_memory(torch.device("cpu")) > 0


def test_memory_refusal_names_the_numbers_and_the_fix(monkeypatch):
    cfg = WanConfig(dim=256, ffn_dim=512, num_heads=2, num_layers=4, in_dim=48, out_dim=48, text_dim=32)
    batched, single = memory.forward_memory(cfg, 10**6, 3), memory.forward_memory(cfg, 10**6, 1)
    monkeypatch.setattr(memory, "available_memory", lambda device: single.total_bytes + 1)
    with pytest.raises(MVS2VError, match=r"needs about 32\.3 GB .*\(3 guidance pass\(es\) x 1,000,000 tokens.*"
                                         r"--max-batch-passes 1 \(about 10\.8 GB\)"):
        memory.check_forward_memory(batched, single, torch.device("cpu"))
    memory.check_forward_memory(single, single, torch.device("cpu"))  # fits: no error
    monkeypatch.setattr(memory, "available_memory", lambda device: None)  # unknown: never refuse
    memory.check_forward_memory(batched, single, torch.device("cpu"))


def test_toy_model_at_wan_defaults_is_refused_at_once(tmp_path, capsys, monkeypatch):
    """832x480x81 with the toy codec (factor 4) is 530,400 tokens a pass: refused before any encoder runs."""
    from mvs2v_core.pipeline.generate import MVS2VPipeline

    monkeypatch.setattr(memory, "available_memory", lambda device: 8 * 10**9)  # a laptop's free memory
    monkeypatch.setattr(MVS2VPipeline, "encode_text", lambda *a: pytest.fail("encoded text before the check"))
    t0 = time.perf_counter()
    err = run_error(toy_generate(tmp_path), capsys)
    assert time.perf_counter() - t0 < 60
    assert "needs about 17.1 GB" in err and "3 guidance pass(es) x 530,400 tokens" in err and "8.0 GB" in err
    assert "--max-batch-passes 1 (about 5.7 GB)" in err


# ---- Ctrl-C ------------------------------------------------------------------------------------


def test_ctrl_c_during_generate_is_one_line(tmp_path, capsys, monkeypatch):
    import mvs2v_core.pipeline.generate as gen

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(gen, "sample", interrupted)
    assert main(toy_generate(tmp_path, "--width", "32", "--height", "32", "--frames", "5", "--steps", "2")) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert err.strip().splitlines()[-1].startswith("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ref.png"]  # nothing half-written


@pytest.mark.slow
def test_a_real_sigint_during_sampling_exits_130(tmp_path):
    argv = toy_generate(tmp_path, "--width", "64", "--height", "64", "--frames", "9", "--steps", "1000")
    # A shell that starts a job in the background makes it ignore SIGINT, and the child inherits that
    # (then Python installs no KeyboardInterrupt handler): give the child the default disposition back.
    proc = subprocess.Popen([sys.executable, "-m", "mvs2v_core.cli", *argv], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = ""
    while "sampling" not in seen and proc.poll() is None:  # the bar shows once the models are loaded
        seen += proc.stderr.read(1)
    time.sleep(1.0)  # inside the sampling loop
    proc.send_signal(signal.SIGINT)
    err = seen + proc.stderr.read()
    assert proc.wait(timeout=60) == 130, err[-2000:]
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("interrupted")
    assert not (tmp_path / "o.mp4").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["ref.png"]


# ---- default frontal view ----------------------------------------------------------------------


def frontal_view(labels: list) -> int:
    """The index (among the views given) of the default frontal view."""
    subject = ReferenceLayout.build([labels], 4).subjects[0]
    return subject.slots[subject.frontal].source


def test_default_frontal_is_never_a_view_known_to_face_away():
    assert frontal_view([None, "back"]) == 0  # img.png,back.png@back: the unlabelled view, not the back
    assert frontal_view(["back", None]) == 1
    assert frontal_view([None, "front"]) == 1  # the view labelled front
    assert frontal_view(["left", "30"]) == 1  # within 45 degrees of the front
    assert frontal_view(["right", "back"]) == 0  # only known side / back views: the nearest to front
    assert frontal_view(["back", "-100"]) == 1
    assert frontal_view([None, None]) == 0


# ---- commas and '@' in file names ----------------------------------------------------------------


def test_split_view_keeps_at_signs_that_are_not_labels():
    assert split_view("me@2x.png") == ("me@2x.png", None)
    assert split_view("me@2x.png@left") == ("me@2x.png", "left")
    assert split_view("a.png@ 90 ") == ("a.png", "90")
    assert split_view("shot@90@") == ("shot@90", None)
    assert parse_subject("cat=a.png@front, b.png@90") == ("cat", ["a.png", "b.png"], ["front", "90"])
    assert parse_view("cat=one, two@3x.png@back") == ("cat", "one, two@3x.png", "back")
    with pytest.raises(MVS2VError, match="NAME=PATH"):
        parse_view("just-a-path.png")


def test_commas_and_at_signs_in_file_names_reach_the_pipeline(tmp_path, capsys):
    comma, at = tmp_path / "front, v2.png", tmp_path / "side@2x.png"
    plain = tmp_path / "plain.png"
    for p in (comma, at, plain):
        Image.new("RGB", (8, 8)).save(p)
    args = build_parser().parse_args([
        "generate", "--dit", "d", "--vae", "v", "--text-encoder", "t", "--prompt", "p", "--out", "o.mp4",
        "--subject", f"cat={at}@left,{plain}", "--view", f"cat={comma}@front", "--view", f"dog={at}",
    ])
    cat, dog = subjects_from_args(args)
    assert (cat.name, list(cat.images), list(cat.labels)) == ("cat", [str(at), str(plain), str(comma)],
                                                              ["left", None, "front"])
    assert (dog.name, list(dog.images), dog.labels) == ("dog", [str(at)], None)
    twice = build_parser().parse_args(["generate", "--dit", "d", "--vae", "v", "--text-encoder", "t", "--prompt",
                                       "p", "--out", "o.mp4", "--subject", f"a={plain}", "--subject", f"a={plain}"])
    with pytest.raises(MVS2VError, match="--view a=PATH"):
        subjects_from_args(twice)


def test_a_mistyped_label_is_named_as_a_label(tmp_path, capsys):
    img = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(img)
    argv = ["generate", "--dit", "d", "--vae", "v", "--text-encoder", "t", "--prompt", "p", "--out", "o.mp4"]
    assert "view label 'nan' is not a finite angle" in run_error(argv + ["--subject", f"a={img}@nan"], capsys)
    assert "view label 'frnot' is not understood" in run_error(argv + ["--view", f"a={img}@frnot"], capsys)


# ---- start-up and `info` -----------------------------------------------------------------------


def test_help_does_not_import_torch():
    code = ("import sys; from mvs2v_core.cli import build_parser; build_parser().format_help(); "
            "print(sorted(m for m in ('torch', 'numpy', 'safetensors', 'PIL') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_info_on_damaged_files_is_one_line(tmp_path, capsys):
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    assert "empty or truncated" in run_error(["info", str(empty)], capsys)
    whole = (TOY / "adapter.safetensors").read_bytes()
    for n, cut in enumerate((40, len(whole) // 2)):  # inside the header, then inside the tensor data
        truncated = tmp_path / f"truncated{n}.safetensors"
        truncated.write_bytes(whole[:cut])
        err = run_error(["info", str(truncated)], capsys)
        assert "damaged" in err or "not a readable safetensors" in err
    pickled = tmp_path / "model.safetensors"
    torch.save({"w": torch.zeros(2)}, pickled)
    assert "pickle" in run_error(["info", str(pickled)], capsys)
    folder = tmp_path / "no_weights"
    folder.mkdir()
    (folder / "README.md").write_text("nothing here")
    assert "no .safetensors weights" in run_error(["info", str(folder)], capsys)
    torch.save({"w": torch.zeros(2)}, folder / "model.pth")
    assert "pickle" in run_error(["info", str(folder)], capsys)


def test_info_still_reads_the_toy_model(capsys):
    assert main(["info", str(TOY / "dit.safetensors")]) == 0
    assert '"dim": 256' in capsys.readouterr().out
    assert main(["info", str(TOY / "adapter.safetensors")]) == 0
    assert "ts" in capsys.readouterr().out

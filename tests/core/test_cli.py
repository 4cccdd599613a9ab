"""`mvs2v generate` end to end on tiny random models, and one clear message per bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mvs2v_core.references.settings import ReferenceSettings
from mvs2v_core.adapter import Adapter, AdapterMetadata, save_adapter
from mvs2v_core.cli import main
from mvs2v_core.cli_inputs import parse_subject
from mvs2v_core.errors import MVS2VError
from mvs2v_core.pipeline.video_io import read_video
from mvs2v_toy.demo import TINY_DIT, make_demo_assets


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("demo")
    paths = make_demo_assets(out, seed=0)
    paths["refs"] = out / "assets" / "refs"
    return paths


def base_args(assets, out: Path, *extra: str) -> list[str]:
    refs = assets["refs"]
    return [
        "generate", "--dit", str(assets["dit"]), "--vae", str(assets["vae"]),
        "--text-encoder", str(assets["text_encoder"]),
        "--subject", f"box={refs / 'box_front.png'}@front,{refs / 'box_back.png'}@back",
        "--prompt", "a red box turns", "--width", "32", "--height", "32", "--frames", "5",
        "--steps", "2", "--seed", "3", "--device", "cpu", "--out", str(out), *extra,
    ]


def test_generate_writes_video_and_is_deterministic(assets, tmp_path, capsys):
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    assert main(base_args(assets, a, "--save-latents", "--scheme", "jump")) == 0
    assert main(base_args(assets, b, "--save-latents", "--scheme", "jump")) == 0
    frames = read_video(a)
    assert frames.shape == (5, 32, 32, 3)
    la = load_file(str(a.with_suffix(".latents.safetensors")))["latents"]
    lb = load_file(str(b.with_suffix(".latents.safetensors")))["latents"]
    assert la.shape == (1, 4, 2, 4, 4)
    assert torch.equal(la, lb)
    out = capsys.readouterr().out
    assert "timings:" in out and "sampling" in out
    assert "subject box: slots [# . # .]" in out  # front -> slot 0, back -> slot 2 of 4


def test_schemes_change_the_result(assets, tmp_path):
    lat = {}
    for scheme in ("vanilla", "ts"):
        out = tmp_path / f"{scheme}.mp4"
        assert main(base_args(assets, out, "--save-latents", "--scheme", scheme)) == 0
        lat[scheme] = load_file(str(out.with_suffix(".latents.safetensors")))["latents"]
    assert (lat["vanilla"] - lat["ts"]).abs().max() > 1e-6


def run_error(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    # Library progress bars may come first; the message itself starts at "error:" and is the end.
    assert "Traceback" not in err and "\nerror: " in "\n" + err
    return err[err.index("error: "):]


def test_bad_inputs_get_one_clear_message(assets, tmp_path, capsys):
    out = tmp_path / "x.mp4"
    args = base_args(assets, out)
    missing = [a if not a.startswith("box=") else a.replace("box_back.png", "nope.png") for a in args]
    assert "nope.png" in run_error(missing, capsys)
    too_many = args + ["--slots-per-subject", "1"]
    assert "only 1 slots per subject" in run_error(too_many, capsys)
    frames = [a if a != "5" else "6" for a in args]
    assert "4n+1" in run_error(frames, capsys)
    width = args[:]
    width[width.index("--width") + 1] = "40"
    assert "multiple of 16" in run_error(width, capsys)
    no_dit = args[:]
    no_dit[no_dit.index("--dit") + 1] = str(tmp_path / "missing.safetensors")
    assert "--dit" in run_error(no_dit, capsys)
    pickle = tmp_path / "model.pth"
    torch.save({"a": torch.zeros(1)}, pickle)
    bad_ckpt = args[:]
    bad_ckpt[bad_ckpt.index("--dit") + 1] = str(pickle)
    assert "safetensors" in run_error(bad_ckpt, capsys)
    assert ".mp4" in run_error(args[:-1] + [str(tmp_path / "x.gif")], capsys)


def test_adapter_for_another_model_is_refused(assets, tmp_path, capsys):
    wide = 256
    meta = AdapterMetadata(
        base_family="wan2.1-t2v-1.3b", model_dim=wide, text_dim=TINY_DIT.text_dim, in_dim=TINY_DIT.in_dim,
        num_layers=TINY_DIT.num_layers, references=ReferenceSettings(4, "ts", "proxy"),
    )
    path = tmp_path / "adapter.safetensors"
    save_adapter(path, Adapter(meta, proxy_tokens=torch.zeros(4, wide), mfi_weight=None, mfi_bias=None, lora={}))
    err = run_error(base_args(assets, tmp_path / "x.mp4", "--adapter", str(path)), capsys)
    assert "256" in err and "128" in err


@pytest.mark.slow
def test_adapter_proxy_tokens_are_used(assets, tmp_path):
    meta = AdapterMetadata(
        base_family="tiny-random", model_dim=TINY_DIT.dim, text_dim=TINY_DIT.text_dim, in_dim=TINY_DIT.in_dim,
        num_layers=TINY_DIT.num_layers, references=ReferenceSettings(4, "ts", "proxy"),
    )
    lat = []
    for k, scale in enumerate((0.0, 3.0)):
        path = tmp_path / f"adapter{k}.safetensors"
        save_adapter(path, Adapter(meta, proxy_tokens=torch.full((4, TINY_DIT.dim), scale), mfi_weight=None,
                                   mfi_bias=None, lora={}))
        out = tmp_path / f"p{k}.mp4"
        assert main(base_args(assets, out, "--adapter", str(path), "--save-latents")) == 0
        lat.append(load_file(str(out.with_suffix(".latents.safetensors")))["latents"])
    assert (lat[0] - lat[1]).abs().max() > 1e-6


def test_parse_subject():
    assert parse_subject("cat=a.png@front, b.png@90") == ("cat", ["a.png", "b.png"], ["front", "90"])
    with pytest.raises(MVS2VError, match="NAME=IMG"):
        parse_subject("a.png")


@pytest.mark.slow
def test_mfi_adapter_with_a_local_vision_encoder(assets, tmp_path, capsys):
    from transformers import CLIPVisionConfig, CLIPVisionModel

    vision_dir = tmp_path / "clip"
    torch.manual_seed(0)
    CLIPVisionModel(CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, image_size=32, patch_size=16)).save_pretrained(vision_dir)
    meta = AdapterMetadata(
        base_family="tiny-random", model_dim=TINY_DIT.dim, text_dim=TINY_DIT.text_dim, in_dim=TINY_DIT.in_dim,
        num_layers=TINY_DIT.num_layers, references=ReferenceSettings(4, "jump", "gray"), mfi_in_dim=16,
    )
    lat = []
    for k, scale in enumerate((0.0, 1.0)):
        path = tmp_path / f"mfi{k}.safetensors"
        weight = torch.randn(TINY_DIT.text_dim, 16, generator=torch.Generator().manual_seed(1)) * scale
        save_adapter(path, Adapter(meta, proxy_tokens=None, mfi_weight=weight, mfi_bias=torch.zeros(TINY_DIT.text_dim),
                                   lora={}))
        out = tmp_path / f"m{k}.mp4"
        assert main(base_args(assets, out, "--adapter", str(path), "--vision-encoder", str(vision_dir),
                              "--save-latents")) == 0
        lat.append(load_file(str(out.with_suffix(".latents.safetensors")))["latents"])
    assert (lat[0] - lat[1]).abs().max() > 1e-6
    err = run_error(base_args(assets, tmp_path / "x.mp4", "--adapter", str(tmp_path / "mfi1.safetensors")), capsys)
    assert "--vision-encoder" in err

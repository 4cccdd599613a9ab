"""Component interfaces and the registry: real and toy encoders satisfy core's Protocols, toy folders load
through core's loaders by their declared kind, and the toy world plugs in through entry points."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import torch

from mvs2v_core.errors import MVS2VError
from mvs2v_core.pipeline import components
from mvs2v_core.pipeline.components import (
    DECLARATION_FILE,
    LatentCodec,
    TextEncoderProtocol,
    VisionEncoderProtocol,
    find_component,
    register_component,
    write_declaration,
)
from mvs2v_core.pipeline.text import load_text_encoder
from mvs2v_core.pipeline.vae import load_vae
from mvs2v_core.pipeline.vision import load_vision_encoder
from mvs2v_toy.codec import ToyCodec, save_codec
from mvs2v_toy.demo import DEMO_ASSETS
from mvs2v_toy.text import ToyTextEncoder
from mvs2v_toy.vision import ToyVisionEncoder

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def registry(monkeypatch):
    """Core's registry, restored after the test (entry points already loaded)."""
    components.registered_kinds()
    monkeypatch.setattr(components, "_KINDS", dict(components._KINDS))
    return components


# ---- interfaces ----------------------------------------------------------------------------------


def test_real_components_satisfy_the_protocols(tmp_path):
    from mvs2v_toy.demo_assets import make_tiny_text_encoder, make_tiny_vae
    from mvs2v_train.testing import make_tiny_vision_encoder

    vae = load_vae(make_tiny_vae(tmp_path / "vae"))
    text = load_text_encoder(make_tiny_text_encoder(tmp_path / "umt5"))
    vision = load_vision_encoder(make_tiny_vision_encoder(tmp_path / "clip"))
    assert isinstance(vae, LatentCodec) and vae.lossless_output is False
    assert isinstance(text, TextEncoderProtocol) and isinstance(vision, VisionEncoderProtocol)
    assert not isinstance(text, LatentCodec) and not isinstance(vae, TextEncoderProtocol)


def test_dinov2_loads_at_its_processors_crop_size_with_imagenet_statistics(tmp_path):
    """DINOv2 (for the trainer's alignment loss) runs at the processor's crop, not the config's 518 px."""
    import torch
    from transformers import Dinov2Config, Dinov2Model

    folder = tmp_path / "dino"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        Dinov2Model(Dinov2Config(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                                 image_size=64, patch_size=8)).save_pretrained(str(folder), safe_serialization=True)
    (folder / "preprocessor_config.json").write_text(json.dumps(
        {"crop_size": {"height": 32, "width": 32}, "do_center_crop": True, "image_mean": [0.485, 0.456, 0.406],
         "image_std": [0.229, 0.224, 0.225]}))
    vision = load_vision_encoder(folder)
    assert isinstance(vision, VisionEncoderProtocol) and vision.width == 16 and vision.image_size == 32
    feats = vision(torch.rand(2, 3, 48, 40) * 2 - 1)
    assert feats.shape == (2, 1 + 4 * 4, 16) and torch.isfinite(feats).all()  # class token + 4 x 4 patches
    assert vision.mean.flatten().tolist() == pytest.approx([0.485, 0.456, 0.406])


def test_toy_components_satisfy_the_protocols():
    codec = ToyCodec()
    assert isinstance(codec, LatentCodec) and codec.lossless_output is True  # the toy metrics need exact colours
    assert isinstance(ToyTextEncoder(), TextEncoderProtocol)
    assert isinstance(ToyVisionEncoder(), VisionEncoderProtocol)
    assert not isinstance(ToyVisionEncoder(), LatentCodec) and not isinstance(object(), VisionEncoderProtocol)


# ---- registry ------------------------------------------------------------------------------------


def test_bundled_toy_folders_load_through_their_declared_kind():
    for sub, role in (("codec", "vae"), ("text_encoder", "text_encoder"), ("vision_encoder", "vision_encoder")):
        declared = json.loads((DEMO_ASSETS / sub / DECLARATION_FILE).read_text())
        assert declared["role"] == role and declared["provider"] == "mvs2v_toy"
        assert find_component(DEMO_ASSETS / sub, role).kind == declared["kind"]
    assert isinstance(load_vae(DEMO_ASSETS / "codec"), ToyCodec)
    assert isinstance(load_text_encoder(DEMO_ASSETS / "text_encoder"), ToyTextEncoder)
    assert isinstance(load_vision_encoder(DEMO_ASSETS / "vision_encoder"), ToyVisionEncoder)
    with pytest.raises(MVS2VError, match="stores its own normalization"):
        load_vae(DEMO_ASSETS / "codec", latents_mean=[0.0] * 48, latents_std=[1.0] * 48)


def test_folders_without_a_declaration_still_load_by_their_marker(tmp_path):
    folder = save_codec(ToyCodec(2), tmp_path / "codec")
    (folder / DECLARATION_FILE).unlink()  # as written before declarations existed
    assert load_vae(folder).z_dim == 12
    assert load_vae(folder / "toy_codec.json").z_dim == 12  # the marker file itself, as before
    assert find_component(folder / "latents_stats.safetensors", "vae") is None  # a weights file is not a folder


def test_a_kind_nobody_registered_names_its_package(tmp_path, registry):
    folder = tmp_path / "codec"
    shutil.copytree(DEMO_ASSETS / "codec", folder)
    del registry._KINDS["mvs2v-toy-codec"]
    with pytest.raises(MVS2VError, match=r"'mvs2v-toy-codec' model, which no installed package loads: install or "
                                         r"import mvs2v_toy"):
        load_vae(folder)


def test_a_kind_of_another_role_is_refused(tmp_path):
    with pytest.raises(MVS2VError, match="a text encoder, not a vae"):
        load_vae(DEMO_ASSETS / "text_encoder")
    (tmp_path / DECLARATION_FILE).write_text('{"kind": "x"}')  # no "format"
    with pytest.raises(MVS2VError, match="not an mvs2v-component declaration"):
        load_vae(tmp_path)


def test_registered_loaders_are_dispatched_by_kind(tmp_path, registry):
    calls = []

    def loader(path, *, device, dtype):
        calls.append((path, device, dtype))
        return ToyTextEncoder()

    register_component("my-text-encoder", "text_encoder", loader, "my_package")
    write_declaration(tmp_path, "my-text-encoder", "text_encoder", "my_package")
    assert isinstance(load_text_encoder(tmp_path, device="cpu", dtype=torch.float16), ToyTextEncoder)
    assert calls == [(tmp_path, "cpu", torch.float16)]
    with pytest.raises(MVS2VError, match="role 'codec' is not one of"):
        register_component("x", "codec", loader, "my_package")


# ---- entry points --------------------------------------------------------------------------------


def test_the_toy_world_plugs_in_through_entry_points():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["entry-points"]
    assert declared["mvs2v.components"] == {"toy": "mvs2v_toy.components:register_components"}
    assert declared["mvs2v.cli"] == {"toy": "mvs2v_toy.cli:register_commands"}
    installed = {(ep.group, ep.name, ep.value) for group in declared for ep in entry_points(group=group)}
    assert installed >= {(g, n, v) for g, eps in declared.items() for n, v in eps.items()}, (
        "the installed metadata lacks the entry points: pip install -e . --no-deps")
    from mvs2v_core.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices
    assert {"generate", "info", "demo", "eval", "toy-data"} <= set(commands)


def test_registering_the_toy_world_imports_no_torch():
    code = ("import argparse, sys\n"
            "import mvs2v_toy\n"
            "from mvs2v_toy.cli import register_commands\n"
            "register_commands(argparse.ArgumentParser().add_subparsers())\n"
            "from mvs2v_core.pipeline.components import registered_kinds\n"
            "assert 'mvs2v-toy-codec' in registered_kinds()\n"
            "print('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"

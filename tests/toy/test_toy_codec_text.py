"""Tests for the toy codec and toy text encoder, and that MVS2VPipeline runs on them unchanged."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch

from mvs2v_core.errors import CheckpointError, MVS2VError
from mvs2v_core.pipeline.text import TextEncoder
from mvs2v_core.pipeline.vae import WanVAE
from mvs2v_toy.codec import ToyCodec, is_toy_codec, load_codec, save_codec
from mvs2v_toy.text import (
    EOS, UNK, ToyTextEncoder, is_toy_text_encoder, load_toy_text_encoder, position_code, save_toy_text_encoder,
)
from mvs2v_toy.world import vocabulary


def public_api(cls: type) -> dict[str, object]:
    return {k: v for k, v in vars(cls).items() if not k.startswith("_")}


def assert_same_interface(real: type, toy: type) -> None:
    """Every public class attribute of ``real`` exists on ``toy``, methods with the same parameter names."""
    for name, member in public_api(real).items():
        assert hasattr(toy, name), f"{toy.__name__} lacks {name}"
        if isinstance(member, property):
            assert isinstance(getattr(toy, name), property), name
        elif callable(member):
            real_params = list(inspect.signature(member).parameters)
            toy_params = list(inspect.signature(getattr(toy, name)).parameters)
            assert toy_params[: len(real_params)] == real_params, (name, real_params, toy_params)


# ---- codec ------------------------------------------------------------------------------------------


def test_codec_interface_matches_wan_vae() -> None:
    assert_same_interface(WanVAE, ToyCodec)
    codec = ToyCodec()
    for attr in ("latents_mean", "latents_std", "source"):
        assert hasattr(codec, attr)


@pytest.mark.parametrize("factor", [1, 2, 4])
def test_codec_round_trip_is_exact(factor: int) -> None:
    g = torch.Generator().manual_seed(factor)
    video = torch.rand(2, 3, 5, 16, 24, generator=g) * 2 - 1
    video[0, :, 0, 0, 0] = torch.tensor([-1.0, 1.0, 0.0])  # the range ends survive too
    codec = ToyCodec(factor)
    z = codec.encode(video)
    assert z.shape == (2, 3 * factor * factor, 5, 16 // factor, 24 // factor) and z.dtype == torch.float32
    assert tuple(z.shape[1:]) == codec.latent_shape(5, 16, 24)
    assert torch.equal(codec.decode(z), video)  # bit for bit


def test_codec_layout_and_normalization() -> None:
    codec = ToyCodec(2)
    assert (codec.z_dim, codec.spatial_factor, codec.temporal_factor) == (12, 2, 1)
    video = torch.zeros(1, 3, 1, 2, 2)
    video[0, 1, 0, 1, 0] = 0.25  # green, pixel (row 1, col 0) of the block
    z = codec.encode(video)
    # channel c * s * s + i * s + j; default normalization (x - 0) / 0.5
    expected = torch.zeros(12)
    expected[1 * 4 + 1 * 2 + 0] = 0.5
    assert torch.equal(z[0, :, 0, 0, 0], expected)
    stats = ToyCodec(1, latents_mean=[0.5, 0.0, -0.5], latents_std=[2.0, 1.0, 0.5])
    z = stats.encode(torch.full((1, 3, 1, 1, 1), 0.5))
    assert torch.allclose(z.flatten(), torch.tensor([0.0, 0.5, 2.0]))
    with pytest.raises(MVS2VError, match="length 3"):
        ToyCodec(1, latents_mean=[0.0, 0.0])


def test_codec_images_and_errors() -> None:
    codec = ToyCodec(4)
    images = torch.rand(3, 3, 32, 32) * 2 - 1
    lat = codec.encode_images(images)
    assert lat.shape == (3, 48, 1, 8, 8)
    assert torch.equal(lat[1], codec.encode(images[1][None, :, None])[0])
    assert codec.encode_images(torch.zeros(0, 3, 32, 32)).shape == (0, 48, 1, 8, 8)
    with pytest.raises(MVS2VError, match="multiple of 4"):
        codec.encode(torch.zeros(1, 3, 1, 30, 32))
    with pytest.raises(MVS2VError, match=r"\[B, 3, F, H, W\]"):
        codec.encode(torch.zeros(3, 32, 32))
    with pytest.raises(MVS2VError, match="48"):
        codec.decode(torch.zeros(1, 16, 1, 8, 8))
    assert codec.to(dtype=torch.float64).dtype == torch.float64 and codec.enable_tiling() is codec


def test_codec_save_load(tmp_path: Path) -> None:
    codec = ToyCodec(2, latents_mean=torch.linspace(-0.5, 0.5, 12), latents_std=torch.full((12,), 0.25))
    folder = save_codec(codec, tmp_path / "codec")
    assert is_toy_codec(folder) and is_toy_codec(folder / "toy_codec.json") and not is_toy_codec(tmp_path)
    loaded = load_codec(folder)
    assert loaded.spatial_factor == 2 and torch.equal(loaded.latents_mean, codec.latents_mean)
    x = torch.rand(1, 3, 3, 8, 8) * 2 - 1
    assert torch.equal(loaded.encode(x), codec.encode(x))
    with pytest.raises(CheckpointError, match="toy_codec.json is missing"):
        load_codec(tmp_path)
    (folder / "toy_codec.json").write_text('{"format": "something-else", "version": 1}')
    with pytest.raises(CheckpointError, match="mvs2v-toy-codec"):
        load_codec(folder)


# ---- text encoder -----------------------------------------------------------------------------------


def test_text_encoder_interface_matches_umt5_wrapper() -> None:
    assert_same_interface(TextEncoder, ToyTextEncoder)


def test_text_encoder_shapes_and_determinism() -> None:
    a, b = ToyTextEncoder(dim=32, seed=0), ToyTextEncoder(dim=32, seed=0)
    prompt = "a red cube slowly turns left from its back on a blue floor"
    ea, eb = a.encode([prompt, ""]), b.encode(prompt)
    assert ea[0].shape == (len(prompt.split()) + 1, 32) and ea[1].shape == (1, 32)  # </s> always
    assert torch.equal(ea[0], eb[0])
    assert not torch.equal(ea[0], ToyTextEncoder(dim=32, seed=1).encode(prompt)[0])
    assert a.encode([]) == []
    # Punctuation and case do not matter.
    assert torch.equal(a.encode("A red cube, turns LEFT!")[0], a.encode("a red cube turns left")[0])
    # Word vectors are unit vectors; the position code separates "red ... blue" from "blue ... red":
    # cross-attention sees the tokens as a set, which without positions would be the same set.
    assert torch.allclose(a.embeddings.norm(dim=1), torch.ones(len(a.vocabulary)))

    def set_distance(enc: ToyTextEncoder) -> float:
        x = enc.encode("a red cube turns left on a blue floor")[0]
        y = enc.encode("a blue cube turns left on a red floor")[0]
        return float(torch.cdist(x, y).min(dim=1).values.max())

    assert set_distance(ToyTextEncoder(dim=32, position_scale=0.0)) < 1e-6
    assert set_distance(a) > 0.1
    assert set(vocabulary()) < set(a.vocabulary) and a.vocabulary[-2:] == [EOS, UNK]


def test_text_encoder_unknown_words_and_truncation() -> None:
    enc = ToyTextEncoder(dim=16)
    with pytest.raises(MVS2VError, match="'crimson'.*not in the toy text encoder's vocabulary"):
        enc.encode("a crimson cube")
    lenient = ToyTextEncoder(dim=16, unknown="unk")
    e = lenient.encode("a crimson cube")[0]
    assert e.shape == (4, 16)
    unk = lenient.embeddings[lenient.index[UNK]]
    assert torch.allclose(e[1] - lenient.position_scale * position_code(4, 16)[1], unk)
    t = enc.encode("a red cube turns left", max_length=3)[0]
    assert t.shape == (3, 16)  # the first two words, then </s>
    assert torch.allclose(t[2] - enc.position_scale * position_code(3, 16)[2], enc.embeddings[enc.index[EOS]])
    with pytest.raises(MVS2VError, match="unknown="):
        ToyTextEncoder(unknown="ignore")
    assert enc.to(dtype=torch.float64).encode("a")[0].dtype == torch.float64


def test_text_encoder_save_load(tmp_path: Path) -> None:
    enc = ToyTextEncoder(dim=24, seed=3, position_scale=0.25, unknown="unk")
    folder = save_toy_text_encoder(enc, tmp_path / "te")
    assert is_toy_text_encoder(folder) and not is_toy_text_encoder(tmp_path)
    loaded = load_toy_text_encoder(folder)
    prompt = "a cyan sphere quickly turns right from its left on a pink floor"
    assert torch.equal(loaded.encode(prompt)[0], enc.encode(prompt)[0])
    assert loaded.unknown == "unk" and loaded.dim == 24
    with pytest.raises(CheckpointError, match="toy_text_encoder.json is missing"):
        load_toy_text_encoder(tmp_path)


# ---- the real pipeline on toy parts -------------------------------------------------------------------


def test_mvs2v_pipeline_runs_with_toy_codec_and_text_encoder() -> None:
    from PIL import Image

    from mvs2v_core.model.config import WanConfig
    from mvs2v_core.model.transformer import WanDiT
    from mvs2v_core.pipeline.generate import GenerationSettings, MVS2VPipeline, SubjectInput
    from mvs2v_core.references.settings import PositionScheme, ReferenceSettings
    from mvs2v_toy.render import render_reference, to_uint8
    from mvs2v_toy.world import ToyObject

    codec, text = ToyCodec(4), ToyTextEncoder(dim=32)
    torch.manual_seed(0)
    dit = WanDiT(WanConfig(dim=64, ffn_dim=128, num_heads=1, num_layers=1, in_dim=codec.z_dim,
                           out_dim=codec.z_dim, text_dim=text.dim, text_len=32, family="tiny-random"))
    colours = {"front": "red", "left": "green", "back": "blue", "right": "yellow", "top": "gray", "bottom": "gray"}
    cube = ToyObject("cube", colours, {f: "plain" for f in colours})
    views = [Image.fromarray(to_uint8(render_reference(cube, y, 32, 32).image)) for y in (0, 90)]
    pipe = MVS2VPipeline(dit, codec, text)
    settings = GenerationSettings(prompt="a red cube turns left from its front on a blue floor", width=32,
                                  height=32, frames=5, steps=2, solver="euler",
                                  references=ReferenceSettings(scheme=PositionScheme("ts")))
    result = pipe.generate(settings, [SubjectInput("red_cube", views, ["front", "left"])])
    assert result.video.shape == (5, 32, 32, 3)
    assert result.latents.shape == (1, 48, 5, 8, 8)  # temporal factor 1: one latent frame per frame
    assert torch.isfinite(result.video).all()


def test_toy_vision_encoder_tokens_are_the_patch_pixels(tmp_path):
    from mvs2v_core.pipeline.vision import load_vision_encoder
    from mvs2v_toy.vision import ToyVisionEncoder, save_toy_vision_encoder

    enc = load_vision_encoder(save_toy_vision_encoder(ToyVisionEncoder(32, 8), tmp_path / "vis"))
    img = torch.rand(2, 3, 32, 32) * 2 - 1
    feats = enc(img)
    assert feats.shape == (2, 1 + 16, 192) and enc.width == 192
    # Token 1 is the top-left 8x8 patch, channel-major, exactly; token 0 the mean colour.
    assert torch.equal(feats[:, 1], img[:, :, :8, :8].reshape(2, -1))
    assert torch.allclose(feats[:, 0, ::64], img.mean(dim=(2, 3)), atol=1e-6)

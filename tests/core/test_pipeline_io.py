"""Tests for mvs2v_core.pipeline: images, mp4 I/O, the Wan VAE wrapper and the text encoder.

Every model here is a tiny random one written by mvs2v_toy.demo_assets; nothing is
downloaded.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from mvs2v_core.errors import CheckpointError, MVS2VError
from mvs2v_core.pipeline.images import gray_image, letterbox, load_image, to_tensor
from mvs2v_core.pipeline.video_io import read_video, write_mp4
from mvs2v_toy import demo_assets

pytest.importorskip("diffusers")
pytest.importorskip("transformers")
pytest.importorskip("av")

from mvs2v_core.pipeline import vae as vae_mod  # noqa: E402
from mvs2v_core.pipeline.text import clean_prompt, load_text_encoder, pad_context  # noqa: E402
from mvs2v_core.pipeline.vae import WanVAE, load_vae  # noqa: E402


# ============================================================================================
# images
# ============================================================================================


def test_load_image_missing_and_not_an_image(tmp_path: Path) -> None:
    missing = tmp_path / "nope.png"
    with pytest.raises(MVS2VError, match="nope.png"):
        load_image(missing)
    fake = tmp_path / "fake.png"
    fake.write_text("this is not a png")
    with pytest.raises(MVS2VError, match="fake.png"):
        load_image(fake)
    with pytest.raises(MVS2VError, match="folder"):
        load_image(tmp_path)


def test_load_image_composites_alpha_onto_white(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (4, 2), (255, 0, 0, 255))
    rgba.putpixel((0, 0), (0, 0, 255, 0))      # fully transparent -> white
    rgba.putpixel((1, 0), (255, 0, 0, 128))    # half red over white
    rgba.save(tmp_path / "a.png")
    img = load_image(tmp_path / "a.png")
    assert img.mode == "RGB" and img.size == (4, 2)
    assert img.getpixel((0, 0)) == (255, 255, 255)
    r, g, b = img.getpixel((1, 0))
    assert r == 255 and abs(g - 127) <= 2 and abs(b - 127) <= 2
    assert img.getpixel((2, 1)) == (255, 0, 0)

    la = Image.new("LA", (2, 2), (0, 0))
    la.save(tmp_path / "la.png")
    assert load_image(tmp_path / "la.png").getpixel((1, 1)) == (255, 255, 255)

    pal = Image.new("P", (2, 2), 1)
    pal.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    pal.info["transparency"] = 1
    pal.save(tmp_path / "p.png", transparency=1)
    assert load_image(tmp_path / "p.png").getpixel((0, 0)) == (255, 255, 255)

    Image.new("L", (3, 3), 50).save(tmp_path / "gray.jpg")
    assert load_image(tmp_path / "gray.jpg").mode == "RGB"


def test_letterbox_keeps_aspect_and_centres_on_white() -> None:
    wide = Image.new("RGB", (100, 50), (0, 0, 0))
    out = letterbox(wide, 64, 64)
    assert out.size == (64, 64)
    t = to_tensor(out)
    # content: 64 x 32 in the middle rows 16..47, white bars above and below
    assert torch.all(t[:, :16] == 1.0) and torch.all(t[:, 48:] == 1.0)
    assert torch.all(t[:, 17:47] == -1.0)

    tall = Image.new("RGB", (30, 90), (0, 0, 0))
    out = to_tensor(letterbox(tall, 90, 45))   # -> 15 x 45 in the middle of 90 columns
    assert out.shape == (3, 45, 90)
    assert torch.all(out[:, :, :37] == 1.0) and torch.all(out[:, :, 38:52] == -1.0)
    assert torch.all(out[:, :, 53:] == 1.0)

    same = Image.new("RGB", (32, 16), (10, 20, 30))
    assert letterbox(same, 32, 16).getpixel((5, 5)) == (10, 20, 30)
    with pytest.raises(MVS2VError):
        letterbox(same, 0, 16)


def test_to_tensor_and_gray_image() -> None:
    img = Image.new("RGB", (5, 3), (255, 0, 255))
    img.putpixel((4, 2), (0, 255, 0))
    t = to_tensor(img)
    assert t.shape == (3, 3, 5) and t.dtype == torch.float32
    assert t.min() == -1.0 and t.max() == 1.0
    assert t[:, 2, 4].tolist() == [-1.0, 1.0, -1.0]
    g = gray_image(7, 4)
    assert g.size == (7, 4) and g.getpixel((6, 3)) == (128, 128, 128)
    assert torch.allclose(to_tensor(g), torch.full((3, 4, 7), 128 / 127.5 - 1), atol=1e-6)


# ============================================================================================
# mp4
# ============================================================================================


def _smooth_video(f: int, h: int, w: int) -> torch.Tensor:
    x = torch.linspace(0, 1, w).view(1, 1, w).expand(f, h, w)
    y = torch.linspace(0, 1, h).view(1, h, 1).expand(f, h, w)
    t = torch.linspace(0.2, 0.8, f).view(f, 1, 1).expand(f, h, w)
    return torch.stack([x, y, t], dim=-1).contiguous()


def test_mp4_round_trip_odd_size_atomic(tmp_path: Path) -> None:
    frames = _smooth_video(9, 33, 47)
    out = write_mp4(frames, tmp_path / "sub" / "dir" / "v.mp4", fps=16)
    assert out == tmp_path / "sub" / "dir" / "v.mp4" and out.is_file()
    assert [p.name for p in out.parent.iterdir()] == ["v.mp4"]       # no temp file left behind
    video = read_video(out)
    assert video.dtype == torch.uint8 and video.shape == (9, 34, 48, 3)  # padded to even
    err = (video[:, :33, :47].float() / 255 - frames).abs().mean()
    assert err < 0.03, err

    u8 = (frames * 255).round().to(torch.uint8)[:, :32, :46]
    out2 = write_mp4(u8, tmp_path / "m.mp4", fps=24, codec="mpeg4")
    video2 = read_video(out2)
    assert video2.shape == (9, 32, 46, 3)
    assert (video2.float() - u8.float()).abs().mean() < 8


def test_mp4_errors_leave_existing_file_untouched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "keep.mp4"
    target.write_bytes(b"old")
    with pytest.raises(MVS2VError, match=r"\[F, H, W, 3\]"):
        write_mp4(torch.zeros(3, 8, 8), target)
    with pytest.raises(MVS2VError, match="NaN"):
        write_mp4(torch.full((1, 8, 8, 3), float("nan")), target)

    import av

    def boom(*args, **kwargs):
        raise RuntimeError("encoder exploded")

    monkeypatch.setattr(av.VideoFrame, "from_ndarray", boom)
    with pytest.raises(MVS2VError, match="encoder exploded"):
        write_mp4(torch.zeros(2, 8, 8, 3), target)
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.mp4"]
    with pytest.raises(MVS2VError, match="not found"):
        read_video(tmp_path / "missing.mp4")
    with pytest.raises(MVS2VError):
        read_video(target)   # "old" is not a video


# ============================================================================================
# VAE
# ============================================================================================

# Inverse of the original-Wan -> diffusers key mapping, written independently here to build
# original-layout files from the tiny diffusers models.
_RES_BACK = {"norm1": "residual.0", "conv1": "residual.2", "norm2": "residual.3",
             "conv2": "residual.6", "conv_shortcut": "shortcut"}


def _res_back(rest: str) -> str:
    head, tail = rest.split(".", 1)
    return f"{_RES_BACK[head]}.{tail}"


def _common_back(k: str) -> str | None:
    rules = [
        (r"^quant_conv\.(.*)$", lambda m: f"conv1.{m[1]}"),
        (r"^post_quant_conv\.(.*)$", lambda m: f"conv2.{m[1]}"),
        (r"^(encoder|decoder)\.conv_in\.(.*)$", lambda m: f"{m[1]}.conv1.{m[2]}"),
        (r"^(encoder|decoder)\.norm_out\.(.*)$", lambda m: f"{m[1]}.head.0.{m[2]}"),
        (r"^(encoder|decoder)\.conv_out\.(.*)$", lambda m: f"{m[1]}.head.2.{m[2]}"),
        (r"^(encoder|decoder)\.mid_block\.resnets\.(\d)\.(.*)$",
         lambda m: f"{m[1]}.middle.{0 if m[2] == '0' else 2}.{_res_back(m[3])}"),
        (r"^(encoder|decoder)\.mid_block\.attentions\.0\.(.*)$", lambda m: f"{m[1]}.middle.1.{m[2]}"),
    ]
    for pattern, fn in rules:
        m = re.match(pattern, k)
        if m:
            return fn(m)
    return None


def _to_original_wan21(sd: dict, num_res_blocks: int = 2) -> dict:
    out = {}
    per_level = num_res_blocks + 2   # (num_res_blocks + 1) resnets + 1 resampler
    for k, v in sd.items():
        new = _common_back(k)
        if new is None and (m := re.match(r"^encoder\.down_blocks\.(\d+)\.(.*)$", k)):
            rest = m[2]
            new = f"encoder.downsamples.{m[1]}.{_res_back(rest) if rest.split('.')[0] in _RES_BACK else rest}"
        elif new is None and (m := re.match(r"^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)$", k)):
            new = f"decoder.upsamples.{int(m[1]) * per_level + int(m[2])}.{_res_back(m[3])}"
        elif new is None and (m := re.match(r"^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.(.*)$", k)):
            new = f"decoder.upsamples.{int(m[1]) * per_level + num_res_blocks + 1}.{m[2]}"
        assert new is not None, k
        out[new] = v
    return out


def _to_original_wan22(sd: dict, num_res_blocks: int) -> dict:
    out = {}
    for k, v in sd.items():
        new = _common_back(k)
        if new is None and (m := re.match(r"^encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)$", k)):
            new = f"encoder.downsamples.{m[1]}.downsamples.{m[2]}.{_res_back(m[3])}"
        elif new is None and (m := re.match(r"^encoder\.down_blocks\.(\d+)\.downsampler\.(.*)$", k)):
            new = f"encoder.downsamples.{m[1]}.downsamples.{num_res_blocks}.{m[2]}"
        elif new is None and (m := re.match(r"^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)$", k)):
            new = f"decoder.upsamples.{m[1]}.upsamples.{m[2]}.{_res_back(m[3])}"
        elif new is None and (m := re.match(r"^decoder\.up_blocks\.(\d+)\.upsampler\.(.*)$", k)):
            new = f"decoder.upsamples.{m[1]}.upsamples.{num_res_blocks + 1}.{m[2]}"
        assert new is not None, k
        out[new] = v
    return out


@pytest.fixture(scope="module")
def tiny_vae_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("vae")
    return {
        "wan2.1": demo_assets.make_tiny_vae(root / "wan21", seed=0),
        "wan2.2": demo_assets.make_tiny_vae(root / "wan22", seed=0, variant="wan2.2"),
    }


@pytest.fixture(scope="module")
def vae21(tiny_vae_dirs: dict[str, Path]) -> WanVAE:
    return load_vae(tiny_vae_dirs["wan2.1"])


@pytest.fixture(scope="module")
def vae22(tiny_vae_dirs: dict[str, Path]) -> WanVAE:
    return load_vae(tiny_vae_dirs["wan2.2"])


def _video(b: int, f: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, f, h, w, generator=g) * 2 - 1


def test_vae_properties_and_shapes(vae21: WanVAE, vae22: WanVAE) -> None:
    assert (vae21.z_dim, vae21.spatial_factor, vae21.temporal_factor) == (4, 8, 4)
    assert (vae22.z_dim, vae22.spatial_factor, vae22.temporal_factor) == (4, 16, 4)
    assert vae21.dtype == torch.float32 and vae21.device.type == "cpu"

    x = _video(2, 5, 16, 24)
    z = vae21.encode(x)
    assert z.shape == (2, 4, 2, 2, 3) and z.dtype == torch.float32
    assert vae21.latent_shape(5, 16, 24) == (4, 2, 2, 3)
    y = vae21.decode(z)
    assert y.shape == (2, 3, 5, 16, 24) and y.min() >= -1 and y.max() <= 1

    z1 = vae22.encode(_video(1, 1, 32, 32))
    assert z1.shape == (1, 4, 1, 2, 2)
    assert vae22.decode(z1).shape == (1, 3, 1, 32, 32)


def test_vae_normalization_math(vae21: WanVAE) -> None:
    x = _video(1, 5, 16, 16, seed=1)
    model = vae21.model
    mean = torch.tensor(model.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(model.config.latents_std).view(1, -1, 1, 1, 1)
    assert not torch.allclose(mean, torch.zeros_like(mean))  # the tiny VAE has non-trivial stats
    with torch.no_grad():
        raw = model.encode(x).latent_dist.mean
    z = vae21.encode(x)
    torch.testing.assert_close(z, (raw - mean) / std)
    torch.testing.assert_close(vae21.encode(x), z)            # deterministic
    with torch.no_grad():
        ref = model.decode(z * std + mean).sample
    torch.testing.assert_close(vae21.decode(z), ref)


def test_vae_encode_images_one_at_a_time(vae21: WanVAE) -> None:
    imgs = _video(1, 3, 16, 16, seed=2)[0].permute(1, 0, 2, 3)    # [3 images, 3, H, W]
    z = vae21.encode_images(imgs)
    assert z.shape == (3, 4, 1, 2, 2)
    for i in range(3):
        torch.testing.assert_close(z[i:i + 1], vae21.encode(imgs[i][None, :, None]))
    assert not torch.allclose(z[0], z[1])


def test_vae_bad_inputs(vae21: WanVAE) -> None:
    with pytest.raises(MVS2VError, match="multiple of 8"):
        vae21.encode(_video(1, 1, 12, 16))
    with pytest.raises(MVS2VError, match=r"\[B, 3, F, H, W\]"):
        vae21.encode(torch.zeros(3, 16, 16))
    with pytest.raises(MVS2VError, match="latent-channel mismatch"):
        vae21.decode(torch.zeros(1, 16, 1, 2, 2))
    with pytest.raises(MVS2VError):
        vae21.encode_images(torch.zeros(1, 4, 16, 16))


def test_vae_single_file_layouts(tiny_vae_dirs: dict[str, Path], vae21: WanVAE, vae22: WanVAE,
                                 tmp_path: Path) -> None:
    from safetensors.torch import save_file

    x = _video(1, 5, 32, 32, seed=3)
    ref21, ref22 = vae21.encode(x), vae22.encode(x)
    stats21 = dict(latents_mean=vae21.latents_mean, latents_std=vae21.latents_std)
    stats22 = dict(latents_mean=vae22.latents_mean, latents_std=vae22.latents_std)
    sd21 = {k: v.contiguous() for k, v in vae21.model.state_dict().items()}
    sd22 = {k: v.contiguous() for k, v in vae22.model.state_dict().items()}

    # (c) one file in diffusers layout; without stats a non-Wan z_dim warns and uses 0/1
    save_file(sd21, tmp_path / "diffusers_layout.safetensors")
    v = load_vae(tmp_path / "diffusers_layout.safetensors", **stats21)
    torch.testing.assert_close(v.encode(x), ref21)
    with pytest.warns(UserWarning, match="latent statistics"):
        plain = load_vae(tmp_path / "diffusers_layout.safetensors")
    assert torch.equal(plain.latents_std, torch.ones(4))

    # (b) original Wan 2.1 layout, converted by diffusers' convert_wan_vae_to_diffusers
    orig21 = _to_original_wan21(sd21)
    assert "decoder.middle.0.residual.0.gamma" in orig21 and "decoder.upsamples.4.shortcut.weight" in orig21
    save_file(orig21, tmp_path / "wan_2.1_vae.safetensors")
    v = load_vae(tmp_path / "wan_2.1_vae.safetensors", **stats21)
    assert (v.z_dim, v.spatial_factor, v.model.config.is_residual) == (4, 8, False)
    torch.testing.assert_close(v.encode(x), ref21)
    torch.testing.assert_close(v.decode(ref21[:, :, :1]), vae21.decode(ref21[:, :, :1]))

    # (b) original Wan 2.2 layout (residual blocks, patchify), prefixed as some exports are
    orig22 = _to_original_wan22(sd22, num_res_blocks=1)
    assert "encoder.downsamples.0.downsamples.1.resample.1.weight" in orig22
    save_file({f"vae.{k}": t for k, t in orig22.items()}, tmp_path / "wan2.2_vae.safetensors")
    v = load_vae(tmp_path / "wan2.2_vae.safetensors", **stats22)
    assert (v.spatial_factor, v.model.config.is_residual, v.model.config.patch_size) == (16, True, 2)
    assert v.model.config.decoder_base_dim == 12
    torch.testing.assert_close(v.encode(x), ref22)

    # a pipeline folder with vae/ inside
    shutil.copytree(tiny_vae_dirs["wan2.1"], tmp_path / "pipe" / "vae")
    assert load_vae(tmp_path / "pipe").z_dim == 4

    # an original file with a key missing
    broken = dict(orig21)
    broken.pop("decoder.upsamples.5.residual.2.weight")
    save_file(broken, tmp_path / "broken.safetensors")
    with pytest.raises(CheckpointError, match="broken.safetensors.*missing"):
        load_vae(tmp_path / "broken.safetensors", **stats21)


def test_vae_real_size_configs_are_recognised() -> None:
    """The released Wan 2.1 / 2.2 VAEs (built on the meta device, no weights) round-trip
    through the original layout with the right config and normalization statistics."""
    from diffusers import AutoencoderKLWan

    wan22_cfg = dict(base_dim=160, decoder_base_dim=256, z_dim=48, is_residual=True, in_channels=12,
                     out_channels=12, patch_size=2, scale_factor_spatial=16,
                     latents_mean=[0.0] * 48, latents_std=[1.0] * 48)
    # Wan 2.1's published statistics (diffusers' defaults), first and last channel.
    wan21_mean_ends, wan21_std_ends = (-0.7571, -0.2921), (2.8184, 1.9160)
    cases = [({}, _to_original_wan21), (wan22_cfg, lambda sd: _to_original_wan22(sd, 2))]
    for kwargs, to_original in cases:
        with torch.device("meta"):
            ref = AutoencoderKLWan(**kwargs)
        ref_sd = ref.state_dict()
        converted = vae_mod._convert_original(to_original(ref_sd), Path("x.safetensors"))
        cfg = vae_mod.infer_config(converted, "x.safetensors")
        for key in ("base_dim", "z_dim", "dim_mult", "num_res_blocks", "temperal_downsample",
                    "is_residual", "patch_size", "in_channels", "out_channels", "scale_factor_spatial"):
            assert cfg[key] == ref.config[key], key
        assert cfg.get("decoder_base_dim", cfg["base_dim"]) == (ref.config.decoder_base_dim or ref.config.base_dim)
        with torch.device("meta"):
            built = AutoencoderKLWan(**cfg)
        mean, std = list(built.config.latents_mean), list(built.config.latents_std)
        if ref.config.z_dim == 48:
            assert (mean, std) == (vae_mod.WAN22_LATENTS_MEAN, vae_mod.WAN22_LATENTS_STD)
        else:
            assert len(mean) == 16 and (mean[0], mean[-1]) == wan21_mean_ends and (std[0], std[-1]) == wan21_std_ends
        assert vae_mod._summarize_mismatch(ref_sd, converted) == ""


@pytest.mark.parametrize("variant", ["wan2.1", "wan2.2"])
@pytest.mark.parametrize("prefix", ["", "first_stage_model.", "vae."])
def test_vae_original_layout_equals_the_diffusers_model(tiny_vae_dirs: dict[str, Path], tmp_path: Path,
                                                         variant: str, prefix: str) -> None:
    """A tiny VAE written in the original Wan (ComfyUI) keys, with or without a wrapper prefix,
    loads through diffusers' key converter into exactly the weights and outputs of the diffusers model."""
    from diffusers import AutoencoderKLWan
    from safetensors.torch import save_file

    ref = AutoencoderKLWan.from_pretrained(str(tiny_vae_dirs[variant]), local_files_only=True).eval()
    ref_sd = {k: v.contiguous() for k, v in ref.state_dict().items()}
    original = _to_original_wan21(ref_sd) if variant == "wan2.1" else _to_original_wan22(ref_sd, num_res_blocks=1)
    assert not set(original) & set(ref_sd)   # not one key keeps its diffusers name
    save_file({prefix + k: v for k, v in original.items()}, tmp_path / "vae.safetensors")

    vae = load_vae(tmp_path / "vae.safetensors", latents_mean=ref.config.latents_mean,
                   latents_std=ref.config.latents_std)
    loaded = vae.model.state_dict()
    assert set(loaded) == set(ref_sd) and all(torch.equal(loaded[k], ref_sd[k]) for k in ref_sd)
    x = _video(1, 5, 32, 32, seed=4)
    with torch.no_grad():
        mu = ref.encode(x).latent_dist.mode()
        assert torch.equal(vae.model.encode(x).latent_dist.mode(), mu)
        assert torch.equal(vae.model.decode(mu).sample, ref.decode(mu).sample)


def test_vae_loading_makes_no_network_call(tiny_vae_dirs: dict[str, Path], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Folders and single files load with every socket connection refused (no Hub config fetch)."""
    import socket

    from safetensors.torch import save_file

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("load_vae tried to open a network connection")

    sd = load_vae(tiny_vae_dirs["wan2.2"]).model.state_dict()
    save_file(_to_original_wan22({k: v.contiguous() for k, v in sd.items()}, num_res_blocks=1),
              tmp_path / "wan2.2_vae.safetensors")
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    assert load_vae(tiny_vae_dirs["wan2.1"]).z_dim == 4
    assert load_vae(tmp_path / "wan2.2_vae.safetensors", latents_mean=[0.0] * 4, latents_std=[1.0] * 4).z_dim == 4


def test_vae_refusals(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    with pytest.raises(CheckpointError, match="not found.*absent"):
        load_vae(tmp_path / "absent")
    for name in ("wan_2.1_vae.pt", "vae.pth", "vae.ckpt", "vae.bin"):
        (tmp_path / name).write_bytes(b"\x80\x04pickle")
        with pytest.raises(CheckpointError, match="pickle"):
            load_vae(tmp_path / name)
    (tmp_path / "vae.txt").write_text("x")
    with pytest.raises(CheckpointError, match="not a .safetensors"):
        load_vae(tmp_path / "vae.txt")
    for magic in (b"PK\x03\x04", b"\x80\x02\x8a\n"):   # torch.save zip / legacy pickle, renamed
        (tmp_path / "wan_2.1_vae.safetensors").write_bytes(magic + b"\x00" * 60)
        with pytest.raises(CheckpointError, match=r"pickle \(torch.save\) file, not safetensors"):
            load_vae(tmp_path / "wan_2.1_vae.safetensors")
    (tmp_path / "garbage.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="garbage.safetensors"):
        load_vae(tmp_path / "garbage.safetensors")
    save_file({"blocks.0.self_attn.q.weight": torch.zeros(2, 2)}, tmp_path / "dit.safetensors")
    with pytest.raises(CheckpointError, match="not a Wan VAE"):
        load_vae(tmp_path / "dit.safetensors")
    folder = tmp_path / "pickled_vae"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKLWan"}))
    (folder / "diffusion_pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="pickle"):
        load_vae(folder)


def test_tiny_vae_is_deterministic(tmp_path: Path, tiny_vae_dirs: dict[str, Path]) -> None:
    from safetensors.torch import load_file

    again = demo_assets.make_tiny_vae(tmp_path / "again", seed=0)
    other = demo_assets.make_tiny_vae(tmp_path / "other", seed=1)
    name = "diffusion_pytorch_model.safetensors"
    a, b, c = (load_file(p / name) for p in (tiny_vae_dirs["wan2.1"], again, other))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_vae_to_bfloat16(tiny_vae_dirs: dict[str, Path]) -> None:
    v = load_vae(tiny_vae_dirs["wan2.1"], dtype=torch.bfloat16)
    assert v.dtype == torch.bfloat16
    z = v.encode(_video(1, 1, 16, 16))
    assert z.dtype == torch.float32 and z.shape == (1, 4, 1, 2, 2)
    assert v.to(dtype=torch.float32).dtype == torch.float32


# ============================================================================================
# text encoder
# ============================================================================================


@pytest.fixture(scope="module")
def tiny_te_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo_assets.make_tiny_text_encoder(tmp_path_factory.mktemp("te"), seed=0)


def test_text_encoder_trims_and_pads(tiny_te_dir: Path) -> None:
    te = load_text_encoder(tiny_te_dir)
    assert te.dim == 32
    prompts = ["A man walks in the park.", "", "red  car drives quickly on the road &amp; zzz"]
    out = te.encode(prompts)
    # words + punctuation + </s>; unknown words count as <unk>
    assert [o.shape for o in out] == [(8, 32), (1, 32), (10, 32)]
    for o, p in zip(out, prompts):   # prompts are cleaned (HTML unescaped, spaces squeezed) first
        assert o.shape[0] == len(te.tokenizer(clean_prompt(p))["input_ids"])

    again = te.encode(prompts)
    assert all(torch.equal(a, b) for a, b in zip(out, again))
    alone = te.encode(prompts[2])
    torch.testing.assert_close(alone[0], out[2], rtol=1e-5, atol=1e-5)   # padding does not leak

    ctx = pad_context(out, text_len=16)
    assert ctx.shape == (3, 16, 32)
    for i, o in enumerate(out):
        torch.testing.assert_close(ctx[i, : o.shape[0]], o)
        assert torch.all(ctx[i, o.shape[0]:] == 0)
    assert pad_context(out).shape == (3, 512, 32)

    short = te.encode(prompts, max_length=4)
    assert [o.shape[0] for o in short] == [4, 1, 4]
    assert te.encode([]) == []
    with pytest.raises(MVS2VError):
        te.encode([1, 2])  # type: ignore[list-item]
    with pytest.raises(MVS2VError):
        pad_context([])
    with pytest.raises(MVS2VError):
        pad_context([torch.zeros(2, 4), torch.zeros(2, 5)])


def test_text_encoder_layouts_and_refusals(tiny_te_dir: Path, tmp_path: Path) -> None:
    root = tiny_te_dir.parent
    ref = load_text_encoder(tiny_te_dir).encode(["a dog runs"])[0]

    # pipeline root with text_encoder/ + tokenizer/
    torch.testing.assert_close(load_text_encoder(root).encode(["a dog runs"])[0], ref)
    # tokenizer files inside the model folder
    flat = tmp_path / "flat"
    shutil.copytree(tiny_te_dir, flat)
    for f in (root / "tokenizer").iterdir():
        shutil.copy(f, flat / f.name)
    bf16 = load_text_encoder(flat, dtype=torch.bfloat16)
    assert bf16.dtype == torch.bfloat16
    assert bf16.encode(["a dog runs"])[0].shape == ref.shape

    with pytest.raises(CheckpointError, match="not found"):
        load_text_encoder(tmp_path / "absent")
    lonely = tmp_path / "lonely" / "text_encoder"
    shutil.copytree(tiny_te_dir, lonely)
    with pytest.raises(CheckpointError, match="tokenizer"):
        load_text_encoder(lonely)
    pickled = tmp_path / "pickled" / "text_encoder"
    pickled.mkdir(parents=True)
    shutil.copy(tiny_te_dir / "config.json", pickled / "config.json")
    shutil.copytree(root / "tokenizer", pickled.parent / "tokenizer")
    (pickled / "pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="pickle"):
        load_text_encoder(pickled)
    (pickled / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"a": "model-00001-of-00002.safetensors"}}))
    with pytest.raises(CheckpointError, match="missing"):
        load_text_encoder(pickled)
    (tmp_path / "umt5.pth").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="pickle"):
        load_text_encoder(tmp_path / "umt5.pth")


def test_tiny_text_encoder_is_deterministic(tiny_te_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    again = demo_assets.make_tiny_text_encoder(tmp_path / "a", seed=0)
    other = demo_assets.make_tiny_text_encoder(tmp_path / "b", seed=1)
    a, b, c = (load_file(p / "model.safetensors") for p in (tiny_te_dir, again, other))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


# ============================================================================================
# import weight
# ============================================================================================


@pytest.mark.slow
def test_pipeline_modules_import_lightly() -> None:
    code = (
        "import sys\n"
        "import mvs2v_core.pipeline.images, mvs2v_core.pipeline.video_io, mvs2v_core.pipeline.vae\n"
        "import mvs2v_core.pipeline.text, mvs2v_toy.demo_assets\n"
        "heavy = [m for m in ('diffusers', 'transformers', 'av') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=str(Path(__file__).resolve().parents[2]))
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == ""

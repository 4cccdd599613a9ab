"""NaN / inf weights are refused when a DiT, adapter or LoRA is loaded, naming the tensor and the file.

Without the check they load silently and surface only after every sampling step, as the sampler's
"non-finite values ... check the dtype and the guidance scales" message, which then blames the wrong thing.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from mvs2v_core.adapter import Adapter, AdapterMetadata, LoraSpec, load_adapter, lora_state_dict, save_adapter
from mvs2v_core.errors import CheckpointError
from mvs2v_core.model.config import WanConfig
from mvs2v_core.model.loading import load_dit
from mvs2v_core.model.transformer import WanDiT
from mvs2v_core.references.settings import ReferenceSettings
from mvs2v_core.safe_files import nonfinite_summary, require_finite

CFG = WanConfig(dim=64, ffn_dim=96, num_heads=1, num_layers=2, in_dim=4, out_dim=4, text_dim=16, freq_dim=16)
PREFIX = "model.diffusion_model."
DAMAGED = "the file is damaged or was saved from a diverged training run"


def _state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return {k: v.clone().contiguous() for k, v in WanDiT(CFG).state_dict().items()}


def _save(path: Path, sd: dict[str, torch.Tensor], prefix: str = PREFIX) -> Path:
    save_file({prefix + k: v for k, v in sd.items()}, str(path))
    return path


# ---- the helper ----------------------------------------------------------------------------------
def test_summary_counts_nan_and_inf_and_passes_finite_and_integer_tensors():
    t = torch.zeros(10)
    assert nonfinite_summary(t) is None
    t[[1, 2]] = float("nan")
    t[5] = float("-inf")
    assert nonfinite_summary(t) == "NaN (2 of 10 values) and inf (1 of 10 values)"
    assert nonfinite_summary(torch.arange(4)) is None
    assert nonfinite_summary(torch.full((100_000,), 1.0, dtype=torch.float16)) is None  # its sum overflows fp16
    assert nonfinite_summary(torch.empty(0)) is None
    assert nonfinite_summary(torch.full((3,), float("inf"), dtype=torch.bfloat16)) == "inf (3 of 3 values)"
    fp8 = torch.tensor([1.0, float("nan"), 2.0]).to(torch.float8_e4m3fn)  # isfinite has no fp8 kernel
    assert nonfinite_summary(fp8) == "NaN (1 of 3 values)"
    with pytest.raises(CheckpointError, match=r"^f\.safetensors: tensor 'w' holds NaN \(2 of 10 values\)"):
        require_finite("w", t, "f.safetensors")


# ---- DiT -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("stored", [torch.float32, torch.bfloat16])
def test_dit_with_one_nan_is_refused_naming_tensor_and_file(tmp_path, stored):
    sd = {k: v.to(stored) for k, v in _state_dict().items()}
    sd["blocks.1.self_attn.q.weight"][3, 7] = float("nan")
    path = _save(tmp_path / "dit.safetensors", sd)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):  # bf16 -> fp32: checked before the upcast
        with pytest.raises(CheckpointError) as e:
            load_dit(path, CFG, dtype=dtype)
        msg = str(e.value)
        assert msg.startswith(f"{path}: tensor '{PREFIX}blocks.1.self_attn.q.weight' holds NaN (1 of 4096 values)")
        assert DAMAGED in msg and "\n" not in msg


def test_dit_inf_in_a_shard_names_that_shard(tmp_path):
    sd = _state_dict()
    sd["head.head.weight"][0, 0] = float("inf")
    folder = tmp_path / "shards"
    folder.mkdir()
    keys = sorted(sd)
    names = [f"diffusion_pytorch_model-0000{i}-of-00002.safetensors" for i in (1, 2)]
    for name, part in zip(names, (keys[: len(keys) // 2], keys[len(keys) // 2:]), strict=True):
        save_file({k: sd[k] for k in part}, str(folder / name))
    holder = folder / names[0 if "head.head.weight" in keys[: len(keys) // 2] else 1]
    with pytest.raises(CheckpointError, match=re.escape(f"{holder}: tensor 'head.head.weight' holds inf (1 of")):
        load_dit(folder, CFG)


def test_in_memory_state_dict_with_nan_is_refused():
    sd = _state_dict()
    sd["blocks.0.ffn.2.bias"][0] = float("nan")
    with pytest.raises(CheckpointError, match="the given state dict: tensor 'blocks.0.ffn.2.bias' holds NaN"):
        load_dit(sd, CFG)


def _scaled_fp8(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The legacy ComfyUI scaled-fp8 layout: fp8 matrices with one float32 ``scale_weight`` each."""
    out: dict[str, torch.Tensor] = {"scaled_fp8": torch.empty(0, dtype=torch.float8_e4m3fn)}
    for k, v in sd.items():
        if v.ndim >= 2 and k.endswith(".weight"):
            scale = v.abs().max().float() / 448.0
            out[k] = (v / scale).to(torch.float8_e4m3fn)
            out[k[: -len("weight")] + "scale_weight"] = scale.reshape(())
        else:
            out[k] = v.to(torch.bfloat16)
    return out


def test_fp8_scaled_weight_with_inf_scale_or_nan_weight_names_the_stored_tensor(tmp_path):
    stored = _scaled_fp8(_state_dict())
    bad_scale = dict(stored, **{"blocks.0.ffn.0.scale_weight": torch.tensor(float("inf"))})
    path = _save(tmp_path / "scale.safetensors", bad_scale)
    with pytest.raises(CheckpointError, match=re.escape(f"tensor '{PREFIX}blocks.0.ffn.0.scale_weight' holds inf (1 of 1")):
        load_dit(path, CFG, dtype=torch.bfloat16)
    weight = stored["blocks.1.cross_attn.k.weight"].clone()
    weight.view(torch.uint8)[2, 5] = 0x7F  # the NaN bit pattern of float8_e4m3fn
    path = _save(tmp_path / "weight.safetensors", dict(stored, **{"blocks.1.cross_attn.k.weight": weight}))
    with pytest.raises(CheckpointError, match=re.escape(f"tensor '{PREFIX}blocks.1.cross_attn.k.weight' holds NaN (1 of")):
        load_dit(path, CFG)


def test_values_beyond_fp16_are_refused_for_fp16_only(tmp_path):
    sd = {k: v.to(torch.bfloat16) for k, v in _state_dict().items()}
    sd["blocks.0.self_attn.o.weight"][1, 1] = 1e6  # finite in bf16, inf in fp16
    path = _save(tmp_path / "big.safetensors", sd)
    with pytest.raises(CheckpointError) as e:
        load_dit(path, CFG, dtype=torch.float16)
    assert "'model.diffusion_model.blocks.0.self_attn.o.weight' holds values too large for float16" in str(e.value)
    assert "load the model in bf16 or fp32" in str(e.value)
    assert load_dit(path, CFG, dtype=torch.bfloat16).blocks[0].self_attn.o.weight[1, 1] == 1e6


def test_finite_files_still_load_bit_identically(tmp_path):
    sd = _state_dict()
    path = _save(tmp_path / "ok.safetensors", sd)
    got = load_dit(path, CFG).state_dict()
    assert set(got) == set(sd) and all(torch.equal(got[k], v) for k, v in sd.items())


# ---- adapter and LoRA ----------------------------------------------------------------------------
DIM, TEXT_DIM, VIT_DIM, K, RANK = 32, 48, 40, 4, 4


KEYS = {"proxy_tokens": "proxy.tokens", "mfi_weight": "mfi.proj.weight", "mfi_bias": "mfi.proj.bias"}


def _adapter() -> Adapter:
    g = torch.Generator().manual_seed(0)
    lora = lora_state_dict({"blocks.0.self_attn.q": (torch.randn(RANK, DIM, generator=g),
                                                     torch.randn(DIM, RANK, generator=g), 8.0)})
    meta = AdapterMetadata(base_family="tiny-test", model_dim=DIM, text_dim=TEXT_DIM, in_dim=16, num_layers=2,
                           references=ReferenceSettings(K, "ts", "proxy"), mfi_in_dim=VIT_DIM,
                           lora=LoraSpec(RANK, 8.0, ("self_attn.q",)))
    fields = dict(proxy_tokens=torch.randn(K, DIM, generator=g), mfi_weight=torch.randn(TEXT_DIM, VIT_DIM, generator=g),
                  mfi_bias=torch.randn(TEXT_DIM, generator=g), lora=lora)
    return Adapter(metadata=meta, **fields)


@pytest.mark.parametrize("key, index, value, what", [
    ("proxy_tokens", (2, 5), float("nan"), "'proxy.tokens' holds NaN (1 of 128 values)"),
    ("mfi_weight", (0, 0), float("inf"), "'mfi.proj.weight' holds inf (1 of 1920 values)"),
    ("mfi_bias", 3, float("nan"), "'mfi.proj.bias' holds NaN (1 of 48 values)"),
    ("diffusion_model.blocks.0.self_attn.q.lora_B.weight", (1, 1), float("-inf"),
     "'diffusion_model.blocks.0.self_attn.q.lora_B.weight' holds inf (1 of 128 values)"),
    ("diffusion_model.blocks.0.self_attn.q.alpha", (), float("nan"),
     "'diffusion_model.blocks.0.self_attn.q.alpha' holds NaN (1 of 1 values)"),
])
def test_adapter_tensor_with_nan_or_inf_is_refused_at_load(tmp_path, key, index, value, what):
    path = tmp_path / "adapter.safetensors"
    save_adapter(path, _adapter())
    with safe_open(str(path), framework="pt") as f:  # damage one value of a valid file, metadata kept
        header = f.metadata()
    tensors = load_file(str(path))
    tensors[KEYS.get(key, key)][index] = value
    save_file(tensors, str(path), metadata=header)
    with pytest.raises(CheckpointError) as e:
        load_adapter(path)
    assert str(e.value).startswith(f"{str(path)!r}: tensor {what}: {DAMAGED}")


def test_finite_adapter_loads_bit_identically(tmp_path):
    path = tmp_path / "adapter.safetensors"
    ad = _adapter()
    save_adapter(path, ad)
    back = load_adapter(path).tensors()
    assert set(back) == set(ad.tensors()) and all(torch.equal(back[k], v) for k, v in ad.tensors().items())


# ---- VAE, text and vision encoders (a one-line call in each loader) --------------------------------
@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> dict[str, Path]:
    from mvs2v_toy.demo import make_demo_assets

    root = tmp_path_factory.mktemp("demo")
    return {**make_demo_assets(root, seed=0), "refs": root / "assets" / "refs"}


def _damaged_copy(src: Path, dst: Path, suffix: str, value: float = float("nan"), sub: str = "") -> tuple[Path, str]:
    """Copy the folder ``src`` with one value of the first tensor ending in ``suffix`` (in ``sub``) replaced."""
    shutil.copytree(src, dst)
    weights = next((dst / sub).glob("*.safetensors"))
    sd = load_file(str(weights))
    key = next(k for k in sorted(sd) if k.endswith(suffix) and sd[k].is_floating_point())
    sd[key].view(-1)[0] = value
    save_file(sd, str(weights))
    return dst, key


def test_vae_folder_and_single_file_with_nan_are_refused(demo, tmp_path):
    from mvs2v_core.pipeline.vae import load_vae

    folder, key = _damaged_copy(demo["vae"], tmp_path / "vae", "conv_in.weight")
    with pytest.raises(CheckpointError, match=re.escape(f"{folder}: tensor '{key}' holds NaN (1 of")):
        load_vae(folder)
    single = tmp_path / "wan_vae.safetensors"
    shutil.copy(next(folder.glob("*.safetensors")), single)
    with pytest.raises(CheckpointError, match=re.escape(f"{single}: tensor '{key}' holds NaN (1 of")):
        load_vae(single, latents_mean=[0.0] * 4, latents_std=[1.0] * 4)


def test_text_encoder_with_inf_is_refused(demo, tmp_path):
    from mvs2v_core.pipeline.text import load_text_encoder

    te = demo["text_encoder"]  # <root>/text_encoder beside <root>/tokenizer
    root, key = _damaged_copy(te.parent, tmp_path / "te", ".weight", float("inf"), sub=te.name)
    with pytest.raises(CheckpointError, match=re.escape(f"{root / te.name}: tensor '{key}' holds inf (1 of")):
        load_text_encoder(root / te.name)


def test_vision_encoder_with_nan_is_refused(tmp_path):
    from transformers import CLIPVisionConfig, CLIPVisionModel

    from mvs2v_core.pipeline.vision import load_vision_encoder

    model = CLIPVisionModel(CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                             num_attention_heads=2, image_size=32, patch_size=16))
    name, weight = next((n, w) for n, w in model.state_dict().items() if n.endswith("post_layernorm.weight"))
    weight[0] = float("nan")
    model.save_pretrained(tmp_path / "clip")
    with pytest.raises(CheckpointError, match=re.escape(f"{tmp_path / 'clip'}: tensor '{name}' holds NaN (1 of")):
        load_vision_encoder(tmp_path / "clip")


# ---- end to end: refused before sampling ---------------------------------------------------------
def test_generate_names_the_nan_tensor_instead_of_blaming_dtype(demo, tmp_path, capsys):
    from mvs2v_core.cli import main

    dit = tmp_path / "dit.safetensors"
    sd = load_file(str(demo["dit"]))
    key = next(k for k in sd if k.endswith("blocks.0.self_attn.k.weight"))
    sd[key][0, 0] = float("nan")
    save_file(sd, str(dit))
    refs = demo["refs"]
    argv = ["generate", "--dit", str(dit), "--vae", str(demo["vae"]), "--text-encoder",
            str(demo["text_encoder"]), "--subject", f"box={refs / 'box_front.png'}@front", "--prompt", "a box",
            "--width", "32", "--height", "32", "--frames", "5", "--steps", "2", "--device", "cpu",
            "--out", str(tmp_path / "x.mp4")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{dit}: tensor '{key}' holds NaN (1 of" in err and "Traceback" not in err
    assert "guidance scales" not in err and not (tmp_path / "x.mp4").exists()

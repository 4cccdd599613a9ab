"""Checkpoint loading: layouts, prefixes, shards, stored dtypes, fp8, refusals and error messages."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from mvs2v_core.errors import CheckpointError
from mvs2v_core.model.config import NAMED_CONFIGS, WanConfig, infer_config
from mvs2v_core.model.convert import (
    diffusers_to_original_key,
    from_diffusers_keys,
    original_to_diffusers_key,
    to_diffusers_keys,
)
from mvs2v_core.model.loading import (
    cast_for_inference,
    dequantize,
    fp32_parameter_names,
    load_dit,
    normalize_keys,
    read_meta_state_dict,
    read_state_dict,
)
from mvs2v_core.model.transformer import WanDiT

# dim 64 with one head: what infer_config reads back for a width that is not a multiple of 128.
CFG = WanConfig(dim=64, ffn_dim=96, num_heads=1, num_layers=2, in_dim=4, out_dim=4, text_dim=16, freq_dim=16)
I2V_CFG = CFG.with_(in_dim=8, image_dim=12)


def _state_dict(cfg: WanConfig = CFG, seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    model = WanDiT(cfg)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2 + (1.0 if p.ndim == 1 and p.shape[0] == cfg.dim else 0.0))
    return {k: v.clone().contiguous() for k, v in model.state_dict().items()}


def _assert_loaded(model: WanDiT, sd: dict[str, torch.Tensor], dtype: torch.dtype | None = None) -> None:
    got = model.state_dict()
    assert set(got) == set(sd)
    for k, v in sd.items():
        want = v if dtype is None else v.to(dtype)
        assert got[k].dtype == want.dtype, k
        assert torch.equal(got[k], want), k


def _forward(model: WanDiT, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    cfg = model.config
    x = torch.randn(1, cfg.in_dim, 2, 4, 4, generator=g)
    ctx = torch.randn(1, 5, cfg.text_dim, generator=g)
    with torch.no_grad():
        return model(x, torch.tensor([500.0]), ctx).float()


@pytest.fixture(autouse=True)
def _no_torch_load(monkeypatch):
    """No test here may ever unpickle: torch.load raises if it is called."""

    def refuse(*a, **k):
        raise AssertionError("torch.load was called")

    monkeypatch.setattr(torch, "load", refuse)


# ------------------------------------------------------------------------------------------------
# layouts
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("prefix", ["", "model.diffusion_model.", "diffusion_model.", "model."])
def test_original_layout_with_and_without_prefix(tmp_path, prefix):
    sd = _state_dict()
    path = tmp_path / "dit.safetensors"
    save_file({prefix + k: v for k, v in sd.items()}, str(path))
    model = load_dit(path, CFG)
    _assert_loaded(model, sd)
    assert model.load_info["layout"] == "original" and model.load_info["prefix"] == prefix
    assert not model.training
    # the inferred config is the same as the explicit one
    inferred = load_dit(path)
    assert inferred.config == CFG
    assert torch.equal(_forward(model), _forward(inferred))
    raw = read_state_dict(path)
    assert set(raw) == {prefix + k for k in sd}
    meta = read_meta_state_dict(path)
    assert all(meta[k].is_meta and meta[k].shape == raw[k].shape and meta[k].dtype == raw[k].dtype for k in raw)
    assert infer_config(normalize_keys(meta)[0]) == CFG
    norm, layout = normalize_keys(raw)
    assert layout == "original" and set(norm) == set(sd)


def test_all_in_one_file_drops_other_models_with_a_warning(tmp_path):
    sd = _state_dict()
    stored = {"model.diffusion_model." + k: v for k, v in sd.items()}
    stored["first_stage_model.decoder.conv_in.weight"] = torch.zeros(3, 3)
    path = tmp_path / "aio.safetensors"
    save_file(stored, str(path))
    with pytest.warns(UserWarning, match="outside"):
        model = load_dit(path, CFG)
    _assert_loaded(model, sd)


@pytest.mark.parametrize("cfg", [CFG, I2V_CFG.with_(image_pos_len=6)], ids=["t2v", "flf2v"])
def test_diffusers_layout(tmp_path, cfg):
    sd = _state_dict(cfg)
    dsd = to_diffusers_keys(sd)
    assert "blocks.0.attn1.to_q.weight" in dsd and "condition_embedder.time_proj.weight" in dsd
    assert "blocks.0.norm2.weight" in dsd and "blocks.0.norm3.weight" not in dsd  # swapped names
    assert "scale_shift_table" in dsd and "blocks.1.scale_shift_table" in dsd and "proj_out.weight" in dsd
    path = tmp_path / "diffusion_pytorch_model.safetensors"
    save_file(dsd, str(path))
    model = load_dit(path, cfg)
    _assert_loaded(model, sd)
    assert model.load_info["layout"] == "diffusers"
    norm, layout = normalize_keys(read_state_dict(path))
    assert layout == "diffusers" and set(norm) == set(sd)
    assert from_diffusers_keys(dsd).keys() == sd.keys()


def test_key_maps_are_inverse():
    for k in _state_dict(I2V_CFG.with_(image_pos_len=6)):
        assert diffusers_to_original_key(original_to_diffusers_key(k)) == k
    assert original_to_diffusers_key("blocks.3.cross_attn.norm_k_img.weight") == "blocks.3.attn2.norm_added_k.weight"
    assert original_to_diffusers_key("blocks.3.self_attn.o.bias") == "blocks.3.attn1.to_out.0.bias"
    assert original_to_diffusers_key("img_emb.emb_pos") == "condition_embedder.image_embedder.pos_embed"
    assert diffusers_to_original_key("blocks.0.ffn.net.0.proj.weight") == "blocks.0.ffn.0.weight"
    assert diffusers_to_original_key("condition_embedder.text_embedder.linear_2.bias") == "text_embedding.2.bias"
    # scale tensors follow their module
    assert diffusers_to_original_key("blocks.0.attn2.add_k_proj.scale_weight") == "blocks.0.cross_attn.k_img.scale_weight"


def test_diffusers_model_folder_uses_config_json_heads(tmp_path):
    cfg = CFG.with_(num_heads=4)  # head dim 16: not what infer_config would guess from the shapes
    sd = _state_dict(cfg)
    folder = tmp_path / "Wan-Diffusers" / "transformer"
    folder.mkdir(parents=True)
    save_file(to_diffusers_keys(sd), str(folder / "diffusion_pytorch_model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"_class_name": "WanTransformer3DModel", "num_attention_heads": 4, "attention_head_dim": 16}))
    for given in (folder, folder.parent, folder / "config.json"):
        model = load_dit(given)
        assert model.config.num_heads == 4
        _assert_loaded(model, sd)


def test_metadata_config_gives_text_len_and_heads(tmp_path):
    from mvs2v_core.model.loading import dit_config_metadata

    cfg = CFG.with_(num_heads=4, text_len=12)  # neither can be read off the tensor shapes
    sd = _state_dict(cfg)
    path = tmp_path / "toy_dit.safetensors"
    save_file(sd, str(path), metadata=dit_config_metadata(cfg))
    model = load_dit(path)
    assert (model.config.num_heads, model.config.text_len) == (4, 12)
    _assert_loaded(model, sd)
    # ComfyUI reads the same entry: WanModel keyword names under "transformer", text_dim included.
    assert json.loads(dit_config_metadata(cfg)["config"])["transformer"] == {
        "text_len": 12, "text_dim": cfg.text_dim, "num_heads": 4, "eps": cfg.eps}
    plain = tmp_path / "plain.safetensors"
    save_file(sd, str(plain))
    assert load_dit(plain).config.text_len == 512  # no entry: Wan's default
    with pytest.raises(CheckpointError, match="text length"):
        load_dit(path, config=cfg.with_(text_len=512, family="given"))  # a given config is checked against it
    bad = tmp_path / "bad.safetensors"
    save_file(sd, str(bad), metadata={"config": json.dumps({"transformer": {"text_len": "long"}})})
    with pytest.raises(CheckpointError, match="text_len.*positive integer"):
        load_dit(bad)


# ------------------------------------------------------------------------------------------------
# shards
# ------------------------------------------------------------------------------------------------
def _write_shards(folder: Path, sd: dict[str, torch.Tensor], index_name: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    keys = sorted(sd)
    half = len(keys) // 2
    names = ["diffusion_pytorch_model-00001-of-00002.safetensors", "diffusion_pytorch_model-00002-of-00002.safetensors"]
    weight_map = {}
    for name, part in zip(names, (keys[:half], keys[half:]), strict=True):
        save_file({k: sd[k] for k in part}, str(folder / name))
        weight_map.update({k: name for k in part})
    if index_name:
        (folder / index_name).write_text(json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map}))
    return [folder / n for n in names]


@pytest.mark.parametrize("index_name", ["diffusion_pytorch_model.safetensors.index.json", "model.safetensors.index.json"])
def test_sharded_with_index(tmp_path, index_name):
    sd = _state_dict()
    shards = _write_shards(tmp_path / "ckpt", sd, index_name)
    for given in (tmp_path / "ckpt" / index_name, tmp_path / "ckpt", shards, [str(s) for s in shards]):
        _assert_loaded(load_dit(given, CFG), sd)
    assert set(read_state_dict(tmp_path / "ckpt")) == set(sd)


def test_sharded_folder_without_index_and_shard_errors(tmp_path):
    sd = _state_dict()
    shards = _write_shards(tmp_path / "ckpt", sd, "")
    _assert_loaded(load_dit(tmp_path / "ckpt", CFG), sd)
    with pytest.raises(CheckpointError, match="shard 1 of 2"):
        load_dit(shards[0], CFG)
    shards[1].unlink()
    with pytest.raises(CheckpointError, match="incomplete"):
        load_dit(tmp_path / "ckpt", CFG)
    _write_shards(tmp_path / "idx", sd, "model.safetensors.index.json")
    (tmp_path / "idx" / "diffusion_pytorch_model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match="00002-of-00002"):
        read_state_dict(tmp_path / "idx" / "model.safetensors.index.json")


# ------------------------------------------------------------------------------------------------
# stored dtypes
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("stored", [torch.bfloat16, torch.float16])
def test_half_precision_stored(tmp_path, stored):
    sd = {k: v.to(stored) for k, v in _state_dict().items()}
    path = tmp_path / "half.safetensors"
    save_file(sd, str(path))
    _assert_loaded(load_dit(path, CFG, dtype=torch.float32), sd, torch.float32)
    model = load_dit(path, CFG, dtype=stored)
    keep = fp32_parameter_names(model)
    for k, p in model.named_parameters():
        assert p.dtype == (torch.float32 if k in keep else stored), k
        assert torch.equal(p.float(), sd[k].float()), k
    assert model.dtype == stored
    assert model.load_info["stored_dtypes"] == {"BF16" if stored == torch.bfloat16 else "F16": len(sd)}
    out = _forward(model)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_fp32_policy_names():
    model = WanDiT(I2V_CFG)
    keep = fp32_parameter_names(model)
    for k in ("time_embedding.0.weight", "time_projection.1.bias", "blocks.0.modulation", "head.modulation",
              "blocks.1.norm3.weight", "blocks.0.self_attn.norm_q.weight", "blocks.0.cross_attn.norm_k_img.weight",
              "img_emb.proj.0.weight", "img_emb.proj.4.bias"):
        assert k in keep, k
    for k in ("patch_embedding.weight", "text_embedding.0.weight", "blocks.0.self_attn.q.weight", "blocks.0.ffn.0.weight",
              "head.head.weight", "img_emb.proj.1.weight"):
        assert k not in keep, k


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cast_for_inference(dtype):
    torch.manual_seed(0)
    model = WanDiT(CFG).eval()
    ref = _forward(model)
    cast_for_inference(model, dtype)
    assert model.blocks[0].self_attn.q.weight.dtype == dtype
    assert model.time_embedding[0].weight.dtype == torch.float32
    assert model.blocks[0].modulation.dtype == torch.float32
    out = _forward(model)
    assert (out - ref).abs().max() < 0.1 * ref.abs().max()
    cast_for_inference(model, "fp32")
    assert all(p.dtype == torch.float32 for p in model.parameters())


def _fp8_state(sd: dict[str, torch.Tensor], fp8: torch.dtype) -> dict[str, torch.Tensor]:
    """As ComfyUI fp8 files: matrices / conv kernels in fp8, vectors and tables in bf16."""
    return {k: (v.to(fp8) if v.ndim >= 2 and k.endswith(".weight") else v.to(torch.bfloat16)) for k, v in sd.items()}


@pytest.mark.parametrize("fp8", [torch.float8_e4m3fn, torch.float8_e5m2])
def test_fp8_stored_is_upcast(tmp_path, fp8):
    stored = _fp8_state(_state_dict(), fp8)
    path = tmp_path / "fp8.safetensors"
    save_file({"model.diffusion_model." + k: v for k, v in stored.items()}, str(path))
    model = load_dit(path, CFG, dtype=torch.float32)
    _assert_loaded(model, stored, torch.float32)  # upcast == manual upcast
    model = load_dit(path, CFG, dtype=torch.bfloat16)
    keep = fp32_parameter_names(model)
    for k, p in model.named_parameters():
        want = stored[k].to(torch.float32 if k in keep else torch.bfloat16)
        assert p.dtype == want.dtype and torch.equal(p, want), k
    assert torch.isfinite(_forward(model)).all()
    assert torch.equal(dequantize(stored)["blocks.0.ffn.0.weight"], stored["blocks.0.ffn.0.weight"].float())


@pytest.mark.parametrize("style", ["scale_weight", "weight_scale"])
def test_comfyui_scaled_fp8(tmp_path, style):
    sd = _state_dict()
    stored: dict[str, torch.Tensor] = {}
    expected: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if v.ndim >= 2 and k.endswith(".weight"):
            module = k[: -len("weight")]
            if style == "scale_weight":  # legacy ComfyUI scaled fp8: one float32 scalar per layer
                scale = v.abs().max().float() / 448.0
                q = (v / scale).to(torch.float8_e4m3fn)
                stored[module + "scale_weight"] = scale.reshape(())
                stored[module + "scale_input"] = torch.ones(())
                expected[k] = q.float() * scale
            else:  # per-output-channel weight_scale
                scale = v.flatten(1).abs().amax(1).float() / 448.0
                q = (v / scale.reshape(-1, *[1] * (v.ndim - 1))).to(torch.float8_e4m3fn)
                stored[module + "weight_scale"] = scale
                stored[module + "input_scale"] = torch.ones(())
                expected[k] = q.float() * scale.reshape(-1, *[1] * (v.ndim - 1))
            stored[k] = q
        else:
            stored[k] = v.to(torch.bfloat16)
            expected[k] = v.to(torch.bfloat16).float()
    stored["scaled_fp8"] = torch.empty(0, dtype=torch.float8_e4m3fn)
    path = tmp_path / "scaled.safetensors"
    save_file({"model.diffusion_model." + k: v for k, v in stored.items()}, str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scale keys and the marker are consumed, not "unexpected"
        model = load_dit(path, CFG)
    _assert_loaded(model, expected)
    assert model.load_info["fp8_scaled"]
    # scales matter: the dequantized weight is close to the original, the raw fp8 one is not
    w = model.blocks[0].ffn[0].weight
    assert (w - sd["blocks.0.ffn.0.weight"]).abs().max() < 0.1 * sd["blocks.0.ffn.0.weight"].abs().max()
    # the same through the dict-level helpers
    norm, _ = normalize_keys(read_state_dict(path))
    deq = dequantize(norm)
    assert set(deq) == set(sd)
    assert torch.equal(deq["blocks.1.self_attn.q.weight"], expected["blocks.1.self_attn.q.weight"])


def test_unsupported_dtypes(tmp_path):
    with pytest.raises(Exception, match="bfloat16"):
        load_dit(_state_dict(), CFG, dtype=torch.float8_e4m3fn)
    sd = _state_dict()
    sd["blocks.0.ffn.0.weight"] = torch.zeros(sd["blocks.0.ffn.0.weight"].shape, dtype=torch.int8)
    with pytest.raises(CheckpointError, match="not supported"):
        load_dit(sd, CFG)


# ------------------------------------------------------------------------------------------------
# refusals and errors
# ------------------------------------------------------------------------------------------------
def _torch_save(obj, path: Path, zip_format: bool = True) -> None:
    import pickle

    torch.save(obj, str(path), _use_new_zipfile_serialization=zip_format, pickle_module=pickle)


@pytest.mark.parametrize("name,zip_format", [("dit.pt", True), ("dit.pth", True), ("dit.bin", False), ("dit.ckpt", True),
                                             ("disguised.safetensors", True), ("disguised_legacy.safetensors", False)])
def test_pickle_files_are_refused(tmp_path, name, zip_format):
    path = tmp_path / name
    _torch_save({"patch_embedding.weight": torch.zeros(2)}, path, zip_format)
    for call in (lambda: read_state_dict(path), lambda: load_dit(path), lambda: load_dit(path, CFG)):
        with pytest.raises(CheckpointError, match="safetensors") as err:
            call()
        assert "pickle" in str(err.value) and str(path) in str(err.value)
        if name.endswith(".safetensors"):  # named like safetensors, found out by its first bytes
            assert "pickle (torch.save) file, not safetensors" in str(err.value)


def test_folder_with_only_pickles_is_refused(tmp_path):
    _torch_save({"a": torch.zeros(1)}, tmp_path / "diffusion_pytorch_model.bin")
    with pytest.raises(CheckpointError, match="safetensors"):
        load_dit(tmp_path)


def test_missing_corrupt_and_truncated_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_dit(tmp_path / "nope.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!" * 4)
    with pytest.raises(CheckpointError, match="download it again"):
        read_state_dict(junk)
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty or truncated"):
        load_dit(empty)
    good = tmp_path / "good.safetensors"
    save_file(_state_dict(), str(good))
    data = good.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.safetensors"):
        load_dit(cut, CFG)
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(CheckpointError, match="no .safetensors"):
        load_dit(tmp_path / "emptydir")


def test_vae_text_encoder_and_lora_given_as_dit(tmp_path):
    vae = {"encoder.conv1.weight": torch.zeros(4, 3, 3, 3, 3), "decoder.conv1.weight": torch.zeros(4, 4, 3, 3, 3),
           "decoder.upsamples.0.residual.0.gamma": torch.zeros(4)}
    t5 = {"token_embedding.weight": torch.zeros(10, 4), "blocks.0.attn.q.weight": torch.zeros(4, 4)}
    lora = {"diffusion_model.blocks.0.self_attn.q.lora_A.weight": torch.zeros(2, 64)}
    for name, sd, word in (("vae", vae, "VAE"), ("t5", t5, "text encoder"), ("lora", lora, "LoRA")):
        path = tmp_path / f"{name}.safetensors"
        save_file(sd, str(path))
        with pytest.raises(CheckpointError, match=word) as err:
            load_dit(path)
        assert str(path) in str(err.value)


def test_named_config_mismatch_is_explained(tmp_path):
    path = tmp_path / "tiny.safetensors"
    save_file(_state_dict(), str(path))
    with pytest.raises(CheckpointError) as err:
        load_dit(path, "wan2.1-t2v-1.3b")
    msg = str(err.value)
    assert "wan2.1-t2v-1.3b" in msg and "model width: the checkpoint has 64, the config 1536" in msg
    assert "number of blocks: the checkpoint has 2, the config 30" in msg
    with pytest.raises(CheckpointError, match="feed-forward width: the checkpoint has 96, the config 128"):
        load_dit(path, CFG.with_(ffn_dim=128))
    with pytest.raises(CheckpointError, match="CLIP image-branch"):
        load_dit(path, CFG.with_(image_dim=12))


def test_wrong_shape_missing_and_foreign_keys(tmp_path):
    sd = _state_dict()
    bad = dict(sd)
    bad["blocks.1.ffn.0.weight"] = torch.zeros(80, 64)
    bad["blocks.1.ffn.0.bias"] = torch.zeros(80)
    with pytest.raises(CheckpointError, match=r"blocks\.1\.ffn\.0\.weight: the checkpoint has 80x64, the model expects 96x64"):
        load_dit(bad, CFG)
    missing = {k: v for k, v in sd.items() if k != "blocks.1.self_attn.o.bias"}
    with pytest.raises(CheckpointError, match=r"lacks 1 tensor.*blocks\.1\.self_attn\.o\.bias"):
        load_dit(missing, CFG)
    with pytest.raises(CheckpointError, match=r"blocks\.1\.self_attn\.o\.bias"):
        load_dit(missing)
    foreign = dict(sd)
    foreign["blocks.0.self_attn.extra_gate"] = torch.zeros(64)
    with pytest.raises(CheckpointError, match="different architecture"):
        load_dit(foreign, CFG)
    extras = dict(sd)
    extras["vace_patch_embedding.weight"] = torch.zeros(64, 4, 1, 2, 2)
    extras["phantom_extra.scale"] = torch.zeros(3)
    with pytest.warns(UserWarning, match="ignoring 2 tensor"):
        model = load_dit(extras, CFG)
    _assert_loaded(model, sd)
    assert sorted(model.load_info["ignored"]) == ["phantom_extra.scale", "vace_patch_embedding.weight"]


def test_phantom_file_loads_as_plain_t2v(tmp_path):
    path = tmp_path / "Phantom_Wan_tiny.safetensors"
    sd = _state_dict()
    save_file(sd, str(path))
    _assert_loaded(load_dit(path), sd)


# ------------------------------------------------------------------------------------------------
# configs
# ------------------------------------------------------------------------------------------------
def test_infer_config_tiny():
    assert infer_config(_state_dict()) == CFG
    i2v = I2V_CFG.with_(image_pos_len=6)
    assert infer_config(_state_dict(i2v)) == i2v
    ti2v_like = CFG.with_(in_dim=12, out_dim=12, patch_size=(1, 2, 2))
    assert infer_config(_state_dict(ti2v_like)) == ti2v_like


@pytest.mark.parametrize("name", sorted(NAMED_CONFIGS))
def test_named_configs_are_self_consistent(name):
    cfg = NAMED_CONFIGS[name]
    assert cfg.family == name
    assert cfg.head_dim == 128 and cfg.dim % cfg.num_heads == 0
    assert cfg.patch_size == (1, 2, 2) and cfg.text_dim == 4096 and cfg.freq_dim == 256 and cfg.text_len == 512
    sizes = {1536: (8960, 30), 3072: (14336, 30), 5120: (13824, 40)}
    assert (cfg.ffn_dim, cfg.num_layers) == sizes[cfg.dim]
    if "ti2v" in name:
        assert cfg.in_dim == cfg.out_dim == 48
    elif "i2v" in name:
        assert cfg.in_dim == 36 and cfg.out_dim == 16
    else:
        assert cfg.in_dim == cfg.out_dim == 16
    assert (cfg.image_dim == 1280) == name.startswith("wan2.1-i2v")
    # Real-size shapes via a meta-device model (no memory): inference reads the same config back.
    with torch.device("meta"):
        sd = WanDiT(cfg).state_dict()
    inferred = infer_config(sd)
    assert inferred.with_(family=name) == cfg
    if not name.startswith("phantom") and name != "wan2.2-t2v-a14b":  # a14b T2V has the 2.1 14B shapes
        assert inferred.family == name


def test_a14b_release_folders_ask_for_one_expert(tmp_path):
    sd = _state_dict()
    for sub in ("transformer", "transformer_2"):
        (tmp_path / "pipe" / sub).mkdir(parents=True)
        save_file(sd, str(tmp_path / "pipe" / sub / "diffusion_pytorch_model.safetensors"))
    with pytest.raises(CheckpointError, match="two experts"):
        load_dit(tmp_path / "pipe")
    _assert_loaded(load_dit(tmp_path / "pipe" / "transformer_2"), sd)
    (tmp_path / "orig" / "high_noise_model").mkdir(parents=True)
    (tmp_path / "orig" / "low_noise_model").mkdir()
    with pytest.raises(CheckpointError, match="high_noise_model"):
        load_dit(tmp_path / "orig")

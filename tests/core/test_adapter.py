"""Adapter file format: save/load round trip, atomic writes, refusals, LoRA merge and compatibility."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from mvs2v_core.adapter import (
    Adapter,
    AdapterMetadata,
    LoraSpec,
    apply_lora,
    check_adapter,
    load_adapter,
    lora_delta,
    lora_pairs,
    lora_state_dict,
    remove_lora,
    require_compatible,
    save_adapter,
)
from mvs2v_core.errors import AdapterMismatchError, CheckpointError, MVS2VError
from mvs2v_core.model.config import WanConfig
from mvs2v_core.references.settings import PositionScheme, ReferenceSettings

DIM, TEXT_DIM, VIT_DIM, K, RANK, ALPHA = 32, 48, 40, 4, 4, 8.0
FFN0, Q0 = "diffusion_model.blocks.1.ffn.0", "diffusion_model.blocks.0.self_attn.q"
LORA_RE = re.compile(r"^diffusion_model\.[a-z0-9_.]+\.(lora_A\.weight|lora_B\.weight|alpha)$")


class _Attn(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))


class _Block(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.self_attn = _Attn(dim)
        self.cross_attn = _Attn(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))


class StandInDiT(nn.Module):
    """Same dotted names as the Wan DiT for the parts the LoRA touches."""

    def __init__(self, dim: int = DIM, layers: int = 2) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(_Block(dim) for _ in range(layers))


def _config(**kw) -> WanConfig:
    base = dict(dim=DIM, ffn_dim=2 * DIM, num_heads=4, num_layers=2, text_dim=TEXT_DIM, family="tiny-test")
    base.update(kw)
    return WanConfig(**base)


def _lora_modules(gen: torch.Generator) -> dict:
    paths = ["blocks.0.self_attn.q", "blocks.1.cross_attn.o", "blocks.1.ffn.0"]
    out = {}
    for p in paths:
        out_f = 2 * DIM if p.endswith("ffn.0") else DIM
        out[p] = (torch.randn(RANK, DIM, generator=gen), torch.randn(out_f, RANK, generator=gen), ALPHA)
    return out


TRAINED = ReferenceSettings(K, PositionScheme("jump", ref_gap=9, identity_gap=24), "proxy", "zero")


def _adapter(with_lora: bool = True, **meta) -> Adapter:
    g = torch.Generator().manual_seed(0)
    md = dict(
        base_family="tiny-test", model_dim=DIM, text_dim=TEXT_DIM, in_dim=16, num_layers=2,
        references=TRAINED, mfi_in_dim=VIT_DIM,
        lora=LoraSpec(RANK, ALPHA, ("self_attn.q", "cross_attn.o", "ffn.0")) if with_lora else None,
        training={"command": "mvs2v train cfg.toml", "step": 1200},
    )
    md.update(meta)
    return Adapter(
        metadata=AdapterMetadata(**md),
        proxy_tokens=torch.randn(K, DIM, generator=g).to(torch.bfloat16),
        mfi_weight=torch.randn(TEXT_DIM, VIT_DIM, generator=g),
        mfi_bias=torch.randn(TEXT_DIM, generator=g),
        lora=lora_state_dict(_lora_modules(g)) if with_lora else {},
    )


# ---- round trip and file layout --------------------------------------------------------------


def test_round_trip_bit_equal(tmp_path: Path) -> None:
    ad = _adapter()
    path = tmp_path / "sub" / "dir" / "adapter.safetensors"  # parent folders get created
    save_adapter(path, ad)
    back = load_adapter(path)
    assert back.metadata == ad.metadata
    assert back.metadata.to_json() == ad.metadata.to_json()
    assert set(back.tensors()) == set(ad.tensors())
    for k, t in ad.tensors().items():
        assert back.tensors()[k].dtype == t.dtype, k
        assert torch.equal(back.tensors()[k], t), k
    assert back.metadata.lora.targets == ("self_attn.q", "cross_attn.o", "ffn.0")
    assert back.metadata.references.scheme.name == "jump"


def test_file_keys_and_metadata(tmp_path: Path) -> None:
    path = tmp_path / "a.safetensors"
    save_adapter(path, _adapter())
    with safe_open(str(path), framework="pt") as f:
        keys = set(f.keys())
        header = f.metadata()
        alpha = f.get_tensor("diffusion_model.blocks.0.self_attn.q.alpha")
    expected = {"proxy.tokens", "mfi.proj.weight", "mfi.proj.bias"}
    for p in ["blocks.0.self_attn.q", "blocks.1.cross_attn.o", "blocks.1.ffn.0"]:
        expected |= {f"diffusion_model.{p}.{part}" for part in ("lora_A.weight", "lora_B.weight", "alpha")}
    assert keys == expected
    for k in keys - {"proxy.tokens", "mfi.proj.weight", "mfi.proj.bias"}:
        assert LORA_RE.match(k), k
    assert alpha.shape == () and float(alpha) == ALPHA
    assert header["format"] == "mvs2v-adapter" and header["format_version"] == "1"
    meta = json.loads(header["mvs2v"])
    assert set(meta) == {
        "base_family", "model_dim", "text_dim", "in_dim", "num_layers", "position_scheme",
        "slots_per_subject", "empty_slot_mode", "mfi_in_dim", "lora", "ref_timestep", "training",
    }
    assert meta["lora"] == {"rank": RANK, "alpha": ALPHA, "targets": ["self_attn.q", "cross_attn.o", "ffn.0"]}
    assert meta["position_scheme"]["name"] == "jump"


def test_no_lora_no_mfi_round_trip(tmp_path: Path) -> None:
    ad = _adapter(with_lora=False, mfi_in_dim=None)
    ad.mfi_weight = ad.mfi_bias = None
    path = tmp_path / "a.safetensors"
    save_adapter(path, ad)
    back = load_adapter(path)
    assert back.lora == {} and back.mfi_weight is None and back.metadata.lora is None
    with safe_open(str(path), framework="pt") as f:
        assert set(f.keys()) == {"proxy.tokens"}


def test_atomic_write_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "a.safetensors"
    save_adapter(path, _adapter())
    save_adapter(path, _adapter())  # overwrite
    assert sorted(os.listdir(tmp_path)) == ["a.safetensors"]
    assert path.stat().st_mode & 0o777 == 0o644  # not the 0600 of a temp file


def test_failed_write_keeps_older_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.safetensors"
    old = _adapter()
    save_adapter(path, old)
    before = path.read_bytes()

    def broken(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", broken)  # what utils.atomic writes call
    new = _adapter()
    new.proxy_tokens = new.proxy_tokens + 1
    with pytest.raises(OSError, match="disk full"):
        save_adapter(path, new)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["a.safetensors"]
    assert torch.equal(load_adapter(path).proxy_tokens, old.proxy_tokens)


def test_save_refuses_inconsistent_adapter_and_pickle_suffix(tmp_path: Path) -> None:
    ad = _adapter()
    ad.proxy_tokens = torch.zeros(3, DIM)
    with pytest.raises(CheckpointError, match="3 tokens"):
        save_adapter(tmp_path / "a.safetensors", ad)
    with pytest.raises(MVS2VError, match=r"\.safetensors"):
        save_adapter(tmp_path / "a.pt", _adapter())
    assert os.listdir(tmp_path) == []


# ---- load refusals ---------------------------------------------------------------------------


def _write_raw(path: Path, tensors: dict, header: dict) -> Path:
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=header)
    return path


def _raw_parts(ad: Adapter) -> tuple[dict, dict]:
    return dict(ad.tensors()), {"format": "mvs2v-adapter", "format_version": "1", "mvs2v": ad.metadata.to_json()}


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".bin", ".ckpt"])
def test_load_refuses_pickle(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"adapter{suffix}"
    path.write_bytes(b"\x80\x04not really")
    with pytest.raises(CheckpointError, match=re.escape(suffix)) as e:
        load_adapter(path)
    assert "safetensors" in str(e.value)


def test_load_refuses_pickle_named_safetensors(tmp_path: Path) -> None:
    path = tmp_path / "adapter.safetensors"
    path.write_bytes(b"PK\x03\x04" + b"\x00" * 60)   # a torch.save zip archive, renamed
    with pytest.raises(CheckpointError, match=r"pickle \(torch.save\) file, not safetensors"):
        load_adapter(path)


def test_load_refuses_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="nope.safetensors"):
        load_adapter(tmp_path / "nope.safetensors")


def test_load_refuses_wrong_format(tmp_path: Path) -> None:
    tensors, header = _raw_parts(_adapter())
    header["format"] = "kohya-lora"
    with pytest.raises(CheckpointError, match="kohya-lora"):
        load_adapter(_write_raw(tmp_path / "a.safetensors", tensors, header))
    # a plain LoRA file with no metadata at all
    plain = {k: v for k, v in tensors.items() if k.startswith("diffusion_model.")}
    with pytest.raises(CheckpointError, match="not an mvs2v adapter"):
        load_adapter(_write_raw(tmp_path / "b.safetensors", plain, {}))


def test_load_refuses_newer_version(tmp_path: Path) -> None:
    tensors, header = _raw_parts(_adapter())
    header["format_version"] = "7"
    with pytest.raises(CheckpointError, match="version 7"):
        load_adapter(_write_raw(tmp_path / "a.safetensors", tensors, header))


def test_load_refuses_not_safetensors(tmp_path: Path) -> None:
    path = tmp_path / "a.safetensors"
    path.write_bytes(b"garbage" * 10)
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_adapter(path)


@pytest.mark.parametrize(
    "mutate, needle",
    [
        (lambda t: t.update({"proxy.tokens": torch.zeros(3, DIM)}), "3 tokens"),
        (lambda t: t.update({"proxy.tokens": torch.zeros(K, DIM + 8)}), f"width {DIM + 8}"),
        (lambda t: t.update({"mfi.proj.weight": torch.zeros(TEXT_DIM, 1152)}), "1152"),
        (lambda t: t.pop("mfi.proj.bias"), "mfi.proj.bias"),
        (lambda t: t.pop(f"{FFN0}.lora_B.weight"), f"{FFN0}.lora_A.weight"),
        (lambda t: t.update({f"{Q0}.lora_A.weight": torch.zeros(2 * RANK, DIM)}), "lora_A.weight"),
    ],
    ids=["proxy-slots", "proxy-width", "mfi-in-dim", "mfi-bias-missing", "A-without-B", "rank-pair"],
)
def test_load_refuses_tensor_metadata_disagreement(tmp_path: Path, mutate, needle: str) -> None:
    tensors, header = _raw_parts(_adapter())
    mutate(tensors)
    with pytest.raises(CheckpointError, match=re.escape(needle)):
        load_adapter(_write_raw(tmp_path / "a.safetensors", tensors, header))


def test_metadata_validation() -> None:
    ad = _adapter()
    d = json.loads(ad.metadata.to_json())
    with pytest.raises(MVS2VError, match="'spiral'"):
        AdapterMetadata.from_json(json.dumps({**d, "position_scheme": {"name": "spiral"}}))
    with pytest.raises(MVS2VError, match="'blur'"):
        AdapterMetadata.from_json(json.dumps({**d, "empty_slot_mode": "blur"}))
    with pytest.raises(MVS2VError, match="'later'"):
        AdapterMetadata.from_json(json.dumps({**d, "ref_timestep": "later"}))
    with pytest.raises(CheckpointError, match="future_field"):
        AdapterMetadata.from_json(json.dumps({**d, "future_field": 1}))
    with pytest.raises(CheckpointError, match="model_dim"):
        AdapterMetadata.from_json(json.dumps({k: v for k, v in d.items() if k != "model_dim"}))
    # the four reference keys round-trip into the one settings type
    back = AdapterMetadata.from_json(ad.metadata.to_json())
    assert back.references == TRAINED and back == ad.metadata
    assert ReferenceSettings.from_dict(ad.metadata.references.to_dict()) == TRAINED
    # a hand-written file without the optional keys takes the contract's defaults
    bare = {k: v for k, v in d.items() if k not in ("empty_slot_mode", "ref_timestep")}
    assert AdapterMetadata.from_json(json.dumps(bare)).references.empty_slot_mode == ReferenceSettings().empty_slot_mode


# ---- compatibility ---------------------------------------------------------------------------


def test_check_adapter_fits() -> None:
    ad = _adapter()
    assert check_adapter(ad, _config(), TRAINED) == []
    require_compatible(ad, _config())
    # the scheme's unused fields do not matter (jump ignores `gap`)
    assert check_adapter(ad, _config(), TRAINED.with_overrides(gap=3)) == []


def test_width_mismatch_message() -> None:
    ad = _adapter(base_family="wan2.1-t2v-1.3b", model_dim=1536)
    ad.proxy_tokens = torch.zeros(K, 1536)
    cfg = WanConfig(5120, 13824, 40, 40, 16, 16, family="wan2.1-t2v-14b")
    problems = check_adapter(ad, cfg)
    assert (
        "adapter was trained for a model of width 1536 (wan2.1-t2v-1.3b); this model has width 5120 "
        "(wan2.1-t2v-14b)" in problems
    )
    with pytest.raises(AdapterMismatchError, match="width 1536") as e:
        require_compatible(ad, cfg)
    assert "40 blocks" in str(e.value)  # every mismatch is listed, not just the first


def test_slots_scheme_mode_mismatch_messages() -> None:
    ad = _adapter()
    with pytest.raises(AdapterMismatchError, match="you asked for 3") as e:
        require_compatible(ad, _config(), TRAINED.with_overrides(slots_per_subject=3))
    assert str(K) in str(e.value)
    with pytest.raises(AdapterMismatchError, match="'ts'") as e:
        require_compatible(ad, _config(), TRAINED.with_overrides(scheme="ts"))
    assert "'jump'" in str(e.value)
    with pytest.raises(AdapterMismatchError, match="'gray'"):
        require_compatible(ad, _config(), TRAINED.with_overrides(empty_slot_mode="gray"))
    with pytest.raises(AdapterMismatchError, match="reference timestep 'zero'"):
        require_compatible(ad, _config(), TRAINED.with_overrides(ref_timestep="same"))
    problems = check_adapter(ad, _config(in_dim=36, text_dim=64))
    assert any("36" in p for p in problems) and any("64" in p for p in problems)


def test_slot_anchor_mismatch_both_ways_and_round_trip(tmp_path: Path) -> None:
    anchored = _adapter(references=TRAINED.with_overrides(slot_anchor="frontal"))
    with pytest.raises(AdapterMismatchError, match="anchored on the 'frontal' view; you asked for 'canonical'"):
        require_compatible(anchored, _config(), TRAINED)
    with pytest.raises(AdapterMismatchError, match="set the slot anchor to 'canonical'"):
        require_compatible(_adapter(), _config(), TRAINED.with_overrides(slot_anchor="frontal"))
    assert check_adapter(anchored, _config(), TRAINED.with_overrides(slot_anchor="frontal")) == []
    save_adapter(tmp_path / "a.safetensors", anchored)
    assert load_adapter(tmp_path / "a.safetensors").metadata.references.slot_anchor == "frontal"


# ---- LoRA ------------------------------------------------------------------------------------


def test_apply_lora_matches_hand_computation_and_remove_restores() -> None:
    torch.manual_seed(1)
    model = StandInDiT()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    g = torch.Generator().manual_seed(2)
    mods = _lora_modules(g)
    lora = lora_state_dict(mods)
    s = 0.7
    patched = apply_lora(model, lora, strength=s)
    assert patched == sorted(mods)
    for path, (a, b, alpha) in mods.items():
        expected = before[f"{path}.weight"] + s * (alpha / RANK) * (b @ a)
        torch.testing.assert_close(model.get_submodule(path).weight.data, expected)
    # untouched parameters stay bit-equal
    assert torch.equal(model.blocks[0].self_attn.k.weight, before["blocks.0.self_attn.k.weight"])
    assert torch.equal(model.blocks[0].self_attn.q.bias, before["blocks.0.self_attn.q.bias"])
    remove_lora(model, lora, strength=s)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], atol=1e-5, rtol=1e-5)


def test_apply_lora_keeps_dtype_and_accepts_peft_keys() -> None:
    model = StandInDiT().to(torch.bfloat16)
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(RANK, DIM, generator=g), torch.randn(DIM, RANK, generator=g)
    peft = {
        "base_model.model.blocks.0.self_attn.q.lora_A.default.weight": a,
        "base_model.model.blocks.0.self_attn.q.lora_B.default.weight": b,
    }
    w0 = model.blocks[0].self_attn.q.weight.detach().clone()
    assert apply_lora(model, peft) == ["blocks.0.self_attn.q"]
    w = model.blocks[0].self_attn.q.weight
    assert w.dtype == torch.bfloat16
    # no alpha -> alpha = r (scale 1), as ComfyUI reads it
    torch.testing.assert_close(w.float(), (w0.float() + b @ a).bfloat16().float())


def test_lora_pairs_and_delta() -> None:
    g = torch.Generator().manual_seed(4)
    lora = lora_state_dict(_lora_modules(g))
    pairs = lora_pairs(lora)
    assert sorted(pairs) == ["blocks.0.self_attn.q", "blocks.1.cross_attn.o", "blocks.1.ffn.0"]
    a, b, alpha = pairs["blocks.0.self_attn.q"]
    assert alpha == ALPHA
    d = lora_delta(a.half(), b.half(), alpha)
    assert d.dtype == torch.float32 and d.shape == (DIM, DIM)
    torch.testing.assert_close(d, (ALPHA / RANK) * (b.half().float() @ a.half().float()))


def test_lora_refusals() -> None:
    model = StandInDiT()
    g = torch.Generator().manual_seed(5)
    a, b = torch.randn(RANK, DIM, generator=g), torch.randn(DIM, RANK, generator=g)
    w0 = model.blocks[0].self_attn.q.weight.detach().clone()

    missing = {**lora_state_dict({"blocks.0.self_attn.q": (a, b, 1.0)}),
               **lora_state_dict({"blocks.7.self_attn.q": (a, b, 1.0)})}
    with pytest.raises(AdapterMismatchError, match=re.escape("diffusion_model.blocks.7.self_attn.q")):
        apply_lora(model, missing)
    assert torch.equal(model.blocks[0].self_attn.q.weight, w0)  # nothing applied when any key is bad

    wrong_shape = lora_state_dict({"blocks.0.self_attn.q": (torch.randn(RANK, DIM + 1), b, 1.0)})
    with pytest.raises(AdapterMismatchError, match=r"blocks\.0\.self_attn\.q.*\[32, 33\]"):
        apply_lora(model, wrong_shape)

    only_a = {"diffusion_model.blocks.0.self_attn.q.lora_A.weight": a}
    a_key = "diffusion_model.blocks.0.self_attn.q.lora_A.weight"
    with pytest.raises(AdapterMismatchError, match=re.escape(a_key)) as e:
        apply_lora(model, only_a)
    assert "lora_B" in str(e.value)

    with pytest.raises(AdapterMismatchError, match="lora_up"):
        lora_pairs({"lora_unet_blocks_0_self_attn_q.lora_up.weight": b})


def test_lora_keys_always_comfy_native() -> None:
    g = torch.Generator().manual_seed(6)
    a, b = torch.randn(2, 8, generator=g), torch.randn(4, 2, generator=g)
    keys = lora_state_dict({"diffusion_model.blocks.0.ffn.2": (a, b, 2)})
    assert sorted(keys) == [
        "diffusion_model.blocks.0.ffn.2.alpha",
        "diffusion_model.blocks.0.ffn.2.lora_A.weight",
        "diffusion_model.blocks.0.ffn.2.lora_B.weight",
    ]
    assert all(LORA_RE.match(k) for k in keys)

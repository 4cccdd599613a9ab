"""The ComfyUI patch (``nodes/patch.py``) runs the shared reference-token path, without ComfyUI.

``StandInWanModel`` follows the contract of ComfyUI's native Wan model that the patch relies on
(read from ``comfy/ldm/wan/model.py`` of ComfyUI 0.3.64 and 0.33.0): the DIFFUSION_MODEL wrapper
gets an executor whose ``class_obj`` is the model; ``_forward(x, timestep, context, clip_fea,
time_dim_concat, transformer_options)`` appends ``time_dim_concat`` after the video frames, embeds
everything with the model's Conv3d, builds contiguous positions through ``rope_embedder(ids)
.movedim(1, 2)``, accepts per-sample / per-frame / per-token timesteps, runs every block through
``patches_replace["dit"][("double_block", i)]`` (args ``img, txt, vec, pe, transformer_options``,
extra ``original_block``) and cuts the output back to the video frames. Its blocks are WanDiT's,
so with the patch it must reproduce ``WanDiT.forward(..., refs=...)`` exactly; the real-ComfyUI
parity test (tests/comfyui) checks the same against ComfyUI's own model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import pytest

from mvs2v_core.model.config import WanConfig
from mvs2v_core.model.rope import rope_cos_sin
from mvs2v_core.model.transformer import WanDiT
from mvs2v_core.references.conditioning import ReferenceConditioning
from mvs2v_core.references.layout import ReferenceLayout
from mvs2v_core.references.positions import video_position_ids
from mvs2v_core.references.settings import PositionScheme, ReferenceSettings

CFG = WanConfig(dim=48, ffn_dim=96, num_heads=2, num_layers=2, in_dim=4, out_dim=4, text_dim=16, freq_dim=16, text_len=6)
LAYOUT = ReferenceLayout.build([["front", "back"], ["left"]], 4, names=["a", "b"])


class StandInWanModel(nn.Module):
    """ComfyUI's Wan model contract (see the module docstring), computed with a WanDiT's modules."""

    def __init__(self, dit: WanDiT) -> None:
        super().__init__()
        self.dit = dit
        self.blocks = dit.blocks
        self.patch_size = dit.config.patch_size
        self.rope_calls = 0

    def rope_embedder(self, ids: torch.Tensor) -> torch.Tensor:
        """``[1, L, 3]`` ids -> ``[1, 2, L, head_dim/2]`` (cos, sin); the caller moves dim 1 to 2."""
        self.rope_calls += 1
        cos, sin = rope_cos_sin(ids[0], self.dit.config.head_dim)
        return torch.stack([cos, sin])[None]

    def _forward(self, x, timestep, context, clip_fea=None, time_dim_concat=None, transformer_options=None, **kw):
        dit, opts = self.dit, dict(transformer_options or {})
        video_frames = x.shape[2]
        if time_dim_concat is not None:
            x = torch.cat([x, time_dim_concat.to(x)], dim=2)
        _, _, f, h, w = x.shape
        grid = (f, h // self.patch_size[1], w // self.patch_size[2])
        img = dit._embed_patches(x).flatten(1, 3)
        pe = self.rope_embedder(video_position_ids(grid)[None]).movedim(1, 2)  # contiguous t from 0
        vec, head_mod = dit._time_modulation(timestep, img.shape[1])
        txt = dit.text_embedding(F.pad(context, (0, 0, 0, dit.config.text_len - context.shape[1])))
        replace = opts.get("patches_replace", {}).get("dit", {})
        for i, block in enumerate(self.blocks):
            def original(args, block=block):
                cos, sin = args["pe"][0, :, 0], args["pe"][0, :, 1]
                return {"img": block(args["img"], args["vec"], args["txt"], None, cos, sin)}

            args = {"img": img, "txt": txt, "vec": vec, "pe": pe, "transformer_options": opts}
            patch = replace.get(("double_block", i))
            img = (patch(args, {"original_block": original}) if patch else original(args))["img"]
        n_video = video_frames * grid[1] * grid[2]
        if head_mod.index is not None:
            head_mod = type(head_mod)(head_mod.table, head_mod.index[:, :n_video])
        out = dit.head(img[:, :n_video], head_mod)
        return dit.unpatchify(out, (video_frames, grid[1], grid[2]))


class Executor:
    """What ComfyUI's wrapper executor offers the patch: ``class_obj`` and a call that continues."""

    def __init__(self, model: StandInWanModel) -> None:
        self.class_obj = model

    def __call__(self, *args, **kwargs):
        return self.class_obj._forward(*args, **kwargs)


@pytest.fixture(scope="module")
def dit() -> WanDiT:
    torch.manual_seed(0)
    return WanDiT(CFG).eval()


@pytest.fixture(scope="module")
def patch_module(pack):
    return pack.nodes.patch


def pack_inputs(pack, settings: ReferenceSettings):
    """The layout and settings as the pack's own classes (inside ComfyUI there is no other copy)."""
    layout = pack.mvs2v_core.references.layout.ReferenceLayout.build([["front", "back"], ["left"]], 4, names=["a", "b"])
    return layout, pack.mvs2v_core.references.settings.ReferenceSettings.from_dict(settings.to_dict())


CASES = [
    ("vanilla", {}, "gray", "same", "per_sample"),
    ("ts", {"gap": 8}, "gray", "same", "per_sample"),
    ("ss", {"gap": 8}, "drop", "same", "per_sample"),
    ("jump", {"ref_gap": 9, "identity_gap": 24}, "proxy", "same", "per_sample"),
    ("jump", {"placement": "before"}, "proxy", "zero", "per_sample"),
    ("ts", {"gap": 3.5}, "proxy", "same", "per_frame"),
    ("ts", {}, "gray", "zero", "per_token"),
]


@pytest.mark.parametrize("scheme,kw,mode,ref_t,t_kind", CASES)
def test_patched_standin_equals_wandit_with_references(dit, patch_module, pack, scheme, kw, mode, ref_t, t_kind):
    g = torch.Generator().manual_seed(1)
    b, f, h, w = 2, 3, 4, 6
    x = torch.randn(b, 4, f, h, w, generator=g)
    context = torch.randn(b, 5, 16, generator=g)
    latents = torch.randn(1, 4, LAYOUT.num_slots, h, w, generator=g)
    proxy = torch.randn(4, CFG.dim, generator=g)
    settings = ReferenceSettings(4, PositionScheme(scheme, **kw), mode, ref_t)
    tokens_per_frame = (h // 2) * (w // 2)
    if t_kind == "per_sample":
        t_comfy = t_core = torch.tensor([700.0, 35.5])
    elif t_kind == "per_frame":  # Wan 2.2 in ComfyUI; the core DiT takes them per token
        t_comfy = torch.tensor([[900.0, 640.0, 250.0], [500.0, 500.0, 120.0]])
        t_core = t_comfy.repeat_interleave(tokens_per_frame, dim=1)
    else:
        t_comfy = t_core = torch.rand(b, f * tokens_per_frame, generator=g) * 1000

    injection = patch_module.ReferenceInjection(latents, *pack_inputs(pack, settings), proxy)
    with torch.no_grad():
        v_comfy = injection(Executor(StandInWanModel(dit)), x, t_comfy, context, None, None, {})
        refs = ReferenceConditioning(latents.expand(b, -1, -1, -1, -1), LAYOUT, settings, proxy)
        v_core = dit(x, t_core, context, refs=refs)
    assert v_comfy.shape == v_core.shape == x.shape
    torch.testing.assert_close(v_comfy, v_core, rtol=0, atol=2e-6)


def test_reference_gate_zero_is_the_no_reference_pass(dit, patch_module, pack):
    """The gate (0 in Phantom's no-reference pass) zeroes the slot latents, as the CLI's zero latents."""
    g = torch.Generator().manual_seed(2)
    x, context = torch.randn(1, 4, 2, 4, 4, generator=g), torch.randn(1, 5, 16, generator=g)
    latents = torch.randn(1, 4, LAYOUT.num_slots, 4, 4, generator=g)
    settings = ReferenceSettings(4, PositionScheme("ts"), "gray", "same")
    injection = patch_module.ReferenceInjection(latents, *pack_inputs(pack, settings), None)
    t = torch.tensor([500.0])
    with torch.no_grad():
        gated = injection(Executor(StandInWanModel(dit)), x, t, context, None, None, {},
                          **{patch_module.REF_GATE_KEY: torch.zeros(1)})
        zero = dit(x, t, context, refs=ReferenceConditioning(torch.zeros_like(latents), LAYOUT, settings))
    torch.testing.assert_close(gated, zero, rtol=0, atol=2e-6)


def test_patch_takes_positions_proxies_and_timesteps_from_the_shared_plan(dit, patch_module, pack, monkeypatch):
    """Change the shared plan and the patched model follows: the patch has no copy of its own."""
    plan_cls = pack.mvs2v_core.references.tokens.ReferenceTokenPlan
    calls = {"position_ids": 0, "fill_proxies": 0, "timesteps": 0}
    for name in calls:
        original = getattr(plan_cls, name)

        def spy(self, *a, _name=name, _original=original, **k):
            calls[_name] += 1
            return _original(self, *a, **k)

        monkeypatch.setattr(plan_cls, name, spy)
    g = torch.Generator().manual_seed(3)
    x, context = torch.randn(1, 4, 2, 4, 4, generator=g), torch.randn(1, 5, 16, generator=g)
    latents = torch.randn(1, 4, LAYOUT.num_slots, 4, 4, generator=g)
    settings = ReferenceSettings(4, PositionScheme("jump"), "proxy", "zero")
    injection = patch_module.ReferenceInjection(latents, *pack_inputs(pack, settings), torch.randn(4, CFG.dim, generator=g))
    with torch.no_grad():
        injection(Executor(StandInWanModel(dit)), x, torch.tensor([500.0]), context, None, None, {})
    assert calls == {"position_ids": 1, "fill_proxies": 1, "timesteps": 1}

"""Cached references (``ref_attention = cached``): the two-stream forward equals one masked sequence,
the cache is reused across steps and passes, and the mode is carried by settings, adapters and the trainer."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mvs2v_core.errors import MVS2VError
from mvs2v_core.model.config import WanConfig
from mvs2v_core.model.reference_kv import ReferenceKVMemo
from mvs2v_core.model.transformer import WanDiT
from mvs2v_core.references.conditioning import ReferenceConditioning
from mvs2v_core.references.layout import ReferenceLayout
from mvs2v_core.references.settings import RefAttention, ReferenceSettings

CFG = WanConfig(dim=48, ffn_dim=96, num_heads=4, num_layers=3, in_dim=4, out_dim=4, text_dim=16, freq_dim=16,
                text_len=6)
LAYOUT = ReferenceLayout.build([["front", "back"], ["left"]], 3)  # subject 0: 2 of 3 slots, subject 1: 1 of 3


def cached_settings(mode: str = "proxy", scheme: str = "ts") -> ReferenceSettings:
    return ReferenceSettings(3, scheme, mode, "zero", "cached")


@pytest.fixture(scope="module")
def model() -> WanDiT:
    torch.manual_seed(0)
    m = WanDiT(CFG).eval()
    with torch.no_grad():  # non-trivial norms so every parameter matters
        for name, p in m.named_parameters():
            if name.endswith("norm3.weight") or "norm_" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return m


def inputs(b: int = 2, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 4, 2, 4, 4, generator=g)
    t = torch.tensor([700.0, 30.0][:b])
    ctx = torch.randn(b, 5, 16, generator=g)
    lat = torch.randn(b, 4, LAYOUT.num_slots, 4, 4, generator=g)
    return x, t, ctx, lat


def masked_reference_forward(model: WanDiT, x, t, ctx, refs: ReferenceConditioning) -> torch.Tensor:
    """The cached mode written as ONE sequence ``[video | references]``: per-token timesteps (0 on the
    references), an attention mask that lets reference rows see only reference columns, and the text
    cross-attention zeroed on reference rows. Independent of the two-stream code under test."""
    b, _, f, h, w = x.shape
    pt, ph, pw = CFG.patch_size
    grid = (f // pt, h // ph, w // pw)
    video = model._embed_patches(x).flatten(1, 3)
    plan, ref_tok = model._reference_tokens(refs, grid, b, video.device)
    tokens = torch.cat([video, ref_tok], dim=1)
    n_video, n = video.shape[1], tokens.shape[1]
    per_token = torch.cat([t[:, None].expand(b, n_video), torch.zeros(b, n - n_video)], dim=1)
    e_blocks, e_head = model._time_modulation(per_token, n)
    cos, sin = model._rope(plan.position_ids(), tokens.device)
    ctx = model.text_embedding(F.pad(ctx, (0, 0, 0, CFG.text_len - ctx.shape[1])))
    allowed = torch.ones(n, n, dtype=torch.bool)
    allowed[n_video:, :n_video] = False  # references see references only
    for block in model.blocks:
        m = e_blocks.plus(block.modulation)
        hid = m.modulate(block.norm1(tokens), 0, 1)
        q, k, v = block.self_attn.project(hid, cos, sin)
        att = block.self_attn.o(F.scaled_dot_product_attention(q, k, v, attn_mask=allowed).transpose(1, 2).flatten(2))
        tokens = m.gated_add(tokens, att, 2)
        cross = block.cross_attn(block.norm3(tokens), ctx)
        cross[:, n_video:] = 0  # references skip the text
        tokens = tokens + cross
        tokens = m.gated_add(tokens, block.ffn(m.modulate(block.norm2(tokens), 3, 4)), 5)
    from mvs2v_core.model.transformer import Modulation

    out = model.head(tokens[:, :n_video], Modulation(e_head.table, e_head.index[:, :n_video]))
    return model.unpatchify(out, grid)


@pytest.mark.parametrize("mode,scheme", [("proxy", "ts"), ("gray", "jump"), ("drop", "vanilla")])
def test_two_stream_forward_equals_one_masked_sequence(model, mode, scheme):
    x, t, ctx, lat = inputs()
    refs = ReferenceConditioning(lat, LAYOUT, cached_settings(mode, scheme), torch.randn(3, CFG.dim))
    with torch.no_grad():
        got = model(x, t, ctx, refs=refs)
        want = masked_reference_forward(model, x, t, ctx, refs)
    assert got.shape == x.shape
    assert torch.allclose(got, want, atol=2e-5), (got - want).abs().max()


def test_cache_is_independent_of_video_step_and_text_and_reused(model):
    x, t, ctx, lat = inputs()
    refs = ReferenceConditioning(lat, LAYOUT, cached_settings(), torch.randn(3, CFG.dim))
    grid = (2, 2, 2)  # 2 frames of 4x4 latents in 1x2x2 patches
    with torch.no_grad():
        cache = model.reference_cache(refs, grid)
        assert len(cache.blocks) == CFG.num_layers and cache.num_tokens == LAYOUT.num_slots * 4  # proxy: every slot makes tokens
        # another step, another noisy video, another prompt: the same cache gives the full computation
        x2, t2, ctx2, _ = inputs(seed=7)
        for xx, tt, cc in ((x, t, ctx), (x2, t2 * 0 + 500.0, ctx2)):
            assert torch.equal(model(xx, tt, cc, refs=refs, ref_cache=cache), model(xx, tt, cc, refs=refs))
        # the references do matter: other reference latents move the video
        other = ReferenceConditioning(lat + 1.0, LAYOUT, refs.settings, refs.proxy_tokens)
        assert (model(x, t, ctx, refs=other) - model(x, t, ctx, refs=refs)).abs().max() > 1e-3


def test_cache_for_another_grid_or_batch_is_refused(model):
    x, t, ctx, lat = inputs()
    refs = ReferenceConditioning(lat, LAYOUT, cached_settings(), torch.randn(3, CFG.dim))
    cache = model.reference_cache(refs, (3, 2, 2))
    with pytest.raises(MVS2VError, match="compute the cache again"):
        model(x, t, ctx, refs=refs, ref_cache=cache)


def test_memo_computes_once_per_distinct_latents(model):
    _, _, _, lat = inputs()
    memo, settings, proxy = ReferenceKVMemo(), cached_settings(), torch.randn(3, CFG.dim)
    seen = []
    with torch.no_grad():
        for step in range(3):
            for latents in (lat, torch.zeros_like(lat)):
                refs = ReferenceConditioning(latents.clone(), LAYOUT, settings, proxy)
                seen.append(memo.get(refs.latents, (2, 2, 2), lambda: model.reference_cache(refs, (2, 2, 2))))
    assert memo.computed == 2
    assert all(c is seen[0] for c in seen[0::2]) and all(c is seen[1] for c in seen[1::2])


def test_gradients_reach_the_reference_stream_in_training(model):
    x, t, ctx, lat = inputs()
    proxy = torch.randn(3, CFG.dim, requires_grad=True)
    refs = ReferenceConditioning(lat, LAYOUT, cached_settings(), proxy)
    m = WanDiT(CFG)
    m.load_state_dict(model.state_dict())
    m.enable_gradient_checkpointing(True)
    m(x, t, ctx, refs=refs).square().mean().backward()
    assert proxy.grad is not None and proxy.grad.abs().sum() > 0  # only the reference stream sees the proxies


def test_settings_contract():
    with pytest.raises(MVS2VError, match="set the reference timestep to 'zero'"):
        ReferenceSettings(ref_attention="cached")
    s = cached_settings()
    assert s.cached and s.ref_attention == RefAttention.CACHED
    assert ReferenceSettings.from_dict(s.to_dict()) == s
    assert "ref_attention" not in ReferenceSettings().to_dict()  # full: metadata as before the option
    with pytest.raises(MVS2VError, match="reference attention mode 'sometimes' is unknown"):
        ReferenceSettings(ref_timestep="zero", ref_attention="sometimes")


def test_a_model_cast_to_bf16_as_a_whole_runs_both_modes(model):
    """``model.to(bf16)`` (no per-layer casting) must run: the time projection gets its input in its dtype."""
    x, t, ctx, lat = inputs()
    m = WanDiT(CFG)
    m.load_state_dict(model.state_dict())
    m = m.to(torch.bfloat16).eval()
    refs = ReferenceConditioning(lat.bfloat16(), LAYOUT, cached_settings(), torch.randn(3, CFG.dim))
    with torch.no_grad():
        plain = m(x.bfloat16(), t, ctx.bfloat16())
        cached = m(x.bfloat16(), t, ctx.bfloat16(), refs=refs)
    assert plain.dtype == torch.bfloat16 and torch.isfinite(plain).all() and torch.isfinite(cached).all()
    with torch.no_grad():
        want = model(x, t, ctx, refs=ReferenceConditioning(lat, LAYOUT, refs.settings, refs.proxy_tokens))
    assert (cached.float() - want).abs().max() < 0.1 * want.abs().max()  # bf16 rounding only

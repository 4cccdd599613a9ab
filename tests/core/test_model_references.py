"""Reference conditioning in the DiT: empty-slot modes, schemes, per-token timesteps, gradients."""

from __future__ import annotations

import pytest
import torch

from mvs2v_core.errors import MVS2VError
from mvs2v_core.model.config import WanConfig
from mvs2v_core.model.transformer import WanDiT
from mvs2v_core.references.conditioning import ReferenceConditioning
from mvs2v_core.references.layout import ReferenceLayout
from mvs2v_core.references.mfi import MFIProjector, ProxyTokens
from mvs2v_core.references.positions import PositionScheme
from mvs2v_core.references.settings import ReferenceSettings

CFG = WanConfig(dim=48, ffn_dim=96, num_heads=4, num_layers=2, in_dim=4, out_dim=4, text_dim=16, freq_dim=16, text_len=6)



def conditioning(latents, layout, scheme, mode, proxy=None, ref_timestep="same") -> ReferenceConditioning:
    settings = ReferenceSettings(layout.slots_per_subject, scheme, mode, ref_timestep)
    return ReferenceConditioning(latents, layout, settings, proxy)


@pytest.fixture(scope="module")
def model() -> WanDiT:
    torch.manual_seed(0)
    m = WanDiT(CFG).eval()
    # Non-trivial norms so that every parameter matters.
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("norm3.weight") or "norm_" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return m


def inputs(b: int = 2, f: int = 2, h: int = 4, w: int = 4, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 4, f, h, w, generator=g)
    t = torch.tensor([700.0, 30.0][:b])
    ctx = torch.randn(b, 5, 16, generator=g)
    return x, t, ctx


def ref_latents(b: int, layout: ReferenceLayout, h: int = 4, w: int = 4, seed: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 4, layout.num_slots, h, w, generator=g)


LAYOUT = ReferenceLayout.build([["front", "back"], ["left"]], 3)  # subject 0: 2 of 3 slots, subject 1: 1 of 3


def test_no_reference_output_shape_and_batch_independence(model):
    x, t, ctx = inputs()
    y = model(x, t, ctx)
    assert y.shape == x.shape
    y0 = model(x[:1], t[:1], ctx[:1])
    assert torch.allclose(y[:1], y0, atol=1e-5)


@pytest.mark.parametrize("mode", ["proxy", "drop"])
def test_empty_slot_content_is_ignored_under_proxy_and_drop(model, mode):
    x, t, ctx = inputs()
    lat = ref_latents(2, LAYOUT)
    proxy = torch.randn(3, CFG.dim)
    empty = [i for i, f in enumerate(LAYOUT.filled) if not f]
    lat2 = lat.clone()
    lat2[:, :, empty] = torch.randn_like(lat2[:, :, empty]) * 5
    scheme = PositionScheme("ts")
    a = model(x, t, ctx, refs=conditioning(lat, LAYOUT, scheme, mode, proxy))
    b = model(x, t, ctx, refs=conditioning(lat2, LAYOUT, scheme, mode, proxy))
    assert torch.equal(a, b)
    # ... while a filled slot's content does matter.
    lat3 = lat.clone()
    lat3[:, :, 0] += 1.0
    c = model(x, t, ctx, refs=conditioning(lat3, LAYOUT, scheme, mode, proxy))
    assert (a - c).abs().max() > 1e-4


def test_gray_mode_uses_the_given_latents(model):
    x, t, ctx = inputs()
    lat = ref_latents(2, LAYOUT)
    empty = [i for i, f in enumerate(LAYOUT.filled) if not f]
    lat2 = lat.clone()
    lat2[:, :, empty] += 1.0
    s = PositionScheme("jump")
    a = model(x, t, ctx, refs=conditioning(lat, LAYOUT, s, "gray"))
    b = model(x, t, ctx, refs=conditioning(lat2, LAYOUT, s, "gray"))
    assert (a - b).abs().max() > 1e-4


def test_proxy_vector_changes_output_and_gets_gradients(model):
    x, t, ctx = inputs()
    lat = ref_latents(2, LAYOUT)
    proxy = ProxyTokens(3, CFG.dim)
    refs = conditioning(lat, LAYOUT, PositionScheme("ts"), "proxy", proxy.tokens)
    model(x, t, ctx, refs=refs).square().mean().backward()
    g = proxy.tokens.grad
    assert g is not None
    # Three slots stand for yaw 0/120/240: subject 0 fills 0 (front) and 1 (back, tie -> lower slot),
    # subject 1 fills 1 (left). Slot 1 is never empty, so its proxy row gets no gradient.
    assert LAYOUT.filled == [True, True, False, False, True, False]
    per_row = g.abs().sum(1)
    assert per_row[0] > 0 and per_row[2] > 0 and per_row[1] == 0
    model.zero_grad()


def test_drop_equals_a_layout_without_the_empty_slots_only_for_vanilla_positions_kept(model):
    # Under drop the remaining slots keep the positions of the full layout: with vanilla positions
    # and the empty slot last, drop equals a layout that has no such slot at all.
    x, t, ctx = inputs()
    full = ReferenceLayout.build([["front", "left"]], 3)  # slot 2 empty, last
    short = ReferenceLayout.build([["front", "left"]], 2)
    lat = ref_latents(2, full)
    s = PositionScheme("vanilla")
    a = model(x, t, ctx, refs=conditioning(lat, full, s, "drop"))
    b = model(x, t, ctx, refs=conditioning(lat[:, :, :2], short, s, "drop"))
    assert torch.allclose(a, b, atol=1e-6)


def test_ts_with_zero_gap_and_one_full_subject_equals_vanilla(model):
    x, t, ctx = inputs()
    layout = ReferenceLayout.build([3], 3)
    lat = ref_latents(2, layout)
    a = model(x, t, ctx, refs=conditioning(lat, layout, PositionScheme("vanilla"), "gray"))
    b = model(x, t, ctx, refs=conditioning(lat, layout, PositionScheme("ts", gap=0), "gray"))
    c = model(x, t, ctx, refs=conditioning(lat, layout, PositionScheme("ts", gap=8), "gray"))
    assert torch.allclose(a, b, atol=1e-6)
    assert (a - c).abs().max() > 1e-4


def test_uniform_per_token_timesteps_equal_per_sample_timesteps(model):
    x, t, ctx = inputs()
    n_video = 2 * 2 * 2
    a = model(x, t, ctx)
    b = model(x, t[:, None].expand(2, n_video).contiguous(), ctx)
    assert torch.allclose(a, b, atol=1e-6)


def test_reference_timestep_zero(model):
    x, t, ctx = inputs()
    lat = ref_latents(2, LAYOUT)
    s = PositionScheme("ts")
    same = model(x, t, ctx, refs=conditioning(lat, LAYOUT, s, "gray", ref_timestep="same"))
    zero = model(x, t, ctx, refs=conditioning(lat, LAYOUT, s, "gray", ref_timestep="zero"))
    assert (same - zero).abs().max() > 1e-4
    # At t = 0 the two modes coincide.
    t0 = torch.zeros(2)
    a = model(x, t0, ctx, refs=conditioning(lat, LAYOUT, s, "gray", ref_timestep="same"))
    b = model(x, t0, ctx, refs=conditioning(lat, LAYOUT, s, "gray", ref_timestep="zero"))
    assert torch.allclose(a, b, atol=1e-6)


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(3)
    m = WanDiT(CFG)
    x, t, ctx = inputs()
    lat = ref_latents(2, LAYOUT)
    refs = conditioning(lat, LAYOUT, PositionScheme("jump"), "gray")
    m(x, t, ctx, refs=refs).square().mean().backward()
    g1 = {n: p.grad.clone() for n, p in m.named_parameters()}
    m.zero_grad()
    m.enable_gradient_checkpointing()
    m(x, t, ctx, refs=refs).square().mean().backward()
    for n, p in m.named_parameters():
        assert torch.allclose(g1[n], p.grad, atol=1e-6), n


def test_mfi_appends_projected_frontal_tokens(model):
    mfi = MFIProjector(vit_dim=10, text_dim=16)
    with torch.no_grad():
        mfi.proj.weight.normal_()
    x, t, ctx = inputs()
    feats = torch.randn(2, 2, 3, 10)  # 2 subjects x 3 tokens
    full = mfi.append(ctx, feats, text_len=CFG.text_len)
    assert full.shape == (2, CFG.text_len + 6, 16)
    assert torch.equal(full[:, :5], ctx) and torch.equal(full[:, 5:6], torch.zeros(2, 1, 16))
    assert torch.allclose(full[:, 6:], mfi.proj(feats).flatten(1, 2))
    assert (model(x, t, full) - model(x, t, ctx)).abs().max() > 1e-5
    with pytest.raises(MVS2VError, match="width 12"):
        mfi.append(ctx, torch.randn(2, 2, 3, 12))


def test_bad_reference_inputs_are_named(model):
    x, t, ctx = inputs()
    with pytest.raises(MVS2VError, match="slot frames"):
        conditioning(torch.randn(2, 4, 5, 4, 4), LAYOUT, PositionScheme("ts"), "gray")
    with pytest.raises(MVS2VError, match="proxy tokens"):
        conditioning(ref_latents(2, LAYOUT), LAYOUT, PositionScheme("ts"), "proxy")
    with pytest.raises(MVS2VError, match="letterbox"):
        model(x, t, ctx, refs=conditioning(ref_latents(2, LAYOUT, 4, 6), LAYOUT, PositionScheme("ts"), "gray"))
    with pytest.raises(MVS2VError, match="frames, height, width"):
        model(torch.randn(2, 5, 2, 4, 4), t, ctx)


def test_tokens_entering_the_blocks_are_contiguous(model):
    seen = []
    handle = model.blocks[0].register_forward_pre_hook(lambda mod, args: seen.append(args[0].is_contiguous()))
    try:
        x, t, ctx = inputs()
        model(x, t, ctx)
    finally:
        handle.remove()
    assert seen == [True]


OTHER = ReferenceLayout.build([["left"], ["front", "back"]], 3)  # same 2 subjects x 3 slots, other slots filled


@pytest.mark.parametrize("mode", ["proxy", "gray"])
def test_per_sample_layouts_equal_one_forward_per_sample(model, mode):
    """Samples that fill different slots share one forward under proxy / gray: the batched output equals
    running each sample with its own layout (the trainer's batching of view-dropout draws)."""
    x, t, ctx = inputs()
    lat = ref_latents(2, LAYOUT)
    proxy = ProxyTokens(3, CFG.dim)
    settings = ReferenceSettings(3, PositionScheme("ts"), mode, "same")
    p = proxy.tokens if mode == "proxy" else None
    batched = model(x, t, ctx, refs=ReferenceConditioning(lat, LAYOUT, settings, p, (LAYOUT, OTHER)))
    one = model(x[:1], t[:1], ctx[:1], refs=ReferenceConditioning(lat[:1], LAYOUT, settings, p))
    two = model(x[1:], t[1:], ctx[1:], refs=ReferenceConditioning(lat[1:], OTHER, settings, p))
    assert torch.allclose(batched, torch.cat([one, two]), atol=1e-5)
    if mode == "proxy":  # and not what one shared layout gives: the second sample's fill differs
        shared = model(x, t, ctx, refs=ReferenceConditioning(lat, LAYOUT, settings, p))
        assert (shared[1:] - two).abs().max() > 1e-4
        batched.square().mean().backward()
        assert proxy.tokens.grad is not None and proxy.tokens.grad.abs().sum() > 0
        model.zero_grad()


def test_per_sample_layouts_are_refused_under_drop_and_for_other_shapes(model):
    lat = ref_latents(2, LAYOUT)
    with pytest.raises(MVS2VError, match="per-sample layouts need every slot"):
        ReferenceConditioning(lat, LAYOUT, ReferenceSettings(3, PositionScheme("ts"), "drop", "same"), None,
                              (LAYOUT, OTHER))
    with pytest.raises(MVS2VError, match="one layout per sample"):
        ReferenceConditioning(lat, LAYOUT, ReferenceSettings(3, PositionScheme("ts"), "gray", "same"), None, (LAYOUT,))
    single = ReferenceLayout.build([["left"]], 3)
    with pytest.raises(MVS2VError, match="subject\\(s\\) x"):
        ReferenceConditioning(lat, LAYOUT, ReferenceSettings(3, PositionScheme("ts"), "gray", "same"), None,
                              (LAYOUT, single))

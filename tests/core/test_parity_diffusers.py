"""Numerical parity of WanDiT (original Wan names) with diffusers' WanTransformer3DModel.

A tiny diffusers model with seeded random weights (norms and modulation tables included) is
converted to the original key layout, loaded into WanDiT through ``load_dit``, and both models run
on the same input in float32.

Timestep phases: original Wan (and WanDiT) form the sinusoidal time-embedding angles ``t * freq``
in float64, diffusers in float32. At t ~ 1000 the float32 angle error (~6e-5 rad) alone moves the
output by ~5e-5, over the 1e-5 bound. So the architecture is compared with diffusers' timestep
projection switched to Wan's float64 phases (then the two agree to 0 here), and stock diffusers
is compared only at small timesteps where the phase rounding stays far below the bound.
"""

from __future__ import annotations

import contextlib
import math

import pytest
import torch
import torch.nn.functional as F

diffusers = pytest.importorskip("diffusers")
from diffusers import WanTransformer3DModel

from mvs2v_core.model.config import WanConfig
from mvs2v_core.model.convert import from_diffusers_keys, to_diffusers_keys
from mvs2v_core.model.loading import load_dit

TOL = 1e-5
HEADS, HEAD_DIM = 2, 12
DIM = HEADS * HEAD_DIM
TEXT_DIM, FREQ_DIM, FFN_DIM, LAYERS = 32, 32, 64, 2
B, C, LATENT = 2, 4, (3, 4, 6)  # 3 x 2 x 3 = 18 tokens with patch (1, 2, 2)


def _diffusers_model(seed: int, **kw) -> WanTransformer3DModel:
    torch.manual_seed(seed)
    model = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=HEADS, attention_head_dim=HEAD_DIM, in_channels=C,
        out_channels=C, text_dim=TEXT_DIM, freq_dim=FREQ_DIM, ffn_dim=FFN_DIM, num_layers=LAYERS,
        rope_max_seq_len=32, **kw,
    ).eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            # norms around 1 (non-trivial but sane), everything else incl. modulation tables random
            p.copy_(1.0 + 0.3 * noise if ".norm" in name or name.startswith("norm") else 0.3 * noise)
    return model


def _ours(dm: WanTransformer3DModel, **cfg_kw):
    cfg = WanConfig(
        dim=DIM, ffn_dim=FFN_DIM, num_heads=HEADS, num_layers=LAYERS, in_dim=C, out_dim=C,
        text_dim=TEXT_DIM, freq_dim=FREQ_DIM, **cfg_kw,
    )
    # The diffusers-named state dict goes straight in: load_dit detects and converts the layout.
    return load_dit(dict(dm.state_dict()), config=cfg)


def _wan_float64_phases(module):
    """Make diffusers' timestep projection form its angles in float64, as original Wan does."""

    def forward(t: torch.Tensor) -> torch.Tensor:
        half = module.num_channels // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float64) / half)
        ang = t.to(torch.float64)[:, None] * freqs[None]
        return torch.cat([ang.cos(), ang.sin()], dim=-1).float()  # flip_sin_to_cos=True order

    module.forward = forward


@contextlib.contextmanager
def wan_phases(dm):
    """:func:`_wan_float64_phases` on a shared model for the duration of a block, then diffusers' own again."""
    _wan_float64_phases(dm.condition_embedder.timesteps_proj)
    try:
        yield
    finally:
        del dm.condition_embedder.timesteps_proj.forward


def _forward_both(dm, ours, x, t, ctx):
    """``(diffusers, ours)`` outputs for the same inputs, diffusers with Wan's float64 phases."""
    with wan_phases(dm), torch.no_grad():
        return dm(x, t, ctx, return_dict=False)[0], ours(x, t, ctx)


def _inputs(seed: int, text_len: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, C, *LATENT, generator=g)
    ctx = torch.randn(B, text_len, TEXT_DIM, generator=g)
    return x, ctx


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return (a - b).abs().max().item()


@pytest.fixture(scope="module")
def t2v_pair():
    dm = _diffusers_model(0)
    return dm, _ours(dm, text_len=7)


def test_key_map_is_a_bijection_on_diffusers_keys(t2v_pair):
    dm, ours = t2v_pair
    sd = dm.state_dict()
    orig = from_diffusers_keys(sd)
    assert set(orig) == set(ours.state_dict())
    assert set(to_diffusers_keys(orig)) == set(sd)
    assert set(to_diffusers_keys(ours.state_dict())) == set(sd)
    assert ours.load_info["layout"] == "diffusers"
    # the swapped norm names: diffusers norm2 (affine cross-attention norm) is Wan norm3
    assert torch.equal(ours.blocks[1].norm3.weight, dm.blocks[1].norm2.weight)


@pytest.mark.parametrize("timesteps", [(0.0, 37.5), (999.0, 500.3), (1.0, 0.25)])
def test_t2v_parity_with_wan_phases(t2v_pair, timesteps):
    dm, ours = t2v_pair
    x, ctx = _inputs(10, 7)
    ref, out = _forward_both(dm, ours, x, torch.tensor(timesteps), ctx)
    assert _diff(ref, out) <= TOL


@pytest.mark.parametrize("timesteps", [(0.0, 37.5), (1.0, 0.25)])
def test_t2v_parity_stock_diffusers_small_t(t2v_pair, timesteps):
    dm, ours = t2v_pair
    x, ctx = _inputs(11, 7)
    t = torch.tensor(timesteps)
    with torch.no_grad():
        ref = dm(x, t, ctx, return_dict=False)[0]
        out = ours(x, t, ctx)
    assert _diff(ref, out) <= TOL


def test_t2v_parity_short_context_is_zero_padded(t2v_pair):
    dm, ours = t2v_pair  # text_len 7; give 5 tokens, diffusers gets them zero-padded to 7
    x, ctx = _inputs(12, 5)
    t = torch.tensor([0.0, 20.0])
    with torch.no_grad():
        ref = dm(x, t, F.pad(ctx, (0, 0, 0, 2)), return_dict=False)[0]
        out = ours(x, t, ctx)
    assert _diff(ref, out) <= TOL


def test_per_token_timesteps_parity(t2v_pair):
    """Wan 2.2 style [B, L] timesteps: first latent frame clean (t = 0), the rest noisy."""
    dm, ours = t2v_pair
    x, ctx = _inputs(13, 7)
    n_tok = LATENT[0] * (LATENT[1] // 2) * (LATENT[2] // 2)
    per_frame = n_tok // LATENT[0]
    t = torch.tensor([[0.0] * per_frame + [999.0] * (n_tok - per_frame), [0.0] * per_frame + [412.5] * (n_tok - per_frame)])
    t[1, -1] = 3.0  # a third distinct value in one sample
    ref, out = _forward_both(dm, ours, x, t, ctx)
    assert _diff(ref, out) <= TOL
    # and a per-token timestep that is constant equals the per-sample path
    with torch.no_grad():
        flat = ours(x, torch.tensor([5.0, 7.0]), ctx)
        tok = ours(x, torch.tensor([5.0, 7.0])[:, None].expand(B, n_tok), ctx)
    assert _diff(flat, tok) <= TOL


@pytest.mark.parametrize("flf2v", [False, True])
def test_i2v_parity(flf2v):
    """The I2V image branch (CLIP features through img_emb, k_img / v_img cross-attention).

    diffusers hard-codes a 512-token text context in the I2V attention, so text_len is 512.
    """
    image_dim, n_img = 16, 5
    extra = {"pos_embed_seq_len": 2 * n_img} if flf2v else {}
    dm = _diffusers_model(3, image_dim=image_dim, added_kv_proj_dim=DIM, **extra)
    ours = _ours(dm, text_len=512, image_dim=image_dim, image_pos_len=2 * n_img if flf2v else None)
    _wan_float64_phases(dm.condition_embedder.timesteps_proj)
    x, ctx = _inputs(14, 512)
    g = torch.Generator().manual_seed(15)
    clip = torch.randn(2 * B if flf2v else B, n_img, image_dim, generator=g)  # FLF2V: first & last frame
    t = torch.tensor([999.0, 250.0])
    with torch.no_grad():
        ref = dm(x, t, ctx, encoder_hidden_states_image=clip, return_dict=False)[0]
        out = ours(x, t, ctx, clip_fea=clip)
    assert _diff(ref, out) <= TOL


# ---- issue 12: the fused RoPE / RMSNorm / modulation keep parity on every path ---------------------


def _per_token_t():
    n_tok = LATENT[0] * (LATENT[1] // 2) * (LATENT[2] // 2)
    per_frame = n_tok // LATENT[0]
    t = torch.tensor([[0.0] * per_frame + [999.0] * (n_tok - per_frame), [0.0] * per_frame + [412.5] * (n_tok - per_frame)])
    t[1, -3:] = 3.0  # a third distinct value at the end of one sample: 3 runs of tokens
    return t


@pytest.mark.parametrize("path", ["runs", "gathered"])
def test_per_token_timesteps_parity_on_every_modulation_path(t2v_pair, monkeypatch, path):
    """Per-token modulation either writes runs of tokens that share a timestep straight into the
    output or gathers each token's row; both must equal diffusers (which broadcasts [B, L, 6, dim])."""
    from mvs2v_core.model.transformer import Modulation

    if path == "runs":
        monkeypatch.setattr(Modulation, "MIN_RUN_TOKENS", 1)  # 18 tokens: too short for runs by default
    else:
        monkeypatch.setattr(Modulation, "MAX_RUNS", 0)
    dm, ours = t2v_pair
    x, ctx = _inputs(16, 7)
    ref, out = _forward_both(dm, ours, x, _per_token_t(), ctx)
    assert _diff(ref, out) <= TOL


@pytest.mark.parametrize("per_token", [False, True])
def test_input_gradients_match_diffusers(t2v_pair, monkeypatch, per_token):
    """Backward through the complex RoPE, F.rms_norm and the fused modulation (the runs path
    concatenates under autograd) equals diffusers' backward."""
    from mvs2v_core.model.transformer import Modulation

    monkeypatch.setattr(Modulation, "MIN_RUN_TOKENS", 1)
    dm, ours = t2v_pair
    try:
        x, ctx = _inputs(17, 7)
        t = _per_token_t() if per_token else torch.tensor([999.0, 250.0])
        w = torch.randn(x.shape, generator=torch.Generator().manual_seed(18))
        grads = []
        with wan_phases(dm):
            for fn in (lambda a: dm(a, t, ctx, return_dict=False)[0], lambda a: ours(a, t, ctx)):
                a = x.clone().requires_grad_(True)
                (fn(a) * w).sum().backward()
                grads.append(a.grad)
    finally:
        dm.zero_grad(set_to_none=True)
        ours.zero_grad(set_to_none=True)
    assert _diff(grads[0], grads[1]) <= 1e-5 * max(1.0, grads[0].abs().max().item())


def test_rope_rotation_matches_diffusers_rotary_embedding():
    """Our complex rotation over plain video ids equals diffusers' WanRotaryPosEmbed + rotation."""
    from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed

    from mvs2v_core.model.rope import apply_rope, rope_cos_sin, rope_rotation
    from mvs2v_core.references.positions import video_position_ids

    head_dim, grid = 24, (5, 3, 4)
    cos_d, sin_d = WanRotaryPosEmbed(head_dim, (1, 1, 1), 32)(torch.zeros(1, 1, *grid))  # [1, L, 1, d] each
    g = torch.Generator().manual_seed(19)
    x = torch.randn(2, grid[0] * grid[1] * grid[2], 3, head_dim, generator=g)
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    want = torch.empty_like(x)
    want[..., 0::2] = x1 * cos_d[..., 0::2] - x2 * sin_d[..., 1::2]  # diffusers' formula, its own tables
    want[..., 1::2] = x1 * sin_d[..., 1::2] + x2 * cos_d[..., 0::2]
    got = apply_rope(x, rope_rotation(*rope_cos_sin(video_position_ids(grid), head_dim)))
    assert _diff(got, want) <= TOL

"""RoPE, RMSNorm and modulation of the DiT against the previous implementation (issue 12, item 1).

The previous code is kept here verbatim as the reference: ``apply_rope`` built its output with
``torch.stack``, ``RMSNorm`` was unfused, and the block materialised every per-token modulation
vector (``Modulation.chunk``) before ``norm * (1 + scale) + shift``. The new code must compute the
same function (to 1e-6 in float32, the same rounding class in bf16), with gradients, on every
modulation path (per sample, runs of tokens, gathered rows).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mvs2v_core.model import rope as rope_mod
from mvs2v_core.model import transformer as tr
from mvs2v_core.model.config import WanConfig
from mvs2v_core.model.loading import cast_for_inference
from mvs2v_core.model.rope import apply_rope, rope_cos_sin, rope_rotation
from mvs2v_core.model.transformer import Modulation, RMSNorm, WanDiT
from mvs2v_core.references.conditioning import ReferenceConditioning
from mvs2v_core.references.layout import ReferenceLayout
from mvs2v_core.references.settings import PositionScheme, ReferenceSettings

TOL = 1e-6


# ---- the previous implementation ----------------------------------------------------------------


def previous_apply_rope(x, cos, sin):
    xf = x.float().unflatten(-1, (-1, 2))
    x1, x2 = xf[..., 0], xf[..., 1]
    c = cos[:, None, :]
    s = sin[:, None, :]
    out = torch.stack((x1 * c - x2 * s, x1 * s + x2 * c), dim=-1).flatten(-2)
    return out.type_as(x)


def previous_rms_norm(self, x):
    xf = x.float()
    y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
    return (y * self.weight.float()).type_as(x)


def previous_block_forward(self, x, e, context, context_img, cos, sin):
    m = e.plus(self.modulation)
    shift, scale, gate = m.chunk(0), m.chunk(1), m.chunk(2)
    h = (self.norm1(x).float() * (1 + scale) + shift).type_as(x)
    x = (x.float() + self.self_attn(h, cos, sin).float() * gate).type_as(x)
    x = x + self.cross_attn(self.norm3(x), context, context_img)
    shift, scale, gate = m.chunk(3), m.chunk(4), m.chunk(5)
    h = (self.norm2(x).float() * (1 + scale) + shift).type_as(x)
    return (x.float() + self.ffn(h).float() * gate).type_as(x)


def previous_head_forward(self, x, e):
    m = e.plus(self.modulation)
    return self.head((self.norm(x).float() * (1 + m.chunk(1)) + m.chunk(0)).type_as(x))


def previous_self_attn_forward(self, x, cos, sin):
    if sin is None:  # the new WanDiT.forward hands over the complex table
        cos, sin = cos.real.squeeze(-2), cos.imag.squeeze(-2)
    b, n, _ = x.shape
    q = self.norm_q(self.q(x)).view(b, n, self.num_heads, -1)
    k = self.norm_k(self.k(x)).view(b, n, self.num_heads, -1)
    v = self.v(x).view(b, n, self.num_heads, -1)
    q, k = previous_apply_rope(q, cos, sin), previous_apply_rope(k, cos, sin)
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return self.o(out.transpose(1, 2).flatten(2))


@pytest.fixture
def previous():
    """Switch the model classes to the previous implementation for the duration of a call."""

    class Switch:
        def __enter__(self):
            self.mp = pytest.MonkeyPatch()
            self.mp.setattr(tr.RMSNorm, "forward", previous_rms_norm)
            self.mp.setattr(tr.WanBlock, "forward", previous_block_forward)
            self.mp.setattr(tr.WanHead, "forward", previous_head_forward)
            self.mp.setattr(tr.WanSelfAttention, "forward", previous_self_attn_forward)
            return self

        def __exit__(self, *exc):
            self.mp.undo()

    return Switch()


# ---- RoPE ---------------------------------------------------------------------------------------


def _rope_inputs(dtype=torch.float32, b=2, n=40, heads=3, head_dim=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, n, heads, head_dim, generator=g).to(dtype)
    ids = torch.randn(n, 3, generator=g) * 30  # fractional, negative and large positions
    cos, sin = rope_cos_sin(ids, head_dim)
    return x, cos, sin


def test_apply_rope_equals_previous_float32():
    x, cos, sin = _rope_inputs()
    ref = previous_apply_rope(x, cos, sin)
    assert (apply_rope(x, cos, sin) - ref).abs().max().item() <= TOL
    assert (apply_rope(x, rope_rotation(cos, sin)) - ref).abs().max().item() <= TOL  # prebuilt table
    assert (apply_rope(x, rope_rotation(cos, sin).squeeze(-2)) - ref).abs().max().item() <= TOL


def test_apply_rope_bf16_rotates_in_float32_and_keeps_dtype():
    x, cos, sin = _rope_inputs(torch.bfloat16)
    out = apply_rope(x, cos, sin)
    assert out.dtype == torch.bfloat16
    ref = previous_apply_rope(x, cos, sin)
    # same float32 computation, one final rounding: at most one bf16 ulp apart
    assert torch.allclose(out.float(), ref.float(), rtol=2**-7, atol=1e-6)


def test_apply_rope_non_contiguous_input():
    x, cos, sin = _rope_inputs(n=40)
    xt = x.transpose(0, 1).contiguous().transpose(0, 1)  # same values, batch-minor strides
    odd = torch.randn(2, 40, 3, 13)[..., 1:]  # storage offset 1: needs a copy before the complex view
    _, c12, s12 = _rope_inputs(head_dim=12)
    assert not xt.is_contiguous()
    assert (apply_rope(xt, cos, sin) - previous_apply_rope(x, cos, sin)).abs().max().item() <= TOL
    assert (apply_rope(odd, c12, s12) - previous_apply_rope(odd, c12, s12)).abs().max().item() <= TOL


def test_apply_rope_real_arithmetic_fallback(monkeypatch):
    """Devices without complex kernels (e.g. MPS) rotate in real arithmetic: same result."""
    x, cos, sin = _rope_inputs()
    monkeypatch.setattr(rope_mod, "COMPLEX_ROPE_DEVICES", ())
    ref = previous_apply_rope(x, cos, sin)
    assert (rope_mod.apply_rope(x, cos, sin) - ref).abs().max().item() <= TOL
    assert (rope_mod.apply_rope(x, rope_rotation(cos, sin)) - ref).abs().max().item() <= TOL


def test_apply_rope_gradients_equal_previous():
    x, cos, sin = _rope_inputs()
    w = torch.randn_like(x)
    xa = x.clone().requires_grad_(True)
    xb = x.clone().requires_grad_(True)
    (apply_rope(xa, cos, sin) * w).sum().backward()
    (previous_apply_rope(xb, cos, sin) * w).sum().backward()
    assert (xa.grad - xb.grad).abs().max().item() <= TOL


def test_apply_rope_refuses_a_real_table_alone():
    x, cos, _ = _rope_inputs()
    with pytest.raises(ValueError):
        apply_rope(x, cos)


# ---- RMSNorm ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rms_norm_equals_previous(dtype):
    torch.manual_seed(0)
    norm = RMSNorm(48, eps=1e-6)
    with torch.no_grad():
        norm.weight.copy_(1 + 0.3 * torch.randn(48))
    norm = norm.to(dtype)
    x = (torch.randn(2, 17, 48) * 7).to(dtype)
    out = norm(x)
    assert out.dtype == dtype
    # float32 accumulation and weight product, one cast at the end: the previous result exactly
    assert torch.equal(out, previous_rms_norm(norm, x))


def test_rms_norm_gradients_equal_previous():
    torch.manual_seed(0)
    norm = RMSNorm(24)
    x = torch.randn(3, 5, 24)
    w = torch.randn(3, 5, 24)
    grads = []
    for fn in (norm.forward, lambda t: previous_rms_norm(norm, t)):
        xa = x.clone().requires_grad_(True)
        norm.zero_grad()
        (fn(xa) * w).sum().backward()
        grads.append((xa.grad.clone(), norm.weight.grad.clone()))
    assert (grads[0][0] - grads[1][0]).abs().max().item() <= 1e-5
    assert (grads[0][1] - grads[1][1]).abs().max().item() <= 1e-5


# ---- modulation ---------------------------------------------------------------------------------


def _per_token_modulation(b=2, n=96, dim=8, rows=6, seed=0, kind="runs"):
    g = torch.Generator().manual_seed(seed)
    t = torch.full((b, n), 700.0)
    if kind == "runs":  # video at the sample's t, then references at 0 (ref_timestep "zero")
        t[1] = 300.0
        t[0, :16] = 0.0  # sample 0 also has a clean first frame
        t[:, n - 32:] = 0.0
    else:  # scattered values: many short runs
        t = torch.randint(0, 3, (b, n), generator=g).float()
    values, index = torch.unique(t, return_inverse=True)
    table = torch.randn(len(values), rows, dim, generator=g)
    return Modulation(table, index)


def _previous_modulate(m, y, shift, scale):
    return y.float() * (1 + m.chunk(scale)) + m.chunk(shift)


def _previous_gated_add(m, x, y, gate):
    return x.float() + y.float() * m.chunk(gate)


@pytest.mark.parametrize("kind", ["per_sample", "runs", "gathered"])
@pytest.mark.parametrize("grad", [False, True])
def test_modulation_paths_equal_previous(kind, grad):
    g = torch.Generator().manual_seed(3)
    if kind == "per_sample":
        m = Modulation(torch.randn(2, 1, 6, 8, generator=g), None)
    else:
        m = _per_token_modulation(kind="runs" if kind == "runs" else "scattered")
        expect_runs = kind == "runs"
        assert (m._runs() is not None) == expect_runs
        if expect_runs:
            assert [(a, b) for a, b, _ in m._runs()] == [(0, 16), (16, 64), (64, 96)]  # union of the samples' cuts
    p = torch.randn(1, 6, 8, generator=g, requires_grad=grad)
    x = torch.randn(2, 96, 8, generator=g, requires_grad=grad)
    y = torch.randn(2, 96, 8, generator=g, requires_grad=grad)
    with torch.set_grad_enabled(grad):
        mp = m.plus(p)
        new = mp.modulate(y, 3, 4) + mp.gated_add(x, y, 5)
        old = _previous_modulate(mp, y, 3, 4) + _previous_gated_add(mp, x, y, 5)
    assert (new - old).abs().max().item() <= TOL
    if grad:
        w = torch.randn(new.shape, generator=g)
        got = torch.autograd.grad((new * w).sum(), (p, x, y))
        want = torch.autograd.grad((old * w).sum(), (p, x, y))
        for a, b in zip(got, want):
            assert (a - b).abs().max().item() <= 1e-5


def test_modulation_runs_are_found_once_per_forward():
    m = _per_token_modulation()
    runs = m._runs()
    assert m.plus(torch.zeros(1, 6, 8))._runs() is runs


# ---- whole model: new vs previous ---------------------------------------------------------------

CFG = WanConfig(dim=48, ffn_dim=96, num_heads=2, num_layers=2, in_dim=4, out_dim=4, text_dim=16, freq_dim=16,
                text_len=6)


def _model_inputs(b=2, f=3, h=8, w=8):
    g = torch.Generator().manual_seed(5)
    x = torch.randn(b, 4, f, h, w, generator=g)
    ctx = torch.randn(b, 6, 16, generator=g)
    layout = ReferenceLayout.build([["front", "back"], ["left"]], 4, names=["a", "b"])
    lat = torch.randn(b, 4, layout.num_slots, h, w, generator=g)
    proxy = torch.randn(4, CFG.dim, generator=g)
    return x, ctx, layout, lat, proxy


@pytest.fixture(scope="module")
def dit():
    torch.manual_seed(0)
    model = WanDiT(CFG).eval()
    with torch.no_grad():  # non-trivial norm weights
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1 + 0.3 * torch.randn(p.shape))
    return model


@pytest.mark.parametrize("ref_t", ["same", "zero"])
@pytest.mark.parametrize("t_kind", ["per_sample", "per_token"])
@pytest.mark.parametrize("path", ["runs", "gathered"])
def test_wandit_equals_previous_implementation(dit, previous, monkeypatch, ref_t, t_kind, path):
    if path == "gathered":
        monkeypatch.setattr(Modulation, "MAX_RUNS", 0)
    else:
        monkeypatch.setattr(Modulation, "MIN_RUN_TOKENS", 1)
    x, ctx, layout, lat, proxy = _model_inputs()
    settings = ReferenceSettings(4, PositionScheme("ts"), "proxy", ref_t)
    refs = ReferenceConditioning(lat, layout, settings, proxy_tokens=proxy)
    n_tok = 3 * 4 * 4
    t = torch.tensor([900.0, 250.0])
    if t_kind == "per_token":
        t = t[:, None].repeat(1, n_tok)
        t[:, :16] = 0.0  # Wan 2.2: a clean first frame
    with torch.no_grad():
        new = [dit(x, t, ctx), dit(x, t, ctx, refs=refs)]
        with previous:
            old = [dit(x, t, ctx), dit(x, t, ctx, refs=refs)]
    for a, b in zip(new, old):
        assert (a - b).abs().max().item() <= TOL


def test_wandit_gradients_equal_previous_implementation(dit, previous):
    x, ctx, layout, lat, proxy = _model_inputs(b=1)
    refs = ReferenceConditioning(lat[:1], layout, ReferenceSettings(4, PositionScheme("ts"), "proxy", "zero"),
                                 proxy_tokens=proxy)
    t = torch.tensor([600.0])
    grads = []
    for ctx_mgr in (torch.enable_grad(), previous):
        with ctx_mgr:
            dit.zero_grad()
            dit(x[:1], t, ctx[:1], refs=refs).square().mean().backward()
            grads.append({n: p.grad.clone() for n, p in dit.named_parameters() if p.grad is not None})
    dit.zero_grad()
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        assert (grads[0][name] - grads[1][name]).abs().max().item() <= 1e-5, name


def test_wandit_bf16_matches_previous_implementation(dit, previous):
    model = WanDiT(CFG).eval()
    model.load_state_dict(dit.state_dict())
    cast_for_inference(model, torch.bfloat16)  # norms, time embedding, modulation stay float32, as Wan
    x, ctx, layout, lat, proxy = _model_inputs()
    refs = ReferenceConditioning(lat, layout, ReferenceSettings(4, PositionScheme("ts"), "proxy", "zero"),
                                 proxy_tokens=proxy.bfloat16())
    t = torch.tensor([900.0, 250.0])
    with torch.no_grad():
        new = model(x.bfloat16(), t, ctx.bfloat16(), refs=refs).float()
        with previous:
            old = model(x.bfloat16(), t, ctx.bfloat16(), refs=refs).float()
    # the same float32 formulas and the same bf16 roundings
    assert (new - old).abs().max().item() <= 1e-2 * old.abs().max().item()


def test_wandit_real_rope_fallback_equals_complex(dit, monkeypatch):
    """WanDiT on a device without complex kernels passes the real tables: same output."""
    x, ctx, layout, lat, proxy = _model_inputs()
    t = torch.tensor([900.0, 250.0])
    with torch.no_grad():
        want = dit(x, t, ctx)
        monkeypatch.setattr(rope_mod, "COMPLEX_ROPE_DEVICES", ())
        monkeypatch.setattr(tr, "COMPLEX_ROPE_DEVICES", ())
        got = dit(x, t, ctx)
    assert (got - want).abs().max().item() <= TOL

"""Tests for mvs2v_core.sampling: schedules, solvers (incl. UniPC parity with diffusers), guidance, sampler."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mvs2v_core.errors import MVS2VError
from mvs2v_core.sampling.guidance import (
    CFGGuidance,
    NoGuidance,
    PhantomGuidance,
    guided_velocity,
    run_passes,
)
from mvs2v_core.sampling.sampler import make_noise, sample
from mvs2v_core.sampling.schedule import flow_sigmas, shift_sigma, validate_sigmas
from mvs2v_core.sampling.solvers import SOLVERS, UniPCSolver, get_solver

# ---------------------------------------------------------------------------------------------- schedule


def test_shift_sigma_values():
    assert shift_sigma(0.5, 5.0) == pytest.approx(2.5 / 3.0)
    assert shift_sigma(0.25, 3.0) == pytest.approx(0.75 / 1.5)
    assert shift_sigma(0.3, 1.0) == pytest.approx(0.3)
    t = torch.tensor([0.0, 0.2, 1.0], dtype=torch.float64)
    out = shift_sigma(t, 8.0)
    assert out[0] == 0.0 and out[2] == 1.0
    assert out[1] == pytest.approx(8 * 0.2 / (1 + 7 * 0.2))


@pytest.mark.parametrize("steps", [1, 2, 7, 50])
@pytest.mark.parametrize("shift", [1.0, 3.0, 5.0, 0.5])
def test_flow_sigmas_shape_monotonic_endpoints(steps, shift):
    s = flow_sigmas(steps, shift)
    assert s.shape == (steps + 1,) and s.dtype == torch.float64
    assert s[0] == 1.0 and s[-1] == 0.0
    assert (s[1:] < s[:-1]).all()
    assert torch.allclose(s, shift_sigma(torch.linspace(1, 0, steps + 1, dtype=torch.float64), shift))


def test_flow_sigmas_unshifted_is_linspace_and_options():
    assert torch.allclose(flow_sigmas(4, 1.0), torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0], dtype=torch.float64))
    wan = flow_sigmas(10, 5.0, sigma_max=0.999)
    assert wan[0] == pytest.approx(5 * 0.999 / (1 + 4 * 0.999)) and wan[-1] == 0.0
    half = flow_sigmas(4, 1.0, denoise=0.5)
    assert torch.allclose(half, torch.tensor([0.5, 0.375, 0.25, 0.125, 0.0], dtype=torch.float64))
    # sigma_min > 0: grid stops there, but the schedule still ends on clean data
    s = flow_sigmas(4, 1.0, sigma_min=0.2)
    assert s[-2] == pytest.approx(0.4) and s[-1] == 0.0


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(steps=0, shift=5.0),
        dict(steps=-3, shift=5.0),
        dict(steps=2.5, shift=5.0),
        dict(steps=10, shift=0.0),
        dict(steps=10, shift=-1.0),
        dict(steps=10, shift=float("nan")),
        dict(steps=10, shift=5.0, denoise=0.0),
        dict(steps=10, shift=5.0, denoise=1.5),
        dict(steps=10, shift=5.0, sigma_max=1.5),
    ],
)
def test_flow_sigmas_validation(kwargs):
    with pytest.raises(MVS2VError):
        flow_sigmas(**kwargs)


def test_validate_sigmas_rejects_bad_schedules():
    with pytest.raises(MVS2VError, match="strictly decreasing"):
        validate_sigmas([1.0, 0.5, 0.5, 0.0])
    with pytest.raises(MVS2VError, match="within"):
        validate_sigmas([1.2, 0.5, 0.0])
    with pytest.raises(MVS2VError, match="at least 2"):
        validate_sigmas([1.0])


# ---------------------------------------------------------------------------------------------- solvers


def _integrate(name: str, sigmas: torch.Tensor, x: torch.Tensor, vel, **kw) -> torch.Tensor:
    solver = get_solver(name, **kw)
    solver.reset(sigmas)
    for i in range(solver.steps):
        x = solver.step(i, x, vel).x
    return x


def _pair(seed: int = 0, shape=(2, 3, 4)) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64), torch.randn(shape, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("name", ["euler", "heun", "unipc"])
@pytest.mark.parametrize("steps", [1, 2, 5, 13])
def test_ideal_rectified_flow_recovers_x0(name, steps):
    """v = noise - x0 exactly (straight path): every solver lands on x0, whatever the step count."""
    x0, noise = _pair()
    out = _integrate(name, flow_sigmas(steps, 5.0), noise.clone(), lambda x, s: noise - x0)
    # UniPC evaluates its coefficients with sigma capped at 1 - 1e-6 (lambda = -inf at 1): ~1e-6 effect
    tol = 1e-5 if name == "unipc" else 1e-12
    assert torch.allclose(out, x0, atol=tol, rtol=0)


@pytest.mark.parametrize("steps", [1, 3, 8])
def test_euler_exact_on_straight_line_field(steps):
    """v(x, sigma) = (x - x0) / sigma is the field whose flows are straight lines into x0: Euler is exact."""
    x0, noise = _pair(1)
    start = 0.6 * x0 + 0.4 * noise  # any starting point
    sig = flow_sigmas(steps, 3.0)
    out = _integrate("euler", sig, start, lambda x, s: (x - x0) / s)
    assert torch.allclose(out, x0, atol=1e-12, rtol=0)


@pytest.mark.parametrize("name,expected_ratio", [("euler", 2.0), ("heun", 4.0)])
def test_convergence_order_on_linear_ode(name, expected_ratio):
    """dx/dsigma = a x from sigma=1 to 0: exact x(0) = x(1) exp(-a). Halving the step divides the error by
    2 (Euler) or 4 (Heun; its last step is Euler but a single O(h^2) local error keeps global order 2)."""
    a = 0.8
    x1 = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    exact = x1 * math.exp(-a)
    errs = []
    for n in (16, 32, 64):
        out = _integrate(name, flow_sigmas(n, 1.0), x1.clone(), lambda x, s: a * x)
        errs.append((out - exact).abs().max().item())
    ratios = [errs[0] / errs[1], errs[1] / errs[2]]
    for r in ratios:
        assert r == pytest.approx(expected_ratio, rel=0.08)


def test_heun_model_evaluations():
    calls = []

    def vel(x, s):
        calls.append(s)
        return torch.zeros_like(x)

    solver = get_solver("heun")
    solver.reset(flow_sigmas(4, 3.0))
    for i in range(4):
        solver.step(i, torch.zeros(1), vel)
    assert len(calls) == solver.num_evaluations() == 7  # 2 per step, last step Euler (sigma_next = 0)
    assert 0.0 not in calls


def test_get_solver_unknown_name_lists_valid():
    with pytest.raises(MVS2VError) as e:
        get_solver("dpm++")
    for name in ("euler", "heun", "unipc"):
        assert name in str(e.value)
    assert set(SOLVERS) == {"euler", "heun", "unipc"}
    assert isinstance(get_solver("UniPC"), UniPCSolver)
    with pytest.raises(MVS2VError):
        get_solver("unipc", order=5)
    with pytest.raises(MVS2VError):
        get_solver("euler", order=2)


def test_unipc_steps_out_of_order_rejected():
    solver = get_solver("unipc")
    solver.reset(flow_sigmas(3, 3.0))
    with pytest.raises(MVS2VError):
        solver.step(1, torch.zeros(2), lambda x, s: x)


# ------------------------------------------------------------------------------- UniPC parity with diffusers


def _analytic_velocity(x: torch.Tensor, sigma: float) -> torch.Tensor:
    # nonlinear in x and sigma so every solver term matters
    return torch.sin(3.0 * x) * (1.0 + sigma) + 0.3 * sigma * x - 0.5 * torch.cos(x)


def _diffusers_unipc(steps: int, shift: float, order: int = 2, float64: bool = True):
    diffusers = pytest.importorskip("diffusers")
    sched = diffusers.UniPCMultistepScheduler(
        use_flow_sigmas=True,
        prediction_type="flow_prediction",
        flow_shift=shift,
        solver_order=order,
        predict_x0=True,
        solver_type="bh2",
        lower_order_final=True,
    )
    sched.set_timesteps(steps)
    if float64:
        sched.sigmas = sched.sigmas.double()  # compute its coefficients in float64 too
    return sched


def _run_diffusers(sched, x: torch.Tensor) -> torch.Tensor:
    for i, t in enumerate(sched.timesteps):
        v = _analytic_velocity(x, float(sched.sigmas[i]))
        x = sched.step(v, t, x).prev_sample
    return x


@pytest.mark.parametrize("steps", [1, 2, 3, 10, 30])
@pytest.mark.parametrize("shift", [1.0, 5.0])
@pytest.mark.parametrize("order", [2, 1, 3])
def test_unipc_parity_with_diffusers_float64(steps, shift, order):
    """Same sigmas, same analytic velocity: ours equals diffusers' UniPC(bh2, x0-pred, lower_order_final)."""
    sched = _diffusers_unipc(steps, shift, order=order)
    x_init = _pair(3, shape=(2, 4, 3, 5))[1]
    ref = _run_diffusers(sched, x_init.clone())
    ours = _integrate("unipc", sched.sigmas, x_init.clone(), _analytic_velocity, order=order)
    assert (ours - ref).abs().max().item() < 1e-10


@pytest.mark.parametrize("steps", [1, 2, 20])
def test_unipc_parity_with_diffusers_native_float32_coefficients(steps):
    """diffusers' default float32 sigmas make its coefficients float32; agreement is then ~1e-6."""
    sched = _diffusers_unipc(steps, 5.0, float64=False)
    x_init = _pair(4, shape=(2, 4, 3, 5))[1]
    ref = _run_diffusers(sched, x_init.clone())
    ours = _integrate("unipc", sched.sigmas, x_init.clone(), _analytic_velocity)
    assert (ours - ref).abs().max().item() < 1e-5


def test_unipc_parity_through_sample_float32():
    """End to end through sample(): model gets t = sigma * 1000, x is float32."""
    steps = 8
    sched = _diffusers_unipc(steps, 3.0)
    noise = make_noise((1, 4, 2, 3, 3), seed=7)
    ref = _run_diffusers(sched, noise.double().clone())

    def model_fn(x, t, cond):
        return _analytic_velocity(x, float(t[0]) / 1000.0)

    out = sample(model_fn, noise, NoGuidance(), steps=steps, shift=3.0, solver="unipc", sigmas=sched.sigmas)
    assert out.dtype == torch.float32
    assert (out.double() - ref).abs().max().item() < 1e-4


def test_unipc_converges_to_fine_solution():
    """Sanity beyond parity: more steps -> closer to a very fine Heun reference."""
    x_init = _pair(5)[1]
    ref = _integrate("heun", flow_sigmas(2000, 3.0), x_init.clone(), _analytic_velocity)
    errs = [
        (_integrate("unipc", flow_sigmas(n, 3.0), x_init.clone(), _analytic_velocity) - ref).abs().max().item()
        for n in (10, 20, 40)
    ]
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] < 5e-3


# ---------------------------------------------------------------------------------------------- guidance


class CountingModel:
    """Deterministic toy model: v = x * w + mean(text) + mean(ref) + t/1000, recording call batch sizes."""

    def __init__(self):
        self.calls: list[int] = []

    def __call__(self, x, t, cond):
        self.calls.append(x.shape[0])
        b = x.shape[0]
        out = x * cond["w"].view(b, 1, 1) + cond["text"].mean(dim=(1, 2)).view(b, 1, 1)
        if cond.get("ref") is not None:
            out = out + cond["ref"].mean(dim=(1, 2)).view(b, 1, 1)
        return out + (t / 1000.0).view(b, 1, 1)


def _cond(seed: int, batch: int = 2, ref: bool = True, text_len: int = 5) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "w": torch.rand(batch, generator=g, dtype=torch.float64),
        "text": torch.randn(batch, text_len, 4, generator=g, dtype=torch.float64),
        "ref": torch.randn(batch, 3, 4, generator=g, dtype=torch.float64) if ref else None,
    }


def _xt(batch: int = 2):
    x = torch.randn(batch, 3, 6, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    return x, torch.full((batch,), 700.0, dtype=torch.float64)


def test_three_pass_formula_matches_manual():
    model = CountingModel()
    a, b, c = _cond(1, ref=False), _cond(2), _cond(3)
    x, t = _xt()
    g = PhantomGuidance(ref_text=c, ref_neg=b, no_ref_neg=a, ref_scale=5.5, text_scale=7.5)
    out = guided_velocity(model, g, x, t)
    va, vb, vc = model(x, t, a), model(x, t, b), model(x, t, c)
    manual = va + 5.5 * (vb - va) + 7.5 * (vc - vb)
    assert torch.allclose(out, manual, atol=1e-12, rtol=0)


def test_phantom_batching_groups_compatible_passes():
    """Pass a has no references (None), b and c have them: a runs alone, b+c share one call."""
    model = CountingModel()
    g = PhantomGuidance(ref_text=_cond(3), ref_neg=_cond(2), no_ref_neg=_cond(1, ref=False), ref_scale=5, text_scale=7)
    guided_velocity(model, g, *_xt())
    assert sorted(model.calls) == [2, 4]


@pytest.mark.parametrize("max_batch", [None, 1, 2, 3])
def test_batched_vs_unbatched_and_chunking(max_batch):
    x, t = _xt()
    conds = dict(ref_text=_cond(3), ref_neg=_cond(2), no_ref_neg=_cond(1))  # all batchable
    unbatched_model, model = CountingModel(), CountingModel()
    g_ref = PhantomGuidance(**conds, ref_scale=4, text_scale=6, max_batch_passes=1)
    ref = guided_velocity(unbatched_model, g_ref, x, t)
    out = guided_velocity(model, PhantomGuidance(**conds, ref_scale=4, text_scale=6, max_batch_passes=max_batch), x, t)
    assert torch.allclose(out, ref, atol=1e-6, rtol=0)
    assert unbatched_model.calls == [2, 2, 2]
    expected = {None: [6], 1: [2, 2, 2], 2: [4, 2], 3: [6]}[max_batch]
    assert model.calls == expected


def test_unbatchable_shapes_run_separately():
    """Different text lengths (shape beyond dim 0) cannot be concatenated."""
    model = CountingModel()
    x, t = _xt()
    g = CFGGuidance(cond=_cond(1, text_len=5), uncond=_cond(2, text_len=7), scale=5.0)
    out = guided_velocity(model, g, x, t)
    assert model.calls == [2, 2]
    vu, vc = model(x, t, g.uncond), model(x, t, g.cond)
    assert torch.allclose(out, vu + 5.0 * (vc - vu), atol=1e-12, rtol=0)


def test_cfg_batched_one_call_and_scale_one_single_pass():
    x, t = _xt()
    model = CountingModel()
    out = guided_velocity(model, CFGGuidance(cond=_cond(1), uncond=_cond(2), scale=4.0), x, t)
    assert model.calls == [4]
    vu, vc = model(x, t, _cond(2)), model(x, t, _cond(1))
    assert torch.allclose(out, vu + 4.0 * (vc - vu), atol=1e-12, rtol=0)

    model = CountingModel()
    out = guided_velocity(model, CFGGuidance(cond=_cond(1), uncond=_cond(2), scale=1.0), x, t)
    assert model.calls == [2]
    assert torch.allclose(out, model(x, t, _cond(1)))
    model = CountingModel()
    guided_velocity(model, CFGGuidance(cond=_cond(1), scale=1.0), x, t)  # uncond not needed
    assert model.calls == [2]


@pytest.mark.parametrize(
    "s_ref,s_txt,n_passes",
    [(5.0, 7.5, 3), (1.0, 7.5, 2), (6.0, 6.0, 2), (5.0, 0.0, 2), (1.0, 1.0, 1), (0.0, 0.0, 1), (1.0, 0.0, 1)],
)
def test_phantom_degenerate_scales_skip_passes(s_ref, s_txt, n_passes):
    x, t = _xt()
    conds = dict(ref_text=_cond(3), ref_neg=_cond(2), no_ref_neg=_cond(1, ref=False))
    model = CountingModel()
    g = PhantomGuidance(**conds, ref_scale=s_ref, text_scale=s_txt, max_batch_passes=1)
    assert g.num_passes() == n_passes
    out = guided_velocity(model, g, x, t)
    assert len(model.calls) == n_passes
    va, vb, vc = (model(x, t, conds[k]) for k in ("no_ref_neg", "ref_neg", "ref_text"))
    assert torch.allclose(out, va + s_ref * (vb - va) + s_txt * (vc - vb), atol=1e-12, rtol=0)


@settings(max_examples=25, deadline=None)
@given(
    s_ref=st.sampled_from([0.0, 1.0, 2.5, 5.0]) | st.floats(0.0, 12.0),
    s_txt=st.sampled_from([0.0, 1.0, 2.5, 5.0]) | st.floats(0.0, 12.0),
    max_batch=st.sampled_from([None, 1, 2]),
)
def test_phantom_property_any_scales(s_ref, s_txt, max_batch):
    x, t = _xt()
    conds = dict(ref_text=_cond(3), ref_neg=_cond(2), no_ref_neg=_cond(1))
    model = CountingModel()
    g = PhantomGuidance(**conds, ref_scale=s_ref, text_scale=s_txt, max_batch_passes=max_batch)
    out = guided_velocity(model, g, x, t)
    va, vb, vc = (model(x, t, conds[k]) for k in ("no_ref_neg", "ref_neg", "ref_text"))
    manual = va + s_ref * (vb - va) + s_txt * (vc - vb)
    assert torch.allclose(out, manual, atol=1e-9, rtol=1e-9)


def test_run_passes_preserves_order_and_passthrough_values():
    x, t = _xt()
    seen = []

    def model(xb, tb, cond):
        seen.append(cond["flag"])
        return xb * cond["w"].view(-1, 1, 1)

    conds = [{"w": torch.full((2,), float(k), dtype=torch.float64), "flag": k % 2} for k in range(4)]
    preds = run_passes(model, x, t, conds)
    assert sorted(seen) == [0, 1]  # grouped by the non-tensor value
    for k, p in enumerate(preds):
        assert torch.allclose(p, x * k)


@pytest.mark.parametrize(
    "make",
    [
        lambda: CFGGuidance(cond={}, uncond={}, scale=-1.0),
        lambda: CFGGuidance(cond={}, uncond={}, scale=float("nan")),
        lambda: CFGGuidance(cond={}, scale=5.0),  # needs uncond
        lambda: CFGGuidance(cond={}, uncond={}, scale=5.0, max_batch_passes=0),
        lambda: PhantomGuidance(ref_text={}, ref_neg={}, no_ref_neg=None, ref_scale=5.0, text_scale=7.0),
        lambda: PhantomGuidance(ref_text={}, ref_neg={}, no_ref_neg={}, ref_scale=float("inf"), text_scale=7.0),
        lambda: NoGuidance(cond="text"),
    ],
)
def test_guidance_validation(make):
    with pytest.raises(MVS2VError):
        make()


def test_phantom_optional_passes_may_be_none_when_skipped():
    g = PhantomGuidance(ref_text={"a": None}, ref_neg={"a": None}, no_ref_neg=None, ref_scale=1.0, text_scale=5.0)
    assert g.num_passes() == 2


# ---------------------------------------------------------------------------------------------- sampler


def _toy_model(x0_target: torch.Tensor):
    """A model whose velocity points at a fixed x0 (plus a conditioning-dependent pull)."""

    def model_fn(x, t, cond):
        sigma = (t / 1000.0).view(-1, *([1] * (x.dim() - 1))).to(x.dtype)
        bias = cond["bias"].view(-1, *([1] * (x.dim() - 1))).to(x.dtype)
        return (x - x0_target.to(x.dtype)) / sigma.clamp_min(1e-3) + bias * torch.tanh(x)

    return model_fn


def test_make_noise_seed_stable():
    a = make_noise((2, 16, 3, 4, 4), seed=42)
    b = make_noise((2, 16, 3, 4, 4), seed=42)
    c = make_noise((2, 16, 3, 4, 4), seed=43)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.dtype == torch.float32 and a.device.type == "cpu"
    half = make_noise((2, 16, 3, 4, 4), seed=42, dtype=torch.bfloat16)
    assert torch.equal(half, a.to(torch.bfloat16))  # dtype does not change the random stream
    with pytest.raises(MVS2VError):
        make_noise((2,), seed=-1)


@pytest.mark.parametrize("solver", ["euler", "heun", "unipc"])
def test_sample_deterministic_and_callback(solver):
    x0 = torch.randn(1, 4, 2, 3, 3, generator=torch.Generator().manual_seed(0))
    model = _toy_model(x0)
    guidance = CFGGuidance(cond={"bias": torch.tensor([0.2])}, uncond={"bias": torch.tensor([-0.1])}, scale=3.0)
    records = []

    def cb(info):
        records.append(info)

    outs = [
        sample(model, make_noise(x0.shape, seed=5), guidance, steps=6, shift=3.0, solver=solver, callback=cb)
        for _ in range(2)
    ]
    assert torch.equal(outs[0], outs[1])
    first = records[:6]
    assert [r["step"] for r in first] == list(range(6))
    assert all(r["total_steps"] == 6 for r in first)
    sig = [r["sigma"] for r in first]
    assert sig == sorted(sig, reverse=True) and first[-1]["sigma_next"] == 0.0
    assert set(first[0]) >= {"step", "total_steps", "sigma", "x", "denoised"}
    assert first[0]["x"].shape == x0.shape and first[0]["denoised"].shape == x0.shape
    assert torch.equal(first[-1]["x"], outs[0])


def test_sample_passes_timesteps_and_keeps_conditions_untouched():
    """t = sigma * 1000 as float32 [B]; reference tensors reach the model unchanged at every step."""
    ref = torch.randn(2, 3, 8)
    ref_copy = ref.clone()
    seen_t, seen_refs = [], []

    def model_fn(x, t, cond):
        seen_t.append(t.clone())
        seen_refs.append(cond["ref"])
        return torch.zeros_like(x)

    steps = 5
    sample(model_fn, make_noise((2, 4, 6), seed=1), NoGuidance(cond={"ref": ref}), steps, shift=5.0, solver="euler")
    sig = flow_sigmas(steps, 5.0)
    assert len(seen_t) == steps
    for i, t in enumerate(seen_t):
        assert t.dtype == torch.float32 and t.shape == (2,)
        assert torch.allclose(t, torch.full((2,), float(sig[i]) * 1000.0))
    assert all(r is ref for r in seen_refs) and torch.equal(ref, ref_copy)


@pytest.mark.parametrize("solver", ["euler", "heun", "unipc"])
def test_sample_ideal_model_recovers_x0(solver):
    x0 = torch.randn(1, 4, 3, 2, 2, generator=torch.Generator().manual_seed(9))
    noise = make_noise(x0.shape, seed=3)

    def model_fn(x, t, cond):
        return noise - x0

    out = sample(model_fn, noise, NoGuidance(), steps=4, shift=5.0, solver=solver)
    assert torch.allclose(out, x0, atol=1e-5, rtol=0)


def test_sample_denoise_needs_init_latent_and_refines():
    x0 = torch.randn(1, 2, 3, generator=torch.Generator().manual_seed(2))
    noise = make_noise(x0.shape, seed=4)

    def model_fn(x, t, cond):
        return noise - x0

    with pytest.raises(MVS2VError, match="init_latent"):
        sample(model_fn, noise, NoGuidance(), steps=4, shift=3.0, denoise=0.5)
    out = sample(model_fn, noise, NoGuidance(), steps=4, shift=3.0, solver="euler", denoise=0.5, init_latent=x0)
    assert torch.allclose(out, x0, atol=1e-6, rtol=0)


def test_sample_input_validation():
    model = _toy_model(torch.zeros(1, 2))
    noise = make_noise((1, 2), seed=0)
    g = NoGuidance(cond={"bias": torch.zeros(1)})
    with pytest.raises(MVS2VError, match="steps"):
        sample(model, noise, g, steps=0, shift=3.0)
    with pytest.raises(MVS2VError, match="euler, heun, unipc"):
        sample(model, noise, g, steps=4, shift=3.0, solver="ddim")
    with pytest.raises(MVS2VError, match="shift"):
        sample(model, noise, g, steps=4, shift=0.0)
    with pytest.raises(MVS2VError, match="steps \\+ 1"):
        sample(model, noise, g, steps=4, shift=3.0, sigmas=flow_sigmas(6, 3.0))
    with pytest.raises(MVS2VError, match="Guidance"):
        sample(model, noise, {"bias": None}, steps=4, shift=3.0)
    with pytest.raises(MVS2VError, match="shape"):
        sample(lambda x, t, c: x[..., :1], noise, g, steps=2, shift=3.0)


def test_auto_batching_falls_back_when_memory_runs_out():
    """With no explicit limit, a batched call that runs out of memory is retried in smaller calls."""
    from mvs2v_core.sampling.guidance import PhantomGuidance, guided_velocity

    calls: list[int] = []

    def model_fn(x, t, cond):
        calls.append(x.shape[0])
        if x.shape[0] > 1:
            raise torch.OutOfMemoryError("simulated")
        return x * cond["s"].view(-1, 1)

    conds = [{"s": torch.tensor([float(k)])} for k in (1, 2, 3)]
    g = PhantomGuidance(ref_text=conds[2], ref_neg=conds[1], no_ref_neg=conds[0], ref_scale=2.0, text_scale=3.0)
    x = torch.ones(1, 2)
    v = guided_velocity(model_fn, g, x, torch.zeros(1))
    a, b, c = x * 1, x * 2, x * 3
    assert torch.allclose(v, a + 2.0 * (b - a) + 3.0 * (c - b))
    assert g.auto_batch_passes == 1
    assert calls == [3, 1, 1, 1]  # one failed batched call of 3, then the passes one at a time
    calls.clear()
    guided_velocity(model_fn, g, x, torch.zeros(1))
    assert calls == [1, 1, 1]  # the learned limit is kept
    g_fixed = PhantomGuidance(ref_text=conds[2], ref_neg=conds[1], no_ref_neg=conds[0], ref_scale=2.0,
                              text_scale=3.0, max_batch_passes=3)
    with pytest.raises(torch.OutOfMemoryError):
        guided_velocity(model_fn, g_fixed, x, torch.zeros(1))


def test_solver_names_for_the_command_line_are_the_solvers():
    from mvs2v_core.sampling import SOLVER_NAMES
    from mvs2v_core.sampling.solvers import SOLVERS

    assert sorted(SOLVER_NAMES) == sorted(SOLVERS)

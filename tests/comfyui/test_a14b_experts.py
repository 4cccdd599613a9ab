"""Wan2.2 A14B: the Flow Sampler's two experts (``low_noise_model`` + ``boundary``), in a real ComfyUI.

Two tiny DiTs in the Wan2.2 A14B T2V layout (in_dim 16, no image embedding; different random
weights: the high-noise and the low-noise expert) are loaded by ComfyUI's own UNETLoader, each goes
through its own Apply MV-S2V (as the nodes expect users to wire it: the sampler does not patch a
model itself) with the same encoded references, and one prompt runs the Flow Sampler with
references, TS-RoPE and Phantom's three-pass guidance (ref 5, text 7.5):

* a probe on each expert's first block logs every model call: the high-noise expert runs exactly
  the steps whose sigma is at or above the boundary, the low-noise expert the others, each step's
  three guidance passes on the same expert, and every call of both experts carries the video plus
  the reference tokens;
* the sampled latent equals mvs2v_core's own sampler driven by a model function that picks the
  expert per call (``t >= boundary * 1000``, as Wan2.2's sampler), run on mvs2v_core's DiT with the
  same weights, references and text (UniPC and Euler); moving the switch one step either way, or
  leaving the references off the low-noise expert, changes that result far beyond the tolerance;
* the result differs from the high-noise expert alone, and giving the high-noise expert as both
  experts reproduces it alone (the switch continues one solver trajectory: nothing is re-noised
  and UniPC keeps its history);
* a low-noise expert that did not go through Apply MV-S2V is refused with an error.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import DIT_WAN22_A14B_HIGH, DIT_WAN22_A14B_LOW, VAE_WAN21, four_view_prompt_nodes
from safetensors import safe_open
from safetensors.torch import load_file

SIZE, FRAMES = 64, 5  # -> latent [1, 16, 2, 8, 8]: 2 frames of 4 x 4 tokens
VIDEO_TOKENS, REF_TOKENS = 2 * 16, 4 * 16  # four filled slots, one latent frame of 4 x 4 tokens each
SEED, STEPS, SHIFT, REF_SCALE, TEXT_SCALE = 11, 4, 5.0, 5.0, 7.5
BOUNDARY = 0.875  # Wan2.2 T2V A14B; with 4 steps at shift 5 the sigmas are 1, 0.9375 | 0.8333, 0.625
GAP = 8.0
CALL_LOG = "mvs2v_a14b_calls.jsonl"
TOLERANCE = 1e-4  # ComfyUI's patched WanModel vs mvs2v_core's WanDiT, 4 guided steps (measured: under 1e-5)


def _base() -> dict:
    p = {
        "high": {"class_type": "UNETLoader", "inputs": {"unet_name": DIT_WAN22_A14B_HIGH, "weight_dtype": "default"}},
        "low": {"class_type": "UNETLoader", "inputs": {"unet_name": DIT_WAN22_A14B_LOW, "weight_dtype": "default"}},
        "vae": {"class_type": "VAELoader", "inputs": {"vae_name": VAE_WAN21}},
    }
    p.update(four_view_prompt_nodes(SIZE, FRAMES))
    p["subject"] = {"class_type": "MVS2VSubject", "inputs": {"images": ["b3", 0], "name": "box", "view_labels": "front,left,back,right", "frontal_view": -1}}
    p["refs"] = {"class_type": "MVS2VReferenceSet", "inputs": {"slots_per_subject": 4, "empty_slot_mode": "gray", "subject_1": ["subject", 0]}}
    p["enc"] = {"class_type": "MVS2VEncodeReferences", "inputs": {"vae": ["vae", 0], "references": ["refs", 0], "width": SIZE, "height": SIZE}}
    for expert in ("high", "low"):  # Apply MV-S2V on each expert, with the same encoded references
        p[f"apply_{expert}"] = {"class_type": "MVS2VApply", "inputs": {
            "model": [expert, 0], "encoded_references": ["enc", 0], "scheme": "ts", "gap": GAP, "ref_gap": 9.0,
            "identity_gap": 24.0, "placement": "after", "ref_timestep": "same"}}
    return p


def _sample(p: dict, name: str, model: list, low: list | None, solver: str = "unipc") -> None:
    inputs = {"model": model, "positive": ["pos", 0], "negative": ["neg", 0], "latent_image": ["latent", 0],
              "seed": SEED, "steps": STEPS, "shift": SHIFT, "solver": solver, "ref_scale": REF_SCALE,
              "text_scale": TEXT_SCALE, "denoise": 1.0}
    if low is not None:
        inputs.update(low_noise_model=low, boundary=BOUNDARY)
    p[f"sample_{name}"] = {"class_type": "MVS2VFlowSampler", "inputs": inputs}
    p[f"save_{name}"] = {"class_type": "MVS2VTest_SaveSamplingInputs", "inputs": {
        "model": ["apply_high", 0], "latent": [f"sample_{name}", 0], "filename_prefix": f"a14b/{name}"}}


@pytest.fixture(scope="module")
def run(comfy_server) -> dict:
    log = comfy_server.base / "output" / CALL_LOG
    log.unlink(missing_ok=True)
    p = _base()
    for expert in ("high", "low"):
        p[f"rec_{expert}"] = {"class_type": "MVS2VTest_RecordCalls", "inputs": {
            "model": [f"apply_{expert}", 0], "tag": expert, "log_name": CALL_LOG}}
    _sample(p, "two_experts_unipc", ["rec_high", 0], ["rec_low", 0], "unipc")
    _sample(p, "two_experts_euler", ["apply_high", 0], ["apply_low", 0], "euler")
    _sample(p, "high_only", ["apply_high", 0], None, "unipc")
    _sample(p, "high_as_both", ["apply_high", 0], ["apply_high", 0], "unipc")
    for expert in ("high", "low"):
        p[f"inputs_{expert}"] = {"class_type": "MVS2VTest_SaveSamplingInputs", "inputs": {
            "model": [f"apply_{expert}", 0], "positive": ["pos", 0], "negative": ["neg", 0],
            "filename_prefix": f"a14b/inputs_{expert}"}}
    entry = comfy_server.run(p)
    files = {path.stem: path for path in comfy_server.output_files(entry, "tensors")}
    assert len(files) == 6, sorted(files)
    out = {"calls": [json.loads(line) for line in log.read_text().splitlines()], "meta": {}}
    for name, path in files.items():
        out[name] = load_file(str(path))
        with safe_open(str(path), "pt") as f:
            out["meta"][name] = f.metadata()
    return out


# ---- mvs2v_core's sampler, switching experts itself ------------------------------------------------


def _sigmas() -> list[float]:
    from mvs2v_core.sampling.schedule import flow_sigmas

    return flow_sigmas(STEPS, SHIFT).float().tolist()  # the node's schedule (float32)


@pytest.fixture(scope="module")
def core(comfy_server, run):
    """``core(solver, switch_at, low_refs=True)``: mvs2v_core's sampler on mvs2v_core's DiT, the
    model function taking the high-noise expert for ``t >= switch_at * 1000``."""
    from mvs2v_core.model.loading import load_dit
    from mvs2v_core.references.conditioning import ReferenceConditioning
    from mvs2v_core.references.layout import ReferenceLayout
    from mvs2v_core.references.positions import PositionScheme
    from mvs2v_core.references.settings import ReferenceSettings
    from mvs2v_core.sampling.guidance import PhantomGuidance
    from mvs2v_core.sampling.sampler import make_noise, sample

    folder = comfy_server.base / "models" / "diffusion_models"
    experts = {"high": load_dit(folder / DIT_WAN22_A14B_HIGH), "low": load_dit(folder / DIT_WAN22_A14B_LOW)}
    layout = ReferenceLayout.build([["front", "left", "back", "right"]], 4, names=["box"])
    settings = ReferenceSettings(4, PositionScheme("ts", gap=GAP), "gray", "same")
    inputs = run["inputs_high"]
    refs = inputs["ref_latents"]
    one, zero = torch.ones(1), torch.zeros(1)
    guidance = PhantomGuidance(
        ref_text={"context": inputs["positive"], "gate": one}, ref_neg={"context": inputs["negative"], "gate": one},
        no_ref_neg={"context": inputs["negative"], "gate": zero}, ref_scale=REF_SCALE, text_scale=TEXT_SCALE)

    def run_core(solver: str, switch_at: float, low_refs: bool = True) -> torch.Tensor:
        def model_fn(x, t, cond):
            expert = "high" if float(t[0]) >= switch_at * 1000 else "low"
            b = x.shape[0]
            ref_cond = None
            if expert == "high" or low_refs:  # the no-reference pass: zero reference latents (gate 0)
                latents = refs.expand(b, -1, -1, -1, -1) * cond["gate"].view(b, 1, 1, 1, 1)
                ref_cond = ReferenceConditioning(latents, layout, settings)
            return experts[expert](x, t, cond["context"], refs=ref_cond)

        with torch.no_grad():
            noise = make_noise((1, 16, 2, SIZE // 8, SIZE // 8), SEED)  # = ComfyUI's prepare_noise
            return sample(model_fn, noise, guidance, STEPS, SHIFT, solver).float()

    return run_core


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


# ---- the tests -----------------------------------------------------------------------------------


def test_both_experts_are_comfyuis_wan_t2v_model_with_the_same_references(run):
    for expert in ("high", "low"):
        meta = run["meta"][f"inputs_{expert}"]
        assert meta["model_class"] == "WAN21" and meta["diffusion_model_class"] == "WanModel", meta
        assert meta["in_dim"] == "16" and meta["mvs2v_patches"] == "1", meta
    assert tuple(run["inputs_high"]["ref_latents"].shape) == (1, 16, 4, SIZE // 8, SIZE // 8)
    assert torch.equal(run["inputs_high"]["ref_latents"], run["inputs_low"]["ref_latents"])
    assert float(run["inputs_high"]["ref_latents"].abs().max()) > 0


def test_each_expert_runs_exactly_its_steps_with_the_references(run):
    sigmas = _sigmas()[:-1]
    expected = {"high": [s for s in sigmas if s >= BOUNDARY], "low": [s for s in sigmas if s < BOUNDARY]}
    assert len(expected["high"]) == 2 and len(expected["low"]) == 2  # the schedule straddles the boundary
    calls = run["calls"]
    assert calls, "the probes logged no model call"
    seen: dict[str, dict[float, int]] = {"high": {}, "low": {}}
    for call in calls:
        assert len(set(call["sigmas"])) == 1, call  # every sample of a call is at one sigma
        sigma = call["sigmas"][0]
        assert call["tag"] == ("high" if sigma >= BOUNDARY else "low"), call
        assert call["tokens"] == VIDEO_TOKENS + REF_TOKENS, call  # references on both experts
        seen[call["tag"]][round(sigma, 6)] = seen[call["tag"]].get(round(sigma, 6), 0) + call["batch"]
    print("sigma -> samples per expert:", seen)
    for expert in ("high", "low"):
        assert sorted(seen[expert]) == sorted(round(s, 6) for s in expected[expert]), (expert, seen)
        assert all(n == 3 for n in seen[expert].values()), seen  # the three guidance passes, per step


@pytest.mark.parametrize("solver", ["unipc", "euler"])
def test_matches_core_sampler_switching_experts_at_the_boundary(run, core, solver):
    node = run[f"two_experts_{solver}"]["latent"]
    ref = core(solver, BOUNDARY)
    diff = _max_diff(node, ref)
    print(f"{solver}: max |node - core| = {diff:.3g} (latent scale {float(ref.abs().mean()):.3g})")
    assert diff < TOLERANCE


def test_the_comparison_sees_a_misplaced_switch_or_missing_references(run, core):
    node = run["two_experts_unipc"]["latent"]
    s = _sigmas()
    controls = {
        "switch one step early": core("unipc", (s[0] + s[1]) / 2),
        "switch one step late": core("unipc", (s[2] + s[3]) / 2),
        "low-noise expert without references": core("unipc", BOUNDARY, low_refs=False),
    }
    for name, ref in controls.items():
        diff = _max_diff(node, ref)
        print(f"{name}: max |node - core| = {diff:.3g}")
        assert diff > 100 * TOLERANCE, name


def test_differs_from_the_high_noise_expert_alone(run):
    diff = _max_diff(run["two_experts_unipc"]["latent"], run["high_only"]["latent"])
    print(f"two experts vs high-noise expert alone: max diff {diff:.3g}")
    assert diff > 100 * TOLERANCE


def test_the_same_expert_twice_is_one_seamless_trajectory(run):
    # Splitting the schedule at the boundary must change nothing by itself: no noise is added again
    # and UniPC's multistep history carries over the switch.
    diff = _max_diff(run["high_as_both"]["latent"], run["high_only"]["latent"])
    print(f"high-noise expert as both experts vs alone: max diff {diff:.3g}")
    assert diff < TOLERANCE  # float rounding of the latent's round trip between the stages (measured: about 6e-6)


def test_a_low_noise_expert_without_mv_s2v_is_refused(comfy_server, run):
    p = _base()
    p["sample"] = {"class_type": "MVS2VFlowSampler", "inputs": {
        "model": ["apply_high", 0], "low_noise_model": ["low", 0], "boundary": BOUNDARY, "positive": ["pos", 0],
        "negative": ["neg", 0], "latent_image": ["latent", 0], "seed": SEED, "steps": STEPS, "shift": SHIFT,
        "solver": "unipc", "ref_scale": REF_SCALE, "text_scale": TEXT_SCALE, "denoise": 1.0}}
    p["save"] = {"class_type": "SaveLatent", "inputs": {"samples": ["sample", 0], "filename_prefix": "a14b/refused"}}
    with pytest.raises(AssertionError, match="Apply MV-S2V"):
        comfy_server.run(p)

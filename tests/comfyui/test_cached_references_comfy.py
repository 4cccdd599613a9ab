"""Cached references (``ref_attention = cached``) in the real ComfyUI.

* The patched native Wan model equals ``WanDiT.forward(..., ref_cache=WanDiT.reference_cache(...))``
  with the same weights (fp32, 1e-4) for several schemes and empty-slot modes (proxy with filled and
  empty slots, gray, drop), per-sample and per-frame timesteps, on a two-head DiT (so the keys'
  head layout matters) -- and differs from the full-attention patch (the mode is really on).
* Under context windows (references placed after the longest window) every window matches the core
  DiT with ``reference_frames`` and shares one cache.
* The reference keys/values are computed once per sampling run: ComfyUI's own sampler with guidance
  (both passes, with and without references) computes them as often for 4 steps as for 1, and again
  for a new run.
* A node workflow with an adapter trained with the mode (Load Adapter -> Apply with ``cached`` ->
  Flow Sampler with both guidance scales) runs end to end, and the same adapter under ``full`` is
  refused with the adapter's one-line message.

The first two run in a ComfyUI Python started from this file (``python THIS COMFYUI_DIR CUSTOM_NODES
PACK DIT``, as parity_check.py), printing one ``CACHED {json}`` line.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import COMFYUI_DIR, DIT_WAN21, HERE, TINY_VISION_WIDTH, VAE_WAN21, comfy_python, four_view_prompt_nodes

TOLERANCE = 1e-4
SIZE, FRAMES = 64, 5  # the workflow test: 2 latent frames of 8 x 8
CACHED_ADAPTER = "mvs2v_test_adapter_cached.safetensors"


def write_two_head_dit(path: Path) -> None:
    """A Wan2.1-layout DiT ComfyUI detects with two heads (dim 256: ``num_heads = dim // 128``)."""
    from mvs2v_core.model.config import WanConfig
    from mvs2v_core.model.transformer import WanDiT
    from mvs2v_core.utils import save_safetensors_atomic

    cfg = WanConfig(dim=256, ffn_dim=256, num_heads=2, num_layers=2, in_dim=16, out_dim=16, text_dim=4096)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        model = WanDiT(cfg)
    save_safetensors_atomic(model.state_dict(), path)


def write_cached_adapter(path: Path) -> None:
    """The tiny test model's adapter (2 blocks, width 128), trained, says its metadata, with cached references."""
    from mvs2v_core.adapter import Adapter, AdapterMetadata, LoraSpec, lora_state_dict, save_adapter
    from mvs2v_core.references.settings import PositionScheme, ReferenceSettings

    gen = torch.Generator().manual_seed(9)
    lora = {f"blocks.{i}.self_attn.k": (torch.randn(4, 128, generator=gen) * 0.05,
                                        torch.randn(128, 4, generator=gen) * 0.05, 4.0) for i in range(2)}
    meta = AdapterMetadata(
        base_family="tiny-test", model_dim=128, text_dim=4096, in_dim=16, num_layers=2,
        references=ReferenceSettings(4, PositionScheme("jump", ref_gap=9, identity_gap=24), "proxy", "zero", "cached"),
        mfi_in_dim=TINY_VISION_WIDTH, lora=LoraSpec(rank=4, alpha=4.0, targets=("self_attn.k",)),
    )
    adapter = Adapter(metadata=meta, proxy_tokens=torch.randn(4, 128, generator=gen) * 0.5,
                      mfi_weight=torch.randn(4096, TINY_VISION_WIDTH, generator=gen) * 0.05,
                      mfi_bias=torch.zeros(4096), lora=lora_state_dict(lora))
    save_adapter(path, adapter)


@pytest.fixture(scope="module")
def cached_check(comfy_server) -> dict:
    dit = comfy_server.base / "models" / "diffusion_models" / "mvs2v_test_two_heads.safetensors"
    write_two_head_dit(dit)
    proc = subprocess.run(
        [comfy_python(), __file__, COMFYUI_DIR, str(comfy_server.base / "custom_nodes"), "mvs2v", str(dit)],
        capture_output=True, text=True, timeout=600, check=False, cwd=str(HERE),
    )
    lines = [l for l in proc.stdout.splitlines() if l.startswith("CACHED ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(lines[-1][len("CACHED "):])


def test_cached_patch_matches_core_dit_with_ref_cache(cached_check):
    print(cached_check)
    assert cached_check["heads"] == 2
    for case, diff in cached_check["parity"].items():
        assert diff < TOLERANCE, f"{case}: max |ComfyUI - core| = {diff:.3g}"
    assert cached_check["cached_vs_full"] > 1e-3  # the cached mode is not the full one under another name
    assert cached_check["output_scale"] > 1e-2


def test_reference_kv_computed_once_per_call_batch_and_reused(cached_check):
    # Direct calls (no sampler): the first computes, three more steps at other timesteps reuse it.
    assert set(cached_check["direct_computations"].values()) == {1}, cached_check["direct_computations"]


def test_reference_kv_computed_once_per_sampling_run(cached_check):
    runs = cached_check["sampling_computations"]  # per run: steps 1, 4, 4 (the last a new run)
    assert runs[0] >= 1 and runs[0] <= 2, runs  # one per distinct reference batch (guidance passes)
    assert runs[1] == runs[0] and runs[2] == runs[0], runs  # not per step; and afresh for every run
    assert cached_check["sampling_finite"]


def _workflow(ref_attention: str) -> dict:
    p = {
        "model": {"class_type": "UNETLoader", "inputs": {"unet_name": DIT_WAN21, "weight_dtype": "default"}},
        "vae": {"class_type": "VAELoader", "inputs": {"vae_name": VAE_WAN21}},
    }
    p.update(four_view_prompt_nodes(SIZE, FRAMES))
    p["two"] = {"class_type": "ImageBatch", "inputs": {"image1": ["img_front", 0], "image2": ["img_back", 0]}}
    p["box"] = {"class_type": "MVS2VSubject", "inputs": {"images": ["two", 0], "name": "box", "view_labels": "front,back", "frontal_view": -1}}
    p["refs"] = {"class_type": "MVS2VReferenceSet", "inputs": {"slots_per_subject": 4, "empty_slot_mode": "proxy", "subject_1": ["box", 0]}}
    p["enc"] = {"class_type": "MVS2VEncodeReferences", "inputs": {"vae": ["vae", 0], "references": ["refs", 0], "width": SIZE, "height": SIZE}}
    p["adapter"] = {"class_type": "MVS2VLoadAdapter", "inputs": {"model": ["model", 0], "adapter_name": CACHED_ADAPTER, "strength": 1.0}}
    p["apply"] = {"class_type": "MVS2VApply", "inputs": {
        "model": ["adapter", 0], "encoded_references": ["enc", 0], "scheme": "jump", "gap": 8.0, "ref_gap": 9.0,
        "identity_gap": 24.0, "placement": "after", "ref_timestep": "zero", "adapter": ["adapter", 1],
        "ref_attention": ref_attention}}
    p["sample"] = {"class_type": "MVS2VFlowSampler", "inputs": {
        "model": ["apply", 0], "positive": ["pos", 0], "negative": ["neg", 0], "latent_image": ["latent", 0], "seed": 3,
        "steps": 2, "shift": 5.0, "solver": "euler", "ref_scale": 2.0, "text_scale": 3.0, "denoise": 1.0}}
    p["save"] = {"class_type": "SaveLatent", "inputs": {"samples": ["sample", 0], "filename_prefix": f"cached/{ref_attention}"}}
    return p


def test_cached_adapter_workflow_runs_end_to_end(comfy_server):
    from safetensors.torch import load_file

    write_cached_adapter(comfy_server.base / "models" / "mvs2v" / CACHED_ADAPTER)
    entry = comfy_server.run(_workflow("cached"))
    files = comfy_server.output_files(entry, "latents")
    assert len(files) == 1, entry.get("outputs")
    latent = load_file(str(files[0]))["latent_tensor"].float()
    assert latent.shape == (1, 16, 2, SIZE // 8, SIZE // 8)
    assert torch.isfinite(latent).all() and latent.abs().mean() > 1e-3
    with pytest.raises(AssertionError, match="cached"):  # the cached-trained adapter under full: refused
        comfy_server.run(_workflow("full"))


# ---- the check, run in a ComfyUI Python (not collected by pytest) -----------------------------------


def _load(comfy_dir: str, custom_nodes: str, pack_name: str, dit_file: str) -> dict:
    sys.path.insert(0, comfy_dir)
    from comfy.cli_args import args

    args.cpu = True
    import comfy.sd

    sys.path.insert(0, custom_nodes)
    mod = lambda name: importlib.import_module(f"{pack_name}.{name}")  # noqa: E731 - the pack's own classes
    m = {name: mod(path) for name, path in (
        ("patch", "nodes.patch"), ("compat", "nodes.compat"), ("dit", "mvs2v_core.model.transformer"),
        ("config", "mvs2v_core.model.config"), ("loading", "mvs2v_core.model.loading"),
        ("layout", "mvs2v_core.references.layout"), ("pos", "mvs2v_core.references.positions"),
        ("cond", "mvs2v_core.references.conditioning"), ("settings", "mvs2v_core.references.settings"))}
    m["native"] = comfy.sd.load_diffusion_model(dit_file)  # ComfyUI's own loader and model detection
    sd = m["loading"].read_state_dict(dit_file)
    m["ours"] = m["dit"].WanDiT(m["config"].infer_config(sd))
    m["ours"].load_state_dict(sd)
    m["ours"].eval()
    return m


def _call(m: dict, injection, x, t, context, extra_options: dict | None = None) -> torch.Tensor:
    import comfy.patcher_extension

    patched = m["compat"].set_reference_wrapper(m["native"], injection)
    options = {"wrappers": comfy.patcher_extension.copy_nested_dicts(patched.wrappers), **(extra_options or {})}
    return m["native"].get_model_object("diffusion_model")(x, t, context, transformer_options=options).float()


def _parity(m: dict) -> dict:
    gen = torch.Generator().manual_seed(0)
    b, c, f, h, w = 2, 16, 3, 8, 12
    x, context = torch.randn(b, c, f, h, w, generator=gen), torch.randn(b, 512, 4096, generator=gen) * 0.5
    layout = m["layout"].ReferenceLayout.build([["front", "back"], ["front"]], 4, names=["a", "b"])
    latents = torch.randn(1, c, layout.num_slots, h, w, generator=gen)
    proxy = torch.randn(4, 256, generator=gen) * 0.5
    per_frame = torch.tensor([[900.0, 640.0, 250.0], [500.0, 500.0, 120.0]])  # Wan2.2's per-frame timesteps
    cases = [("jump_proxy", "jump", {"ref_gap": 9, "identity_gap": 24}, "proxy", None),
             ("ts_gray", "ts", {"gap": 8}, "gray", None), ("ss_drop", "ss", {"gap": 8}, "drop", None),
             ("vanilla_proxy_per_frame", "vanilla", {}, "proxy", per_frame)]
    parity, computations = {}, {}
    for name, scheme, kw, mode, t_frames in cases:
        settings = m["settings"].ReferenceSettings(4, m["pos"].PositionScheme(scheme, **kw), mode, "zero", "cached")
        p = proxy if mode == "proxy" else None
        injection = m["patch"].ReferenceInjection(latents, layout, settings, p)
        t = torch.tensor([700.0, 350.5]) if t_frames is None else t_frames
        refs = m["cond"].ReferenceConditioning(latents.expand(b, -1, -1, -1, -1), layout, settings, p)
        cache = m["ours"].reference_cache(refs, (f, h // 2, w // 2))
        t_core = t if t_frames is None else t.repeat_interleave((h // 2) * (w // 2), dim=1)
        v_core = m["ours"](x, t_core, context, refs=refs, ref_cache=cache).float()
        parity[name] = float((_call(m, injection, x, t, context) - v_core).abs().max())
        for scale in (0.8, 0.5, 0.1):  # later steps of the same generation
            v_core = m["ours"](x, t_core * scale, context, refs=refs, ref_cache=cache).float()
            parity[f"{name}_t{scale}"] = float((_call(m, injection, x, t * scale, context) - v_core).abs().max())
        computations[name] = injection.kv_computations
    parity_windows, computations["windows"] = _windows(m, x, context, layout, latents, proxy)
    parity.update(parity_windows)
    full = m["settings"].ReferenceSettings(4, m["pos"].PositionScheme("jump", ref_gap=9, identity_gap=24), "proxy", "zero")
    cached = m["settings"].ReferenceSettings.from_dict({**full.to_dict(), "ref_attention": "cached"})
    t = torch.tensor([700.0, 350.5])
    v_full = _call(m, m["patch"].ReferenceInjection(latents, layout, full, proxy), x, t, context)
    v_cached = _call(m, m["patch"].ReferenceInjection(latents, layout, cached, proxy), x, t, context)
    return {"parity": parity, "direct_computations": computations,
            "cached_vs_full": float((v_full - v_cached).abs().max()), "output_scale": float(v_cached.abs().mean())}


def _windows(m: dict, x, context, layout, latents, proxy) -> tuple[dict, int]:
    """Context-window calls (a 2- and a 3-frame window, references placed after 3 frames, as
    ``compat.ReferencePlanning`` sets it up) == the core DiT with ``reference_frames = 3``; one cache for both."""
    settings = m["settings"].ReferenceSettings(4, m["pos"].PositionScheme("ts", gap=8), "proxy", "zero", "cached")
    injection = m["patch"].ReferenceInjection(latents, layout, settings, proxy)
    window = {m["patch"].WINDOW_FRAMES_KEY: 3, m["patch"].CONTEXT_WINDOW_KEY: object()}
    refs = m["cond"].ReferenceConditioning(latents.expand(x.shape[0], -1, -1, -1, -1), layout, settings, proxy,
                                           reference_frames=3)
    cache = m["ours"].reference_cache(refs, (3, x.shape[3] // 2, x.shape[4] // 2))
    t = torch.tensor([600.0, 300.0])
    diffs = {}
    for frames in (2, 3):
        xw = x[:, :, :frames]
        v_core = m["ours"](xw, t, context, refs=refs, ref_cache=cache).float()
        diffs[f"window_{frames}_frames"] = float((_call(m, injection, xw, t, context, window) - v_core).abs().max())
    return diffs, injection.kv_computations


def _sampling(m: dict) -> dict:
    """ComfyUI's own sampler (KSampler, CFG 3: a pass with references and one without) on the patched model."""
    import comfy.sample

    gen = torch.Generator().manual_seed(1)
    layout = m["layout"].ReferenceLayout.build([["front", "back"]], 4, names=["a"])
    settings = m["settings"].ReferenceSettings(4, m["pos"].PositionScheme("ts", gap=8), "gray", "zero", "cached")
    injection = m["patch"].ReferenceInjection(torch.randn(1, 16, layout.num_slots, 8, 8, generator=gen), layout,
                                              settings, None)
    model = m["compat"].set_reference_wrapper(m["native"], injection, injection.sampling_plan)
    positive = m["compat"].with_reference_gate([[torch.randn(1, 512, 4096, generator=gen) * 0.5, {}]], 1.0)
    negative = m["compat"].without_references([[torch.randn(1, 512, 4096, generator=gen) * 0.5, {}]])
    latent = torch.zeros(1, 16, 2, 8, 8)
    runs, finite = [], True
    for steps in (1, 4, 4):
        before = injection.kv_computations
        noise = torch.randn(latent.shape, generator=gen)
        out = comfy.sample.sample(model, noise, steps, 3.0, "euler", "simple", positive, negative, latent,
                                  disable_pbar=True, seed=1)
        finite = finite and bool(torch.isfinite(out).all())
        runs.append(injection.kv_computations - before)
    return {"sampling_computations": runs, "sampling_finite": finite}


if __name__ == "__main__":
    models = _load(*sys.argv[1:5])
    with torch.no_grad():
        result = {"heads": int(models["native"].get_model_object("diffusion_model").num_heads),
                  **_parity(models), **_sampling(models)}
    print("CACHED " + json.dumps(result))

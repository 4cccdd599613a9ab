"""The patched model's output differs from the unpatched one exactly where the scheme says it should.

One prompt runs many variants through one Flow Sampler step (Euler, no guidance, same seed) and
saves each latent; the latents are then compared:

* vanilla with every slot filled == ComfyUI's own Phantom path (WanPhantomSubjectToVideo's
  time_dim_concat) -- the patch reproduces the native reference path;
* the no-reference guidance pass (reference gate 0) == Phantom's negative_img_text (zero references);
* TS-RoPE with gap 0 and one subject == vanilla (same position ids), Jump-RoPE after the video with
  ref_gap 8 == TS-RoPE with gap 8 (same ids): outputs depend on the ids alone;
* references change the output (patched != unpatched), a gap changes it (ts 8 != vanilla), and the
  empty-slot mode matters (drop != gray);
* it composes: ModelSamplingSD3 after the patch gives the same result as the sampler's own shift,
  and the adapter's LoRA applied by ComfyUI's LoraLoaderModelOnly equals MV-S2V Load Adapter's;
* the output keeps the video's frame count (references trimmed).
"""

from __future__ import annotations

import pytest
import torch
from conftest import ADAPTER, DIT_WAN21, VAE_WAN21, four_view_prompt_nodes
from safetensors.torch import load_file

SIZE, FRAMES = 64, 5  # -> 2 latent frames of 8 x 8


def _base() -> dict:
    p = {
        "model": {"class_type": "UNETLoader", "inputs": {"unet_name": DIT_WAN21, "weight_dtype": "default"}},
        "vae": {"class_type": "VAELoader", "inputs": {"vae_name": VAE_WAN21}},
    }
    p.update(four_view_prompt_nodes(SIZE, FRAMES))
    p["two"] = {"class_type": "ImageBatch", "inputs": {"image1": ["img_front", 0], "image2": ["img_back", 0]}}
    p["subject4"] = {"class_type": "MVS2VSubject", "inputs": {"images": ["b3", 0], "name": "box", "view_labels": "front,left,back,right", "frontal_view": -1}}
    p["subject2"] = {"class_type": "MVS2VSubject", "inputs": {"images": ["two", 0], "name": "box", "view_labels": "front,back", "frontal_view": -1}}
    for name, subject, mode in (("full", "subject4", "gray"), ("gray2", "subject2", "gray"), ("drop2", "subject2", "drop")):
        p[f"refs_{name}"] = {"class_type": "MVS2VReferenceSet", "inputs": {"slots_per_subject": 4, "empty_slot_mode": mode, "subject_1": [subject, 0]}}
        p[f"enc_{name}"] = {"class_type": "MVS2VEncodeReferences", "inputs": {"vae": ["vae", 0], "references": [f"refs_{name}", 0], "width": SIZE, "height": SIZE}}
    p["phantom"] = {"class_type": "WanPhantomSubjectToVideo", "inputs": {"positive": ["pos", 0], "negative": ["neg", 0], "vae": ["vae", 0], "width": SIZE, "height": SIZE, "length": FRAMES, "batch_size": 1, "images": ["b3", 0]}}
    return p


def _apply(p: dict, name: str, refs: str, scheme: str, gap: float = 8.0, ref_gap: float = 9.0) -> list:
    p[f"apply_{name}"] = {"class_type": "MVS2VApply", "inputs": {
        "model": ["model", 0], "encoded_references": [f"enc_{refs}", 0], "scheme": scheme, "gap": gap, "ref_gap": ref_gap,
        "identity_gap": 24.0, "placement": "after", "ref_timestep": "same"}}
    return [f"apply_{name}", 0]


def _sample(p: dict, name: str, model: list, positive: list, negative: list, ref_scale=1.0, text_scale=1.0,
            shift=5.0) -> None:
    p[f"sample_{name}"] = {"class_type": "MVS2VFlowSampler", "inputs": {
        "model": model, "positive": positive, "negative": negative, "latent_image": ["latent", 0], "seed": 11, "steps": 1,
        "shift": shift, "solver": "euler", "ref_scale": ref_scale, "text_scale": text_scale, "denoise": 1.0}}
    p[f"save_{name}"] = {"class_type": "SaveLatent", "inputs": {"samples": [f"sample_{name}", 0], "filename_prefix": f"semantics/{name}"}}


@pytest.fixture(scope="module")
def latents(comfy_server) -> dict[str, torch.Tensor]:
    p = _base()
    pos, neg = ["pos", 0], ["neg", 0]
    _sample(p, "unpatched", ["model", 0], pos, neg)
    _sample(p, "vanilla", _apply(p, "vanilla", "full", "vanilla"), pos, neg)
    _sample(p, "phantom", ["model", 0], ["phantom", 0], ["phantom", 1])
    _sample(p, "vanilla_no_ref_pass", ["apply_vanilla", 0], pos, neg, ref_scale=0.0, text_scale=0.0)
    _sample(p, "phantom_zero_refs", ["model", 0], ["phantom", 2], ["phantom", 1])
    _sample(p, "ts_gap0", _apply(p, "ts0", "full", "ts", gap=0.0), pos, neg)
    _sample(p, "ts_gap8", _apply(p, "ts8", "full", "ts", gap=8.0), pos, neg)
    _sample(p, "jump_ref_gap8", _apply(p, "jump8", "full", "jump", ref_gap=8.0), pos, neg)
    _sample(p, "gray_two_views", _apply(p, "gray2", "gray2", "ts"), pos, neg)
    _sample(p, "drop_two_views", _apply(p, "drop2", "drop2", "ts"), pos, neg)
    p["sd3"] = {"class_type": "ModelSamplingSD3", "inputs": {"model": ["apply_vanilla", 0], "shift": 5.0}}
    _sample(p, "vanilla_model_shift", ["sd3", 0], pos, neg, shift=0.0)
    p["lora_native"] = {"class_type": "LoraLoaderModelOnly", "inputs": {"model": ["apply_vanilla", 0], "lora_name": ADAPTER, "strength_model": 1.0}}
    p["lora_adapter"] = {"class_type": "MVS2VLoadAdapter", "inputs": {"model": ["apply_vanilla", 0], "adapter_name": ADAPTER, "strength": 1.0}}
    _sample(p, "lora_native", ["lora_native", 0], pos, neg)
    _sample(p, "lora_adapter", ["lora_adapter", 0], pos, neg)
    entry = comfy_server.run(p)
    out = {}
    for path in comfy_server.output_files(entry, "latents"):
        out[path.name.split("_0")[0]] = load_file(str(path))["latent_tensor"].float()
    assert len(out) == 13, sorted(out)
    return out


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def test_output_keeps_the_video_frames_only(latents):
    for name, lat in latents.items():
        assert tuple(lat.shape) == (1, 16, 2, 8, 8), name


def test_vanilla_with_full_slots_is_comfyuis_own_phantom_path(latents):
    assert _max_diff(latents["vanilla"], latents["phantom"]) < 1e-5


def test_no_reference_pass_is_phantoms_zero_reference_pass(latents):
    assert _max_diff(latents["vanilla_no_ref_pass"], latents["phantom_zero_refs"]) < 1e-5
    assert _max_diff(latents["vanilla_no_ref_pass"], latents["vanilla"]) > 1e-3


def test_references_change_the_output(latents):
    assert _max_diff(latents["vanilla"], latents["unpatched"]) > 1e-3


def test_equal_position_ids_give_equal_outputs(latents):
    assert _max_diff(latents["ts_gap0"], latents["vanilla"]) < 1e-6
    assert _max_diff(latents["jump_ref_gap8"], latents["ts_gap8"]) < 1e-6


def test_a_gap_changes_the_output(latents):
    assert _max_diff(latents["ts_gap8"], latents["vanilla"]) > 1e-4


def test_empty_slot_mode_changes_the_output(latents):
    assert _max_diff(latents["drop_two_views"], latents["gray_two_views"]) > 1e-4


def test_composes_with_model_sampling_sd3_and_lora_loaders(latents):
    assert _max_diff(latents["vanilla_model_shift"], latents["vanilla"]) < 1e-6
    assert _max_diff(latents["lora_native"], latents["lora_adapter"]) < 1e-6
    assert _max_diff(latents["lora_adapter"], latents["vanilla"]) > 1e-4

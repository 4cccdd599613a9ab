"""ComfyUI's memory estimate for a sampling counts MV-S2V's reference tokens.

Before sampling, ComfyUI estimates the memory one model call needs (``sampler_helpers.estimate_memory``
-> ``BaseModel.memory_required``) and hands it to ``load_models_gpu``, which decides from it how much
of the model to load and what to offload (--lowvram, --novram, partial loading). For a Wan model the
estimate sees only the video latent's shape, so without help it ignores the reference frames every
patched call appends (ComfyUI's own Phantom path has the same blind spot). Apply MV-S2V adds a
PREPARE_SAMPLING wrapper (``compat.ReferencePlanning``) that counts them.

One prompt samples one step with the tiny Wan2.1 DiT: no references, one subject and two subjects in
4 slots each, and the same under ComfyUI's WanContextWindowsManual with Apply MV-S2V after it and
before it (the two orders of ComfyUI's own window wrapper and ours). A probe records the
``memory_required`` / ``minimum_memory_required`` ComfyUI passes to ``load_models_gpu``, and another
the number of tokens the first transformer block receives in the first model call. The test checks

* 0 references < 1 subject x 4 slots < 2 subjects x 4 slots;
* the estimate grows exactly as the tokens of a model call do: ``M_refs / M_plain`` equals
  ``tokens_refs / tokens_plain`` (video 8 latent frames x 16 patches; one slot = one frame of 16);
* under context windows ComfyUI estimates one window (5 latent frames) and the references are added
  to that, whichever node comes first.

Tolerance: ``memory_required`` is ``sum(batch * frames * height * width) * constants`` (no constant
term, both versions, both attention branches), so two estimates differ only by their token areas,
up to float64 rounding of a few products (~1e-16 each); ``rel=1e-9`` leaves a wide margin for that,
while one latent frame counted wrongly would be off by at least 1/16 (6 %).
"""

from __future__ import annotations

import json

import pytest
from conftest import box_prompt, second_subject_nodes, wan_context_windows_inputs

SIZE, FRAMES = 64, 29  # -> latent [1, 16, 8, 8, 8]: 8 latent frames of 4 x 4 = 16 patches
WINDOW, OVERLAP = 17, 8  # video frames -> 5 latent frames per window, overlap 2
VIDEO_FRAMES, WINDOW_FRAMES, TOKENS_PER_FRAME, SLOTS = 8, 5, 16, 4
MEMORY_LOG, CALL_LOG = "mvs2v_memory_estimate.jsonl", "mvs2v_memory_calls.jsonl"
REL = 1e-9


def _prompt(server) -> dict:
    p = box_prompt(SIZE, FRAMES)
    ball = second_subject_nodes(p)
    for name, subjects in (("one", {"subject_1": ["box", 0]}), ("two", {"subject_1": ["box", 0], "subject_2": ball})):
        p[f"refs_{name}"] = {"class_type": "MVS2VReferenceSet", "inputs": {"slots_per_subject": SLOTS, "empty_slot_mode": "gray", **subjects}}
        p[f"enc_{name}"] = {"class_type": "MVS2VEncodeReferences", "inputs": {"vae": ["vae", 0], "references": [f"refs_{name}", 0], "width": SIZE, "height": SIZE}}
    p["ctx"] = {"class_type": "WanContextWindowsManual", "inputs": wan_context_windows_inputs(server, ["model", 0], WINDOW, OVERLAP, "standard_static")}
    variants = {
        "plain": ["model", 0],
        "one": _apply(p, "one", ["model", 0], "one"),
        "two": _apply(p, "two", ["model", 0], "two"),
        "ctx_plain": ["ctx", 0],
        "ctx_one_apply_first": _context(p, server, "ctx_after", _apply(p, "one_b", ["model", 0], "one")),
        "ctx_one_windows_first": _apply(p, "one_c", ["ctx", 0], "one"),
        "ctx_two_windows_first": _apply(p, "two_c", ["ctx", 0], "two"),
    }
    for tag, model in variants.items():
        p[f"calls_{tag}"] = {"class_type": "MVS2VTest_RecordCalls", "inputs": {"model": model, "tag": tag, "log_name": CALL_LOG}}
        p[f"mem_{tag}"] = {"class_type": "MVS2VTest_RecordMemoryEstimate", "inputs": {"model": [f"calls_{tag}", 0], "tag": tag, "log_name": MEMORY_LOG}}
        p[f"sample_{tag}"] = {"class_type": "MVS2VFlowSampler", "inputs": {
            "model": [f"mem_{tag}", 0], "positive": ["pos", 0], "negative": ["neg", 0], "latent_image": ["latent", 0],
            "seed": 3, "steps": 1, "shift": 5.0, "solver": "euler", "ref_scale": 1.0, "text_scale": 1.0, "denoise": 1.0}}
        p[f"save_{tag}"] = {"class_type": "SaveLatent", "inputs": {"samples": [f"sample_{tag}", 0], "filename_prefix": f"memory/{tag}"}}
    return p


def _apply(p: dict, name: str, model: list, refs: str) -> list:
    p[f"apply_{name}"] = {"class_type": "MVS2VApply", "inputs": {
        "model": model, "encoded_references": [f"enc_{refs}", 0], "scheme": "ts", "gap": 8.0, "ref_gap": 9.0,
        "identity_gap": 24.0, "placement": "after", "ref_timestep": "same"}}
    return [f"apply_{name}", 0]


def _context(p: dict, server, name: str, model: list) -> list:
    p[name] = {"class_type": "WanContextWindowsManual", "inputs": wan_context_windows_inputs(server, model, WINDOW, OVERLAP, "standard_static")}
    return [name, 0]


@pytest.fixture(scope="module")
def records(comfy_server) -> dict:
    out = comfy_server.base / "output"
    for name in (MEMORY_LOG, CALL_LOG):
        (out / name).unlink(missing_ok=True)
    comfy_server.run(_prompt(comfy_server))
    estimates, first_call = {}, {}
    for line in (out / MEMORY_LOG).read_text().splitlines():
        entry = json.loads(line)
        assert len(entry["loads"]) == 1, entry  # one load decision per sampling
        estimates[entry["tag"]] = entry["loads"][0]
    for line in (out / CALL_LOG).read_text().splitlines():
        entry = json.loads(line)
        first_call.setdefault(entry["tag"], entry["tokens"])
    print(json.dumps({"estimates": estimates, "first_call_tokens": first_call}, indent=1))
    return {"estimates": estimates, "tokens": first_call}


def _ratio(records: dict, tag: str, base: str, key: str = "memory_required") -> float:
    est = records["estimates"]
    return est[tag][key] / est[base][key]


@pytest.mark.parametrize("key", ["memory_required", "minimum_memory_required"])
def test_estimate_grows_with_the_reference_slots(records, key):
    est = records["estimates"]
    assert 0 < est["plain"][key] < est["one"][key] < est["two"][key]
    # the tokens the blocks received: video, video + 4 reference frames, video + 8
    tokens = records["tokens"]
    assert tokens["plain"] == VIDEO_FRAMES * TOKENS_PER_FRAME
    assert tokens["one"] == (VIDEO_FRAMES + SLOTS) * TOKENS_PER_FRAME
    assert tokens["two"] == (VIDEO_FRAMES + 2 * SLOTS) * TOKENS_PER_FRAME
    for tag in ("one", "two"):
        assert _ratio(records, tag, "plain", key) == pytest.approx(tokens[tag] / tokens["plain"], rel=REL), tag


@pytest.mark.parametrize("key", ["memory_required", "minimum_memory_required"])
def test_estimate_under_context_windows_is_one_window_plus_the_references(records, key):
    tokens = records["tokens"]
    # ComfyUI's own windowing: the estimate is for one window, and so is the first model call
    assert tokens["ctx_plain"] == WINDOW_FRAMES * TOKENS_PER_FRAME
    assert _ratio(records, "ctx_plain", "plain", key) == pytest.approx(WINDOW_FRAMES / VIDEO_FRAMES, rel=REL)
    for tag, slots in (("ctx_one_apply_first", SLOTS), ("ctx_one_windows_first", SLOTS), ("ctx_two_windows_first", 2 * SLOTS)):
        assert tokens[tag] == (WINDOW_FRAMES + slots) * TOKENS_PER_FRAME, tag
        assert _ratio(records, tag, "ctx_plain", key) == pytest.approx(tokens[tag] / tokens["ctx_plain"], rel=REL), tag

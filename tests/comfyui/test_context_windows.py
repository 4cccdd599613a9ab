"""Long videos with ComfyUI's context windows: every window sees the same references at the same positions.

ComfyUI's WanContextWindowsManual (both 0.3.64 and 0.33.0 have it) makes the sampler run the model on
windows of the video's latent frames and blend the overlapping outputs. Each window call is an
ordinary model call, so MV-S2V's wrapper appends every reference slot to it; what must not happen is
that the references' positions move with the window, which they did when they were placed after
*this call's* video: ComfyUI 0.33.0 gives every window but the first one extra leading frame (its
``causal_window_fix``), and a ``batched`` schedule ends with a shorter window, so the reference
block jumped by a frame or more between windows (a reference "flash" at the window borders).

One prompt samples a 29-frame video (8 latent frames) with the tiny Wan2.1 DiT, one subject in 4
slots, TS-RoPE (gap 8) and references at timestep 0, under WanContextWindowsManual with 17-frame
windows (5 latent frames): ``standard_static`` with an 8-frame overlap (2 latent frames) with Apply
MV-S2V before and after the context node, and ``batched``. Probes record every model call: the window
ComfyUI evaluates, the frames, timesteps and reference latents the model gets, and the rotary table
the first block gets. The test checks, for every call of each sampling:

* the windows cover the video, overlap as asked, and the call's frames are the window's (plus the
  leading frame 0.33.0 adds);
* the reference latents are the encoded references, identical in every window (gate 1 for the
  guidance passes with references, 0 for the pass without);
* the first block's rotary table is exactly the one of: the window's video at positions from 0
  (what ComfyUI's own Wan model gives a window) followed by the references at the positions
  ``mvs2v_core`` gives a video of ``context_length`` latent frames (+1 where the version adds a
  leading frame), the same in every window;
* the timesteps are extended over the window's frames and the 4 reference frames (zeros).
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import box_prompt, wan_context_windows_inputs
from safetensors import safe_open
from safetensors.torch import load_file

from mvs2v_core.model.rope import rope_cos_sin
from mvs2v_core.references.layout import ReferenceLayout
from mvs2v_core.references.positions import build_position_ids
from mvs2v_core.references.settings import PositionScheme

SIZE, FRAMES = 64, 29  # -> latent [1, 16, 8, 8, 8]: 8 latent frames of 4 x 4 patches
VIDEO_FRAMES, GRID_HW, SLOTS, HEAD_DIM = 8, (4, 4), 4, 128
WINDOW, OVERLAP = 17, 8  # video frames -> 5 latent frames, overlap 2
WINDOW_FRAMES, WINDOW_OVERLAP = 5, 2
GAP = 8.0
FOLDER = "mvs2v_windows"
SAMPLINGS = {  # tag: (schedule, overlap in video frames, Apply MV-S2V before the context node)
    "static": ("standard_static", OVERLAP, True),
    "static_windows_first": ("standard_static", OVERLAP, False),
    "batched": ("batched", 0, True),
}
ROPE_ATOL = 1e-5  # ComfyUI forms the same angles (float32 ids x float64 frequencies), cos/sin in float32


def _prompt(server) -> dict:
    p = box_prompt(SIZE, FRAMES)
    p["refs"] = {"class_type": "MVS2VReferenceSet", "inputs": {"slots_per_subject": SLOTS, "empty_slot_mode": "gray", "subject_1": ["box", 0]}}
    p["enc"] = {"class_type": "MVS2VEncodeReferences", "inputs": {"vae": ["vae", 0], "references": ["refs", 0], "width": SIZE, "height": SIZE}}
    for tag, (schedule, overlap, apply_first) in SAMPLINGS.items():
        if apply_first:
            _apply(p, f"apply_{tag}", ["model", 0])
            p[f"ctx_{tag}"] = {"class_type": "WanContextWindowsManual", "inputs": wan_context_windows_inputs(server, [f"apply_{tag}", 0], WINDOW, overlap, schedule)}
            patched = [f"ctx_{tag}", 0]
        else:
            p[f"ctx_{tag}"] = {"class_type": "WanContextWindowsManual", "inputs": wan_context_windows_inputs(server, ["model", 0], WINDOW, overlap, schedule)}
            patched = _apply(p, f"apply_{tag}", [f"ctx_{tag}", 0])
        p[f"probe_{tag}"] = {"class_type": "MVS2VTest_RecordWindows", "inputs": {"model": patched, "tag": tag, "folder": FOLDER}}
        p[f"sample_{tag}"] = {"class_type": "MVS2VFlowSampler", "inputs": {
            "model": [f"probe_{tag}", 0], "positive": ["pos", 0], "negative": ["neg", 0], "latent_image": ["latent", 0],
            "seed": 5, "steps": 2, "shift": 5.0, "solver": "euler", "ref_scale": 5.0, "text_scale": 7.5, "denoise": 1.0}}
        p[f"save_{tag}"] = {"class_type": "SaveLatent", "inputs": {"samples": [f"sample_{tag}", 0], "filename_prefix": f"windows/{tag}"}}
    p["inputs"] = {"class_type": "MVS2VTest_SaveSamplingInputs", "inputs": {"model": ["apply_static", 0], "filename_prefix": "windows/inputs"}}
    return p


def _apply(p: dict, name: str, model: list) -> list:
    p[name] = {"class_type": "MVS2VApply", "inputs": {
        "model": model, "encoded_references": ["enc", 0], "scheme": "ts", "gap": GAP, "ref_gap": 9.0,
        "identity_gap": 24.0, "placement": "after", "ref_timestep": "zero"}}
    return [name, 0]


def _load_call(path) -> dict:
    with safe_open(str(path), "pt") as f:
        meta = {k: json.loads(v) for k, v in f.metadata().items()}
    return {**meta, **load_file(str(path))}


@pytest.fixture(scope="module")
def run(comfy_server) -> dict:
    folder = comfy_server.base / "output" / FOLDER
    if folder.exists():
        for old in folder.iterdir():
            old.unlink()
    entry = comfy_server.run(_prompt(comfy_server))
    calls = {tag: [_load_call(f) for f in sorted(folder.glob(f"{tag}_[0-9]*.safetensors"))] for tag in SAMPLINGS}
    inputs = load_file(str(comfy_server.base / "output" / "windows" / "inputs.safetensors"))
    latents = {p.name.split("_0")[0]: load_file(str(p))["latent_tensor"] for p in comfy_server.output_files(entry, "latents")}
    for tag, cs in calls.items():
        print(tag, [(c["index_list"], c["anchor"], c["x_shape"][2], c["tokens"]) for c in cs])
    return {"calls": calls, "ref_latents": inputs["ref_latents"], "latents": latents}


def _reference_basis(calls: list) -> int:
    """Latent frames the references are placed after: the window length, +1 where ComfyUI adds a leading frame."""
    return WINDOW_FRAMES + int(any(c["anchor"] is not None for c in calls))


def _expected_rope(frames: int, basis: int) -> tuple[torch.Tensor, torch.Tensor]:
    layout = ReferenceLayout.build([["front", "left", "back", "right"]], SLOTS)
    scheme = PositionScheme("ts", gap=GAP)
    video = build_position_ids((frames, *GRID_HW), layout, scheme)[: frames * GRID_HW[0] * GRID_HW[1]]
    refs = build_position_ids((basis, *GRID_HW), layout, scheme)[basis * GRID_HW[0] * GRID_HW[1] :]
    return rope_cos_sin(torch.cat([video, refs]), HEAD_DIM)


@pytest.mark.parametrize("tag", list(SAMPLINGS))
def test_windows_cover_the_video_and_each_call_gets_its_window(run, tag):
    calls = run["calls"][tag]
    assert len(calls) >= 4, len(calls)  # 2 steps x at least 2 windows
    windows = {tuple(c["index_list"]) for c in calls}
    assert len(windows) >= 2 and set().union(*windows) == set(range(VIDEO_FRAMES)), windows
    shared = max(len(set(a) & set(b)) for a in windows for b in windows if a != b)
    assert shared == (WINDOW_OVERLAP if SAMPLINGS[tag][1] else 0), windows
    for c in calls:
        anchor = 0 if c["anchor"] is None else 1
        assert c["window_dim"] == 2 and c["x_shape"][2] == len(c["index_list"]) + anchor, c
        assert len(c["index_list"]) <= WINDOW_FRAMES


@pytest.mark.parametrize("tag", list(SAMPLINGS))
def test_every_window_gets_every_reference_slot(run, tag):
    ref = run["ref_latents"]
    assert tuple(ref.shape) == (1, 16, SLOTS, 8, 8)
    first = run["calls"][tag][0]["refs"]
    for c in run["calls"][tag]:
        refs = c["refs"]
        assert torch.equal(refs, first)
        gates = [float(refs[i].abs().amax() > 0) for i in range(refs.shape[0])]
        assert gates.count(1.0) >= 1, gates
        for i, g in enumerate(gates):  # the no-reference guidance pass carries zeros, the others the references
            assert torch.allclose(refs[i : i + 1], ref * g, atol=1e-6, rtol=0)


@pytest.mark.parametrize("tag", list(SAMPLINGS))
def test_every_window_sees_the_references_at_the_same_positions(run, tag):
    calls = run["calls"][tag]
    basis = _reference_basis(calls)
    ref_tokens = SLOTS * GRID_HW[0] * GRID_HW[1]
    first_refs = calls[0]["pe"][:, -ref_tokens:]
    for c in calls:
        frames, pe = c["x_shape"][2], c["pe"]
        assert c["tokens"] == pe.shape[1] == frames * GRID_HW[0] * GRID_HW[1] + ref_tokens
        assert torch.equal(pe[:, -ref_tokens:], first_refs)  # bit for bit in every window
        cos, sin = _expected_rope(frames, basis)
        got_cos, got_sin = pe[0, :, 0, :, 0, 0], pe[0, :, 0, :, 1, 0]
        assert torch.allclose(got_cos, cos, atol=ROPE_ATOL, rtol=0) and torch.allclose(got_sin, sin, atol=ROPE_ATOL, rtol=0), c["index_list"]


def test_apply_before_or_after_the_context_node_places_the_references_alike(run):
    a, b = run["calls"]["static"], run["calls"]["static_windows_first"]
    assert [c["index_list"] for c in a] == [c["index_list"] for c in b]
    for ca, cb in zip(a, b):
        assert torch.equal(ca["pe"], cb["pe"])


@pytest.mark.parametrize("tag", list(SAMPLINGS))
def test_window_timesteps_extend_over_the_reference_frames(run, tag):
    for c in run["calls"][tag]:
        frames, t = c["x_shape"][2], c["timestep"]
        assert tuple(t.shape) == (c["refs"].shape[0], frames + SLOTS), c["index_list"]
        video, refs = t[:, :frames], t[:, frames:]
        assert bool((video > 0).all()) and torch.equal(video, video[:, :1].expand_as(video))
        assert bool((refs == 0).all())


@pytest.mark.parametrize("tag", list(SAMPLINGS))
def test_windowed_sampling_returns_the_whole_video(run, tag):
    lat = run["latents"][tag]
    assert tuple(lat.shape) == (1, 16, VIDEO_FRAMES, 8, 8) and bool(torch.isfinite(lat).all())

"""Every API workflow in workflows/ runs end to end in ComfyUI on CPU with tiny weights (the toy demo
workflow, which has its own bundled model, in test_toy_demo.py), and every UI twin matches its API workflow."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from conftest import ADAPTER, DIT_WAN21, DIT_WAN22_5B, REPO, VAE_WAN21, VAE_WAN22

WORKFLOWS = sorted((REPO / "workflows").glob("*_api.json"))
# The toy demo workflow brings its own bundled model and runs at full settings in test_toy_demo.py.
TINY_WEIGHT_WORKFLOWS = [w for w in WORKFLOWS if "MVS2VLoadToyDemoModel" not in w.read_text()]
SIZE, FRAMES, STEPS = 64, 5, 2


def adapt_for_test(api: dict) -> dict:
    """Swap the big files for the test's tiny ones and shrink size / length / steps."""
    api = copy.deepcopy(api)
    for nid, node in list(api.items()):
        kind, inputs = node["class_type"], node["inputs"]
        if kind == "CLIPLoader":
            del api[nid]
            continue
        if kind == "CLIPTextEncode":
            api[nid] = {"class_type": "MVS2VTest_TextConditioning", "inputs": {"text": inputs["text"]}}
            continue
        if kind == "CLIPVisionLoader":
            api[nid] = {"class_type": "MVS2VTest_TinyClipVision", "inputs": {"seed": 0}}
            continue
        if kind == "UNETLoader":
            inputs["unet_name"] = DIT_WAN22_5B if "wan2.2" in inputs["unet_name"] else DIT_WAN21
        if kind == "VAELoader":
            inputs["vae_name"] = VAE_WAN22 if "2.2" in inputs["vae_name"] else VAE_WAN21
        if kind == "MVS2VLoadAdapter":
            inputs["adapter_name"] = ADAPTER
        if "width" in inputs and not isinstance(inputs["width"], list):
            inputs["width"], inputs["height"] = SIZE, SIZE
        if kind in ("EmptyHunyuanLatentVideo", "Wan22ImageToVideoLatent"):
            inputs["length"] = FRAMES
        if kind == "MVS2VFlowSampler":
            inputs["steps"] = STEPS
    return api


def count_frames(path: Path) -> int:
    import av

    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


@pytest.mark.parametrize("workflow", TINY_WEIGHT_WORKFLOWS, ids=lambda p: p.stem)
def test_api_workflow_runs_end_to_end(comfy_server, workflow):
    api = json.loads(workflow.read_text())
    entry = comfy_server.run(adapt_for_test(api))
    videos = [p for p in comfy_server.output_files(entry, "images") + comfy_server.output_files(entry, "videos")
              if p.suffix in (".mp4", ".webm", ".webp", ".mov")]
    assert len(videos) == 1, entry.get("outputs")
    assert videos[0].exists()
    assert count_frames(videos[0]) == FRAMES
    previews = [p for p in comfy_server.output_files(entry, "images") if p.suffix == ".png"]
    assert previews and all(p.exists() for p in previews)  # the slot preview grid


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.stem)
def test_ui_twin_matches_api_workflow(comfy_server, workflow):
    api = json.loads(workflow.read_text())
    ui = json.loads(workflow.with_name(workflow.name.replace("_api.json", ".json")).read_text())
    info = comfy_server.get("/object_info")
    nodes = [n for n in ui["nodes"] if n["type"] != "Note"]
    assert sorted(n["type"] for n in nodes) == sorted(n["class_type"] for n in api.values())
    for n in nodes:
        assert n["type"] in info, f"{n['type']} is not a node of this ComfyUI"
    by_id = {n["id"]: n for n in nodes}
    api_links = sorted((api[src]["class_type"], slot, node["class_type"], name)
                       for node in api.values() for name, v in node["inputs"].items() if isinstance(v, list)
                       for src, slot in [v])
    ui_links = sorted((by_id[l[1]]["type"], l[2], by_id[l[3]]["type"], by_id[l[3]]["inputs"][l[4]]["name"]) for l in ui["links"])
    assert ui_links == api_links

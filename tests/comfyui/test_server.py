"""ComfyUI starts with the pack, imports it cleanly, and lists every node with its schema."""

from __future__ import annotations

import re

EXPECTED_NODES = {
    "MVS2VSubject": (["images", "name", "view_labels", "frontal_view"], ["mask"], ["MVS2V_SUBJECT"]),
    "MVS2VReferenceSet": (["slots_per_subject", "empty_slot_mode", "subject_1"], ["subject_2", "subject_16"],
                          ["MVS2V_REFERENCE_SET", "IMAGE"]),
    "MVS2VLoadReferenceFolder": (["folder", "slots_per_subject", "empty_slot_mode"], [], ["MVS2V_REFERENCE_SET", "IMAGE"]),
    "MVS2VEncodeReferences": (["vae", "references", "width", "height"], [], ["MVS2V_ENCODED_REFERENCES"]),
    "MVS2VLoadAdapter": (["model", "adapter_name", "strength"], [], ["MODEL", "MVS2V_ADAPTER"]),
    "MVS2VApply": (["model", "encoded_references", "scheme", "gap", "ref_gap", "identity_gap", "placement", "ref_timestep"],
                   ["adapter"], ["MODEL"]),
    "MVS2VMFIEncode": (["conditioning", "clip_vision", "references", "adapter", "width", "height"], [], ["CONDITIONING"]),
    "MVS2VFlowSampler": (["model", "positive", "negative", "latent_image", "seed", "steps", "shift", "solver",
                          "ref_scale", "text_scale", "denoise"], ["low_noise_model", "boundary"], ["LATENT"]),
    "MVS2VFlowSolver": (["solver"], [], ["SAMPLER"]),
    "MVS2VReferenceGuider": (["model", "positive", "negative", "ref_scale", "text_scale"], [], ["GUIDER"]),
    "MVS2VLoadToyDemoModel": ([], [], ["MODEL", "VAE", "MVS2V_ADAPTER", "MVS2V_TOY_TEXT_ENCODER", "MVS2V_TOY_DEMO"]),
    "MVS2VToyScene": (["demo", "scene"], [], ["MVS2V_REFERENCE_SET", "STRING", "IMAGE", "LATENT", "MVS2V_TOY_SCENE"]),
    "MVS2VToyTextEncode": (["text_encoder", "text"], [], ["CONDITIONING"]),
    "MVS2VToyEvaluate": (["images", "scene"], [], ["STRING", "IMAGE"]),
}


def test_pack_imports_cleanly(comfy_server):
    log = comfy_server.log()
    assert re.search(r"seconds: .*custom_nodes[/\\]mvs2v\s*$", log, re.MULTILINE), log[-3000:]
    assert "(IMPORT FAILED)" not in log, log[-3000:]
    for line in log.splitlines():
        assert not ("mvs2v" in line and ("Traceback" in line or "Cannot import" in line or "Skip" in line)), line
    assert "Automatically register web folder" in log or "web" in log


def test_object_info_lists_every_node_with_its_schema(comfy_server):
    info = comfy_server.get("/object_info")
    ours = sorted(k for k in info if k.startswith("MVS2V") and not k.startswith("MVS2VTest_"))
    assert ours == sorted(EXPECTED_NODES)
    for node_id, (required, optional, outputs) in EXPECTED_NODES.items():
        node = info[node_id]
        assert node["category"].startswith("mvs2v/"), node_id
        assert node["python_module"].endswith("mvs2v"), node["python_module"]
        assert list(node["input"]["required"]) == required, node_id
        for name in optional:
            assert name in node["input"].get("optional", {}), (node_id, name)
        assert node["output"] == outputs, node_id
        for section in ("required", "optional"):
            for name, spec in node["input"].get(section, {}).items():
                assert len(spec) > 1 and spec[1].get("tooltip"), f"{node_id}.{name} has no tooltip"


def test_web_extension_is_served(comfy_server):
    scripts = comfy_server.get("/extensions")
    ours = [s for s in scripts if "/extensions/mvs2v/" in s]
    assert ours, scripts

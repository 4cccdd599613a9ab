"""Writes the example workflows: API format (``*_api.json``) and UI format (``*.json``) twins.

    python workflows/build.py OBJECT_INFO.json

``OBJECT_INFO.json`` is ComfyUI's ``/object_info`` with the mvs2v pack installed: it gives each
node's widget order and output names, which the UI format needs. The workflows themselves are
defined below as API prompts; the UI twin is derived from them (nodes laid out left to right by
depth), so the two never disagree. tests/comfyui/ runs every API workflow and checks that the UI
twin matches it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
NEGATIVE = "blurry, static, low quality, deformed, extra limbs, text, watermark"


def _text_encoders(api: dict, prompt: str) -> None:
    api["clip"] = {"class_type": "CLIPLoader", "inputs": {"clip_name": "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "type": "wan", "device": "default"}}
    api["positive"] = {"class_type": "CLIPTextEncode", "inputs": {"text": prompt, "clip": ["clip", 0]}}
    api["negative"] = {"class_type": "CLIPTextEncode", "inputs": {"text": NEGATIVE, "clip": ["clip", 0]}}


def _decode_and_save(api: dict, sampler: str, vae: str, fps: int, prefix: str) -> None:
    api["decode"] = {"class_type": "VAEDecode", "inputs": {"samples": [sampler, 0], "vae": [vae, 0]}}
    api["video"] = {"class_type": "CreateVideo", "inputs": {"images": ["decode", 0], "fps": fps}}
    api["save"] = {"class_type": "SaveVideo", "inputs": {"video": ["video", 0], "filename_prefix": prefix, "format": "auto", "codec": "auto"}}


def workflow_a() -> tuple[dict, str]:
    """Phantom-Wan 1.3B, one subject with four labelled views, TS-RoPE."""
    api: dict = {}
    api["model"] = {"class_type": "UNETLoader", "inputs": {"unet_name": "Phantom-Wan-1.3B_fp16.safetensors", "weight_dtype": "default"}}
    api["vae"] = {"class_type": "VAELoader", "inputs": {"vae_name": "wan_2.1_vae.safetensors"}}
    _text_encoders(api, "a toy robot turns around slowly on a wooden table, soft daylight")
    for view in ("front", "left", "back", "right"):
        api[f"image_{view}"] = {"class_type": "LoadImage", "inputs": {"image": f"mvs2v_example_{view}.png"}}
    api["batch_1"] = {"class_type": "ImageBatch", "inputs": {"image1": ["image_front", 0], "image2": ["image_left", 0]}}
    api["batch_2"] = {"class_type": "ImageBatch", "inputs": {"image1": ["batch_1", 0], "image2": ["image_back", 0]}}
    api["batch_3"] = {"class_type": "ImageBatch", "inputs": {"image1": ["batch_2", 0], "image2": ["image_right", 0]}}
    api["subject"] = {"class_type": "MVS2VSubject", "inputs": {"images": ["batch_3", 0], "name": "robot", "view_labels": "front,left,back,right", "frontal_view": -1}}
    api["references"] = {"class_type": "MVS2VReferenceSet", "inputs": {"slots_per_subject": 4, "empty_slot_mode": "gray", "subject_1": ["subject", 0]}}
    api["slot_preview"] = {"class_type": "PreviewImage", "inputs": {"images": ["references", 1]}}
    api["encode"] = {"class_type": "MVS2VEncodeReferences", "inputs": {"vae": ["vae", 0], "references": ["references", 0], "width": 832, "height": 480}}
    api["apply"] = {"class_type": "MVS2VApply", "inputs": {"model": ["model", 0], "encoded_references": ["encode", 0], "scheme": "ts", "gap": 8.0, "ref_gap": 9.0, "identity_gap": 24.0, "placement": "after", "ref_timestep": "same"}}
    api["latent"] = {"class_type": "EmptyHunyuanLatentVideo", "inputs": {"width": 832, "height": 480, "length": 81, "batch_size": 1}}
    api["sampler"] = {"class_type": "MVS2VFlowSampler", "inputs": {"model": ["apply", 0], "positive": ["positive", 0], "negative": ["negative", 0], "latent_image": ["latent", 0], "seed": 42, "steps": 50, "shift": 5.0, "solver": "unipc", "ref_scale": 5.0, "text_scale": 7.5, "denoise": 1.0}}
    _decode_and_save(api, "sampler", "vae", 16, "mvs2v/phantom_ts")
    note = (
        "MV-S2V (a): Phantom-Wan 1.3B, one subject with four views, TS-RoPE.\n\n"
        "Model files:\n"
        "  models/diffusion_models/Phantom-Wan-1.3B_fp16.safetensors (Phantom-Wan 1.3B in the Wan key layout)\n"
        "  models/text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors\n"
        "  models/vae/wan_2.1_vae.safetensors\n"
        "Images (ComfyUI/input): mvs2v_example_front.png, _left, _back, _right (your subject, one view each)."
    )
    return api, note


def workflow_b() -> tuple[dict, str]:
    """Two subjects, Jump-RoPE, an adapter with proxy tokens and MFI."""
    api: dict = {}
    api["model"] = {"class_type": "UNETLoader", "inputs": {"unet_name": "wan2.1_t2v_1.3B_fp16.safetensors", "weight_dtype": "default"}}
    api["vae"] = {"class_type": "VAELoader", "inputs": {"vae_name": "wan_2.1_vae.safetensors"}}
    _text_encoders(api, "a woman in a red coat walks her corgi through a snowy park")
    api["adapter"] = {"class_type": "MVS2VLoadAdapter", "inputs": {"model": ["model", 0], "adapter_name": "mvs2v_jump_wan2.1_1.3b.safetensors", "strength": 1.0}}
    api["clip_vision"] = {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": "clip_vision_h.safetensors"}}
    api["a_front"] = {"class_type": "LoadImage", "inputs": {"image": "mvs2v_example_front.png"}}
    api["a_left"] = {"class_type": "LoadImage", "inputs": {"image": "mvs2v_example_left.png"}}
    api["a_views"] = {"class_type": "ImageBatch", "inputs": {"image1": ["a_front", 0], "image2": ["a_left", 0]}}
    api["subject_a"] = {"class_type": "MVS2VSubject", "inputs": {"images": ["a_views", 0], "name": "woman", "view_labels": "front,left", "frontal_view": 0}}
    api["b_front"] = {"class_type": "LoadImage", "inputs": {"image": "mvs2v_example_b_front.png"}}
    api["subject_b"] = {"class_type": "MVS2VSubject", "inputs": {"images": ["b_front", 0], "name": "corgi", "view_labels": "front", "frontal_view": -1, "mask": ["b_front", 1]}}
    api["references"] = {"class_type": "MVS2VReferenceSet", "inputs": {"slots_per_subject": 4, "empty_slot_mode": "proxy", "subject_1": ["subject_a", 0], "subject_2": ["subject_b", 0]}}
    api["slot_preview"] = {"class_type": "PreviewImage", "inputs": {"images": ["references", 1]}}
    api["encode"] = {"class_type": "MVS2VEncodeReferences", "inputs": {"vae": ["vae", 0], "references": ["references", 0], "width": 832, "height": 480}}
    api["apply"] = {"class_type": "MVS2VApply", "inputs": {"model": ["adapter", 0], "encoded_references": ["encode", 0], "scheme": "jump", "gap": 8.0, "ref_gap": 9.0, "identity_gap": 24.0, "placement": "after", "ref_timestep": "same", "adapter": ["adapter", 1]}}
    api["mfi_positive"] = {"class_type": "MVS2VMFIEncode", "inputs": {"conditioning": ["positive", 0], "clip_vision": ["clip_vision", 0], "references": ["references", 0], "adapter": ["adapter", 1], "width": 832, "height": 480}}
    api["mfi_negative"] = {"class_type": "MVS2VMFIEncode", "inputs": {"conditioning": ["negative", 0], "clip_vision": ["clip_vision", 0], "references": ["references", 0], "adapter": ["adapter", 1], "width": 832, "height": 480}}
    api["latent"] = {"class_type": "EmptyHunyuanLatentVideo", "inputs": {"width": 832, "height": 480, "length": 81, "batch_size": 1}}
    api["sampler"] = {"class_type": "MVS2VFlowSampler", "inputs": {"model": ["apply", 0], "positive": ["mfi_positive", 0], "negative": ["mfi_negative", 0], "latent_image": ["latent", 0], "seed": 7, "steps": 50, "shift": 5.0, "solver": "unipc", "ref_scale": 5.0, "text_scale": 7.5, "denoise": 1.0}}
    _decode_and_save(api, "sampler", "vae", 16, "mvs2v/two_subjects_jump")
    note = (
        "MV-S2V (b): two subjects, HarmoView Jump-RoPE, proxy tokens for empty slots, MFI.\n\n"
        "Model files:\n"
        "  models/diffusion_models/wan2.1_t2v_1.3B_fp16.safetensors\n"
        "  models/text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors\n"
        "  models/vae/wan_2.1_vae.safetensors\n"
        "  models/clip_vision/clip_vision_h.safetensors (the vision encoder the adapter was trained with)\n"
        "  models/mvs2v/mvs2v_jump_wan2.1_1.3b.safetensors (an mvs2v adapter trained with jump, 4 slots, proxy)\n"
        "Images (ComfyUI/input): mvs2v_example_front.png + _left (subject 1), mvs2v_example_b_front.png "
        "(subject 2; its alpha channel is the mask)."
    )
    return api, note


def workflow_c() -> tuple[dict, str]:
    """Wan2.2 TI2V 5B with references from a folder, TS-RoPE."""
    api: dict = {}
    api["model"] = {"class_type": "UNETLoader", "inputs": {"unet_name": "wan2.2_ti2v_5B_fp16.safetensors", "weight_dtype": "default"}}
    api["vae"] = {"class_type": "VAELoader", "inputs": {"vae_name": "wan2.2_vae.safetensors"}}
    _text_encoders(api, "a box and a ball roll across a sunny kitchen floor")
    api["references"] = {"class_type": "MVS2VLoadReferenceFolder", "inputs": {"folder": "mvs2v_refs", "slots_per_subject": 4, "empty_slot_mode": "gray"}}
    api["slot_preview"] = {"class_type": "PreviewImage", "inputs": {"images": ["references", 1]}}
    api["encode"] = {"class_type": "MVS2VEncodeReferences", "inputs": {"vae": ["vae", 0], "references": ["references", 0], "width": 1280, "height": 704}}
    api["apply"] = {"class_type": "MVS2VApply", "inputs": {"model": ["model", 0], "encoded_references": ["encode", 0], "scheme": "ts", "gap": 8.0, "ref_gap": 9.0, "identity_gap": 24.0, "placement": "after", "ref_timestep": "same"}}
    api["latent"] = {"class_type": "Wan22ImageToVideoLatent", "inputs": {"vae": ["vae", 0], "width": 1280, "height": 704, "length": 121, "batch_size": 1}}
    api["sampler"] = {"class_type": "MVS2VFlowSampler", "inputs": {"model": ["apply", 0], "positive": ["positive", 0], "negative": ["negative", 0], "latent_image": ["latent", 0], "seed": 3, "steps": 40, "shift": 5.0, "solver": "unipc", "ref_scale": 5.0, "text_scale": 5.0, "denoise": 1.0}}
    _decode_and_save(api, "sampler", "vae", 24, "mvs2v/wan22_5b_ts")
    note = (
        "MV-S2V (c): Wan2.2 TI2V 5B, references from a folder, TS-RoPE.\n\n"
        "Model files:\n"
        "  models/diffusion_models/wan2.2_ti2v_5B_fp16.safetensors\n"
        "  models/text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors\n"
        "  models/vae/wan2.2_vae.safetensors\n"
        "Images: ComfyUI/input/mvs2v_refs/<subject>/front.png, left.png, back.png, right.png "
        "(one subfolder per subject). Width and height must be multiples of 32 for Wan2.2 5B."
    )
    return api, note


TOY_DEMO = HERE.parent / "mvs2v_toy" / "assets" / "toy_demo"


def toy_demo_settings() -> tuple[dict, dict]:
    """The bundled toy model's ``model.json`` and its adapter's metadata (read from the safetensors header)."""
    info = json.loads((TOY_DEMO / "model.json").read_text())
    with open(TOY_DEMO / "adapter.safetensors", "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    return info, json.loads(header["__metadata__"]["mvs2v"])


def workflow_d() -> tuple[dict, str]:
    """The bundled toy demo model on a held-out toy scene: `mvs2v demo` inside ComfyUI."""
    info, adapter = toy_demo_settings()
    sampler, scheme = info["sampler"], adapter["position_scheme"]
    scene = seed = 0  # `mvs2v demo --seed 0`: scene 0, noise seed 0
    api: dict = {}
    api["loader"] = {"class_type": "MVS2VLoadToyDemoModel", "inputs": {}}
    api["scene"] = {"class_type": "MVS2VToyScene", "inputs": {"demo": ["loader", 4], "scene": scene}}
    api["positive"] = {"class_type": "MVS2VToyTextEncode", "inputs": {"text_encoder": ["loader", 3], "text": ["scene", 1]}}
    api["negative"] = {"class_type": "MVS2VToyTextEncode", "inputs": {"text_encoder": ["loader", 3], "text": ""}}
    api["encode"] = {"class_type": "MVS2VEncodeReferences", "inputs": {"vae": ["loader", 1], "references": ["scene", 0], "width": info["width"], "height": info["height"]}}
    api["apply"] = {"class_type": "MVS2VApply", "inputs": {
        "model": ["loader", 0], "encoded_references": ["encode", 0], "scheme": scheme["name"], "gap": float(scheme.get("gap", 8.0)),
        "ref_gap": float(scheme.get("ref_gap", 9.0)), "identity_gap": float(scheme.get("identity_gap", 24.0)),
        "placement": scheme.get("placement", "after"), "ref_timestep": adapter["ref_timestep"], "adapter": ["loader", 2]}}
    api["sampler"] = {"class_type": "MVS2VFlowSampler", "inputs": {
        "model": ["apply", 0], "positive": ["positive", 0], "negative": ["negative", 0], "latent_image": ["scene", 3],
        "seed": seed, "steps": int(sampler["steps"]), "shift": float(sampler["shift"]), "solver": sampler["solver"],
        "ref_scale": float(sampler["ref_scale"]), "text_scale": float(sampler["text_scale"]), "denoise": 1.0}}
    api["decode"] = {"class_type": "VAEDecode", "inputs": {"samples": ["sampler", 0], "vae": ["loader", 1]}}
    api["save"] = {"class_type": "SaveAnimatedWEBP", "inputs": {"images": ["decode", 0], "filename_prefix": "mvs2v/toy_demo", "fps": 8.0, "lossless": True, "quality": 100, "method": "default"}}
    api["evaluate"] = {"class_type": "MVS2VToyEvaluate", "inputs": {"images": ["decode", 0], "scene": ["scene", 4]}}
    api["strip"] = {"class_type": "SaveImage", "inputs": {"images": ["evaluate", 1], "filename_prefix": "mvs2v/toy_demo_strip"}}
    note = (
        "MV-S2V (d): the bundled toy demo model, as `mvs2v demo --seed 0` (no downloads, runs on CPU).\n\n"
        f"A {info['parameters'] / 1e6:.1f} M-parameter Wan DiT trained on the hidden-colour toy worlds W1/W2 (mvs2v_toy/assets/toy_demo), "
        f"with the toy codec and text encoder. Toy Scene renders held-out scene N (never trained on) with its "
        f"reference views ({', '.join(info['eval_views'])}); the sampler uses model.json's settings "
        f"({sampler['solver']}, {sampler['steps']} steps, shift {sampler['shift']}, ref_scale {sampler['ref_scale']}, "
        f"text_scale {sampler['text_scale']}); set the scene and the seed to the same N to match `mvs2v demo --seed N`.\n"
        "Output: output/mvs2v/toy_demo_*.webp (lossless animated WebP: exact 8-bit RGB frames), "
        "the strip references | generated | truth, and the metrics (PSNR, SSIM, S_v->r / S_r->v, face accuracy)."
    )
    return api, note


WORKFLOWS = {
    "a_phantom_1.3b_one_subject_ts": workflow_a,
    "b_two_subjects_jump_adapter_mfi": workflow_b,
    "c_wan2.2_5b_reference_folder": workflow_c,
    "d_toy_demo": workflow_d,
}


# ---- API -> UI -----------------------------------------------------------------------------------

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


def _spec_inputs(info: dict) -> list[tuple[str, str, dict]]:
    out = []
    for section in ("required", "optional"):
        for name, spec in info["input"].get(section, {}).items():
            typ = spec[0]
            opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            out.append((name, "COMBO" if isinstance(typ, list) else typ, opts))
    return out


def _depths(api: dict) -> dict[str, int]:
    depth: dict[str, int] = {}

    def visit(nid: str) -> int:
        if nid not in depth:
            ups = [v[0] for v in api[nid]["inputs"].values() if isinstance(v, list)]
            depth[nid] = 1 + max((visit(u) for u in ups), default=-1)
        return depth[nid]

    for nid in api:
        visit(nid)
    return depth


def api_to_ui(api: dict, object_info: dict, note: str) -> dict:
    ids = {nid: i + 1 for i, nid in enumerate(api)}
    depth = _depths(api)
    column_y: dict[int, float] = {}
    nodes: list[dict] = []
    outputs: dict[tuple[str, int], list[int]] = {}
    link_id = 0
    pending = []
    for nid, node in api.items():
        info = object_info[node["class_type"]]
        inputs, widgets = [], []
        for name, typ, opts in _spec_inputs(info):
            value = node["inputs"].get(name)
            if isinstance(value, list):
                link_id += 1
                src, slot = value
                inputs.append({"name": name, "type": typ, "link": link_id})
                if typ in WIDGET_TYPES:  # a widget fed by a link: LiteGraph keeps the widget and its value
                    inputs[-1]["widget"] = {"name": name}
                    widgets.append(opts.get("default"))
                    if opts.get("control_after_generate"):
                        widgets.append("fixed")
                pending.append([link_id, ids[src], slot, ids[nid], len(inputs) - 1, object_info[api[src]["class_type"]]["output"][slot]])
                outputs.setdefault((src, slot), []).append(link_id)
            elif typ in WIDGET_TYPES and value is not None:
                widgets.append(value)
                if opts.get("control_after_generate"):
                    widgets.append("fixed")
            elif typ in WIDGET_TYPES and name in info["input"].get("required", {}):
                widgets.append(opts.get("default"))
        if node["class_type"] == "LoadImage":
            widgets.append("image")  # the upload button's value
        d = depth[nid]
        y = column_y.get(d, 60.0)
        # LiteGraph's own sizing: one 20 px row per slot pair, 24 px per widget (no title).
        height = 20 * max(len(inputs), len(info["output"])) + 24 * len(widgets) + 16
        if node["class_type"] in ("PreviewImage", "MVS2VReferenceSet", "MVS2VLoadReferenceFolder", "LoadImage"):
            height += 220
        column_y[d] = y + height + 60
        nodes.append({
            "id": ids[nid], "type": node["class_type"], "pos": [40 + 330 * d, y], "size": [300, height],
            "flags": {}, "order": 0, "mode": 0, "inputs": inputs,
            "outputs": [{"name": n, "type": t, "links": [], "slot_index": i}
                        for i, (n, t) in enumerate(zip(info.get("output_name", info["output"]), info["output"]))],
            "title": node.get("_meta", {}).get("title", info.get("display_name", node["class_type"])),
            "properties": {"Node name for S&R": node["class_type"]}, "widgets_values": widgets,
        })
    inv = {v: k for k, v in ids.items()}
    for n in nodes:
        for out in n["outputs"]:
            out["links"] = outputs.get((inv[n["id"]], out["slot_index"]), [])
    order = sorted(nodes, key=lambda n: (depth[inv[n["id"]]], n["id"]))
    for k, n in enumerate(order):
        n["order"] = k
    note_id = len(nodes) + 1
    nodes.append({"id": note_id, "type": "Note", "pos": [40 + 330 * (max(depth.values()) - 2), max(column_y.values()) + 40], "size": [620, 220], "flags": {}, "order": len(nodes),
                  "mode": 0, "inputs": [], "outputs": [], "properties": {}, "widgets_values": [note]})
    return {"last_node_id": note_id, "last_link_id": link_id, "nodes": nodes, "links": pending, "groups": [],
            "config": {}, "extra": {"mvs2v": {"api_twin": True}}, "version": 0.4}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__)
        return 2
    object_info = json.loads(Path(argv[1]).read_text())
    for name, make in WORKFLOWS.items():
        api, note = make()
        for node in api.values():
            node.setdefault("_meta", {"title": object_info[node["class_type"]].get("display_name", node["class_type"])})
        (HERE / f"{name}_api.json").write_text(json.dumps(api, indent=1) + "\n")
        (HERE / f"{name}.json").write_text(json.dumps(api_to_ui(api, object_info, note), indent=1) + "\n")
        print("wrote", name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

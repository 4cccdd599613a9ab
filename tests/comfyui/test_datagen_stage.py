"""mvs2v-data's generative stage against a real ComfyUI: one generate-images job per item through the
HTTP API (workflows/datagen/test_empty_image_api.json: native EmptyImage -> SaveImage, no model), and
the model workflows of workflows/datagen/ checked against the server's /object_info: every node type
exists, so the only complaint is the model files this test server does not have."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DATAGEN = REPO / "workflows" / "datagen"


def test_generate_images_runs_through_a_real_server(comfy_server, tmp_path: Path, capsys) -> None:
    from PIL import Image

    from mvs2v_data.cli import main

    (tmp_path / "items.jsonl").write_text("".join(json.dumps({"id": f"p{i}", "prompt": f"subject{i}"}) + "\n"
                                                  for i in range(2)))
    (tmp_path / "data.toml").write_text(
        f'[work]\ninputs = "items.jsonl"\n[generate]\nbackend = "comfyui"\nservers = ["{comfy_server.url}"]\n'
        f'timeout = 300.0\nimage_workflow = "{DATAGEN / "test_empty_image_api.json"}"\n')
    assert main(["generate-images", "--config", str(tmp_path / "data.toml"), "--no-progress"]) == 0, capsys.readouterr()
    for i in range(2):
        rec = json.loads((tmp_path / "work" / "items" / f"p{i}.json").read_text())
        assert rec["stages"]["generate-images"]["state"] == "done"
        with Image.open(tmp_path / "work" / rec["image"]) as im:
            assert im.size == (64, 64) and im.convert("RGB").getpixel((5, 5)) == (128, 128, 128)


@pytest.mark.parametrize("name", ["t2i_portrait_api.json", "i2v_orbit_api.json", "view_synthesis_api.json"])
def test_the_model_workflows_lack_only_their_model_files(comfy_server, name: str) -> None:
    from mvs2v_core.comfyui_http import ComfyUIClient, ComfyUIError
    from mvs2v_data.generate import _without_placeholders

    workflow = json.loads((DATAGEN / name).read_text())
    with pytest.raises(ComfyUIError) as e:
        ComfyUIClient(comfy_server.url, retries=0).check_workflow(_without_placeholders(workflow))
    message = str(e.value)
    assert "no node type" not in message, message
    loaders = [n["inputs"][k] for n in workflow.values() for k in ("ckpt_name", "unet_name", "lora_name", "vae_name", "clip_name")
               if k in n["inputs"]]
    assert any(f in message for f in loaders), message


def test_synthesize_views_uploads_the_image_and_fills_the_yaw(comfy_server, tmp_path: Path, capsys) -> None:
    from PIL import Image

    from mvs2v_data.cli import main

    Image.new("RGB", (32, 32), (200, 40, 10)).save(tmp_path / "front.png")
    workflow = {"load": {"class_type": "LoadImage", "inputs": {"image": "{{image}}"}},
                "invert": {"class_type": "ImageInvert", "inputs": {"image": ["load", 0]}},
                "save": {"class_type": "SaveImage", "inputs": {"images": ["invert", 0],
                                                              "filename_prefix": "mvs2v_data/yaw{{yaw}}"}}}
    (tmp_path / "views.json").write_text(json.dumps(workflow))
    (tmp_path / "items.jsonl").write_text(json.dumps({"id": "s", "image": "front.png", "caption": "c"}) + "\n")
    (tmp_path / "data.toml").write_text(
        f'[work]\ninputs = "items.jsonl"\n[generate]\nbackend = "comfyui"\nservers = ["{comfy_server.url}"]\n'
        f'timeout = 300.0\nviews_workflow = "views.json"\nview_yaws = [30.0, -60.0]\n')
    assert main(["synthesize-views", "--config", str(tmp_path / "data.toml"), "--no-progress"]) == 0, capsys.readouterr()
    rec = json.loads((tmp_path / "work" / "items" / "s.json").read_text())
    assert [(v["requested_yaw"], v["source"]) for v in rec["views"]] == [(30.0, "synth"), (-60.0, "synth")]
    for v in rec["views"]:  # the server inverted the uploaded image
        with Image.open(tmp_path / "work" / v["image"]) as im:
            pixel = im.convert("RGB").getpixel((3, 3))
        assert all(abs(p - q) <= 1 for p, q in zip(pixel, (55, 215, 245))), pixel  # 8-bit truncation

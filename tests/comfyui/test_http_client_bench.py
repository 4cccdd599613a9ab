"""The ComfyUI HTTP client (mvs2v_core.comfyui_http) and ``mvs2v bench --comfyui`` against a real ComfyUI.

One server session (the shared ``comfy_server`` fixture): check_workflow's errors for an unknown node
type and a missing model file, an upload round trip through LoadImage -> SaveImage with the output
downloaded, a job that fails mid-run (MV-S2V Subject given more view labels than images), and the
benchmark runner on the shipped toy cases through the pack's toy nodes (each case's frontal view included).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import REPO

from mvs2v_core.comfyui_http import ComfyUIClient, ComfyUIError

TOY_CASES = REPO / "benchmarks" / "cases" / "toy"


def test_client_checks_uploads_runs_downloads_and_reports_failures(comfy_server, tmp_path):
    from PIL import Image

    client = ComfyUIClient(comfy_server.url, timeout=300, retries=1, backoff=0.5)
    assert "system" in client.system_stats()

    with pytest.raises(ComfyUIError, match="has no node type MVS2VNoSuchNode: install the node pack"):
        client.check_workflow({"1": {"class_type": "MVS2VNoSuchNode", "inputs": {}}})
    missing = {"1": {"class_type": "UNETLoader", "inputs": {"unet_name": "no_such_model.safetensors",
                                                           "weight_dtype": "default"}}}
    with pytest.raises(ComfyUIError, match=r"model file 'no_such_model.safetensors' \(node 1 UNETLoader, input "
                                           r"unet_name\) is not on the server"):
        client.check_workflow(missing)
    with pytest.raises(ComfyUIError, match="refused the workflow \\(HTTP 400\\)"):
        client.run({**missing, "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}})

    pixels = np.random.default_rng(0).integers(0, 256, (12, 20, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "mvs2v_client_probe.png")
    workflow = {"load": {"class_type": "LoadImage", "inputs": {"image": "mvs2v_client_probe.png"}},
                "save": {"class_type": "SaveImage", "inputs": {"images": ["load", 0], "filename_prefix": "mvs2v_client/rt"}}}
    client.object_info()  # cached before the upload: check_workflow must look LoadImage up again
    with pytest.raises(ComfyUIError, match="image 'mvs2v_client_probe.png' .* not in ComfyUI's input folder"):
        client.check_workflow(workflow)
    assert client.upload_image(tmp_path / "mvs2v_client_probe.png") == "mvs2v_client_probe.png"
    client.check_workflow(workflow)  # now among LoadImage's choices
    assert client.upload_image(tmp_path / "mvs2v_client_probe.png", subfolder="mvs2v_client") == \
        "mvs2v_client/mvs2v_client_probe.png"
    assert (comfy_server.base / "input" / "mvs2v_client" / "mvs2v_client_probe.png").read_bytes() == \
        (tmp_path / "mvs2v_client_probe.png").read_bytes()
    seen = []
    result = client.run(workflow, progress=seen.append)
    assert [f.kind for f in result.outputs] == ["images"] and result.outputs[0].node_id == "save"
    path = client.download(result.outputs[0], tmp_path)
    assert np.array_equal(np.asarray(Image.open(path).convert("RGB")), pixels)
    print(f"client round trip: {result.seconds:.2f} s, websocket messages seen: {sorted({m['type'] for m in seen})}")
    assert any(m["type"] == "executing" for m in seen)  # the websocket path ran (websocket-client is in the test extra)

    failing = {"img": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": 1, "color": 0}},
               "subject": {"class_type": "MVS2VSubject", "inputs": {"images": ["img", 0], "name": "x",
                                                                    "view_labels": "front,left", "frontal_view": -1}},
               "refs": {"class_type": "MVS2VReferenceSet", "inputs": {"slots_per_subject": 4, "empty_slot_mode": "gray",
                                                                     "subject_1": ["subject", 0]}},
               "save": {"class_type": "SaveImage", "inputs": {"images": ["refs", 1], "filename_prefix": "mvs2v_client/f"}}}
    with pytest.raises(ComfyUIError, match=r"failed at node subject \(MVS2VSubject\): .*give 2 label\(s\) but the "
                                           r"subject has 1 view"):
        client.run(failing)


def test_bench_runs_the_shipped_cases_through_comfyui(comfy_server, tmp_path):
    from mvs2v_core.cli import main

    out = tmp_path / "bench"
    args = ["bench", "--cases", str(TOY_CASES / "cases.jsonl"), "--out", str(out), "--comfyui", comfy_server.url,
            "--workflow", f"comfy_toy={TOY_CASES / 'toy_workflow_api.json'}", "--steps", "3", "--no-plots"]
    assert main(args) == 0, comfy_server.log()[-3000:]
    records = [json.loads(p.read_text()) for p in sorted((out / "results" / "comfy_toy").glob("*.json"))]
    assert [r["case"] for r in records] == ["w1_scene0", "w1_scene1", "w1_scene2", "w1_scene3"]
    from mvs2v_core.pipeline.video_io import read_video

    for r in records:
        assert read_video(out / r["video"]).shape == (9, 32, 32, 3)
        assert r["metrics"]["motion_amplitude"]["value"] >= 0
    assert "comfy_toy,motion_amplitude" in (out / "leaderboard.csv").read_text()
    # {{subject0_frontal}} reached MV-S2V Subject as an int: the start view of each case (front, front, back, back).
    from urllib.request import urlopen

    queued = []
    for r in records:
        prompt_id = r["generation"]["prompt_id"]
        with urlopen(f"{comfy_server.url}/history/{prompt_id}", timeout=30) as reply:
            queued.append(json.load(reply)[prompt_id]["prompt"][2]["subject"]["inputs"]["frontal_view"])
    assert queued == [0, 0, 2, 2] and all(type(v) is int for v in queued)
    assert main(args) == 0  # a rerun reuses every result

    # The same cases through the pipeline API with the bundled model: the same videos, up to ComfyUI's WebP
    # truncation (x 255 then floor, where the CLI rounds) and float noise, as in test_toy_demo.py.
    api = tmp_path / "api"
    assert main(["bench", "--cases", str(TOY_CASES / "cases.jsonl"), "--out", str(api), "--model",
                 f"toy={REPO / 'mvs2v_toy' / 'assets' / 'toy_demo'}", "--steps", "3", "--device", "cpu",
                 "--no-plots"]) == 0
    for r in records:
        comfy = read_video(out / r["video"]).numpy().astype(np.int16)
        cli = read_video(api / "videos" / "toy" / f"{r['case']}.mp4").numpy().astype(np.int16)
        diff = np.abs(comfy - cli)
        print(f"{r['case']}: max |ComfyUI - API| = {diff.max()}/255, mean {diff.mean():.3f}/255")
        assert diff.max() <= 2

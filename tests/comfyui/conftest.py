"""Start a real ComfyUI on CPU with the mvs2v pack and a test-only pack installed.

Set ``COMFYUI_DIR`` to a ComfyUI checkout and, when ComfyUI has its own virtualenv,
``COMFYUI_PYTHON`` to that Python (default: the Python running pytest). Without ``COMFYUI_DIR``
every test here is skipped with that reason (so the README's test command runs without ComfyUI);
``scripts/comfyui_tests.sh``, which CI runs, sets both for the unmodified ComfyUI trees in
``../shared/comfyui`` and fails if any test is skipped.

Weights are written by the tests: tiny Wan-layout DiTs (dim 128 = one 128-wide head, text width
4096, so ComfyUI's own detection takes them for Wan2.1 T2V / Wan2.2 TI2V 5B; the two Wan2.2 A14B
experts have the Wan2.1 T2V layout, and ComfyUI loads them as such), mvs2v adapters, and
Wan VAEs with the real architecture (ComfyUI fixes the VAE width) and deterministic pseudo-random
weights, stored as strided views of short vectors in ``.pt`` files of a few MB (see write_vae.py),
so each server start writes them afresh instead of caching 1.6 GB of safetensors.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
SKIP_REASON = "COMFYUI_DIR is not set: point it at a ComfyUI checkout to run the ComfyUI integration tests"

DIT_WAN21 = "mvs2v_test_wan21_t2v.safetensors"
DIT_WAN22_5B = "mvs2v_test_wan22_ti2v_5b.safetensors"
DIT_WAN22_A14B_HIGH = "mvs2v_test_wan22_t2v_a14b_high_noise.safetensors"
DIT_WAN22_A14B_LOW = "mvs2v_test_wan22_t2v_a14b_low_noise.safetensors"
VAE_WAN21 = "mvs2v_test_wan21_vae.pt"  # .pt: see write_vae.py for why not safetensors
VAE_WAN22 = "mvs2v_test_wan22_vae.pt"
ADAPTER = "mvs2v_test_adapter_jump.safetensors"
TINY_VISION_WIDTH = 64  # testing_pack.TINY_VISION_CONFIG hidden_size


def pytest_collection_modifyitems(config, items):
    if COMFYUI_DIR:
        return
    skip = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if str(HERE) in str(item.fspath):
            item.add_marker(skip)


def comfy_python() -> str:
    return os.environ.get("COMFYUI_PYTHON", sys.executable)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- weights -------------------------------------------------------------------------------------


def write_tiny_dit(path: Path, in_dim: int, seed: int) -> None:
    from mvs2v_core.model.config import WanConfig
    from mvs2v_core.model.transformer import WanDiT
    from mvs2v_core.utils import save_safetensors_atomic

    cfg = WanConfig(dim=128, ffn_dim=256, num_heads=1, num_layers=2, in_dim=in_dim, out_dim=in_dim, text_dim=4096)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = WanDiT(cfg)
    save_safetensors_atomic(model.state_dict(), path)


def write_test_adapter(path: Path) -> None:
    from mvs2v_core.adapter import (
        Adapter,
        AdapterMetadata,
        LoraSpec,
        lora_state_dict,
        save_adapter,
    )
    from mvs2v_core.references.settings import PositionScheme, ReferenceSettings

    gen = torch.Generator().manual_seed(7)
    lora = {f"blocks.{i}.self_attn.q": (torch.randn(4, 128, generator=gen) * 0.05,
                                        torch.randn(128, 4, generator=gen) * 0.05, 4.0) for i in range(2)}
    meta = AdapterMetadata(
        base_family="tiny-test", model_dim=128, text_dim=4096, in_dim=16, num_layers=2,
        references=ReferenceSettings(4, PositionScheme("jump", ref_gap=9, identity_gap=24), "proxy"),
        mfi_in_dim=TINY_VISION_WIDTH,
        lora=LoraSpec(rank=4, alpha=4.0, targets=("self_attn.q",)),
    )
    adapter = Adapter(
        metadata=meta,
        proxy_tokens=torch.randn(4, 128, generator=gen) * 0.5,
        mfi_weight=torch.randn(4096, TINY_VISION_WIDTH, generator=gen) * 0.05,
        mfi_bias=torch.zeros(4096),
        lora=lora_state_dict(lora),
    )
    save_adapter(path, adapter)



def four_view_prompt_nodes(size: int, frames: int) -> dict:
    """API-prompt nodes shared by the patch tests: test text conditionings ("pos", "neg"), an empty
    Wan2.1 video latent ("latent"), the four example views ("img_<view>") and their batch ("b3")."""
    p = {
        "pos": {"class_type": "MVS2VTest_TextConditioning", "inputs": {"text": "a box turns"}},
        "neg": {"class_type": "MVS2VTest_TextConditioning", "inputs": {"text": "blurry"}},
        "latent": {"class_type": "EmptyHunyuanLatentVideo", "inputs": {"width": size, "height": size, "length": frames, "batch_size": 1}},
    }
    for v in ("front", "left", "back", "right"):
        p[f"img_{v}"] = {"class_type": "LoadImage", "inputs": {"image": f"mvs2v_example_{v}.png"}}
    p["b1"] = {"class_type": "ImageBatch", "inputs": {"image1": ["img_front", 0], "image2": ["img_left", 0]}}
    p["b2"] = {"class_type": "ImageBatch", "inputs": {"image1": ["b1", 0], "image2": ["img_back", 0]}}
    p["b3"] = {"class_type": "ImageBatch", "inputs": {"image1": ["b2", 0], "image2": ["img_right", 0]}}
    return p

def box_prompt(size: int, frames: int) -> dict:
    """The tiny Wan2.1 test model ("model") and VAE ("vae"), :func:`four_view_prompt_nodes`, and the box's
    MV-S2V Subject node ("box") over the four example views: the start of the planning tests' prompts."""
    p = {
        "model": {"class_type": "UNETLoader", "inputs": {"unet_name": DIT_WAN21, "weight_dtype": "default"}},
        "vae": {"class_type": "VAELoader", "inputs": {"vae_name": VAE_WAN21}},
    }
    p.update(four_view_prompt_nodes(size, frames))
    p["box"] = {"class_type": "MVS2VSubject", "inputs": {"images": ["b3", 0], "name": "box", "view_labels": "front,left,back,right", "frontal_view": -1}}
    return p


def second_subject_nodes(p: dict) -> list:
    """Adds the ball's four example views ("imgb_<view>") and their batch ("bb3") to prompt ``p``; returns
    an MV-S2V Subject node output for it ("subject_ball")."""
    for v in ("front", "left", "back", "right"):
        p[f"imgb_{v}"] = {"class_type": "LoadImage", "inputs": {"image": f"mvs2v_example_b_{v}.png"}}
    p["bb1"] = {"class_type": "ImageBatch", "inputs": {"image1": ["imgb_front", 0], "image2": ["imgb_left", 0]}}
    p["bb2"] = {"class_type": "ImageBatch", "inputs": {"image1": ["bb1", 0], "image2": ["imgb_back", 0]}}
    p["bb3"] = {"class_type": "ImageBatch", "inputs": {"image1": ["bb2", 0], "image2": ["imgb_right", 0]}}
    p["subject_ball"] = {"class_type": "MVS2VSubject", "inputs": {"images": ["bb3", 0], "name": "ball", "view_labels": "front,left,back,right", "frontal_view": -1}}
    return ["subject_ball", 0]


def wan_context_windows_inputs(server: "ComfyServer", model: list, length: int, overlap: int, schedule: str) -> dict:
    """Inputs of ComfyUI's WanContextWindowsManual (both versions; lengths in video frames, 4n + 1): the
    given ones, fuse method pyramid, FreeNoise off, and every other input at this version's default."""
    spec = server.get("/object_info/WanContextWindowsManual")["WanContextWindowsManual"]["input"]
    inputs = {"model": model, "context_length": length, "context_overlap": overlap, "context_schedule": schedule,
              "fuse_method": "pyramid", "freenoise": False}
    for name, entry in {**spec.get("required", {}), **spec.get("optional", {})}.items():
        if name not in inputs and len(entry) > 1 and isinstance(entry[1], dict) and "default" in entry[1]:
            inputs[name] = entry[1]["default"]
    known = {**spec.get("required", {}), **spec.get("optional", {})}
    return {k: v for k, v in inputs.items() if k in known}


def write_reference_images(input_dir: Path, size: int) -> None:
    from mvs2v_toy.demo import draw_view

    for view in ("front", "left", "back", "right"):
        # Opaque views at exactly the video size (letterboxing is then the identity, as Phantom's resize).
        img = draw_view(view, size=size, shape="box")
        flat = img.convert("RGB")
        flat.paste(img, (0, 0), img)
        flat.save(input_dir / f"mvs2v_example_{view}.png")
        draw_view(view, size=size, shape="ball").save(input_dir / f"mvs2v_example_b_{view}.png")
    for subject, shape, views in (("box", "box", ("front", "left", "back")), ("ball", "ball", ("front",))):
        folder = input_dir / "mvs2v_refs" / subject
        folder.mkdir(parents=True, exist_ok=True)
        for view in views:
            draw_view(view, size=size + 16, shape=shape).save(folder / f"{view}.png")


def write_test_vaes(vae_dir: Path) -> None:
    """Write the Wan2.1 and Wan2.2 test VAEs into ``vae_dir`` with ComfyUI's Python (it builds them)."""
    subprocess.run([comfy_python(), str(HERE / "write_vae.py"), COMFYUI_DIR, str(vae_dir / VAE_WAN21),
                    str(vae_dir / VAE_WAN22)], check=True, timeout=300)


# ---- the server ----------------------------------------------------------------------------------


@dataclass
class ComfyServer:
    url: str
    base: Path
    log_path: Path
    process: subprocess.Popen = field(repr=False)

    def get(self, route: str) -> dict:
        with urllib.request.urlopen(self.url + route, timeout=60) as r:
            return json.loads(r.read())

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def queue(self, prompt: dict) -> str:
        body = json.dumps({"prompt": prompt, "client_id": "mvs2v-tests"}).encode()
        req = urllib.request.Request(self.url + "/prompt", data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return json.loads(r.read())["prompt_id"]
        except urllib.error.HTTPError as e:
            raise AssertionError(f"ComfyUI refused the prompt: {e.read().decode(errors='replace')}") from None

    def run(self, prompt: dict, timeout: float = 600) -> dict:
        """Queue ``prompt``, wait for it, return its history entry; raise with ComfyUI's error otherwise."""
        pid = self.queue(prompt)
        end = time.time() + timeout
        while time.time() < end:
            hist = self.get(f"/history/{pid}")
            if pid in hist:
                entry = hist[pid]
                status = entry.get("status", {})
                if status.get("status_str") == "error" or not status.get("completed", True):
                    msgs = [m for m in status.get("messages", []) if m[0] == "execution_error"]
                    raise AssertionError(f"prompt failed: {json.dumps(msgs, indent=1)[:4000]}")
                return entry
            if self.process.poll() is not None:
                raise AssertionError(f"ComfyUI exited:\n{self.log()[-4000:]}")
            time.sleep(0.5)
        raise AssertionError(f"prompt {pid} did not finish in {timeout} s")

    def output_files(self, entry: dict, key: str) -> list[Path]:
        files = []
        for node_out in entry.get("outputs", {}).values():
            for item in node_out.get(key, []):
                folder = {"output": "output", "temp": "temp"}[item.get("type", "output")]
                files.append(self.base / folder / item.get("subfolder", "") / item["filename"])
        return files


@pytest.fixture(scope="session")
def comfy_server(tmp_path_factory) -> ComfyServer:
    if not COMFYUI_DIR:
        pytest.skip(SKIP_REASON)
    base = tmp_path_factory.mktemp("comfyui")
    for sub in ("custom_nodes", "input", "output", "temp", "user", "models/diffusion_models", "models/vae", "models/mvs2v"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    (base / "custom_nodes" / "mvs2v").symlink_to(REPO, target_is_directory=True)
    (base / "custom_nodes" / "mvs2v_testing").symlink_to(HERE / "testing_pack", target_is_directory=True)
    write_tiny_dit(base / "models/diffusion_models" / DIT_WAN21, 16, seed=1)
    write_tiny_dit(base / "models/diffusion_models" / DIT_WAN22_5B, 48, seed=2)
    write_tiny_dit(base / "models/diffusion_models" / DIT_WAN22_A14B_HIGH, 16, seed=3)
    write_tiny_dit(base / "models/diffusion_models" / DIT_WAN22_A14B_LOW, 16, seed=4)
    write_test_adapter(base / "models/mvs2v" / ADAPTER)
    write_test_vaes(base / "models/vae")
    write_reference_images(base / "input", 64)
    yaml = base / "extra_model_paths.yaml"
    yaml.write_text(
        "mvs2v_tests:\n"
        f"  base_path: {base}\n"
        "  custom_nodes: custom_nodes\n"
        "  diffusion_models: models/diffusion_models\n"
        "  vae: models/vae\n"
        "  mvs2v: models/mvs2v\n"
        "  loras: models/mvs2v\n"  # so LoraLoaderModelOnly can load an adapter's LoRA too
    )
    port = _free_port()
    log_path = base / "comfyui.log"
    cmd = [
        comfy_python(), os.path.join(COMFYUI_DIR, "main.py"), "--cpu", "--listen", "127.0.0.1", "--port", str(port),
        "--extra-model-paths-config", str(yaml), "--input-directory", str(base / "input"),
        "--output-directory", str(base / "output"), "--temp-directory", str(base),
        "--user-directory", str(base / "user"), "--disable-auto-launch", "--preview-method", "latent2rgb",
    ]
    log = open(log_path, "w")  # noqa: SIM115 - closed in the finally below, after the server stops
    proc = subprocess.Popen(cmd, cwd=COMFYUI_DIR, stdout=log, stderr=subprocess.STDOUT)
    server = ComfyServer(f"http://127.0.0.1:{port}", base, log_path, proc)
    try:
        end = time.time() + 300
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"ComfyUI did not start:\n{server.log()[-4000:]}")
            try:
                server.get("/system_stats")
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if time.time() > end:
                    raise RuntimeError(f"ComfyUI did not answer in 300 s:\n{server.log()[-4000:]}") from None
                time.sleep(1)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        shutil.rmtree(base / "temp", ignore_errors=True)

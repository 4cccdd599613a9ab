"""The test weights stay cheap: the Wan VAEs that ComfyUI loads are full size, their files small."""

from __future__ import annotations

import json

import torch
from conftest import VAE_WAN21, VAE_WAN22

# ComfyUI's WanVAE parameter counts at the widths its VAE loader builds (Wan2.1 dim 96, Wan2.2 dim 160).
FULL_SIZE = {VAE_WAN21: 126_892_531, VAE_WAN22: 704_688_668}
MAX_FILE_BYTES = 8 * 2**20  # safetensors would need 254 MB and 1.4 GB (fp16)


def test_test_vaes_are_full_size_in_small_files(comfy_server):
    listed = json.dumps(comfy_server.get("/object_info/VAELoader"))
    for name, numel in FULL_SIZE.items():
        assert name in listed, f"ComfyUI's VAELoader does not offer {name}"
        path = comfy_server.base / "models" / "vae" / name
        assert path.stat().st_size < MAX_FILE_BYTES, f"{name}: {path.stat().st_size} bytes"
        sd = torch.load(path, weights_only=True)
        assert sum(t.numel() for t in sd.values()) == numel
        assert all(torch.isfinite(t).all() for t in sd.values()), name

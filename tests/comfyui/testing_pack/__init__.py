"""Test-only ComfyUI node pack (like ComfyUI's own tests/execution/testing_nodes).

It stands in for the big encoders a real workflow loads from disk, so workflows run on CPU in
seconds: a deterministic text "encoder" giving umT5-shaped conditioning [1, 512, 4096], and a
tiny CLIP vision model (ComfyUI's own ClipVisionModel class with a small config). The diffusion
model and the VAE still come from files through ComfyUI's own loaders.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile

import comfy.clip_vision
import torch


def _seed_of(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


class TestTextConditioning:
    """CONDITIONING [1, 512, 4096] drawn from the text's hash (different texts -> different tensors)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"multiline": True, "default": ""})}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "encode"
    CATEGORY = "mvs2v_testing"

    def encode(self, text):
        gen = torch.Generator().manual_seed(_seed_of(text) % (2**63))
        ctx = torch.randn(1, 512, 4096, generator=gen) * 0.5
        return ([[ctx, {}]],)


TINY_VISION_CONFIG = {
    "attention_dropout": 0.0, "dropout": 0.0, "hidden_act": "quick_gelu", "hidden_size": 64,
    "image_size": 32, "initializer_factor": 1.0, "initializer_range": 0.02, "intermediate_size": 128,
    "layer_norm_eps": 1e-05, "model_type": "clip_vision_model", "num_attention_heads": 2,
    "num_channels": 3, "num_hidden_layers": 3, "patch_size": 16, "projection_dim": 32,
}


class TestTinyClipVision:
    """A native CLIP_VISION object (comfy.clip_vision.ClipVisionModel) with a 64-wide, 3-layer config."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 0, "min": 0, "max": 2**31})}}

    RETURN_TYPES = ("CLIP_VISION",)
    FUNCTION = "load"
    CATEGORY = "mvs2v_testing"

    def load(self, seed):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "tiny_clip_vision.json")
            with open(path, "w") as f:
                json.dump(TINY_VISION_CONFIG, f)
            model = comfy.clip_vision.ClipVisionModel(path)
        gen = torch.Generator().manual_seed(seed)
        sd = {}
        for name, p in model.model.state_dict().items():
            if name.endswith("weight") and p.ndim == 1:
                sd[name] = torch.ones_like(p, dtype=torch.float32)
            elif name.endswith("bias"):
                sd[name] = torch.zeros_like(p, dtype=torch.float32)
            else:
                fan_in = max(1, p[0].numel()) if p.ndim > 1 else 1
                sd[name] = torch.randn(p.shape, generator=gen) / fan_in**0.5
        model.load_sd(sd)
        return (model,)


NODE_CLASS_MAPPINGS = {
    "MVS2VTest_TextConditioning": TestTextConditioning,
    "MVS2VTest_TinyClipVision": TestTinyClipVision,
}

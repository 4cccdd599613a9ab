"""Test-only ComfyUI node pack (like ComfyUI's own tests/execution/testing_nodes).

It stands in for the big encoders a real workflow loads from disk, so workflows run on CPU in
seconds: a deterministic text "encoder" giving umT5-shaped conditioning [1, 512, 4096], and a
tiny CLIP vision model (ComfyUI's own ClipVisionModel class with a small config). The diffusion
model and the VAE still come from files through ComfyUI's own loaders.

Two probes let tests look inside a run: one logs every call of a MODEL's first transformer block
(which expert, at which sigma, with how many tokens), one saves what a sampler is given in the
model's own latent space, so a test can redo the sampling outside ComfyUI. ``planning_probes.py``
adds two more: ComfyUI's memory estimate per sampling, and what each context-window call receives.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile

import comfy.clip_vision
import comfy.patcher_extension
import folder_paths
import torch
from safetensors.torch import save_file


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


class TestRecordCalls:
    """A clone of MODEL whose first transformer block appends one JSON line per call to ``log_name``
    in the output folder: ``tag``, the call's sigmas, its token count (video + reference tokens) and
    batch. The block replacement composes with MV-S2V's (which calls it), and computes nothing else."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "tag": ("STRING", {"default": "model"}),
                             "log_name": ("STRING", {"default": "mvs2v_calls.jsonl"})}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "record"
    CATEGORY = "mvs2v_testing"

    def record(self, model, tag, log_name):
        path = os.path.join(folder_paths.get_output_directory(), log_name)

        def block0(args, extra):
            sigmas = args["transformer_options"].get("sigmas")
            entry = {"tag": tag, "sigmas": [float(s) for s in sigmas.flatten()] if sigmas is not None else None,
                     "tokens": int(args["img"].shape[1]), "batch": int(args["img"].shape[0])}
            with open(path, "a") as f:
                f.write(json.dumps(entry) + "\n")
            return extra["original_block"](args)

        m = model.clone()
        m.set_model_patch_replace(block0, "dit", "double_block", 0)
        return (m,)


class TestSaveSamplingInputs:
    """Saves, as ``filename_prefix.safetensors`` in the output folder: the reference latents the
    MODEL's MV-S2V patch carries (normalised, as it hands them to the model), the positive and
    negative text tensors, and ``latent`` put through the model's own ``process_latent_in``; the
    metadata names the model class, its input channels and how many MV-S2V patches it has."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "filename_prefix": ("STRING", {"default": "mvs2v_inputs"})},
                "optional": {"positive": ("CONDITIONING",), "negative": ("CONDITIONING",), "latent": ("LATENT",)}}

    RETURN_TYPES = ()
    FUNCTION = "save"
    OUTPUT_NODE = True
    CATEGORY = "mvs2v_testing"

    def save(self, model, filename_prefix, positive=None, negative=None, latent=None):
        patches = model.get_wrappers(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, "mvs2v_references")
        tensors = {}
        if patches:
            tensors["ref_latents"] = patches[0].latents.float().contiguous()
        for name, cond in (("positive", positive), ("negative", negative)):
            if cond is not None:
                tensors[name] = cond[0][0].float().contiguous()
        if latent is not None:
            tensors["latent"] = model.model.process_latent_in(latent["samples"].float()).float().contiguous()
        dm = model.get_model_object("diffusion_model")
        meta = {"model_class": type(model.model).__name__, "diffusion_model_class": type(dm).__name__,
                "in_dim": str(int(dm.patch_embedding.weight.shape[1])), "mvs2v_patches": str(len(patches))}
        subfolder, name = os.path.split(filename_prefix)
        folder = os.path.join(folder_paths.get_output_directory(), subfolder)
        os.makedirs(folder, exist_ok=True)
        save_file(tensors, os.path.join(folder, name + ".safetensors"), metadata=meta)
        return {"ui": {"tensors": [{"filename": name + ".safetensors", "subfolder": subfolder, "type": "output"}]}}


from .planning_probes import NODE_CLASS_MAPPINGS as PLANNING_PROBES  # noqa: E402 - the probes of the planning tests

NODE_CLASS_MAPPINGS = {
    "MVS2VTest_TextConditioning": TestTextConditioning,
    "MVS2VTest_TinyClipVision": TestTinyClipVision,
    "MVS2VTest_RecordCalls": TestRecordCalls,
    "MVS2VTest_SaveSamplingInputs": TestSaveSamplingInputs,
    **PLANNING_PROBES,
}

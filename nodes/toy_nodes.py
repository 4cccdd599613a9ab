"""Toy demo nodes: the bundled toy-world model (``mvs2v demo``) inside ComfyUI.

Load Toy Demo Model gives a native MODEL (ComfyUI's own loader), a VAE for the toy codec and the
adapter, so Encode References, Apply MV-S2V, the Flow Sampler and VAE Decode work on it unchanged.
Toy Scene renders a held-out scene (references, caption, truth, empty latent), Toy Text Encode
encodes its caption, Toy Evaluate scores the decoded frames. Logic: ``toy_demo_logic.py``.
"""

from __future__ import annotations

import dataclasses
import json

import torch
from comfy_api.latest import io, ui

from . import support
from . import compat
from . import toy_demo_logic as toy
from .model_nodes import attach_adapter
from .types import Adapter, ReferenceSet, ToyDemo, ToyScene, ToyTextEncoder


class LoadToyDemoModel(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MVS2VLoadToyDemoModel",
            display_name="MV-S2V Load Toy Demo Model",
            category="mvs2v/toy_demo",
            description=(
                "The tiny toy-world model bundled with mvs2v (what `mvs2v demo` runs): its Wan DiT as a native MODEL "
                "(fp32, as the demo), a VAE for the toy pixel-unshuffle codec, its adapter (proxy tokens, position "
                "scheme) and its toy text encoder. No downloads."
            ),
            inputs=[],
            outputs=[
                io.Model.Output(display_name="model"),
                io.Vae.Output(display_name="vae"),
                Adapter.Output(display_name="adapter"),
                ToyTextEncoder.Output(display_name="text_encoder"),
                ToyDemo.Output(display_name="demo"),
            ],
        )

    @classmethod
    def execute(cls) -> io.NodeOutput:
        bundle = toy.load_toy_demo(text_width=compat.WAN_TEXT_DIM)
        model = compat.load_wan_state_dict(bundle.state_dict, torch.float32)
        adapter = bundle.adapter
        model = attach_adapter(model, adapter, 1.0, "the bundled adapter (reinstall mvs2v)")
        vae = toy.ToyCodecVAE(bundle.codec, *compat.latent_format_maps(model))
        demo = dataclasses.replace(bundle, state_dict={})  # the weights live in the MODEL now
        return io.NodeOutput(model, vae, adapter, bundle.text, demo)


class ToySceneNode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MVS2VToyScene",
            display_name="MV-S2V Toy Scene",
            category="mvs2v/toy_demo",
            description=(
                "A held-out toy-world scene of the bundled model's dataset, exactly as `mvs2v demo --seed N` renders "
                "it: each object's reference views as a reference set (slots and empty-slot mode of the bundled "
                "adapter), the caption, the true frames and the empty video latent of the model's size."
            ),
            inputs=[
                ToyDemo.Input("demo", tooltip="From MV-S2V Load Toy Demo Model"),
                io.Int.Input("scene", default=0, min=0, max=10000, tooltip=(
                    "Which held-out scene (never seen in training); `mvs2v demo --seed N` shows scene N (a large N "
                    "takes seconds to find)")),
            ],
            outputs=[
                ReferenceSet.Output(display_name="references"),
                io.String.Output(display_name="caption"),
                io.Image.Output(display_name="truth"),
                io.Latent.Output(display_name="latent"),
                ToyScene.Output(display_name="scene"),
            ],
        )

    @classmethod
    def execute(cls, demo, scene) -> io.NodeOutput:
        info = demo.info
        s = toy.demo_scene(info, scene)
        meta = demo.adapter.metadata
        refs = support.build_reference_set(toy.scene_subjects(s), meta.references.slots_per_subject,
                                           meta.references.empty_slot_mode, meta.references.slot_anchor)
        truth = torch.from_numpy(s.truth.frames).float() / 255.0
        latent = {"samples": toy.empty_latent(demo.codec, info["frames"], info["height"], info["width"])}
        return io.NodeOutput(refs, s.caption, truth, latent, s, ui=ui.PreviewImage(support.preview_grid(refs)))


class ToyTextEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MVS2VToyTextEncode",
            display_name="MV-S2V Toy Text Encode",
            category="mvs2v/toy_demo",
            description=(
                "The toy text encoder (fixed word vectors of the toy caption grammar) as CONDITIONING for the toy "
                "demo model, padded as the model reads it. Only the toy world's words are known."
            ),
            inputs=[
                ToyTextEncoder.Input("text_encoder", tooltip="From MV-S2V Load Toy Demo Model"),
                io.String.Input("text", multiline=True, default="", tooltip=(
                    "The prompt in toy-world words (connect the Toy Scene's caption); empty = the negative prompt "
                    "of `mvs2v demo`")),
            ],
            outputs=[io.Conditioning.Output(display_name="conditioning")],
        )

    @classmethod
    def execute(cls, text_encoder, text) -> io.NodeOutput:
        return io.NodeOutput([[text_encoder.context(text), {}]])


class ToyEvaluate(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MVS2VToyEvaluate",
            display_name="MV-S2V Toy Evaluate",
            category="mvs2v/toy_demo",
            description=(
                "Scores generated frames against the toy scene's exact truth, as `mvs2v demo` does: PSNR, SSIM, "
                "S_v->r / S_r->v, hidden-face accuracy, crosstalk; and the strip references | generated | truth."
            ),
            inputs=[
                io.Image.Input("images", tooltip="The generated frames (VAE Decode of the sampler's latent)"),
                ToyScene.Input("scene", tooltip="The scene they were generated for (from MV-S2V Toy Scene)"),
            ],
            outputs=[io.String.Output(display_name="metrics"), io.Image.Output(display_name="strip")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, images, scene) -> io.NodeOutput:
        summary, strip = toy.evaluate_scene(images, scene)
        text = json.dumps(summary, indent=1)
        return io.NodeOutput(text, torch.from_numpy(strip).float()[None] / 255.0, ui=ui.PreviewText(text))


TOY_NODES: list[type[io.ComfyNode]] = [LoadToyDemoModel, ToySceneNode, ToyTextEncode, ToyEvaluate]

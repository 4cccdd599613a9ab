"""Model nodes: Load Adapter, Apply MV-S2V (the patch), MFI Encode."""

from __future__ import annotations

import torch
from comfy_api.latest import io

from . import support
from ..mvs2v_core.adapter import check_adapter, load_adapter, require_compatible
from ..mvs2v_core.errors import AdapterMismatchError, MVS2VError
from ..mvs2v_core.references.settings import (
    Placement,
    RefAttention,
    ReferenceSettings,
    RefTimestep,
    SchemeName,
    option_values,
)
from . import compat
from .patch import ReferenceInjection
from .types import Adapter, EncodedReferences, ReferenceSet

DEFAULTS = ReferenceSettings()  # node defaults are the contract's


def _adapter_path(name: str) -> str:
    """The adapter file, only from the registered mvs2v model folders (safetensors only).

    The typed name must stay inside a folder (no ``..``, absolute names...); symbolic links the
    server's owner placed in the folder are followed wherever they lead (models on another disk).
    """
    if not isinstance(name, str) or not name.lower().endswith(".safetensors"):
        raise MVS2VError(f"adapter {name!r} is not a .safetensors file; mvs2v adapters are only loaded from safetensors")
    for folder in compat.adapter_folders():
        try:
            path = support.resolve_under(folder, name, "adapter file", follow_links=True)
        except MVS2VError as e:
            if "does not exist" in str(e):
                continue
            raise
        if path.is_file():
            return str(path)
    raise MVS2VError(
        f"adapter {name!r} was not found in {', '.join(compat.adapter_folders())}: put the file into ComfyUI's "
        "models/mvs2v folder and refresh"
    )


class LoadAdapter(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MVS2VLoadAdapter",
            display_name="MV-S2V Load Adapter",
            category="mvs2v/model",
            description=(
                "Loads an mvs2v adapter from models/mvs2v: applies its LoRA to the model through ComfyUI's weight "
                "patching and hands its proxy tokens and MFI projector to Apply MV-S2V and MFI Encode."
            ),
            inputs=[
                io.Model.Input("model", tooltip="The Wan model the adapter was trained for"),
                io.Combo.Input("adapter_name", options=compat.adapter_filenames(), tooltip="An adapter .safetensors file in ComfyUI's models/mvs2v folder"),
                io.Float.Input("strength", default=1.0, min=-10.0, max=10.0, step=0.01, tooltip="LoRA strength (0 = proxy tokens and MFI only)"),
            ],
            outputs=[io.Model.Output(display_name="model"), Adapter.Output(display_name="adapter")],
        )

    @classmethod
    def execute(cls, model, adapter_name, strength) -> io.NodeOutput:
        adapter = load_adapter(_adapter_path(adapter_name))
        return io.NodeOutput(attach_adapter(model, adapter, strength, f"the adapter {adapter_name!r}"), adapter)


def attach_adapter(model, adapter, strength: float, name: str):
    """``model`` with ``adapter``'s LoRA applied at ``strength``, after checking the adapter fits it.

    ``name`` says which adapter in the errors (e.g. "the adapter 'x.safetensors'").
    """
    problems = check_adapter(adapter, compat.wan_config(compat.wan_diffusion_model(model)))
    if problems:
        raise AdapterMismatchError(f"{name} does not fit this model:\n  - " + "\n  - ".join(problems))
    patched, matched = compat.apply_lora(model, adapter.lora, strength)
    if adapter.lora and strength != 0 and matched == 0:
        raise AdapterMismatchError(
            f"none of the LoRA weights of {name} matched this model's layers; it was trained for "
            f"{adapter.metadata.base_family}"
        )
    return patched


class ApplyMVS2V(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MVS2VApply",
            display_name="Apply MV-S2V",
            category="mvs2v/model",
            description=(
                "Returns a clone of the Wan model that appends the reference slots after the video tokens, places "
                "them in RoPE space with the chosen position scheme, fills empty slots, and trims them from the output."
            ),
            inputs=[
                io.Model.Input("model", tooltip="A Wan 2.1 / 2.2 text-to-video or Phantom-Wan model (after any LoRA and ModelSamplingSD3 nodes or before, both work)"),
                EncodedReferences.Input("encoded_references", tooltip="From MV-S2V Encode References, encoded with this model's VAE at the video size"),
                io.Combo.Input("scheme", options=option_values(SchemeName), default=DEFAULTS.scheme.name.value, tooltip=(
                    "Where reference tokens sit in RoPE space: vanilla = Phantom (references continue after the video), "
                    "ts = MV-S2V TS-RoPE (temporal gap, views of a subject adjacent), ss = spatial shift, "
                    "jump = HarmoView Jump-RoPE (gap to the video, larger gap between identities)")),
                io.Float.Input("gap", default=DEFAULTS.scheme.gap, min=0.0, max=1000.0, step=0.5, tooltip="ts / ss: empty time indices between the video and the first subject and between subjects"),
                io.Float.Input("ref_gap", default=DEFAULTS.scheme.ref_gap, min=0.0, max=1000.0, step=0.5, tooltip="jump: empty time indices between the reference block and the video"),
                io.Float.Input("identity_gap", default=DEFAULTS.scheme.identity_gap, min=0.0, max=1000.0, step=0.5, tooltip="jump: empty time indices between two subjects"),
                io.Combo.Input("placement", options=option_values(Placement), default=DEFAULTS.scheme.placement.value, tooltip="jump: references after the video (positive time) or before it (negative time)"),
                io.Combo.Input("ref_timestep", options=option_values(RefTimestep), default=DEFAULTS.ref_timestep.value, tooltip=(
                    "Timestep of the reference tokens: same as the video (how Phantom-Wan was trained) or zero "
                    "(clean references, for adapters trained that way)")),
                Adapter.Input("adapter", optional=True, tooltip="From MV-S2V Load Adapter: proxy tokens for empty slots; its scheme and slots must match"),
                io.Combo.Input("ref_attention", options=option_values(RefAttention), default=DEFAULTS.ref_attention.value,
                               optional=True, tooltip=(
                    "full = reference tokens attend to every token (Phantom-Wan); cached = they attend to references "
                    "only, at timestep 0 (needs ref_timestep zero): their keys/values are computed once per "
                    "generation. For adapters trained with cached; an approximation for full-trained models")),
            ],
            outputs=[io.Model.Output(display_name="model")],
        )

    @classmethod
    def execute(cls, model, encoded_references, scheme, gap, ref_gap, identity_gap, placement, ref_timestep,
                adapter=None, ref_attention=DEFAULTS.ref_attention.value) -> io.NodeOutput:
        refs: support.EncodedReferences = encoded_references
        dm = compat.wan_diffusion_model(model)
        config = compat.wan_config(dm)
        settings = ReferenceSettings(slots_per_subject=refs.layout.slots_per_subject, empty_slot_mode=refs.empty_slot_mode,
                                     ref_timestep=ref_timestep, ref_attention=ref_attention,
                                     slot_anchor=refs.slot_anchor).with_overrides(
            scheme=scheme, gap=gap, ref_gap=ref_gap, identity_gap=identity_gap, placement=placement)
        if refs.latents.shape[1] != config.in_dim:
            raise MVS2VError(
                f"the references are {refs.latents.shape[1]}-channel latents but this model takes {config.in_dim} "
                "channels: encode them with the VAE of the model's release (Wan2.1 / Phantom / Wan2.2 A14B: Wan2.1 VAE, 16 channels; Wan2.2 TI2V 5B: Wan2.2 VAE, 48); "
                "image-to-video models are not supported"
            )
        proxy = None
        if adapter is not None:
            require_compatible(adapter, config, settings)
            proxy = adapter.proxy_tokens
        latents = compat.process_latent_in(model, refs.latents.clone())
        injection = ReferenceInjection(latents, refs.layout, settings, proxy)
        return io.NodeOutput(compat.set_reference_wrapper(model, injection, injection.sampling_plan))


class MFIEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MVS2VMFIEncode",
            display_name="MV-S2V MFI Encode",
            category="mvs2v/conditioning",
            description=(
                "Multi-level Feature Injection (HarmoView): each subject's frontal view goes through the vision "
                "encoder; the adapter's projector maps the features to text width and they are appended to the "
                "conditioning. Apply it to both the positive and the negative conditioning."
            ),
            inputs=[
                io.Conditioning.Input("conditioning", tooltip="Text conditioning of the Wan model (positive or negative)"),
                io.ClipVision.Input("clip_vision", tooltip="The vision encoder the adapter was trained with (Load CLIP Vision)"),
                ReferenceSet.Input("references", tooltip="The reference set; each subject's frontal view is used"),
                Adapter.Input("adapter", tooltip="An adapter with an MFI projector (from MV-S2V Load Adapter)"),
                io.Int.Input("width", default=832, min=16, max=8192, step=16, tooltip="The video's width: frontal views are letterboxed to it first, as in training"),
                io.Int.Input("height", default=480, min=16, max=8192, step=16, tooltip="The video's height: frontal views are letterboxed to it first, as in training"),
            ],
            outputs=[io.Conditioning.Output(display_name="conditioning")],
        )

    @classmethod
    def execute(cls, conditioning, clip_vision, references, adapter, width, height) -> io.NodeOutput:
        if adapter.mfi_weight is None:
            raise AdapterMismatchError("this adapter has no MFI projector (mfi_in_dim is null): remove MV-S2V MFI Encode")
        pixels = support.frontal_pixels(references, width, height)
        features = clip_vision.encode_image(pixels, crop=False)["penultimate_hidden_states"].float().cpu()
        text_dim, vit_dim = adapter.mfi_weight.shape
        if features.shape[-1] != vit_dim:
            raise AdapterMismatchError(
                f"the vision encoder gives {features.shape[-1]}-wide features but the adapter's MFI projector takes "
                f"{vit_dim}: load the vision encoder the adapter was trained with"
            )
        projector = adapter.mfi_projector()
        with torch.no_grad():
            out = []
            for context, extra in conditioning:
                ctx = context.float().cpu()
                feats = features[None].expand(ctx.shape[0], -1, -1, -1)
                with_mfi = projector.append(ctx, feats).to(context.dtype)
                no_ref = projector.append(ctx, torch.zeros_like(feats)).to(context.dtype)
                d = dict(extra)
                d[compat.MFI_NO_REF_KEY] = no_ref
                out.append([with_mfi, d])
        return io.NodeOutput(out)

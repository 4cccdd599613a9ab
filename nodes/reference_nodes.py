"""Reference nodes: Subject, Reference Set, Load Reference Folder, Encode References."""

from __future__ import annotations

import weakref

import torch
from comfy_api.latest import io, ui

from . import support
from ..mvs2v_core.errors import MVS2VError
from ..mvs2v_core.references.settings import (MAX_SLOTS_PER_SUBJECT, EmptySlotMode, ReferenceSettings, SlotAnchor,
                                              option_values)
from . import compat
from .types import MAX_SUBJECT_INPUTS, EncodedReferences, ReferenceSet, Subject

DEFAULTS = ReferenceSettings()  # node defaults are the contract's
EMPTY_SLOT_TOOLTIP = (
    "What an empty view slot becomes: proxy = the adapter's learned proxy vector (needs MV-S2V Load Adapter), "
    "gray = the latent of a mid-gray image, drop = no tokens at all (positions of the other slots do not move)"
)
SLOT_ANCHOR_TOOLTIP = (
    "What slot 0 stands for: canonical = each subject's front (labels pick the slot); frontal = each subject's "
    "frontal view (the view the video starts from), the other views at their angle from it. Must match the adapter"
)


def _slot_anchor_input() -> io.Combo.Input:
    return io.Combo.Input("slot_anchor", options=option_values(SlotAnchor), default=DEFAULTS.slot_anchor.value,
                          optional=True, tooltip=SLOT_ANCHOR_TOOLTIP)


def _reference_set_outputs(ref_set: support.ReferenceSet) -> io.NodeOutput:
    grid = support.preview_grid(ref_set)
    shown = ui.PreviewImage(grid).as_dict()
    shown["mvs2v_layout"] = [{"slots_per_subject": ref_set.slots_per_subject,
                              "empty_slot_mode": ref_set.empty_slot_mode.value,
                              "slot_anchor": ref_set.slot_anchor.value,
                              "slots": support.describe_layout(ref_set.layout, ref_set.slot_anchor)}]
    return io.NodeOutput(ref_set, grid, ui=shown)


class SubjectNode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MVS2VSubject",
            display_name="MV-S2V Subject",
            category="mvs2v/references",
            description="Views of one subject (person, object, character) for multi-view references.",
            inputs=[
                io.Image.Input("images", tooltip="All views of this one subject as an IMAGE batch (use Batch Images to join views)"),
                io.String.Input("name", default="subject", tooltip="A name shown in the slot preview and in messages"),
                io.String.Input("view_labels", default="", tooltip=(
                    "One label per image, comma-separated: front, left, back, right or a yaw in degrees (e.g. 45). "
                    "Labelled views go to the slot of the nearest canonical view; leave empty to fill slots in order")),
                io.Int.Input("frontal_view", default=-1, min=-1, max=63, tooltip=(
                    "Index (from 0) of the frontal view, used by MFI and, with slot_anchor frontal, the view the video "
                    "starts from; -1 = the labelled view within 45 degrees of front, else the first unlabelled view, "
                    "else the labelled view nearest front")),
                io.Mask.Input("mask", optional=True, tooltip=(
                    "Optional subject mask (1 = subject) from a background-removal node; pixels outside it become "
                    "white, as Phantom's references")),
            ],
            outputs=[Subject.Output(display_name="subject")],
        )

    @classmethod
    def execute(cls, images, name, view_labels, frontal_view, mask=None) -> io.NodeOutput:
        return io.NodeOutput(support.make_subject(name, images, view_labels, frontal_view, mask))


class ReferenceSetNode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        subjects = [Subject.Input("subject_1", tooltip="A subject from MV-S2V Subject")]
        subjects += [
            Subject.Input(f"subject_{i}", optional=True, tooltip="Another subject; a new input appears when this one is connected")
            for i in range(2, MAX_SUBJECT_INPUTS + 1)
        ]
        return io.Schema(
            node_id="MVS2VReferenceSet",
            display_name="MV-S2V Reference Set",
            category="mvs2v/references",
            description="Places every subject's views into a fixed number of view slots and previews the slots.",
            inputs=[
                io.Int.Input("slots_per_subject", default=DEFAULTS.slots_per_subject, min=1, max=MAX_SLOTS_PER_SUBJECT, tooltip=(
                    "View slots per subject; slot k stands for yaw 360*k/slots (4 slots = front, left, back, right). "
                    "Must match the adapter when one is used")),
                io.Combo.Input("empty_slot_mode", options=option_values(EmptySlotMode), default=DEFAULTS.empty_slot_mode.value, tooltip=EMPTY_SLOT_TOOLTIP),
                *subjects,
                _slot_anchor_input(),
            ],
            outputs=[ReferenceSet.Output(display_name="references"), io.Image.Output(display_name="slot_preview")],
        )

    @classmethod
    def execute(cls, slots_per_subject, empty_slot_mode, slot_anchor=DEFAULTS.slot_anchor.value,
                **subjects) -> io.NodeOutput:
        ordered = [subjects[f"subject_{i}"] for i in range(1, MAX_SUBJECT_INPUTS + 1) if subjects.get(f"subject_{i}") is not None]
        return _reference_set_outputs(support.build_reference_set(ordered, slots_per_subject, empty_slot_mode,
                                                                  slot_anchor))


class LoadReferenceFolder(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MVS2VLoadReferenceFolder",
            display_name="MV-S2V Load Reference Folder",
            category="mvs2v/references",
            description=(
                "Reads a folder inside ComfyUI's input folder: one subfolder per subject, images named by view "
                "(front.png, left.png, back.png, right.png, yaw_45.png). Transparent pixels become white."
            ),
            inputs=[
                io.String.Input("folder", default="mvs2v_refs", tooltip=(
                    "Folder name relative to ComfyUI's input folder; '..', absolute paths and links out of it are refused")),
                io.Int.Input("slots_per_subject", default=DEFAULTS.slots_per_subject, min=1, max=MAX_SLOTS_PER_SUBJECT, tooltip=(
                    "View slots per subject (4 = front, left, back, right); must match the adapter when one is used")),
                io.Combo.Input("empty_slot_mode", options=option_values(EmptySlotMode), default=DEFAULTS.empty_slot_mode.value, tooltip=EMPTY_SLOT_TOOLTIP),
                _slot_anchor_input(),
            ],
            outputs=[ReferenceSet.Output(display_name="references"), io.Image.Output(display_name="slot_preview")],
        )

    @classmethod
    def execute(cls, folder, slots_per_subject, empty_slot_mode, slot_anchor=DEFAULTS.slot_anchor.value) -> io.NodeOutput:
        listing = support.list_reference_folder(compat.input_directory(), folder)
        subjects = [support.subject_from_folder(name, views) for name, views in listing]
        return _reference_set_outputs(support.build_reference_set(subjects, slots_per_subject, empty_slot_mode,
                                                                  slot_anchor))

    @classmethod
    def fingerprint_inputs(cls, folder, slots_per_subject, empty_slot_mode, slot_anchor=None):
        # Re-run when files in the folder change (ComfyUI would otherwise reuse the cached result).
        try:
            listing = support.list_reference_folder(compat.input_directory(), folder)
        except MVS2VError as e:
            return str(e)
        return [(name, [(str(p), p.stat().st_mtime_ns, p.stat().st_size) for p, _ in views]) for name, views in listing]


# One small LRU per VAE object: a re-run, or a reference set that changed in one view, only encodes
# what is new. Weak keys: the cache goes when ComfyUI unloads the VAE.
_LATENT_CACHES: weakref.WeakKeyDictionary[object, support.LatentCache] = weakref.WeakKeyDictionary()


def _cache_for(vae) -> support.LatentCache:
    cache = _LATENT_CACHES.get(vae)
    if cache is None:
        cache = support.LatentCache(max_entries=256)
        _LATENT_CACHES[vae] = cache
    return cache


def encode_slot(vae, pixels: torch.Tensor) -> torch.Tensor:
    """One letterboxed view ``[H, W, 3]`` -> ``[1, C, 1, h, w]`` with ComfyUI's VAE (one latent frame)."""
    latent = vae.encode(pixels[None])
    if latent.ndim != 5 or latent.shape[2] != 1:
        raise MVS2VError(
            f"the VAE returned a latent of shape {tuple(latent.shape)} for one image; MV-S2V needs a Wan video VAE "
            "(wan_2.1_vae or wan2.2_vae) that turns one image into one latent frame"
        )
    return latent.float().cpu()


class EncodeReferences(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MVS2VEncodeReferences",
            display_name="MV-S2V Encode References",
            category="mvs2v/references",
            description=(
                "Letterboxes every view onto a white canvas of the video size (as Phantom does) and VAE-encodes each "
                "slot alone into one latent frame. Encoded slots are cached per VAE, so re-runs only encode new views."
            ),
            inputs=[
                io.Vae.Input("vae", tooltip="The Wan VAE of the model's release (Wan2.1 VAE for 1.3B/14B/Phantom, Wan2.2 VAE for TI2V 5B)"),
                ReferenceSet.Input("references", tooltip="The reference set from MV-S2V Reference Set or Load Reference Folder"),
                io.Int.Input("width", default=832, min=16, max=8192, step=16, tooltip="The video's width in pixels (the same as the empty latent's)"),
                io.Int.Input("height", default=480, min=16, max=8192, step=16, tooltip="The video's height in pixels (the same as the empty latent's)"),
            ],
            outputs=[EncodedReferences.Output(display_name="encoded_references")],
        )

    @classmethod
    def execute(cls, vae, references, width, height) -> io.NodeOutput:
        pixels, filled = support.slot_pixels(references, width, height)
        cache = _cache_for(vae)
        latents: list[torch.Tensor | None] = []
        for px, is_filled in zip(pixels, filled):
            if not is_filled and references.empty_slot_mode != EmptySlotMode.GRAY:
                latents.append(None)  # never used: proxy vector or dropped
                continue
            key = support.slot_cache_key(px, width, height)
            lat = cache.get(key)
            if lat is None:
                lat = encode_slot(vae, px)
                cache.put(key, lat)
            latents.append(lat)
        template = next(t for t in latents if t is not None)
        frames = [t if t is not None else torch.zeros_like(template) for t in latents]
        encoded = support.EncodedReferences(
            latents=torch.cat(frames, dim=2), layout=references.layout, empty_slot_mode=references.empty_slot_mode,
            slot_anchor=references.slot_anchor, width=int(width), height=int(height),
            frontal_pixels=support.frontal_pixels(references, width, height),
        )
        return io.NodeOutput(encoded)

"""The pack's ComfyUI extension: every node, and ``comfy_entrypoint`` (imported by the pack's root ``__init__``)."""

from __future__ import annotations

from comfy_api.latest import ComfyExtension, io
from typing_extensions import override

from . import compat
from .model_nodes import ApplyMVS2V, LoadAdapter, MFIEncode
from .reference_nodes import (
    EncodeReferences,
    LoadReferenceFolder,
    ReferenceSetNode,
    SubjectNode,
)
from .sampling_nodes import FlowSampler, FlowSolver, ReferenceGuider
from .toy_nodes import TOY_NODES

NODES: list[type[io.ComfyNode]] = [
    SubjectNode,
    ReferenceSetNode,
    LoadReferenceFolder,
    EncodeReferences,
    LoadAdapter,
    ApplyMVS2V,
    MFIEncode,
    FlowSampler,
    FlowSolver,
    ReferenceGuider,
    *TOY_NODES,
]


class MVS2VExtension(ComfyExtension):
    @override
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODES)


async def comfy_entrypoint() -> MVS2VExtension:
    compat.register_adapter_folder()
    return MVS2VExtension()

"""ComfyUI entry point of the mvs2v node pack.

The nodes (V3 schema, ``comfy_entrypoint``) land with the node-pack issue; until then the pack
exports nothing, so ComfyUI loads it as an empty pack. Model code lives in ``mvs2v_core`` and is
imported lazily by the nodes.
"""

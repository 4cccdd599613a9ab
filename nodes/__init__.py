"""ComfyUI glue for mvs2v (V3 node schema). Thin wrappers only: model code lives in mvs2v_core.

Imported by ComfyUI as ``<pack folder>.nodes``; ``mvs2v_core`` (and ``mvs2v_toy``) are reached
relatively, so the pack works under any folder name without installing anything into ComfyUI's
environment. The extension (the node list and ``comfy_entrypoint``) is in :mod:`.extension`; this
file imports nothing, so the pure-logic modules (e.g. :mod:`.toy_demo_logic`) can be imported and
tested without ComfyUI.
"""

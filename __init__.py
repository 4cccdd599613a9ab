"""ComfyUI entry point of the mvs2v node pack (V3 schema: ``comfy_entrypoint`` only).

ComfyUI imports this folder as a package under whatever name it has in custom_nodes/. The nodes
and the frontend extension live in ``nodes/`` and ``web/``; model code in ``mvs2v_core`` (and the
toy world in ``mvs2v_toy``) is imported by the nodes relatively, so nothing is installed into
ComfyUI's environment. Outside ComfyUI (no ``comfy_api`` to import) the package exports only
WEB_DIRECTORY.
"""

import importlib.util as _importlib_util

WEB_DIRECTORY = "./web"
__all__ = ["WEB_DIRECTORY"]

if _importlib_util.find_spec("comfy_api") is not None:
    from .nodes.extension import comfy_entrypoint  # noqa: F401  (errors inside ComfyUI are reported, never hidden)

    __all__.append("comfy_entrypoint")

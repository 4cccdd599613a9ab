"""Import the node pack as ComfyUI does: the repository root as one package, ``mvs2v_pack``.

``nodes/`` reaches ``mvs2v_core`` and ``mvs2v_toy`` relatively (``..mvs2v_core``), so its modules
exist only as submodules of the pack. Outside ComfyUI the root ``__init__`` exports only
WEB_DIRECTORY, so importing the pack here runs no ComfyUI code. The pack's modules are distinct
objects from the absolute ``mvs2v_core``: compare its exceptions and classes through
``pack_module("mvs2v_core.errors")`` etc.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]
PACK_NAME = "mvs2v_pack"


def import_pack() -> ModuleType:
    if PACK_NAME not in sys.modules:
        spec = importlib.util.spec_from_file_location(PACK_NAME, REPO / "__init__.py",
                                                      submodule_search_locations=[str(REPO)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[PACK_NAME] = module
        spec.loader.exec_module(module)
    return sys.modules[PACK_NAME]


def pack_module(dotted: str) -> ModuleType:
    """``pack_module("nodes.support")`` is the pack's ``mvs2v_pack.nodes.support``."""
    import_pack()
    return importlib.import_module(f"{PACK_NAME}.{dotted}")

"""``pack``: the node pack imported as ComfyUI imports it (see tests/pack_import.py)."""

from __future__ import annotations

import importlib

import pytest

from tests.pack_import import PACK_NAME, import_pack


class _Pack:
    """``pack.nodes.patch`` imports ``mvs2v_pack.nodes.patch`` on first access (packages stay lazy)."""

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix

    def __getattr__(self, name: str):
        full = f"{self._prefix}.{name}"
        try:
            module = importlib.import_module(full)
        except ModuleNotFoundError as e:
            if e.name != full:
                raise
            return getattr(importlib.import_module(self._prefix), name)  # a name, not a submodule
        return _Pack(full) if hasattr(module, "__path__") else module


@pytest.fixture(scope="session")
def pack() -> _Pack:
    import_pack()
    return _Pack(PACK_NAME)

"""The toy world's component kinds, registered with core's component registry.

Core's ``load_vae`` / ``load_text_encoder`` / ``load_vision_encoder`` load a toy codec, text
encoder or vision encoder folder through these loaders (see
:mod:`mvs2v_core.pipeline.components`). :func:`register_components` runs when the package is
imported (that is how ComfyUI, where nothing is pip-installed, gets them) and is the
``mvs2v.components`` entry point of a pip install (core calls it with its own ``register_component``).
Loaders import their module on first use, so registering imports no torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from .markers import CODEC_FORMAT, CODEC_MARKER, PROVIDER, TEXT_FORMAT, TEXT_MARKER, VISION_FORMAT, VISION_MARKER

__all__ = ["register_components"]


def _load_codec(path: Path, *, device: Any, dtype: Any) -> Any:
    from .codec import load_codec

    return load_codec(path, device=device, dtype=dtype)


def _load_text_encoder(path: Path, *, device: Any, dtype: Any) -> Any:
    from .text import load_toy_text_encoder

    return load_toy_text_encoder(path, device=device, dtype=dtype)


def _load_vision_encoder(path: Path, *, device: Any, dtype: Any) -> Any:
    from .vision import load_toy_vision_encoder

    return load_toy_vision_encoder(path)  # no weights: nothing to move or cast


_KINDS = (
    (CODEC_FORMAT, "vae", _load_codec, CODEC_MARKER),
    (TEXT_FORMAT, "text_encoder", _load_text_encoder, TEXT_MARKER),
    (VISION_FORMAT, "vision_encoder", _load_vision_encoder, VISION_MARKER),
)


def register_components(register: Callable[..., None] | None = None) -> None:
    """Register the toy codec, text encoder and vision encoder kinds.

    Args:
        register: the ``register_component`` of the core copy asking (an entry point is called
            with it); default: that of the core package next to this one.
    """
    if register is None:
        from ._core import register_component as register
    for kind, role, loader, marker in _KINDS:
        register(kind, role, loader, PROVIDER, marker=marker)

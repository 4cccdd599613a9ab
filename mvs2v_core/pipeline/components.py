"""The three component kinds the pipeline uses, as interfaces, and the registry of their loaders.

**Interfaces.** The pipeline (:class:`~mvs2v_core.pipeline.generate.MVS2VPipeline`, the ``mvs2v``
command, the trainer's caches) only calls the members listed in these :class:`typing.Protocol`\\ s,
so any object that has them works:

* :class:`LatentCodec` -- videos and images to *normalized* latents and back (Wan's VAE,
  :class:`~mvs2v_core.pipeline.vae.WanVAE`; the toy world's exact codec).
* :class:`TextEncoderProtocol` -- prompts to per-token embeddings (umT5,
  :class:`~mvs2v_core.pipeline.text.TextEncoder`).
* :class:`VisionEncoderProtocol` -- reference images to patch features for MFI (CLIP / SigLIP,
  :class:`~mvs2v_core.pipeline.vision.VisionEncoder`).

They are ``runtime_checkable``: ``isinstance(vae, LatentCodec)`` checks that the members exist
(not their signatures).

**Registry.** A model folder that is not a standard Wan / transformers folder declares its kind in
``mvs2v_component.json``::

    {"format": "mvs2v-component", "kind": "mvs2v-toy-codec", "role": "vae", "provider": "mvs2v_toy"}

:func:`load_vae`, :func:`load_text_encoder` and :func:`load_vision_encoder` (in ``vae.py``,
``text.py``, ``vision.py``) ask :func:`find_component` for the folder's kind and, when it has one,
call the loader registered for it. Loaders come from two places: explicit :func:`register_component`
calls (inside ComfyUI nothing is pip-installed, so a package registers itself when it is imported),
and the Python entry points of group ``mvs2v.components`` (pip installs declare them in
``pyproject.toml``; each is called once, on the first look-up, with a ``register_component`` that
keeps explicit registrations). A registration may also name the package's own marker file, so
folders written before they carried a declaration still load.

Nothing heavy is imported here (no torch at import time), so registering stays cheap.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence, runtime_checkable

from ..errors import CheckpointError, MVS2VError
from ..utils import call_entry_points

if TYPE_CHECKING:
    import torch

__all__ = ["LatentCodec", "TextEncoderProtocol", "VisionEncoderProtocol", "ComponentLoader", "ComponentKind",
           "ROLES", "DECLARATION_FILE", "DECLARATION_FORMAT", "ENTRY_POINT_GROUP", "register_component",
           "registered_kinds", "find_component", "write_declaration"]


# ---- interfaces ----------------------------------------------------------------------------------


@runtime_checkable
class LatentCodec(Protocol):
    """Pixels <-> normalized latents (the ``--vae`` of ``mvs2v generate``).

    Attributes:
        z_dim: latent channels ``C``.
        spatial_factor: pixels per latent cell along H and W.
        temporal_factor: frames per latent frame after the first (``f = 1 + (F - 1) // temporal_factor``).
        lossless_output: True when the decoded pixels must be written to video exactly (RGB at
            quantizer 0), because the numbers measured on them need exact colours.
        device, dtype: where the codec computes and in which precision its input is cast.
    """

    z_dim: int
    spatial_factor: int
    temporal_factor: int
    lossless_output: bool

    @property
    def device(self) -> torch.device: ...

    @property
    def dtype(self) -> torch.dtype: ...

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """``[B, 3, F, H, W]`` in ``[-1, 1]`` -> float32 ``[B, C, f, H / s, W / s]``."""

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` in ``[-1, 1]`` -> float32 ``[N, C, 1, H / s, W / s]`` (each image a one-frame video)."""

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """``[B, C, f, h, w]`` -> float32 video ``[B, 3, F, h * s, w * s]`` in ``[-1, 1]``."""


@runtime_checkable
class TextEncoderProtocol(Protocol):
    """Prompts -> per-token embeddings (the ``--text-encoder``). ``dim`` is the embedding width ``D``."""

    dim: int

    @property
    def device(self) -> torch.device: ...

    @property
    def dtype(self) -> torch.dtype: ...

    def encode(self, prompts: str | Sequence[str], max_length: int = 512) -> list[torch.Tensor]:
        """One tensor ``[L_i, D]`` per prompt, trimmed to its real token count (end-of-sequence included)."""


@runtime_checkable
class VisionEncoderProtocol(Protocol):
    """Reference images ``[N, 3, H, W]`` in ``[-1, 1]`` -> features ``[N, tokens, width]`` (MFI's input)."""

    width: int

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


# ---- registry ------------------------------------------------------------------------------------

ROLES = ("vae", "text_encoder", "vision_encoder")
DECLARATION_FILE = "mvs2v_component.json"
DECLARATION_FORMAT = "mvs2v-component"
ENTRY_POINT_GROUP = "mvs2v.components"

ComponentLoader = Callable[..., Any]
"""``loader(path: Path, device, dtype) -> component``; ``path`` is the folder."""


@dataclass(frozen=True)
class ComponentKind:
    """A registered kind: its role, its loader, the package providing it, and its own marker file (if any)."""

    kind: str
    role: str
    loader: ComponentLoader
    provider: str
    marker: str | None = None


_KINDS: dict[str, ComponentKind] = {}
_entry_points_loaded = False


def register_component(kind: str, role: str, loader: ComponentLoader, provider: str,
                       marker: str | None = None) -> None:
    """Register ``loader`` for model folders of ``kind`` (a later registration of a kind replaces the earlier).

    Args:
        kind: the name folders declare (``"kind"`` in ``mvs2v_component.json``).
        role: ``"vae"``, ``"text_encoder"`` or ``"vision_encoder"``.
        loader: ``loader(path, device=..., dtype=...)`` returning a :class:`LatentCodec`,
            :class:`TextEncoderProtocol` or :class:`VisionEncoderProtocol`.
        provider: the package that provides the kind (named in error messages).
        marker: a file name that also identifies such a folder (for folders without a declaration).
    """
    if role not in ROLES:
        raise MVS2VError(f"component role {role!r} is not one of {', '.join(ROLES)}")
    _KINDS[kind] = ComponentKind(kind, role, loader, provider, marker)


def _register_if_new(kind: str, *args: Any, **kwargs: Any) -> None:
    if kind not in _KINDS:
        register_component(kind, *args, **kwargs)


def _load_entry_points() -> None:
    """Call every ``mvs2v.components`` entry point once, on the first look-up.

    Kinds registered explicitly stay as they are: inside ComfyUI the pack's own toy package has
    registered its loaders on import, and a pip-installed copy of mvs2v in the same environment
    must not replace them with classes of another copy.
    """
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    call_entry_points(ENTRY_POINT_GROUP, _register_if_new, "component")


def registered_kinds() -> dict[str, ComponentKind]:
    """Every registered kind by name (entry points included)."""
    _load_entry_points()
    return dict(_KINDS)


def write_declaration(folder: str | os.PathLike, kind: str, role: str, provider: str) -> Path:
    """Write ``folder/mvs2v_component.json`` declaring the folder's kind; returns its path."""
    from ..utils import atomic_write

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"format": DECLARATION_FORMAT, "kind": kind, "role": role, "provider": provider}
    with atomic_write(out / DECLARATION_FILE) as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return out / DECLARATION_FILE


def _read_declaration(folder: Path) -> dict[str, Any] | None:
    file = folder / DECLARATION_FILE
    if not file.is_file():
        return None
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read '{file}' ({exc}); write the model folder again") from None
    if not isinstance(meta, dict) or meta.get("format") != DECLARATION_FORMAT or not isinstance(meta.get("kind"), str):
        raise CheckpointError(f"'{file}' is not an {DECLARATION_FORMAT} declaration (it needs \"format\": "
                              f"\"{DECLARATION_FORMAT}\" and a \"kind\"); write the model folder again")
    return meta


def find_component(path: str | os.PathLike, role: str) -> ComponentKind | None:
    """The registered kind of the model folder ``path`` (or of its declaration / marker file), or None for
    anything that declares no kind (a standard Wan / transformers model folder or file).

    Raises:
        MVS2VError: the folder declares a kind nobody registered (the error names the package that
            provides it), or a kind of another role (e.g. a text encoder given as ``--vae``).
    """
    p = Path(path)
    kinds = registered_kinds()
    if p.is_file() and p.name != DECLARATION_FILE and all(k.marker != p.name for k in kinds.values()):
        return None  # a weights file: not a component folder
    folder = p.parent if p.is_file() else p
    declared = _read_declaration(folder)
    if declared is None:
        return next((k for k in kinds.values() if k.role == role and k.marker and (folder / k.marker).is_file()), None)
    kind = kinds.get(declared["kind"])
    if kind is None:
        provider = declared.get("provider") or "the package that wrote it"
        raise MVS2VError(f"'{folder}' is a {declared['kind']!r} model, which no installed package loads: install or "
                         f"import {provider} (it registers the loader)")
    if kind.role != role:
        raise MVS2VError(f"'{folder}' is a {kind.kind!r} model, a {kind.role.replace('_', ' ')}, not a "
                         f"{role.replace('_', ' ')}")
    return kind

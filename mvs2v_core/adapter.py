"""The mvs2v adapter file: everything a trained multi-view adapter adds on top of a base Wan DiT.

One ``.safetensors`` file holds

* ``proxy.tokens`` ``[K, dim]`` -- one learnable vector per view slot (K = slots per subject), used
  for empty slots under the ``proxy`` empty-slot mode;
* ``mfi.proj.weight`` ``[text_dim, vit_dim]`` and ``mfi.proj.bias`` ``[text_dim]`` -- the MFI
  projector from ViT features (1280 CLIP-ViT-H, 1152 SigLIP...) to the text-encoder width;
* optionally a LoRA in ComfyUI-native keys, so ComfyUI's ``LoraLoaderModelOnly`` can load the same
  file: ``diffusion_model.<module path>.lora_A.weight`` ``[r, in]``,
  ``diffusion_model.<module path>.lora_B.weight`` ``[out, r]`` and ``diffusion_model.<module path>.alpha``
  (0-dim), where ``<module path>`` is the original Wan name such as ``blocks.0.self_attn.q``.
  ComfyUI merges ``W += strength * (alpha / r) * B @ A``; :func:`apply_lora` does the same. (ComfyUI
  logs the non-LoRA keys ``proxy.tokens`` / ``mfi.*`` as "not loaded"; that warning is harmless.)

and safetensors metadata (str -> str)::

    format          "mvs2v-adapter"
    format_version  "1"
    mvs2v           JSON of AdapterMetadata (see AdapterMetadata.to_json)

Only safetensors is read or written: pickle-based files (.pt/.pth/.bin/.ckpt) can run code on load.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import safe_open
from torch import nn

from .errors import AdapterMismatchError, CheckpointError, MVS2VError
from .model.config import WanConfig
from .references.mfi import MFIProjector
from .references.settings import EmptySlotMode, ReferenceSettings
from .safe_files import refuse_pickle, require_all_finite
from .utils import save_safetensors_atomic

FORMAT = "mvs2v-adapter"
FORMAT_VERSION = 1

PROXY_KEY = "proxy.tokens"
MFI_WEIGHT_KEY = "mfi.proj.weight"
MFI_BIAS_KEY = "mfi.proj.bias"
LORA_PREFIX = "diffusion_model."


# Every LoRA key this module writes matches this (lowercase Wan module paths only).
LORA_KEY_RE = re.compile(r"^diffusion_model\.[a-z0-9_.]+\.(lora_A\.weight|lora_B\.weight|alpha)$")

# Keys lora_pairs() understands: optional prefixes, module path, part (peft's ".default" allowed).
_LORA_PART_RE = re.compile(r"^(?P<path>.+?)\.(?P<part>lora_A|lora_B)(?:\.default)?\.weight$")
_LORA_ALPHA_RE = re.compile(r"^(?P<path>.+?)\.alpha$")
_LORA_INPUT_PREFIXES = ("base_model.model.", "diffusion_model.")
_BLOCK_RE = re.compile(r"^blocks\.(\d+)\.")

_MVS2V_FIELDS = (
    "base_family", "model_dim", "text_dim", "in_dim", "num_layers", "position_scheme",
    "slots_per_subject", "empty_slot_mode", "mfi_in_dim", "lora", "ref_timestep", "ref_attention", "slot_anchor",
    "training",
)


# ---- metadata ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoraSpec:
    """What the adapter's LoRA is.

    Attributes:
        rank: r, the inner dimension of every ``lora_A`` ``[r, in]`` / ``lora_B`` ``[out, r]`` pair.
        alpha: scale numerator; the merged update is ``(alpha / r) * B @ A``.
        targets: module-name suffixes the LoRA was trained on (``self_attn.q``, ``ffn.0``...); every
            LoRA module path in the file ends with one of them. None when not recorded.
    """

    rank: int
    alpha: float
    targets: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise MVS2VError(f"LoRA rank must be a positive integer, got {self.rank!r}")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not math.isfinite(self.alpha):
            raise MVS2VError(f"LoRA alpha must be a finite number, got {self.alpha!r}")
        object.__setattr__(self, "alpha", float(self.alpha))
        if self.targets is not None:
            if isinstance(self.targets, str) or not all(isinstance(t, str) and t for t in self.targets):
                raise MVS2VError(f"LoRA targets must be a list of module names, got {self.targets!r}")
            object.__setattr__(self, "targets", tuple(self.targets))

    def to_dict(self) -> dict:
        targets = list(self.targets) if self.targets is not None else None
        return {"rank": self.rank, "alpha": self.alpha, "targets": targets}

    @classmethod
    def from_dict(cls, d: Any) -> "LoraSpec":
        if not isinstance(d, Mapping):
            raise MVS2VError(f"adapter metadata 'lora' must be an object with rank, alpha, targets; got {d!r}")
        unknown = sorted(set(d) - {"rank", "alpha", "targets"})
        if unknown:
            raise MVS2VError(f"adapter metadata 'lora' has unknown key(s) {unknown}: update mvs2v")
        if "rank" not in d or "alpha" not in d:
            raise MVS2VError("adapter metadata 'lora' needs both 'rank' and 'alpha'")
        return cls(rank=d["rank"], alpha=d["alpha"], targets=d.get("targets"))

    def covers(self, module_path: str) -> bool:
        """Whether ``module_path`` (``blocks.3.self_attn.q``) is one of the targets."""
        if self.targets is None:
            return True
        return any(module_path == t or module_path.endswith("." + t) for t in self.targets)


# The reference settings are stored as these top-level keys (file format version 1; ``ref_attention``
# only when it is not ``full`` and ``slot_anchor`` only when not ``canonical``, so older readers refuse
# such an adapter instead of misusing it).
_REFERENCE_KEYS = ("position_scheme", "slots_per_subject", "empty_slot_mode", "ref_timestep", "ref_attention",
                   "slot_anchor")


@dataclass
class AdapterMetadata:
    """Everything needed to tell whether an adapter fits a model and a generation setup.

    Attributes:
        base_family: the base model it was trained on (``wan2.1-t2v-1.3b``...), for messages.
        model_dim: DiT width (proxy tokens are ``[K, model_dim]``).
        text_dim: text-encoder width (MFI projects into it).
        in_dim: latent channels of the base DiT (16 T2V, 36 I2V, 48 Wan2.2-5B).
        num_layers: DiT blocks of the base (LoRA paths name blocks by index).
        references: the :class:`ReferenceSettings` it was trained with (slots, scheme, empty-slot
            mode, reference timestep); they become the defaults wherever the adapter is loaded.
        mfi_in_dim: ViT feature width the MFI projector takes, or None when the adapter has no MFI.
        lora: :class:`LoraSpec` (or a dict with rank, alpha, targets), or None without LoRA.
        training: free-form JSON-able record (command, step, dataset...), or None.
    """

    base_family: str
    model_dim: int
    text_dim: int
    in_dim: int
    num_layers: int
    references: ReferenceSettings
    mfi_in_dim: int | None = None
    lora: LoraSpec | None = None
    training: dict | None = field(default=None)

    def __post_init__(self) -> None:
        if not isinstance(self.base_family, str) or not self.base_family:
            raise MVS2VError(f"adapter metadata 'base_family' must be a non-empty string, got {self.base_family!r}")
        for name in ("model_dim", "text_dim", "in_dim", "num_layers"):
            _check_pos_int(name, getattr(self, name))
        if self.mfi_in_dim is not None:
            _check_pos_int("mfi_in_dim", self.mfi_in_dim)
        if isinstance(self.references, Mapping):
            self.references = ReferenceSettings.from_dict(self.references)
        elif not isinstance(self.references, ReferenceSettings):
            raise MVS2VError(f"adapter metadata 'references' must be ReferenceSettings, got {self.references!r}")
        if isinstance(self.lora, Mapping):
            self.lora = LoraSpec.from_dict(self.lora)
        elif self.lora is not None and not isinstance(self.lora, LoraSpec):
            raise MVS2VError(f"adapter metadata 'lora' must be a LoraSpec, a dict or None, got {self.lora!r}")
        if self.training is not None and not isinstance(self.training, Mapping):
            raise MVS2VError(f"adapter metadata 'training' must be a dict or None, got {type(self.training).__name__}")

    def to_dict(self) -> dict:
        return {
            "base_family": self.base_family,
            "model_dim": self.model_dim,
            "text_dim": self.text_dim,
            "in_dim": self.in_dim,
            "num_layers": self.num_layers,
            **self.references.to_dict(),
            "mfi_in_dim": self.mfi_in_dim,
            "lora": self.lora.to_dict() if self.lora is not None else None,
            "training": dict(self.training) if self.training is not None else None,
        }

    def to_json(self) -> str:
        """Compact JSON with sorted keys (the ``mvs2v`` metadata entry)."""
        try:
            return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as e:
            raise MVS2VError(
                f"adapter metadata cannot be written as JSON ({e}): keep 'training' to strings, numbers, "
                "lists and dicts"
            ) from None

    @classmethod
    def from_json(cls, text: str) -> "AdapterMetadata":
        """Parse and validate the ``mvs2v`` metadata entry."""
        try:
            d = json.loads(text)
        except (TypeError, ValueError) as e:
            raise CheckpointError(
                f"the adapter's 'mvs2v' metadata is not valid JSON ({e}); the file is damaged"
            ) from None
        if not isinstance(d, dict):
            raise CheckpointError(f"the adapter's 'mvs2v' metadata must be a JSON object, got {type(d).__name__}")
        unknown = sorted(set(d) - set(_MVS2V_FIELDS))
        if unknown:
            raise CheckpointError(
                f"the adapter's metadata has unknown field(s) {unknown}: it was probably written by a newer "
                "mvs2v; update mvs2v"
            )
        required = (
            "base_family", "model_dim", "text_dim", "in_dim", "num_layers", "position_scheme", "slots_per_subject",
        )
        missing = [k for k in required if k not in d]
        if missing:
            raise CheckpointError(
                f"the adapter's metadata lacks {', '.join(missing)}; the file is damaged or incomplete"
            )
        references = ReferenceSettings.from_dict({k: d.pop(k) for k in _REFERENCE_KEYS if k in d})
        return cls(references=references, **d)


def _check_pos_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise MVS2VError(f"adapter metadata '{name}' must be a positive integer, got {value!r}")


# ---- adapter -------------------------------------------------------------------------------------


@dataclass
class Adapter:
    """A loaded (or about to be saved) adapter.

    Attributes:
        metadata: see :class:`AdapterMetadata`.
        proxy_tokens: ``[K, model_dim]`` or None.
        mfi_weight: ``[text_dim, mfi_in_dim]`` or None; mfi_bias: ``[text_dim]`` or None.
        lora: the LoRA entries only, in ComfyUI-native keys (see :func:`lora_state_dict`).
    """

    metadata: AdapterMetadata
    proxy_tokens: torch.Tensor | None = None
    mfi_weight: torch.Tensor | None = None
    mfi_bias: torch.Tensor | None = None
    lora: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def has_lora(self) -> bool:
        return bool(self.lora)

    @property
    def has_mfi(self) -> bool:
        return self.mfi_weight is not None

    def mfi_projector(self, device: str | torch.device = "cpu") -> MFIProjector:
        """The MFI projector with this adapter's weights (float32); the adapter must have one."""
        if self.mfi_weight is None or self.mfi_bias is None:
            raise AdapterMismatchError("this adapter has no MFI projector (mfi_in_dim is null)")
        text_dim, vit_dim = self.mfi_weight.shape
        projector = MFIProjector(vit_dim, text_dim)
        with torch.no_grad():
            projector.proj.weight.copy_(self.mfi_weight.float())
            projector.proj.bias.copy_(self.mfi_bias.float())
        return projector.to(device)

    def tensors(self) -> dict[str, torch.Tensor]:
        """All tensors under their file keys."""
        out: dict[str, torch.Tensor] = {}
        if self.proxy_tokens is not None:
            out[PROXY_KEY] = self.proxy_tokens
        if self.mfi_weight is not None:
            out[MFI_WEIGHT_KEY] = self.mfi_weight
        if self.mfi_bias is not None:
            out[MFI_BIAS_KEY] = self.mfi_bias
        out.update(self.lora)
        return out

    def validate(self, source: str = "the adapter") -> None:
        """Raise :class:`CheckpointError` where tensors and metadata disagree."""
        problems = _consistency_problems(self)
        if problems:
            raise CheckpointError(f"{source} is inconsistent:\n  - " + "\n  - ".join(problems))


def _consistency_problems(adapter: Adapter) -> list[str]:
    m = adapter.metadata
    problems: list[str] = []
    p = adapter.proxy_tokens
    if p is not None:
        if p.ndim != 2:
            problems.append(f"proxy.tokens must be [slots, width], got shape {list(p.shape)}")
        else:
            if p.shape[0] != m.references.slots_per_subject:
                problems.append(
                    f"proxy.tokens has {p.shape[0]} tokens but the metadata says "
                    f"{m.references.slots_per_subject} slots per subject"
                )
            if p.shape[1] != m.model_dim:
                problems.append(f"proxy.tokens has width {p.shape[1]} but the metadata says model width {m.model_dim}")
    elif m.references.empty_slot_mode == EmptySlotMode.PROXY:
        problems.append("the metadata says empty slots use proxy tokens, but there is no proxy.tokens tensor")

    w, b = adapter.mfi_weight, adapter.mfi_bias
    if (w is None) != (b is None):
        problems.append("the MFI projector needs both mfi.proj.weight and mfi.proj.bias; only one is present")
    if w is not None:
        if m.mfi_in_dim is None:
            problems.append("mfi.proj.weight is present but the metadata says mfi_in_dim is null (no MFI)")
        if w.ndim != 2:
            problems.append(f"mfi.proj.weight must be [text_dim, vit_dim], got shape {list(w.shape)}")
        elif w.shape[0] != m.text_dim or (m.mfi_in_dim is not None and w.shape[1] != m.mfi_in_dim):
            problems.append(
                f"mfi.proj.weight has shape {list(w.shape)} but the metadata says "
                f"[{m.text_dim}, {m.mfi_in_dim}] (text_dim, mfi_in_dim)"
            )
    elif m.mfi_in_dim is not None:
        problems.append(f"the metadata says mfi_in_dim {m.mfi_in_dim} but there is no mfi.proj.weight")
    if b is not None and (b.ndim != 1 or b.shape[0] != m.text_dim):
        problems.append(f"mfi.proj.bias has shape {list(b.shape)} but the metadata says [{m.text_dim}] (text_dim)")

    for t_name, t in adapter.tensors().items():
        if not t.is_floating_point():
            problems.append(f"{t_name} has dtype {t.dtype}; adapter tensors must be floating point")

    if adapter.lora:
        bad = [k for k in adapter.lora if not LORA_KEY_RE.match(k)]
        if bad:
            problems.append(
                f"LoRA key(s) not in the ComfyUI-native form diffusion_model.<module>.lora_A.weight / "
                f".lora_B.weight / .alpha: {', '.join(bad[:5])}"
            )
        try:
            pairs = lora_pairs(adapter.lora)
        except MVS2VError as e:
            problems.append(str(e))
            pairs = {}
        if m.lora is None:
            problems.append("the file has LoRA tensors but the metadata says lora is null")
        else:
            for path, (a, _b, alpha) in pairs.items():
                if a.shape[0] != m.lora.rank:
                    problems.append(f"LoRA {path} has rank {a.shape[0]} but the metadata says rank {m.lora.rank}")
                if not math.isclose(alpha, m.lora.alpha, rel_tol=1e-6, abs_tol=1e-6):
                    problems.append(f"LoRA {path} has alpha {alpha:g} but the metadata says alpha {m.lora.alpha:g}")
                if not m.lora.covers(path):
                    problems.append(f"LoRA {path} is not one of the metadata's targets {list(m.lora.targets or ())}")
                blk = _BLOCK_RE.match(path)
                if blk and int(blk.group(1)) >= m.num_layers:
                    problems.append(
                        f"LoRA {path} names block {blk.group(1)} but the metadata says {m.num_layers} blocks"
                    )
    elif m.lora is not None:
        problems.append("the metadata describes a LoRA but the file has no LoRA tensors")
    return problems


# ---- save / load ---------------------------------------------------------------------------------


def save_adapter(path: str | os.PathLike, adapter: Adapter) -> None:
    """Write ``adapter`` to ``path`` (``.safetensors``) atomically.

    The file is written to a temporary file in the same folder and moved into place with
    :func:`os.replace`, so a crash or a full disk never leaves a half-written adapter (an older
    file at ``path`` stays intact). Parent folders are created.
    """
    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        raise MVS2VError(
            f"adapter path {str(path)!r} must end in .safetensors: adapters are only saved as safetensors"
        )
    adapter.validate("the adapter to save")
    metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "mvs2v": adapter.metadata.to_json()}
    save_safetensors_atomic(adapter.tensors(), path, metadata)


def load_adapter(path: str | os.PathLike, device: str | torch.device = "cpu") -> Adapter:
    """Read and validate an adapter file written by :func:`save_adapter`.

    Raises :class:`CheckpointError` for a pickle-based file, a missing file, a file that is not an
    mvs2v adapter, one written by a newer mvs2v, a tensor holding NaN or inf, or tensors that
    disagree with the metadata.
    """
    path = Path(path)
    refuse_pickle(path, "adapter")
    if not path.exists():
        raise CheckpointError(f"adapter file not found: {str(path)!r}. Check the path and the file name")
    if path.is_dir():
        raise CheckpointError(f"{str(path)!r} is a folder; give the adapter .safetensors file inside it")
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for a bad header
        raise CheckpointError(
            f"{str(path)!r} is not a readable safetensors file ({e}); it may be damaged or truncated"
        ) from None

    fmt = header.get("format")
    if fmt != FORMAT:
        what = "no 'format' entry" if fmt is None else f"format {fmt!r}"
        looks_lora = any(".lora_" in k for k in tensors)
        hint = " (it looks like a plain LoRA: load it with a LoRA loader instead)" if looks_lora else ""
        raise CheckpointError(
            f"{str(path)!r} is not an mvs2v adapter: its metadata has {what}, expected {FORMAT!r}{hint}"
        )
    raw_version = header.get("format_version", "")
    try:
        version = int(raw_version)
    except ValueError:
        raise CheckpointError(
            f"{str(path)!r} has an unreadable adapter format_version {raw_version!r}; the file is damaged"
        ) from None
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{str(path)!r} uses adapter format version {version}, written by a newer mvs2v; this mvs2v reads "
            f"version {FORMAT_VERSION} and older. Update mvs2v"
        )
    if version < 1:
        raise CheckpointError(f"{str(path)!r} has an invalid adapter format_version {version}")
    if "mvs2v" not in header:
        raise CheckpointError(f"{str(path)!r} lacks its 'mvs2v' metadata entry; the file is damaged or incomplete")
    try:
        metadata = AdapterMetadata.from_json(header["mvs2v"])
    except CheckpointError:
        raise
    except MVS2VError as e:
        raise CheckpointError(f"{str(path)!r} has invalid adapter metadata: {e}") from None

    known = {PROXY_KEY, MFI_WEIGHT_KEY, MFI_BIAS_KEY}
    unexpected = sorted(k for k in tensors if k not in known and not k.startswith(LORA_PREFIX))
    if unexpected:
        raise CheckpointError(
            f"{str(path)!r} has unexpected tensor(s) {', '.join(unexpected[:5])}: it may come from a newer mvs2v"
        )
    require_all_finite(tensors, repr(str(path)))  # proxy tokens, MFI, every LoRA tensor: NaN / inf named at load
    adapter = Adapter(
        metadata=metadata,
        proxy_tokens=tensors.get(PROXY_KEY),
        mfi_weight=tensors.get(MFI_WEIGHT_KEY),
        mfi_bias=tensors.get(MFI_BIAS_KEY),
        lora={k: v for k, v in tensors.items() if k.startswith(LORA_PREFIX)},
    )
    adapter.validate(repr(str(path)))
    return adapter


# ---- compatibility -------------------------------------------------------------------------------


def check_adapter(adapter: Adapter, config: WanConfig, settings: ReferenceSettings | None = None) -> list[str]:
    """Plain-words reasons why ``adapter`` does not fit ``config`` and the requested reference settings.

    ``settings`` are checked only when given. A different family with the same shapes (Wan2.1 vs
    Phantom-Wan) is not a mismatch. Returns an empty list when everything fits.
    """
    m = adapter.metadata
    trained = f"({m.base_family})"
    this = f"({config.family})"
    out: list[str] = []
    if m.model_dim != config.dim:
        out.append(
            f"adapter was trained for a model of width {m.model_dim} {trained}; "
            f"this model has width {config.dim} {this}"
        )
    if m.text_dim != config.text_dim:
        out.append(
            f"adapter was trained for a text-encoder width of {m.text_dim} {trained}; this model has "
            f"text width {config.text_dim} {this}"
        )
    if m.in_dim != config.in_dim:
        out.append(
            f"adapter was trained for a model with {m.in_dim} latent input channels {trained}; this model has "
            f"{config.in_dim} {this} (T2V, I2V and Wan2.2-5B models are not interchangeable)"
        )
    # Block count only matters for the LoRA, whose keys name blocks by index.
    if adapter.has_lora and m.num_layers != config.num_layers:
        out.append(
            f"adapter's LoRA was trained for a model with {m.num_layers} blocks {trained}; this model has "
            f"{config.num_layers} blocks {this}"
        )
    if settings is not None:
        out.extend(_settings_problems(adapter, settings))
    return out


def _settings_problems(adapter: Adapter, want: ReferenceSettings) -> list[str]:
    have = adapter.metadata.references
    out: list[str] = []
    if want.scheme.canonical() != have.scheme.canonical():
        out.append(
            f"adapter was trained with position scheme {have.scheme.describe()}; you asked "
            f"for {want.scheme.describe()}: use the adapter's scheme or leave it unset"
        )
    if want.slots_per_subject != have.slots_per_subject:
        out.append(
            f"adapter was trained with {have.slots_per_subject} view slots per subject; you asked for "
            f"{want.slots_per_subject}: set slots per subject to {have.slots_per_subject}"
        )
    if want.empty_slot_mode == EmptySlotMode.PROXY and adapter.proxy_tokens is None:
        out.append(
            "empty-slot mode 'proxy' needs proxy tokens, but this adapter has none: use "
            f"{have.empty_slot_mode.value!r} (what it was trained with)"
        )
    elif want.empty_slot_mode != have.empty_slot_mode:
        out.append(
            f"adapter was trained with empty-slot mode {have.empty_slot_mode.value!r}; you asked for "
            f"{want.empty_slot_mode.value!r}: use {have.empty_slot_mode.value!r}"
        )
    if want.ref_timestep != have.ref_timestep:
        out.append(
            f"adapter was trained with reference timestep {have.ref_timestep.value!r}; you asked for "
            f"{want.ref_timestep.value!r}: set the reference timestep to {have.ref_timestep.value!r}"
        )
    if want.ref_attention != have.ref_attention and have.cached:
        out.append(
            "adapter was trained with cached references (reference tokens attend only to references); you asked "
            f"for reference attention {want.ref_attention.value!r}: use 'cached' (what it was trained with)"
        )
    if want.slot_anchor != have.slot_anchor:
        out.append(
            f"adapter was trained with slots anchored on the {have.slot_anchor.value!r} view; you asked for "
            f"{want.slot_anchor.value!r}: set the slot anchor to {have.slot_anchor.value!r}"
        )
    return out


def require_compatible(adapter: Adapter, config: WanConfig, settings: ReferenceSettings | None = None) -> None:
    """Raise :class:`AdapterMismatchError` listing every mismatch found by :func:`check_adapter`."""
    problems = check_adapter(adapter, config, settings)
    if problems:
        raise AdapterMismatchError("the adapter does not fit this model / setup:\n  - " + "\n  - ".join(problems))


# ---- LoRA ----------------------------------------------------------------------------------------


def _strip_lora_prefix(key: str) -> str:
    for prefix in _LORA_INPUT_PREFIXES:  # peft's "base_model.model." may precede "diffusion_model."
        if key.startswith(prefix):
            key = key[len(prefix):]
    return key


def lora_pairs(lora: Mapping[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
    """Group LoRA tensors by module path.

    Accepts ComfyUI-native keys (``diffusion_model.<path>.lora_A.weight``) and peft-style keys
    (``base_model.model.<path>.lora_A.default.weight``).

    Returns:
        ``{module path: (A [r, in], B [out, r], alpha)}``; a missing alpha means ``alpha = r`` (scale 1),
        as ComfyUI reads it.
    """
    parts: dict[str, dict[str, Any]] = {}
    for key, t in lora.items():
        k = _strip_lora_prefix(key)
        mt = _LORA_PART_RE.match(k)
        if mt:
            parts.setdefault(mt.group("path"), {})[mt.group("part")] = (key, t)
            continue
        ma = _LORA_ALPHA_RE.match(k)
        if ma:
            parts.setdefault(ma.group("path"), {})["alpha"] = (key, t)
            continue
        raise AdapterMismatchError(
            f"LoRA key {key!r} is not understood: expected <module>.lora_A.weight, <module>.lora_B.weight "
            "or <module>.alpha (optionally prefixed by diffusion_model. or base_model.model.)"
        )
    out: dict[str, tuple[torch.Tensor, torch.Tensor, float]] = {}
    for path, p in sorted(parts.items()):
        if "lora_A" not in p or "lora_B" not in p:
            # Name the A or B key that is present (the alpha alone says less).
            have = (p.get("lora_A") or p.get("lora_B") or p["alpha"])[0]
            lacking = " and ".join(x for x in ("lora_A", "lora_B") if x not in p)
            raise AdapterMismatchError(
                f"LoRA key {have!r} has no matching {lacking} for module {path!r}: the LoRA is incomplete; "
                "re-export it"
            )
        (a_key, a), (b_key, b) = p["lora_A"], p["lora_B"]
        if a.ndim < 2 or b.ndim < 2 or a.shape[0] != b.shape[1]:
            raise AdapterMismatchError(
                f"LoRA {a_key!r} {list(a.shape)} and {b_key!r} {list(b.shape)} do not pair up: "
                "expected A [r, in] and B [out, r] with the same r"
            )
        if "alpha" in p:
            al_key, al = p["alpha"]
            if al.numel() != 1:
                raise AdapterMismatchError(f"LoRA {al_key!r} must hold one number, got shape {list(al.shape)}")
            alpha = float(al.reshape(()).item())
        else:
            alpha = float(a.shape[0])
        out[path] = (a, b, alpha)
    return out


def lora_delta(A: torch.Tensor, B: torch.Tensor, alpha: float) -> torch.Tensor:
    """``(alpha / r) * B @ A`` in float32.

    Args:
        A: ``[r, in]`` (extra trailing dims, e.g. of a conv, are flattened).
        B: ``[out, r]``.
    Returns:
        ``[out, in]`` float32 on A's device.
    """
    r = A.shape[0]
    a = A.reshape(r, -1).to(torch.float32)
    b = B.reshape(B.shape[0], -1).to(device=a.device, dtype=torch.float32)
    return (b @ a) * (float(alpha) / r)


def _resolve_module(modules: Mapping[str, nn.Module], path: str) -> nn.Module | None:
    if path in modules:
        return modules[path]
    # A wrapper that keeps the DiT as `diffusion_model` (ComfyUI's BaseModel does) also works.
    return modules.get("diffusion_model." + path)


def _patch(model: nn.Module, lora: Mapping[str, torch.Tensor], scale: float) -> list[str]:
    pairs = lora_pairs(lora)
    modules = dict(model.named_modules())
    targets: list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor, float]] = []
    problems: list[str] = []
    # Validate everything first so a bad key never leaves the model half-patched.
    for path, (a, b, alpha) in pairs.items():
        key = f"{LORA_PREFIX}{path}.lora_A.weight"
        mod = _resolve_module(modules, path)
        weight = getattr(mod, "weight", None) if mod is not None else None
        if not isinstance(weight, torch.Tensor):
            problems.append(
                f"LoRA key {key!r} targets module {path!r}, which this model does not have"
                if mod is None else f"LoRA key {key!r} targets module {path!r}, which has no weight"
            )
            continue
        want = (weight.shape[0], math.prod(weight.shape[1:]))
        got = (b.shape[0], math.prod(a.shape[1:]))
        if got != want:
            problems.append(
                f"LoRA key {key!r} gives an update of shape [{got[0]}, {got[1]}] but {path}.weight is "
                f"{list(weight.shape)}: the LoRA was made for another model size"
            )
            continue
        targets.append((path, weight, a, b, alpha))
    if problems:
        shown = problems[:10] + ([f"... and {len(problems) - 10} more"] if len(problems) > 10 else [])
        raise AdapterMismatchError("the LoRA does not fit this model:\n  - " + "\n  - ".join(shown))
    with torch.no_grad():
        for _path, weight, a, b, alpha in targets:
            delta = lora_delta(a.to(weight.device), b.to(weight.device), alpha).reshape(weight.shape)
            # Add in float32, then store back in the weight's own dtype (bf16 / fp16 / fp8).
            weight.copy_((weight.to(torch.float32) + scale * delta).to(weight.dtype))
    return [t[0] for t in targets]


def apply_lora(model: nn.Module, lora: Mapping[str, torch.Tensor], strength: float = 1.0) -> list[str]:
    """Merge ``W += strength * (alpha / r) * B @ A`` into ``model``'s weights in place.

    Modules are found by dotted name (``blocks.0.self_attn.q``); the weight keeps its dtype and
    device. Nothing is changed when any key does not fit (unknown module, shape mismatch): the
    :class:`AdapterMismatchError` names every offending key.

    Returns:
        The module paths patched, sorted.
    """
    return _patch(model, lora, float(strength))


def remove_lora(model: nn.Module, lora: Mapping[str, torch.Tensor], strength: float = 1.0) -> list[str]:
    """Undo :func:`apply_lora` with the same ``strength`` (subtracts the same update).

    Exact up to the weight dtype's rounding: float32 weights round-trip to ~1e-6, bf16 weights
    to bf16 precision.
    """
    return _patch(model, lora, -float(strength))


def lora_state_dict(
    modules: Mapping[str, tuple[torch.Tensor, torch.Tensor, float]],
) -> dict[str, torch.Tensor]:
    """Build the ComfyUI-native LoRA entries of an adapter.

    Args:
        modules: ``{module path: (A [r, in], B [out, r], alpha)}``; paths are original Wan names such
            as ``blocks.0.self_attn.q`` (a leading ``diffusion_model.`` is tolerated).
    Returns:
        ``diffusion_model.<path>.lora_A.weight`` / ``.lora_B.weight`` (detached, contiguous, dtype
        kept) and ``diffusion_model.<path>.alpha`` (0-dim float32).
    """
    out: dict[str, torch.Tensor] = {}
    for path, (a, b, alpha) in modules.items():
        p = _strip_lora_prefix(path)
        if not p or p.startswith(".") or p.endswith("."):
            raise MVS2VError(f"LoRA module path {path!r} is not a dotted module name such as blocks.0.self_attn.q")
        if a.ndim < 2 or b.ndim != 2 or a.shape[0] != b.shape[1]:
            raise MVS2VError(
                f"LoRA for {p!r}: A {list(a.shape)} and B {list(b.shape)} do not pair up; "
                "expected A [r, in], B [out, r]"
            )
        out[f"{LORA_PREFIX}{p}.lora_A.weight"] = a.detach().contiguous()
        out[f"{LORA_PREFIX}{p}.lora_B.weight"] = b.detach().contiguous()
        out[f"{LORA_PREFIX}{p}.alpha"] = torch.tensor(float(alpha), dtype=torch.float32)
    return out


__all__ = [
    "FORMAT", "FORMAT_VERSION", "LORA_KEY_RE", "LoraSpec", "AdapterMetadata", "Adapter",
    "save_adapter", "load_adapter", "check_adapter", "require_compatible",
    "lora_pairs", "lora_delta", "apply_lora", "remove_lora", "lora_state_dict",
]

"""Loading Wan DiT weights from safetensors: original, ComfyUI and diffusers layouts, sharded, fp8.

Only safetensors are read. PyTorch pickle files (``.pt``, ``.pth``, ``.bin``, ``.ckpt``, or any
file that starts like a zip or pickle stream) are refused with a message that says how to convert
them: unpickling a file can run arbitrary code, so this module never calls ``torch.load``.

Public API:

* :func:`read_state_dict` - the tensors of a file, an index json, or a folder, as stored.
* :func:`read_meta_state_dict` - the same names, shapes and dtypes without reading any data.
* :func:`normalize_keys` - any supported key layout -> the original Wan names.
* :func:`dequantize` - fold ComfyUI fp8 scales into upcast weights.
* :func:`load_dit` - a ready :class:`~mvs2v_core.model.transformer.WanDiT` from a checkpoint.
* :func:`cast_for_inference` - cast a model, keeping the precision-critical parts in float32.
"""

from __future__ import annotations

import json
import os
import re
import struct
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError, MVS2VError
from ..safe_files import nonfinite_summary, refuse_pickle, refuse_pickle_folder, require_finite
from .config import NAMED_CONFIGS, WanConfig, infer_config, named_config
from .convert import (
    DIFFUSERS,
    ORIGINAL,
    detect_layout,
    diffusers_to_original_key,
    find_prefix,
    from_diffusers_keys,
    strip_prefix,
)

PathArg = str | os.PathLike

FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)
COMPUTE_DTYPES = (torch.float32, torch.bfloat16, torch.float16)

# ComfyUI fp8 side tensors, named after the module they belong to (``blocks.0.self_attn.q.``):
# the legacy "scaled fp8" files store ``scale_weight`` (+ ``scale_input``) and a top-level
# ``scaled_fp8`` marker; the newer mixed-precision files store ``weight_scale`` (+ ``input_scale``,
# ``comfy_quant``). The weight is ``stored_fp8.float() * scale``.
WEIGHT_SCALE_SUFFIXES = ("scale_weight", "weight_scale")
DROPPED_SUFFIXES = ("scale_input", "input_scale", "comfy_quant")
MARKER_KEYS = ("scaled_fp8",)

_SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}

_SHARD_NAME = re.compile(r"-(\d+)-of-(\d+)\.safetensors$")
_DIT_ROOTS = {"patch_embedding", "text_embedding", "time_embedding", "time_projection", "blocks", "head", "img_emb"}

_DTYPE_NAMES = {
    "fp32": torch.float32, "float32": torch.float32, "float": torch.float32,
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
    "fp16": torch.float16, "float16": torch.float16, "half": torch.float16,
}


# =================================================================================================
# Files
# =================================================================================================
def check_safetensors_file(path: PathArg) -> Path:
    """Raise :class:`CheckpointError` unless ``path`` is an existing, plausible safetensors file.

    Reads at most the first 16 bytes; refuses pickle / zip (``torch.save``) files and GGUF files by
    name or by content, and rejects files whose safetensors header is unreadable.
    """
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint not found: {p}. Check the path (and that the download finished)")
    if p.is_dir():
        raise CheckpointError(f"{p} is a folder, expected a .safetensors file")
    refuse_pickle(p, "checkpoint")
    size = p.stat().st_size
    with open(p, "rb") as fh:
        head = fh.read(16)
    if head.startswith(b"GGUF") or p.suffix.lower() == ".gguf":
        raise CheckpointError(
            f"{p} is a GGUF file; mvs2v reads .safetensors only. Use the safetensors (fp16/bf16/fp8) release "
            "of this model"
        )
    if len(head) < 9:
        raise CheckpointError(f"{p} is too small ({size} bytes) to be a safetensors file: it is empty or truncated; download it again")
    (header_len,) = struct.unpack("<Q", head[:8])
    if header_len > size - 8 or head[8:9] != b"{":
        raise CheckpointError(
            f"{p} is not a readable safetensors file (its header is damaged or it is another format). "
            "If it was downloaded, download it again; if it is another format, convert it to .safetensors"
        )
    return p


def _read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {path}: {e}. The file is damaged; download it again") from e
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} does not hold a JSON object; it is not a checkpoint index or config")
    return data


def _files_from_index(index: Path) -> list[Path]:
    data = _read_json(index)
    weight_map = data.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(
            f"{index} has no 'weight_map': it is not a sharded-checkpoint index. Give the index json "
            "(*.safetensors.index.json), the folder holding it, or a .safetensors file"
        )
    names = list(dict.fromkeys(weight_map.values()))
    files = [index.parent / n for n in names]
    missing = [str(f.name) for f in files if not f.exists()]
    if missing:
        raise CheckpointError(
            f"{index} lists shard file(s) that are not in {index.parent}: {', '.join(missing[:5])}. "
            "Download the missing shards next to the index"
        )
    return files


def _config_hints(folder: Path) -> dict:
    """Head count and epsilon from a diffusers or original-Wan ``config.json`` next to the weights."""
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        return {}
    try:
        data = _read_json(cfg_path)
    except CheckpointError:
        return {}
    hints: dict = {}
    heads = data.get("num_attention_heads", data.get("num_heads"))
    if isinstance(heads, int) and heads > 0:
        hints["num_heads"] = heads
    if isinstance(data.get("eps"), float):
        hints["eps"] = data["eps"]
    if isinstance(data.get("text_len"), int):
        hints["text_len"] = data["text_len"]
    return hints


# The safetensors metadata key ComfyUI (0.33+) reads a DiT's non-inferable settings from:
# ``{"config": "{\"transformer\": {\"text_len\": 32, \"text_dim\": 32, ...}}"}``.
CONFIG_METADATA_KEY = "config"
_METADATA_CONFIG_FIELDS = ("text_len", "num_heads", "eps")


def dit_config_metadata(cfg: WanConfig) -> dict[str, str]:
    """Safetensors metadata that records the settings of ``cfg`` a loader cannot read off tensor shapes.

    Written in ComfyUI's convention (``config`` = JSON ``{"transformer": {...}}`` with ``WanModel``
    keyword names), so both :func:`load_dit` and ComfyUI's Load Diffusion Model (0.33+) build the
    right model: ``text_len`` (context length the text is padded to), ``text_dim`` (ComfyUI does not
    infer it), ``num_heads`` and ``eps``.
    """
    transformer = {"text_len": int(cfg.text_len), "text_dim": int(cfg.text_dim), "num_heads": int(cfg.num_heads),
                   "eps": float(cfg.eps)}
    return {CONFIG_METADATA_KEY: json.dumps({"transformer": transformer}, sort_keys=True)}


def _metadata_hints(files: Sequence[Path]) -> dict:
    """``text_len`` / ``num_heads`` / ``eps`` from a ``config`` entry in the first file's safetensors metadata."""
    if not files:
        return {}
    from safetensors import safe_open

    try:
        with safe_open(str(files[0]), framework="pt") as handle:
            raw = (handle.metadata() or {}).get(CONFIG_METADATA_KEY)
    except Exception:  # an unreadable file is reported with the right message when its tensors are read
        return {}
    if raw is None:
        return {}
    try:
        transformer = json.loads(raw).get("transformer", {})
    except (ValueError, AttributeError):
        raise CheckpointError(f"{files[0]}: the '{CONFIG_METADATA_KEY}' metadata entry is not JSON of the form "
                              '{"transformer": {...}}; rewrite the file without it or fix it') from None
    if not isinstance(transformer, dict):
        raise CheckpointError(f"{files[0]}: metadata '{CONFIG_METADATA_KEY}.transformer' must be a JSON object")
    hints: dict = {}
    for key in _METADATA_CONFIG_FIELDS:
        value = transformer.get(key)
        if value is None:
            continue
        if key == "eps":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
        else:
            ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
        if not ok:
            raise CheckpointError(f"{files[0]}: metadata '{CONFIG_METADATA_KEY}.transformer.{key}' is {value!r}; "
                                  f"it must be a positive {'number' if key == 'eps' else 'integer'}")
        hints[key] = float(value) if key == "eps" else int(value)
    return hints


def _files_in_folder(folder: Path) -> tuple[list[Path], dict]:
    indexes = sorted(folder.glob("*.safetensors.index.json"))
    weights = sorted(folder.glob("*.safetensors"))
    if not indexes and not weights and (folder / "transformer").is_dir():
        if (folder / "transformer_2").is_dir():
            raise CheckpointError(
                f"{folder} is a diffusers Wan2.2 A14B pipeline with two experts: give {folder / 'transformer'} "
                f"(high-noise expert) or {folder / 'transformer_2'} (low-noise expert)"
            )
        return _files_in_folder(folder / "transformer")
    hints = _config_hints(folder)
    if indexes:
        if len(indexes) > 1:
            preferred = [i for i in indexes if i.name in ("diffusion_pytorch_model.safetensors.index.json", "model.safetensors.index.json")]
            if len(preferred) != 1:
                raise CheckpointError(
                    f"{folder} holds several checkpoint indexes ({', '.join(i.name for i in indexes)}): "
                    "give the path of the one for the diffusion model"
                )
            indexes = preferred
        return _files_from_index(indexes[0]), hints
    if weights:
        m = _SHARD_NAME.search(weights[0].name)
        if len(weights) == 1 and not (m and int(m.group(2)) > 1):
            return weights, hints
        for name in ("diffusion_pytorch_model.safetensors", "model.safetensors"):
            if (folder / name).is_file():
                return [folder / name], hints
        shards = [w for w in weights if _SHARD_NAME.search(w.name)]
        if len(shards) == len(weights):
            totals = {int(_SHARD_NAME.search(w.name).group(2)) for w in shards}  # type: ignore[union-attr]
            if len(totals) == 1 and totals.pop() == len(shards):
                return shards, hints
            raise CheckpointError(
                f"{folder} holds an incomplete or mixed set of shards ({', '.join(w.name for w in shards)}): "
                "download every shard, or give the index json"
            )
        raise CheckpointError(
            f"{folder} holds several .safetensors files ({', '.join(w.name for w in weights[:6])}) and no index: "
            "give the path of the diffusion-model (DiT) file itself"
        )
    experts = [d for d in ("high_noise_model", "low_noise_model") if (folder / d).is_dir()]
    if experts:
        raise CheckpointError(
            f"{folder} is a Wan2.2 A14B release with two experts: give {folder / experts[0]} "
            "(and the other expert separately), not the release folder"
        )
    refuse_pickle_folder(folder, "DiT checkpoint folder")
    raise CheckpointError(f"no .safetensors weights found in {folder}: give the folder or file of the diffusion model")


def resolve_checkpoint_files(path_or_paths: PathArg | Sequence[PathArg]) -> tuple[list[Path], dict]:
    """The safetensors files of a checkpoint, and hints (head count, ``text_len``, eps) from a ``config.json``
    beside them or from the ``config`` entry of the safetensors metadata (see :func:`dit_config_metadata`).

    Accepts a ``.safetensors`` file, a ``*.safetensors.index.json``, a diffusers ``config.json``, a
    folder (diffusers model or pipeline folder, original Wan release folder, folder of shards), or a
    list of shard files.
    """
    if isinstance(path_or_paths, (list, tuple)):
        if not path_or_paths:
            raise CheckpointError("no checkpoint file given")
        files: list[Path] = []
        for p in path_or_paths:
            sub, _ = resolve_checkpoint_files(p)
            files.extend(sub)
        return list(dict.fromkeys(files)), {}
    p = Path(path_or_paths).expanduser()
    if not p.exists():
        raise CheckpointError(f"checkpoint not found: {p}. Check the path (and that the download finished)")
    if p.is_dir():
        files, hints = _files_in_folder(p)
    elif p.name.endswith(".json"):
        if p.name == "config.json" or not p.name.endswith(".index.json"):
            files, hints = _files_in_folder(p.parent)
        else:
            files, hints = _files_from_index(p), _config_hints(p.parent)
    else:
        files, hints = [p], _config_hints(p.parent) if (p.parent / "config.json").is_file() else {}
    for f in files:
        check_safetensors_file(f)
    # A config.json beside the weights wins; the file's own metadata fills in what it does not say.
    hints = {**_metadata_hints(files), **hints}
    return files, hints


# =================================================================================================
# Lazy tensor sources
# =================================================================================================
class _Source:
    """Tensors by key, loaded one at a time; shapes and dtypes known without loading."""

    def __init__(self) -> None:
        self.meta: dict[str, torch.Tensor] = {}  # key -> meta-device tensor (shape, dtype)
        self.dtype_names: dict[str, str] = {}
        self.names: list[str] = []  # file names for messages

    def load(self, key: str) -> torch.Tensor:
        raise NotImplementedError

    def origin(self, key: str) -> str:
        """The file holding ``key`` (for messages that name one tensor)."""
        return self.describe()

    def describe(self) -> str:
        if not self.names:
            return "the state dict"
        if len(self.names) == 1:
            return self.names[0]
        return f"the {len(self.names)} shards in {Path(self.names[0]).parent}"


class _FileSource(_Source):
    def __init__(self, files: Sequence[Path], device: str | torch.device = "cpu") -> None:
        super().__init__()
        from safetensors import safe_open

        self._where: dict[str, object] = {}
        self._paths: dict[str, Path] = {}
        self.names = [str(f) for f in files]
        for f in files:
            try:
                handle = safe_open(str(f), framework="pt", device=str(device))
                keys = list(handle.keys())
            except Exception as e:  # safetensors raises SafetensorError / OSError
                raise CheckpointError(f"cannot read {f}: {e}. The file is damaged or truncated; download it again") from e
            for k in keys:
                if k in self._where:
                    raise CheckpointError(
                        f"tensor {k!r} is stored twice (in {self._paths[k].name} and {f.name}): these files are not "
                        "shards of one checkpoint. Give one file, or the shards of a single checkpoint"
                    )
                try:
                    sl = handle.get_slice(k)
                    dname, shape = sl.get_dtype(), sl.get_shape()
                except Exception as e:
                    raise CheckpointError(f"cannot read tensor {k!r} in {f}: {e}. Download the file again") from e
                self._where[k] = handle
                self._paths[k] = f
                self.dtype_names[k] = dname
                self.meta[k] = torch.empty(shape, dtype=_SAFETENSORS_DTYPES.get(dname, torch.uint8), device="meta")

    def origin(self, key: str) -> str:
        return str(self._paths[key])

    def load(self, key: str) -> torch.Tensor:
        try:
            return self._where[key].get_tensor(key)  # type: ignore[attr-defined]
        except Exception as e:
            raise CheckpointError(
                f"cannot read tensor {key!r} from {self._paths[key]}: {e}. The file is damaged or truncated; "
                "download it again"
            ) from e


class _DictSource(_Source):
    def __init__(self, sd: Mapping[str, torch.Tensor]) -> None:
        super().__init__()
        self._sd = sd
        for k, v in sd.items():
            if not isinstance(v, torch.Tensor):
                raise CheckpointError(f"state dict entry {k!r} is a {type(v).__name__}, not a tensor")
            self.meta[k] = torch.empty(v.shape, dtype=v.dtype, device="meta")
            self.dtype_names[k] = str(v.dtype).replace("torch.", "")

    def load(self, key: str) -> torch.Tensor:
        return self._sd[key]

    def origin(self, key: str) -> str:
        return "the given state dict"


def read_state_dict(path_or_paths: PathArg | Sequence[PathArg], device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """All tensors of a safetensors checkpoint, with their stored names and dtypes.

    Args:
        path_or_paths: a ``.safetensors`` file; a ``*.safetensors.index.json``; a folder with an
            index, one weights file, or a complete set of shards (``-0000i-of-0000n``); a diffusers
            model or pipeline folder (``config.json`` + weights, possibly under ``transformer/``);
            or a list of shard files.
        device: where the tensors are created.

    Raises:
        CheckpointError: missing path, pickle file (refused, never unpickled), damaged file.
    """
    files, _ = resolve_checkpoint_files(path_or_paths)
    src = _FileSource(files, device)
    return {k: src.load(k) for k in src.meta}


def read_meta_state_dict(path_or_paths: PathArg | Sequence[PathArg]) -> dict[str, torch.Tensor]:
    """Like :func:`read_state_dict`, but ``meta``-device tensors: names, shapes and dtypes only.

    Reads the safetensors headers, no tensor data, so it is instant for a 14B checkpoint; enough
    for :func:`normalize_keys` and :func:`~mvs2v_core.model.config.infer_config`.
    """
    files, _ = resolve_checkpoint_files(path_or_paths)
    return dict(_FileSource(files, "cpu").meta)


# =================================================================================================
# Keys and fp8
# =================================================================================================
def normalize_keys(sd: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str]:
    """Rename a DiT state dict to the original Wan layout.

    Strips the ``model.diffusion_model.`` / ``diffusion_model.`` / ``model.`` (and ``transformer.``,
    ``module.``) prefixes - keys outside the prefix (the VAE or text encoder of an all-in-one file)
    are dropped - and converts the diffusers ``WanTransformer3DModel`` names. ComfyUI fp8 scale
    tensors are renamed along with their modules (see :func:`dequantize`).

    Returns:
        ``(state_dict, layout)`` with layout ``"original"`` or ``"diffusers"`` (the input layout).
    """
    out, _, _ = strip_prefix(sd)
    layout = detect_layout(out)
    if layout == DIFFUSERS:
        out = from_diffusers_keys(out)
    return out, layout


def _is_side_key(key: str) -> bool:
    tail = key.rsplit(".", 1)[-1]
    return key in MARKER_KEYS or tail in WEIGHT_SCALE_SUFFIXES or tail in DROPPED_SUFFIXES


def _scale_key_for(weight_key: str, keys: Iterable[str] | Mapping) -> str | None:
    if not weight_key.endswith(".weight"):
        return None
    module = weight_key[: -len("weight")]
    for s in WEIGHT_SCALE_SUFFIXES:
        if module + s in keys:
            return module + s
    return None


def _apply_scale(key: str, w: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    scale = scale.to(device=w.device, dtype=torch.float32)
    if scale.numel() == 1:
        return w * scale.reshape(())
    if scale.numel() == w.shape[0] and w.ndim >= 1:
        return w * scale.reshape(-1, *([1] * (w.ndim - 1)))
    raise CheckpointError(
        f"tensor {key!r} has an fp8 scale of shape {tuple(scale.shape)}, which is neither per-tensor nor "
        "per-output-channel; this quantization format is not supported. Use the fp16/bf16 or the plain "
        "fp8 release of the model"
    )


def _materialize(key: str, t: torch.Tensor, scale: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
    """Stored tensor -> ``dtype``: fp8 is upcast, a ComfyUI scale is folded in (in float32)."""
    if not (t.is_floating_point()):
        raise CheckpointError(
            f"tensor {key!r} is stored as {t.dtype}, not as floating point; this quantized format is not "
            "supported. Use the fp16/bf16 or fp8 safetensors release of the model"
        )
    if scale is not None:
        t = _apply_scale(key, t.to(torch.float32), scale)
    return t.to(dtype)


def dequantize(sd: Mapping[str, torch.Tensor], dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Fold ComfyUI fp8 scales into the weights and drop the side tensors.

    Every fp8 (``float8_e4m3fn`` / ``float8_e5m2``) tensor is upcast to ``dtype``; a weight with a
    ``<module>.scale_weight`` (legacy "scaled fp8") or ``<module>.weight_scale`` (mixed-precision
    format) is multiplied by it in float32 first. The ``scaled_fp8`` marker and the ``scale_input``
    / ``input_scale`` / ``comfy_quant`` tensors are dropped. Other tensors are returned unchanged.
    """
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if _is_side_key(k):
            continue
        sk = _scale_key_for(k, sd)
        if sk is not None or v.dtype in FP8_DTYPES:
            out[k] = _materialize(k, v, sd[sk] if sk else None, dtype)
        else:
            out[k] = v
    return out


# =================================================================================================
# dtype policy
# =================================================================================================
def _as_dtype(dtype: torch.dtype | str) -> torch.dtype:
    if isinstance(dtype, str):
        key = dtype.lower().replace("torch.", "")
        if key not in _DTYPE_NAMES:
            raise MVS2VError(f"unknown dtype {dtype!r}; use one of fp32, bf16, fp16")
        dtype = _DTYPE_NAMES[key]
    if dtype not in COMPUTE_DTYPES:
        raise MVS2VError(
            f"the DiT cannot compute in {dtype}; use torch.bfloat16, torch.float16 or torch.float32 "
            "(fp8 checkpoints are upcast to that dtype when loaded)"
        )
    return dtype


def fp32_parameter_names(model: nn.Module) -> set[str]:
    """Parameters Wan keeps in float32: time embedding and projection, norms, modulation tables."""
    names: set[str] = set()
    for mname, module in model.named_modules():
        prefix = f"{mname}." if mname else ""
        is_norm = isinstance(module, nn.LayerNorm) or type(module).__name__ == "RMSNorm"
        is_time = mname.split(".", 1)[0] in ("time_embedding", "time_projection")
        for pname, _ in module.named_parameters(recurse=False):
            if is_norm or is_time or pname == "modulation":
                names.add(prefix + pname)
    return names


def _target_dtype(name: str, dtype: torch.dtype, keep: set[str]) -> torch.dtype:
    if dtype in (torch.bfloat16, torch.float16) and name in keep:
        return torch.float32
    return dtype


def cast_for_inference(model: nn.Module, dtype: torch.dtype | str) -> nn.Module:
    """Cast ``model``'s parameters to ``dtype`` in place and return it.

    For bfloat16 / float16, the time embedding, time projection, every norm and the modulation
    tables stay float32, as in the original Wan code (which computes them in float32).
    """
    dtype = _as_dtype(dtype)
    keep = fp32_parameter_names(model)
    with torch.no_grad():
        for name, p in model.named_parameters():
            want = _target_dtype(name, dtype, keep)
            if p.dtype != want:
                p.data = p.data.to(want)
        for b in model.buffers():
            if b.is_floating_point() and b.dtype != dtype:
                b.data = b.data.to(dtype)
    return model


# =================================================================================================
# load_dit
# =================================================================================================
_FIELD_WORDS = {
    "dim": "model width",
    "ffn_dim": "feed-forward width",
    "num_layers": "number of blocks",
    "in_dim": "input latent channels",
    "out_dim": "output latent channels",
    "text_dim": "text-embedding width",
    "freq_dim": "time-embedding frequency width",
    "patch_size": "patch size",
    "image_dim": "CLIP image-branch width (none = no image branch)",
    "image_pos_len": "image position-table length",
    "cross_attn_norm": "affine cross-attention norm",
    "text_len": "text length (tokens the prompt is padded to; from the file's config metadata)",
}


def _describe_foreign(keys: Sequence[str]) -> str:
    """A guess at what a non-DiT state dict is, for the error message."""
    ks = list(keys)
    joined = "\n".join(ks[:2000])
    if any(("lora_" in k) or (".lora." in k) for k in ks):
        return "it looks like a LoRA / adapter file. Load the base DiT file here and apply the LoRA separately"
    if re.search(r"(^|\.)(decoder|encoder)\.(conv|mid|down|up|middle|head)", joined, re.MULTILINE):
        return "it looks like a VAE. Give the diffusion model (DiT) file here; the VAE is a separate input"
    if re.search(r"(^|\.)(shared\.weight|token_embedding\.weight|encoder\.block\.)", joined, re.MULTILINE):
        return "it looks like a text encoder (umT5). Give the diffusion model (DiT) file here"
    if re.search(r"(^|\.)(visual\.|vision_model\.)", joined, re.MULTILINE):
        return "it looks like a CLIP image encoder. Give the diffusion model (DiT) file here"
    return (
        "no Wan DiT patch embedding ('patch_embedding.weight', optionally under 'model.diffusion_model.') was found. "
        "Give a Wan 2.1 / 2.2 diffusion model file, e.g. wan2.1_t2v_1.3B_fp16.safetensors"
    )


def _config_from_arg(config: WanConfig | str | None) -> WanConfig | None:
    if config is None or isinstance(config, WanConfig):
        return config
    if isinstance(config, str):
        return named_config(config)
    raise MVS2VError(f"config must be a WanConfig, a config name ({', '.join(NAMED_CONFIGS)}) or None, got {type(config).__name__}")


def _fmt(v) -> str:
    if v is None:
        return "none"
    if isinstance(v, tuple):
        return "x".join(str(i) for i in v)
    return str(v)


def _config_mismatch(given: WanConfig, inferred: WanConfig, where: str, stated: Sequence[str] = ()) -> str | None:
    """What ``given`` gets wrong about the checkpoint; ``text_len`` counts only when the file ``stated`` it."""
    diffs = [
        f"{words}: the checkpoint has {_fmt(getattr(inferred, f))}, the config {_fmt(getattr(given, f))}"
        for f, words in _FIELD_WORDS.items()
        if getattr(inferred, f) != getattr(given, f) and (f != "text_len" or f in stated)
    ]
    if not diffs:
        return None
    looks = f" The checkpoint looks like '{inferred.family}'." if inferred.family != "custom" else ""
    return (
        f"the config '{given.family}' does not fit {where}: " + "; ".join(diffs) + "." + looks +
        " Pass the matching config, or none to read it from the checkpoint"
    )


def _guess_family(cfg: WanConfig, names: Sequence[str]) -> WanConfig:
    """Phantom-Wan files have plain Wan2.1 T2V shapes; label them by file name."""
    lower = " ".join(Path(n).name.lower() for n in names)
    if "phantom" in lower and cfg.family in ("wan2.1-t2v-1.3b", "wan2.1-t2v-14b"):
        return cfg.with_(family=cfg.family.replace("wan2.1-t2v", "phantom-wan"))
    return cfg


def load_dit(
    path: PathArg | Sequence[PathArg] | Mapping[str, torch.Tensor],
    config: WanConfig | str | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str = torch.float32,
):
    """Build a :class:`~mvs2v_core.model.transformer.WanDiT` and load a checkpoint into it.

    Args:
        path: anything :func:`read_state_dict` accepts, or an in-memory state dict. Original Wan,
            ComfyUI (with or without ``model.diffusion_model.``) and diffusers layouts load; fp8
            weights (ComfyUI scaled fp8 included) are upcast to ``dtype``.
        config: a :class:`WanConfig`, a name from ``NAMED_CONFIGS``, or None to infer it from the
            tensor shapes (the head count comes from a ``config.json`` beside the weights when there
            is one, else head dim 128). A given config is checked against the tensors.
        device: where the weights go; tensors are read one by one straight onto it.
        dtype: compute dtype (float32, bfloat16, float16). For the half types, time embedding,
            time projection, norms and modulation tables stay float32 (see :func:`cast_for_inference`).

    Returns:
        The model in eval mode; ``model.load_info`` records the file(s), key layout and prefix.
        Tensors of an in-memory state dict that are already in the target dtype and device are
        used without a copy (the model shares their storage).

    Raises:
        CheckpointError: unreadable or pickle file, not a Wan DiT, config/shape mismatch, missing
            tensors, or tensors of a different architecture.
    """
    from .transformer import WanDiT

    dtype = _as_dtype(dtype)
    if torch.device(device).type == "cpu":
        device = "cpu"  # accelerate names it "cpu:0", which safetensors does not accept
    src, where, hints = _open_source(path, device)
    keys = _original_keys(src, where)
    cfg = _resolve_config(config, keys, hints, where, src if not isinstance(path, Mapping) else None)
    with torch.device("meta"):
        model = WanDiT(cfg)
    expected = {k: tuple(p.shape) for k, p in model.state_dict().items()}
    unexpected = _check_tensors(expected, keys, cfg, where)
    final, stored_dtypes = _load_tensors(src, keys, expected, fp32_parameter_names(model), dtype, device)
    model.load_state_dict(final, strict=True, assign=True)
    del final
    model.eval()
    model.load_info = {  # type: ignore[attr-defined]
        "source": where,
        "layout": keys.layout,
        "prefix": keys.prefix,
        "stored_dtypes": stored_dtypes,
        "fp8_scaled": bool(keys.scales),
        "ignored": unexpected,
        "config": cfg,
    }
    return model


@dataclass
class _Keys:
    """A checkpoint's DiT tensors under original Wan names.

    ``tensors`` / ``scales``: original key -> stored key (scales: fp8 weight scales);
    ``meta``: original key -> the stored tensor's meta (shape, dtype) for config inference.
    """

    prefix: str
    layout: str
    tensors: dict[str, str]
    scales: dict[str, str]
    meta: dict[str, Any]


def _open_source(path: Any, device: str | torch.device) -> tuple["_Source", str, dict]:
    """The tensors to read (files or an in-memory dict), how to name them in messages, config hints."""
    if isinstance(path, Mapping):
        return _DictSource(path), "the given state dict", {}
    files, hints = resolve_checkpoint_files(path)
    if len(files) == 1 and (m := _SHARD_NAME.search(files[0].name)) and int(m.group(2)) > 1:
        raise CheckpointError(
            f"{files[0]} is shard {int(m.group(1))} of {int(m.group(2))} of a sharded checkpoint: give the "
            "*.safetensors.index.json or the folder holding all the shards"
        )
    src = _FileSource(files, device)
    return src, src.describe(), hints


def _original_keys(src: "_Source", where: str) -> _Keys:
    """Strip the prefix, convert diffusers names, set fp8 side tensors apart."""
    stored_keys = list(src.meta)
    prefix = find_prefix(stored_keys)
    if prefix is None:
        raise CheckpointError(f"{where} is not a Wan diffusion model (DiT): {_describe_foreign(stored_keys)}")
    renamed = {k[len(prefix):]: k for k in stored_keys if k.startswith(prefix)}  # original key -> stored key
    outside = len(stored_keys) - len(renamed)
    layout = detect_layout(renamed)
    if layout == DIFFUSERS:
        renamed = from_diffusers_keys(renamed)
    if outside:
        warnings.warn(
            f"{where}: ignoring {outside} tensors outside '{prefix}' (the VAE / text encoder of an all-in-one file)",
            stacklevel=3,
        )
    scales = {k: v for k, v in renamed.items() if k.rsplit(".", 1)[-1] in WEIGHT_SCALE_SUFFIXES}
    tensors = {k: v for k, v in renamed.items() if not _is_side_key(k)}
    return _Keys(prefix, layout, tensors, scales, {k: src.meta[v] for k, v in tensors.items()})


def _resolve_config(config: WanConfig | str | None, keys: _Keys, hints: dict, where: str,
                    files: "_Source | None") -> WanConfig:
    """The given config (checked against the tensors) or the one inferred from them and the hints."""
    given = _config_from_arg(config)
    inferred: WanConfig | None = None
    try:
        inferred = infer_config(keys.meta)
    except MVS2VError as e:
        if given is None:  # with a given config, missing tensors and shapes are checked later
            raise CheckpointError(f"{where}: {e}") from None
    if inferred is not None:
        if "num_heads" in hints and inferred.dim % hints["num_heads"] == 0:
            inferred = inferred.with_(num_heads=hints["num_heads"])
        inferred = inferred.with_(**{k: v for k, v in hints.items() if k in ("eps", "text_len")})
        if files is not None:
            inferred = _guess_family(inferred, files.names)
    if given is None:
        return inferred  # type: ignore[return-value]
    if inferred is not None and (msg := _config_mismatch(given, inferred, where, stated=tuple(hints))):
        raise CheckpointError(msg)
    return given


def _check_tensors(expected: dict[str, tuple], keys: _Keys, cfg: WanConfig, where: str) -> list[str]:
    """Refuse wrong shapes, foreign blocks and missing tensors; returns the extra keys (a warning)."""
    tensors, meta = keys.tensors, keys.meta
    missing = [k for k in expected if k not in tensors]
    unexpected = [k for k in tensors if k not in expected]
    wrong = [
        f"{k}: the checkpoint has {_fmt(tuple(meta[k].shape))}, the model expects {_fmt(expected[k])}"
        for k in expected
        if k in meta and tuple(meta[k].shape) != expected[k]
    ]
    if wrong:
        raise CheckpointError(
            f"{len(wrong)} tensor(s) in {where} do not fit the '{cfg.family}' config: " + "; ".join(wrong[:5])
            + (" ..." if len(wrong) > 5 else "") + ". Pass the matching config, or none to read it from the checkpoint"
        )
    foreign_inside = [k for k in unexpected if k.split(".", 1)[0] in _DIT_ROOTS]
    if foreign_inside:
        raise CheckpointError(
            f"{where} has {len(foreign_inside)} tensor(s) inside the DiT that a Wan 2.1 / 2.2 DiT does not have "
            f"(e.g. {', '.join(foreign_inside[:4])}): it is a different architecture and cannot be loaded as '{cfg.family}'"
        )
    if missing:
        raise CheckpointError(
            f"{where} lacks {len(missing)} tensor(s) the '{cfg.family}' DiT needs, e.g. {', '.join(missing[:5])}. "
            "The file may be truncated or be one shard of several (then give the index json or the folder)"
        )
    if unexpected:
        warnings.warn(
            f"{where}: ignoring {len(unexpected)} tensor(s) that are not part of the Wan DiT "
            f"(e.g. {', '.join(unexpected[:4])}); these are extras such as adapter or control branches",
            stacklevel=3,
        )
    return unexpected


def _load_tensors(src: "_Source", keys: _Keys, expected: dict[str, tuple], keep_fp32: set[str],
                  dtype: torch.dtype, device: str | torch.device) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """Read each expected tensor onto ``device`` in its target dtype (fp8 upcast with its scale)."""
    final: dict[str, torch.Tensor] = {}
    stored_dtypes: dict[str, int] = {}
    for k in expected:
        stored = keys.tensors[k]
        t = src.load(stored)
        stored_dtypes[src.dtype_names[stored]] = stored_dtypes.get(src.dtype_names[stored], 0) + 1
        module = k[: -len("weight")] if k.endswith(".weight") else None
        scale_key = next((module + s for s in WEIGHT_SCALE_SUFFIXES if module and module + s in keys.scales), None)
        scale = src.load(keys.scales[scale_key]) if scale_key else None
        final[k] = _materialize(k, t, scale, _target_dtype(k, dtype, keep_fp32)).to(device)
        # One pass over the fewer bytes: a plain upcast (bf16 -> fp32) cannot make a finite value
        # inf; a scale or a narrowing cast (fp32 -> fp16) can, so those are checked after.
        upcast = scale is None and t.dtype not in FP8_DTYPES and t.element_size() < final[k].element_size()
        if nonfinite_summary(t if upcast else final[k]) is not None:
            _refuse_nonfinite(src, stored, t, keys.scales[scale_key] if scale_key else None, scale, final[k])
        del t
    return final, stored_dtypes


def _refuse_nonfinite(src: "_Source", stored: str, t: torch.Tensor, scale_key: str | None,
                      scale: torch.Tensor | None, loaded: torch.Tensor) -> None:
    """Raise for a loaded weight holding NaN / inf, naming the stored tensor at fault.

    Only called on the error path: finds whether the fp8 scale, the stored weight, or the cast to
    the compute dtype (values beyond float16's range) made it non-finite.
    """
    where = src.origin(stored)
    if scale is not None and scale_key is not None:  # an inf scale is the culprit, not the weight it multiplies
        require_finite(scale_key, scale, src.origin(scale_key))
    require_finite(stored, t, where)
    # The stored values are finite: the cast to the compute dtype (or the fp8 scale) overflowed.
    w = t.detach().cpu().to(torch.float64)  # float64 on the CPU: the true magnitude, on any device
    if scale is not None:
        w = _apply_scale(stored, w, scale.cpu().to(torch.float64))
    largest = float(w.abs().max())
    fix = ("load the model in bf16 or fp32 (fp16 holds at most 65504)" if loaded.dtype == torch.float16
           else "the file is damaged or was saved from a diverged training run; re-export or re-download it")
    raise CheckpointError(
        f"{where}: tensor {stored!r} holds values too large for {str(loaded.dtype).replace('torch.', '')} "
        f"(largest magnitude {largest:.4g}), which become inf when loaded: {fix}"
    )


__all__ = [
    "DIFFUSERS",
    "ORIGINAL",
    "cast_for_inference",
    "check_safetensors_file",
    "dequantize",
    "diffusers_to_original_key",
    "dit_config_metadata",
    "fp32_parameter_names",
    "load_dit",
    "normalize_keys",
    "read_meta_state_dict",
    "read_state_dict",
    "resolve_checkpoint_files",
]

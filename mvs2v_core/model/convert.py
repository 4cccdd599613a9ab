"""Key names of Wan DiT checkpoints: prefixes, the diffusers layout, ComfyUI scaled fp8.

mvs2v uses the original Wan parameter names (``blocks.N.self_attn.q.weight``), which ComfyUI also
uses, usually under a ``model.diffusion_model.`` prefix. diffusers' ``WanTransformer3DModel``
stores the same tensors under other names (``blocks.N.attn1.to_q.weight``); this module maps
between the two and strips the prefixes, so every layout ends up in the original one.

The only non-obvious part of the map: diffusers calls the affine cross-attention pre-norm
``norm2`` and the (parameter-free) feed-forward norm ``norm3``; original Wan names them the other
way round, so diffusers ``blocks.N.norm2.*`` is original ``blocks.N.norm3.*``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TypeVar

from ..errors import CheckpointError

T = TypeVar("T")

ORIGINAL = "original"
DIFFUSERS = "diffusers"

# Checked in this order; the first one under which the patch embedding is found wins.
KNOWN_PREFIXES = ("model.diffusion_model.", "diffusion_model.", "model.", "transformer.", "module.", "")

# Module paths outside the blocks: (diffusers, original). A key is a module path plus a tail
# (".weight", ".bias", ".scale_weight", ...), except the bare parameters in _TOP_PARAMS.
_TOP_MODULES: tuple[tuple[str, str], ...] = (
    ("patch_embedding", "patch_embedding"),
    ("condition_embedder.text_embedder.linear_1", "text_embedding.0"),
    ("condition_embedder.text_embedder.linear_2", "text_embedding.2"),
    ("condition_embedder.time_embedder.linear_1", "time_embedding.0"),
    ("condition_embedder.time_embedder.linear_2", "time_embedding.2"),
    ("condition_embedder.time_proj", "time_projection.1"),
    ("condition_embedder.image_embedder.norm1", "img_emb.proj.0"),
    ("condition_embedder.image_embedder.ff.net.0.proj", "img_emb.proj.1"),
    ("condition_embedder.image_embedder.ff.net.2", "img_emb.proj.3"),
    ("condition_embedder.image_embedder.norm2", "img_emb.proj.4"),
    ("proj_out", "head.head"),
)
_TOP_PARAMS: tuple[tuple[str, str], ...] = (
    ("scale_shift_table", "head.modulation"),
    ("condition_embedder.image_embedder.pos_embed", "img_emb.emb_pos"),
)
# Inside ``blocks.N.``.
_BLOCK_MODULES: tuple[tuple[str, str], ...] = (
    ("attn1.to_q", "self_attn.q"),
    ("attn1.to_k", "self_attn.k"),
    ("attn1.to_v", "self_attn.v"),
    ("attn1.to_out.0", "self_attn.o"),
    ("attn1.norm_q", "self_attn.norm_q"),
    ("attn1.norm_k", "self_attn.norm_k"),
    ("attn2.to_q", "cross_attn.q"),
    ("attn2.to_k", "cross_attn.k"),
    ("attn2.to_v", "cross_attn.v"),
    ("attn2.to_out.0", "cross_attn.o"),
    ("attn2.norm_q", "cross_attn.norm_q"),
    ("attn2.norm_k", "cross_attn.norm_k"),
    ("attn2.add_k_proj", "cross_attn.k_img"),
    ("attn2.add_v_proj", "cross_attn.v_img"),
    ("attn2.norm_added_k", "cross_attn.norm_k_img"),
    ("norm2", "norm3"),  # the affine cross-attention norm: names swapped between the layouts
    ("ffn.net.0.proj", "ffn.0"),
    ("ffn.net.2", "ffn.2"),
)
_BLOCK_PARAMS: tuple[tuple[str, str], ...] = (("scale_shift_table", "modulation"),)

# diffusers keys that have no counterpart and are dropped (diffusers itself ignores them).
_DIFFUSERS_DROP = re.compile(r"(^|\.)norm_added_q\.|^rope\.")

_BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.(.+)$")

# Keys that only exist in the diffusers layout / only in the original one.
_DIFFUSERS_MARKERS = re.compile(r"^(condition_embedder\.|proj_out\.|scale_shift_table$|blocks\.\d+\.(attn1|attn2|scale_shift_table))")
_ORIGINAL_MARKERS = re.compile(
    r"^(text_embedding\.|time_embedding\.|time_projection\.|head\.|img_emb\.|blocks\.\d+\.(self_attn|cross_attn|modulation))"
)


def _map_key(key: str, modules: Iterable[tuple[str, str]], params: Iterable[tuple[str, str]], src: int) -> str | None:
    dst = 1 - src
    for pair in params:
        if key == pair[src]:
            return pair[dst]
    for pair in modules:
        if key.startswith(pair[src] + "."):
            return pair[dst] + key[len(pair[src]):]
    return None


def _convert_key(key: str, src: int) -> str:
    """Map one key; ``src`` 0 = diffusers -> original, 1 = original -> diffusers. Unknown keys pass."""
    m = _BLOCK_KEY.match(key)
    if m:
        inner = _map_key(m.group(2), _BLOCK_MODULES, _BLOCK_PARAMS, src)
        return key if inner is None else f"blocks.{m.group(1)}.{inner}"
    out = _map_key(key, _TOP_MODULES, _TOP_PARAMS, src)
    return key if out is None else out


def diffusers_to_original_key(key: str) -> str:
    """``blocks.0.attn1.to_q.weight`` -> ``blocks.0.self_attn.q.weight``; unknown keys unchanged."""
    return _convert_key(key, 0)


def original_to_diffusers_key(key: str) -> str:
    """``blocks.0.self_attn.q.weight`` -> ``blocks.0.attn1.to_q.weight``; unknown keys unchanged."""
    return _convert_key(key, 1)


def from_diffusers_keys(sd: Mapping[str, T]) -> dict[str, T]:
    """A diffusers ``WanTransformer3DModel`` state dict renamed to the original Wan layout."""
    out: dict[str, T] = {}
    for k, v in sd.items():
        if _DIFFUSERS_DROP.search(k):
            continue
        out[diffusers_to_original_key(k)] = v
    return out


def to_diffusers_keys(sd: Mapping[str, T]) -> dict[str, T]:
    """An original-layout Wan state dict renamed for diffusers ``WanTransformer3DModel``."""
    return {original_to_diffusers_key(k): v for k, v in sd.items()}


def detect_layout(keys: Iterable[str]) -> str:
    """``"diffusers"`` or ``"original"`` for prefix-free keys (``"original"`` when neither is recognised)."""
    keys = list(keys)
    n_diff = sum(1 for k in keys if _DIFFUSERS_MARKERS.match(k))
    n_orig = sum(1 for k in keys if _ORIGINAL_MARKERS.match(k))
    if n_diff and n_orig:
        raise CheckpointError(
            "the checkpoint mixes the diffusers key layout (e.g. 'blocks.0.attn1.to_q.weight') with the "
            "original Wan layout (e.g. 'blocks.0.self_attn.q.weight'); it was probably merged wrongly. "
            "Use an unmodified Wan DiT file"
        )
    return DIFFUSERS if n_diff else ORIGINAL


def find_prefix(keys: Iterable[str]) -> str | None:
    """The prefix under which the DiT's patch embedding is stored, or None if there is none."""
    keyset = set(keys)
    for prefix in KNOWN_PREFIXES:
        if prefix + "patch_embedding.weight" in keyset:
            return prefix
    return None


def strip_prefix(sd: Mapping[str, T]) -> tuple[dict[str, T], str, list[str]]:
    """Remove the DiT's key prefix.

    Returns ``(state_dict, prefix, dropped)``: when the DiT sits under a prefix such as
    ``model.diffusion_model.``, keys outside it (the VAE or text encoder of an all-in-one
    checkpoint) are dropped and listed in ``dropped``. Without a recognisable DiT the dict is
    returned unchanged with prefix ``""``.
    """
    prefix = find_prefix(sd)
    if not prefix:
        return dict(sd), "", []
    out: dict[str, T] = {}
    dropped: list[str] = []
    for k, v in sd.items():
        if k.startswith(prefix):
            out[k[len(prefix):]] = v
        else:
            dropped.append(k)
    return out, prefix, dropped

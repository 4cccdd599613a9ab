"""Wan DiT configurations: the named releases and a config inferred from any state dict.

Key names are the original Wan ones (``blocks.N.self_attn.q.weight``), which ComfyUI also uses.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields, replace
from typing import Mapping

import torch

from ..errors import CheckpointError, MVS2VError


@dataclass(frozen=True)
class WanConfig:
    """Hyper-parameters of a Wan 2.1 / 2.2 DiT.

    Attributes:
        dim: model width (1536 for 1.3B, 3072 for 5B, 5120 for 14B).
        ffn_dim: hidden width of the feed-forward network.
        num_heads: attention heads; head dim = dim // num_heads (128 in every release).
        num_layers: number of transformer blocks.
        in_dim: latent channels in (16 for the Wan2.1 VAE, 48 for the Wan2.2 VAE, 36 for I2V).
        out_dim: latent channels out.
        text_dim: text-encoder width (4096 for umT5-XXL).
        freq_dim: sinusoidal time-embedding width.
        text_len: text tokens the context is zero-padded to (512 in Wan).
        patch_size: (t, h, w) patch of the Conv3d embedding.
        eps: norm epsilon.
        cross_attn_norm: whether cross-attention has an affine pre-norm (``norm3``); true in all releases.
        image_dim: CLIP feature width of the I2V image branch (1280), or None for T2V.
        image_pos_len: learned position table length of the FLF2V image branch (514), or None.
        family: a label for messages and adapter metadata (``wan2.1-t2v-1.3b``, ``custom``...).
    """

    dim: int = 1536
    ffn_dim: int = 8960
    num_heads: int = 12
    num_layers: int = 30
    in_dim: int = 16
    out_dim: int = 16
    text_dim: int = 4096
    freq_dim: int = 256
    text_len: int = 512
    patch_size: tuple[int, int, int] = (1, 2, 2)
    eps: float = 1e-6
    cross_attn_norm: bool = True
    image_dim: int | None = None
    image_pos_len: int | None = None
    family: str = "custom"

    def __post_init__(self) -> None:
        if self.dim % self.num_heads != 0:
            raise MVS2VError(f"model width {self.dim} is not divisible by {self.num_heads} heads")
        head_dim = self.dim // self.num_heads
        if head_dim % 2 != 0 or head_dim < 6:
            raise MVS2VError(f"head dim {head_dim} must be even and at least 6 for the 3D RoPE split")

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def is_i2v(self) -> bool:
        return self.image_dim is not None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["patch_size"] = list(self.patch_size)
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> "WanConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise MVS2VError(f"unknown config fields {sorted(unknown)}; known fields are {sorted(known)}")
        d = dict(d)
        if "patch_size" in d:
            d["patch_size"] = tuple(d["patch_size"])
        return cls(**d)

    def with_(self, **changes) -> "WanConfig":
        return replace(self, **changes)


# Named releases. A14B = the two Wan2.2 experts (high-noise and low-noise), same shape each.
NAMED_CONFIGS: dict[str, WanConfig] = {
    "wan2.1-t2v-1.3b": WanConfig(1536, 8960, 12, 30, 16, 16, family="wan2.1-t2v-1.3b"),
    "wan2.1-t2v-14b": WanConfig(5120, 13824, 40, 40, 16, 16, family="wan2.1-t2v-14b"),
    "wan2.1-i2v-14b": WanConfig(5120, 13824, 40, 40, 36, 16, image_dim=1280, family="wan2.1-i2v-14b"),
    "wan2.2-ti2v-5b": WanConfig(3072, 14336, 24, 30, 48, 48, family="wan2.2-ti2v-5b"),
    "wan2.2-t2v-a14b": WanConfig(5120, 13824, 40, 40, 16, 16, family="wan2.2-t2v-a14b"),
    "wan2.2-i2v-a14b": WanConfig(5120, 13824, 40, 40, 36, 16, family="wan2.2-i2v-a14b"),
}
# Phantom-Wan is a plain T2V DiT: the same shapes as the Wan2.1 T2V releases.
NAMED_CONFIGS["phantom-wan-1.3b"] = NAMED_CONFIGS["wan2.1-t2v-1.3b"].with_(family="phantom-wan-1.3b")
NAMED_CONFIGS["phantom-wan-14b"] = NAMED_CONFIGS["wan2.1-t2v-14b"].with_(family="phantom-wan-14b")


def named_config(name: str) -> WanConfig:
    key = name.lower()
    if key not in NAMED_CONFIGS:
        raise MVS2VError(f"unknown model config {name!r}; known: {', '.join(NAMED_CONFIGS)}")
    return NAMED_CONFIGS[key]


_BLOCK_RE = re.compile(r"^blocks\.(\d+)\.")


def infer_config(state_dict: Mapping[str, torch.Tensor], family: str | None = None) -> WanConfig:
    """Read a :class:`WanConfig` off a state dict in the original Wan key layout (no prefix).

    Head count is dim // 128 as in every Wan release; for smaller test models whose width is not a
    multiple of 128 it falls back to the head count whose head dim is 64 or the largest power of
    two that divides dim, and callers that know better pass an explicit config.
    """
    required = ["patch_embedding.weight", "head.modulation", "blocks.0.ffn.0.weight", "text_embedding.0.weight"]
    missing = [k for k in required if k not in state_dict]
    if missing:
        raise CheckpointError(
            f"this does not look like a Wan DiT state dict: missing {', '.join(missing)}. "
            "Give the diffusion model file (e.g. wan2.1_t2v_1.3B_fp16.safetensors), not a VAE or text encoder"
        )
    pe = state_dict["patch_embedding.weight"]  # [dim, in_dim, pt, ph, pw]
    dim, in_dim = int(pe.shape[0]), int(pe.shape[1])
    patch = tuple(int(s) for s in pe.shape[2:])
    ffn_dim = int(state_dict["blocks.0.ffn.0.weight"].shape[0])
    text_dim = int(state_dict["text_embedding.0.weight"].shape[1])
    freq_dim = int(state_dict["time_embedding.0.weight"].shape[1]) if "time_embedding.0.weight" in state_dict else 256
    head_w = state_dict.get("head.head.weight")
    out_dim = int(head_w.shape[0]) // (patch[0] * patch[1] * patch[2]) if head_w is not None else in_dim
    num_layers = 1 + max(int(m.group(1)) for k in state_dict if (m := _BLOCK_RE.match(k)))
    image_dim = None
    image_pos_len = None
    if "img_emb.proj.0.weight" in state_dict:
        image_dim = int(state_dict["img_emb.proj.0.weight"].shape[0])
        if "img_emb.emb_pos" in state_dict:
            image_pos_len = int(state_dict["img_emb.emb_pos"].shape[1])
    num_heads = _infer_heads(dim)
    cross_attn_norm = "blocks.0.norm3.weight" in state_dict
    inferred = WanConfig(
        dim=dim, ffn_dim=ffn_dim, num_heads=num_heads, num_layers=num_layers, in_dim=in_dim,
        out_dim=out_dim, text_dim=text_dim, freq_dim=freq_dim, patch_size=patch,  # type: ignore[arg-type]
        cross_attn_norm=cross_attn_norm, image_dim=image_dim, image_pos_len=image_pos_len,
        family=family or "custom",
    )
    if family is None:
        for name, cfg in NAMED_CONFIGS.items():
            if cfg.with_(family="custom") == inferred and not name.startswith("phantom"):
                return inferred.with_(family=name)
    return inferred


def _infer_heads(dim: int) -> int:
    if dim % 128 == 0:
        return dim // 128
    for head_dim in (64, 32, 16, 8):
        if dim % head_dim == 0:
            return dim // head_dim
    raise CheckpointError(f"cannot infer the head count for width {dim}: pass an explicit config")

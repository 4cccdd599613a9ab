"""A minimal LoRA for the Wan DiT's ``nn.Linear`` modules, exported in ComfyUI-native keys.

``y = W x + b + (alpha / r) * B (A x)`` with ``A`` ``[r, in]`` (Kaiming-uniform init) and ``B``
``[out, r]`` (zeros), so a fresh LoRA leaves the model unchanged. The wrapped module keeps the base
``nn.Linear`` as ``.base`` and exposes its ``weight`` / ``bias``, so code that reads
``module.weight`` (the DiT reads ``text_embedding[0].weight.dtype``) still works. Export goes
through :func:`mvs2v_core.adapter.lora_state_dict` with the original Wan module paths
(``blocks.0.self_attn.q``), which is exactly the ``W += (alpha / r) B A`` that ComfyUI's LoRA loader
and :func:`mvs2v_core.adapter.apply_lora` merge.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mvs2v_core.errors import MVS2VError


class LoRALinear(nn.Module):
    """``base(x) + scale * B(A(dropout(x)))``; trainable ``lora_A`` ``[r, in]``, ``lora_B`` ``[out, r]``."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.base = base
        self.rank = int(rank)
        self.alpha = float(alpha)
        self.scale = self.alpha / self.rank
        dev = base.weight.device
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, dtype=torch.float32))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, dtype=torch.float32, device=dev))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5), generator=generator)
        self.lora_A.data = self.lora_A.data.to(dev)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base.bias

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        h = self.dropout(x)
        if not torch.is_autocast_enabled(h.device.type):
            h = h.to(self.lora_A.dtype)  # frozen bf16 base, float32 LoRA: compute the update in float32
        h = F.linear(F.linear(h, self.lora_A), self.lora_B)
        return y + (h * self.scale).to(y.dtype)

    def delta_weight(self) -> torch.Tensor:
        """``(alpha / r) B A`` ``[out, in]`` in float32 (what a merge adds to ``weight``)."""
        return (self.lora_B.float() @ self.lora_A.float()) * self.scale


def _matches(path: str, target: str) -> bool:
    return path == target or path.endswith("." + target)


def linear_paths(model: nn.Module) -> list[str]:
    """Dotted paths of every plain ``nn.Linear`` in ``model``."""
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]


def add_lora(model: nn.Module, targets: list[str], rank: int, alpha: float, dropout: float = 0.0,
             seed: int = 0) -> dict[str, LoRALinear]:
    """Wrap every ``nn.Linear`` whose path ends with a target (``self_attn.q``, ``ffn.0``...).

    Returns:
        ``{module path: LoRALinear}`` in model order. Raises :class:`MVS2VError` naming any target
        that matches no linear layer.
    """
    paths = linear_paths(model)
    unused = [t for t in targets if not any(_matches(p, t) for p in paths)]
    if unused:
        suffixes = sorted({".".join(p.split(".")[-2:]) for p in paths})
        raise MVS2VError(f"lora.targets {unused} match no linear layer of the DiT; linear layers end with: "
                         f"{', '.join(suffixes)}")
    generator = torch.Generator().manual_seed(seed)
    wrapped: dict[str, LoRALinear] = {}
    for path in paths:
        if not any(_matches(path, t) for t in targets):
            continue
        parent_path, _, name = path.rpartition(".")
        parent = model.get_submodule(parent_path) if parent_path else model
        base = getattr(parent, name)
        lora = LoRALinear(base, rank, alpha, dropout, generator)
        setattr(parent, name, lora)
        wrapped[path] = lora
    return wrapped


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """``{original module path: LoRALinear}`` of a model that went through :func:`add_lora`."""
    return {n: m for n, m in model.named_modules() if isinstance(m, LoRALinear)}


def lora_triples(model: nn.Module) -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
    """``{path: (A, B, alpha)}`` for :func:`mvs2v_core.adapter.lora_state_dict` (float32, detached, CPU)."""
    return {p: (m.lora_A.detach().float().cpu(), m.lora_B.detach().float().cpu(), m.alpha)
            for p, m in lora_layers(model).items()}


def load_lora_triples(model: nn.Module, pairs: dict[str, tuple[torch.Tensor, torch.Tensor, float]]) -> None:
    """Copy ``{path: (A, B, alpha)}`` (from an adapter) into the model's LoRA layers; shapes must agree."""
    layers = lora_layers(model)
    missing = sorted(set(pairs) - set(layers))
    if missing:
        raise MVS2VError(f"the init adapter has a LoRA for {missing[:3]}, which lora.targets does not cover: "
                         "use the same targets as the adapter")
    for path, (a, b, alpha) in pairs.items():
        layer = layers[path]
        if tuple(a.shape) != tuple(layer.lora_A.shape) or tuple(b.shape) != tuple(layer.lora_B.shape):
            raise MVS2VError(f"the init adapter's LoRA for {path} has rank {a.shape[0]}; lora.rank is {layer.rank}: "
                             "use the adapter's rank")
        with torch.no_grad():
            layer.lora_A.copy_(a)
            # Keep the update (alpha / r) B A equal when the configured alpha differs.
            layer.lora_B.copy_(b * (alpha / layer.alpha))


__all__ = ["LoRALinear", "add_lora", "lora_layers", "lora_triples", "load_lora_triples", "linear_paths"]

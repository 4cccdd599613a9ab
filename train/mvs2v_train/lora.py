"""LoRA on the Wan DiT's ``nn.Linear`` modules through peft, exported in ComfyUI-native keys.

:func:`add_lora` puts peft's ``lora.Linear`` in place of each targeted linear with
:func:`peft.inject_adapter_in_model` (not ``get_peft_model``, whose wrapper would prefix every name
with ``base_model.model.``), so the Wan module paths (``blocks.0.self_attn.q``) stay what ComfyUI
and :func:`mvs2v_core.adapter.apply_lora` address. The wrapped linear moves to ``.base_layer`` and
its ``weight`` / ``bias`` still read through (the DiT reads ``text_embedding[0].weight.dtype``). A
layer computes ``W x + b + (alpha / r) * B (A dropout(x))`` with the trainable parameters

    ``<path>.lora_A.default.weight`` ``[r, in]`` and ``<path>.lora_B.default.weight`` ``[out, r]``.

Three choices differ from what ``inject_adapter_in_model`` alone gives:

* A is peft's default init (Kaiming-uniform, as the reference loralib and ``nn.Linear`` draw it)
  with B = 0 -- a fresh LoRA leaves the model unchanged -- but drawn from a generator seeded with the run's LoRA seed, module by module,
  instead of from the global RNG: the init does not depend on what ran before (and leaves the
  global stream alone), like the proxy tokens and the MFI projector, and it equals what the
  trainer's earlier hand-written layers drew, so runs reproduce across the switch.
* The LoRA tensors are float32 over a bf16 / fp16 base (peft would give them the base's dtype):
  AdamW updates of ``1e-4`` relative size vanish in bf16.
* Targets are resolved here against the linear layers only and handed to peft as full paths: a
  suffix that matches no linear layer gets a one-line error naming the suffixes that exist.

With float32 weights, or a bf16 base under autocast (``train.mixed_precision = "bf16"``, the
shipped configs), training is bit-identical to those hand-written layers. A bf16 base without
autocast differs in the last bit: peft adds the float32 update to the base output in float32 and
rounds once, where the hand-written layer rounded the update to bf16 before adding.

Export reads ``(A, B, alpha)`` per module path (:func:`lora_triples`, :func:`split_lora_name`) for
:func:`mvs2v_core.adapter.lora_state_dict`, which writes exactly the ``W += (alpha / r) B A`` that
ComfyUI's LoRA loader and :func:`~mvs2v_core.adapter.apply_lora` merge.

peft is imported inside the functions that need it: it pulls in transformers (seconds), which a
full fine-tune, the config checks and the export of a checkpoint do not need.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

import torch
from torch import nn

from mvs2v_core.errors import MVS2VError

if TYPE_CHECKING:
    from peft.tuners.lora import LoraLayer

ADAPTER_NAME = "default"  # peft's name for a model's only adapter; it is part of the parameter names
_PARAM_RE = re.compile(r"^(?P<path>.+)\.(?P<part>lora_A|lora_B)\." + ADAPTER_NAME + r"\.weight$")


def _matches(path: str, target: str) -> bool:
    return path == target or path.endswith("." + target)


def linear_paths(model: nn.Module) -> list[str]:
    """Dotted paths of every plain ``nn.Linear`` in ``model``."""
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]


def split_lora_name(name: str) -> tuple[str, str] | None:
    """``"dit.blocks.0.ffn.0.lora_A.default.weight"`` -> ``("dit.blocks.0.ffn.0", "lora_A")``; None for
    a parameter that is not a LoRA matrix."""
    m = _PARAM_RE.match(name)
    return (m.group("path"), m.group("part")) if m else None


def add_lora(model: nn.Module, targets: list[str], rank: int, alpha: float, dropout: float = 0.0,
             seed: int = 0) -> dict[str, LoraLayer]:
    """Put a LoRA on every ``nn.Linear`` whose path ends with a target (``self_attn.q``, ``ffn.0``...).

    Every other parameter of ``model`` is frozen (peft marks only the LoRA matrices trainable).

    Returns:
        ``{module path: peft LoRA layer}`` in model order. Raises :class:`MVS2VError` naming any target
        that matches no linear layer.
    """
    from peft import LoraConfig, inject_adapter_in_model

    paths = linear_paths(model)
    unused = [t for t in targets if not any(_matches(p, t) for p in paths)]
    if unused:
        suffixes = sorted({".".join(p.split(".")[-2:]) for p in paths})
        raise MVS2VError(f"lora.targets {unused} match no linear layer of the DiT; linear layers end with: "
                         f"{', '.join(suffixes)}")
    chosen = [p for p in paths if any(_matches(p, t) for t in targets)]
    config = LoraConfig(r=int(rank), lora_alpha=float(alpha), lora_dropout=float(dropout), target_modules=chosen,
                        init_lora_weights=True, bias="none")
    with torch.random.fork_rng(devices=[]):  # peft's throwaway init draws from the global RNG
        inject_adapter_in_model(config, model, adapter_name=ADAPTER_NAME)
    layers = lora_layers(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in layers.values():
            layer.lora_A[ADAPTER_NAME].float()
            layer.lora_B[ADAPTER_NAME].float()  # peft's zeros
            a = layer.lora_A[ADAPTER_NAME].weight
            init = torch.empty(a.shape, dtype=torch.float32)
            nn.init.kaiming_uniform_(init, a=math.sqrt(5), generator=generator)
            a.copy_(init)
    return layers


def lora_layers(model: nn.Module) -> dict[str, LoraLayer]:
    """``{module path: peft LoRA layer}`` of a model that went through :func:`add_lora`."""
    from peft.tuners.lora import LoraLayer

    return {n: m for n, m in model.named_modules() if isinstance(m, LoraLayer)}


def lora_triples(model: nn.Module) -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
    """``{path: (A, B, alpha)}`` for :func:`mvs2v_core.adapter.lora_state_dict` (float32, detached, CPU)."""
    return {p: (m.lora_A[ADAPTER_NAME].weight.detach().float().cpu(),
                m.lora_B[ADAPTER_NAME].weight.detach().float().cpu(), float(m.lora_alpha[ADAPTER_NAME]))
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
        a_param, b_param = layer.lora_A[ADAPTER_NAME].weight, layer.lora_B[ADAPTER_NAME].weight
        if tuple(a.shape) != tuple(a_param.shape) or tuple(b.shape) != tuple(b_param.shape):
            raise MVS2VError(f"the init adapter's LoRA for {path} has rank {a.shape[0]}; lora.rank is "
                             f"{layer.r[ADAPTER_NAME]}: use the adapter's rank")
        with torch.no_grad():
            a_param.copy_(a)
            # Keep the update (alpha / r) B A equal when the configured alpha differs.
            b_param.copy_(b * (alpha / float(layer.lora_alpha[ADAPTER_NAME])))


__all__ = ["ADAPTER_NAME", "add_lora", "lora_layers", "lora_triples", "load_lora_triples", "linear_paths",
           "split_lora_name"]

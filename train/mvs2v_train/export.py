"""Export: the mvs2v adapter file (ComfyUI-native LoRA keys, proxy tokens, MFI, metadata filled).

The adapter is built with :mod:`mvs2v_core.adapter` (``lora_state_dict`` for the keys, ``save_adapter``
for the atomic, validated write), so the file loads in ``mvs2v generate --adapter``, in the ComfyUI
nodes, and its LoRA part in ComfyUI's own ``LoraLoaderModelOnly``. A full fine-tune also writes the
whole DiT (original Wan key layout, loadable by ``load_dit`` and ComfyUI) next to the adapter.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mvs2v_core.adapter import Adapter, AdapterMetadata, LoraSpec, load_adapter, lora_state_dict, save_adapter
from mvs2v_core.errors import MVS2VError
from mvs2v_core.model.config import WanConfig
from mvs2v_core.utils import save_safetensors_atomic

from . import checkpoint as ckpt
from .config import TrainConfig
from .lora import split_lora_name


def _is_adapter_part(name: str) -> bool:
    return name.startswith(("proxy.", "mfi.")) or split_lora_name(name) is not None


def adapter_parts(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every tensor an adapter takes from a :class:`TrainableModel`, trained or frozen (by name)."""
    return {name: p.detach().float().cpu() for name, p in model.named_parameters() if _is_adapter_part(name)}


def build_adapter(cfg: TrainConfig, model_config: WanConfig, parts: dict[str, torch.Tensor],
                  training: dict) -> Adapter:
    """An :class:`Adapter` from named parts (``proxy.tokens``, ``mfi.proj.*``,
    ``dit.<path>.lora_A.default.weight``...)."""
    refs = cfg.references
    matrices: dict[str, dict[str, torch.Tensor]] = {}
    for name, t in parts.items():
        split = split_lora_name(name)
        if split is not None:
            matrices.setdefault(split[0].removeprefix("dit."), {})[split[1]] = t
    triples: dict[str, tuple[torch.Tensor, torch.Tensor, float]] = {}
    for path, ab in matrices.items():
        if "lora_A" not in ab or "lora_B" not in ab:
            raise MVS2VError(f"the LoRA of {path} has only its {next(iter(ab))} matrix in the checkpoint; "
                             "it is damaged")
        triples[path] = (ab["lora_A"], ab["lora_B"], float(cfg.lora.alpha))
    lora = lora_state_dict(triples) if triples else {}
    spec = LoraSpec(cfg.lora.rank, float(cfg.lora.alpha), tuple(cfg.lora.targets)) if triples else None
    if not triples and cfg.model.init_adapter and not cfg.trainable.lora:
        # The init adapter's LoRA was merged into the frozen base for training: ship it unchanged.
        init = load_adapter(cfg.resolve(cfg.model.init_adapter))
        lora, spec = dict(init.lora), init.metadata.lora
    proxy = parts.get("proxy.tokens")
    mfi_w, mfi_b = parts.get("mfi.proj.weight"), parts.get("mfi.proj.bias")
    meta = AdapterMetadata(
        base_family=model_config.family, model_dim=model_config.dim, text_dim=model_config.text_dim,
        in_dim=model_config.in_dim, num_layers=model_config.num_layers,
        references=refs.settings(), mfi_in_dim=int(mfi_w.shape[1]) if mfi_w is not None else None,
        lora=spec, training=training,
    )
    return Adapter(meta, proxy, mfi_w, mfi_b, lora)


def training_record(cfg: TrainConfig, step: int, samples_seen: int) -> dict:
    return {
        "trainer": "mvs2v-train",
        "step": step,
        "samples_seen": samples_seen,
        "config_fingerprint": cfg.fingerprint(),
        "manifest": Path(cfg.data.manifest).name,
        "stages": [{"name": s.name, "steps": s.steps, "views": s.views} for s in cfg.stages],
        "trainable": {k: getattr(cfg.trainable, k) for k in ("proxy", "mfi", "lora", "full")},
        "timesteps": {"sampling": cfg.timesteps.sampling, "shift": cfg.timesteps.shift,
                      "min": cfg.timesteps.min_timestep, "max": cfg.timesteps.max_timestep},
    }


def full_dit_path(adapter_path: Path) -> Path:
    return adapter_path.with_name(adapter_path.name.removesuffix(".safetensors") + ".dit.safetensors")


def write_full_dit(cfg: TrainConfig, trained: dict[str, torch.Tensor], out: Path, dtype: torch.dtype) -> Path:
    """The base DiT with the fine-tuned tensors, in the original Wan key layout."""
    from mvs2v_core.model.loading import dit_config_metadata, load_dit

    dit = load_dit(cfg.resolve(cfg.model.dit), config=cfg.model.config or None, dtype=torch.float32)
    sd = dit.state_dict()
    for name, t in trained.items():
        key = name.removeprefix("dit.")
        if key not in sd:
            raise MVS2VError(f"fine-tuned tensor {name} is not a DiT weight")
        sd[key] = t
    path = full_dit_path(out)
    # The config entry keeps what the tensors cannot say (text_len, head count) for load_dit and ComfyUI.
    save_safetensors_atomic({k: v.to(dtype) for k, v in sd.items()}, path,
                            {"format": "wan-dit", "note": "fine-tuned with mvs2v-train", **dit_config_metadata(dit.config)})
    return path


def export_model(cfg: TrainConfig, model: torch.nn.Module, out: Path, step: int, samples_seen: int) -> list[Path]:
    """Write the adapter of a live :class:`TrainableModel` (and the full DiT after a full fine-tune)."""
    adapter = build_adapter(cfg, model.dit.config, adapter_parts(model), training_record(cfg, step, samples_seen))
    save_adapter(out, adapter)
    paths = [out]
    if cfg.trainable.full:
        trained = {f"dit.{n}": p.detach().float().cpu() for n, p in model.dit.named_parameters() if p.requires_grad}
        paths.append(write_full_dit(cfg, trained, out, torch.bfloat16))
    return paths


def export_checkpoint(cfg: TrainConfig, path: Path, out: Path) -> list[Path]:
    """Write the adapter of a saved checkpoint without loading the base DiT (except for a full fine-tune)."""
    state = ckpt.read_trainer_state(path)
    model_config = WanConfig.from_dict(state["model_config"])
    tensors = ckpt.read_trainable(path)
    extra = path / "frozen_parts.safetensors"
    if extra.is_file():
        tensors.update(ckpt._read_safetensors(extra))
    parts = {k: v for k, v in tensors.items() if _is_adapter_part(k)}
    adapter = build_adapter(cfg, model_config, parts,
                            training_record(cfg, int(state["global_step"]), int(state["samples_seen"])))
    save_adapter(out, adapter)
    paths = [out]
    if cfg.trainable.full:
        trained = {k: v for k, v in tensors.items() if k.startswith("dit.") and k not in parts}
        paths.append(write_full_dit(cfg, trained, out, torch.bfloat16))
    return paths


__all__ = ["adapter_parts", "build_adapter", "export_model", "export_checkpoint", "training_record", "full_dit_path"]

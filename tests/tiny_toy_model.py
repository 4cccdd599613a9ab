"""A tiny random toy model folder for tests (the layout of ``mvs2v_toy/assets/toy_demo``, weights random)."""

from __future__ import annotations

from pathlib import Path

import torch

from mvs2v_core.adapter import Adapter, AdapterMetadata, save_adapter
from mvs2v_core.model.config import WanConfig
from mvs2v_core.model.loading import dit_config_metadata
from mvs2v_core.model.transformer import WanDiT
from mvs2v_core.references.settings import ReferenceSettings
from mvs2v_core.utils import save_safetensors_atomic


def write_tiny_toy_model(folder: Path, config: WanConfig, seed: int = 0) -> Path:
    """``dit.safetensors`` (random ``config``) and ``adapter.safetensors`` (random proxy tokens, TS, proxy)."""
    folder.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        dit = WanDiT(config)
        proxy = torch.randn(4, config.dim)
    save_safetensors_atomic(dit.state_dict(), folder / "dit.safetensors", dit_config_metadata(config))
    meta = AdapterMetadata(base_family="tiny-random", model_dim=config.dim, text_dim=config.text_dim,
                           in_dim=config.in_dim, num_layers=config.num_layers,
                           references=ReferenceSettings(4, "ts", "proxy"))
    save_adapter(folder / "adapter.safetensors", Adapter(meta, proxy_tokens=proxy))
    return folder

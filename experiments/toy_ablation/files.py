"""The ablation folder: where everything lives, and the atomic JSON / TOML writers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from mvs2v_core.utils import atomic_write

SETTINGS_FILE = "settings.json"
METRICS_FILE = "metrics.json"
TRAIN_CONFIG_FILE = "train.toml"
WORKER_LOG = "worker.log"


@dataclass
class Layout:
    """The folders of an ablation under ``root``."""

    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def pretrain(self) -> Path:
        return self.root / "pretrain"

    @property
    def base_dit(self) -> Path:
        return self.pretrain / "base.dit.safetensors"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    def run(self, config: str, seed: int) -> Path:
        return self.runs / f"{config}-s{seed}"

    @property
    def reference_rows(self) -> Path:
        return self.root / "reference_rows.json"

    def demo_run(self, config: str, seed: int) -> Path:
        """The longer fine-tune of the bundled demo model (``--bundle-steps``)."""
        return self.root / "demo" / f"{config}-s{seed}"


def write_json(path: Path, data: Any) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def write_train_config(path: Path, config: dict, header: str) -> None:
    """A trainer config dict as TOML (``# header`` first): the exact, standalone record of a run that
    ``mvs2v-train`` reruns alone."""
    with atomic_write(path) as tmp:
        tmp.write_text(f"# {header}\n" + tomli_w.dumps(config), encoding="utf-8")


def load_train_config(path: Path):
    """The trainer's :class:`~mvs2v_train.config.TrainConfig` of a written ``train.toml``."""
    from mvs2v_train.config import load_config

    return load_config(path)

"""Where everything lives (the big files under ``--out``, the small results in the repository), and
the atomic JSON / TOML writers."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from mvs2v_core.utils import atomic_write

# `experiments` is not installed: commands run from the repository root.
REPO_ROOT = Path(__file__).resolve().parents[2]
MODULE = "experiments.toy_ablation"
DEFAULT_INIT = Path("experiments/toy_ablation/init_model")
DEFAULT_RESULTS = Path("experiments/toy_ablation/results")
SETTINGS_FILE = "settings.json"
TRAIN_CONFIG_FILE = "train.toml"
WORKER_LOG = "worker.log"
INIT_FILES = ("dit.safetensors", "adapter.safetensors")
ENCODER_FOLDERS = ("codec", "text_encoder", "vision_encoder")


@dataclass(frozen=True)
class Layout:
    """The folders of an ablation under ``root`` (``--out``); the dataset may live elsewhere (``--data``)."""

    root: Path
    dataset: Path | None = None

    @property
    def settings(self) -> Path:
        return self.root / SETTINGS_FILE

    @property
    def data(self) -> Path:
        return self.dataset if self.dataset is not None else self.root / "data"

    @property
    def curriculum_data(self) -> Path:
        """The calibration world's dataset (the curriculum's first stage)."""
        return self.root / "data_curriculum"

    def graded_data(self, world: str) -> Path:
        """A graded curriculum world's dataset."""
        return self.root / f"data_{world}"

    @property
    def merged(self) -> Path:
        """Every dataset's rows in one manifest, tagged by world (stages filter on the tags)."""
        return self.root / "data_merged"

    def manifest(self, s) -> Path:
        """The manifest runs train on: the merged one when the settings have curriculum worlds."""
        return (self.merged if s.curriculum_worlds else self.data) / "manifest.jsonl"

    @property
    def encoders(self) -> Path:
        """``codec/``, ``text_encoder/``, ``vision_encoder/`` (the bundled demo model's, byte for byte)."""
        return self.root / "encoders"

    def init_adapter(self, arm: str) -> Path:
        """The init model's adapter re-labelled with ``arm``'s reference settings (same proxy tokens)."""
        return self.root / "init" / f"{arm}.adapter.safetensors"

    def cache(self, vision: bool) -> Path:
        """The feature cache; ``vision``: with the toy vision encoder's features (the folder name predates
        the alignment loss, which uses them too)."""
        return self.root / ("cache_mfi" if vision else "cache")

    def run(self, name: str) -> "RunLayout":
        return RunLayout(self.root / "runs" / name)


@dataclass(frozen=True)
class RunLayout:
    """One (arm, seed) run: trainer output, exported models, bench folders, curve."""

    root: Path

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def config(self) -> Path:
        return self.root / TRAIN_CONFIG_FILE

    @property
    def train(self) -> Path:
        """The trainer's ``output_dir`` (checkpoints, logs)."""
        return self.root / "train"

    @property
    def checkpoints(self) -> Path:
        return self.train / "checkpoints"

    def continued(self, step: int) -> Path:
        """The trainer folder of the run continued from a handoff at ``step``: its ``train.toml`` and ``train/``."""
        return self.root / f"train_from_{step:08d}"

    @property
    def log(self) -> Path:
        return self.root / WORKER_LOG

    @property
    def model(self) -> Path:
        """The finished run as a toy model folder (what the bench reads and ``--bundle`` copies)."""
        return self.root / "model"

    def step_model(self, step: int) -> Path:
        return self.root / "models" / f"step_{step:08d}"

    def bench(self, world: str) -> Path:
        return self.root / "bench" / world

    def curve_bench(self, step: int) -> Path:
        return self.root / "curve" / f"step_{step:08d}"

    @property
    def curve(self) -> Path:
        return self.root / "curve.json"

    @property
    def state(self) -> Path:
        """What the worker finished so far (training seconds, steps), for the result file."""
        return self.root / "state.json"


def repo_path(path: str | Path) -> Path:
    """``path``; the default init and results folders (repository paths) from any working directory."""
    return REPO_ROOT / path if str(path) in (str(DEFAULT_INIT), str(DEFAULT_RESULTS)) else Path(path)


# A list of numbers (per-scene values) on one line: result files stay short and diff well.
_NUMBER_LIST = re.compile(r"\[\s*((?:-?[0-9][0-9.eE+-]*|null)(?:,\s*(?:-?[0-9][0-9.eE+-]*|null))*)\s*\]")


def write_json(path: Path, data: Any) -> None:
    text = json.dumps(data, indent=2, allow_nan=False)
    text = _NUMBER_LIST.sub(lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",")) + "]", text)
    with atomic_write(path) as tmp:
        tmp.write_text(text + "\n", encoding="utf-8")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def write_text(path: Path, text: str) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_train_config(path: Path, config: dict, header: str) -> None:
    """A trainer config dict as TOML (``# header`` first): the standalone record of a run that
    ``mvs2v-train train --config`` reruns alone."""
    write_text(path, f"# {header}\n" + tomli_w.dumps(config))


def load_train_config(path: Path):
    """The trainer's :class:`~mvs2v_train.config.TrainConfig` of a written ``train.toml``."""
    from mvs2v_train.config import load_config

    return load_config(path)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def same_files(a: Path, b: Path) -> bool:
    """Whether two folders hold the same file names with the same bytes."""
    names_a = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file())
    names_b = sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file())
    return names_a == names_b and all((a / n).read_bytes() == (b / n).read_bytes() for n in names_a)

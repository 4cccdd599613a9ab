"""Carrying a run from one machine to the next through the repository (``handoff``).

The machines this ablation runs on keep nothing but the repository when a session ends, and a run of
the anchored recipe is longer than a session. ``python -m experiments.toy_ablation handoff --out OUT``
writes, for every unfinished run under ``OUT``, its latest checkpoint at a stage boundary as a small
model folder next to the result files (``<results>/handoff/<run>/``: the DiT in bf16 and the adapter as
``mvs2v-train export`` writes them, ``model.json`` and ``handoff.json``: about 8 MB), to be committed.
A later runner command that has no checkpoint of that run as far along continues from it: the
remaining stages, from the handed-off weights, in a new trainer folder (``train_from_<step>/``). A
handoff at the last step is the finished model, and only its benches are left; it also carries the clips
of a bench that was under way (``bench/<world>/``: the bench's ``settings.json`` and ``records.jsonl``),
so the next machine's bench goes on from them instead of starting again (a W2 bench is about 90 minutes
of one core).

A continued run is not the uninterrupted run step for step: the weights were rounded to bf16, the AdamW
moments start again from zero (every stage is a cosine cycle that starts with its own warmup, as the
hand-trained legs of the bundled model did after each export) and the data order differs. The result
file says where a run was continued (``continued_from``). A full trainer checkpoint would resume
exactly, but is six times the size (fp32 weights and two fp32 moments), and every handoff stays in the
history that everyone who clones the node pack downloads.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mvs2v_core.errors import MVS2VError

from .arms import AblationSettings
from .files import ENCODER_FOLDERS, read_json, sha256_file, write_json

HANDOFF_FOLDER = "handoff"
HANDOFF_FILE = "handoff.json"
MODEL_FILES = ("dit.safetensors", "adapter.safetensors", "model.json")
BENCH_FOLDER = "bench"
BENCH_FILES = ("settings.json", "records.jsonl")  # what mvs2v_toy.bench resumes from (its SETTINGS, RECORDS)


@dataclass(frozen=True)
class Handoff:
    """A committed handoff of one run: its folder, the global step of its weights, the training seconds spent
    on the run before it (on earlier machines), the steps of every handoff the run went through, and the
    bench records (one per scored clip) it carries of each unfinished bench (a handoff of the finished model only)."""

    folder: Path
    run: str
    step: int
    train_seconds: float
    chain: tuple[int, ...]
    bench_records: Mapping[str, int] = field(default_factory=dict)


def handoff_folder(results: Path, name: str) -> Path:
    return results / HANDOFF_FOLDER / name


def stage_ends(stages: list[dict]) -> list[int]:
    """The global step at which each stage ends (a trainer's stages run one after another)."""
    ends, total = [], 0
    for stage in stages:
        total += int(stage["steps"])
        ends.append(total)
    return ends


def stages_after(stages: list[dict], step: int) -> list[dict]:
    """The stages still to train once ``step`` steps are done; ``step`` must end a stage (or be 0)."""
    ends = stage_ends(stages)
    if step != 0 and step not in ends:
        raise MVS2VError(f"step {step} does not end a stage (stage ends: {ends[:6]}...): a handoff must be taken "
                         "at a stage boundary")
    return stages[ends.index(step) + 1:] if step else list(stages)


def read_handoff(results: Path, name: str, s: AblationSettings) -> Handoff | None:
    """The committed handoff of run ``name`` (None if none); see :func:`load_handoff`."""
    folder = handoff_folder(results, name)
    return load_handoff(folder, s) if (folder / HANDOFF_FILE).is_file() else None


def load_handoff(folder: Path, s: AblationSettings) -> Handoff:
    """The handoff in ``folder``; refuses one made with other settings or whose files do not match their
    recorded checksums."""
    meta = read_json(folder / HANDOFF_FILE)
    diff = AblationSettings.from_json(meta["settings"]).differences(s)
    if diff:
        raise MVS2VError(f"{folder} was handed off by an ablation with other settings ({', '.join(list(diff)[:4])}): "
                         "continue it with its own settings, or move it away")
    for file, digest in meta["sha256"].items():
        if not (folder / file).is_file() or sha256_file(folder / file) != digest:
            raise MVS2VError(f"{folder / file} is missing or changed since the handoff was written: restore it from "
                             "git (git checkout -- that folder)")
    return Handoff(folder, str(meta["run"]), int(meta["step"]), float(meta.get("train_seconds") or 0.0),
                   tuple(int(x) for x in meta["chain"]),
                   {str(w): int(n) for w, n in (meta.get("bench_records") or {}).items()})


def carried_bench(folder: Path, world: str) -> Path:
    """Where the handoff ``folder`` keeps the records of its unfinished ``world`` bench (may not exist)."""
    return folder / BENCH_FOLDER / world


def count_records(bench: Path) -> int:
    """Records a bench folder holds (one line each; 0 without a records file)."""
    path = bench / BENCH_FILES[1]
    return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip()) if path.is_file() else 0


@contextmanager
def staged_folder(dest: Path) -> Iterator[Path]:
    """A staging folder beside ``dest`` to fill; on success it replaces ``dest`` in one move."""
    staging = dest.parent / f".{dest.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    yield staging
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(staging, dest)


def copy_handoff(handoff: Handoff, dest: Path, s: AblationSettings) -> Handoff:
    """A private copy of ``handoff`` at ``dest`` (a later handoff of the same run replaces the committed one
    while the run goes on from this copy)."""
    with staged_folder(dest) as staging:
        shutil.copytree(handoff.folder, staging, dirs_exist_ok=True)
    return load_handoff(dest, s)


def write_handoff(model: Path, results: Path, name: str, step: int, s: AblationSettings,
                  train_seconds: float, earlier: Handoff | None = None,
                  benches: Mapping[str, Path] | None = None) -> Path:
    """Copy the exported model folder ``model`` (weights at global ``step``) as run ``name``'s handoff, built
    beside it and moved in whole; ``earlier``: the handoff this machine continued the run from; ``benches``:
    the folders of the model's unfinished benches by world (their clips go with it)."""
    dest = handoff_folder(results, name)
    with staged_folder(dest) as staging:
        files = list(MODEL_FILES)
        for file in MODEL_FILES:
            shutil.copy2(model / file, staging / file)
        carried = {}
        for world, bench in (benches or {}).items():
            if all((bench / file).is_file() for file in BENCH_FILES):
                kept = carried_bench(staging, world)
                kept.mkdir(parents=True)
                for file in BENCH_FILES:  # the bench replaces its records atomically: a copy is never torn
                    shutil.copy2(bench / file, kept / file)
                    files.append((kept / file).relative_to(staging).as_posix())
                carried[world] = count_records(kept)
        chain = earlier.chain if earlier else ()
        write_json(staging / HANDOFF_FILE, {
            "run": name, "step": step, "chain": [*chain, step] if chain[-1:] != (step,) else list(chain),
            "settings": s.to_json(), "train_seconds": round(train_seconds, 1), "bench_records": carried,
            "sha256": {file: sha256_file(staging / file) for file in files},
            "continue": "the runner's command for this run continues from here (experiments/toy_ablation/handoff.py)"})
    return dest


def restore_bench(handoff: Handoff, world: str, dest: Path, model: Path, log: Callable[[str], None]) -> int:
    """Put the clips ``handoff`` carries of its ``world`` bench into the bench folder ``dest`` of ``model`` (the
    handoff restored), unless ``dest`` holds as many already; returns the records put there."""
    from mvs2v_toy.bench import model_digest

    carried = handoff.bench_records.get(world, 0)
    if carried <= count_records(dest):
        return 0
    src = carried_bench(handoff.folder, world)
    if read_json(src / BENCH_FILES[0]).get("model_sha256") != model_digest(model):  # never expected: same bytes
        log(f"{handoff.run}: the {world} clips in {src} are of other model files than {model}; that bench "
            "starts again")
        return 0
    with staged_folder(dest) as staging:
        for file in BENCH_FILES:
            shutil.copy2(src / file, staging / file)
    return carried


def restore_model(handoff: Handoff, encoders: Path, dest: Path) -> Path:
    """The handoff as a complete toy model folder at ``dest`` (with the ablation's encoders)."""
    with staged_folder(dest) as staging:
        for file in MODEL_FILES:
            shutil.copy2(handoff.folder / file, staging / file)
        for folder in ENCODER_FOLDERS:
            shutil.copytree(encoders / folder, staging / folder)
    return dest


def continuation_config(config: dict[str, Any], handoff: Handoff, output_dir: Path) -> dict[str, Any]:
    """The run's trainer config ``config`` continued from ``handoff``: its weights, the stages after its step,
    its own output folder."""
    stages = stages_after(config["stages"], handoff.step)
    if not stages:
        raise MVS2VError(f"the handoff of {handoff.run} is at the last step: nothing is left to train")
    model = dict(config["model"], dit=str((handoff.folder / "dit.safetensors").resolve()),
                 init_adapter=str((handoff.folder / "adapter.safetensors").resolve()))
    train = dict(config["train"], output_dir=str(output_dir.resolve()))
    return dict(config, model=model, train=train, stages=stages)

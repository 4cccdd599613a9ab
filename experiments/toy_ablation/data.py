"""Inputs shared by every run: the W12 dataset, the toy encoders, and the init model (hashed, and its
adapter re-labelled with each arm's reference settings)."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

from mvs2v_core.errors import MVS2VError

from .arms import Arm, AblationSettings
from .files import ENCODER_FOLDERS, INIT_FILES, Layout, read_json, same_files, sha256_file, write_text

# The seed of the toy text encoder the bundled (and so the init) model was trained with. The dataset seed
# (11) must not leak into it: save_toy_encoders(seed=11) gives other text embeddings.
ENCODER_SEED = 0


def init_hashes(init: Path) -> dict[str, str]:
    """sha256 of the init model's files (``dit.safetensors`` required, ``adapter.safetensors`` optional)."""
    if not (init / "dit.safetensors").is_file():
        raise MVS2VError(f"--init {init} has no dit.safetensors: give a toy model folder (dit.safetensors + "
                         "adapter.safetensors), e.g. the previous demo model")
    return {name: sha256_file(init / name) for name in INIT_FILES if (init / name).is_file()}


def check_encoders(folder: Path, bundled: Path) -> None:
    """The encoders under ``folder`` must be byte-identical to the bundled demo model's (when it is there)."""
    for name in ENCODER_FOLDERS:
        if (bundled / name).is_dir() and not same_files(folder / name, bundled / name):
            raise MVS2VError(f"{folder / name} differs from the bundled {bundled / name}: the init model was trained "
                             "with the bundled encoders; delete the ablation's encoders folder and run again")


def dataset_settings(s: AblationSettings, curriculum: bool = False, graded: int | None = None) -> dict:
    """What ``dataset.json`` of the main (or the curriculum's, or graded world ``graded``'s) dataset must say."""
    if graded is not None:
        return {"seed": s.curriculum_data_seed + 1 + graded, "n_samples": s.curriculum_samples,
                "world": s.graded_worlds[graded], "frames": s.frames, "val_fraction": s.val_fraction}
    if curriculum:
        return {"seed": s.curriculum_data_seed, "n_samples": s.curriculum_samples, "world": s.curriculum_world,
                "frames": s.frames, "val_fraction": s.val_fraction}
    return {"seed": s.data_seed, "n_samples": s.samples, "world": s.world, "frames": s.frames,
            "val_fraction": s.val_fraction}


def dataset_seeds(s: AblationSettings) -> dict[str, int]:
    """``{world: seed}`` of every dataset the settings train on (see :func:`dataset_settings`)."""
    parts = [dataset_settings(s, curriculum=True)] if s.curriculum_worlds else []
    parts += [dataset_settings(s, curriculum=True, graded=i) for i in range(len(s.graded_worlds))]
    return {d["world"]: d["seed"] for d in (*parts, dataset_settings(s))}


def check_dataset(data: Path, s: AblationSettings, curriculum: bool = False, graded: int | None = None) -> None:
    """The dataset's ``dataset.json`` must say it was written with these settings."""
    found = read_json(data / "dataset.json")
    want = dataset_settings(s, curriculum, graded)
    diff = {k: (found.get(k), v) for k, v in want.items() if found.get(k) != v}
    if diff:
        shown = ", ".join(f"{k} {a} there vs {b}" for k, (a, b) in diff.items())
        raise MVS2VError(f"the dataset in {data} was written with other settings ({shown}): give --data a dataset "
                         "made with these settings, or leave --data out to write one under --out")


def prepare_data(layout: Layout, s: AblationSettings, log=print) -> None:
    """Write the dataset (once, unless ``--data`` names one) and the toy encoders, checked against the bundled
    ones."""
    from mvs2v_toy import save_toy_encoders
    from mvs2v_toy.demo import DEMO_ASSETS

    data = layout.data
    if not (data / "manifest.jsonl").is_file():
        if layout.dataset is not None:
            raise MVS2VError(f"--data {data} has no manifest.jsonl: give a dataset folder written by "
                             "mvs2v toy-data / write_toy_dataset")
        _write_dataset(data, dataset_settings(s), log)
    check_dataset(data, s)
    if s.curriculum_worlds:
        parts = {s.curriculum_world: layout.curriculum_data}
        parts.update({w: layout.graded_data(w) for w in s.graded_worlds})
        for i, (world, folder) in enumerate(parts.items()):
            graded = i - 1 if i else None
            if not (folder / "manifest.jsonl").is_file():
                _write_dataset(folder, dataset_settings(s, curriculum=True, graded=graded), log)
            check_dataset(folder, s, curriculum=True, graded=graded)
        merge_manifests(layout.merged / "manifest.jsonl", {**parts, s.world: data})
    if not all((layout.encoders / name).is_dir() for name in ENCODER_FOLDERS):
        save_toy_encoders(layout.encoders, seed=ENCODER_SEED)
    check_encoders(layout.encoders, DEMO_ASSETS)


def _write_dataset(dest: Path, d: dict, log) -> None:
    from mvs2v_toy import write_toy_dataset

    t0 = time.perf_counter()
    summary = write_toy_dataset(dest, d["n_samples"], seed=d["seed"], frames=d["frames"], world=d["world"],
                                val_fraction=d["val_fraction"], overwrite=True)
    log(f"data: {summary.samples} {d['world']} samples ({summary.train} train, {summary.val} val, "
        f"{summary.two_object} with two objects) in {time.perf_counter() - t0:.0f}s")


def merge_manifests(dest: Path, parts: dict[str, Path]) -> None:
    """One manifest with the rows of each ``{world: dataset folder}``: ids prefixed and a ``world-NAME`` tag
    added (the curriculum's stages filter on it), file paths relative to ``dest``'s folder. Rewritten only
    when its content changes, so the feature cache's fingerprints stay put."""
    from .recipes import world_tag

    def moved(path: str, folder: Path) -> str:
        return Path(os.path.relpath((folder / path).resolve(), dest.parent.resolve())).as_posix()

    lines = []
    for world, folder in parts.items():
        for line in (folder / "manifest.jsonl").read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            row["id"] = f"{world}-{row['id']}"
            row["tags"] = [*row.get("tags", []), world_tag(world)]
            row["video"] = moved(row["video"], folder)
            for subject in row.get("subjects", []):
                for view in subject.get("views", []):
                    view["image"] = moved(view["image"], folder)
            if isinstance(row.get("meta"), dict) and "truth" in row["meta"]:
                row["meta"]["truth"] = moved(row["meta"]["truth"], folder)
            lines.append(json.dumps(row))
    text = "\n".join(lines) + "\n"
    if dest.is_file() and dest.read_text(encoding="utf-8") == text:
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_text(dest, text)


def arm_reference_settings(arm: Arm):
    """The arm's :class:`ReferenceSettings` (4 slots)."""
    from mvs2v_core.references.settings import PositionScheme, ReferenceSettings

    return ReferenceSettings(4, PositionScheme(arm.scheme, gap=arm.gap), arm.empty_slot_mode, arm.ref_timestep,
                             arm.ref_attention, arm.slot_anchor)


def write_init_adapter(init: Path, arm: Arm, dest: Path) -> Path | None:
    """The init adapter with ``arm``'s reference settings: its proxy tokens when the arm uses proxies, its
    MFI projector only for an MFI arm. ``None`` when the init model has no adapter (fresh parts)."""
    from mvs2v_core.adapter import load_adapter, save_adapter

    source = init / "adapter.safetensors"
    if not source.is_file():
        return None
    if dest.is_file():
        return dest
    adapter = load_adapter(source)
    keep_proxy = arm.empty_slot_mode == "proxy"
    meta = dataclasses.replace(adapter.metadata, references=arm_reference_settings(arm),
                               mfi_in_dim=adapter.metadata.mfi_in_dim if arm.mfi else None,
                               training={"note": f"init of ablation arm {arm.name}", "source": str(source)})
    relabelled = dataclasses.replace(adapter, metadata=meta,
                                     proxy_tokens=adapter.proxy_tokens if keep_proxy else None,
                                     mfi_weight=adapter.mfi_weight if arm.mfi else None,
                                     mfi_bias=adapter.mfi_bias if arm.mfi else None)
    dest.parent.mkdir(parents=True, exist_ok=True)
    save_adapter(dest, relabelled)
    return dest

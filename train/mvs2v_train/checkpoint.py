"""Full-state training checkpoints in safetensors + JSON (nothing is pickled, nothing is unpickled).

A checkpoint is a folder ``<output_dir>/checkpoints/step_00000100/``::

    trainable.safetensors   the trainable tensors (LoRA A/B, proxy tokens, MFI projector, or the full DiT)
    optimizer.safetensors   AdamW moments, keyed "state/<parameter name>/<field>"
    optimizer.json          param groups (hyper-parameters, parameter names) and non-tensor state
    rng_rank<r>.safetensors torch CPU / CUDA generator states of process r
    rng_rank<r>.json        Python and NumPy generator states of process r
    trainer_state.json      step, curriculum stage and data position, scheduler, config fingerprint,
                            base model config, world size; written last

It is written into ``.step_00000100.partial`` and renamed into place only when complete, and the
``latest`` file is replaced atomically afterwards, so a crash at any moment leaves the previous
checkpoint usable. Optimizer state is keyed by parameter *name*, so a checkpoint loads into a model
built again from the same config regardless of parameter order.

Version 2 names the LoRA matrices as peft does (``dit.<path>.lora_A.default.weight``); version 1, from
the trainer's earlier hand-written LoRA layers, named them ``dit.<path>.lora_A``. Reading renames
version-1 names, so a run started before the switch resumes (and exports) unchanged.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open

from mvs2v_core.errors import MVS2VError
from mvs2v_core.utils import atomic_write, save_safetensors_atomic

from .lora import ADAPTER_NAME

FORMAT = "mvs2v-train-checkpoint"
VERSION = 2
LATEST = "latest"
_V1_LORA_NAME = re.compile(r"^(?P<path>dit\..+)\.(?P<part>lora_A|lora_B)$")


def _current_name(name: str) -> str:
    """A parameter name as this version writes it: version 1's ``dit.<path>.lora_A`` becomes
    ``dit.<path>.lora_A.default.weight``; every other name is unchanged."""
    return _V1_LORA_NAME.sub(rf"\g<path>.\g<part>.{ADAPTER_NAME}.weight", name)


def checkpoint_name(step: int) -> str:
    return f"step_{step:08d}"


# ---- optimizer state <-> safetensors + JSON --------------------------------------------------------


def _jsonable(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, (list,)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, torch.Tensor):
        return v.item() if v.numel() == 1 else v.tolist()
    return v


def optimizer_state_to_files(state: dict, names: list[list[str]]) -> tuple[dict[str, torch.Tensor], dict]:
    """Split ``optimizer.state_dict()`` into tensors (by parameter name) and JSON.

    Args:
        state: the optimizer's state dict (``state`` keyed by int ids, ``param_groups`` listing ids), or
            FSDP's full optimizer state dict (keyed by parameter names already).
        names: per param group, the parameter names in the group's order.
    """
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict] = {}
    groups = []
    for group, group_names in zip(state["param_groups"], names):
        ids = group["params"]
        if ids and all(isinstance(i, str) for i in ids):
            group_names = list(ids)  # FSDP: already keyed by name
        if len(ids) != len(group_names):
            raise MVS2VError("internal: optimizer group size does not match its parameter names")
        for pid, name in zip(ids, group_names):
            for key, value in state["state"].get(pid, {}).items():
                if isinstance(value, torch.Tensor):
                    tensors[f"state/{name}/{key}"] = value.detach().cpu().contiguous()
                else:
                    scalars.setdefault(name, {})[key] = _jsonable(value)
        groups.append({**{k: _jsonable(v) for k, v in group.items() if k not in ("params", "param_names")},
                       "params": list(group_names)})
    return tensors, {"param_groups": groups, "scalars": scalars}


def optimizer_state_from_files(tensors: dict[str, torch.Tensor], meta: dict, names: list[list[str]],
                               keyed_by_name: bool = False) -> dict:
    """Inverse of :func:`optimizer_state_to_files` for an optimizer whose groups list ``names``.

    ``keyed_by_name``: return the state keyed by parameter names (what FSDP's
    ``optim_state_dict_to_load`` takes) instead of the optimizer's int ids.
    """
    saved = [g["params"] for g in meta["param_groups"]]
    if [sorted(s) for s in saved] != [sorted(n) for n in names]:
        want = {n for g in names for n in g}
        have = {n for g in saved for n in g}
        raise MVS2VError(
            "the checkpoint's optimizer holds other parameters than this config trains "
            f"(only in checkpoint: {sorted(have - want)[:3]}, only in config: {sorted(want - have)[:3]}): "
            "resume with the config the run was started with"
        )
    state: dict[Any, dict] = {}
    groups = []
    pid = 0
    for group_meta, group_names in zip(meta["param_groups"], names):
        ids = []
        for name in group_names:
            entry: dict[str, Any] = {}
            prefix = f"state/{name}/"
            for key, t in tensors.items():
                if key.startswith(prefix):
                    entry[key[len(prefix):]] = t
            entry.update(meta["scalars"].get(name, {}))
            key: Any = name if keyed_by_name else pid
            if entry:
                state[key] = entry
            ids.append(key)
            pid += 1
        g = {k: v for k, v in group_meta.items() if k != "params"}
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
        g["params"] = ids
        groups.append(g)
    return {"state": state, "param_groups": groups}


# ---- RNG -------------------------------------------------------------------------------------------


def rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = s
    py = random.getstate()
    np_state = np.random.get_state()
    meta = {"python": [py[0], list(py[1]), py[2]],
            "numpy": [np_state[0], [int(x) for x in np_state[1]], int(np_state[2]), int(np_state[3]),
                      float(np_state[4])]}
    return tensors, meta


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    cuda = sorted(k for k in tensors if k.startswith("torch_cuda_"))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda][: torch.cuda.device_count()])
    v, state, gauss = meta["python"]
    random.setstate((v, tuple(state), gauss))
    name, keys, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


# ---- folders ---------------------------------------------------------------------------------------


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise MVS2VError(f"checkpoint file {path} cannot be read ({e}); it may be damaged: resume from an older "
                         "checkpoint") from None


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:  # pragma: no cover - not every platform can open folders
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: Any) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints (with trainer_state.json) under ``root``, oldest first."""
    if not root.is_dir():
        return []
    out = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("step_") and (p / "trainer_state.json").is_file()]
    return sorted(out, key=lambda p: p.name)


def find_latest(root: Path) -> Path | None:
    """The checkpoint named by ``latest`` (or the newest complete one when ``latest`` is missing)."""
    pointer = root / LATEST
    if pointer.is_file():
        p = root / pointer.read_text(encoding="utf-8").strip()
        if (p / "trainer_state.json").is_file():
            return p
    found = list_checkpoints(root)
    return found[-1] if found else None


def begin(root: Path, step: int) -> Path:
    """Main process: a fresh partial folder for ``step`` (a leftover one from a crash is removed)."""
    partial = root / f".{checkpoint_name(step)}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    return partial


def write_rank_rng(partial: Path, rank: int) -> None:
    tensors, meta = rng_state()
    save_safetensors_atomic(tensors, partial / f"rng_rank{rank}.safetensors")
    write_json_atomic(partial / f"rng_rank{rank}.json", meta)


def write_main(partial: Path, trainable: dict[str, torch.Tensor], optim_state: dict, optim_names: list[list[str]],
               trainer_state: dict) -> None:
    """Main process: model, optimizer and trainer state into the partial folder."""
    save_safetensors_atomic({k: v.detach().float().cpu() for k, v in trainable.items()},
                            partial / "trainable.safetensors", {"format": FORMAT})
    tensors, meta = optimizer_state_to_files(optim_state, optim_names)
    save_safetensors_atomic(tensors, partial / "optimizer.safetensors", {"format": FORMAT})
    write_json_atomic(partial / "optimizer.json", meta)
    write_json_atomic(partial / "trainer_state.json", {"format": FORMAT, "version": VERSION, **trainer_state})


def commit(root: Path, partial: Path, step: int, keep_last: int) -> Path:
    """Main process: rename the partial folder into place, point ``latest`` at it, prune old ones."""
    final = root / checkpoint_name(step)
    _fsync_dir(partial)
    if final.exists():  # the same step saved again (e.g. after a resume): replace it in two renames
        old = root / f".{final.name}.old"
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
        os.replace(partial, final)
        shutil.rmtree(old)
    else:
        os.replace(partial, final)
    _fsync_dir(root)
    with atomic_write(root / LATEST) as tmp:
        tmp.write_text(final.name, encoding="utf-8")
    for old in list_checkpoints(root)[:-keep_last]:
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def read_trainer_state(path: Path) -> dict:
    f = path / "trainer_state.json"
    if not f.is_file():
        raise MVS2VError(f"{path} is not a complete checkpoint (no trainer_state.json)")
    state = json.loads(f.read_text(encoding="utf-8"))
    if state.get("format") != FORMAT:
        raise MVS2VError(f"{path} is not an mvs2v-train checkpoint")
    if int(state.get("version", 0)) > VERSION:
        raise MVS2VError(f"{path} was written by a newer mvs2v-train (checkpoint version {state['version']}); update")
    return state


def read_trainable(path: Path) -> dict[str, torch.Tensor]:
    return {_current_name(k): t for k, t in _read_safetensors(path / "trainable.safetensors").items()}


def _state_key(key: str) -> str:
    """``state/<parameter name>/<field>`` with the parameter name in its current form."""
    head, name_field = key.split("/", 1)
    name, field = name_field.rsplit("/", 1)
    return f"{head}/{_current_name(name)}/{field}"


def read_optimizer(path: Path, names: list[list[str]], keyed_by_name: bool = False) -> dict:
    meta = json.loads((path / "optimizer.json").read_text(encoding="utf-8"))
    for group in meta["param_groups"]:
        group["params"] = [_current_name(n) for n in group["params"]]
    meta["scalars"] = {_current_name(n): v for n, v in meta["scalars"].items()}
    tensors = {_state_key(k): t for k, t in _read_safetensors(path / "optimizer.safetensors").items()}
    return optimizer_state_from_files(tensors, meta, names, keyed_by_name)


def restore_rank_rng(path: Path, rank: int) -> bool:
    """Restore this process's generators (process 0's when the world size changed); False if none saved."""
    for r in (rank, 0):
        t, j = path / f"rng_rank{r}.safetensors", path / f"rng_rank{r}.json"
        if t.is_file() and j.is_file():
            set_rng_state(_read_safetensors(t), json.loads(j.read_text(encoding="utf-8")))
            return True
    return False


def load_trainable_into(model: torch.nn.Module, tensors: dict[str, torch.Tensor], source: Path) -> None:
    """Copy saved trainable tensors into ``model``'s trainable parameters (names and shapes must match)."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if set(params) != set(tensors):
        extra, missing = sorted(set(tensors) - set(params)), sorted(set(params) - set(tensors))
        raise MVS2VError(
            f"checkpoint {source} trains other parameters than this config (only in checkpoint: {extra[:3]}, "
            f"only in config: {missing[:3]}): resume with the config the run was started with"
        )
    with torch.no_grad():
        for name, p in params.items():
            t = tensors[name]
            if tuple(t.shape) != tuple(p.shape):
                raise MVS2VError(f"checkpoint {source}: {name} has shape {list(t.shape)}, the model {list(p.shape)}")
            p.copy_(t.to(p.dtype))


__all__ = ["checkpoint_name", "find_latest", "list_checkpoints", "begin", "write_rank_rng", "write_main", "commit",
           "read_trainer_state", "read_trainable", "read_optimizer", "restore_rank_rng", "load_trainable_into",
           "optimizer_state_to_files", "optimizer_state_from_files", "write_json_atomic"]

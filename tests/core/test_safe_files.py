"""The one pickle refusal every loader uses (mvs2v_core.safe_files); nothing here unpickles."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from mvs2v_core.errors import CheckpointError
from mvs2v_core.safe_files import PICKLE_SUFFIXES, pickle_reason, refuse_pickle, refuse_pickle_folder


@pytest.mark.parametrize("suffix", PICKLE_SUFFIXES)
def test_pickle_suffixes_are_refused_without_reading(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"model{suffix.upper()}"   # the name decides; the file need not exist
    with pytest.raises(CheckpointError) as err:
        refuse_pickle(path, "VAE")
    message = str(err.value)
    assert str(path) in message and "VAE" in message and suffix in message.lower()
    assert "arbitrary code" in message and "safetensors.torch.save_file" in message   # why, and how to convert


@pytest.mark.parametrize("zip_format", [True, False])
def test_torch_save_named_safetensors_is_found_by_its_bytes(tmp_path: Path, zip_format: bool) -> None:
    path = tmp_path / "model.safetensors"
    torch.save({"w": torch.zeros(2)}, str(path), _use_new_zipfile_serialization=zip_format, pickle_module=pickle)
    with pytest.raises(CheckpointError, match=r"this is a pickle \(torch.save\) file, not safetensors"):
        refuse_pickle(path)
    other = tmp_path / "weights.data"   # any other name: still a pickle, without the "not safetensors" line
    other.write_bytes(path.read_bytes())
    reason = pickle_reason(other)
    assert reason is not None and "not safetensors" not in reason


def test_safetensors_and_missing_files_pass(tmp_path: Path) -> None:
    good = tmp_path / "model.safetensors"
    save_file({"w": torch.zeros(2)}, str(good))
    refuse_pickle(good)
    refuse_pickle(tmp_path / "absent.safetensors")   # the loader reports "not found" itself
    (tmp_path / "tiny.safetensors").write_bytes(b"\x80")   # too short to be a pickle stream header
    assert pickle_reason(tmp_path / "tiny.safetensors") is None


@pytest.mark.parametrize("protocol_byte", [2, 3, 4, 5])
def test_safetensors_whose_header_length_looks_like_a_pickle_protocol_pass(tmp_path: Path, protocol_byte: int) -> None:
    """A JSON header of 0x0N80 bytes makes the file start ``80 0N`` (a real adapter hit 896 = 0x0380)."""
    want = protocol_byte * 256 + 0x80
    path = tmp_path / "adapter.safetensors"
    for pad in range(want):  # grow the metadata until the header has exactly that length
        save_file({"w": torch.zeros(2)}, str(path), metadata={"m": "x" * pad})
        if int.from_bytes(path.read_bytes()[:8], "little") == want:
            break
    head = path.read_bytes()[:2]
    assert head == bytes([0x80, protocol_byte])
    assert pickle_reason(path) is None
    refuse_pickle(path)


def test_folder_with_only_pickle_weights(tmp_path: Path) -> None:
    refuse_pickle_folder(tmp_path)   # empty: nothing to refuse
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(CheckpointError, match=r"only weights are pickle files: pytorch_model\.bin"):
        refuse_pickle_folder(tmp_path, "text encoder folder")

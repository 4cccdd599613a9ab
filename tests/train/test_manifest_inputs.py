"""Manifest inputs that used to stop the trainer or slip through: encodings and image modes.

A non-UTF-8 byte is one bad row (line and byte offset), not a traceback in every command; a 16-bit
PNG reference is read with its real range and accepted; a float TIFF holding NaN is a bad row.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from mvs2v_train.cli import main
from mvs2v_train.manifest import read_manifest
from mvs2v_train.media import reference_view
from mvs2v_train.testing import TINY_CONFIG
from PIL import Image
from safetensors.torch import save_file

from mvs2v_core.errors import MVS2VError


def _row(image: str, rid: str) -> dict:
    return {"id": rid, "latents": "lat.safetensors", "caption": "a box",
            "subjects": [{"name": "box", "views": [{"image": image, "label": "front"}]}]}


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    """Latents (no video decoding needed), an 8-bit, a 16-bit and a NaN float reference image."""
    save_file({"latents": torch.zeros(4, 2, 4, 4)}, str(tmp_path / "lat.safetensors"))
    Image.new("RGB", (8, 8), (200, 0, 0)).save(tmp_path / "rgb.png")
    g16 = np.full((8, 8), 257 * 64, dtype=np.uint16)
    Image.frombytes("I;16", (8, 8), g16.tobytes()).save(tmp_path / "gray16.png")
    nan = np.full((8, 8), 0.5, dtype=np.float32)
    nan[3, 3] = np.nan
    Image.fromarray(nan).save(tmp_path / "nan.tif")
    return tmp_path


def test_a_non_utf8_byte_is_one_bad_row_with_line_and_offset(data: Path) -> None:
    rows = [json.dumps(_row("rgb.png", f"r{i}")).encode() for i in range(3)]
    bad = rows[1].replace(b'"a box"', b'"a b\xffx"')
    column = bad.index(b"\xff")
    (data / "m.jsonl").write_bytes(b"\xef\xbb\xbf" + rows[0] + b"\r\n" + bad + b"\r\n" + rows[2] + b"\n")
    report = read_manifest(data / "m.jsonl", 4)
    assert [s.id for s in report.samples] == ["r0", "r2"] and report.total_rows == 3
    assert len(report.problems) == 1 and report.problems[0][0] == 2
    offset = 3 + len(rows[0]) + 2 + column
    assert report.problems[0][1] == (f"not valid UTF-8: byte 0xff at byte {column} of the line (byte offset "
                                     f"{offset} in the file); save the manifest as UTF-8")
    # a byte that is valid Latin-1 but not UTF-8 (an editor's "ANSI" encoding) on a comment line is ignored
    (data / "c.jsonl").write_bytes(b"# caf\xe9\n" + rows[0] + b"\n")
    assert [s.id for s in read_manifest(data / "c.jsonl", 4).samples] == ["r0"]
    (data / "u16.jsonl").write_bytes((rows[0].decode() + "\n").encode("utf-16"))  # Notepad's "Unicode"
    with pytest.raises(MVS2VError, match="is UTF-16 text; save it as UTF-8"):
        read_manifest(data / "u16.jsonl", 4)


def test_reference_views_of_wide_modes_are_scaled(data: Path) -> None:
    view = reference_view(data / "gray16.png", 8, 8)  # [-1, 1]
    assert torch.allclose(view, torch.full_like(view, 64 / 127.5 - 1.0))
    with pytest.raises(MVS2VError, match="NaN"):
        reference_view(data / "nan.tif", 8, 8)


def test_validate_data_flags_bad_bytes_and_nan_images_and_accepts_16_bit(data: Path, capsys) -> None:
    rows = [json.dumps(_row("rgb.png", "ok")).encode(),
            json.dumps(_row("gray16.png", "wide")).encode(),
            json.dumps(_row("nan.tif", "nan")).encode(),
            json.dumps(_row("rgb.png", "bytes")).encode().replace(b"a box", b"a \x80box")]
    (data / "m.jsonl").write_bytes(b"\n".join(rows) + b"\n")
    shutil.copy(TINY_CONFIG, data / "c.toml")
    args = ["--config", str(data / "c.toml"), "--set", f"data.manifest=\"{data / 'm.jsonl'}\"",
            "--set", f"data.cache_dir=\"{data / 'cache'}\""]
    assert main(["validate-data", *args]) == 1
    out = capsys.readouterr().out
    assert "4 rows, 2 good, 2 bad" in out, out
    assert re.search(r"line 3: image '.*nan\.tif' is a float image with 1 NaN or infinite pixel", out), out
    assert re.search(r"line 4: not valid UTF-8: byte 0x80 at byte \d+ of the line", out), out
    assert "line 1:" not in out and "line 2:" not in out

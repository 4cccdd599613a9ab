"""The single image decoder (``mvs2v_core.pipeline.images.decode_image``): every Pillow mode.

Tiny images of each mode are written with Pillow / numpy and their pixels checked after loading:
16-bit and 32-bit integer grayscale are scaled from 0..65535, float images from 0..1 (or 0..255),
transparency is composited onto white, and NaN / inf / out-of-range values are refused in one line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mvs2v_core.errors import MVS2VError
from mvs2v_core.pipeline.images import decode_image, decode_pil, letterbox, load_image, on_white, to_tensor


def _save(image: Image.Image, path: Path, **kw) -> Path:
    image.save(path, **kw)
    return path


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize("mode, dtype", [("I;16", np.uint16), ("I;16B", ">u2")])
def test_sixteen_bit_gray_is_scaled_not_white(tmp_path: Path, mode: str, dtype) -> None:
    values = np.array([[0, 257 * 64, 65535, 32896]], dtype=dtype)
    img = Image.frombytes(mode, (4, 1), values.tobytes())
    assert img.mode == mode
    path = _save(img, tmp_path / "g16.png") if mode == "I;16" else _save(img, tmp_path / "g16.tif")
    assert Image.open(path).mode.startswith("I")
    loaded = load_image(path)
    assert [loaded.getpixel((x, 0)) for x in range(4)] == [(0, 0, 0), (64, 64, 64), (255,) * 3, (128,) * 3]
    dec = decode_image(path)
    assert dec.alpha is None
    assert torch.allclose(dec.rgb[0, :, 0], torch.tensor([0.0, 64 / 255, 1.0, 32896 / 65535]), atol=1e-6)


def test_thirty_two_bit_int_gray_is_read_as_sixteen_bit_and_out_of_range_refused(tmp_path: Path) -> None:
    ok = _save(Image.fromarray(np.array([[0, 65535, 257 * 10]], dtype=np.int32)), tmp_path / "i32.tif")
    assert Image.open(ok).mode == "I"
    assert [load_image(ok).getpixel((x, 0))[0] for x in range(3)] == [0, 255, 10]
    big = _save(Image.fromarray(np.array([[0, 70000]], dtype=np.int32)), tmp_path / "big.tif")
    with pytest.raises(MVS2VError, match="0..65535") as exc:
        load_image(big)
    assert "big.tif" in _one_line(exc)


def test_float_images_follow_the_documented_rule(tmp_path: Path) -> None:
    unit = _save(Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32)), tmp_path / "unit.tif")
    assert Image.open(unit).mode == "F"
    assert [load_image(unit).getpixel((x, 0))[0] for x in range(3)] == [0, 128, 255]  # 0..1
    byte = _save(Image.fromarray(np.array([[0.0, 100.0, 255.0]], dtype=np.float32)), tmp_path / "byte.tif")
    assert [load_image(byte).getpixel((x, 0))[0] for x in range(3)] == [0, 100, 255]  # 0..255
    for values, rule in (([0.0, np.nan], "NaN"), ([np.inf, 0.5], "NaN or infinite"), ([-0.5, 0.5], "-0.5..0.5"),
                         ([0.0, 4000.0], "0..4000")):
        bad = _save(Image.fromarray(np.array([values], dtype=np.float32)), tmp_path / "bad.tif")
        with pytest.raises(MVS2VError, match=rule) as exc:
            load_image(bad)
        assert "bad.tif" in _one_line(exc)


def test_every_eight_bit_mode_comes_out_right(tmp_path: Path) -> None:
    red = (200, 30, 60)
    cases = {
        "1": (Image.new("1", (2, 2), 1), (255, 255, 255)),
        "L": (Image.new("L", (2, 2), 77), (77, 77, 77)),
        "RGB": (Image.new("RGB", (2, 2), red), red),
        "CMYK": (Image.new("RGB", (2, 2), red).convert("CMYK"), red),
        "YCbCr": (Image.new("RGB", (2, 2), (128, 128, 128)).convert("YCbCr"), (128, 128, 128)),
        "HSV": (Image.new("HSV", (2, 2), (0, 255, 255)), (255, 0, 0)),
        "RGBX": (Image.new("RGBX", (2, 2), red + (0,)), red),
    }
    for mode, (img, want) in cases.items():
        assert img.mode == mode
        dec = decode_pil(img, mode)
        assert dec.alpha is None, mode
        got = tuple(int(v) for v in (dec.rgb[0, 0] * 255).round())
        assert max(abs(a - b) for a, b in zip(got, want)) <= 2, (mode, got, want)
    # the same through files, where the format allows it
    _save(cases["CMYK"][0], tmp_path / "cmyk.jpg", quality=100)
    assert max(abs(a - b) for a, b in zip(load_image(tmp_path / "cmyk.jpg").getpixel((0, 0)), red)) <= 6
    _save(cases["1"][0], tmp_path / "bw.png")
    assert load_image(tmp_path / "bw.png").getpixel((1, 1)) == (255, 255, 255)


def test_every_alpha_mode_is_composited_on_white(tmp_path: Path) -> None:
    half = 128
    pal = Image.new("P", (2, 1), 1)
    pal.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    images = {
        "RGBA": Image.new("RGBA", (2, 1), (0, 0, 0, half)),
        "LA": Image.new("LA", (2, 1), (0, half)),
        "La": Image.new("La", (2, 1), (0, half)),
        "RGBa": Image.new("RGBa", (2, 1), (0, 0, 0, half)),
        "PA": Image.new("PA", (2, 1), (0, half)),
    }
    rgba_palette = Image.new("P", (2, 1), 0)
    rgba_palette.putpalette([0, 0, 0, half] * 256, "RGBA")
    images["P (RGBA palette)"] = rgba_palette
    for mode, img in images.items():
        dec = decode_pil(img, mode)
        assert dec.alpha is not None and abs(float(dec.alpha[0, 0]) - half / 255) < 1e-6, mode
        assert abs(int(round(float(on_white(dec)[0, 0, 0]) * 255)) - (255 - half)) <= 1, mode
        assert letterbox(img, 4, 2).getpixel((0, 0))[0] in (126, 127, 128), mode  # in-memory images too
    # transparency keys (PNG tRNS) on palette, gray, RGB and 16-bit gray images
    _save(pal, tmp_path / "p.png", transparency=1)
    l8 = Image.new("L", (2, 1), 10)
    l8.putpixel((1, 0), 20)
    _save(l8, tmp_path / "l.png", transparency=20)
    _save(Image.new("RGB", (2, 1), (1, 2, 3)), tmp_path / "rgb.png", transparency=(1, 2, 3))
    g16 = Image.frombytes("I;16", (2, 1), np.array([[1000, 5000]], dtype=np.uint16).tobytes())
    _save(g16, tmp_path / "g16.png", transparency=1000)
    for name, x in (("p.png", 0), ("l.png", 1), ("rgb.png", 0), ("g16.png", 0)):
        assert load_image(tmp_path / name).getpixel((x, 0)) == (255, 255, 255), name
    assert load_image(tmp_path / "g16.png").getpixel((1, 0)) == (round(5000 / 257),) * 3


def test_in_memory_wide_images_reach_the_vae_scaled(tmp_path: Path) -> None:
    """``letterbox`` / ``to_tensor`` get PIL images straight from the pipeline API: same rules."""
    g16 = Image.frombytes("I;16", (2, 2), np.full((2, 2), 65535, dtype=np.uint16).tobytes())
    assert torch.all(to_tensor(g16) == 1.0)
    dark = Image.fromarray(np.zeros((2, 2), dtype=np.float32))
    assert torch.all(to_tensor(letterbox(dark, 2, 2)) == -1.0)
    with pytest.raises(MVS2VError, match="NaN"):
        to_tensor(Image.fromarray(np.full((2, 2), np.nan, dtype=np.float32)))


def test_decode_image_names_only_what_it_is_told(tmp_path: Path) -> None:
    bad = tmp_path / "secret_folder" / "x.png"
    bad.parent.mkdir()
    bad.write_bytes(b"not an image")
    with pytest.raises(MVS2VError) as exc:
        decode_image(bad, name="x.png")
    assert "secret_folder" not in _one_line(exc) and "x.png" in str(exc.value)

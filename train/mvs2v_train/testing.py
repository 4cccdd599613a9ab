"""A toy world for the tests, the benchmark and a first CPU run: tiny RANDOM models and made-up data.

``make_toy_world(root)`` writes, without any download:

* ``models/``: a tiny Wan DiT (``mvs2v_toy.demo.TINY_DIT``: width 128, 2 blocks), the tiny
  random Wan VAE (4 latent channels, 8x spatial, 4x temporal) and umT5 (width 32), and a tiny CLIP
  vision tower (width 32) for MFI;
* ``data/refs/``: per object, its four views (front / left / back / right faces in different colours);
* ``data/clips/``: short mp4 clips of each object turning in front of a coloured background;
* ``data/train.jsonl``: the manifest (train and val rows, 1 to 4 labelled views per subject).

``python -m mvs2v_train.testing DIR`` also copies ``train/configs/tiny_cpu.toml`` next to it, so
``mvs2v-train cache|train --config DIR/tiny_cpu.toml`` runs in seconds on a CPU. The models are
random: this checks the machinery, not quality.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from mvs2v_core.pipeline.video_io import write_mp4
from mvs2v_toy.demo import FACE_COLOURS, draw_view, make_tiny_dit
from mvs2v_toy.demo_assets import make_tiny_text_encoder, make_tiny_vae

VIEWS = ("front", "left", "back", "right")
BACKGROUNDS = ((40, 40, 40), (90, 120, 160), (150, 150, 120), (60, 110, 60), (120, 70, 90), (30, 60, 100))
TINY_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "tiny_cpu.toml"


def make_tiny_vision_encoder(folder: Path, seed: int = 0, width: int = 32, image_size: int = 32) -> Path:
    """A random CLIP vision tower saved with transformers (safetensors), as MFI's vision encoder."""
    from transformers import CLIPVisionConfig, CLIPVisionModel

    folder.mkdir(parents=True, exist_ok=True)
    config = CLIPVisionConfig(hidden_size=width, intermediate_size=2 * width, num_hidden_layers=2,
                              num_attention_heads=2, image_size=image_size, patch_size=16, projection_dim=width)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPVisionModel(config)
    model.save_pretrained(str(folder), safe_serialization=True)
    return folder


def _turning_clip(shape: str, frames: int, size: int, background: tuple[int, int, int], offset: int) -> torch.Tensor:
    """``uint8 [frames, size, size, 3]``: the object turning (front -> left -> back -> right) and drifting."""
    out = []
    for f in range(frames):
        canvas = Image.new("RGB", (size, size), background)
        view = VIEWS[(f + offset) % 4]
        obj = draw_view(view, size=size * 3 // 4, shape=shape)
        x = (f * 2 + offset) % max(1, size // 4)
        canvas.paste(obj, (x, size // 8), obj)
        ImageDraw.Draw(canvas).line([(0, size - 2), (size, size - 2)], fill=(200, 200, 200), width=1)
        out.append(torch.frombuffer(bytearray(canvas.tobytes()), dtype=torch.uint8).view(size, size, 3))
    return torch.stack(out)


def make_toy_world(root: str | Path, n_train: int = 4, n_val: int = 1, size: int = 32, frames: int = 5,
                   seed: int = 0) -> dict[str, Path]:
    """Write tiny models, reference views, clips and a manifest under ``root``; returns the paths."""
    root = Path(root)
    models, data = root / "models", root / "data"
    paths = {
        "dit": make_tiny_dit(models / "tiny_dit.safetensors", seed),
        "vae": make_tiny_vae(models / "vae", seed),
        "text_encoder": make_tiny_text_encoder(models / "umt5", seed),
        "vision_encoder": make_tiny_vision_encoder(models / "clip_vision", seed),
    }
    refs, clips = data / "refs", data / "clips"
    refs.mkdir(parents=True, exist_ok=True)
    clips.mkdir(parents=True, exist_ok=True)
    rows = []
    shapes = ("box", "ball")
    colours = [n for n in ("red", "green", "blue", "yellow") if n]
    for i in range(n_train + n_val):
        shape = shapes[i % 2]
        name = f"{shape}{i}"
        for view in VIEWS:
            draw_view(view, size=48, shape=shape).save(refs / f"{name}_{view}.png")
        clip = _turning_clip(shape, frames, size, BACKGROUNDS[i % len(BACKGROUNDS)], i)
        write_mp4(clip, clips / f"{name}.mp4", fps=8)
        n_views = 1 + (i % 4) if i < n_train else 4
        views = [{"image": f"refs/{name}_{v}.png", "label": v} for v in VIEWS[:n_views]]
        subjects = [{"name": shape, "views": views}]
        if i % 3 == 2:  # a second, single-view subject now and then
            subjects.append({"name": "extra", "views": [{"image": f"refs/{shapes[(i + 1) % 2]}{i}_front.png",
                                                           "label": "front"}]})
            draw_view("front", size=48, shape=shapes[(i + 1) % 2]).save(refs / f"{shapes[(i + 1) % 2]}{i}_front.png")
        rows.append({
            "id": name, "video": f"clips/{name}.mp4",
            "caption": f"a {colours[i % len(colours)]} {shape} turns slowly on the {('street', 'beach', 'table')[i % 3]}",
            "subjects": subjects, "split": "train" if i < n_train else "val",
            "quality": round(0.5 + 0.1 * i, 2), "tags": ["curated"] if i % 2 == 0 else [],
        })
    manifest = data / "train.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    paths.update({"manifest": manifest, "refs": refs, "clips": clips})
    return paths


def face_colour(view: str) -> tuple[int, int, int]:
    return FACE_COLOURS[view]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m mvs2v_train.testing DIR   (tiny random models + toy data + tiny_cpu.toml)")
        return 2
    out = Path(argv[0])
    if not TINY_CONFIG.is_file():
        print(f"error: {TINY_CONFIG} not found: the example configs ship with the source tree (train/configs/)")
        return 2
    make_toy_world(out / "toy")
    shutil.copy(TINY_CONFIG, out / "tiny_cpu.toml")
    cfg = out / "tiny_cpu.toml"
    print(f"toy world in {out}/toy; now run:\n  mvs2v-train validate-data --config {cfg}\n"
          f"  mvs2v-train cache --config {cfg}\n  mvs2v-train train --config {cfg}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

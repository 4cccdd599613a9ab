"""``mvs2v demo``: run the real ``mvs2v generate`` path on TINY RANDOM models made on the spot.

Nothing is downloaded. The DiT, VAE and text encoder have random weights, so the video is noise:
the demo shows that loading, reference letterboxing and encoding, the position scheme, three-pass
guidance, sampling, decoding and mp4 writing work end to end on this machine, and how long each
stage takes. (A trained tiny model on a toy world replaces this once it is bundled.)
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, ImageDraw

from ..model.config import WanConfig
from ..model.transformer import WanDiT
from ..utils import save_safetensors_atomic
from .demo_assets import make_tiny_text_encoder, make_tiny_vae

# Width 128 with one 128-wide head, like real Wan heads; VAE latents have 4 channels, umT5 width 32.
TINY_DIT = WanConfig(dim=128, ffn_dim=256, num_heads=1, num_layers=2, in_dim=4, out_dim=4, text_dim=32,
                     family="tiny-random")
FACE_COLOURS = {"front": (220, 40, 40), "left": (40, 170, 60), "back": (40, 80, 220), "right": (230, 190, 30)}


def make_tiny_dit(path: Path, seed: int = 0) -> Path:
    """Write a random tiny Wan DiT in the original Wan key layout."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = WanDiT(TINY_DIT)
    save_safetensors_atomic(model.state_dict(), path, {"note": "tiny random Wan DiT made by `mvs2v demo`"})
    return path


def draw_view(view: str, size: int = 160, shape: str = "box") -> Image.Image:
    """A coloured object whose faces differ by view, on a transparent background (RGBA)."""
    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    c = FACE_COLOURS[view]
    m = size // 5
    if shape == "box":
        d.rectangle([m, m, size - m, size - m], fill=c + (255,), outline=(0, 0, 0, 255), width=3)
    else:
        d.ellipse([m, m, size - m, size - m], fill=c + (255,), outline=(0, 0, 0, 255), width=3)
    d.text((size // 2 - 4, size // 2 - 6), view[0].upper(), fill=(255, 255, 255, 255))
    return img


def make_demo_assets(out: Path, seed: int = 0) -> dict[str, Path]:
    """Models and reference images under ``out/assets``; returns their paths."""
    assets = out / "assets"
    paths = {
        "dit": make_tiny_dit(assets / "tiny_dit.safetensors", seed),
        "vae": make_tiny_vae(assets / "vae", seed),
        "text_encoder": make_tiny_text_encoder(assets / "umt5", seed),
    }
    refs = assets / "refs"
    refs.mkdir(parents=True, exist_ok=True)
    for view in ("front", "left", "back"):
        draw_view(view, shape="box").save(refs / f"box_{view}.png")
    draw_view("front", shape="ball").save(refs / "ball_front.png")
    return paths


def run_demo(out: Path, seed: int = 0, steps: int = 8) -> dict:
    """Make the tiny assets and run ``mvs2v generate`` on them; returns its timings and outputs."""
    from ..cli import build_parser, run_generate

    print("mvs2v demo: TINY RANDOM MODELS (no downloads) - the video is noise; this checks the pipeline.")
    paths = make_demo_assets(out, seed)
    refs = out / "assets" / "refs"
    argv = [
        "generate",
        "--dit", str(paths["dit"]), "--vae", str(paths["vae"]), "--text-encoder", str(paths["text_encoder"]),
        "--subject", f"box={refs / 'box_front.png'}@front,{refs / 'box_left.png'}@left,{refs / 'box_back.png'}@back",
        "--subject", f"ball={refs / 'ball_front.png'}@front",
        "--slots-per-subject", "4", "--empty-slot-mode", "gray", "--scheme", "ts",
        "--prompt", "a red box turns left on a gray floor", "--negative-prompt", "blurry static",
        "--width", "128", "--height", "128", "--frames", "17", "--steps", str(steps), "--seed", str(seed),
        "--device", "cpu", "--dtype", "fp32", "--out", str(out / "video.mp4"),
    ]
    print("running: mvs2v " + " ".join(argv))
    return run_generate(build_parser().parse_args(argv))

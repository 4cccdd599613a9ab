"""Command-line arguments of a toy-dataset command (argparse only, so building the CLI parser stays light)."""

from __future__ import annotations

import argparse

# The names of mvs2v_toy.world.WORLDS, spelled out: building the CLI parser must not import numpy
# (tests/toy checks the two agree).
WORLD_NAMES = ("classic", "w0", "w0s", "w0sd", "w1", "w2", "w12")

__all__ = ["add_toy_dataset_args"]


def add_toy_dataset_args(parser: argparse.ArgumentParser) -> None:
    """Arguments of a ``toy-data`` command: ``--out DIR --samples N [--seed S] ...``."""
    parser.add_argument("--out", required=True, help="dataset folder (manifest.jsonl, samples/, codec/, text_encoder/)")
    parser.add_argument("--samples", type=int, default=1000, help="number of samples (default 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--height", type=int, default=32)
    parser.add_argument("--frames", type=int, default=17, help="frames per clip (4n+1 for the trainer; default 17)")
    parser.add_argument("--two-object-prob", type=float, default=0.3)
    parser.add_argument("--views", default="front,left,back,right",
                        help="reference views per object: labels or yaws, comma-separated (default all four)")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--fps", type=float, default=8.0)
    parser.add_argument("--codec-factor", type=int, default=4, help="toy codec spatial factor (z_dim = 3 * f * f)")
    parser.add_argument("--text-dim", type=int, default=32, help="toy text encoder width")
    parser.add_argument("--world", default="classic", choices=WORLD_NAMES,
                        help="classic: captions name colours; w0/w1/w2/w12: side colours only in the references "
                             "(calibration cube / one cube / two cubes / mixed), see docs/toy_world.md (default classic)")
    parser.add_argument("--reference-camera", default=None, choices=("video", "augmented", "centred"),
                        help="override the world's reference camera (w1/w2 default: video)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset in --out")

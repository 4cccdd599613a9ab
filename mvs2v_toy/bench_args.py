"""Command-line arguments of ``mvs2v toy-bench`` (argparse only, so building the CLI parser stays light)."""

from __future__ import annotations

import argparse

__all__ = ["add_bench_args"]


def add_bench_args(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``mvs2v toy-bench`` (checked by :func:`mvs2v_toy.bench.run_toy_bench`)."""
    parser.add_argument("--model", required=True,
                        help="toy model folder laid out like mvs2v_toy/assets/toy_demo (dit.safetensors, "
                             "adapter.safetensors, codec/, text_encoder/, model.json)")
    parser.add_argument("--out", required=True,
                        help="output folder: results.json, table.md, command.txt and the resumable records.jsonl")
    parser.add_argument("--world", default="w1", help="held-out world: w1 (one cube, default) or w2 (two cubes)")
    parser.add_argument("--scenes", type=int, default=64, help="held-out scenes (default 64)")
    parser.add_argument("--seeds", default="0,1", help="sampling seeds, comma-separated (default 0,1)")
    parser.add_argument("--eval-seed", type=int, default=1000,
                        help="scene i is drawn from numpy default_rng([EVAL_SEED, i]) (default 1000)")
    parser.add_argument("--rows", default="multi,single,none,copy",
                        help="rows, comma-separated, from multi (four views), single (the start view), none (no "
                             "references), copy (true frame 0 repeated) (default all four)")
    parser.add_argument("--batch", type=int, default=16, help="clips per batched sampling run (default 16)")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's, model.json)")
    parser.add_argument("--ref-scale", type=float, default=None,
                        help="reference guidance scale (default: the model's, model.json); for guidance sweeps")
    parser.add_argument("--text-scale", type=float, default=None,
                        help="text guidance scale (default: the model's, model.json); for guidance sweeps")
    parser.add_argument("--device", default="cpu", help="device (default cpu; generation runs in fp32)")
    parser.add_argument("--bar", action="store_true",
                        help="also check issue 11's bar for W1 and print PASS/FAIL per requirement (report only)")

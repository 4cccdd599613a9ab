"""Command-line arguments of ``mvs2v eval`` (argparse only, so building the CLI parser stays light)."""

from __future__ import annotations

import argparse

__all__ = ["add_eval_args"]


def add_eval_args(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``mvs2v eval``."""
    # --video, --sample and --out are needed unless --list-metrics (run_eval checks, with a one-line error).
    parser.add_argument("--video", help="the generated video (.mp4 or any file PyAV reads); required")
    parser.add_argument("--sample", help="the toy sample folder it was generated for (holds truth.json); required")
    parser.add_argument("--out", help="folder for metrics.json, strip.png and eval_plot.png (created if missing); "
                                      "required")
    parser.add_argument("--extractor", default="toy",
                        help="features for S_v->r / S_r->v: 'toy' (default; fixed colour-layout features) or a local "
                             "DINOv2 / CLIP transformers folder")
    parser.add_argument("--views", action="append", default=[], metavar="[NAME=]VIEW,VIEW",
                        help="reference views the model was given: 'front,left' for every subject, or "
                             "'NAME=front,left' per subject (repeatable); default: all views of the sample")
    parser.add_argument("--no-crop", action="store_true", help="compare full frames with the references")
    parser.add_argument("--no-plot", action="store_true", help="skip eval_plot.png (no matplotlib needed)")
    parser.add_argument("--list-metrics", action="store_true",
                        help="print every registered metric and causal probe with the inputs and weights it needs, "
                             "then exit")
    parser.add_argument("--eval-device", default="cpu", help="device of a DINOv2 / CLIP extractor (default cpu)")

"""Command-line arguments of the toy mode of ``mvs2v eval`` (argparse only, so building the CLI parser stays light).

``mvs2v eval`` is core's command; the toy world adds its mode (selected by ``--sample``) with
:func:`add_toy_eval_args` through core's ``add_eval_mode`` hook (``mvs2v_toy.cli``). :func:`add_eval_args`
gives a parser of its own every argument the toy mode reads, the shared ones included.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_eval_args", "add_shared_eval_args", "add_toy_eval_args", "TOY_MODE_HELP"]

TOY_MODE_HELP = ("--sample selects it: score a generated video against a toy-world sample (S_v->r, S_r->v, PSNR, "
                 "SSIM, face accuracy, crosstalk); writes metrics.json, strip.png and eval_plot.png in --out")


def add_shared_eval_args(parser: Any) -> None:
    """The arguments core's ``mvs2v eval`` gives every mode (for a parser of the toy mode's own)."""
    # --video, --sample and --out are needed unless --list-metrics (run_eval checks, with a one-line error).
    parser.add_argument("--video", help="the generated video (.mp4 or any file PyAV reads); required")
    parser.add_argument("--out", help="folder for metrics.json, strip.png and eval_plot.png (created if missing); "
                                      "required")
    parser.add_argument("--list-metrics", action="store_true",
                        help="print every registered metric and causal probe with the inputs and weights it needs, "
                             "then exit")
    parser.add_argument("--eval-device", default="cpu", help="device of a DINOv2 / CLIP extractor (default cpu)")


def add_toy_eval_args(parser: Any) -> None:
    """The toy mode's own arguments (only ``parser.add_argument`` is called)."""
    parser.add_argument("--sample", help="the toy sample folder it was generated for (holds truth.json); selects the "
                                         "toy mode")
    parser.add_argument("--extractor", default="toy",
                        help="features for S_v->r / S_r->v: 'toy' (default; fixed colour-layout features) or a local "
                             "DINOv2 / CLIP transformers folder")
    parser.add_argument("--views", action="append", default=[], metavar="[NAME=]VIEW,VIEW",
                        help="reference views the model was given: 'front,left' for every subject, or "
                             "'NAME=front,left' per subject (repeatable); default: all views of the sample")
    parser.add_argument("--no-crop", action="store_true", help="compare full frames with the references")
    parser.add_argument("--no-plot", action="store_true", help="skip eval_plot.png (no matplotlib needed)")


def add_eval_args(parser: argparse.ArgumentParser) -> None:
    """Every argument of the toy mode of ``mvs2v eval``, on a parser of its own."""
    add_shared_eval_args(parser)
    add_toy_eval_args(parser)

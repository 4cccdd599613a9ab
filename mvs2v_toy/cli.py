"""The toy world's ``mvs2v`` subcommands: ``demo``, ``toy-data`` and ``toy-bench``, and the toy mode of ``eval``.

Core's parser calls :func:`register_commands` through the ``mvs2v.cli`` entry point. ``mvs2v eval``
is core's command: the toy world adds its ``--sample`` mode to it through the parser's
``add_eval_mode`` hook (a parser without that hook, e.g. a bare one, gets the toy ``eval`` command
of old). Only argparse is imported here (each command's module is imported when it runs), so
``mvs2v --help`` stays light.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .args import add_toy_dataset_args
from .bench_args import add_bench_args
from .eval_args import TOY_MODE_HELP, add_eval_args, add_toy_eval_args

__all__ = ["register_commands"]


def _run_demo(args: argparse.Namespace) -> Any:
    from .demo import run_demo, run_random_demo

    if args.random_models:
        return run_random_demo(Path(args.out), seed=args.seed, steps=8 if args.steps is None else args.steps)
    return run_demo(Path(args.out), seed=args.seed, steps=args.steps)


def _run_eval(args: argparse.Namespace) -> Any:
    from .evaluate import run_eval

    return run_eval(args)


def _run_toy_data(args: argparse.Namespace) -> Any:
    from .dataset import run_toy_dataset

    return run_toy_dataset(args)


def _run_toy_bench(args: argparse.Namespace) -> Any:
    from .bench import run_bench_cli

    return run_bench_cli(args)


def _add_eval_mode(sub: argparse._SubParsersAction) -> None:
    """The toy mode of core's ``mvs2v eval`` (``--sample``); without core's command, a toy ``eval`` of its own."""
    core_eval = (getattr(sub, "choices", None) or {}).get("eval")
    add_mode = getattr(core_eval, "add_eval_mode", None)
    if add_mode is not None:
        add_mode("toy", "sample", add_toy_eval_args, _run_eval, TOY_MODE_HELP)
        return
    evaluate = sub.add_parser(
        "eval", help="score a generated video against a toy-world sample (S_v->r, S_r->v, PSNR, SSIM, face accuracy, "
                     "crosstalk)")
    add_eval_args(evaluate)
    evaluate.set_defaults(handler=_run_eval)


def register_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``demo``, ``toy-data``, ``toy-bench`` and the toy mode of ``eval`` to ``mvs2v``'s subparsers; each runs
    through its ``handler``."""
    demo = sub.add_parser(
        "demo", help="generate a held-out toy-world scene from its multi-view references with the bundled toy model, "
                     "then score it against the ground truth (no downloads)"
    )
    demo.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    demo.add_argument("--seed", type=int, default=0, help="picks the held-out scene and seeds the sampler (default 0)")
    demo.add_argument("--steps", type=int, default=None,
                      help="sampling steps (default: the bundled model's; 8 with --random-models)")
    demo.add_argument("--random-models", action="store_true",
                      help="the old demo: tiny RANDOM models made on the spot (the video is noise; checks the pipeline)")
    demo.set_defaults(handler=_run_demo)
    _add_eval_mode(sub)
    toy_data = sub.add_parser("toy-data", help="write a toy-world dataset plus the toy codec and text encoder")
    add_toy_dataset_args(toy_data)
    toy_data.set_defaults(handler=_run_toy_data)
    bench = sub.add_parser(
        "toy-bench", help="the causal evaluation suite of a toy model on held-out W1/W2 scenes: reference use, slot "
                          "binding, crosstalk and per-video metrics with bootstrap intervals (resumable)")
    add_bench_args(bench)
    bench.set_defaults(handler=_run_toy_bench)

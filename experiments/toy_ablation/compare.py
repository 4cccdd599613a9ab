"""Paired differences A - B of two ``mvs2v toy-bench`` folders scored on the same held-out scenes.

``python -m experiments.toy_ablation.compare A_DIR B_DIR --scenes 32 --seeds 0,1 [--row multi]``
prints, per metric, the mean over scenes of A's minus B's seed-averaged per-scene value with its 95%
bootstrap interval (the numbers of docs/cached_references.md and of the graded-curriculum section
of docs/ablation.md). The per-scene values are the bench's own (``records.jsonl``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mvs2v_core.errors import MVS2VError
from mvs2v_core.evaluation.stats import paired_bootstrap_ci

from .arms import parse_seeds
from .scoring import PAIRED_METRICS, per_scene_values


def paired_differences(a: Path, b: Path, scenes: int, seeds: list[int], row: str = "multi") -> dict[str, dict]:
    """``{metric: paired_bootstrap_ci(A, B)}`` over scenes ``0..scenes-1`` (metrics both benches have)."""
    for folder in (a, b):
        if not (folder / "records.jsonl").is_file():
            raise MVS2VError(f"{folder} has no records.jsonl: give a folder written by mvs2v toy-bench")
    va, vb = (per_scene_values(f, [row], scenes, seeds)[row] for f in (a, b))
    cis = {m: paired_bootstrap_ci(va[m], vb[m]) for m in PAIRED_METRICS}  # scenes missing on a side are dropped
    return {m: ci for m, ci in cis.items() if ci["n"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.toy_ablation.compare", description=__doc__.split("\n")[0])
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    p.add_argument("--scenes", type=int, required=True, help="held-out scenes both benches scored (0..N-1)")
    p.add_argument("--seeds", default="0,1", help="sampling seeds both benches used (default 0,1)")
    p.add_argument("--row", default="multi", help="bench row (default multi)")
    args = p.parse_args(argv)
    try:
        diffs = paired_differences(args.a, args.b, args.scenes, parse_seeds(args.seeds, "--seeds"), args.row)
    except MVS2VError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for m, ci in diffs.items():
        print(f"{m}: {ci['mean']:+.3f} [{ci['lo']:+.3f}, {ci['hi']:+.3f}] (n={ci['n']})")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

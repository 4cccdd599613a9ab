"""``mvs2v-data``: the multi-view data curation pipeline (docs/data.md).

Every stage command reads the config, adds the new items of ``work.inputs`` to the work folder, runs
its stage on the items of this shard that need it and prints the counts; ``run`` runs every stage in
order and writes the manifest. A user mistake is one ``error:`` line (exit status 2).
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from mvs2v_core.errors import MVS2VError

__all__ = ["main", "build_parser", "stages"]


def stages() -> dict:
    from .filters import FILTER_STAGE
    from .generate import CAPTION_STAGE, GENERATIVE_STAGES
    from .references import REFERENCES_STAGE

    return {s.name: s for s in [*GENERATIVE_STAGES, CAPTION_STAGE, REFERENCES_STAGE, FILTER_STAGE]}


STAGE_HELP = {
    "generate-images": "text -> frontal subject image (ComfyUI or a stage plug-in)",
    "synthesize-views": "frontal image -> views at generate.view_yaws",
    "generate-videos": "image -> video with the camera circling the subject",
    "caption": "the caption of each item (given, or its prompt)",
    "extract-references": "reference views from each clip (face yaw bins / object farthest points)",
    "filter": "blur, aesthetic, identity, face count, pose and coverage filters",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mvs2v-data", description="Make multi-view subject-to-video training "
                                     "data: generation, captions, reference views, filters, manifest, report.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in [*STAGE_HELP.items(), ("run", "every stage in order, then the manifest"),
                       ("manifest", "write the trainer's manifest of the kept items"),
                       ("report", "counts, histograms and a contact sheet of kept and dropped items")]:
        p = sub.add_parser(name, help=text)
        p.add_argument("--config", required=True, help="the TOML config (see examples/data/)")
        p.add_argument("--workers", type=int, default=1, help="items processed at once (default 1)")
        p.add_argument("--shard", default=None, metavar="I/N", help="only this machine's share of the items")
        p.add_argument("--no-progress", action="store_true", help="no progress bars")
        if name == "report":
            p.add_argument("--out", default=None, help="report folder (default: <work>/report)")
        elif name in STAGE_HELP:
            p.add_argument("--redo", action="store_true", help="forget this stage's and the later stages' results "
                           "for the shard's items and run it again (e.g. after changing a threshold)")
    return parser


def _context(args: argparse.Namespace):
    from .config import load_config
    from .runner import Context
    from .work import WorkFolder, parse_shard

    if args.workers < 1:
        raise MVS2VError(f"--workers must be at least 1, got {args.workers}")
    cfg = load_config(args.config)
    ctx = Context(cfg, WorkFolder(cfg.work_dir), parse_shard(args.shard), args.workers, not args.no_progress)
    added = ctx.work.ingest(cfg.resolve(cfg.work.inputs) if cfg.work.inputs else None, ctx.shard)
    if added:
        print(f"added {added} new items to {ctx.work.root}")
    return ctx


def run_command(args: argparse.Namespace) -> int:
    from .runner import run_stage

    ctx = _context(args)
    if args.command == "report":
        from .report import write_report

        out = write_report(ctx, args.out)
        print(f"report written to {out}")
        return 0
    names = list(STAGE_HELP) if args.command == "run" else [] if args.command == "manifest" else [args.command]
    table = stages()
    if getattr(args, "redo", False):
        print(f"{args.command}: forgot the results of {forget(ctx, args.command)} items")
    for name in names:
        print(run_stage(ctx, table[name], table).line())
    if args.command == "run" and ctx.shard != (0, 1):
        print("shard finished; once every shard is, write the manifest with `mvs2v-data manifest --config ...`")
    elif args.command in ("run", "manifest"):
        from .manifest import write_manifest

        path, rows = write_manifest(ctx)
        print(f"manifest {path}: {rows} items (check it with `mvs2v-train validate-data`)")
    return 0


def forget(ctx, stage: str) -> int:
    """Remove ``stage``'s and the later stages' results from the shard's records (files stay); how many changed."""
    from .work import STAGES

    later = set(STAGES[STAGES.index(stage):])
    changed = 0
    for rec in ctx.work.records(ctx.shard):
        if not later & set(rec["stages"]):
            continue
        rec["stages"] = {k: v for k, v in rec["stages"].items() if k not in later}
        if rec.get("dropped") and rec["dropped"]["stage"] in later:
            rec["dropped"] = None
        ctx.work.save(rec)
        changed += 1
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run_command(args)
    except MVS2VError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished items are saved; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

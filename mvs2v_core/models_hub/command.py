"""``mvs2v models``: list the presets, or fetch named ones (the only command that downloads weights)."""

from __future__ import annotations

import argparse

from ..errors import MVS2VError


def add_models_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models", help="download named weights (Wan, Phantom-Wan, VAEs, umT5, CLIP, DINOv2, InsightFace) through "
                       "huggingface-hub, verified; --list shows them",
        description="Download named weights into ComfyUI's models/ folders (--comfyui-dir) or a local models folder "
                    "(--dir). Nothing else in mvs2v ever downloads. Files are staged, sha256-checked (pinned, or "
                    "recorded in mvs2v-models.lock.json on first download) and moved into place in one step.")
    p.add_argument("names", nargs="*", metavar="NAME", help="preset names (see --list)")
    p.add_argument("--list", action="store_true", help="print the table of presets and exit")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--comfyui-dir", metavar="DIR", help="a ComfyUI folder: files go to DIR/models/<folder>/")
    where.add_argument("--dir", metavar="DIR",
                       help="models folder for the CLI, evaluation and data pipeline "
                            "(default: $MVS2V_MODELS_DIR, else ~/.cache/mvs2v/models)")
    p.add_argument("--endpoint", metavar="URL", help="Hub endpoint (default: $HF_ENDPOINT, else https://huggingface.co)")
    p.add_argument("--force", action="store_true", help="download again even when a verified copy is in place")
    p.set_defaults(handler=run_models)


def format_table() -> str:
    """The ``--list`` table: one row per preset, then its repository, file(s) and revision."""
    from .presets import PRESETS

    rows = [("NAME", "TARGET (under models/)", "SIZE", "SHA256", "LICENCE")]
    rows += [(p.name, p.target + ("/" if p.is_folder else ""), p.size, p.pin_state, p.licence) for p in PRESETS]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row[:4], widths)) + "  " + row[4])
        if n:
            p = PRESETS[n - 1]
            what = p.file if p.file is not None else "files " + " ".join(p.patterns)
            lines.append(f"    {p.description}: {p.repo}@{p.revision[:12]} {what}")
    lines.append("unpinned: no published sha256 was available; the first download records the one it computes in "
                 "mvs2v-models.lock.json and later downloads are checked against it")
    return "\n".join(lines)


def run_models(args: argparse.Namespace) -> None:
    from .download import download_preset, models_root, print_outcome, resolve_endpoint
    from .presets import find_preset

    if args.list:
        print(format_table())
        return
    if not args.names:
        raise MVS2VError("name the weights to download, e.g. 'mvs2v models wan2.1-t2v-1.3b wan2.1-vae "
                         "--comfyui-dir ~/ComfyUI'; 'mvs2v models --list' shows the presets")
    presets = [find_preset(name) for name in dict.fromkeys(args.names)]  # every name checked before any download
    root = models_root(args.comfyui_dir, args.dir)
    endpoint = resolve_endpoint(args.endpoint)
    for preset in presets:
        print_outcome(download_preset(preset, root, endpoint, force=args.force), root)

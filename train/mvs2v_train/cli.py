"""``mvs2v-train``: ``validate-data``, ``cache``, ``train``, ``export``.

Also runs as ``python -m mvs2v_train ...`` and under a launcher (``accelerate launch -m mvs2v_train
train ...``, ``torchrun --nproc_per_node N -m mvs2v_train train ...``). Every user mistake ends in one
line starting with ``error:`` (exit status 2), never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from mvs2v_core.errors import MVS2VError


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="the TOML config file (see train/configs/)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value, e.g. --set train.output_dir=runs/b --set stages.0.steps=10")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mvs2v-train",
                                     description="Train multi-view subject-to-video adapters for Wan 2.1 / 2.2.")
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("validate-data", help="check every manifest row (files, labels, video length) and the cache")
    _common(v)
    v.add_argument("--no-probe", action="store_true", help="do not open videos and images (faster, fewer checks)")
    c = sub.add_parser("cache", help="encode video latents, text embeddings, reference latents, ViT features")
    _common(c)
    c.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    t = sub.add_parser("train", help="run the curriculum (use accelerate launch / torchrun for several GPUs)")
    _common(t)
    t.add_argument("--resume", nargs="?", const="auto", default=None, metavar="CHECKPOINT",
                   help="continue from the run's latest checkpoint, or from the given checkpoint folder")
    t.add_argument("--stop-at-step", type=int, default=None, metavar="N",
                   help="checkpoint and stop after global step N (the schedule still spans the whole run)")
    e = sub.add_parser("export", help="write the adapter .safetensors of a checkpoint")
    _common(e)
    e.add_argument("--checkpoint", default="latest", help="checkpoint folder, or 'latest' (default)")
    e.add_argument("--out", default=None, help="adapter file (default: <output_dir>/adapter-step<N>.safetensors)")
    return parser


def _device(name: str | None):
    import torch

    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise MVS2VError(f"--device {name!r} is not a device torch knows: use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MVS2VError("--device cuda was asked for but no CUDA GPU is available: use --device cpu")
    return dev


def run_validate_data(cfg, probe: bool) -> int:
    """Print every bad row with its line number, what each stage would train on, and the cache state."""
    from .cache import CacheStore, _h, data_params, record_is_fresh, row_key
    from .curriculum import stage_accepts
    from .manifest import read_manifest

    report = read_manifest(cfg.resolve(cfg.data.manifest), cfg.references.slots_per_subject, check_files=True)
    problems = list(report.problems)
    good = []
    for s in report.samples:
        why = _probe(s, cfg) if probe else None
        if why:
            problems.append((s.line, why))
        else:
            good.append(s)
    problems.sort()
    print(f"manifest {report.path}: {report.total_rows} rows, {len(good)} good, {len(problems)} bad")
    for line, why in problems:
        print(f"  line {line}: {why}")
    unlabelled = [s.line for s in good if any(len(sub.views) > 1 and any(v.label is None for v in sub.views)
                                               for sub in s.subjects)]
    if unlabelled:
        print(f"note: {len(unlabelled)} rows have multi-view subjects with unlabelled views (first on line "
              f"{unlabelled[0]}); unlabelled views fill the free slots in order, so slot positions then carry no "
              "viewpoint meaning")
    print("stages:")
    for i, st in enumerate(cfg.stages):
        n = sum(stage_accepts(st, s) for s in good)
        multi = sum(stage_accepts(st, s) and s.subjects and max(s.view_counts) > 1 for s in good)
        flag = "  <- no samples: relax its filter" if n == 0 else ""
        if st.views != "single" and n and not multi:
            flag = "  <- no multi-view samples: this stage cannot vary the view count"
        print(f"  {i + 1} {st.name!r} (views={st.views}): {n} samples, {multi} with multi-view subjects{flag}")
    store = CacheStore(cfg.cache_dir)
    if store.exists:
        params = _h(data_params(cfg))
        fresh = sum(record_is_fresh(store.records.get(row_key(s)), params, None, store) for s in good)
        hint = "" if fresh == len(good) else " (run `mvs2v-train cache` for the rest)"
        print(f"cache {cfg.cache_dir}: {fresh} of {len(good)} good rows cached and up to date{hint}")
    else:
        print(f"cache {cfg.cache_dir}: not created yet (run `mvs2v-train cache`)")
    return 1 if problems else 0


def _probe(sample, cfg) -> str | None:
    """Open a row's media; the reason it cannot be used, or None."""
    from mvs2v_core.pipeline.images import load_image

    from .cache import _read_latents_file
    from .media import frame_indices, probe_video

    d = cfg.data
    try:
        if sample.video is not None:
            n, _, _ = probe_video(sample.video)
            usable = len(frame_indices(n, d.frames, d.frame_stride, d.frame_start))
            if usable < d.min_frames:
                return (f"video {sample.video} gives {usable} usable frames (of {n}, stride {d.frame_stride}); "
                        f"data.min_frames is {d.min_frames}")
        else:
            _read_latents_file(sample.latents)
        for subj in sample.subjects:
            for view in subj.views:
                load_image(view.image)
    except MVS2VError as e:
        return str(e)
    return None


def run_cache_cmd(cfg, device) -> int:
    import os

    from .cache import run_cache

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise MVS2VError("`mvs2v-train cache` writes one cache and must run as a single process: start it with "
                         "plain `mvs2v-train cache`, not through accelerate launch / torchrun")
    report = run_cache(cfg, device=_device(device), log=lambda m: print(m, file=sys.stderr))
    print(f"cache {cfg.cache_dir}: {report.summary()}")
    for line, why in report.problems:
        print(f"  line {line}: {why}")
    if report.problems:
        print("rows listed above were not cached; training skips them (fix them and run `mvs2v-train cache` again)")
    return 0 if report.cached else 1


def run_train_cmd(cfg, resume, stop_at_step) -> int:
    from .trainer import run_training

    result = run_training(cfg, resume=resume, stop_at_step=stop_at_step)
    if not result.is_main:
        return 0
    if result.completed and result.adapter is not None:
        print(f"trained {result.final_step} steps; adapter: {result.adapter}")
    else:
        print(f"stopped after step {result.final_step}; checkpoint: {result.checkpoint}; "
              f"continue with: mvs2v-train train --config {cfg.path} --resume")
    return 0


def run_export_cmd(cfg, checkpoint: str, out: str | None) -> int:
    from . import checkpoint as ckpt
    from .export import export_checkpoint

    root = cfg.output_dir / "checkpoints"
    path = ckpt.find_latest(root) if checkpoint == "latest" else Path(checkpoint)
    if path is None:
        raise MVS2VError(f"no checkpoint in {root}: train first, or give --checkpoint")
    state = ckpt.read_trainer_state(path)
    target = Path(out) if out else cfg.output_dir / f"adapter-step{int(state['global_step']):08d}.safetensors"
    for p in export_checkpoint(cfg, path, target):
        print(f"wrote {p}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .config import load_config

    try:
        cfg = load_config(args.config, args.set)
        if args.command == "validate-data":
            return run_validate_data(cfg, probe=not args.no_probe)
        if args.command == "cache":
            return run_cache_cmd(cfg, args.device)
        if args.command == "train":
            return run_train_cmd(cfg, args.resume, args.stop_at_step)
        if args.command == "export":
            return run_export_cmd(cfg, args.checkpoint, args.out)
    except MVS2VError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted (finished cache shards and checkpoints are kept)", file=sys.stderr)
        return 130
    return 0  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

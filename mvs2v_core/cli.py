"""``mvs2v`` command line: ``generate`` a video from multi-view references, ``info``, ``models``
(the one command that downloads weights), ``eval`` (score a video with the one metric registry), ``bench``
(models side by side on a case file: generate, score, leaderboard).

Other packages add subcommands through the ``mvs2v.cli`` entry points (the toy world adds ``demo``,
``toy-data`` and ``toy-bench``): each is called with the subparsers object and sets a ``handler``.
``eval`` is core's; a plug-in adds a mode to it from the same entry point (the toy world's
``--sample`` mode; see :mod:`mvs2v_core.evaluation.command`).

Every user mistake ends in one line starting with ``error:`` and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Sequence

from .benchmarking.command import add_bench_parser
from .cli_inputs import DTYPES, missing_image, parse_subject, parse_view, quiet_library_progress_bars
from .errors import CheckpointError, MVS2VError
from .evaluation.command import add_eval_parser
from .models_hub.command import add_models_parser
from .references.settings import (EmptySlotMode, Placement, RefAttention, ReferenceSettings, RefTimestep, SchemeName,
                                 SlotAnchor, option_values)
from .sampling import FUSE_METHODS, SOLVER_NAMES

CLI_ENTRY_POINTS = "mvs2v.cli"


def _tagged(flag: str):
    """An argparse type that keeps which flag gave a value, so --subject and --view share one ordered list."""
    return lambda text: (flag, text)


def _add_generate_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("models (local files only; safetensors)")
    g.add_argument("--dit", required=True, help="Wan / Phantom-Wan DiT: .safetensors file, sharded index, or diffusers folder")
    g.add_argument("--adapter", help="mvs2v adapter .safetensors (proxy tokens, MFI projector, LoRA)")
    g.add_argument("--lora-strength", type=float, default=1.0, help="strength of the adapter's LoRA (default 1.0)")
    g.add_argument("--vae", required=True,
                   help="Wan VAE: diffusers folder or single .safetensors (Wan or diffusers layout), or a toy codec folder")
    g.add_argument("--text-encoder", required=True,
                   help="umT5 folder (config.json + safetensors + tokenizer), or a toy text-encoder folder")
    g.add_argument("--vision-encoder", help="CLIP/SigLIP vision folder, needed by adapters with MFI")
    g.add_argument("--model-config", help="named DiT config to check against (e.g. wan2.1-t2v-1.3b); default: inferred")
    g = p.add_argument_group("references")
    g.add_argument("--subject", dest="views", action="append", default=[], type=_tagged("--subject"),
                   metavar="NAME=IMG[@LABEL],...",
                   help="one subject and its views; LABEL is front/left/back/right or a yaw in degrees (repeatable; "
                        "a file name with a comma needs --view)")
    g.add_argument("--view", dest="views", action="append", type=_tagged("--view"), metavar="NAME=PATH[@LABEL]",
                   help="one more view of subject NAME; PATH is taken whole, commas and '@' included, except a "
                        "last '@LABEL' that is a view label (end with '@' to keep one in the name) (repeatable)")
    g.add_argument("--frontal", action="append", default=[], metavar="NAME=INDEX",
                   help="which view of a subject is frontal (0-based; default: the labelled view within 45 degrees "
                        "of front, else the first unlabelled view, else the labelled view nearest front)")
    d = ReferenceSettings()  # the defaults, shown in the help; an adapter's own settings replace them
    g.add_argument("--slots-per-subject", type=int, help=f"view slots per subject (default: adapter's, else {d.slots_per_subject})")
    g.add_argument("--empty-slot-mode", choices=option_values(EmptySlotMode),
                   help=f"what an empty slot becomes (default: adapter's, else {d.empty_slot_mode})")
    g.add_argument("--scheme", choices=option_values(SchemeName), help=f"position scheme (default: adapter's, else {d.scheme.name})")
    g.add_argument("--gap", type=float, help=f"ts/ss gap in latent frames (default {d.scheme.gap:g})")
    g.add_argument("--ref-gap", type=float, help=f"jump: gap between video and references (default {d.scheme.ref_gap:g})")
    g.add_argument("--identity-gap", type=float, help=f"jump: gap between subjects (default {d.scheme.identity_gap:g})")
    g.add_argument("--placement", choices=option_values(Placement), help="jump: references after or before the video")
    g.add_argument("--ref-timestep", choices=option_values(RefTimestep),
                   help=f"timestep of reference tokens (default: adapter's, else {d.ref_timestep})")
    g.add_argument("--slot-anchor", choices=option_values(SlotAnchor),
                   help=f"canonical: slot 0 is each subject's front; frontal: slot 0 is the view given by --frontal (the "
                        f"view the video starts from) and the others keep their angle to it (default: adapter's, else "
                        f"{d.slot_anchor})")
    g.add_argument("--ref-attention", choices=option_values(RefAttention),
                   help=f"cached: references attend only to references, their keys/values computed once per "
                        f"generation (needs --ref-timestep zero; an approximation for models trained with full "
                        f"attention, see docs/cached_references.md) (default: adapter's, else {d.ref_attention})")
    g = p.add_argument_group("generation")
    g.add_argument("--prompt", required=True)
    g.add_argument("--negative-prompt", default="")
    g.add_argument("--width", type=int, default=832)
    g.add_argument("--height", type=int, default=480)
    g.add_argument("--frames", type=int, default=81, help="4n+1 frames")
    g.add_argument("--steps", type=int, default=50)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--shift", type=float, default=5.0, help="sigma shift (Wan: 5 for 480p, 3 for 720p 14B)")
    g.add_argument("--solver", choices=SOLVER_NAMES, default=SOLVER_NAMES[0])
    g.add_argument("--ref-scale", type=float, default=5.0, help="reference guidance scale (Phantom default 5.0)")
    g.add_argument("--text-scale", type=float, default=7.5, help="text guidance scale (Phantom default 7.5)")
    g.add_argument("--max-batch-passes", type=int, help="guidance passes per model call (default: all at once)")
    g.add_argument("--skip-memory-check", action="store_true",
                   help="run even when the memory estimate says one model call cannot fit (e.g. with swap)")
    g.add_argument("--fps", type=float, default=16.0, help="frames per second of the video, > 0 (default 16, as Wan)")
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    g.add_argument("--dtype", choices=DTYPES, default=None, help="DiT precision (default: bf16 on GPU, fp32 on CPU)")
    g.add_argument("--out", required=True, help="output .mp4")
    g.add_argument("--lossless", action=argparse.BooleanOptionalAction, default=None,
                   help="write RGB H.264 at qp 0 (exact colours; default: the codec's lossless_output, on for the toy "
                        "codec, whose metrics need it)")
    g.add_argument("--save-latents", action="store_true", help="also write the final latents next to the video (.safetensors)")
    g = p.add_argument_group("long videos: context windows (see docs/long_videos.md)")
    g.add_argument("--context-frames", type=int, metavar="N",
                   help="run the DiT on windows of N video frames (4n+1, like --frames; e.g. 81) and blend them; "
                        "every window sees the references at the same positions (default: one pass over the video)")
    g.add_argument("--context-overlap", type=int, metavar="N",
                   help="video frames two windows share, N // 4 latent frames as in ComfyUI's Wan node "
                        "(default: a third of the window's latent frames: 7 for 81)")
    g.add_argument("--context-fuse", choices=FUSE_METHODS, default=FUSE_METHODS[0],
                   help=f"how overlapping windows are blended (default {FUSE_METHODS[0]}, as ComfyUI)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mvs2v", description="Multi-view subject-to-video generation for Wan 2.1 / 2.2.")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="generate a video from a prompt and multi-view references")
    _add_generate_args(gen)
    info = sub.add_parser("info", help="print the config inferred from a DiT checkpoint or an adapter's metadata")
    info.add_argument("path")
    add_models_parser(sub)
    add_eval_parser(sub)  # before the plug-ins: they add their eval modes to it
    add_bench_parser(sub)
    _add_plugin_commands(sub)
    return parser


def _add_plugin_commands(sub: argparse._SubParsersAction) -> None:
    """Let every ``mvs2v.cli`` entry point add its subcommands (a broken one is reported, not fatal)."""
    from importlib.metadata import entry_points

    for ep in sorted(entry_points(group=CLI_ENTRY_POINTS), key=lambda e: e.name):
        try:
            ep.load()(sub)
        except Exception as exc:
            print(f"warning: the mvs2v commands of {ep.value} could not be added: {exc!r}", file=sys.stderr)


def reference_settings_from_args(args: argparse.Namespace, base: ReferenceSettings | None) -> ReferenceSettings:
    """The flags given on the command line applied over ``base`` (an adapter's settings, else the defaults)."""
    return (base or ReferenceSettings()).with_overrides(
        slots_per_subject=args.slots_per_subject, empty_slot_mode=args.empty_slot_mode,
        ref_timestep=args.ref_timestep, ref_attention=args.ref_attention, slot_anchor=args.slot_anchor, scheme=args.scheme,
        gap=args.gap, ref_gap=args.ref_gap, identity_gap=args.identity_gap, placement=args.placement,
    )


def subjects_from_args(args: argparse.Namespace) -> list:
    """``--subject`` / ``--view`` / ``--frontal`` as pipeline subjects; every image must exist.

    Subjects come in the order they are first named; a subject's views in command-line order.
    """
    from .pipeline.generate import SubjectInput

    views: dict[str, tuple[list[str], list[str | None]]] = {}
    declared: set[str] = set()
    for flag, text in args.views:
        if flag == "--subject":
            name, paths, labels = parse_subject(text)
            if name in declared:
                raise MVS2VError(f"subject names must be unique: --subject {name}=... is given twice "
                                 f"(add views to one subject with --view {name}=PATH)")
            declared.add(name)
        else:
            name, path, label = parse_view(text)
            paths, labels = [path], [label]
        got = views.setdefault(name, ([], []))
        got[0].extend(paths)
        got[1].extend(labels)
    subjects = []
    for name, (paths, labels) in views.items():
        missing = next((pth for pth in paths if not Path(pth).is_file()), None)
        if missing is not None:
            raise missing_image(missing, name)
        subjects.append(SubjectInput(name, paths, labels if any(labels) else None))
    names = list(views)
    for text in args.frontal:
        name, _, idx = text.partition("=")
        if name not in names or not idx.strip().lstrip("-").isdigit():
            raise MVS2VError(f"--frontal {text!r} must be NAME=INDEX for a given subject ({', '.join(names) or 'none'})")
        subjects[names.index(name)].frontal = int(idx)
    return subjects


def settings_from_args(args: argparse.Namespace):
    """Every number of ``generate`` checked, right after parsing and before any file is read: the
    :class:`~mvs2v_core.pipeline.generate.GenerationSettings` (reference settings still to come)."""
    from .pipeline.generate import GenerationSettings

    if not math.isfinite(args.fps) or args.fps <= 0:
        raise MVS2VError(f"--fps {args.fps:g} must be a finite number > 0 (frames per second of the video; Wan: 16)")
    if not math.isfinite(args.lora_strength):
        raise MVS2VError(f"--lora-strength {args.lora_strength:g} must be a finite number (1.0: as trained)")
    reference_settings_from_args(args, None)  # the reference flags' own values; the adapter's come later
    return GenerationSettings(
        prompt=args.prompt, negative_prompt=args.negative_prompt, width=args.width, height=args.height,
        frames=args.frames, steps=args.steps, seed=args.seed, shift=args.shift, solver=args.solver,
        ref_scale=args.ref_scale, text_scale=args.text_scale, max_batch_passes=args.max_batch_passes,
        check_memory=not args.skip_memory_check, context_frames=args.context_frames,
        context_overlap=args.context_overlap, context_fuse=args.context_fuse,
    )


def model_files_from_args(args: argparse.Namespace):
    """The model flags as :class:`~mvs2v_core.pipeline.generate.ModelFiles`; every given path must exist."""
    from .pipeline.generate import ModelFiles

    for flag in ("dit", "vae", "text_encoder", "adapter", "vision_encoder"):
        value = getattr(args, flag)
        if value is not None and not Path(value).exists():
            raise MVS2VError(f"--{flag.replace('_', '-')} {value} does not exist")
    return ModelFiles(dit=args.dit, vae=args.vae, text_encoder=args.text_encoder, adapter=args.adapter,
                      vision_encoder=args.vision_encoder, model_config=args.model_config,
                      lora_strength=args.lora_strength)


def _sampling_bar(steps: int):
    """A tqdm bar for the sampling steps and the progress callback that advances it."""
    from tqdm import tqdm

    bar = tqdm(total=steps, desc="sampling", unit="step", file=sys.stderr)

    def on_step(info: dict) -> None:
        bar.update(1)
        if info["step"] + 1 == info["total_steps"]:
            bar.close()  # before VAE decoding, so the bar's rate is the sampling rate

    return bar, on_step


def _print_context_windows(pipe, settings) -> None:
    """One line saying how the video is windowed (checks the window's form for this VAE first)."""
    pipe.check_size(settings)
    windows = pipe.context_windows(settings)
    if windows is None:
        return
    frames = pipe.latent_shape(settings)[2]
    plan = windows.schedule(frames)
    spans = " ".join(f"{w.start}-{w.stop - 1}" for w in plan)
    print(f"context windows: {len(plan)} of {len(plan[0])} latent frames (overlap {windows.overlap}, "
          f"{windows.fuse}) over {frames}: {spans}")


def run_generate(args: argparse.Namespace) -> dict:
    """``mvs2v generate``: flags -> pipeline API -> video file; returns the timings and output paths."""
    from dataclasses import replace

    from .pipeline.generate import MVS2VPipeline, layout_for
    from .pipeline.outputs import check_video_output  # before any model loads: a bad --out costs nothing

    t_start = time.perf_counter()
    settings = settings_from_args(args)  # every value first: a typo costs no model load
    subjects = subjects_from_args(args)
    out = check_video_output(args.out, args.frames, args.width, args.height, args.lossless, args.save_latents)
    files = model_files_from_args(args)
    adapter = files.load_adapter()  # small: its settings are checked before any large file is read
    references = reference_settings_from_args(args, adapter.metadata.references if adapter is not None else None)
    if subjects:
        layout_for(subjects, references)
    settings = replace(settings, references=references)
    quiet_library_progress_bars()
    pipe = MVS2VPipeline.from_files(replace(files, adapter=adapter), device=args.device, dtype=args.dtype)
    _print_context_windows(pipe, settings)
    bar, on_step = _sampling_bar(args.steps)
    try:
        result = pipe.generate(settings, subjects, progress=on_step)
    finally:
        bar.close()
    t_write = time.perf_counter()
    lossless = args.lossless if args.lossless is not None else pipe.lossless_output
    outputs = result.save(out, args.fps, lossless, latents=args.save_latents)
    timings = {"load_models": pipe.load_seconds, **result.timings, "write_video": time.perf_counter() - t_write,
               "wall": time.perf_counter() - t_start}
    print(f"wrote {out} ({result.video.shape[0]} frames, {args.width}x{args.height})")
    if result.layout is not None:
        for s in result.layout.subjects:
            slots_txt = " ".join("#" if v.filled else "." for v in s.slots)
            print(f"  subject {s.name}: slots [{slots_txt}] frontal={s.frontal}")
    print("timings: " + ", ".join(f"{k} {v:.2f}s" for k, v in timings.items()))
    return {"timings": timings, "outputs": outputs}


def _safetensors_metadata(path: Path) -> dict:
    """The metadata of a ``.safetensors`` file; one line (not a SafetensorError traceback) when it is
    empty, truncated, damaged or a pickle under that name."""
    from safetensors import safe_open

    from .model.loading import check_safetensors_file

    check_safetensors_file(path)  # pickle / GGUF / empty / bad header, each in its own words
    try:
        with safe_open(str(path), "pt") as f:
            return f.metadata() or {}
    except Exception as exc:  # noqa: BLE001 - SafetensorError is not importable by a stable name
        raise CheckpointError(f"{path} is damaged or not a safetensors file: {exc}; if it was downloaded, "
                              "download it again") from None


def run_info(path: str) -> None:
    """``mvs2v info``: an adapter's metadata, or the config inferred from a DiT checkpoint's headers."""
    p = Path(path)
    if not p.exists():
        raise MVS2VError(f"{path} does not exist")
    from .safe_files import refuse_pickle

    refuse_pickle(p, "file")  # by name (.pth...) or by its bytes, even when named .safetensors
    if p.is_file() and p.suffix.lower() == ".safetensors":
        if _safetensors_metadata(p).get("format") == "mvs2v-adapter":
            from .adapter import load_adapter

            print(load_adapter(p).metadata.to_json())
            return
    from .model.config import infer_config
    from .model.loading import normalize_keys, read_meta_state_dict, resolve_checkpoint_files

    sd, layout = normalize_keys(read_meta_state_dict(p))  # headers only: instant even for 14B
    cfg = infer_config(sd)
    _, hints = resolve_checkpoint_files(p)  # what the shapes cannot say (config.json / file metadata)
    if "num_heads" in hints and cfg.dim % hints["num_heads"] == 0:
        cfg = cfg.with_(num_heads=hints["num_heads"])
    cfg = cfg.with_(**{k: v for k, v in hints.items() if k in ("eps", "text_len")})
    print(json.dumps({"layout": layout, **cfg.to_dict()}, indent=2))


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.command == "generate":
            run_generate(args)
        elif args.command == "info":
            run_info(args.path)
        else:  # a command added through the mvs2v.cli entry points
            args.handler(args)
    except MVS2VError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Outputs are written atomically: a stop leaves finished files whole and no partial ones.
        print("\ninterrupted (Ctrl-C): stopped; no partial output was left", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

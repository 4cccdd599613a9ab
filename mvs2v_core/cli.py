"""``mvs2v`` command line: ``generate`` a video from multi-view references, ``demo``, ``info``.

Every user mistake ends in one line starting with ``error:`` and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Sequence

from .errors import MVS2VError

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def parse_subject(text: str) -> tuple[str, list[str], list[str | None]]:
    """``NAME=IMG[@LABEL][,IMG[@LABEL]...]`` -> (name, paths, labels)."""
    if "=" not in text:
        raise MVS2VError(
            f"--subject {text!r} must look like NAME=IMG[,IMG...], e.g. --subject cat=front.png@front,side.png@left"
        )
    name, rest = text.split("=", 1)
    name = name.strip()
    if not name:
        raise MVS2VError(f"--subject {text!r} has no name before '='")
    paths, labels = [], []
    for item in rest.split(","):
        item = item.strip()
        if not item:
            continue
        path, _, label = item.partition("@")
        paths.append(path)
        labels.append(label or None)
    if not paths:
        raise MVS2VError(f"--subject {name} has no images after '='")
    return name, paths, labels


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
    g.add_argument("--subject", action="append", default=[], metavar="NAME=IMG[@LABEL],...",
                   help="one subject and its views; LABEL is front/left/back/right or a yaw in degrees (repeatable)")
    g.add_argument("--frontal", action="append", default=[], metavar="NAME=INDEX",
                   help="which view of a subject is frontal (0-based; default: the one labelled front, else the first)")
    g.add_argument("--slots-per-subject", type=int, help="view slots per subject (default: adapter's, else 4)")
    g.add_argument("--empty-slot-mode", choices=["proxy", "gray", "drop"], help="default: adapter's, else gray")
    g.add_argument("--scheme", choices=["vanilla", "ts", "ss", "jump"], help="position scheme (default: adapter's, else ts)")
    g.add_argument("--gap", type=float, help="ts/ss gap in latent frames")
    g.add_argument("--ref-gap", type=float, help="jump: gap between video and references")
    g.add_argument("--identity-gap", type=float, help="jump: gap between subjects")
    g.add_argument("--placement", choices=["after", "before"], help="jump: references after or before the video")
    g.add_argument("--ref-timestep", choices=["same", "zero"], help="timestep of reference tokens (default: adapter's, else same)")
    g = p.add_argument_group("generation")
    g.add_argument("--prompt", required=True)
    g.add_argument("--negative-prompt", default="")
    g.add_argument("--width", type=int, default=832)
    g.add_argument("--height", type=int, default=480)
    g.add_argument("--frames", type=int, default=81, help="4n+1 frames")
    g.add_argument("--steps", type=int, default=50)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--shift", type=float, default=5.0, help="sigma shift (Wan: 5 for 480p, 3 for 720p 14B)")
    g.add_argument("--solver", choices=["unipc", "euler", "heun"], default="unipc")
    g.add_argument("--ref-scale", type=float, default=5.0, help="reference guidance scale (Phantom default 5.0)")
    g.add_argument("--text-scale", type=float, default=7.5, help="text guidance scale (Phantom default 7.5)")
    g.add_argument("--max-batch-passes", type=int, help="guidance passes per model call (default: all at once)")
    g.add_argument("--fps", type=float, default=16.0)
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    g.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="DiT precision (default: bf16 on GPU, fp32 on CPU)")
    g.add_argument("--out", required=True, help="output .mp4")
    g.add_argument("--lossless", action=argparse.BooleanOptionalAction, default=None,
                   help="write RGB H.264 at qp 0 (exact colours; default on for the toy codec, whose metrics need it)")
    g.add_argument("--save-latents", action="store_true", help="also write the final latents next to the video (.safetensors)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mvs2v", description="Multi-view subject-to-video generation for Wan 2.1 / 2.2.")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="generate a video from a prompt and multi-view references")
    _add_generate_args(gen)
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
    info = sub.add_parser("info", help="print the config inferred from a DiT checkpoint or an adapter's metadata")
    info.add_argument("path")
    from .evaluation.args import add_eval_args
    from .toy.args import add_toy_dataset_args

    add_eval_args(sub.add_parser(
        "eval", help="score a generated video against a toy-world sample (S_v->r, S_r->v, PSNR, SSIM, face accuracy, crosstalk)"))
    add_toy_dataset_args(sub.add_parser("toy-data", help="write a toy-world dataset plus the toy codec and text encoder"))
    return parser


def _device_and_dtype(device: str | None, dtype: str | None):
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise MVS2VError(f"--device {device!r} is not a device torch knows: use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MVS2VError("--device cuda was asked for but no CUDA GPU is available: use --device cpu")
    if dtype is None:
        dtype = "bf16" if dev.type == "cuda" else "fp32"
    return dev, getattr(torch, DTYPES[dtype])


def _scheme_from_args(args, meta_scheme: dict | None):
    from .references.positions import PositionScheme

    base = dict(meta_scheme) if meta_scheme else {"name": "ts"}
    for arg, key in (("scheme", "name"), ("gap", "gap"), ("ref_gap", "ref_gap"),
                     ("identity_gap", "identity_gap"), ("placement", "placement")):
        value = getattr(args, arg)
        if value is not None:
            base[key] = value
    return PositionScheme.from_dict(base)


def _quiet_library_progress_bars() -> None:
    """transformers / diffusers draw their own loading bars; ours is the one that matters."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - transformers is only needed for the text encoder
        pass


def run_generate(args: argparse.Namespace) -> dict:
    """Load everything, generate, write the video; returns the timings and output paths."""
    import torch

    from .model.loading import load_dit
    from .pipeline.generate import GenerationSettings, MVS2VPipeline, SubjectInput, check_video_size, layout_for
    from .pipeline.text import load_text_encoder
    from .pipeline.vae import load_vae
    from .pipeline.video_io import write_mp4

    t_start = time.perf_counter()
    subjects = []
    for text in args.subject:
        name, paths, labels = parse_subject(text)
        for pth in paths:
            if not Path(pth).is_file():
                raise MVS2VError(f"reference image {pth} of subject {name!r} does not exist")
        subjects.append(SubjectInput(name, paths, labels if any(labels) else None))
    names = [s.name for s in subjects]
    if len(set(names)) != len(names):
        raise MVS2VError(f"subject names must be unique, got {names}")
    for text in args.frontal:
        name, _, idx = text.partition("=")
        if name not in names or not idx.strip().lstrip("-").isdigit():
            raise MVS2VError(f"--frontal {text!r} must be NAME=INDEX for a given subject ({', '.join(names) or 'none'})")
        subjects[names.index(name)].frontal = int(idx)
    for flag in ("dit", "vae", "text_encoder", "adapter", "vision_encoder"):
        value = getattr(args, flag)
        if value is not None and not Path(value).exists():
            raise MVS2VError(f"--{flag.replace('_', '-')} {value} does not exist")
    out = Path(args.out)
    if out.suffix.lower() != ".mp4":
        raise MVS2VError(f"--out {out} must end in .mp4")

    device, dtype = _device_and_dtype(args.device, args.dtype)
    t0 = time.perf_counter()
    adapter = None
    meta_scheme = None
    slots = args.slots_per_subject
    mode = args.empty_slot_mode
    ref_t = args.ref_timestep
    if args.adapter:
        from .adapter import apply_lora, load_adapter, require_compatible

        adapter = load_adapter(args.adapter)
        md = adapter.metadata
        meta_scheme = md.position_scheme
        slots = slots if slots is not None else md.slots_per_subject
        mode = mode or md.empty_slot_mode
        ref_t = ref_t or md.ref_timestep
    scheme = _scheme_from_args(args, meta_scheme)
    slots = slots if slots is not None else 4
    mode = mode or "gray"
    ref_t = ref_t or "same"
    if subjects:
        layout_for(subjects, slots)  # cheap checks (views vs slots, labels) before any large file is read
    _quiet_library_progress_bars()
    dit = load_dit(args.dit, config=args.model_config, device=device, dtype=dtype)
    if adapter is not None:
        require_compatible(adapter, dit.config, scheme=scheme, slots_per_subject=slots, empty_slot_mode=mode)
        if adapter.lora:
            apply_lora(dit, adapter.lora, args.lora_strength)
    vae = load_vae(args.vae, device=device, dtype=torch.float32)
    check_video_size(args.width, args.height, args.frames, vae.spatial_factor * max(dit.config.patch_size[1:]),
                     vae.temporal_factor)
    text_encoder = load_text_encoder(args.text_encoder, device=device)
    mfi = vision = None
    if adapter is not None and adapter.mfi_weight is not None:
        if not args.vision_encoder:
            raise MVS2VError("this adapter uses MFI: give --vision-encoder with the vision model it was trained with")
        from .pipeline.vision import load_vision_encoder
        from .references.mfi import MFIProjector

        mfi = MFIProjector(adapter.mfi_weight.shape[1], adapter.mfi_weight.shape[0]).to(device)
        with torch.no_grad():
            mfi.proj.weight.copy_(adapter.mfi_weight)
            mfi.proj.bias.copy_(adapter.mfi_bias)
        vision = load_vision_encoder(args.vision_encoder, device=device)
    proxy = adapter.proxy_tokens.to(device) if adapter is not None and adapter.proxy_tokens is not None else None
    load_time = time.perf_counter() - t0

    pipe = MVS2VPipeline(dit, vae, text_encoder, proxy, mfi, vision, device=device)
    settings = GenerationSettings(
        prompt=args.prompt, negative_prompt=args.negative_prompt, width=args.width, height=args.height,
        frames=args.frames, steps=args.steps, seed=args.seed, shift=args.shift, solver=args.solver,
        ref_scale=args.ref_scale, text_scale=args.text_scale, scheme=scheme, slots_per_subject=slots,
        empty_slot_mode=mode, ref_timestep=ref_t, max_batch_passes=args.max_batch_passes,
    )
    from tqdm import tqdm

    bar = tqdm(total=args.steps, desc="sampling", unit="step", file=sys.stderr)

    def on_step(info: dict) -> None:
        bar.update(1)
        if info["step"] + 1 == info["total_steps"]:
            bar.close()  # before VAE decoding, so the bar's rate is the sampling rate

    try:
        result = pipe.generate(settings, subjects, progress=on_step)
    finally:
        bar.close()
    t_write = time.perf_counter()
    from .toy.codec import ToyCodec
    from .toy.dataset import write_lossless_mp4

    lossless = args.lossless if args.lossless is not None else isinstance(vae, ToyCodec)
    if lossless:
        write_lossless_mp4((result.video * 255).round().to(torch.uint8).numpy(), out, args.fps)
    else:
        write_mp4(result.video, out, fps=args.fps)
    outputs = {"video": str(out)}
    if args.save_latents:
        from .utils import save_safetensors_atomic

        lat_path = out.with_suffix(".latents.safetensors")
        save_safetensors_atomic({"latents": result.latents.contiguous()}, lat_path)
        outputs["latents"] = str(lat_path)
    timings = {"load_models": load_time, **result.timings, "write_video": time.perf_counter() - t_write,
               "wall": time.perf_counter() - t_start}
    print(f"wrote {out} ({result.video.shape[0]} frames, {args.width}x{args.height})")
    if result.layout is not None:
        for s in result.layout.subjects:
            slots_txt = " ".join("#" if v.filled else "." for v in s.slots)
            print(f"  subject {s.name}: slots [{slots_txt}] frontal={s.frontal}")
    print("timings: " + ", ".join(f"{k} {v:.2f}s" for k, v in timings.items()))
    return {"timings": timings, "outputs": outputs}


def run_info(path: str) -> None:
    p = Path(path)
    if not p.exists():
        raise MVS2VError(f"{path} does not exist")
    from safetensors import safe_open

    if p.is_file() and p.suffix == ".safetensors":
        with safe_open(str(p), "pt") as f:
            meta = f.metadata() or {}
        if meta.get("format") == "mvs2v-adapter":
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
    args = build_parser().parse_args(argv)
    try:
        if args.command == "generate":
            run_generate(args)
        elif args.command == "demo":
            from .pipeline.demo import run_demo, run_random_demo

            if args.random_models:
                run_random_demo(Path(args.out), seed=args.seed, steps=8 if args.steps is None else args.steps)
            else:
                run_demo(Path(args.out), seed=args.seed, steps=args.steps)
        elif args.command == "info":
            run_info(args.path)
        elif args.command == "eval":
            from .evaluation.evaluate import run_eval

            run_eval(args)
        elif args.command == "toy-data":
            from .toy.dataset import run_toy_dataset

            run_toy_dataset(args)
    except MVS2VError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""GPU benchmark: seconds per sampling step and peak memory of Wan-size DiTs with random weights.

Run from the repository root on a CUDA machine::

    .venv/bin/python benchmarks/bench_gpu.py --json gpu.json                 # 1.3B and 14B, bf16, 480p 81 frames
    .venv/bin/python benchmarks/bench_gpu.py --sizes 1.3B --rounds 5
    COMFYUI_DIR=/path/to/ComfyUI .venv/bin/python benchmarks/bench_gpu.py    # adds ComfyUI's native model
    .venv/bin/python benchmarks/bench_gpu.py --quick --device cpu            # tiny dims on CPU, seconds (smoke test)

Sizes: ``1.3B`` (dim 1536, 30 layers, 12 heads, ffn 8960) and ``14B`` (dim 5120, 40 layers, 40
heads, ffn 13824), both with Wan's text encoder width 4096 and 512 text tokens. The video is 480p,
81 frames: a 21x60x104 latent (Wan VAE: 4x in time, 8x in space), 21x30x52 = 32760 video tokens in
1x2x2 patches; each reference slot is one latent frame of 30x52 = 1560 tokens, so 1 and 2 subjects
x 4 slots add 6240 and 12480 tokens. Weights are random (built on the device, never on the CPU at
these sizes) and every model runs the same weights.

Variants (one batch-1 forward each, ``torch.inference_mode()``):

* ours, no refs (+ an A/A copy: the noise floor of every ratio); ours with full-attention refs and
  with cached refs (cache precomputed: what each sampling step costs), 1 and 2 subjects, plus the
  one-off cache computation (``WanDiT.reference_cache``, once per generation and reference latents);
* diffusers ``WanTransformer3DModel`` and ComfyUI's native ``comfy.ldm.wan.model.WanModel`` (only
  when ``COMFYUI_DIR`` points at an importable ComfyUI; otherwise its row says why it was skipped),
  no refs, sharing our weight tensors (no copy);
* fp8 weights: ours with every ``nn.Linear`` inside the blocks stored as ``float8_e4m3fn`` with a
  per-tensor float32 scale (see :class:`FP8Linear`), no refs and cached refs (2 subjects).

Seconds per step = ms per batch-1 forward x ``--passes`` (default 3: Phantom's three-pass guidance,
which the pipeline uses whenever there are references; Wan's CFG without references has 2). Peak
memory: ``torch.cuda.max_memory_allocated`` above the allocation before the call, reset before
each variant (on CPU the allocator peak of ``bench_dit``'s profiler method), plus the variant's
weight bytes and, for cached refs, the resident cache. Timings interleave the variants, rotating
the order each round. See ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_dit import MB, _allocator_peak_mb, fmt_ratio, paired_ratio, print_table, reference_conditioning  # noqa: E402

from mvs2v_core.model.config import WanConfig  # noqa: E402
from mvs2v_core.model.loading import cast_for_inference  # noqa: E402
from mvs2v_core.model.transformer import WanDiT  # noqa: E402

GIB = 2**30
SIZES = {
    "1.3B": dict(dim=1536, num_layers=30, num_heads=12, ffn_dim=8960, text_dim=4096, text_len=512),
    "14B": dict(dim=5120, num_layers=40, num_heads=40, ffn_dim=13824, text_dim=4096, text_len=512),
    "tiny": dict(dim=128, num_layers=2, num_heads=1, ffn_dim=256, text_dim=64, text_len=32),  # --quick only
}
LATENT_480P_81F = (21, 60, 104)  # (81 - 1) / 4 + 1 frames, 480 / 8, 832 / 8
QUICK_LATENT = (3, 8, 8)  # 48 video tokens, 16 per reference slot
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass(frozen=True)
class Case:
    """One size: the model config and the latent video ``(frames, height, width)`` it runs on."""

    size: str
    cfg: WanConfig
    latent: tuple[int, int, int]

    @property
    def grid(self) -> tuple[int, int, int]:
        f, h, w = self.latent
        pt, ph, pw = self.cfg.patch_size
        return f // pt, h // ph, w // pw

    @property
    def video_tokens(self) -> int:
        f, h, w = self.grid
        return f * h * w


def make_config(size: str) -> WanConfig:
    return WanConfig(in_dim=16, out_dim=16, family=f"bench-{size}", **SIZES[size])


def parameter_count(cfg: WanConfig) -> int:
    """Parameters of our DiT at ``cfg``, counted on the meta device (no memory, safe for 14B on CPU)."""
    with torch.device("meta"):
        return sum(p.numel() for p in WanDiT(cfg).parameters())


# ---- models ---------------------------------------------------------------------------------------


def init_random_(model: nn.Module, seed: int) -> None:
    """Deterministic random weights in place, on the model's device: norm weights 1, biases 0, the
    modulation tables ``N(0, 1/dim)``, every other weight ``N(0, 1/fan_in)`` (keeps the residual
    stream's scale steady over 40 blocks, so no inf/NaN reaches the timed kernels)."""
    device = next(model.parameters()).device
    g = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            elif p.ndim == 1:
                p.fill_(1.0)
            else:
                fan_in = p.shape[-1] if "modulation" in name else p[0].numel()
                p.normal_(0.0, fan_in**-0.5, generator=g)


def make_ours(cfg: WanConfig, device: torch.device, dtype: torch.dtype, seed: int = 0) -> WanDiT:
    """Our DiT with random weights made directly on ``device`` in ``dtype`` (built on meta, then
    allocated: a 14B model never exists in float32, nor on the CPU). As the loader does
    (``cast_for_inference``), time embedding / projection, norms and modulation tables stay float32."""
    with torch.device("meta"):
        model = WanDiT(cfg)
    model = cast_for_inference(model, dtype).to_empty(device=device)
    init_random_(model, seed)
    return model.eval()


def shared_copy(ours: WanDiT) -> WanDiT:
    """A second WanDiT whose parameters ARE ours (same storage, no memory), to modify in structure."""
    with torch.device("meta"):
        model = WanDiT(ours.config)
    model.load_state_dict(ours.state_dict(), strict=True, assign=True)
    return model.eval()


class FP8Linear(nn.Module):
    """``nn.Linear`` with its weight stored as ``float8_e4m3fn`` and a per-tensor float32 scale.

    Storage: ``weight_fp8 = (w / s).to(float8_e4m3fn)`` with ``s = max|w| / 448`` (ComfyUI's "scaled
    fp8" layout; 448 is e4m3fn's largest value). Forward, per layer and per call: the weight is upcast
    to the input's dtype (``weight_fp8.to(x.dtype)``), multiplied in place by ``s`` in that dtype, used
    by one ``F.linear`` and freed: only one layer's upcast copy exists at a time. Bias stays in the
    model dtype. ``x`` ``[..., in]`` -> ``[..., out]``.
    """

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        w = linear.weight.detach()
        scale = (w.abs().amax().float() / 448.0).clamp(min=1e-12)
        self.register_buffer("weight_fp8", (w.float() / scale).to(torch.float8_e4m3fn))
        self.register_buffer("scale", scale)
        self.bias = linear.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight_fp8.to(x.dtype)
        w.mul_(self.scale.to(x.dtype))
        return F.linear(x, w, self.bias)


def make_fp8(ours: WanDiT) -> WanDiT:
    """Our DiT sharing ``ours``' embeddings, norms and head, with every block ``nn.Linear`` in fp8."""
    model = shared_copy(ours)
    for block in model.blocks:
        for parent in list(block.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.Linear):
                    setattr(parent, name, FP8Linear(child))
    return model


def load_shared(model: nn.Module, sd: dict[str, torch.Tensor]) -> None:
    """Give ``model`` (built on meta) the tensors of ``sd`` without copying them, except those whose dtype
    differs from what ``model`` declares for them (its float32 tables, a few MB): those are cast copies."""
    want = model.state_dict()
    model.load_state_dict({k: v if k not in want or v.dtype == want[k].dtype else v.to(want[k].dtype)
                           for k, v in sd.items()}, strict=True, assign=True)


def make_diffusers(cfg: WanConfig, ours: WanDiT) -> tuple[nn.Module | None, str]:
    """diffusers' ``WanTransformer3DModel`` holding ``ours``' weight tensors; ``(model, note)``."""
    try:
        from diffusers import WanTransformer3DModel
        from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed

        from mvs2v_core.model.convert import to_diffusers_keys
    except ImportError as exc:
        return None, f"skipped: {exc}"
    kwargs = dict(patch_size=cfg.patch_size, num_attention_heads=cfg.num_heads, attention_head_dim=cfg.head_dim,
                  in_channels=cfg.in_dim, out_channels=cfg.out_dim, text_dim=cfg.text_dim, freq_dim=cfg.freq_dim,
                  ffn_dim=cfg.ffn_dim, num_layers=cfg.num_layers, cross_attn_norm=cfg.cross_attn_norm, eps=cfg.eps)
    with torch.device("meta"):
        model = WanTransformer3DModel(**kwargs)
    keep = getattr(model, "_keep_in_fp32_modules", None) or []
    for name, p in model.named_parameters():  # the dtypes from_pretrained(torch_dtype=...) gives
        p.data = p.data.to(torch.float32 if any(k in name.split(".") for k in keep) else ours.dtype)
    load_shared(model, to_diffusers_keys(ours.state_dict()))
    # its RoPE tables are non-persistent buffers (not in any state dict): build them for real
    rope = model.rope
    model.rope = WanRotaryPosEmbed(rope.attention_head_dim, rope.patch_size, rope.max_seq_len).to(
        ours.patch_embedding.weight.device)
    return model.eval(), "our weights (block matrices shared; small tensors cast to diffusers' dtypes)"


def make_comfy(cfg: WanConfig, ours: WanDiT) -> tuple[nn.Module | None, str]:
    """ComfyUI's native ``WanModel`` from ``$COMFYUI_DIR`` holding ``ours``' weights; ``(model, note)``.

    Built as ComfyUI builds it for bf16 weights (``comfy.ops.disable_weight_init``, no per-call cast):
    every tensor in the model dtype except the float32 patch embedding. Where ours differs (our float32
    patch embedding, time embedding, norms and modulation: a few MB) ComfyUI gets a copy; the block
    matrices are shared.
    """
    comfy_dir = os.environ.get("COMFYUI_DIR")
    if not comfy_dir:
        return None, "skipped: COMFYUI_DIR is not set (point it at a ComfyUI checkout)"
    device = ours.patch_embedding.weight.device
    if comfy_dir not in sys.path:
        sys.path.insert(0, comfy_dir)
    try:
        import comfy.cli_args

        # before comfy.model_management is imported: on a CPU-only torch it would probe CUDA and fail
        comfy.cli_args.args.cpu = device.type == "cpu"
        import comfy.ops
        from comfy.ldm.wan.model import WanModel
    except Exception as exc:  # noqa: BLE001 - any import failure means "no ComfyUI here": say which
        return None, f"skipped: ComfyUI at {comfy_dir} does not import ({type(exc).__name__}: {exc})"
    model = WanModel(model_type="t2v", patch_size=cfg.patch_size, text_len=cfg.text_len, in_dim=cfg.in_dim,
                     dim=cfg.dim, ffn_dim=cfg.ffn_dim, freq_dim=cfg.freq_dim, text_dim=cfg.text_dim,
                     out_dim=cfg.out_dim, num_heads=cfg.num_heads, num_layers=cfg.num_layers,
                     cross_attn_norm=cfg.cross_attn_norm, eps=cfg.eps, device="meta", dtype=ours.dtype,
                     operations=comfy.ops.disable_weight_init)
    load_shared(model, ours.state_dict())
    import comfy.ldm.wan.model as wan  # the attention kernel ComfyUI picked at import (SDPA, sage, xformers...)

    kernel = getattr(getattr(wan, "optimized_attention", None), "__name__", "?")
    return model.eval(), f"our weights (block matrices shared; small tensors cast to ComfyUI's dtypes); {kernel}"


def weight_bytes(model: nn.Module) -> int:
    """Bytes of the model's parameters and buffers, each storage counted once."""
    seen: dict[int, int] = {}
    for t in [*model.parameters(), *model.buffers()]:
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    return sum(seen.values())


# ---- variants -------------------------------------------------------------------------------------


@dataclass
class Variant:
    """One timed row: ``fn()`` runs one forward (or the cache computation)."""

    key: str
    label: str
    fn: Callable[[], object] | None
    weights: int = 0  # bytes of the model's own weights
    ref_tokens: int = 0
    cache_bytes: int = 0  # resident cached K/V this forward reads
    video: bool = True  # False for the cache computation (no video tokens)
    note: str = ""


def on_device(refs, device: torch.device, dtype: torch.dtype):
    """A :class:`ReferenceConditioning` with its latents and proxy vectors moved to ``device, dtype``."""
    return dataclasses.replace(refs, latents=refs.latents.to(device, dtype),
                               proxy_tokens=refs.proxy_tokens.to(device, dtype))


def reference_variants(model: WanDiT, case: Case, x, t, ctx, tag: str, subjects: tuple[int, ...],
                       full: bool = True) -> list[Variant]:
    """Full-attention and cached reference forwards of ``model`` (+ the cache computation) per subject count."""
    device, dtype, grid = x.device, x.dtype, case.grid
    out, weights = [], weight_bytes(model)
    for k in subjects:
        if full:
            refs = on_device(reference_conditioning(case, "zero", k, "full"), device, dtype)
            out.append(Variant(f"{tag} full {k}", f"{tag}, full refs, {k} subj",
                               (lambda r=refs: model(x, t, ctx, refs=r)), weights,
                               refs.layout.num_slots * grid[1] * grid[2]))
        refs = on_device(reference_conditioning(case, "zero", k, "cached"), device, dtype)
        with torch.inference_mode():
            cache = model.reference_cache(refs, grid)
        out.append(Variant(f"{tag} cached {k}", f"{tag}, cached refs, {k} subj (cache precomputed)",
                           (lambda r=refs, c=cache: model(x, t, ctx, refs=r, ref_cache=c)), weights, cache.num_tokens,
                           cache.nbytes()))
        if full:  # the one-off cost, once per generation and distinct reference latents
            out.append(Variant(f"{tag} cache {k}", f"{tag}, cache computation, {k} subj (once per generation)",
                               (lambda r=refs: model.reference_cache(r, grid)), weights, cache.num_tokens, video=False))
    return out


def build_variants(case: Case, device: torch.device, dtype: torch.dtype) -> tuple[list[Variant], dict]:
    """Every variant of one size, all models built on ``device``; also ``{key: model}`` for parity checks."""
    cfg = case.cfg
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, cfg.in_dim, *case.latent, generator=g).to(device, dtype)
    t = torch.tensor([500.0], device=device)
    ctx = torch.randn(1, cfg.text_len, cfg.text_dim, generator=g).to(device, dtype)
    ours = make_ours(cfg, device, dtype)
    w = weight_bytes(ours)
    variants = [Variant("ours", "ours, no refs", lambda: ours(x, t, ctx), w),
                Variant("ours again", "ours, no refs (A/A control)", lambda: ours(x, t, ctx), w)]
    variants += reference_variants(ours, case, x, t, ctx, "ours", (1, 2))
    models: dict[str, nn.Module] = {"ours": ours}
    for key, label, maker in (("diffusers", "diffusers WanTransformer3DModel, no refs", make_diffusers),
                              ("comfyui", "ComfyUI WanModel, no refs", make_comfy)):
        model, note = maker(cfg, ours)
        if model is None:
            variants.append(Variant(key, label, None, note=note))
            continue
        models[key] = model
        fn = (lambda m=model: m(x, t, ctx, return_dict=False)[0]) if key == "diffusers" else (lambda m=model: m(x, t, ctx))
        variants.append(Variant(key, label, fn, weight_bytes(model), note=note))
    fp8 = make_fp8(ours)
    models["fp8"] = fp8
    variants.append(Variant("fp8", "ours fp8 weights, no refs", lambda: fp8(x, t, ctx), weight_bytes(fp8)))
    variants += reference_variants(fp8, case, x, t, ctx, "ours fp8", (2,), full=False)
    return variants, {"models": models, "x": x, "t": t, "ctx": ctx}


# ---- measurement ----------------------------------------------------------------------------------


def synchronizer(device: torch.device) -> Callable[[], None]:
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


def timed_rounds(fns: dict[str, Callable[[], object]], rounds: int, sync: Callable[[], None]) -> dict[str, list[float]]:
    """Seconds per call of each fn over ``rounds`` rounds after one untimed warm-up round; the order
    rotates by one each round (positions are balanced when ``rounds`` is a multiple of the count).
    Each call is bracketed by device synchronisation, so its time is the work it queued."""
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    with torch.inference_mode():
        for n in names:
            fns[n]()
        sync()
        for r in range(rounds):
            for n in names[r % len(names):] + names[: r % len(names)]:
                sync()
                t0 = time.perf_counter()
                fns[n]()
                sync()
                times[n].append(time.perf_counter() - t0)
    return times


def peak_bytes(fn: Callable[[], object], device: torch.device) -> float:
    """Peak memory of one call above what was allocated before it: ``torch.cuda.max_memory_allocated``
    after ``reset_peak_memory_stats`` on CUDA, the profiler's allocator peak on CPU."""
    gc.collect()
    if device.type != "cuda":
        return _allocator_peak_mb(fn, "default") * MB
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    with torch.inference_mode():
        fn()
    torch.cuda.synchronize(device)
    return float(torch.cuda.max_memory_allocated(device) - base)


def parity(state: dict) -> dict[str, float]:
    """Largest |difference| to our output, relative to our output's largest |value|, per other model."""
    x, t, ctx, models = state["x"], state["t"], state["ctx"], state["models"]
    with torch.inference_mode():
        ref = models["ours"](x, t, ctx).float()
        outs = {k: (m(x, t, ctx, return_dict=False)[0] if k == "diffusers" else m(x, t, ctx)).float()
                for k, m in models.items() if k != "ours"}
    scale = ref.abs().max().item()
    return {k: (o - ref).abs().max().item() / scale for k, o in outs.items()}


def measure_size(case: Case, device: torch.device, dtype: torch.dtype, rounds: int, passes: int) -> dict:
    """Time and measure every variant of one size; returns its rows (JSON-ready)."""
    t0 = time.perf_counter()
    variants, state = build_variants(case, device, dtype)
    setup_s = time.perf_counter() - t0
    diffs = parity(state)
    live = {v.key: v.fn for v in variants if v.fn is not None}
    times = timed_rounds(live, rounds, synchronizer(device))
    rows = []
    for v in variants:
        row: dict = {"key": v.key, "variant": v.label, "video_tokens": case.video_tokens if v.video else 0,
                     "ref_tokens": v.ref_tokens, "note": v.note}
        if v.fn is None:
            rows.append(row)
            continue
        peak = peak_bytes(v.fn, device)
        row.update(
            ms=1e3 * statistics.median(times[v.key]), x_ours=paired_ratio(times[v.key], times["ours"]),
            s_per_step=passes * statistics.median(times[v.key]) if v.video else None,
            weights_gib=v.weights / GIB, cache_gib=v.cache_bytes / GIB, peak_gib=peak / GIB,
            total_gib=(v.weights + v.cache_bytes + peak) / GIB, rel_diff=diffs.get(v.key.split(" ")[0]),
        )
        rows.append(row)
    del variants, state, live
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"size": case.size, "latent": list(case.latent), "video_tokens": case.video_tokens,
            "params": parameter_count(case.cfg), "rounds": rounds, "passes": passes, "setup_s": setup_s, "rows": rows}


def print_size(result: dict, cfg: WanConfig) -> None:
    f, h, w = result["latent"]
    print(f"{result['size']}: d{cfg.dim} L{cfg.num_layers} h{cfg.num_heads} ffn{cfg.ffn_dim}, "
          f"{result['params'] / 1e9:.2f}B parameters, latent {f}x{h}x{w} = {result['video_tokens']} video tokens, "
          f"{result['rounds']} rounds, s/step = ms x {result['passes']} passes, setup {result['setup_s']:.0f} s")

    def g(r: dict, k: str, fmt: str = "{:.2f}") -> str:
        return fmt.format(r[k]) if r.get(k) is not None else "-"

    print_table(
        ["variant", "video tok", "ref tok", "ms/forward", "x ours no refs (min..max)", "s/step", "weights GiB",
         "cache GiB", "forward peak GiB", "total GiB", "max rel diff vs ours", "note"],
        [[r["variant"], str(r["video_tokens"]), str(r["ref_tokens"]), g(r, "ms", "{:.1f}"),
          fmt_ratio(r["x_ours"]) if "x_ours" in r and r["key"] != "ours" else "-", g(r, "s_per_step", "{:.3f}"),
          g(r, "weights_gib", "{:.4g}"), g(r, "cache_gib", "{:.4g}"), g(r, "peak_gib", "{:.4g}"), g(r, "total_gib", "{:.4g}"),
          g(r, "rel_diff", "{:.1e}"), r["note"] or "-"] for r in result["rows"]],
    )


def describe_machine(device: torch.device) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "cpu")
    try:
        import diffusers

        dv = diffusers.__version__
    except ImportError:
        dv = "not installed"
    return (f"{name}; torch {torch.__version__}, diffusers {dv}, python {platform.python_version()}, "
            f"COMFYUI_DIR={os.environ.get('COMFYUI_DIR') or 'unset'}")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--sizes", default="1.3B,14B", help="comma-separated: 1.3B, 14B (CUDA only)")
    ap.add_argument("--dtype", choices=list(DTYPES), default=None, help="default bf16 on CUDA, fp32 on CPU")
    ap.add_argument("--latent", type=int, nargs=3, metavar=("F", "H", "W"), default=None,
                    help=f"latent video size (default {LATENT_480P_81F}: 480p, 81 frames)")
    ap.add_argument("--rounds", type=int, default=None, help="timed rounds (default 3, --quick 2)")
    ap.add_argument("--passes", type=int, default=3, help="guidance passes per sampling step (default 3, Phantom's)")
    ap.add_argument("--quick", action="store_true", help="tiny dims and a tiny video (runs on CPU in seconds)")
    ap.add_argument("--json", metavar="PATH", help="also write every number to this JSON file")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    sizes = ["tiny"] if args.quick else [s.strip() for s in args.sizes.split(",") if s.strip()]
    for s in sizes:
        if s not in SIZES or (s == "tiny" and not args.quick):
            ap.error(f"unknown size {s!r}: use 1.3B and/or 14B (or --quick for tiny dims)")
        if s != "tiny" and device.type != "cuda":
            ap.error(f"size {s} needs a CUDA device (it is never built on the CPU); on CPU use --quick")
    dtype = DTYPES[args.dtype or ("bf16" if device.type == "cuda" else "fp32")]
    latent = tuple(args.latent) if args.latent else (QUICK_LATENT if args.quick else LATENT_480P_81F)
    rounds = args.rounds or (2 if args.quick else 3)
    print(f"bench_gpu{' --quick' if args.quick else ''}: {describe_machine(device)}; {str(dtype).replace('torch.', '')}, "
          "inference_mode, batch 1, random weights\n", flush=True)
    out: dict = {"machine": describe_machine(device), "dtype": str(dtype), "quick": args.quick, "sizes": []}
    for s in sizes:
        case = Case(s, make_config(s), latent)  # type: ignore[arg-type]
        result = measure_size(case, device, dtype, rounds, args.passes)
        print_size(result, case.cfg)
        out["sizes"].append(result)
        if args.json:  # after every size, so a run cut short keeps what it measured
            with open(args.json, "w") as fh:
                json.dump(out, fh, indent=1)
    return out


if __name__ == "__main__":
    main()

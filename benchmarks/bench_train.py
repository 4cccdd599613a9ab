"""Benchmark of one mvs2v-train optimizer step: speed and peak memory, with and without gradient checkpointing.

Run from the repository root::

    .venv/bin/python benchmarks/bench_train.py            # tiny + mid-size, about 2-4 minutes on 2 CPU cores
    .venv/bin/python benchmarks/bench_train.py --quick    # tiny only, a few seconds (smoke test)
    .venv/bin/python benchmarks/bench_train.py --device cuda

What one step is: the trainer's own :class:`mvs2v_train.model.TrainableModel` (frozen Wan DiT with a
rank-16 LoRA on every attention / FFN linear, proxy tokens, MFI projector) on a batch of 1 with one
subject in 4 view slots (2 filled, the other 2 proxy tokens), rectified-flow loss, backward, AdamW.
float32, random weights and data (the cost does not depend on the values).

* steps/s: the two settings (checkpointing off / on) of one config are timed in the same process,
  alternating in rounds (the order rotates each round) so background load hits both alike; the ratio
  is the median of the per-round ratios, with its min..max.
* peak memory: each setting runs in a fresh subprocess, one warm-up step first (optimizer state,
  one-time allocations); the number is how far two more steps raise the peak above what is allocated
  before them, i.e. the step's activations and gradients. On CPU: peak resident set size (Linux
  ``VmHWM``, reset before the steps, with glibc returning freed blocks of 64 KiB and more to the
  system at once so the resident set tracks live tensors); on CUDA: ``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

import torch
from mvs2v_train.lora import add_lora
from mvs2v_train.model import TrainableModel, TrainBatch

from mvs2v_core.model.config import WanConfig
from mvs2v_core.model.transformer import WanDiT
from mvs2v_core.references.layout import ReferenceLayout
from mvs2v_core.references.mfi import MFIProjector, ProxyTokens
from mvs2v_core.references.settings import PositionScheme, ReferenceSettings

MB = 2**20
TARGETS = ["self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o", "cross_attn.q", "cross_attn.k",
           "cross_attn.v", "cross_attn.o", "ffn.0", "ffn.2"]


@dataclass(frozen=True)
class Case:
    """A DiT config, the latent video ``(C, F, H, W)``, the text length and the MFI feature shape."""

    name: str
    cfg: WanConfig
    latent: tuple[int, int, int, int]
    text_tokens: int
    vit: tuple[int, int]  # (tokens, width)


CASES = {
    "tiny": Case("tiny", WanConfig(dim=128, ffn_dim=256, num_heads=1, num_layers=2, in_dim=4, out_dim=4,
                                   text_dim=32, text_len=32, family="tiny"), (4, 2, 4, 4), 16, (5, 32)),
    "mid": Case("mid", WanConfig(dim=512, ffn_dim=2048, num_heads=4, num_layers=8, in_dim=16, out_dim=16,
                                 text_dim=512, text_len=128, family="mid"), (16, 5, 16, 16), 64, (16, 256)),
}


def build(case: Case, checkpointing: bool, seed: int = 0) -> tuple[TrainableModel, TrainBatch, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    dit = WanDiT(case.cfg)
    dit.requires_grad_(False)
    add_lora(dit, TARGETS, rank=16, alpha=16.0, seed=seed)
    dit.enable_gradient_checkpointing(checkpointing)
    references = ReferenceSettings(4, PositionScheme("jump"), "proxy", "same")
    model = TrainableModel(dit, references, ProxyTokens(4, case.cfg.dim), MFIProjector(case.vit[1], case.cfg.text_dim))
    c, f, h, w = case.latent
    layout = ReferenceLayout.build([["front", "back"]], 4)
    batch = TrainBatch(
        x0=torch.randn(1, c, f, h, w), noise=torch.randn(1, c, f, h, w), sigma=torch.tensor([0.7]),
        weight=torch.ones(1), context=torch.randn(1, case.text_tokens, case.cfg.text_dim),
        ref_latents=torch.randn(1, c, 4, h, w), layout=layout, mfi_features=torch.randn(1, 1, *case.vit),
    )
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    return model, batch, opt


def step(model: TrainableModel, batch: TrainBatch, opt: torch.optim.Optimizer) -> float:
    loss = model(batch)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return float(loss.detach())


def to_device(model, batch, device):
    model.to(device)
    return batch.to(device)


def time_pair(case: Case, steps: int, rounds: int, device: torch.device) -> dict:
    """Steps/s of checkpointing off and on, alternated in rounds; median ratio on/off."""
    runs = {}
    for ck in (False, True):
        model, batch, opt = build(case, ck)
        batch = to_device(model, batch, device)
        step(model, batch, opt)  # warm-up (allocator, optimizer state)
        runs[ck] = (model, batch, opt)
    per = {False: [], True: []}
    ratios = []
    for r in range(rounds):
        order = (False, True) if r % 2 == 0 else (True, False)
        got = {}
        for ck in order:
            model, batch, opt = runs[ck]
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(steps):
                step(model, batch, opt)
            if device.type == "cuda":
                torch.cuda.synchronize()
            got[ck] = steps / (time.perf_counter() - t0)
            per[ck].append(got[ck])
        ratios.append(got[True] / got[False])
    return {"off": statistics.median(per[False]), "on": statistics.median(per[True]),
            "ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios)}


def reset_peak_rss() -> None:
    """Linux: make the peak RSS (VmHWM) equal to the current RSS, so earlier peaks (imports) do not hide
    the steps' own."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:  # not Linux: ru_maxrss then includes the import peak (a lower bound of the growth)
        pass


def peak_rss() -> int:
    """Peak resident set size in bytes (VmHWM on Linux, else ru_maxrss)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def memory_child(case_name: str, checkpointing: bool, steps: int, device_name: str) -> None:
    """Runs in a fresh process: prints the memory growth of ``steps`` training steps as JSON."""
    case = CASES[case_name]
    device = torch.device(device_name)
    model, batch, opt = build(case, checkpointing)
    batch = to_device(model, batch, device)
    step(model, batch, opt)  # optimizer state and one-time allocations belong to the base, not the step
    if device.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        reset_peak_rss()
        base = peak_rss()
    for _ in range(steps):
        step(model, batch, opt)
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = peak_rss()
    print(json.dumps({"growth_mb": (peak - base) / MB, "peak_mb": peak / MB}))


def memory(case: Case, checkpointing: bool, steps: int, device: str) -> dict:
    # glibc: serve every block >= 64 KiB with mmap, so freed tensors leave the resident set at once and
    # the peak RSS tracks live memory (otherwise the warm-up step's freed activations stay resident and
    # hide the measured steps' own peak).
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    out = subprocess.run([sys.executable, __file__, "--memory-child", case.name, str(int(checkpointing)),
                          str(steps), device], capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny config only, few rounds")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--memory-child", nargs=4, metavar=("CASE", "CKPT", "STEPS", "DEVICE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.memory_child:
        name, ck, steps, dev = args.memory_child
        memory_child(name, bool(int(ck)), int(steps), dev)
        return 0
    device = torch.device(args.device)
    names = ["tiny"] if args.quick else ["tiny", "mid"]
    plan = {"tiny": (10, 3 if args.quick else 7), "mid": (2, 7)}
    print(f"# mvs2v-train step benchmark: torch {torch.__version__}, {platform.machine()}, "
          f"{torch.get_num_threads()} threads, device {device}")
    print("| config | tokens (video + refs) | trainable params | grad ckpt | steps/s | speed on/off | "
          "peak memory growth | memory on/off |")
    print("|---|---|---|---|---|---|---|---|")
    for name in names:
        case = CASES[name]
        steps, rounds = plan[name]
        t = time_pair(case, steps, rounds, device)
        mem = {ck: memory(case, ck, 2, args.device) for ck in (False, True)}
        c, f, h, w = case.latent
        video, refs = f * (h // 2) * (w // 2), 4 * (h // 2) * (w // 2)
        model, _, _ = build(case, False)
        n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
        mem_ratio = mem[True]["growth_mb"] / max(mem[False]["growth_mb"], 1e-9)
        for ck in (False, True):
            speed = f"{t['ratio']:.2f} ({t['ratio_min']:.2f}..{t['ratio_max']:.2f})" if ck else "1.00"
            print(f"| {name} (dim {case.cfg.dim}, {case.cfg.num_layers} blocks) | {video} + {refs} | "
                  f"{n_train / 1e6:.2f} M | {'on' if ck else 'off'} | {t['on' if ck else 'off']:.2f} | {speed} | "
                  f"{mem[ck]['growth_mb']:.1f} MB | {f'{mem_ratio:.2f}' if ck else '1.00'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

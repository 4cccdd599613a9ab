"""CPU benchmark of the mvs2v Wan DiT: speed against diffusers, reference overhead, peak memory.

Run from the repository root::

    .venv/bin/python benchmarks/bench_dit.py            # full run, about 6 minutes on 2 idle cores
    .venv/bin/python benchmarks/bench_dit.py --quick    # tiny shapes, every section, 15-25 s (smoke test)
    .venv/bin/python benchmarks/bench_dit.py --only speed --only refs --repeats 16 --json out.json
    .venv/bin/python benchmarks/bench_dit.py --only cached   # (d) alone

Sections (all float32, ``torch.inference_mode()``, batch 1, random weights, 1 torch thread unless
``--threads``):

(a) ``WanDiT.forward`` against ``diffusers.WanTransformer3DModel.forward`` at the same config and
    the same number of tokens: the mid model at 1024 and 2048 tokens, the small model at 1024
    (also with per-token timesteps). diffusers gets our weights through ``to_diffusers_keys`` and
    the outputs are compared, so both sides compute the same function.
(b) the cost of reference conditioning: a forward with a :class:`ReferenceConditioning` (2
    subjects x 4 slots, 3 of them empty, ``proxy`` mode, ``ts`` scheme) against a plain forward
    over the same total number of tokens (a video with as many more latent frames as there are
    slots); once with ``ref_timestep="same"`` and once with ``"zero"`` (per-token timesteps).
    The same forwards on a 0-block model time the fixed part (everything outside the blocks).
(c) peak memory of one forward at N and 2N tokens, each measured in a fresh subprocess, with the
    default SDPA kernel selection and, as a control that the method does detect quadratic growth,
    with the SDPA ``math`` kernel forced (full run only).
(d) cached references (``ref_attention="cached"``, ``ref_timestep="zero"``): on the mid model with
    a 13x16x16 latent (832 video tokens, as (b)'s refs case) and 2 subjects x 4 slots (512 reference
    tokens), a plain forward (no refs), its A/A copy, a full-attention reference forward, a cached
    reference forward with the cache precomputed (what every sampling step costs; target <= 1.05x
    plain) and the one-off ``WanDiT.reference_cache`` (per generation), timed interleaved. Then the
    allocator peak of one forward (fresh subprocess each, as (c)) for plain, cached (+ the resident
    cache) and full, with 1 and 2 subjects: growth over plain should be the cache bytes.

Timings alternate the compared forwards within each round (the order rotates from round to
round) so background load hits every side alike; every comparison includes an A/A control (a
second copy of its baseline). Each call is timed with two clocks: wall time (``perf_counter``) and
the process's CPU time (``process_time``, which does not count time the process waits while
another one holds the core). Each ratio is the median over rounds of the per-round ratio, shown
with its min..max over rounds. See ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from mvs2v_core.model.config import WanConfig
from mvs2v_core.model.transformer import WanDiT
from mvs2v_core.pipeline.memory import forward_memory
from mvs2v_core.references.conditioning import ReferenceConditioning
from mvs2v_core.references.layout import ReferenceLayout
from mvs2v_core.references.settings import PositionScheme, ReferenceSettings

MB = 2**20


@dataclass(frozen=True)
class Case:
    """A model config plus the latent video shape ``(frames, height, width)`` it runs on."""

    name: str
    cfg: WanConfig
    latent: tuple[int, int, int]

    @property
    def tokens(self) -> int:
        f, h, w = self.latent
        pt, ph, pw = self.cfg.patch_size
        return (f // pt) * (h // ph) * (w // pw)


def _cfg(dim: int, heads: int, ffn: int, layers: int, text_dim: int, text_len: int) -> WanConfig:
    return WanConfig(
        dim=dim, ffn_dim=ffn, num_heads=heads, num_layers=layers, in_dim=16, out_dim=16,
        text_dim=text_dim, text_len=text_len, family="bench",
    )


# Head dim is 128 everywhere, as in every Wan release.
MID = _cfg(dim=512, heads=4, ffn=1536, layers=4, text_dim=256, text_len=512)
SMALL = _cfg(dim=256, heads=2, ffn=768, layers=2, text_dim=256, text_len=512)
TINY = _cfg(dim=128, heads=1, ffn=256, layers=1, text_dim=64, text_len=32)

FULL = {
    # the mid model at 1024 and 2048 tokens; the small one at 1024 (where per-token overheads show most)
    "speed": [Case("mid", MID, (4, 32, 32)), Case("mid", MID, (8, 32, 32)), Case("small", SMALL, (4, 32, 32))],
    "speed_per_token": [Case("small", SMALL, (4, 32, 32))],
    "refs": Case("mid", MID, (13, 16, 16)),  # 13 video frames + 8 slots = 21 latent frames
    "memory": Case("mid", MID, (4, 32, 32)),  # N = 1024 tokens, 2N = 2048
    "memory_kernels": ("default", "math"),
    "cached": Case("mid", MID, (13, 16, 16)),  # 832 video tokens, as (b)'s refs case; + 512 reference tokens
    "cached_memory": Case("mid", MID, (13, 16, 16)),
    "repeats": 12,
}
QUICK = {
    "speed": [Case("tiny", TINY, (2, 8, 8)), Case("tiny", TINY, (4, 8, 8))],
    "speed_per_token": [Case("tiny", TINY, (2, 8, 8))],
    "refs": Case("tiny", TINY, (2, 8, 8)),
    "memory": Case("tiny", TINY, (2, 16, 16)),
    "memory_kernels": ("default",),
    "cached": Case("tiny", TINY, (2, 8, 8)),
    "cached_memory": Case("tiny", TINY, (2, 8, 8)),
    "repeats": 3,
}


# ---- helpers ------------------------------------------------------------------------------------


def make_inputs(case: Case, frames: int | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    f, h, w = case.latent
    x = torch.randn(1, case.cfg.in_dim, frames or f, h, w, generator=g)
    t = torch.tensor([500.0])
    ctx = torch.randn(1, case.cfg.text_len, case.cfg.text_dim, generator=g)  # already text_len long
    return x, t, ctx


def make_ours(cfg: WanConfig, seed: int = 0) -> WanDiT:
    torch.manual_seed(seed)
    return WanDiT(cfg).eval()


def make_diffusers(cfg: WanConfig, ours: WanDiT):
    """diffusers' model at the same config; returns ``(model, weights_note)``."""
    from diffusers import WanTransformer3DModel

    model = WanTransformer3DModel(
        patch_size=cfg.patch_size, num_attention_heads=cfg.num_heads, attention_head_dim=cfg.head_dim,
        in_channels=cfg.in_dim, out_channels=cfg.out_dim, text_dim=cfg.text_dim, freq_dim=cfg.freq_dim,
        ffn_dim=cfg.ffn_dim, num_layers=cfg.num_layers, cross_attn_norm=cfg.cross_attn_norm, eps=cfg.eps,
    ).eval()
    try:
        from mvs2v_core.model.convert import to_diffusers_keys

        model.load_state_dict(to_diffusers_keys(ours.state_dict()), strict=True)
        note = "shared"
    except Exception as exc:  # noqa: BLE001 - conversion missing or broken: speed does not need the values
        note = f"random ({type(exc).__name__})"
    return model, note


CLOCKS = ("wall", "cpu")
CLOCK_LABEL = {"wall": "wall", "cpu": "CPU"}


@dataclass
class Timings:
    """Seconds per call of each fn, per round, on both clocks."""

    wall: dict[str, list[float]]
    cpu: dict[str, list[float]]

    def clock(self, name: str) -> dict[str, list[float]]:
        return self.wall if name == "wall" else self.cpu

    @property
    def rounds(self) -> int:
        return len(next(iter(self.wall.values())))


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> Timings:
    """Seconds per call of each fn, wall and process CPU time. Every round runs each fn once; the
    order rotates by one each round and the round count is rounded up to a multiple of the number
    of fns, so every fn sits in every position equally often (a position effect, e.g. running
    first, hits all alike)."""
    names = list(fns)
    rounds = -(-repeats // len(names)) * len(names)
    times = Timings({n: [] for n in names}, {n: [] for n in names})
    with torch.inference_mode():
        for _ in range(warmup):
            for n in names:
                fns[n]()
        gc.collect()
        gc.disable()  # no collector pauses inside the timed calls
        try:
            for r in range(rounds):
                order = names[r % len(names):] + names[: r % len(names)]
                for n in order:
                    c0, t0 = time.process_time(), time.perf_counter()
                    fns[n]()
                    t1, c1 = time.perf_counter(), time.process_time()
                    times.wall[n].append(t1 - t0)
                    times.cpu[n].append(c1 - c0)
        finally:
            gc.enable()
    return times


def ms(ts: list[float]) -> float:
    return 1e3 * statistics.median(ts)


def paired_ratio(num: list[float], den: list[float]) -> tuple[float, float, float]:
    """Median, min and max over rounds of the per-round ratio ``num / den``."""
    r = [a / b for a, b in zip(num, den)]
    return statistics.median(r), min(r), max(r)


def fmt_ratio(r: tuple[float, float, float]) -> str:
    return f"{r[0]:.3f} ({r[1]:.3f}..{r[2]:.3f})"


def fmt_pct(r: tuple[float, float, float]) -> str:
    """A ratio as an overhead in percent, median (min..max)."""
    return f"{100 * (r[0] - 1):+.1f}% ({100 * (r[1] - 1):+.1f}..{100 * (r[2] - 1):+.1f})"


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    print(line(headers))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print(line(r))
    print(flush=True)


SUBJECT_VIEWS = (["front", "back"], ["front", "left", "right"])


def reference_conditioning(case: Case, ref_timestep: str, subjects: int = 2,
                           ref_attention: str = "full") -> ReferenceConditioning:
    """``subjects`` x 4 slots: subject 1 has front + back, subject 2 front + left + right (3 empty of 8).

    Proxy mode, so every slot (filled or empty) makes ``h*w/4`` tokens. Latents ``[1, C, 4*subjects, h, w]``.
    """
    layout = ReferenceLayout.build(list(SUBJECT_VIEWS[:subjects]), slots_per_subject=4)
    _, h, w = case.latent
    g = torch.Generator().manual_seed(1)
    latents = torch.randn(1, case.cfg.in_dim, layout.num_slots, h, w, generator=g)
    proxy = torch.randn(layout.slots_per_subject, case.cfg.dim, generator=g)
    settings = ReferenceSettings(layout.slots_per_subject, PositionScheme("ts"), "proxy", ref_timestep, ref_attention)
    return ReferenceConditioning(latents, layout, settings, proxy_tokens=proxy)


# ---- (a) speed against diffusers ----------------------------------------------------------------


def speed_fns(ours: WanDiT, ref, x: torch.Tensor, t: torch.Tensor, ctx: torch.Tensor) -> dict[str, Callable[[], object]]:
    return {
        "ours": lambda: ours(x, t, ctx),
        "diffusers": lambda: ref(x, t, ctx, return_dict=False)[0],
        "ours again": lambda: ours(x, t, ctx),  # A/A control: the noise floor of a ratio
    }


def bench_speed(plan: dict, repeats: int) -> list[dict]:
    try:
        import diffusers  # noqa: F401
    except ImportError:
        print("(a) skipped: diffusers is not installed\n")
        return []
    results = []
    jobs = [(c, False) for c in plan["speed"]] + [(c, True) for c in plan["speed_per_token"]]
    for case, per_token in jobs:
        ours = make_ours(case.cfg)
        ref, note = make_diffusers(case.cfg, ours)
        x, t, ctx = make_inputs(case)
        if per_token:
            # Wan 2.2 TI2V: one timestep per video token, 0 on the conditioning first frame.
            t = torch.full((1, case.tokens), 500.0)
            t[:, : case.tokens // case.latent[0]] = 0.0
        with torch.inference_mode():
            a = ours(x, t, ctx)
            b = ref(x, t, ctx, return_dict=False)[0]
        diff = (a - b).abs().max().item() if note == "shared" else float("nan")
        times = interleaved(speed_fns(ours, ref, x, t, ctx), repeats)
        c = case.cfg
        row = {
            "case": case.name + (", per-token t" if per_token else ""),
            "shape": f"d{c.dim} h{c.num_heads} ffn{c.ffn_dim} L{c.num_layers}",
            "tokens": case.tokens, "rounds": times.rounds, "max_abs_diff": diff, "weights": note,
        }
        for clock in CLOCKS:
            tc = times.clock(clock)
            row[clock] = {
                "ours_ms": ms(tc["ours"]), "diffusers_ms": ms(tc["diffusers"]),
                "ratio": paired_ratio(tc["ours"], tc["diffusers"]),
                "ours_faster_rounds": sum(a < b for a, b in zip(tc["ours"], tc["diffusers"])),
                "aa": paired_ratio(tc["ours again"], tc["ours"]),
            }
        results.append(row)
    print(f"(a) WanDiT vs diffusers WanTransformer3DModel, ms per forward (median over rounds), "
          f"ratio = ours / diffusers (median of per-round ratios, min..max), {torch.get_num_threads()} thread(s)")
    print_table(
        ["case", "model", "tokens", "clock", "ours ms", "diffusers ms", "ratio (min..max)", "ours faster",
         "target", "A/A ours/ours (min..max)", "max |diff|"],
        [[r["case"], r["shape"], str(r["tokens"]), CLOCK_LABEL[clock], f"{r[clock]['ours_ms']:.1f}",
          f"{r[clock]['diffusers_ms']:.1f}", fmt_ratio(r[clock]["ratio"]),
          f"{r[clock]['ours_faster_rounds']}/{r['rounds']} rounds", "<= 1.0", fmt_ratio(r[clock]["aa"]),
          f"{r['max_abs_diff']:.1e}" if r["weights"] == "shared" else r["weights"]]
         for r in results for clock in CLOCKS],
    )
    return results


# ---- (b) reference-conditioning overhead --------------------------------------------------------


def bench_refs(plan: dict, repeats: int) -> list[dict]:
    case: Case = plan["refs"]
    x, t, ctx = make_inputs(case)
    refs_same = reference_conditioning(case, "same")
    refs_zero = reference_conditioning(case, "zero")
    slots = refs_same.layout.num_slots
    x_plain, _, _ = make_inputs(case, frames=case.latent[0] + slots)

    def variants(model: WanDiT, control: bool) -> dict[str, Callable[[], object]]:
        fns: dict[str, Callable[[], object]] = {"plain": lambda: model(x_plain, t, ctx)}
        if control:
            fns["plain again"] = lambda: model(x_plain, t, ctx)  # A/A control: the noise floor
        fns["same"] = lambda: model(x, t, ctx, refs=refs_same)
        fns["zero"] = lambda: model(x, t, ctx, refs=refs_zero)
        return fns

    times = interleaved(variants(make_ours(case.cfg), control=True), 2 * repeats)
    # The same forwards on a 0-block model: everything outside the blocks (patch embedding,
    # reference tokens, position ids, RoPE tables, time modulation, head). These are short, so many
    # rounds pin down the fixed part of the overhead far below the end-to-end noise.
    outside = interleaved(variants(make_ours(case.cfg.with_(num_layers=0)), control=False), 6 * repeats)

    n_video = case.tokens
    n_total = n_video * (case.latent[0] + slots) // case.latent[0]
    rows = [{"variant": "plain video", "key": "plain", "video_tokens": n_total, "ref_tokens": 0}]
    for key, label in (("plain again", "plain video (A/A control)"), ("same", 'refs, ref_timestep="same"'),
                       ("zero", 'refs, ref_timestep="zero"')):
        n_ref = 0 if key == "plain again" else n_total - n_video
        rows.append({"variant": label, "key": key, "video_tokens": n_total - n_ref, "ref_tokens": n_ref})
    for row in rows:
        key = row["key"]
        for clock in CLOCKS:
            tc, oc = times.clock(clock), outside.clock(clock)
            plain_ms = ms(tc["plain"])
            r: dict = {"ms": ms(tc[key])}
            if key != "plain":
                r["overhead"] = paired_ratio(tc[key], tc["plain"])  # ratio; shown as % over plain
            if key in oc and key != "plain":
                extra = statistics.median(a - b for a, b in zip(oc[key], oc["plain"]))
                r["outside_ms"] = 1e3 * statistics.median(oc[key])
                r["outside_extra_ms"] = 1e3 * extra
                r["outside_extra_pct"] = 100 * 1e3 * extra / plain_ms
            row[clock] = r
    c = case.cfg
    print(
        f"(b) reference overhead: 2 subjects x 4 slots (3 empty, proxy, ts), d{c.dim} h{c.num_heads} "
        f"ffn{c.ffn_dim} L{c.num_layers}, {n_total} tokens in every row, {times.rounds} rounds, "
        f"overhead = median (min..max) of the per-round ratio to the plain forward"
    )

    def outside_cell(r: dict) -> str:
        return f"{r['outside_extra_ms']:+.1f} ms = {r['outside_extra_pct']:+.2f}%" if "outside_ms" in r else "-"

    print_table(
        ["variant", "video tok", "ref tok", "wall ms", "wall overhead (min..max)", "CPU ms",
         "CPU overhead (min..max)", "target", "outside-blocks extra (wall)", "(CPU)"],
        [[r["variant"], str(r["video_tokens"]), str(r["ref_tokens"]),
          f"{r['wall']['ms']:.1f}", fmt_pct(r["wall"]["overhead"]) if "overhead" in r["wall"] else "-",
          f"{r['cpu']['ms']:.1f}", fmt_pct(r["cpu"]["overhead"]) if "overhead" in r["cpu"] else "-",
          "<= 2%" if r["ref_tokens"] else "-", outside_cell(r["wall"]), outside_cell(r["cpu"])]
         for r in rows],
    )
    print(f"outside-blocks extra: median paired difference of the same forwards on a 0-block model "
          f"({outside.rounds} rounds, plain {1e3 * statistics.median(outside.wall['plain']):.1f} ms wall there), "
          "as % of the full plain forward\n")
    return rows


# ---- (c) peak memory ----------------------------------------------------------------------------


def _rss_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _sdpa_context(sdpa: str) -> contextlib.ExitStack:
    """``inference_mode`` plus, for ``sdpa == "math"``, the SDPA math kernel forced."""
    stack = contextlib.ExitStack()
    stack.enter_context(torch.inference_mode())
    if sdpa == "math":
        from torch.nn.attention import SDPBackend, sdpa_kernel

        stack.enter_context(sdpa_kernel(SDPBackend.MATH))
    return stack


def _peak_rss_mb(fn: Callable[[], object], sdpa: str) -> tuple[float, str]:
    """Process peak RSS during ``fn()`` above the RSS just before it (MB), and the method used."""
    if _reset_peak_rss():
        base_kb = _rss_kb("VmRSS")
        with _sdpa_context(sdpa):
            fn()
        peak_kb, method = _rss_kb("VmHWM"), "VmHWM (reset via /proc/self/clear_refs)"
    else:  # ru_maxrss cannot be reset: only valid when the forward is the process's largest peak
        base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with _sdpa_context(sdpa):
            fn()
        peak_kb, method = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "ru_maxrss"
    mb = (peak_kb - base_kb) / 1024 if base_kb is not None and peak_kb is not None else float("nan")
    return mb, method


def _allocator_peak_mb(fn: Callable[[], object], sdpa: str) -> float:
    """Peak bytes held by the PyTorch CPU allocator during ``fn()`` above what was held before (MB):
    the largest "Total Allocated" of the profiler's ``[memory]`` events."""
    from torch.profiler import ProfilerActivity, profile

    with _sdpa_context(sdpa), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    fd, path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    try:
        prof.export_chrome_trace(path)
        with open(path) as fh:
            events = json.load(fh)["traceEvents"]
    finally:
        os.unlink(path)
    totals = [e["args"]["Total Allocated"] for e in events if e.get("name") == "[memory]"]
    return max(totals) / MB if totals else float("nan")


def _child_forward(spec: dict, model: WanDiT, case: Case, out: dict) -> tuple[Callable, Callable]:
    """``(warm-up forward at 1 latent frame, measured forward)`` for ``spec["refs"]``:
    ``{"mode": "plain" | "full" | "cached", "subjects": n}`` (absent: plain). Under ``cached`` the
    cache of the measured grid is computed here, before any measurement, so it is resident (not part
    of the forward's peak): ``out`` gets its size, and the peak of computing it."""
    x, t, ctx = make_inputs(case)
    small, _, _ = make_inputs(case, frames=1)
    mode = spec.get("refs", {}).get("mode", "plain")
    if mode == "plain":
        return (lambda: model(small, t, ctx)), (lambda: model(x, t, ctx))
    refs = reference_conditioning(case, "zero", spec["refs"]["subjects"], "full" if mode == "full" else "cached")
    out["ref_tokens"] = refs.layout.num_slots * case.tokens // case.latent[0]
    warm = lambda: model(small, t, ctx, refs=refs)  # noqa: E731 - under cached, computes a 1-frame cache inline
    if mode == "full":
        return warm, (lambda: model(x, t, ctx, refs=refs))
    grid = model.patch_grid(x.shape)
    with torch.inference_mode():
        model.reference_cache(refs, grid)  # warm the reference-only path too
    gc.collect()
    out["cache_compute_alloc_mb"] = _allocator_peak_mb(lambda: model.reference_cache(refs, grid), spec["sdpa"])
    with torch.inference_mode():
        cache = model.reference_cache(refs, grid)
    out["cache_mb"] = cache.nbytes() / MB
    out["cache_tokens"] = cache.num_tokens
    return warm, (lambda: model(x, t, ctx, refs=refs, ref_cache=cache))


def memory_child(spec: dict) -> dict:
    """Run in a fresh process: peak memory of one forward above the post-setup baseline, two ways."""
    torch.set_num_threads(spec["threads"])
    case = Case("mem", WanConfig.from_dict(spec["cfg"]), tuple(spec["latent"]))  # type: ignore[arg-type]
    model = make_ours(case.cfg)
    out: dict = {"tokens": case.tokens}
    warm, forward = _child_forward(spec, model, case, out)
    with _sdpa_context(spec["sdpa"]):
        warm()  # one-off library allocations (thread pools, kernel caches) happen here, not below
    gc.collect()
    # Method 1: process peak RSS above the baseline just before the forward.
    out["rss_mb"], out["rss_method"] = _peak_rss_mb(forward, spec["sdpa"])
    gc.collect()
    # Method 2: the CPU allocator's own count (profiler memory events) during one forward.
    out["alloc_mb"] = _allocator_peak_mb(forward, spec["sdpa"])
    return out


def start_memory_child(case: Case, frames: int, sdpa: str, threads: int, refs: dict | None = None) -> subprocess.Popen:
    spec = {"cfg": case.cfg.to_dict(), "latent": [frames, *case.latent[1:]], "sdpa": sdpa, "threads": threads}
    if refs is not None:
        spec["refs"] = refs
    return subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--memory-child", json.dumps(spec)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def finish_memory_child(proc: subprocess.Popen) -> dict:
    stdout, stderr = proc.communicate()
    lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"memory subprocess failed ({proc.returncode}):\n{stderr[-2000:]}")
    return json.loads(lines[-1])


def bench_memory(plan: dict, threads: int) -> list[dict]:
    case: Case = plan["memory"]
    f = case.latent[0]
    rows = []
    for sdpa in plan["memory_kernels"]:
        # N and 2N run side by side (separate processes: each one's peak is its own).
        procs = [start_memory_child(case, k * f, sdpa, threads) for k in (1, 2)]
        n1, n2 = (finish_memory_child(p) for p in procs)
        rows.append({"sdpa": sdpa, "n": n1["tokens"], "n2": n2["tokens"], "rss_n": n1["rss_mb"], "rss_2n": n2["rss_mb"],
                     "alloc_n": n1["alloc_mb"], "alloc_2n": n2["alloc_mb"], "rss_method": n1["rss_method"]})
    c = case.cfg
    print(
        f"(c) peak memory of one forward above the post-setup baseline, fresh subprocess each, "
        f"d{c.dim} h{c.num_heads} ffn{c.ffn_dim} L{c.num_layers}, text {c.text_len} tokens"
    )
    print_table(
        ["SDPA kernel", "method", "N", "MB at N", "MB at 2N", "ratio 2N/N", "target"],
        [[r["sdpa"] + (" (control)" if r["sdpa"] == "math" else ""), m, f"{r['n']}", f"{a:.1f}", f"{b:.1f}",
          f"{b / a:.2f}", "~2 (linear)" if r["sdpa"] == "default" else "-"]
         for r in rows
         for m, a, b in (("peak RSS", r["rss_n"], r["rss_2n"]), ("allocator peak", r["alloc_n"], r["alloc_2n"]))],
    )
    print(f"peak RSS method: {rows[0]['rss_method']}\n")
    return rows


# ---- (d) cached references ----------------------------------------------------------------------

CACHED_STEPS, CACHED_PASSES, CACHES_PER_GENERATION = 50, 3, 2  # for the amortised line of (d)
CACHED_TARGET = 1.05  # a step with cached references <= 1.05x a step with no references


def cached_fns(model: WanDiT, case: Case) -> tuple[dict[str, Callable[[], object]], dict]:
    """The forwards (d) times, on a video of ``case.latent`` with 2 subjects x 4 slots, and their sizes.

    ``cached`` gets the cache precomputed (what every sampling step costs); ``cache`` is the one-off
    :meth:`WanDiT.reference_cache` (once per generation and distinct reference latents).
    """
    x, t, ctx = make_inputs(case)
    full = reference_conditioning(case, "zero", subjects=2, ref_attention="full")
    cached = reference_conditioning(case, "zero", subjects=2, ref_attention="cached")
    grid = model.patch_grid(x.shape)
    with torch.inference_mode():
        cache = model.reference_cache(cached, grid)
    fns: dict[str, Callable[[], object]] = {
        "plain": lambda: model(x, t, ctx),
        "plain again": lambda: model(x, t, ctx),  # A/A control: the noise floor of every ratio
        "full": lambda: model(x, t, ctx, refs=full),
        "cached": lambda: model(x, t, ctx, refs=cached, ref_cache=cache),
        "cache": lambda: model.reference_cache(cached, grid),
    }
    return fns, {"video_tokens": case.tokens, "ref_tokens": cache.num_tokens, "cache_mb": cache.nbytes() / MB}


CACHED_ROWS = (  # key, label, reference tokens in the sequence / in the cache, target
    ("plain", "plain video (no refs)", False, None),
    ("plain again", "plain video (A/A control)", False, None),
    ("full", 'full-attention refs (ref_timestep="zero")', True, None),
    ("cached", "cached refs, cache precomputed (one step)", True, CACHED_TARGET),
    ("cache", "cache computation (once per generation)", True, None),
)


def bench_cached(plan: dict, repeats: int) -> dict:
    """(d) timing: cached-reference step and cache computation against a plain step, interleaved."""
    case: Case = plan["cached"]
    fns, info = cached_fns(make_ours(case.cfg), case)
    times = interleaved(fns, 2 * repeats)
    rows = []
    for key, label, has_refs, target in CACHED_ROWS:
        row: dict = {"key": key, "variant": label, "video_tokens": 0 if key == "cache" else info["video_tokens"],
                     "ref_tokens": info["ref_tokens"] if has_refs else 0, "target": target}
        for clock in CLOCKS:
            tc = times.clock(clock)
            row[clock] = {"ms": ms(tc[key])}
            if key != "plain":
                row[clock]["x_plain"] = paired_ratio(tc[key], tc["plain"])
        if target is not None:
            row["met"] = all(row[c]["x_plain"][0] <= target for c in CLOCKS)
        rows.append(row)
    by = {r["key"]: r for r in rows}
    # each of the generation's few caches is paid once, spread over every forward of the generation
    amortised = by["cached"]["wall"]["x_plain"][0] + (
        CACHES_PER_GENERATION * by["cache"]["wall"]["x_plain"][0] / (CACHED_STEPS * CACHED_PASSES))
    print_cached_timing(case, info, times.rounds, rows, amortised)
    return {"case": case.name, "rounds": times.rounds, **info, "rows": rows, "amortised_wall_x_plain": amortised}


def print_cached_timing(case: Case, info: dict, rounds: int, rows: list[dict], amortised: float) -> None:
    c = case.cfg
    print(f"(d) cached references: 2 subjects x 4 slots (proxy, ts, ref_timestep zero), d{c.dim} h{c.num_heads} "
          f"ffn{c.ffn_dim} L{c.num_layers}, video {info['video_tokens']} tokens in every row, {rounds} rounds; "
          f"x plain = median (min..max) of the per-round ratio to the plain forward")

    def cell(r: dict, clock: str) -> str:
        return fmt_ratio(r[clock]["x_plain"]) if "x_plain" in r[clock] else "-"

    print_table(
        ["variant", "video tok", "ref tok", "wall ms", "wall x plain (min..max)", "CPU ms", "CPU x plain (min..max)",
         "target", "met (median, both clocks)"],
        [[r["variant"], str(r["video_tokens"]), str(r["ref_tokens"]), f"{r['wall']['ms']:.1f}", cell(r, "wall"),
          f"{r['cpu']['ms']:.1f}", cell(r, "cpu"), f"<= {r['target']:.2f}x" if r["target"] else "-",
          ("yes" if r["met"] else "no") if "met" in r else "-"] for r in rows],
    )
    print(f"cache: {info['cache_mb']:.2f} MB for {info['ref_tokens']} reference tokens; amortised over a "
          f"{CACHED_STEPS}-step, {CACHED_PASSES}-pass generation with {CACHES_PER_GENERATION} caches (the "
          f"references and Phantom's zero 'no reference' latents) a cached forward costs {amortised:.3f}x plain "
          "(wall, medians)\n")


def bench_cached_memory(plan: dict, threads: int) -> dict:
    """(d) memory: allocator peak of one forward, plain vs cached (+ cache) vs full, 1 and 2 subjects."""
    case: Case = plan["cached_memory"]
    specs = [("plain", 0)] + [(m, k) for k in (1, 2) for m in ("cached", "full")]
    done: dict = {}
    for i in range(0, len(specs), 2):  # two fresh processes at a time: each one's peak is its own
        batch = specs[i:i + 2]
        procs = [start_memory_child(case, case.latent[0], "default", threads,
                                    None if m == "plain" else {"mode": m, "subjects": k}) for m, k in batch]
        done.update({spec: finish_memory_child(p) for spec, p in zip(batch, procs)})
    plain = done[("plain", 0)]
    tol_frac = 1 / case.cfg.num_layers  # one block's reference K/V: the concatenated copy attention sees
    rows = []
    for (mode, k), r in done.items():
        cache = r.get("cache_mb", 0.0)
        total = r["alloc_mb"] + cache
        row = {"mode": mode, "subjects": k, "video_tokens": r["tokens"], "ref_tokens": r.get("ref_tokens", 0),
               "alloc_mb": r["alloc_mb"], "cache_mb": cache, "total_mb": total, "rss_mb": r["rss_mb"],
               "growth_mb": total - plain["alloc_mb"],
               "cache_compute_alloc_mb": r.get("cache_compute_alloc_mb")}
        if mode == "cached":
            est = forward_memory(case.cfg, r["tokens"], 1, cached_tokens=r["cache_tokens"]).cache_bytes / MB
            row.update(estimate_cache_mb=est, excess_mb=row["growth_mb"] - cache, tolerance_mb=tol_frac * cache)
            row["within"] = abs(row["excess_mb"]) <= row["tolerance_mb"]
        rows.append(row)
    print_cached_memory(case, rows)
    return {"case": case.name, "tolerance": "|growth - cache| <= cache / num_layers", "rows": rows}


def print_cached_memory(case: Case, rows: list[dict]) -> None:
    c = case.cfg
    print(f"(d) memory of one forward (allocator peak above the post-setup baseline, fresh subprocess each), "
          f"d{c.dim} h{c.num_heads} ffn{c.ffn_dim} L{c.num_layers}, video {rows[0]['video_tokens']} tokens, "
          "4 slots per subject; cached: the cache is resident before the forward, so total = peak + cache")
    print_table(
        ["variant", "subjects", "ref tok", "peak MB", "+ cache MB", "= total MB", "growth over plain MB",
         "growth - cache MB", "tolerance MB", "within", "cache estimate MB", "cache computation peak MB",
         "peak RSS MB"],
        [[r["mode"], str(r["subjects"]), str(r["ref_tokens"]), f"{r['alloc_mb']:.2f}", f"{r['cache_mb']:.2f}",
          f"{r['total_mb']:.2f}", f"{r['growth_mb']:+.2f}",
          f"{r['excess_mb']:+.2f}" if "excess_mb" in r else "-", f"{r['tolerance_mb']:.2f}" if "excess_mb" in r else "-",
          ("yes" if r["within"] else "no") if "within" in r else "-",
          f"{r['estimate_cache_mb']:.2f}" if "estimate_cache_mb" in r else "-",
          f"{r['cache_compute_alloc_mb']:.2f}" if r["cache_compute_alloc_mb"] is not None else "-",
          f"{r['rss_mb']:.1f}"] for r in rows],
    )
    print("tolerance: |growth - cache| <= cache / num_layers (one block's reference keys/values, the size of the "
          "concatenated copy a block's attention sees); cache estimate = forward_memory(cached_tokens=...).cache_bytes\n")


# ---- main ---------------------------------------------------------------------------------------


def machine() -> str:
    cpu = platform.processor() or "cpu"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import diffusers

        dv = diffusers.__version__
    except ImportError:
        dv = "not installed"
    return (f"{cpu}, {os.cpu_count()} logical CPUs; torch {torch.__version__}, diffusers {dv}, "
            f"python {platform.python_version()}, {torch.get_num_threads()} torch threads")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny shapes, every section, 10-15 s (smoke test)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads for every measurement (default 1: steadiest on a shared machine)")
    ap.add_argument("--repeats", type=int, default=None, help="timed rounds per comparison")
    ap.add_argument("--only", choices=["speed", "refs", "memory", "cached"], action="append", help="run only these sections")
    ap.add_argument("--json", metavar="PATH", help="also write every number to this JSON file")
    ap.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.memory_child:
        print(json.dumps(memory_child(json.loads(args.memory_child))))
        return {}

    torch.set_num_threads(args.threads)
    plan = QUICK if args.quick else FULL
    repeats = args.repeats or plan["repeats"]
    sections = args.only or ["speed", "refs", "memory", "cached"]
    print(f"bench_dit{' --quick' if args.quick else ''}: {machine()}; float32, inference_mode, batch 1\n",
          flush=True)
    t0 = time.perf_counter()
    results: dict = {}
    if "speed" in sections:
        results["speed"] = bench_speed(plan, repeats)
    if "refs" in sections:
        results["refs"] = bench_refs(plan, repeats)
    if "memory" in sections:
        results["memory"] = bench_memory(plan, args.threads)
    if "cached" in sections:
        results["cached"] = {"timing": bench_cached(plan, repeats), "memory": bench_cached_memory(plan, args.threads)}
    print(f"total {time.perf_counter() - t0:.0f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": machine(), "quick": args.quick, "repeats": repeats, **results}, fh, indent=1)
    return results


if __name__ == "__main__":
    main()

"""The benchmark scripts still run (tiny shapes); their numbers are read by people, not asserted.

What is asserted is structure and sanity (every row there, ratios ordered, sizes that follow from the
shapes, memory that is exact by construction); speed targets live in the benchmarks, never here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"


def run_script(name: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH / name), *args], capture_output=True, text=True, timeout=600,
                          cwd=ROOT, env=env)


def assert_ratio(r) -> None:
    med, lo, hi = r
    assert 0 < lo <= med <= hi


@pytest.mark.slow
def test_bench_dit_quick_prints_all_four_tables(tmp_path):
    out_json = tmp_path / "bench.json"
    out = run_script("bench_dit.py", "--quick", "--json", str(out_json))
    assert out.returncode == 0, out.stderr[-2000:]
    for header in ("(a) WanDiT vs diffusers", "(b) reference overhead", "(c) peak memory", "(d) cached references",
                   "(d) memory of one forward"):
        assert header in out.stdout
    # (a): both clocks, an A/A control, median and min..max; (b): the "zero" row against plain
    for text in ("| wall ", "| CPU ", "A/A ours/ours", 'ref_timestep="zero"', "plain video (A/A control)",
                 "CPU overhead (min..max)", "cached refs, cache precomputed", "cache computation"):
        assert text in out.stdout, text
    res = json.loads(out_json.read_text())
    if res["speed"]:  # empty when diffusers is missing
        assert [r["tokens"] for r in res["speed"][:2]] == [32, 64]  # two sizes of the same model
        for r in res["speed"]:
            for clock in ("wall", "cpu"):
                assert_ratio(r[clock]["ratio"])
                assert 0 <= r[clock]["ours_faster_rounds"] <= r["rounds"]
            assert r["max_abs_diff"] < 1e-4  # both sides compute the same function
    zero = next(r for r in res["refs"] if r["key"] == "zero")
    assert zero["ref_tokens"] > 0 and len(zero["cpu"]["overhead"]) == 3
    check_cached_section(res["cached"])


def check_cached_section(res: dict) -> None:
    """(d): every row, the tiny case's token counts, ordered ratios; memory growth = cache bytes."""
    timing = res["timing"]
    assert [r["key"] for r in timing["rows"]] == ["plain", "plain again", "full", "cached", "cache"]
    assert timing["video_tokens"] == 32 and timing["ref_tokens"] == 128  # 2x8x8 latent; 8 slots x 16 tokens
    for r in timing["rows"]:
        for clock in ("wall", "cpu"):
            assert r[clock]["ms"] > 0
            if r["key"] != "plain":
                assert_ratio(r[clock]["x_plain"])
    cached = next(r for r in timing["rows"] if r["key"] == "cached")
    assert cached["target"] == 1.05 and isinstance(cached["met"], bool)
    assert timing["amortised_wall_x_plain"] > 0
    rows = {(r["mode"], r["subjects"]): r for r in res["memory"]["rows"]}
    assert set(rows) == {("plain", 0), ("cached", 1), ("cached", 2), ("full", 1), ("full", 2)}
    c1, c2 = rows[("cached", 1)], rows[("cached", 2)]
    assert c1["cache_mb"] > 0 and c2["cache_mb"] == pytest.approx(2 * c1["cache_mb"])  # 4 more slots, same tokens each
    for r in (c1, c2):
        assert r["estimate_cache_mb"] == pytest.approx(r["cache_mb"])  # forward_memory counts the cache exactly
        assert r["within"], r  # allocator counts are exact: growth over plain is the cache (+ <= one block's K/V)
    for k in (1, 2):  # full attention carries the reference tokens through every block: it grows more
        assert rows[("full", k)]["growth_mb"] > 0 and rows[("full", k)]["ref_tokens"] == rows[("cached", k)]["ref_tokens"]


GPU_KEYS = ["ours", "ours again", "ours full 1", "ours cached 1", "ours cache 1", "ours full 2", "ours cached 2",
            "ours cache 2", "diffusers", "comfyui", "fp8", "ours fp8 cached 2"]


@pytest.mark.slow
def test_bench_gpu_quick_on_cpu_has_every_variant(tmp_path):
    out_json = tmp_path / "gpu.json"
    out = run_script("bench_gpu.py", "--quick", "--device", "cpu", "--json", str(out_json), env=dict(os.environ))
    assert out.returncode == 0, out.stderr[-2000:]
    for label in ("ours, no refs", "ours, full refs, 2 subj", "ours, cached refs, 1 subj", "cache computation",
                  "diffusers WanTransformer3DModel", "ComfyUI WanModel", "ours fp8 weights", "ours fp8, cached refs"):
        assert label in out.stdout, label
    (size,) = json.loads(out_json.read_text())["sizes"]
    assert size["size"] == "tiny" and size["video_tokens"] == 48 and size["passes"] == 3
    rows = {r["key"]: r for r in size["rows"]}
    assert list(rows) == GPU_KEYS
    comfy = rows["comfyui"]
    if not os.environ.get("COMFYUI_DIR"):
        assert comfy["note"].startswith("skipped: COMFYUI_DIR is not set")
    for key, r in rows.items():
        if r["note"].startswith("skipped"):
            assert key in ("comfyui", "diffusers")
            continue
        assert r["ms"] > 0 and r["peak_gib"] > 0 and r["total_gib"] >= r["weights_gib"] > 0
        if key != "ours":
            assert_ratio(r["x_ours"])
        if r["video_tokens"]:
            assert r["s_per_step"] == pytest.approx(3 * r["ms"] / 1e3, rel=0.02)
    assert [rows[f"ours cached {k}"]["ref_tokens"] for k in (1, 2)] == [64, 128]  # 4 and 8 slots of 4x4 patches
    assert rows["ours cached 2"]["cache_gib"] == pytest.approx(2 * rows["ours cached 1"]["cache_gib"])
    assert rows["fp8"]["weights_gib"] < 0.6 * rows["ours"]["weights_gib"]  # block matrices at one byte a weight
    for key in ("diffusers", "comfyui"):  # same weights, same function (float32 on CPU)
        if not rows[key]["note"].startswith("skipped"):
            assert rows[key]["rel_diff"] < 1e-4, key
    assert rows["fp8"]["rel_diff"] < 0.1  # e4m3 weights: a few percent, not garbage


def test_bench_gpu_sizes_and_cpu_guard():
    sys.path.insert(0, str(BENCH))
    try:
        import bench_gpu
    finally:
        sys.path.remove(str(BENCH))
    # Wan 2.1's published sizes, counted on the meta device (nothing is allocated)
    assert bench_gpu.parameter_count(bench_gpu.make_config("1.3B")) == pytest.approx(1.42e9, rel=0.02)
    assert bench_gpu.parameter_count(bench_gpu.make_config("14B")) == pytest.approx(14.3e9, rel=0.02)
    case = bench_gpu.Case("1.3B", bench_gpu.make_config("1.3B"), bench_gpu.LATENT_480P_81F)
    assert case.grid == (21, 30, 52) and case.video_tokens == 32760  # 480p, 81 frames
    with pytest.raises(SystemExit):  # a Wan-size model is never built on the CPU
        bench_gpu.main(["--sizes", "14B", "--device", "cpu"])

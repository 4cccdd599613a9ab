"""The benchmark scripts still run (tiny shapes); their numbers are read by people, not asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_dit_quick_prints_all_three_tables(tmp_path):
    out_json = tmp_path / "bench.json"
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_dit.py"), "--quick", "--json", str(out_json)],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    for header in ("(a) WanDiT vs diffusers", "(b) reference overhead", "(c) peak memory"):
        assert header in out.stdout
    # (a): both clocks, an A/A control, median and min..max; (b): the "zero" row against plain
    for text in ("| wall ", "| CPU ", "A/A ours/ours", 'ref_timestep="zero"', "plain video (A/A control)",
                 "CPU overhead (min..max)"):
        assert text in out.stdout, text
    res = json.loads(out_json.read_text())
    if res["speed"]:  # empty when diffusers is missing
        assert [r["tokens"] for r in res["speed"][:2]] == [32, 64]  # two sizes of the same model
        for r in res["speed"]:
            for clock in ("wall", "cpu"):
                med, lo, hi = r[clock]["ratio"]
                assert lo <= med <= hi
                assert 0 <= r[clock]["ours_faster_rounds"] <= r["rounds"]
            assert r["max_abs_diff"] < 1e-4  # both sides compute the same function
    zero = next(r for r in res["refs"] if r["key"] == "zero")
    assert zero["ref_tokens"] > 0 and len(zero["cpu"]["overhead"]) == 3

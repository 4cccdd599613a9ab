"""The benchmark scripts still run (tiny shapes); their numbers are read by people, not asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_dit_quick_prints_all_three_tables():
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_dit.py"), "--quick"],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    for header in ("(a) WanDiT vs diffusers", "(b) reference overhead", "(c) peak memory"):
        assert header in out.stdout

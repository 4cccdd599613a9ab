"""The shipped benchmark cases (benchmarks/cases/toy/) are exactly what their script writes, and valid cases."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mvs2v_core.benchmarking.cases import load_cases

CASES = Path(__file__).resolve().parents[2] / "benchmarks" / "cases" / "toy"


def test_shipped_cases_match_their_script(tmp_path):
    run = subprocess.run([sys.executable, str(CASES / "make_cases.py"), "--out", str(tmp_path)], capture_output=True,
                         text=True, timeout=300, cwd=CASES.parents[2])
    assert run.returncode == 0, run.stderr
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    shipped = sorted(p.relative_to(CASES) for p in CASES.rglob("*") if p.suffix in (".png", ".jsonl"))
    assert written == shipped
    for rel in written:
        assert (tmp_path / rel).read_bytes() == (CASES / rel).read_bytes(), rel


def test_shipped_cases_are_small_and_valid():
    cases = load_cases(CASES / "cases.jsonl")
    assert [c.id for c in cases] == [f"w1_scene{i}" for i in range(4)]
    for case in cases:
        assert (case.width, case.height, case.frames) == (32, 32, 9)
        assert [v.view for s in case.subjects for v in s.views] == ["front", "left", "back", "right"]
    assert all(p.stat().st_size < 4096 for p in CASES.rglob("*.png"))

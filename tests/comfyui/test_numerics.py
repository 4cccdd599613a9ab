"""Numerical check: the patched native ComfyUI Wan model == mvs2v_core's WanDiT (fp32, 1e-4)."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import COMFYUI_DIR, DIT_WAN21, DIT_WAN22_5B, HERE, comfy_python

TOLERANCE = 1e-4


@pytest.mark.parametrize("dit", [DIT_WAN21, DIT_WAN22_5B])
def test_patched_comfyui_model_matches_core_dit(comfy_server, dit):
    proc = subprocess.run(
        [comfy_python(), str(HERE / "parity_check.py"), COMFYUI_DIR, str(comfy_server.base / "custom_nodes"), "mvs2v",
         str(comfy_server.base / "models" / "diffusion_models" / dit)],
        capture_output=True, text=True, timeout=600, check=False,
    )
    lines = [l for l in proc.stdout.splitlines() if l.startswith("PARITY ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(lines[-1][len("PARITY "):])
    print(dit, results)
    for case, diff in results.items():
        if case in ("unpatched_vs_patched_vanilla", "output_scale"):
            continue
        assert diff < TOLERANCE, f"{case}: max |ComfyUI - core| = {diff:.3g}"
    assert results["unpatched_vs_patched_vanilla"] > 1e-3  # the comparison is not between two plain models

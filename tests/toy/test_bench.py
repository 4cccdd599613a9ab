"""``mvs2v toy-bench``: every row and metric, exact zeros where the inputs cannot differ, resume, refusal.

The model is a tiny random toy model folder made here (laid out like ``mvs2v_toy/assets/toy_demo``):
its numbers mean nothing, but which numbers are exactly 0 and what is generated do not depend on it.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from mvs2v_core.cli import main
from mvs2v_core.errors import MVS2VError
from mvs2v_core.model.config import WanConfig
from mvs2v_core.pipeline.generate import MVS2VPipeline
from mvs2v_toy.bench import run_toy_bench
from mvs2v_toy.bench_report import ALL_METRICS, check_bar
from mvs2v_toy.dataset import save_toy_encoders
from mvs2v_toy.demo import DEMO_MODEL_FORMAT
from tests.tiny_toy_model import write_tiny_toy_model

ROWS = ("multi", "single", "none", "copy")
TINY = WanConfig(dim=128, ffn_dim=128, num_heads=1, num_layers=1, in_dim=48, out_dim=48, text_dim=32, text_len=32)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A tiny random toy model folder: DiT, proxy-token adapter, toy encoders, model.json (5 frames, 2 steps)."""
    folder = write_tiny_toy_model(tmp_path_factory.mktemp("tiny_toy_model"), TINY)
    save_toy_encoders(folder)
    info = {"format": DEMO_MODEL_FORMAT, "version": 1, "frames": 5, "width": 32, "height": 32, "mfi": False,
            "sampler": {"steps": 2, "shift": 3.0, "solver": "euler", "ref_scale": 2.0, "text_scale": 3.0}}
    (folder / "model.json").write_text(json.dumps(info))
    return folder


@pytest.fixture
def count_generations(monkeypatch) -> list[int]:
    """Counts the clips sampled through ``MVS2VPipeline.generate_batch``."""
    calls: list[int] = []
    original = MVS2VPipeline.generate_batch

    def counting(self, settings, subjects, progress=None):
        calls.append(len(settings))
        return original(self, settings, subjects, progress)

    monkeypatch.setattr(MVS2VPipeline, "generate_batch", counting)
    return calls


def _zero(results: dict, row: str, metric: str) -> None:
    ci = results["rows"][row][metric]
    assert ci["n"] == 2 and ci["mean"] == ci["lo"] == ci["hi"] == 0.0, (row, metric, ci)


def test_w1_bench_rows_exact_zeros_and_resume(model_dir, tmp_path, count_generations):
    out = tmp_path / "bench"
    res = run_toy_bench(model_dir, out, world="w1", scenes=2, seeds=(0,), batch=4, log=lambda _: None)
    assert set(res["rows"]) == set(ROWS)
    for row in ROWS:
        assert set(res["rows"][row]) == set(ALL_METRICS)
        for metric in ("psnr", "ssim", "s_v2r", "s_r2v", "hidden_face_accuracy", "reference_use"):
            assert res["rows"][row][metric]["n"] == 2, (row, metric)
    # A model that cannot see the hidden colours paints both versions alike: exactly 0, from the clips.
    for row in ("single", "none", "copy"):
        _zero(res, row, "reference_use")
    assert res["rows"]["multi"]["slot_binding"]["n"] >= 1 and res["rows"]["single"]["slot_binding"]["n"] == 0
    assert res["rows"]["copy"]["s_v2r"]["mean"] == pytest.approx(1.0)  # every frame is a frame of the clip
    assert set(res["paired"]) == {"multi-single", "multi-copy"}
    for metric in ("hidden_face_accuracy", "hidden_face_visible", "psnr", "s_r2v"):  # same scenes: mean of differences
        rows = res["rows"]
        assert res["paired"]["multi-single"][metric]["mean"] == pytest.approx(
            rows["multi"][metric]["mean"] - rows["single"][metric]["mean"]), metric
    # multi: orig + recolour + swap per scene; single and none: orig only (their recoloured inputs are identical).
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    generated = sum(r["generated"] for r in records)
    assert sum(count_generations) == res["generated"] == generated >= 2 * 4
    assert all(count <= 4 for count in count_generations)  # --batch 4: at most 4 clips per sampling run
    assert not any(r["generated"] for r in records if r["row"] == "copy" or r["variant"].startswith("recolour")
                   and r["row"] in ("single", "none"))
    command = (out / "command.txt").read_text().strip()
    assert shlex.split(command)[:2] == ["mvs2v", "toy-bench"] and "--steps 2" in command
    assert json.loads((out / "results.json").read_text())["command"] == command
    assert "| multi |" in (out / "table.md").read_text()

    # A rerun generates nothing and reports the same numbers.
    before = len(count_generations)
    again = run_toy_bench(model_dir, out, world="w1", scenes=2, seeds=(0,), batch=4, log=lambda _: None)
    assert len(count_generations) == before and again["generated"] == 0 and again["rows"] == res["rows"]

    # Other settings in the same folder: refused in one line before anything runs.
    for kwargs in ({"steps": 3}, {"world": "w2"}, {"eval_seed": 7}):
        with pytest.raises(MVS2VError, match="other settings") as err:
            run_toy_bench(model_dir, out, scenes=2, seeds=(0,), **{"world": "w1", **kwargs})
        assert "\n" not in str(err.value)
    assert len(count_generations) == before


def test_guidance_override_is_used_recorded_and_checked(model_dir, tmp_path, count_generations):
    kw = {"world": "w1", "scenes": 1, "seeds": (0,), "rows": ("single",), "log": lambda _: None}
    default = run_toy_bench(model_dir, tmp_path / "default", **kw)
    off = run_toy_bench(model_dir, tmp_path / "off", ref_scale=1.0, text_scale=1, **kw)
    # The scales reach the sampler: guidance off paints another clip than the model's 2 / 3.
    assert off["rows"]["single"]["psnr"]["mean"] != default["rows"]["single"]["psnr"]["mean"]
    assert off["settings"]["sampler"] == {"shift": 3.0, "solver": "euler", "ref_scale": 1.0, "text_scale": 1.0}
    assert "--ref-scale 1 --text-scale 1" in off["command"] and "--ref-scale" not in default["command"]
    # The command it prints reproduces it: rerun on the same folder, nothing generated.
    before = len(count_generations)
    args = shlex.split(off["command"])[1:]
    assert main(args) == 0 and len(count_generations) == before
    # A folder made with other scales is refused; a bad scale is refused in one line before any work.
    with pytest.raises(MVS2VError, match="other settings"):
        run_toy_bench(model_dir, tmp_path / "off", **kw)
    with pytest.raises(MVS2VError, match="ref-scale") as err:
        run_toy_bench(model_dir, tmp_path / "bad", ref_scale=-1.0, **kw)
    assert "\n" not in str(err.value) and not (tmp_path / "bad").exists()
    assert len(count_generations) == before


def test_w2_bench_causal_crosstalk(model_dir, tmp_path, count_generations):
    res = run_toy_bench(model_dir, tmp_path / "w2", world="w2", scenes=2, seeds=(0,), rows=("multi", "none", "copy"),
                        log=lambda _: None)
    assert set(res["rows"]) == {"multi", "none", "copy"} and set(res["paired"]) == {"multi-copy"}
    for metric in ("causal_crosstalk", "causal_crosstalk_own", "causal_crosstalk_own_first",
                   "causal_crosstalk_own_second", "crosstalk", "reference_use"):
        assert res["rows"]["multi"][metric]["n"] == 2, metric
    multi = res["rows"]["multi"]  # own is the mean of the two subjects' own (each recoloured in turn)
    assert multi["causal_crosstalk_own"]["mean"] == pytest.approx(
        (multi["causal_crosstalk_own_first"]["mean"] + multi["causal_crosstalk_own_second"]["mean"]) / 2)
    assert "own, second subject" in res["table"]
    for row in ("none", "copy"):
        for metric in ("reference_use", "causal_crosstalk", "causal_crosstalk_own"):
            _zero(res, row, metric)
    records = [json.loads(line) for line in (tmp_path / "w2" / "records.jsonl").read_text().splitlines()]
    variants = {r["variant"] for r in records if r["row"] == "multi"}
    assert {"orig", "recolour0", "recolour1"} <= variants  # each object recoloured in turn


def test_cli_prints_table_and_bar(model_dir, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["toy-bench", "--model", str(model_dir), "--out", str(out), "--scenes", "2", "--seeds", "0",
                 "--rows", "copy", "--bar"]) == 0  # copy: nothing to generate
    printed = capsys.readouterr().out
    assert "| copy |" in printed and "MISSING" in printed and "results.json" in printed
    assert main(["toy-bench", "--model", str(model_dir), "--out", str(out), "--rows", "multi,bogus"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bogus" in err


def _summary(**overrides: float) -> dict:
    means = {("multi", "reference_use"): 0.8, ("single", "reference_use"): 0.0,
             ("multi", "hidden_face_accuracy"): 0.9, ("single", "hidden_face_accuracy"): 0.3,
             ("copy", "hidden_face_accuracy"): 0.0, ("multi", "slot_binding"): 0.7,
             ("multi", "hidden_face_visible"): 0.95, ("single", "hidden_face_visible"): 0.9,
             ("multi", "psnr"): 20.0, ("single", "psnr"): 18.0, ("copy", "psnr"): 15.0,
             ("multi", "s_r2v"): 0.9, ("copy", "s_r2v"): 0.5}
    means.update({tuple(k.split("__")): v for k, v in overrides.items()})
    rows: dict = {}
    for (row, metric), mean in means.items():
        rows.setdefault(row, {})[metric] = {"mean": mean, "lo": mean - 0.05, "hi": mean + 0.05, "n": 64}
    return {"rows": rows, "paired": {}}


def test_bar_lines_pass_and_fail():
    lines = check_bar(_summary())
    assert len(lines) == 10 and all(ok is True for _, ok, _ in lines)
    failed = [text for text, ok, _ in check_bar(_summary(multi__reference_use=0.64)) if not ok]
    assert failed == ["multi reference use >= 0.7 with 95% interval above 0.6 (mean, lo)"]  # lo 0.59
    failed = [text for text, ok, _ in check_bar(_summary(single__hidden_face_accuracy=0.55)) if not ok]
    assert failed == ["hidden-face accuracy >= single + 0.4 (multi, single)"]
    failed = [text for text, ok, _ in check_bar(_summary(copy__psnr=21.0)) if not ok]
    assert failed == ["beats the copy-of-frame-0 baseline on PSNR (multi, copy)"]
    failed = [text for text, ok, _ in check_bar(_summary(multi__hidden_face_visible=0.85)) if not ok]
    assert failed == ["frame-0 face accuracy not below single-view's (multi, single; means, no paired difference)"]


def test_bar_reads_no_worse_from_the_paired_interval_when_there_is_one():
    """Frame-0 accuracy 1 point below single-view: not shown worse while the paired interval reaches 0, failed
    once the interval lies below 0; the means alone (no paired numbers) would fail both."""
    def frame0(lo: float, hi: float) -> tuple[bool | None, str]:
        summary = _summary(multi__hidden_face_visible=0.89)
        summary["paired"] = {"multi-single": {"hidden_face_visible": {"mean": -0.01, "lo": lo, "hi": hi, "n": 64}}}
        [(text, ok, numbers)] = [x for x in check_bar(summary) if x[0].startswith("frame-0")]
        assert "paired" in text
        return ok, numbers

    assert frame0(-0.025, 0.004) == (True, "0.890, 0.900, -0.010, -0.025, 0.004")
    assert frame0(-0.039, -0.002) == (False, "0.890, 0.900, -0.010, -0.039, -0.002")
    assert not dict((t, ok) for t, ok, _ in check_bar(_summary(multi__hidden_face_visible=0.89)))[
        "frame-0 face accuracy not below single-view's (multi, single; means, no paired difference)"]

"""The W1/W2 ablation runner (``python -m experiments.toy_ablation``): a miniature ablation end to end
(resume after an interruption, no new work on a rerun, other settings refused, report, bundle), and the
recipes, init adapters, encoders and table statistics on their own."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

import experiments.toy_ablation as ta
from experiments.toy_ablation import run as run_module
from experiments.toy_ablation.aggregate import cell, paired
from experiments.toy_ablation.data import check_encoders, init_hashes, write_init_adapter
from experiments.toy_ablation.files import Layout, write_train_config
from experiments.toy_ablation.recipes import train_config
from experiments.toy_ablation.workers import RunWorker, WorkerContext, train_until
from mvs2v_core.adapter import load_adapter
from mvs2v_core.errors import MVS2VError
from mvs2v_core.model.config import WanConfig
from mvs2v_core.references.settings import ReferenceSettings
from mvs2v_train.config import load_config, parse_config
from tests.tiny_toy_model import write_tiny_toy_model

TINY = WanConfig(dim=64, ffn_dim=64, num_heads=1, num_layers=1, in_dim=48, out_dim=48, text_dim=32, text_len=32)


def make_init(folder: Path) -> Path:
    """A tiny random toy model to start from: DiT + an adapter with proxy tokens (TS, proxy)."""
    folder.mkdir(parents=True)
    return write_tiny_toy_model(folder, TINY)


def tiny_args(tmp_path: Path) -> list[str]:
    return ["--out", str(tmp_path / "abl"), "--init", str(tmp_path / "init"), "--results", str(tmp_path / "results"),
            "--samples", "24", "--steps", "4", "--curriculum-steps", "2", "--curriculum-samples", "8", "--checkpoint-every", "2", "--score-every", "2", "--scenes", "2",
            "--sampling-seeds", "0", "--curve-scenes", "1", "--sample-steps", "2", "--arms", "base,single",
            "--seeds", "0", "--jobs", "2", "--threads", "2", "--bench-batch", "8"]


def interrupt_base_after_step_2(tmp_path: Path) -> None:
    """What a run killed after its step-2 checkpoint leaves behind (the runner's own preparation, then 2 steps)."""
    from mvs2v_train.trainer import run_training

    args = ta.cli.build_parser().parse_args(tiny_args(tmp_path))
    s = ta.cli._settings(args)
    layout, init = Layout(tmp_path / "abl"), tmp_path / "init"
    s = dataclasses.replace(s, init_sha256=init_hashes(init))
    layout.root.mkdir(parents=True)
    ta.cli.check_settings(layout, s)
    ta.data.prepare_data(layout, s, log=lambda m: None)
    run_module.prepare_runs(layout, s, init, ["base-s0"])
    run_module.fill_caches(layout, ["base-s0"], log=lambda m: None)
    result = run_training(load_config(layout.run("base-s0").config), stop_at_step=2, log=lambda m: None)
    assert result.final_step == 2 and not result.completed


@pytest.mark.slow
def test_tiny_ablation_end_to_end_resumes_reruns_nothing_and_bundles(tmp_path, monkeypatch, capsys):
    make_init(tmp_path / "init")
    interrupt_base_after_step_2(tmp_path)
    results = tmp_path / "results"
    assert ta.main(tiny_args(tmp_path)) == 0

    runs = {name: json.loads((results / f"{name}.json").read_text()) for name in ("base-s0", "single-s0")}
    for name, r in runs.items():
        assert r["status"] == "done" and r["steps_done"] == 6 and r["seed"] == 0, name  # 2 on W0, then 4
        assert r["settings"]["init_sha256"] == init_hashes(tmp_path / "init")
        assert [p["step"] for p in r["curve"]] == [2, 4, 6]  # checkpoints along the way, and the final bench
        assert "--arms" in r["command"] and r["command"].startswith("python -m experiments.toy_ablation")
        assert r["device"] == "cpu", name  # --device auto on a machine without a GPU
    base, single = runs["base-s0"], runs["single-s0"]
    assert set(base["bench"]) == {"w1", "w2"} and set(single["bench"]) == {"w1"}
    w1 = base["bench"]["w1"]["rows"]
    assert set(w1) == {"multi", "single", "none", "copy"}
    # Exact zeros by construction: the copy baseline is frame 0 of both versions (hidden faces are hidden in
    # frame 0), and a start-view-only input is the same for both versions.
    assert w1["copy"]["reference_use"]["mean"] == 0.0 and w1["single"]["reference_use"]["mean"] == 0.0
    assert single["bench"]["w1"]["rows"]["single"]["reference_use"]["mean"] == 0.0
    assert len(base["bench"]["w1"]["per_scene"]["multi"]["psnr"]) == 2
    log = (tmp_path / "abl" / "runs" / "base-s0" / "worker.log").read_text()
    assert "resumed from" in log and "at step 2" in log  # the interrupted run continued, not restarted

    cfg = load_config(tmp_path / "abl" / "runs" / "single-s0" / "train.toml")
    assert {st.views for st in cfg.stages} == {"single"} and cfg.augment.shuffle_subjects == 0.0
    table = (results / "ablation_table.md").read_text()
    assert "| base |" in table and "| single |" in table and "| gap32 |" in table and "not run" in table
    assert "copy of frame 0" in table and "python -m experiments.toy_ablation" in table

    # A rerun finds every run done: it starts no worker (no training, no generation) and rewrites no result.
    stamps = {p: p.stat().st_mtime_ns for p in results.glob("*-s*.json")}
    monkeypatch.setattr(run_module, "spawn", lambda *a, **k: pytest.fail("a finished run was started again"))
    assert ta.main(tiny_args(tmp_path)) == 0
    assert {p: p.stat().st_mtime_ns for p in results.glob("*-s*.json")} == stamps

    # Another setting in the same --out is refused with one line.
    capsys.readouterr()
    other = [a if a != "24" else "30" for a in tiny_args(tmp_path)]
    assert ta.main(other) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "other settings" in err and "samples 24 (stored) vs 30" in err

    assert ta.main(["report", "--results", str(results)]) == 0
    assert "| base |" in capsys.readouterr().out

    from mvs2v_toy.demo import demo_model_info

    dest = tmp_path / "demo_model"
    assert ta.main(["--out", str(tmp_path / "abl"), "--results", str(results), "--bundle", str(dest)]) == 0
    info = demo_model_info(dest)
    assert info["run"] == "base-s0" and "toy_ablation" in info["training_command"]
    assert info["eval"] == {"world": "w1", "seed": 1000} and "reference use" in info["bench"]["w1"]["headline"]
    assert (dest / "README.md").is_file() and (dest / "vision_encoder").is_dir()

    # A model trained by hand is bundled from its folder and bench folders: the same numbers as the runner's.
    run_dir = tmp_path / "abl" / "runs" / "base-s0"
    by_hand = tmp_path / "by_hand"
    assert ta.main(["--bundle", str(by_hand), "--bundle-model", str(run_dir / "model"), "--bundle-bench",
                    str(run_dir / "bench" / "w1"), "--bundle-command", "mvs2v-train train --config t.toml"]) == 0
    hand = demo_model_info(by_hand)
    assert hand["training_command"] == "mvs2v-train train --config t.toml" and set(hand["bench"]) == {"w1"}
    assert hand["bench"]["w1"]["rows"] == info["bench"]["w1"]["rows"] and hand["metrics"] == info["metrics"]
    assert ta.main(["--bundle", str(by_hand), "--bundle-model", str(run_dir / "model"), "--bundle-bench",
                    str(tmp_path)]) == 2  # not a bench folder: one line, nothing copied
    # A runner's model benched again (more rows): the command defaults to the one its export records.
    rebenched = tmp_path / "rebenched"
    assert ta.main(["--bundle", str(rebenched), "--bundle-model", str(run_dir / "model"), "--bundle-bench",
                    str(run_dir / "bench" / "w1")]) == 0
    assert demo_model_info(rebenched)["training_command"] == info["training_command"]


@pytest.mark.slow
def test_a_scheduled_anchored_run_end_to_end(tmp_path):
    from mvs2v_toy.demo import demo_model_info

    make_init(tmp_path / "init")
    out, results = tmp_path / "abl", tmp_path / "results"
    argv = ["--out", str(out), "--init", str(tmp_path / "init"), "--results", str(results), "--samples", "24",
            "--curriculum-samples", "8", "--graded", "w0s", "--schedule", "w0:2,w0+w0s+w12:2,w2:2",
            "--slot-anchor", "frontal", "--checkpoint-every", "2", "--scenes", "2", "--sampling-seeds", "0",
            "--curve-scenes", "1", "--sample-steps", "2", "--arms", "base,anchor", "--seeds", "0", "--threads", "2",
            "--bench-batch", "8"]
    assert ta.main(argv) == 0
    assert not (results / "anchor-s0.json").exists()  # the anchor arm is the base here: not trained twice
    r = json.loads((results / "base-s0.json").read_text())
    assert r["status"] == "done" and r["steps_done"] == 6 and r["arm"]["slot_anchor"] == "frontal"
    assert "--schedule w0:2,w0+w0s+w12:2,w2:2" in r["command"] and "--slot-anchor frontal" in r["command"]
    model = out / "runs" / "base-s0" / "model"
    assert load_adapter(model / "adapter.safetensors").metadata.references.slot_anchor == "frontal"
    cfg = load_config(out / "runs" / "base-s0" / "train.toml")
    assert [st.filter.tags for st in cfg.stages] == [["world-w0"], ["world-w0", "world-w0s", "world-w12"],
                                                     ["objects-2"]]
    rows = [json.loads(line) for line in (out / "data_merged" / "manifest.jsonl").read_text().splitlines()]
    assert {tag for row in rows for tag in row["tags"] if tag.startswith("world-")} == {
        "world-w0", "world-w0s", "world-w12"}
    assert set(r["bench"]) == {"w1", "w2"}
    table = (results / "ablation_table.md").read_text()
    assert "slots anchored on the start view, 2 steps on w0, then 2 steps on w0+w0s+w12" in table
    assert "| = base (trains as the base under these settings) |" in table and "| gap32 |" in table
    assert ta.main(["--out", str(out), "--results", str(results), "--bundle", str(tmp_path / "demo")]) == 0
    assert demo_model_info(tmp_path / "demo")["curriculum"]["schedule"][2] == {"worlds": "W2", "steps": 2}
    readme = (tmp_path / "demo" / "README.md").read_text()
    assert "fine-tuned\nfor 2 steps on W0, then 2 steps on W0+W0S+W12, then 2 steps on W2 (" in readme


def _handoff_argv(out: Path, tmp_path: Path, results: Path) -> list[str]:
    return ["--out", str(out), "--init", str(tmp_path / "init"), "--results", str(results), "--samples", "24",
            "--curriculum-samples", "8", "--schedule", "w0:2,w12:2,w2:2", "--checkpoint-every", "1", "--scenes", "2",
            "--sampling-seeds", "0", "--curve-scenes", "1", "--sample-steps", "2", "--arms", "base", "--seeds", "0",
            "--threads", "2", "--bench-batch", "8"]


def _prepare_base(out: Path, tmp_path: Path, results: Path) -> Layout:
    """The runner's preparation of base-s0 on a new machine (data, configs, caches), without its worker."""
    args = ta.cli.build_parser().parse_args(_handoff_argv(out, tmp_path, results))
    s = dataclasses.replace(ta.cli._settings(args), init_sha256=init_hashes(tmp_path / "init"))
    layout = Layout(out)
    out.mkdir(parents=True)
    ta.cli.check_settings(layout, s)
    ta.data.prepare_data(layout, s, log=lambda m: None)
    run_module.prepare_runs(layout, s, tmp_path / "init", ["base-s0"])
    run_module.fill_caches(layout, ["base-s0"], log=lambda m: None)
    return layout


def _session_ends_at(out: Path, tmp_path: Path, results: Path, step: int) -> None:
    """A machine that trains base-s0 (from the committed handoff, if any) until global ``step``, then stops."""
    layout = _prepare_base(out, tmp_path, results)
    ctx = WorkerContext(str(out), str(tmp_path / "init"), str(results))
    part = RunWorker(layout, ctx, "base-s0", log=lambda m: None).part
    train_until(part, layout.run("base-s0").state, "base-s0", step, log=lambda m: None)


def _bench_first_scene(out: Path, tmp_path: Path, results: Path, world: str) -> int:
    """The finished base-s0 under ``out`` exported and benched on the first scene of ``world`` only (what a
    bench stopped after its first batch leaves); returns the records written."""
    from experiments.toy_ablation.scoring import bench_world

    worker = RunWorker(Layout(out), WorkerContext(str(out), str(tmp_path / "init"), str(results)), "base-s0",
                       log=lambda m: None)
    model = worker.export(worker.s.total_steps, worker.run.model)
    bench_world(model, worker.run.bench(world), world, 1, worker.s.bench_seeds, worker.arm.bench_rows(world),
                worker.s, 8, log=lambda m: None)
    return len((worker.run.bench(world) / "records.jsonl").read_text().splitlines())


@pytest.mark.slow
def test_a_run_handed_off_through_the_repository_continues_on_a_new_machine(tmp_path, capsys):
    """Machines keep only the repository. base-s0 (2 + 2 + 2 steps) stops after step 3 and is handed off at
    the last stage boundary (step 2); a second machine continues it to step 4 and hands it off again; a third
    finishes it. A run handed off when it finished training is only benched."""
    from safetensors.torch import load_file

    make_init(tmp_path / "init")
    results = tmp_path / "results"
    handoff = results / "handoff" / "base-s0"
    _session_ends_at(tmp_path / "first", tmp_path, results, 3)
    assert ta.main(["handoff", "--out", str(tmp_path / "first"), "--results", str(results)]) == 0
    meta = json.loads((handoff / "handoff.json").read_text())
    assert meta["step"] == 2 and sorted(meta["sha256"]) == ["adapter.safetensors", "dit.safetensors", "model.json"]
    assert json.loads((results / "base-s0.json").read_text())["handoff"]["step"] == 2
    assert {t.dtype for t in load_file(handoff / "dit.safetensors").values()} == {torch.bfloat16}

    _session_ends_at(tmp_path / "second", tmp_path, results, 4)
    second = tmp_path / "second" / "runs" / "base-s0"
    cont = load_config(second / "train_from_00000002" / "train.toml")
    assert [st.filter.tags for st in cont.stages] == [["world-w12"], ["objects-2"]]  # the stages after step 2
    assert Path(cont.model.dit) == (second / "train_from_00000002" / "handoff" / "dit.safetensors").resolve()
    assert not (second / "train" / "checkpoints").exists()  # nothing trained again from the start
    assert ta.main(["handoff", "--out", str(tmp_path / "second"), "--results", str(results)]) == 0
    meta = json.loads((handoff / "handoff.json").read_text())
    assert meta["step"] == 4 and meta["chain"] == [2, 4]
    assert json.loads((handoff / "model.json").read_text())["step"] == 4  # the run's step, not the trainer's

    assert ta.main(_handoff_argv(tmp_path / "third", tmp_path, results)) == 0
    run = tmp_path / "third" / "runs" / "base-s0"
    r = json.loads((results / "base-s0.json").read_text())
    assert r["status"] == "done" and r["steps_done"] == 6 and r["continued_from"]["handoffs"] == [2, 4]
    assert r["train_seconds"] > r["continued_from"]["train_seconds_before"] > 0
    assert json.loads((run / "model" / "model.json").read_text())["step"] == 6
    assert not handoff.exists()  # consumed once the run is done
    assert "continues from its handoff at step 4" in (run / "worker.log").read_text()

    # Trained to the end, not benched: the handoff is the finished model; a new machine only benches it.
    results2 = tmp_path / "results2"
    _session_ends_at(tmp_path / "fourth", tmp_path, results2, 6)
    assert ta.main(["handoff", "--out", str(tmp_path / "fourth"), "--results", str(results2)]) == 0
    handoff2 = results2 / "handoff" / "base-s0"
    assert json.loads((handoff2 / "handoff.json").read_text())["step"] == 6
    # The session ends during the W2 bench (here: after its first scene); the clips go with the model.
    partial = _bench_first_scene(tmp_path / "fourth", tmp_path, results2, "w2")
    capsys.readouterr()
    assert ta.main(["handoff", "--out", str(tmp_path / "fourth"), "--results", str(results2)]) == 0
    assert f"at step 6 of 6, {partial} w2 bench records" in capsys.readouterr().out
    meta = json.loads((handoff2 / "handoff.json").read_text())
    assert meta["bench_records"] == {"w2": partial} and meta["chain"] == [6]
    assert "bench/w2/records.jsonl" in meta["sha256"]
    assert ta.main(["handoff", "--out", str(tmp_path / "fourth"), "--results", str(results2)]) == 0
    assert "nothing newer" in capsys.readouterr().out
    # A machine that ends before its bench restored those clips hands off the same (keeps them).
    _prepare_base(tmp_path / "fifth", tmp_path, results2)
    assert ta.main(["handoff", "--out", str(tmp_path / "fifth"), "--results", str(results2)]) == 0
    assert "nothing newer" in capsys.readouterr().out
    assert json.loads((handoff2 / "handoff.json").read_text())["bench_records"] == {"w2": partial}
    assert ta.main(_handoff_argv(tmp_path / "fifth", tmp_path, results2)) == 0
    fifth = tmp_path / "fifth" / "runs" / "base-s0"
    assert not list(fifth.glob("train*/**/trainer_state.json"))  # not trained
    assert f"its w2 bench goes on from the {partial} records" in (fifth / "worker.log").read_text()
    text = (fifth / "bench" / "w2" / "records.jsonl").read_text()
    assert text.startswith((tmp_path / "fourth" / "runs" / "base-s0" / "bench" / "w2" / "records.jsonl").read_text())
    records = [json.loads(line) for line in text.splitlines()]
    generated_here = json.loads((fifth / "bench" / "w2" / "results.json").read_text())["generated"]
    assert generated_here == sum(r["generated"] for r in records if r["scene"] == 1) > 0  # scene 0 not again
    r2 = json.loads((results2 / "base-s0.json").read_text())
    assert r2["status"] == "done" and r2["steps_done"] == 6 and set(r2["bench"]) == {"w1", "w2"}
    assert r2["continued_from"]["how"].startswith("the finished model")
    final = load_file(fifth / "model" / "dit.safetensors")
    exported = load_file(tmp_path / "fourth" / "runs" / "base-s0" / "model" / "dit.safetensors")
    assert all(torch.equal(final[k], exported[k]) for k in exported)

    # A handoff whose files changed since it was written is refused with one line.
    (results2 / "base-s0.json").unlink()
    _session_ends_at(tmp_path / "sixth", tmp_path, results2, 2)
    assert ta.main(["handoff", "--out", str(tmp_path / "sixth"), "--results", str(results2)]) == 0
    (results2 / "handoff" / "base-s0" / "adapter.safetensors").write_bytes(b"x")
    capsys.readouterr()
    assert ta.main(_handoff_argv(tmp_path / "seventh", tmp_path, results2)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "changed since the handoff was written" in err
    assert not (tmp_path / "seventh" / "data").exists()  # refused before any work


def test_recipes_make_one_change_each(tmp_path):
    layout, s, init = Layout(tmp_path), ta.AblationSettings(), tmp_path / "init"
    configs = {}
    for name, arm in ta.ARMS.items():
        path = tmp_path / f"{name}.toml"
        write_train_config(path, train_config(layout, s, arm, 1, init, None), name)
        configs[name] = cfg = load_config(path)
        assert cfg == parse_config(train_config(layout, s, arm, 1, init, None), path)
        assert [st.steps for st in cfg.stages] == [600] * 10 and cfg.train.seed == 1
        # the curriculum: the calibration world's rows first, then the main world's (tags of the merged manifest)
        assert [st.filter.tags for st in cfg.stages] == [["world-w0"]] * 5 + [["world-w12"]] * 5
        assert cfg.data.manifest.endswith("data_merged/manifest.jsonl")
        assert cfg.checkpoint.keep_last * cfg.checkpoint.every_n_steps >= s.total_steps  # every checkpoint is kept
    base = configs["base"]
    assert base.references.settings() == ReferenceSettings(4, "ts", "proxy") and base.references.gap == 8.0
    assert {st.views for st in base.stages} == {"dropout"} and all(st.keep_frontal for st in base.stages)
    assert {st.dropout_prob for st in base.stages} == {0.3} and base.trainable.proxy and not base.trainable.mfi
    assert configs["gap32"].references.gap == 32.0 and configs["vanilla"].references.scheme == "vanilla"
    assert not configs["gray"].trainable.proxy and configs["mfi"].trainable.mfi
    assert configs["mfi"].model.vision_encoder and not base.model.vision_encoder
    assert not base.references.settings().cached and configs["zero"].references.ref_timestep == "zero"
    assert configs["cached"].references.settings() == ReferenceSettings(4, "ts", "proxy", "zero", "cached")
    assert configs["anchor"].references.settings() == ReferenceSettings(4, "ts", "proxy", slot_anchor="frontal")
    assert base.references.slot_anchor == "canonical" and "slot_anchor" not in ta.ARMS["base"].to_json()
    # the alignment arm: the loss on, the toy vision encoder's features cached, no MFI; results written
    # before the arm existed still match
    align = configs["align"]
    assert align.align.weight == 0.5 and align.model.vision_encoder and not align.trainable.mfi
    assert align.data.cache_dir == configs["mfi"].data.cache_dir != base.data.cache_dir
    assert not base.align.enabled and "align" not in ta.ARMS["base"].to_json()
    assert align.fingerprint() != base.fingerprint()
    short = ta.AblationSettings(steps=700, curriculum_steps=0)
    assert [st["steps"] for st in ta.recipes.cycle_stages(short, ta.ARMS["base"])] == [600, 100]
    assert "filter" not in ta.recipes.cycle_stages(short, ta.ARMS["base"])[0]  # no curriculum: every row
    assert train_config(layout, short, ta.ARMS["base"], 0, init, None)["data"]["manifest"].endswith(
        "data/manifest.jsonl")
    # result files written before the curriculum existed read back as "no curriculum"
    old = {k: v for k, v in short.to_json().items() if not k.startswith("curriculum")}
    assert ta.AblationSettings.from_json(old).curriculum_steps == 0


def test_a_graded_curriculum_keeps_the_earlier_worlds_in_the_mix(tmp_path):
    s = ta.AblationSettings(curriculum_steps=1200, graded_worlds=("w0s", "w0sd"), graded_steps=600, steps=900,
                            keep_mix=True)
    stages = ta.recipes.cycle_stages(s, ta.ARMS["base"])
    assert [(st["name"], st["steps"], st["filter"]["tags"]) for st in stages] == [
        ("w0-1", 600, ["world-w0"]), ("w0-2", 600, ["world-w0"]),
        ("w0s-1", 600, ["world-w0", "world-w0s"]),
        ("w0sd-1", 600, ["world-w0", "world-w0s", "world-w0sd"]),
        ("w12-1", 600, ["world-w0", "world-w0s", "world-w0sd", "world-w12"]),
        ("w12-2", 300, ["world-w0", "world-w0s", "world-w0sd", "world-w12"])]
    assert s.total_steps == sum(st["steps"] for st in stages) == 3300
    apart = ta.recipes.cycle_stages(dataclasses.replace(s, keep_mix=False), ta.ARMS["base"])
    assert apart[-1]["filter"]["tags"] == ["world-w12"]
    # each graded world has its own dataset seed; the calibration and main datasets are unchanged
    from experiments.toy_ablation.data import dataset_settings

    assert [dataset_settings(s, True, g)["seed"] for g in (None, 0, 1)] == [21, 22, 23]
    assert dataset_settings(s, True, 1)["world"] == "w0sd" and dataset_settings(s)["world"] == "w12"
    # the settings survive the result files and the printed command
    assert ta.AblationSettings.from_json(json.loads(json.dumps(s.to_json()))) == s
    from experiments.toy_ablation import cli, results

    args = cli.build_parser().parse_args(["--out", "x", *results.settings_argv(s)])
    assert cli._settings(args) == s
    assert "--graded" not in results.settings_argv(ta.AblationSettings())  # old commands stay as they were
    for bad, message in (({"graded_worlds": ("w9",)}, "unknown toy world"),
                         ({"graded_worlds": ("w0",)}, "other than the calibration world"),
                         ({"graded_steps": 0}, "--graded-steps of at least 1")):
        with pytest.raises(MVS2VError, match=message):
            dataclasses.replace(s, **bad)


ANCHOR_RECIPE = "w0:2400,w0+w0s+w0sd+w12:2086,w0sd+w12:1800,w12:2400,w2:1200"  # the bundled model's legs


def test_a_schedule_of_legs_on_an_anchored_base(tmp_path):
    from experiments.toy_ablation import cli, results
    from experiments.toy_ablation.models import curriculum_info

    argv = ["--out", "x", "--graded", "w0s,w0sd", "--schedule", ANCHOR_RECIPE, "--slot-anchor", "frontal"]
    s = cli._settings(cli.build_parser().parse_args(argv))
    assert s.legs[1] == (("w0", "w0s", "w0sd", "w12"), 2086) and s.total_steps == 9886
    assert (s.steps, s.curriculum_steps, s.graded_steps) == (0, 0, 0)
    stages = ta.recipes.cycle_stages(s, ta.ARMS["base"])
    assert sum(st["steps"] for st in stages) == s.total_steps
    # a leg is cut into cycles: 2086 = 3 x 600 + 286, each on the leg's worlds; w2 = the two-object rows
    leg2 = [st for st in stages if st["name"].startswith("leg2-")]
    assert [st["steps"] for st in leg2] == [600, 600, 600, 286]
    assert {tuple(st["filter"]["tags"]) for st in leg2} == {("world-w0", "world-w0s", "world-w0sd", "world-w12")}
    assert stages[-1]["filter"]["tags"] == ["objects-2"] and stages[0]["filter"]["tags"] == ["world-w0"]
    assert s.dataset_worlds == ("w0", "w0s", "w0sd", "w12")
    assert Layout(tmp_path).manifest(s) == Layout(tmp_path).merged / "manifest.jsonl"
    # the base's anchor reaches every arm but the ones that set their own; the anchor arm is then the base
    layout, init = Layout(tmp_path), tmp_path / "init"
    for name in ("base", "vanilla", "gray", "mfi"):
        cfg = parse_config(train_config(layout, s, s.arm(ta.ARMS[name]), 0, init, None), tmp_path / "x.toml")
        assert cfg.references.slot_anchor == "frontal", name
    assert s.redundant_arms() == ("anchor",) and ta.AblationSettings().redundant_arms() == ()
    assert s.arm(ta.ARMS["vanilla"]).scheme == "vanilla" and ta.AblationSettings().arm(ta.ARMS["ss"]) is ta.ARMS["ss"]
    # the printed command and the result files give back the same settings; old settings files are unchanged
    assert cli._settings(cli.build_parser().parse_args(["--out", "x", *results.settings_argv(s)])) == s
    assert ta.AblationSettings.from_json(json.loads(json.dumps(s.to_json()))) == s
    assert not {"schedule", "slot_anchor"} & set(ta.AblationSettings().to_json())
    assert "--schedule" not in results.settings_argv(ta.AblationSettings())
    assert cli._settings(cli.build_parser().parse_args(["--out", "x"])) == ta.AblationSettings()
    info = curriculum_info(s)
    assert info["schedule"][1] == {"worlds": "W0+W0S+W0SD+W12", "steps": 2086}
    assert info["dataset_seeds"] == {"w0": 21, "w0s": 22, "w0sd": 23, "w12": 11}
    for bad, message in ((["--schedule", "w0:0"], "STEPS >= 1"), (["--schedule", "w0"], "WORLD\\+WORLD:STEPS"),
                         (["--schedule", "w0s:10"], "w0s has no dataset"),
                         (["--schedule", "w0:10", "--steps", "5"], "--schedule replaces --steps"),
                         # given with its default value, still a contradiction
                         (["--schedule", "w0:10", "--steps", "3000", "--keep-mix"],
                          "--schedule replaces --steps, --keep-mix"),
                         (["--slot-anchor", "frontal", "--schedule", "w0:10,w9:5"], "w9 has no dataset")):
        with pytest.raises(MVS2VError, match=message):
            cli._settings(cli.build_parser().parse_args(["--out", "x", *bad]))


def test_merged_manifest_tags_rows_by_world_and_keeps_paths(tmp_path):
    from mvs2v_toy import write_toy_dataset
    from mvs2v_train.manifest import read_manifest

    from experiments.toy_ablation.data import merge_manifests

    write_toy_dataset(tmp_path / "a", 3, seed=1, frames=5, world="w0", val_fraction=0.0)
    write_toy_dataset(tmp_path / "elsewhere" / "b", 2, seed=2, frames=5, world="w12", val_fraction=0.0)
    dest = tmp_path / "merged" / "manifest.jsonl"
    merge_manifests(dest, {"w0": tmp_path / "a", "w12": tmp_path / "elsewhere" / "b"})
    rows = [json.loads(line) for line in dest.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["w0-toy-000000", "w0-toy-000001", "w0-toy-000002", "w12-toy-000000",
                                       "w12-toy-000001"]
    assert [r["tags"][-1] for r in rows] == ["world-w0"] * 3 + ["world-w12"] * 2
    manifest = read_manifest(dest, 4, check_files=True)  # every path resolves from the merged folder
    assert manifest.total_rows == 5 and not manifest.problems
    before = dest.stat().st_mtime_ns
    merge_manifests(dest, {"w0": tmp_path / "a", "w12": tmp_path / "elsewhere" / "b"})
    assert dest.stat().st_mtime_ns == before  # unchanged content is not rewritten


def test_init_adapter_keeps_the_proxy_tokens_under_each_arms_settings(tmp_path):
    init = make_init(tmp_path / "init")
    original = load_adapter(init / "adapter.safetensors")
    jump = load_adapter(write_init_adapter(init, ta.ARMS["jump"], tmp_path / "jump.safetensors"))
    assert jump.metadata.references.scheme.name == "jump"
    assert torch.equal(jump.proxy_tokens, original.proxy_tokens)
    gray = load_adapter(write_init_adapter(init, ta.ARMS["gray"], tmp_path / "gray.safetensors"))
    assert gray.proxy_tokens is None and gray.metadata.references.empty_slot_mode == "gray"
    assert write_init_adapter(tmp_path / "no_adapter", ta.ARMS["base"], tmp_path / "x.safetensors") is None
    with pytest.raises(MVS2VError, match="no dit.safetensors"):
        init_hashes(tmp_path / "no_adapter")


def test_encoders_must_match_the_bundled_ones(tmp_path):
    from mvs2v_toy import save_toy_encoders
    from mvs2v_toy.demo import DEMO_ASSETS

    save_toy_encoders(tmp_path / "seed0", seed=ta.data.ENCODER_SEED)
    check_encoders(tmp_path / "seed0", DEMO_ASSETS)
    save_toy_encoders(tmp_path / "seed11", seed=11)  # the dataset seed must not reach the text encoder
    with pytest.raises(MVS2VError, match="text_encoder differs"):
        check_encoders(tmp_path / "seed11", DEMO_ASSETS)


def test_a_given_dataset_must_have_the_settings(tmp_path):
    from experiments.toy_ablation.data import check_dataset

    s = ta.AblationSettings()
    info = {"seed": 11, "n_samples": 6000, "world": "w12", "frames": 9, "val_fraction": 0.02}
    (tmp_path / "dataset.json").write_text(json.dumps(info))
    check_dataset(tmp_path, s)
    (tmp_path / "dataset.json").write_text(json.dumps({**info, "seed": 12}))
    with pytest.raises(MVS2VError, match="seed 12 there vs 11"):
        check_dataset(tmp_path, s)


def _fake(arm: str, seed: int, psnr: list[float], use: list[float], settings: dict | None = None) -> dict:
    def ci(values):
        return {"mean": sum(values) / len(values), "lo": min(values), "hi": max(values), "n": len(values)}

    row = "single" if arm == "single" else "multi"
    return {"run": f"{arm}-s{seed}", "arm": ta.ARMS[arm].to_json(), "seed": seed, "status": "done",
            "settings": settings or ta.AblationSettings().to_json(), "steps_total": 4800, "steps_done": 4800,
            "train_seconds": 600.0, "command": f"python -m experiments.toy_ablation --arms {arm} --seeds {seed}",
            "curve": [{"step": 4800, "scenes": 3, "metrics": {"reference_use": ci(use)}}],
            "bench": {"w1": {"scenes": 3, "seeds": [0], "rows": {row: {"psnr": ci(psnr), "reference_use": ci(use)}},
                             "per_scene": {row: {"psnr": psnr, "reference_use": use}}}}}


def test_table_statistics_pair_scenes_and_say_what_is_missing(tmp_path):
    records = {"base-s0": _fake("base", 0, [10.0, 12.0, 14.0], [0.5, 0.6, 0.7]),
               "base-s1": _fake("base", 1, [12.0, 14.0, 16.0], [0.7, 0.8, 0.9]),
               "single-s0": _fake("single", 0, [9.0, 12.0, 13.0], [0.0, 0.0, 0.0])}
    base = [records["base-s0"], records["base-s1"]]
    c = cell(base, "w1", "multi", "psnr")
    assert c["mean"] == pytest.approx(13.0) and (c["min"], c["max"]) == (12.0, 14.0) and c["seeds"] == [0, 1]
    assert c["lo"] >= 11.0 and c["hi"] <= 15.0 and c["scenes"] == 3  # over the seed-averaged scenes 11, 13, 15
    d = paired([records["single-s0"]], base, "w1", "single", "multi", "psnr")
    assert d["seeds"] == [0] and d["mean"] == pytest.approx(-2 / 3) and d["n"] == 3  # (-1, 0, -1) on seed 0 only
    text = ta.markdown(records)
    assert "| base | base: TS-RoPE" in text and "13.00 [" in text and "(12.00..14.00)" in text
    assert "| vanilla |" in text and "not run" in text and "-0.67 [" in text
    for path_name, r in records.items():
        (tmp_path / f"{path_name}.json").write_text(json.dumps(r))
    other = ta.AblationSettings(steps=2400).to_json()
    (tmp_path / "gray-s0.json").write_text(json.dumps(_fake("gray", 0, [1.0], [0.1], other)))
    with pytest.raises(MVS2VError, match="mix two ablations"):
        ta.write_report(tmp_path)


def test_bad_options_are_one_line_errors(tmp_path, capsys):
    assert ta.main(["--out", str(tmp_path), "--arms", "base,nope"]) == 2
    assert "--arms: unknown ['nope']" in capsys.readouterr().err
    assert ta.main(["--out", str(tmp_path), "--score-every", "300"]) == 2
    assert "multiple of 200" in capsys.readouterr().err
    assert ta.main(["--out", str(tmp_path), "--init", str(tmp_path / "missing")]) == 2
    assert "no dit.safetensors" in capsys.readouterr().err


def test_trainer_reads_the_toy_vision_encoder_width(tmp_path):
    from mvs2v_toy.vision import ToyVisionEncoder, save_toy_vision_encoder
    from mvs2v_train.model import vision_width

    folder = save_toy_vision_encoder(ToyVisionEncoder(32, 8), tmp_path / "vision")
    assert vision_width(folder) == 3 * 8 * 8


def test_a_run_waiting_for_its_w2_bench_shows_in_the_w1_tables_only():
    from experiments.toy_ablation.aggregate import finished

    waiting = {**_fake("base", 0, [10.0, 12.0, 14.0], [0.5, 0.6, 0.7]), "status": "scoring"}
    half_trained = {**_fake("base", 1, [10.0, 12.0, 14.0], [0.5, 0.6, 0.7]), "status": "training", "steps_done": 2400}
    records = {"base-s0": waiting, "base-s1": half_trained}
    assert [r["seed"] for r in finished(records, "base", "w1")] == [0]  # trained to the end, W1 scored
    assert finished(records, "base", "w2") == []
    text = ta.markdown(records)
    assert "| base | base: TS-RoPE" in text and "W2 bench to do" in text


def _with_w2(record: dict, own: list[float], leak: list[float], use: list[float]) -> dict:
    def ci(values):
        return {"mean": sum(values) / len(values), "lo": min(values), "hi": max(values), "n": len(values)}

    values = {"causal_crosstalk_own": own, "causal_crosstalk": leak, "reference_use": use}
    record["bench"]["w2"] = {"scenes": len(own), "seeds": [0], "rows": {"multi": {m: ci(v) for m, v in values.items()}},
                             "per_scene": {"multi": values}}
    return record


def test_the_w2_verdict_reads_own_as_the_leak_is_measured_and_pairs_leak_with_vanilla():
    from experiments.toy_ablation.report import _w2_table

    # base: own 0.55 (colour-set membership, as the leak) although face-by-face reference use is 0.42.
    base = _with_w2(_fake("base", 0, [10.0] * 3, [0.5] * 3), [0.5, 0.55, 0.6], [0.01, 0.02, 0.03], [0.4, 0.42, 0.44])
    vanilla = _with_w2(_fake("vanilla", 0, [10.0] * 3, [0.5] * 3), [0.3, 0.4, 0.5], [0.05, 0.06, 0.07], [0.3] * 3)
    lines = {ln.split(" | ")[0]: ln for ln in _w2_table({"base-s0": base, "vanilla-s0": vanilla})}
    assert "follows its references" in lines["| base"] and "-0.040 [" in lines["| base"]  # leak - vanilla, paired
    assert "inconclusive (own < 0.5)" in lines["| vanilla"]
    assert lines["| base"].index("0.550 [") < lines["| base"].index("0.020 [") < lines["| base"].index("0.420 [")


def test_the_normalised_hidden_face_accuracy_is_a_ratio_of_means():
    r = _fake("base", 0, [10.0, 12.0, 14.0], [0.5, 0.6, 0.7])
    rows = r["bench"]["w1"]["per_scene"]["multi"]
    # 19 scenes at 0.4 / 0.5 and one where frame 0 is almost never right: 0.01 / 0.0001 (a ratio of 100).
    rows["hidden_face_accuracy"], rows["hidden_face_visible"] = [0.4] * 19 + [0.01], [0.5] * 19 + [0.0001]
    ratio = (0.4 * 19 + 0.01) / (0.5 * 19 + 0.0001)
    r["bench"]["w1"]["rows"]["multi"]["hidden_face_normalised"] = {"mean": ratio, "lo": 0, "hi": 1, "n": 20}
    c = cell([r], "w1", "multi", "hidden_face_normalised")
    assert c["lo"] <= ratio <= c["hi"] < 1.0 and c["scenes"] == 20  # a mean of per-scene ratios would be 5.76
    # a row that does not draw frame 0 (no references): no ratio at all, whatever the bench stored
    rows["hidden_face_accuracy"], rows["hidden_face_visible"] = [0.01] * 20, [0.002] * 20
    assert cell([r], "w1", "multi", "hidden_face_normalised") is None


def test_compare_pairs_benches_scene_by_scene(tmp_path, capsys):
    from experiments.toy_ablation.compare import main as compare_main, paired_differences

    def bench(folder: Path, use: list[float]) -> Path:
        folder.mkdir()
        lines = []
        for scene, u in enumerate(use):
            for seed in (0, 1):
                lines.append({"key": f"multi/{scene}/{seed}/orig", "row": "multi", "scene": scene, "seed": seed,
                              "variant": "orig", "metrics": {"psnr": 20.0 + scene, "hidden_face_accuracy": u}})
                lines.append({"key": f"multi/{scene}/{seed}/recolour0", "row": "multi", "scene": scene, "seed": seed,
                              "variant": "recolour0", "metrics": {"reference_use": u + 0.1 * seed}})
        (folder / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
        return folder

    a = bench(tmp_path / "a", [0.5, 0.6, 0.7, 0.8])
    b = bench(tmp_path / "b", [0.4, 0.5, 0.6, 0.7])
    diffs = paired_differences(a, b, 4, [0, 1])
    # every scene is 0.1 apart: the paired interval is that exactly (an unpaired one would be wide)
    assert diffs["reference_use"]["mean"] == pytest.approx(0.1) and diffs["reference_use"]["n"] == 4
    assert diffs["reference_use"]["lo"] == pytest.approx(0.1) and diffs["reference_use"]["hi"] == pytest.approx(0.1)
    assert diffs["psnr"]["mean"] == pytest.approx(0.0)
    assert paired_differences(a, b, 2, [0, 1])["reference_use"]["n"] == 2  # only the first scenes
    assert compare_main([str(a), str(tmp_path / "none"), "--scenes", "4"]) == 2
    assert "has no records.jsonl" in capsys.readouterr().err


def test_a_result_update_waits_while_another_holds_the_runs_lock(tmp_path):
    """A worker and the `handoff` command update one result file: one waits while the other reads and writes."""
    import threading

    from experiments.toy_ablation.results import read_result, result_lock, update_result

    update_result(tmp_path, "base-s0", {"run": "base-s0"}, status="training")
    finished = threading.Event()

    def worker():
        update_result(tmp_path, "base-s0", {"run": "base-s0"}, status="done")
        finished.set()

    other = threading.Thread(target=worker)
    with result_lock(tmp_path, "base-s0"):
        update_result(tmp_path, "base-s0", {"run": "base-s0"}, handoff={"step": 8})  # re-entrant for its holder
        other.start()
        assert not finished.wait(0.5)
        assert read_result(tmp_path, "base-s0")["status"] == "training"
    other.join(30)
    assert read_result(tmp_path, "base-s0") == {"run": "base-s0", "status": "done", "handoff": {"step": 8}}


def test_device_auto_takes_a_gpu_when_torch_sees_one_and_cpu_hides_it_from_the_workers(tmp_path, monkeypatch):
    import subprocess
    import sys

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert run_module.resolve_device("auto") == "cpu" and run_module.resolve_device("cpu") == "cpu"
    with pytest.raises(MVS2VError, match="--device cuda: torch .* sees no CUDA GPU here; use --device cpu"):
        run_module.resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert run_module.resolve_device("auto") == "cuda" and run_module.resolve_device("cpu") == "cpu"

    ctx = WorkerContext("out", "init", "results", device="cuda")
    argv = run_module.worker_argv(Layout(tmp_path), ctx, "base-s0")
    assert argv[argv.index("--device") + 1] == "cuda" and argv[-2:] == ["--worker", "base-s0"]
    show = [sys.executable, "-c", "import os; print(repr(os.environ.get('CUDA_VISIBLE_DEVICES')))"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    for device, seen in (("cpu", "''"), ("cuda", "'0'")):
        proc = run_module.spawn(show, 1, tmp_path / f"{device}.log", device)
        assert proc.wait(60) == 0
        assert (tmp_path / f"{device}.log").read_text().strip() == seen

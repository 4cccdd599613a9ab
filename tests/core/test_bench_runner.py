"""``mvs2v bench``: end to end on the shipped toy cases with the bundled model, resume, bad case files, and the
ComfyUI mode against the fake server (tests/fake_comfyui.py)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from mvs2v_core.benchmarking import runner
from mvs2v_core.benchmarking.cases import load_cases
from mvs2v_core.cli import main
from mvs2v_core.errors import MVS2VError
from tests.fake_comfyui import FakeComfyUI, Job

REPO = Path(__file__).resolve().parents[2]
CASES = REPO / "benchmarks" / "cases" / "toy" / "cases.jsonl"
TOY = REPO / "mvs2v_toy" / "assets" / "toy_demo"
MODELS = ["--model", f"toy={TOY}", "--model", f"no_adapter={TOY},adapter=none,scheme=vanilla"]


def bench(out: Path, *extra: str) -> int:
    return main(["bench", "--cases", str(CASES), "--out", str(out), "--steps", "2", "--device", "cpu", *extra])


def test_shipped_cases_two_models_side_by_side(tmp_path, capsys):
    assert bench(tmp_path, *MODELS) == 0
    ids = [c.id for c in load_cases(CASES)]
    assert len(ids) == 4
    for model in ("toy", "no_adapter"):
        for case in ids:
            record = json.loads((tmp_path / "results" / model / f"{case}.json").read_text())
            assert (tmp_path / record["video"]).is_file()
            assert record["key"]["steps"] == 2 and record["generation"]["settings"]["steps"] == 2
            assert record["metrics"]["motion_amplitude"]["value"] >= 0
            assert "--dino-model" in record["skipped"]["s_v2r_dino"]  # no weights: skipped with the flag named
    rows = list(csv.DictReader((tmp_path / "leaderboard.csv").open()))
    assert {(r["model"], r["metric"]) for r in rows} >= {("toy", "motion_amplitude"), ("no_adapter", "motion_variation")}
    for row in rows:
        model, metric = row["model"], row["metric"]
        values = [json.loads((tmp_path / "results" / model / f"{c}.json").read_text())["metrics"][metric]["value"]
                  for c in ids]
        assert float(row["mean"]) == pytest.approx(np.mean(values))
        assert float(row["lo"]) <= float(row["mean"]) <= float(row["hi"]) and row["n"] == "4"
    md = (tmp_path / "leaderboard.md").read_text()
    assert "| toy |" in md and "| no_adapter |" in md and "s_v2r_dino: needs a DINOv2" in md
    diffs = md.split("## Differences from toy")[1].split("## Metrics")[0]
    amp = {m: [json.loads((tmp_path / "results" / m / f"{c}.json").read_text())["metrics"]["motion_amplitude"]["value"]
               for c in ids] for m in ("toy", "no_adapter")}
    assert f"| no_adapter | {np.mean(np.subtract(amp['no_adapter'], amp['toy'])):+.4g} [" in diffs
    assert (tmp_path / "plots" / "motion_amplitude.png").read_bytes()[:4] == b"\x89PNG"
    assert "cached" not in capsys.readouterr().out


def test_interrupted_run_resumes_with_only_the_rest(tmp_path, monkeypatch, capsys):
    real_run_one = runner.run_one
    calls = []

    def stop_after_first(*args, **kwargs):
        if calls:
            raise KeyboardInterrupt
        calls.append(args[2].id)
        return real_run_one(*args, **kwargs)

    monkeypatch.setattr(runner, "run_one", stop_after_first)
    assert bench(tmp_path, "--model", f"toy={TOY}") == 130
    first = tmp_path / "results" / "toy" / "w1_scene0.json"
    kept = first.read_bytes()
    assert sorted(p.name for p in (tmp_path / "results" / "toy").iterdir()) == ["w1_scene0.json"]  # no partial file
    assert not (tmp_path / "leaderboard.csv").exists()

    done = []
    monkeypatch.setattr(runner, "run_one", lambda *a, **k: done.append(a[2].id) or real_run_one(*a, **k))
    capsys.readouterr()
    assert bench(tmp_path, "--model", f"toy={TOY}") == 0
    assert done == ["w1_scene1", "w1_scene2", "w1_scene3"]
    assert first.read_bytes() == kept
    assert "[1/4] toy / w1_scene0: cached" in capsys.readouterr().out
    # Another --steps is another run: nothing is reused.
    done.clear()
    assert bench(tmp_path, "--model", f"toy={TOY}", "--steps", "1") == 0
    assert len(done) == 4


def test_a_failing_case_does_not_stop_the_others_and_a_rerun_retries_only_it(tmp_path, monkeypatch, capsys):
    real_run_one = runner.run_one

    def fail_on_scene1(*args, **kwargs):
        if args[2].id == "w1_scene1":
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\n(deep torch detail)")
        return real_run_one(*args, **kwargs)

    monkeypatch.setattr(runner, "run_one", fail_on_scene1)
    assert bench(tmp_path, "--model", f"toy={TOY}") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "1 of 4 runs failed (toy / w1_scene1: RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB)" in err
    assert "retries only the failed ones" in err
    results = sorted(p.name for p in (tmp_path / "results" / "toy").iterdir())
    assert results == ["w1_scene0.json", "w1_scene2.json", "w1_scene3.json"]  # the ones after it ran too
    failure = tmp_path / "failures" / "toy" / "w1_scene1.txt"
    assert "Traceback" in failure.read_text() and "fail_on_scene1" in failure.read_text()
    assert not (tmp_path / "leaderboard.csv").exists()

    done = []
    monkeypatch.setattr(runner, "run_one", lambda *a, **k: done.append(a[2].id) or real_run_one(*a, **k))
    assert bench(tmp_path, "--model", f"toy={TOY}") == 0
    assert done == ["w1_scene1"]
    assert not failure.exists() and (tmp_path / "leaderboard.csv").is_file()


def _case(**over) -> dict:
    case = {"id": "c1", "prompt": "a cube turns", "seed": 1,
            "subjects": [{"name": "cube", "kind": "object", "views": [{"image": "front.png", "view": "front"}]}]}
    case.update(over)
    return case


@pytest.mark.parametrize("line, message", [
    ("{not json", r"line 1 is not JSON"),
    (json.dumps(_case(subjects=[])), r"subjects: List should have at least 1 item"),
    (json.dumps(_case(id="../escape")), r"id: String should match pattern"),
    (json.dumps(_case(colour="red")), r"colour: Extra inputs are not permitted"),
    (json.dumps(_case(frames=8)), r"frames 8 must be 4n\+1"),
    (json.dumps(_case(subjects=[{"name": "a", "views": [{"image": "front.png", "view": "up"}]}])),
     r"subjects.0.views.0.view: .*up"),
    (json.dumps(_case(subjects=[{"name": "a", "kind": "dog", "views": [{"image": "front.png"}]}])),
     r"subjects.0.kind: Input should be 'person' or 'object'"),
    (json.dumps(_case(subjects=[{"name": "a", "views": [{"image": "missing.png"}]}])),
     r"subject 'a': image missing.png does not exist"),
    (json.dumps(_case()) + "\n" + json.dumps(_case()), r"case id 'c1' is used twice"),
    (json.dumps(_case(subjects=[{"name": "a", "views": [{"image": "front.png", "view": "front", "frontal": True},
                                                       {"image": "front.png", "view": "back", "frontal": True}]}])),
     r"\(case 'c1'\): subjects.0: subject 'a' has views \[0, 1\] marked frontal; mark at most one"),
    (json.dumps(_case(subjects=[{"name": "a", "views": [{"image": "front.png", "frontal": "yes"}]}])),
     r"subjects.0.views.0.frontal: Input should be a valid boolean"),
    ("", r"holds no case"),
])
def test_bad_case_files_are_one_line(tmp_path, line, message):
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "front.png")
    path = tmp_path / "cases.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(MVS2VError, match=message) as info:
        load_cases(path)
    assert "\n" not in str(info.value)


def test_bad_command_lines_are_one_line(tmp_path, capsys):
    assert bench(tmp_path / "o") == 2
    assert "needs models" in capsys.readouterr().err
    assert bench(tmp_path / "o", "--model", f"toy={TOY}", "--comfyui", "http://127.0.0.1:1", "--workflow", "w.json") == 2
    assert "not both" in capsys.readouterr().err
    assert bench(tmp_path / "o", "--model", f"toy={TOY}", "--model", f"toy={TOY}") == 2
    assert "given twice" in capsys.readouterr().err
    assert bench(tmp_path / "o", "--model", f"toy={TOY},colour=red") == 2
    assert "is not KEY=VALUE" in capsys.readouterr().err
    assert bench(tmp_path / "o", "--model", f"toy={TOY}", "--steps", "0") == 2
    assert "--steps 0 must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "o" / "videos").exists()


def test_a_workflow_the_cases_cannot_fill_stops_before_any_upload(tmp_path, capsys):
    workflow = tmp_path / "wf.json"
    workflow.write_text(json.dumps({"load": {"class_type": "LoadImage", "inputs": {"image": "{{subject1_view0}}"}}}))
    with FakeComfyUI() as fake:
        assert main(["bench", "--cases", str(CASES), "--out", str(tmp_path / "o"), "--comfyui", fake.url,
                     "--workflow", str(workflow)]) == 2
    err = capsys.readouterr().err
    assert "case w1_scene0 with --workflow" in err and "{{subject1_view0}} have no value" in err
    assert fake.uploads == {} and not any(r[1] == "/prompt" for r in fake.requests)


WORKFLOW = {
    "load": {"class_type": "LoadImage", "inputs": {"image": "{{subject0_view0}}"}},
    "save": {"class_type": "SaveImage", "inputs": {"images": ["load", 0], "filename_prefix": "{{prefix}}_s{{seed}}",
                                                     "width": "{{width}}"}},
}


def test_comfyui_mode_uploads_fills_runs_downloads_and_scores(tmp_path):
    from PIL import Image

    frames = [Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)) for i in range(5)]
    anim = tmp_path / "anim.webp"
    frames[0].save(anim, save_all=True, append_images=frames[1:], lossless=True, duration=100)
    workflow = tmp_path / "wf_api.json"
    workflow.write_text(json.dumps(WORKFLOW))
    with FakeComfyUI() as fake:
        fake.object_info["SaveImage"]["input"]["required"]["width"] = ["INT", {}]
        prompts = []
        fake.job = lambda p: prompts.append(p) or Job(0.1, {"save": {"images": [
            {"filename": "out.webp", "subfolder": "mvs2v_bench", "type": "output"}]}})
        fake.files[("output", "mvs2v_bench", "out.webp")] = anim.read_bytes()
        assert main(["bench", "--cases", str(CASES), "--out", str(tmp_path / "out"), "--comfyui", fake.url,
                     "--workflow", f"flat={workflow}", "--no-plots"]) == 0
    assert len(prompts) == 4
    assert prompts[0]["load"]["inputs"]["image"] == "mvs2v_bench/w1_scene0/cube/cube_front.png"
    assert prompts[2]["save"]["inputs"]["filename_prefix"] == "mvs2v_bench/flat/w1_scene2_s2"
    assert prompts[0]["save"]["inputs"]["width"] == 32  # a whole placeholder keeps the value's type
    assert "mvs2v_bench/w1_scene3/cube/cube_right.png" in fake.uploads
    record = json.loads((tmp_path / "out" / "results" / "flat" / "w1_scene0.json").read_text())
    assert record["generation"]["outputs"] == ["out.webp"]
    from mvs2v_core.pipeline.video_io import read_video

    video = read_video(tmp_path / "out" / record["video"]).numpy()
    assert video.shape == (5, 32, 32, 3) and int(video[4].mean()) == 160
    assert record["metrics"]["motion_amplitude"]["value"] == pytest.approx(0.0, abs=1e-3)  # flat frames: no flow


# ---- the frontal (start) view ------------------------------------------------------------------------------------


def test_shipped_cases_mark_the_start_view_frontal():
    cases = load_cases(CASES)
    starts = [c.prompt.split(" from its ")[1].split()[0] for c in cases]  # "... turns right from its back on ..."
    assert starts == ["front", "front", "back", "back"]
    for case, start in zip(cases, starts):
        (cube,) = case.subjects
        assert cube.labels[cube.frontal] == start
        assert case.fingerprint()["subjects"][0]["frontal"] == cube.frontal


def test_an_unflagged_case_keeps_its_fingerprint(tmp_path):
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "front.png")
    (tmp_path / "cases.jsonl").write_text(json.dumps(_case()) + "\n")
    (case,) = load_cases(tmp_path / "cases.jsonl")
    assert case.subjects[0].frontal is None
    # The fingerprint as it was before the frontal flag existed: cached results stay valid.
    assert set(case.fingerprint()["subjects"][0]) == {"name", "kind", "views", "box", "mask"}


def test_frontal_placeholder_is_the_flagged_index_or_minus_one(tmp_path):
    from PIL import Image

    from mvs2v_core.benchmarking.backends import workflow_values
    from mvs2v_core.comfyui_http import fill_placeholders

    Image.new("RGB", (8, 8)).save(tmp_path / "v.png")
    views = [{"image": "v.png", "view": lab} for lab in ("front", "left", "back")]
    flagged = [dict(v, frontal=True) if v["view"] == "left" else v for v in views]
    line = _case(subjects=[{"name": "a", "views": views}, {"name": "b", "views": flagged}])
    (tmp_path / "cases.jsonl").write_text(json.dumps(line) + "\n")
    (case,) = load_cases(tmp_path / "cases.jsonl")
    values = workflow_values(case, [["a0", "a1", "a2"], ["b0", "b1", "b2"]], None, "p")
    assert (values["subject0_frontal"], values["subject1_frontal"]) == (-1, 1)
    node = {"s": {"class_type": "MVS2VSubject", "inputs": {"frontal_view": "{{subject1_frontal}}",
                                                            "name": "{{subject0_name}}@{{subject0_frontal}}"}}}
    filled = fill_placeholders(node, values)["s"]["inputs"]
    assert filled["frontal_view"] == 1 and type(filled["frontal_view"]) is int  # MV-S2V Subject's INT input
    assert filled["name"] == "a@-1"


def _anchored_copy_of_the_toy_model(folder: Path) -> Path:
    """The bundled toy model with its adapter saying ``slot_anchor = frontal`` (whatever the bundled one says)."""
    import shutil
    from dataclasses import replace

    from mvs2v_core.adapter import load_adapter, save_adapter

    shutil.copytree(TOY, folder)
    adapter = load_adapter(folder / "adapter.safetensors")
    refs = replace(adapter.metadata.references, slot_anchor="frontal")
    adapter.metadata = replace(adapter.metadata, references=refs)
    save_adapter(folder / "adapter.safetensors", adapter)
    return folder


def test_frontal_flag_reaches_the_pipeline_and_slot_zero_of_an_anchored_model(tmp_path, monkeypatch):
    from dataclasses import replace

    from mvs2v_core.benchmarking.backends import PipelineBackend, parse_model_spec
    from mvs2v_core.pipeline import generate as generate_module

    built = []
    real_layout_for = generate_module.layout_for
    monkeypatch.setattr(generate_module, "layout_for",
                        lambda subjects, refs: built.append((list(subjects), refs, real_layout_for(subjects, refs)))
                        or built[-1][2])
    model = _anchored_copy_of_the_toy_model(tmp_path / "anchored")
    backend = PipelineBackend(parse_model_spec(f"anchored={model}"), device="cpu", steps=1)
    case = load_cases(CASES)[2]  # "... turns left from its back ...": the back view is flagged
    record = backend.generate(case, tmp_path / "video.mp4")
    assert (tmp_path / "video.mp4").is_file() and "slot_anchor=<SlotAnchor.FRONTAL" in record["references"]
    (subjects, refs, layout), = built
    assert [s.frontal for s in subjects] == [2] and subjects[0].labels == ["front", "left", "back", "right"]
    (cube,) = layout.subjects
    assert cube.slots[0].source == 2 and cube.frontal == 0  # the start (back) view in slot 0
    assert cube.slots[2].source == 0  # the front, 180 degrees on from it
    # The same subjects, canonical: slot 0 is the front again, the flag only names the frontal slot.
    canonical = real_layout_for(subjects, replace(refs, slot_anchor="canonical")).subjects[0]
    assert canonical.slots[0].source == 0 and canonical.slots[canonical.frontal].source == 2

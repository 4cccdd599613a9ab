"""mvs2v-data bookkeeping on the toy world: config errors, items, shards, resume, full disk, bad media,
ComfyUI servers (a fake one speaking the real API), and the manifest through `mvs2v-train validate-data`."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pytest

from data_helpers import write_items

pytest.importorskip("cv2")
pytest.importorskip("pydantic")

from mvs2v_core.errors import MVS2VError  # noqa: E402
from mvs2v_data import generate  # noqa: E402
from mvs2v_data.config import ConfigError, load_config, parse_config  # noqa: E402
from mvs2v_data.work import in_shard, parse_shard  # noqa: E402
from mvs2v_toy.data_stages import ToyDataBackend  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


class CountingToy(ToyDataBackend):
    """The toy back-end, counting its calls; ``fail_at`` raises on that generate_video call (a crash mid-stage)."""

    calls: dict[str, int] = {}
    fail_at: int | None = None

    def generate_image(self, record, dest, seed):
        CountingToy.calls["image"] = CountingToy.calls.get("image", 0) + 1
        return super().generate_image(record, dest, seed)

    def generate_video(self, record, image, dest, seed):
        n = CountingToy.calls["video"] = CountingToy.calls.get("video", 0) + 1
        if CountingToy.fail_at is not None and n == CountingToy.fail_at:
            raise RuntimeError("killed mid-stage")
        return super().generate_video(record, image, dest, seed)


@pytest.fixture
def toy_backend(monkeypatch):
    """``generate.backend = "toy"`` without relying on installed entry-point metadata."""
    CountingToy.calls, CountingToy.fail_at = {}, None
    monkeypatch.setattr(generate, "backend_factories", lambda: {"toy": CountingToy, "comfyui": generate.ComfyUIBackend})
    return CountingToy


def toy_config(tmp: Path, n: int, extra: str = "") -> Path:
    write_items(tmp / "items.jsonl", [{"id": f"toy{i:02d}", "prompt": "a toy", "meta": {"toy_index": i}}
                                      for i in range(n)])
    path = tmp / "data.toml"
    path.write_text(f'[work]\ndir = "work"\ninputs = "items.jsonl"\n[generate]\nbackend = "toy"\n'
                    f'[filters]\nblur_min = 0\nmin_views = 1\n{extra}')
    return path


def records(tmp: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((tmp / "work" / "items").glob("*.json"))}


# ---- config and items ---------------------------------------------------------------------------------


def test_config_errors_name_the_key_and_the_allowed_ones(tmp_path: Path, data_cli) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config({"filters": {"blur_mni": 3.0}})
    assert str(e.value).startswith("filters.blur_mni is not a key of [filters] (did you mean 'blur_min'?); "
                                   "the known ones are aesthetic_clip, aesthetic_min")
    with pytest.raises(ConfigError, match="^filterz is not a table of the config .*the known ones are caption, "):
        parse_config({"filterz": {}})
    with pytest.raises(ConfigError, match=r"(?s)2 problems.*references.count must be an integer in \[1, 16\], got '4'.*"
                                          r"filters.identity_curve: .*increasing"):
        parse_config({"references": {"count": "4"}, "filters": {"identity_curve": [[30, 0.4], [0, 0.5]]}})
    bad = tmp_path / "bad.toml"
    bad.write_text("[work]\ndirr = 'x'\n")
    rc, out, err = data_cli("filter", "--config", bad)
    assert rc == 2 and err.count("\n") == 1 and err.startswith("error: work.dirr is not a key of [work]")
    assert data_cli("run", "--config", tmp_path / "missing.toml")[2] == f"error: config file '{tmp_path / 'missing.toml'}' not found\n"
    example = load_config(REPO / "examples" / "data" / "faces.toml")  # the commented examples stay valid
    assert example.references.yaw_bins and load_config(REPO / "examples" / "data" / "toy.toml").generate.backend == "toy"


@pytest.mark.parametrize("row, message", [
    ({"id": "a", "prompt": "p", "captoin": "x"}, "'captoin' is not an item key"),
    ({"prompt": "p"}, "every item needs an 'id'"),
    ({"id": "a"}, "has none of prompt, image, video"),
    ({"id": "a", "prompt": "p", "kind": "car"}, "kind is 'car'"),
])
def test_bad_items_are_one_line_with_their_line(tmp_path: Path, data_cli, row: dict, message: str) -> None:
    cfg = toy_config(tmp_path, 1)
    write_items(tmp_path / "items.jsonl", [{"id": "ok", "prompt": "p"}, row])
    rc, _, err = data_cli("caption", "--config", cfg)
    assert rc == 2 and "items.jsonl:2: " in err and message in err and err.count("\n") == 1


def test_shards_partition_the_items(tmp_path: Path, toy_backend, data_cli) -> None:
    ids = [f"item{i}" for i in range(300)]
    owners = [[s for s in range(3) if in_shard(i, (s, 3))] for i in ids]
    assert all(len(o) == 1 for o in owners) and {o[0] for o in owners} == {0, 1, 2}
    assert parse_shard("1/3") == (1, 3) and parse_shard(None) == (0, 1)
    for text in ("3/3", "a/b", "-1/2"):
        with pytest.raises(MVS2VError, match="must be I/N"):
            parse_shard(text)
    cfg = toy_config(tmp_path, 6)
    assert data_cli("generate-images", "--config", cfg, "--shard", "0/2")[0] == 0
    first = set(records(tmp_path))
    assert data_cli("generate-images", "--config", cfg, "--shard", "1/2", "--workers", "2")[0] == 0
    recs = records(tmp_path)
    assert len(recs) == 6 and first and first < set(recs) and toy_backend.calls["image"] == 6
    assert all(r["stages"]["generate-images"]["state"] == "done" for r in recs.values())


# ---- resume, full disk, bad media -----------------------------------------------------------------------


def test_a_crash_mid_stage_loses_nothing_and_redoes_nothing(tmp_path: Path, toy_backend, data_cli) -> None:
    cfg = toy_config(tmp_path, 5)
    toy_backend.fail_at = 3
    with pytest.raises(RuntimeError, match="killed mid-stage"):
        data_cli("run", "--config", cfg)
    recs = records(tmp_path)
    done = sorted(i for i, r in recs.items() if "generate-videos" in r["stages"])
    assert len(recs) == 5 and len(done) == 2 and toy_backend.calls == {"image": 5, "video": 3}
    assert all(r["stages"]["generate-images"]["state"] == "done" for r in recs.values())
    assert not list((tmp_path / "work" / "items").rglob(".*"))  # no temporary file left behind
    toy_backend.fail_at, toy_backend.calls = None, {}
    rc, out, _ = data_cli("run", "--config", cfg)
    assert rc == 0 and toy_backend.calls == {"video": 3}  # images not redone, only the 3 missing videos
    assert "generate-videos: 3 done, 0 skipped, 0 dropped, 2 finished before" in out
    assert all(r["stages"]["filter"]["state"] in ("done", "dropped") for r in records(tmp_path).values())
    toy_backend.calls = {}
    assert data_cli("run", "--config", cfg)[0] == 0 and toy_backend.calls == {}  # a re-run does nothing again


def test_a_full_disk_is_one_line_and_the_records_stay_intact(tmp_path: Path, toy_backend, data_cli,
                                                             monkeypatch) -> None:
    import mvs2v_data.work as work

    cfg = toy_config(tmp_path, 4)
    assert data_cli("generate-images", "--config", cfg)[0] == 0
    rc, out, _ = data_cli("filter", "--config", cfg)  # stages run in order: the videos are not made yet
    assert rc == 0 and "0 done, 0 skipped, 0 dropped, 0 finished before, 4 waiting for earlier stages" in out
    real, count = work.atomic_write, {"n": 0}

    def full_after_two(path, suffix=".tmp"):
        count["n"] += 1
        if count["n"] > 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, suffix)

    monkeypatch.setattr(work, "atomic_write", full_after_two)
    rc, _, err = data_cli("generate-videos", "--config", cfg)
    assert rc == 2 and err.count("\n") == 1 and "No space left on device" in err and "re-run the same command" in err
    recs = records(tmp_path)  # every record still parses; two items finished the stage
    assert len(recs) == 4 and sum("generate-videos" in r["stages"] for r in recs.values()) == 2
    monkeypatch.setattr(work, "atomic_write", real)
    assert data_cli("generate-videos", "--config", cfg)[0] == 0 and toy_backend.calls["video"] == 2 + 1 + 2
    assert all("generate-videos" in r["stages"] for r in records(tmp_path).values())


def test_corrupt_videos_and_images_drop_their_item_with_the_reason(tmp_path: Path, data_cli) -> None:
    from data_helpers import write_clip, write_png

    (tmp_path / "broken.mp4").write_bytes(b"not a video at all")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG but not really")
    clip = write_clip(np.random.default_rng(0).integers(0, 255, (8, 32, 32, 3)), tmp_path / "good.mp4")
    good_view = write_png(np.random.default_rng(1).integers(0, 255, (32, 32, 3), dtype=np.uint8), tmp_path / "v.png")
    write_items(tmp_path / "items.jsonl", [
        {"id": "bad-video", "video": str(tmp_path / "broken.mp4"), "caption": "c", "kind": "object"},
        {"id": "bad-view", "video": clip, "caption": "c", "kind": "object",
         "views": [str(tmp_path / "broken.png"), good_view]},
        {"id": "good", "video": clip, "caption": "c", "kind": "object"}])
    cfg = tmp_path / "data.toml"
    cfg.write_text('[work]\ninputs = "items.jsonl"\n[filters]\nblur_min = 10\nmin_views = 1\n')
    rc, out, err = data_cli("run", "--config", cfg)
    assert rc == 0, err
    recs = records(tmp_path)
    assert recs["bad-video"]["dropped"]["stage"] == "extract-references"
    assert recs["bad-video"]["dropped"]["reason"].startswith("bad input: Cannot decode")
    assert [v["dropped"] for v in recs["bad-view"]["views"]][-2:] == ["unreadable", None]
    assert recs["good"]["dropped"] is None and "manifest" in out


def test_blur_filter_drops_smooth_views(tmp_path: Path, data_cli) -> None:
    from data_helpers import write_clip

    sharp = np.random.default_rng(0).integers(0, 255, (8, 32, 32, 3))
    smooth = np.full((8, 32, 32, 3), 128)
    write_items(tmp_path / "items.jsonl", [
        {"id": "sharp", "video": write_clip(sharp, tmp_path / "s.mp4"), "caption": "c", "kind": "object"},
        {"id": "smooth", "video": write_clip(smooth, tmp_path / "f.mp4"), "caption": "c", "kind": "object"}])
    cfg = tmp_path / "data.toml"
    cfg.write_text('[work]\ninputs = "items.jsonl"\n[filters]\nblur_min = 50\nmin_views = 1\n')
    assert data_cli("run", "--config", cfg)[0] == 0
    recs = records(tmp_path)
    assert {v["dropped"] for v in recs["smooth"]["views"]} == {"blur"} and recs["smooth"]["views"][0]["metrics"]["blur"] == 0
    assert recs["smooth"]["dropped"]["reason"].startswith("coverage") and recs["sharp"]["dropped"] is None


# ---- ComfyUI servers --------------------------------------------------------------------------------------


def _png_bytes(colour: int) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (colour, 0, 0)).save(buf, format="PNG")
    return buf.getvalue()


def test_generation_runs_on_every_server_and_checks_them_first(tmp_path: Path, data_cli) -> None:
    from tests.fake_comfyui import FakeComfyUI, Job

    wf = {"1": {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 32}},
          "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "{{prompt}} {{seed}}"}}}
    (tmp_path / "t2i.json").write_text(json.dumps(wf))
    write_items(tmp_path / "items.jsonl", [{"id": f"i{k}", "prompt": f"subject {k}"} for k in range(4)])
    with FakeComfyUI() as a, FakeComfyUI() as b:
        for n, fake in enumerate((a, b)):
            fake.files[("output", "", "out.png")] = _png_bytes(10 + n)
            fake.job = lambda prompt: Job(outputs={"2": {"images": [{"filename": "out.png", "subfolder": "",
                                                                     "type": "output"}]}})
        cfg = tmp_path / "data.toml"
        cfg.write_text(f'[work]\ninputs = "items.jsonl"\n[generate]\nbackend = "comfyui"\nservers = ["{a.url}", '
                       f'"{b.url}"]\nretries = 0\nbackoff = 0.0\nimage_workflow = "t2i.json"\n')
        rc, out, err = data_cli("generate-images", "--config", cfg, "--workers", "2")
        assert rc == 0, err
        for fake in (a, b):  # each server was checked (object_info) before any job was queued to either
            routes = [r for _, r in fake.requests]
            assert routes[0] == "/system_stats" and "/object_info" in routes
        prompts = [r for fake in (a, b) for m, r in fake.requests if m == "POST" and r == "/prompt"]
        assert len(prompts) == 4 and all(any(r == "/prompt" for _, r in f.requests) for f in (a, b))
        recs = records(tmp_path)
        from PIL import Image

        reds = {Image.open(tmp_path / "work" / r["image"]).getpixel((0, 0))[0] for r in recs.values()}
        assert reds == {10, 11}  # images came from both servers
        for fake in (a, b):  # a job that fails on the server: one line naming the server and the item, not a drop
            fake.job = lambda prompt: Job(error={"node_id": "2", "node_type": "SaveImage",
                                                 "exception_message": "out of memory"})
        write_items(tmp_path / "items.jsonl", [{"id": "fails", "prompt": "p"}])
        rc, _, err = data_cli("generate-images", "--config", cfg)
        assert rc == 2 and err.count("\n") == 1 and "item 'fails'" in err and "out of memory" in err
        assert records(tmp_path)["fails"]["stages"] == {} and len(records(tmp_path)) == 5
        a.object_info.pop("EmptyImage")  # a server without a node type: one line before any job
        write_items(tmp_path / "items.jsonl", [{"id": "new", "prompt": "p"}])
        rc, _, err = data_cli("generate-images", "--config", cfg)
        assert rc == 2 and err.count("\n") == 1 and f"ComfyUI server {a.url}: " in err and "no node type EmptyImage" in err


def test_an_unreachable_server_is_one_line(tmp_path: Path, data_cli) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "t2i.json").write_text(json.dumps({"1": {"class_type": "EmptyImage", "inputs": {}}}))
    write_items(tmp_path / "items.jsonl", [{"id": "a", "prompt": "p"}])
    (tmp_path / "data.toml").write_text(f'[work]\ninputs = "items.jsonl"\n[generate]\nbackend = "comfyui"\n'
                                        f'servers = ["http://127.0.0.1:{port}"]\nretries = 0\nimage_workflow = "t2i.json"\n')
    rc, _, err = data_cli("run", "--config", tmp_path / "data.toml")
    assert rc == 2 and err.count("\n") == 1 and f"127.0.0.1:{port}" in err and "not reachable" in err
    assert json.loads((tmp_path / "work" / "items" / "a.json").read_text())["stages"] == {}


# ---- end to end: toy world -> manifest -> trainer ---------------------------------------------------------


def test_toy_world_to_a_manifest_the_trainer_validates_and_trains_on(tmp_path: Path, toy_backend, data_cli,
                                                                   capsys) -> None:
    pytest.importorskip("torch")
    tomllib = pytest.importorskip("tomllib")
    tomli_w = pytest.importorskip("tomli_w")
    from mvs2v_train.cli import main as train_main
    from mvs2v_train.testing import TINY_CONFIG, make_toy_world

    cfg = toy_config(tmp_path, 4, "[references]\ncount = 3\n")
    rc, out, err = data_cli("run", "--config", cfg)
    assert rc == 0, err
    manifest = tmp_path / "work" / "manifest.jsonl"
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert len(rows) == 4 and all(r["subjects"][0]["views"][0].get("frontal") for r in rows)
    assert all(r["video"].endswith("train.mp4") for r in rows)
    paths = make_toy_world(tmp_path / "toy", n_train=1, n_val=0)
    train = tomllib.loads(TINY_CONFIG.read_text())
    for key in ("dit", "vae", "text_encoder", "vision_encoder"):
        train["model"][key] = str(paths[key])
    train["data"].update(manifest=str(manifest), cache_dir=str(tmp_path / "cache"))
    train["train"]["output_dir"] = str(tmp_path / "run")
    train["logging"].update(tensorboard=False, progress_bar=False)
    train["validation"].pop("prompts")
    train["stages"] = [{"name": "all", "steps": 2, "learning_rate": 1e-3, "views": "dropout"}]
    (tmp_path / "train.toml").write_text(tomli_w.dumps(train))
    capsys.readouterr()
    assert train_main(["validate-data", "--config", str(tmp_path / "train.toml")]) == 0
    assert "4 rows, 4 good, 0 bad" in capsys.readouterr().out
    assert train_main(["cache", "--config", str(tmp_path / "train.toml"), "--device", "cpu"]) == 0
    assert train_main(["train", "--config", str(tmp_path / "train.toml")]) == 0
    from mvs2v_train.trainer import read_log

    assert [e["step"] for e in read_log(tmp_path / "run") if e["event"] == "step"] == [1, 2]


SLOW_RUN = """
import sys, time
from pathlib import Path
import mvs2v_data.generate as g
from mvs2v_toy.data_stages import ToyDataBackend

class Slow(ToyDataBackend):
    def generate_video(self, record, image, dest, seed):
        with open(sys.argv[2], "a") as log:
            log.write(record["id"] + "\\n")
        time.sleep(0.4)
        return super().generate_video(record, image, dest, seed)

g.backend_factories = lambda: {"toy": Slow}
from mvs2v_data.cli import main
main(["run", "--config", sys.argv[1], "--no-progress"])
"""


def test_a_killed_run_resumes_without_losing_or_redoing_finished_items(tmp_path: Path, toy_backend, data_cli) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    cfg = toy_config(tmp_path, 6)
    calls = tmp_path / "calls.log"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_RUN, str(cfg), str(calls)], cwd=REPO,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        end = time.time() + 120
        while time.time() < end and proc.poll() is None:
            done = [r for r in records(tmp_path).values() if "generate-videos" in r["stages"]] \
                if (tmp_path / "work" / "items").is_dir() else []
            if len(done) >= 2:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)  # no clean-up of any kind
    finally:
        proc.wait(timeout=30)
    finished = {i for i, r in records(tmp_path).items() if "generate-videos" in r["stages"]}  # every record parses
    assert 2 <= len(finished) < 6
    rc, out, _ = data_cli("run", "--config", cfg)
    assert rc == 0
    assert toy_backend.calls.get("video", 0) == 6 - len(finished)  # finished items are not generated again
    assert f"{len(finished)} finished before" in out
    assert all("filter" in r["stages"] for r in records(tmp_path).values())


def test_redo_runs_a_stage_again_after_a_threshold_changes(tmp_path: Path, toy_backend, data_cli) -> None:
    cfg = toy_config(tmp_path, 3)
    assert data_cli("run", "--config", cfg)[0] == 0
    assert all(r["dropped"] is None for r in records(tmp_path).values())
    cfg.write_text(cfg.read_text().replace("min_views = 1", "min_views = 9"))
    rc, out, _ = data_cli("filter", "--config", cfg)
    assert rc == 0 and "3 finished before" in out  # without --redo a finished stage stays as it was
    rc, out, _ = data_cli("filter", "--config", cfg, "--redo")
    assert rc == 0 and "forgot the results of 3 items" in out and "filter: 0 done, 0 skipped, 3 dropped" in out
    recs = records(tmp_path)
    assert all(r["dropped"]["reason"].endswith("filters.min_views is 9") for r in recs.values())
    assert all(r["stages"]["extract-references"]["state"] == "done" for r in recs.values())  # earlier stages kept
    assert toy_backend.calls == {"image": 3, "video": 3}


@pytest.mark.parametrize("minimum, dropped", [(4.5, None), (5.5, "aesthetic")])
def test_the_aesthetic_filter_scores_clip_features_with_the_mlp(tmp_path: Path, data_cli, minimum: float,
                                                                dropped: str | None) -> None:
    pytest.importorskip("transformers")
    from mvs2v_train.testing import make_tiny_vision_encoder
    from safetensors.numpy import save_file

    from data_helpers import write_clip

    make_tiny_vision_encoder(tmp_path / "clip")
    # a LAION-shaped MLP (linear layers only) whose last layer ignores its input: every score is exactly 5
    save_file({"layers.0.weight": np.ones((4, 32), np.float32), "layers.0.bias": np.zeros(4, np.float32),
               "layers.2.weight": np.zeros((1, 4), np.float32), "layers.2.bias": np.full(1, 5.0, np.float32)},
              str(tmp_path / "mlp.safetensors"))
    clip = write_clip(np.random.default_rng(0).integers(0, 255, (8, 32, 32, 3)), tmp_path / "c.mp4")
    write_items(tmp_path / "items.jsonl", [{"id": "a", "video": clip, "caption": "c", "kind": "object"}])
    cfg = tmp_path / "data.toml"
    cfg.write_text(f'[work]\ninputs = "items.jsonl"\n[references]\nfeatures = "clip"\nsource = "augment"\n'
                   f'[filters]\nblur_min = 0\nmin_views = 1\naesthetic_model = "mlp.safetensors"\n'
                   f'aesthetic_clip = "clip"\naesthetic_min = {minimum}\n')
    rc, _, err = data_cli("run", "--config", cfg)
    assert rc == 0, err
    views = records(tmp_path)["a"]["views"]  # picked by farthest points in the CLIP folder's feature space
    assert len(views) == 4 and len({v["frame"] for v in views}) == 4 and views[0]["frame"] == 0
    assert all(v["metrics"]["aesthetic"] == pytest.approx(5.0) and v["dropped"] == dropped for v in views)
    rc, out, _ = data_cli("report", "--config", cfg)
    assert "aesthetic: off" not in out
    (tmp_path / "mlp.safetensors").write_bytes(b"not safetensors")
    rc, _, err = data_cli("filter", "--config", cfg, "--redo")
    assert rc == 2 and "is not a readable safetensors file" in err and err.count("\n") == 1


def test_the_toy_world_registers_its_backend_through_the_entry_point(tmp_path: Path, data_cli) -> None:
    import importlib

    tomllib = pytest.importorskip("tomllib")
    groups = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]
    module, func = groups["mvs2v.data_stages"]["toy"].split(":")
    found = {}
    getattr(importlib.import_module(module), func)(lambda name, factory: found.__setitem__(name, factory))
    assert found == {"toy": ToyDataBackend}
    cfg = toy_config(tmp_path, 1)
    cfg.write_text(cfg.read_text().replace('backend = "toy"', 'backend = "tyo"'))
    rc, _, err = data_cli("run", "--config", cfg)
    assert rc == 2 and "generate.backend 'tyo' is unknown; use none, comfyui" in err
    cfg.write_text(cfg.read_text().replace('backend = "tyo"', 'backend = "none"'))
    rc, _, err = data_cli("run", "--config", cfg)
    assert rc == 2 and "generate.backend is 'none'" in err and err.count("\n") == 1


def test_farthest_points_cover_distinct_views_and_skip_near_duplicates() -> None:
    from mvs2v_data.media import farthest_points

    # rows 0-2: one view with tiny changes; rows 3 and 4: two other views
    feats = np.array([[1.0, 0, 0], [0.999, 0.01, 0], [0.998, 0.02, 0], [0, 1.0, 0], [0, 0, 1.0]])
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    assert farthest_points(feats, 5, 0) == [0, 3, 4, 2, 1]  # without a floor, every row eventually
    assert farthest_points(feats, 5, 0, min_distance=0.1) == [0, 3, 4]  # the near-copies of view 0 are not views
    assert farthest_points(feats, 2, 0, min_distance=0.1) == [0, 3]

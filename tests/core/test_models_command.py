"""``mvs2v models`` against a fake Hub on 127.0.0.1 (huggingface-hub's ``endpoint``), never the network.

The server answers the few requests huggingface-hub makes: ``HEAD``/``GET /{repo}/resolve/{rev}/{path}``
(``X-Repo-Commit``, ``ETag``, ``Content-Length``, ranges) for ``hf_hub_download``, and
``/api/models/{repo}/revision/{rev}`` + ``/api/models/{repo}/tree/{rev}`` for ``snapshot_download``.
It can cut a body in the middle (a broken transfer) and serve other bytes than the pinned ones.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mvs2v_core.cli import main
from mvs2v_core.models_hub import presets
from mvs2v_core.models_hub.download import LOCK_NAME, STAGING
from mvs2v_core.models_hub.presets import Preset

pytest.importorskip("huggingface_hub")

COMMIT = "0123456789abcdef0123456789abcdef01234567"
DIT = b"fake-dit-weights " * 40_000  # 680 kB: several chunks, so a cut lands mid-body
FOLDER = {"config.json": b'{"model_type": "dinov2"}', "model.safetensors": b"w" * 5000,
          "preprocessor_config.json": b"{}", "README.md": b"not wanted"}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FakeHub:
    """Repositories in memory; ``cut`` maps a path to how many GETs of it still break off half-way."""

    def __init__(self) -> None:
        self.repos = {"fake-org/wan": {"split_files/diffusion_models/dit.safetensors": DIT},
                      "fake-org/dino": dict(FOLDER)}
        self.cut: dict[str, int] = {}
        self.requests: list[tuple[str, str, str | None]] = []

    def find(self, url_path: str):
        m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", url_path)
        if m and m.group(1) in self.repos and m.group(3) in self.repos[m.group(1)]:
            return m.group(3), self.repos[m.group(1)][m.group(3)]
        return None, None


def _handler(hub: FakeHub):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def _send(self, status: int, headers: dict, body: bytes = b"") -> None:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, str(v))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _api(self) -> bool:
            path = self.path.split("?")[0]
            m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/(revision|tree)/([^/]+)", path)
            if not m or m.group(1) not in hub.repos:
                return False
            files = hub.repos[m.group(1)]
            if m.group(2) == "revision":
                body = {"id": m.group(1), "sha": COMMIT, "siblings": [{"rfilename": p} for p in files]}
            else:
                body = [{"type": "file", "path": p, "size": len(d), "oid": hashlib.sha1(d).hexdigest(),
                         "lfs": {"oid": sha(d), "size": len(d), "pointerSize": 134}} for p, d in files.items()]
            data = json.dumps(body).encode()
            self._send(200, {"Content-Type": "application/json", "Content-Length": len(data)}, data)
            return True

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            hub.requests.append((self.command, self.path, self.headers.get("Range")))
            if self.path.startswith("/api/") and self._api():
                return
            rel, data = hub.find(self.path.split("?")[0])
            if data is None:
                self._send(404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": COMMIT, "Content-Length": 0})
                return
            start = int(re.match(r"bytes=(\d+)-", self.headers.get("Range", "bytes=0-")).group(1))
            headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{sha(data)}"', "Accept-Ranges": "bytes",
                       "Content-Length": len(data) - start}
            if start:
                headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            status = 206 if start else 200
            if self.command == "GET" and hub.cut.get(rel, 0) > 0:
                hub.cut[rel] -= 1
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, str(v))
                self.end_headers()
                self.wfile.write(data[start:start + (len(data) - start) // 2])  # then hang up mid-body
                self.wfile.flush()
                self.close_connection = True
                return
            self._send(status, headers, data[start:])

    return Handler


@pytest.fixture
def hub(monkeypatch):
    """A running fake Hub; yields (FakeHub, endpoint URL). Presets point at it."""
    for var in ("HF_HUB_OFFLINE", "HF_ENDPOINT", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy",
                "ALL_PROXY", "all_proxy", "MVS2V_MODELS_DIR"):
        monkeypatch.delenv(var, raising=False)
    import huggingface_hub.file_download as fd

    monkeypatch.setattr(fd.time, "sleep", lambda s: None)  # the hub waits 1 s before resuming; not here
    monkeypatch.setattr(fd.constants, "DOWNLOAD_CHUNK_SIZE", 1 << 16)  # 10 MB chunks: a cut would keep nothing
    state = FakeHub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(presets, "PRESETS", (
        Preset("fake-dit", "a DiT", "fake-org/wan", "diffusion_models", "Apache-2.0",
               file="split_files/diffusion_models/dit.safetensors",
               sha256=(("split_files/diffusion_models/dit.safetensors", sha(DIT)),)),
        Preset("fake-dit-unpinned", "a DiT, no hash", "fake-org/wan", "diffusion_models", "Apache-2.0",
               file="split_files/diffusion_models/dit.safetensors"),
        Preset("fake-dit-wrong-pin", "a DiT whose pin does not match", "fake-org/wan", "diffusion_models",
               "Apache-2.0", file="split_files/diffusion_models/dit.safetensors",
               sha256=(("split_files/diffusion_models/dit.safetensors", "ab" * 32),)),
        Preset("fake-dinov2", "a DINOv2-like folder", "fake-org/dino", "transformers", "Apache-2.0",
               patterns=("config.json", "*.safetensors", "preprocessor_config.json"),
               sha256=(("model.safetensors", sha(FOLDER["model.safetensors"])),)),
    ))
    yield state, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def comfyui(tmp_path: Path) -> Path:
    (tmp_path / "ComfyUI" / "models").mkdir(parents=True)
    return tmp_path / "ComfyUI"


def run(args: list[str], capsys) -> tuple[int, str, str]:
    rc = main(["models", *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def leftovers(root: Path) -> list[str]:
    """Staging folders or hub temp files left anywhere under ``root``."""
    return [str(p) for p in root.rglob("*") if STAGING in p.parts or p.name.endswith(".incomplete")]


def test_list_shows_every_preset_with_licence_and_pin_state(capsys):
    rc, out, _ = run(["--list"], capsys)
    assert rc == 0
    for p in presets.PRESETS:
        assert p.name in out and p.licence in out and p.repo in out
    assert "unpinned" in out and "pinned" in out
    assert "diffusion_models/wan2.1_t2v_1.3B_fp16.safetensors" in out
    assert "insightface/models/antelopev2/" in out


def test_presets_cover_the_issue_and_pins_are_well_formed():
    names = presets.preset_names()
    assert len(names) == len(set(names))
    for wanted in ("wan2.1-t2v-1.3b", "wan2.2-ti2v-5b", "wan2.2-t2v-a14b-high", "phantom-wan-1.3b", "wan2.1-vae",
                   "wan2.2-vae", "umt5-xxl-fp8", "umt5-xxl", "clip-vision-h", "dinov2-base",
                   "clip-vit-large-patch14", "antelopev2"):
        assert wanted in names
    for p in presets.PRESETS:
        assert p.licence and p.folder and (p.revision == "main" or re.fullmatch(r"[0-9a-f]{40}", p.revision))
        for path, digest in p.sha256:
            assert re.fullmatch(r"[0-9a-f]{64}", digest), p.name
            assert path == p.file or p.is_folder
            assert p.source, f"{p.name}: a pinned hash needs its source"


def test_download_into_comfyui_tree_verified_and_locked(hub, tmp_path, capsys):
    state, endpoint = hub
    root = comfyui(tmp_path)
    rc, out, err = run(["fake-dit", "--comfyui-dir", str(root), "--endpoint", endpoint], capsys)
    assert rc == 0, err
    target = root / "models" / "diffusion_models" / "dit.safetensors"
    assert target.read_bytes() == DIT
    assert "downloaded" in out and "verified against the pin" in out and "Apache-2.0" in out
    lock = json.loads((root / "models" / LOCK_NAME).read_text())
    entry = lock["fake-dit"]
    assert entry["commit"] == COMMIT and entry["target"] == "diffusion_models/dit.safetensors"
    assert entry["files"]["split_files/diffusion_models/dit.safetensors"] == {"sha256": sha(DIT), "size": len(DIT),
                                                                                "pinned": True}
    assert leftovers(root) == []
    gets = len(state.requests)
    rc, out, _ = run(["fake-dit", "--comfyui-dir", str(root), "--endpoint", endpoint], capsys)
    assert rc == 0 and "already present" in out and len(state.requests) == gets  # no network at all


def test_transfer_cut_mid_body_is_resumed_with_a_range(hub, tmp_path, capsys):
    state, endpoint = hub
    state.cut["split_files/diffusion_models/dit.safetensors"] = 1
    rc, out, err = run(["fake-dit", "--dir", str(tmp_path / "models"), "--endpoint", endpoint], capsys)
    assert rc == 0, err
    assert (tmp_path / "models" / "diffusion_models" / "dit.safetensors").read_bytes() == DIT
    ranges = [r for method, _, r in state.requests if method == "GET" and r]
    assert ranges and ranges[0] != "bytes=0-", state.requests  # resumed where it broke, not from the start


def test_broken_download_leaves_nothing_and_succeeds_on_retry(hub, tmp_path, capsys):
    state, endpoint = hub
    state.cut["split_files/diffusion_models/dit.safetensors"] = 100  # every attempt breaks off
    root = tmp_path / "models"
    rc, _, err = run(["fake-dit", "--dir", str(root), "--endpoint", endpoint], capsys)
    assert rc == 2
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: download of fake-org/wan@main broke off") and "run the same command again" in line
    assert not (root / "diffusion_models" / "dit.safetensors").exists()
    assert not any((root / "diffusion_models").glob("*"))
    assert [p for p in leftovers(root) if p.endswith(".incomplete")] == []
    state.cut.clear()
    rc, out, err = run(["fake-dit", "--dir", str(root), "--endpoint", endpoint], capsys)
    assert rc == 0, err
    assert (root / "diffusion_models" / "dit.safetensors").read_bytes() == DIT
    assert leftovers(root) == []


def test_hash_mismatch_removes_the_file_and_names_both_hashes(hub, tmp_path, capsys):
    _, endpoint = hub
    root = tmp_path / "models"
    rc, _, err = run(["fake-dit-wrong-pin", "--dir", str(root), "--endpoint", endpoint], capsys)
    assert rc == 2
    line = err.strip().splitlines()[-1]
    assert "sha256 mismatch" in line and "ab" * 32 in line and sha(DIT) in line and "removed" in line
    assert not (root / "diffusion_models" / "dit.safetensors").exists()
    assert not any(p.name == "dit.safetensors" for p in root.rglob("*"))
    assert not (root / LOCK_NAME).exists() and leftovers(root) == []


def test_unpinned_records_the_hash_then_checks_later_downloads_against_it(hub, tmp_path, capsys):
    state, endpoint = hub
    root = tmp_path / "models"
    rc, out, err = run(["fake-dit-unpinned", "--dir", str(root), "--endpoint", endpoint], capsys)
    assert rc == 0, err
    assert "hash unknown" in out and sha(DIT) in out and LOCK_NAME in out
    assert json.loads((root / LOCK_NAME).read_text())["fake-dit-unpinned"]["files"][
        "split_files/diffusion_models/dit.safetensors"]["pinned"] is False
    state.repos["fake-org/wan"]["split_files/diffusion_models/dit.safetensors"] = b"changed upstream"
    rc, _, err = run(["fake-dit-unpinned", "--dir", str(root), "--endpoint", endpoint, "--force"], capsys)
    assert rc == 2 and "sha256 mismatch" in err and f"recorded in {LOCK_NAME}" in err
    assert not (root / STAGING).exists() or not any((root / STAGING).rglob("dit.safetensors"))


def test_snapshot_of_a_folder_model(hub, tmp_path, capsys):
    state, endpoint = hub
    root = comfyui(tmp_path)
    rc, out, err = run(["fake-dinov2", "--comfyui-dir", str(root), "--endpoint", endpoint], capsys)
    assert rc == 0, err
    folder = root / "models" / "transformers" / "fake-dinov2"
    got = sorted(p.name for p in folder.rglob("*") if p.is_file())
    assert got == ["config.json", "model.safetensors", "preprocessor_config.json"]  # README.md not wanted
    assert (folder / "model.safetensors").read_bytes() == FOLDER["model.safetensors"]
    assert not (folder / ".cache").exists() and leftovers(root) == []
    assert "config.json: hash unknown" in out and "verified against the pin (1 file)" in out
    files = json.loads((root / "models" / LOCK_NAME).read_text())["fake-dinov2"]["files"]
    assert set(files) == {"config.json", "model.safetensors", "preprocessor_config.json"}
    assert files["config.json"]["sha256"] == sha(FOLDER["config.json"])
    rc, out, _ = run(["fake-dinov2", "--comfyui-dir", str(root), "--endpoint", endpoint], capsys)
    assert rc == 0 and "already present" in out


def test_offline_is_one_line_naming_endpoint_and_folder(hub, tmp_path, capsys):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = comfyui(tmp_path)
    rc, _, err = run(["fake-dit", "--comfyui-dir", str(root), "--endpoint", f"http://127.0.0.1:{port}"], capsys)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot reach http://127.0.0.1:{port}")
    assert "HF_ENDPOINT" in lines[0] and str(root / "models" / "diffusion_models") in lines[0]
    assert leftovers(root) == []


def test_hf_hub_offline_is_refused_in_one_line(hub, tmp_path, capsys, monkeypatch):
    _, endpoint = hub
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rc, _, err = run(["fake-dit", "--dir", str(tmp_path), "--endpoint", endpoint], capsys)
    assert rc == 2 and "HF_HUB_OFFLINE is set" in err and len(err.strip().splitlines()) == 1


def test_unknown_preset_suggests_a_name(hub, capsys):
    rc, _, err = run(["fake-dinov"], capsys)
    assert rc == 2 and "no preset named 'fake-dinov'" in err and "did you mean fake-dinov2" in err
    rc, _, err = run([], capsys)
    assert rc == 2 and "--list" in err


def test_comfyui_dir_without_models_folder(hub, tmp_path, capsys):
    rc, _, err = run(["fake-dit", "--comfyui-dir", str(tmp_path)], capsys)
    assert rc == 2 and "has no models/ folder" in err and len(err.strip().splitlines()) == 1

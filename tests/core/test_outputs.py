"""Output safety: targets checked before the work, failed writes that keep the frames, file modes.

Tests run as root, where ``chmod 0500`` does not stop a write: permission and full-disk failures
are simulated by making PyAV's ``av.open`` (or safetensors' ``save_file``) raise the OSError the
system would.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import warnings
from collections import namedtuple
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mvs2v_core.errors import MVS2VError, OutputError
from mvs2v_core.pipeline import outputs
from mvs2v_core.pipeline.generate import GenerationResult
from mvs2v_core.pipeline.outputs import (
    check_output_folder,
    check_output_path,
    check_video_output,
    estimate_video_bytes,
)
from mvs2v_core.utils import atomic_write, save_safetensors_atomic

av = pytest.importorskip("av")
from mvs2v_core.pipeline.video_io import read_video, write_lossless_mp4, write_mp4  # noqa: E402

Usage = namedtuple("Usage", "total used free")
MIB = 1 << 20


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _video(f: int = 5, h: int = 16, w: int = 16) -> torch.Tensor:
    return torch.rand(f, h, w, 3, generator=torch.Generator().manual_seed(0))


def _fail_writes(monkeypatch: pytest.MonkeyPatch, exc: OSError) -> None:
    """Make every PyAV open for writing fail with ``exc`` (reading still works)."""
    real_open = av.open

    def failing_open(file, mode="r", *args, **kwargs):
        if "w" in mode:
            raise exc
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(av, "open", failing_open)


# ------------------------------------------------------------------ checks before the work


def test_check_output_path_refusals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "folder.mp4").mkdir()
    with pytest.raises(OutputError, match=r"^--out .*folder\.mp4 is a folder; give a file name ending in \.mp4$"):
        check_output_path(tmp_path / "folder.mp4")
    with pytest.raises(OutputError, match=r"must end in \.mp4"):
        check_output_path(tmp_path / "video.avi")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(OutputError, match=r"file\.txt' is a file, not a folder"):
        check_output_path(tmp_path / "file.txt" / "v.mp4")
    # Missing folders are fine (the writers create them), and the check creates nothing.
    assert check_output_path(tmp_path / "new" / "deeper" / "v.MP4") == tmp_path / "new" / "deeper" / "v.MP4"
    assert _listing(tmp_path) == ["file.txt", "folder.mp4"]

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(outputs.tempfile, "mkstemp", denied)
    with pytest.raises(OutputError, match=r"cannot write in the folder .* \(permission denied\); choose a writable"):
        check_output_path(tmp_path / "v.mp4")


def test_check_output_path_free_space(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture) -> None:
    expected = estimate_video_bytes(81, 832, 480, lossless=True)
    assert expected == 81 * 832 * 480 * 3
    assert estimate_video_bytes(81, 832, 480, lossless=False) == expected // 20
    assert estimate_video_bytes(81, 832, 480, lossless=None) == expected // 20  # unknown: H.264 (real Wan)

    free = {"bytes": 100 * 1024}
    monkeypatch.setattr(outputs.shutil, "disk_usage", lambda p: Usage(1 << 40, 0, free["bytes"]))
    with pytest.raises(OutputError, match=r"only 100 KiB free on that disk, below the 2\.9 MiB minimum for this "
                                          r"video \(about 92\.5 MiB\); free some space"):
        check_video_output(tmp_path / "v.mp4", 81, 832, 480, lossless=True)
    free["bytes"] = 20 * MIB  # above the floor, below the estimate: a warning, not a refusal
    check_video_output(tmp_path / "v.mp4", 81, 832, 480, lossless=True)
    assert capsys.readouterr().err.startswith("warning: --out")
    free["bytes"] = 200 * MIB
    check_video_output(tmp_path / "v.mp4", 81, 832, 480, lossless=True)
    assert capsys.readouterr().err == ""


def test_check_video_output_latents_target(tmp_path: Path) -> None:
    (tmp_path / "v.latents.safetensors").mkdir()
    check_video_output(tmp_path / "v.mp4", 5, 16, 16)  # no latents asked: fine
    with pytest.raises(OutputError, match=r"--save-latents target .*v\.latents\.safetensors is a folder"):
        check_video_output(tmp_path / "v.mp4", 5, 16, 16, latents=True)


def test_check_output_folder(tmp_path: Path) -> None:
    (tmp_path / "results").write_text("not a folder")
    with pytest.raises(OutputError, match=r"--out .*results is an existing file, not a folder"):
        check_output_folder(tmp_path / "results")
    (tmp_path / "ev" / "metrics.json").mkdir(parents=True)
    with pytest.raises(OutputError, match=r"metrics\.json' is a folder where a file is written"):
        check_output_folder(tmp_path / "ev", files=["metrics.json"])
    assert check_output_folder(tmp_path / "new") == tmp_path / "new" and not (tmp_path / "new").exists()


def test_generate_checks_out_before_loading_models(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from mvs2v_core.cli import main

    (tmp_path / "v.mp4").mkdir()
    (tmp_path / "w.latents.safetensors").mkdir()
    missing = str(tmp_path / "missing.safetensors")  # a later check would complain about these
    base = ["generate", "--dit", missing, "--vae", missing, "--text-encoder", missing, "--prompt", "p"]
    assert main([*base, "--out", str(tmp_path / "v.mp4")]) == 2
    assert capsys.readouterr().err.strip().endswith("is a folder; give a file name ending in .mp4")
    assert main([*base, "--out", str(tmp_path / "w.mp4"), "--save-latents"]) == 2
    assert "--save-latents target" in capsys.readouterr().err


# ------------------------------------------------------------------ the writers


@pytest.mark.parametrize("error, reason", [
    (PermissionError(errno.EACCES, "Permission denied"), "permission denied"),
    (OSError(errno.ENOSPC, "No space left on device"), "no space left on the device"),
])
def test_lossless_writer_does_not_fall_back_on_os_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         error: OSError, reason: str) -> None:
    target = tmp_path / "v.mp4"
    _fail_writes(monkeypatch, error)
    frames = (_video() * 255).to(torch.uint8).numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no false "encoder missing" warning, no lossy fallback
        with pytest.raises(OutputError, match=rf"^Could not write the video '.*v\.mp4': {reason}\.$"):
            write_lossless_mp4(frames, target)
        with pytest.raises(OutputError, match=rf"^Could not write the video '.*v\.mp4': {reason}\.$"):
            write_mp4(frames, target)
    assert _listing(tmp_path) == []  # no partial file, no temporary file


def test_writers_refuse_a_folder_target_before_encoding(tmp_path: Path) -> None:
    (tmp_path / "v.mp4").mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(OutputError, match="is a folder"):
            write_lossless_mp4((_video() * 255).to(torch.uint8).numpy(), tmp_path / "v.mp4")
    assert _listing(tmp_path / "v.mp4") == []


class _DroppingContainer:
    """A write container that silently drops every packet after the second (a truncated write)."""

    def __init__(self, container) -> None:
        self._container, self._muxed = container, 0

    def __getattr__(self, name):
        return getattr(self._container, name)

    def mux(self, packet) -> None:
        self._muxed += 1
        if self._muxed <= 2:
            self._container.mux(packet)


def test_silently_truncated_write_is_never_reported_as_success(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = av.open
    monkeypatch.setattr(av, "open", lambda file, mode="r", *a, **k: (
        _DroppingContainer(real_open(file, mode, *a, **k)) if "w" in mode else real_open(file, mode, *a, **k)))
    target = tmp_path / "v.mp4"
    target.write_bytes(b"older video")
    with pytest.raises(OutputError, match=r"holds 2 of 9 frames"):
        write_lossless_mp4((_video(9) * 255).to(torch.uint8).numpy(), target)
    assert target.read_bytes() == b"older video" and _listing(tmp_path) == ["v.mp4"]


# ------------------------------------------------------------------ GenerationResult.save keeps the work


def _result(f: int = 5) -> GenerationResult:
    return GenerationResult(video=_video(f), latents=torch.randn(1, 4, 2, 4, 4), layout=None, timings={})


@pytest.mark.parametrize("lossless", [True, False])
def test_save_keeps_frames_when_the_video_write_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      lossless: bool) -> None:
    result = _result()
    target = tmp_path / "out" / "clip.mp4"
    target.parent.mkdir()
    _fail_writes(monkeypatch, OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(OutputError) as info:
        result.save(target, fps=16, lossless=lossless, latents=True)
    kept = target.parent / "clip.frames.safetensors"
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"Could not write the video '{target}': no space left")
    assert f"kept in '{kept}'" in message and "fps=16" in message
    assert _listing(target.parent) == ["clip.frames.safetensors"]  # no partial video, no latents file
    data = load_file(str(kept))
    assert data["frames"].dtype == torch.uint8 and data["frames"].shape == (5, 16, 16, 3)
    assert torch.equal(data["frames"], (result.video * 255).round().to(torch.uint8))
    assert torch.equal(data["latents"], result.latents)
    # A second failure never overwrites the frames kept by the first.
    with pytest.raises(OutputError, match=r"clip-1\.frames\.safetensors"):
        result.save(target, fps=16, lossless=lossless)


def test_save_keeps_frames_in_the_temp_dir_when_the_folder_is_full(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import safetensors.torch

    target = tmp_path / "clip.mp4"
    _fail_writes(monkeypatch, PermissionError(errno.EACCES, "Permission denied"))
    real_save = safetensors.torch.save_file

    def save_elsewhere_only(tensors, filename, metadata=None):
        if Path(filename).parent == tmp_path:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(tensors, filename, metadata=metadata)

    monkeypatch.setattr(safetensors.torch, "save_file", save_elsewhere_only)
    with pytest.raises(OutputError, match=r"^Could not write the video .*: permission denied\. The 5 generated "
                                          r"frames were kept in '(?P<kept>[^']+)'") as info:
        _result().save(target, fps=8, lossless=True)
    kept = Path(str(info.value).split("kept in '")[1].split("'")[0])
    try:
        assert kept.parent.parent == Path(tempfile.gettempdir()) and kept.name == "clip.frames.safetensors"
        assert load_file(str(kept))["frames"].shape == (5, 16, 16, 3)
        assert _listing(tmp_path) == []
    finally:
        shutil.rmtree(kept.parent)

    monkeypatch.setattr(safetensors.torch, "save_file", lambda *a, **k: (_ for _ in ()).throw(
        OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(OutputError, match=r"could not be kept either.*\(no space left on the device\)"):
        _result().save(target, fps=8, lossless=True)


def test_save_refuses_nan_frames_without_keeping_them(tmp_path: Path) -> None:
    result = _result()
    result.video[0, 0, 0, 0] = float("nan")
    with pytest.raises(MVS2VError, match="NaN"):
        result.save(tmp_path / "v.mp4", fps=16, lossless=True)
    assert _listing(tmp_path) == []


def test_save_names_a_failed_latents_write(tmp_path: Path) -> None:
    (tmp_path / "v.latents.safetensors").mkdir()
    with pytest.raises(OutputError, match=r"^Wrote the video '.*v\.mp4' but not the latents .*is a folder"):
        _result().save(tmp_path / "v.mp4", fps=16, lossless=True, latents=True)
    assert read_video(tmp_path / "v.mp4").shape == (5, 16, 16, 3)


def test_cli_generate_keeps_frames_after_a_write_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture) -> None:
    from mvs2v_core.cli import main
    from mvs2v_toy.demo import make_demo_assets

    assets = make_demo_assets(tmp_path / "demo", seed=0)
    out = tmp_path / "run" / "v.mp4"
    _fail_writes(monkeypatch, PermissionError(errno.EACCES, "Permission denied"))
    argv = ["generate", "--dit", str(assets["dit"]), "--vae", str(assets["vae"]), "--text-encoder",
            str(assets["text_encoder"]), "--prompt", "a box", "--width", "32", "--height", "32", "--frames", "5",
            "--steps", "1", "--device", "cpu", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"error: Could not write the video '{out}': permission denied. The 5 generated frames")
    assert load_file(str(out.with_name("v.frames.safetensors")))["frames"].shape == (5, 32, 32, 3)
    assert not out.exists()


# ------------------------------------------------------------------ file modes


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_new_files_get_the_umask_default(tmp_path: Path, umask: int, mode: int) -> None:
    old = os.umask(umask)
    try:
        write_mp4(_video(), tmp_path / "v.mp4")  # the path real Wan output takes
        write_lossless_mp4((_video() * 255).to(torch.uint8).numpy(), tmp_path / "l.mp4")
        save_safetensors_atomic({"x": torch.zeros(2)}, tmp_path / "x.safetensors")
        with atomic_write(tmp_path / "t.json") as tmp:
            tmp.write_text("{}")
    finally:
        os.umask(old)
    assert {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()} == {
        "v.mp4": mode, "l.mp4": mode, "x.safetensors": mode, "t.json": mode}


def test_replaced_files_keep_their_mode(tmp_path: Path) -> None:
    for name, mode in (("v.mp4", 0o640), ("x.safetensors", 0o604), ("t.json", 0o600)):
        (tmp_path / name).write_bytes(b"old")
        os.chmod(tmp_path / name, mode)
    old = os.umask(0o022)
    try:
        write_mp4(_video(), tmp_path / "v.mp4")
        save_safetensors_atomic({"x": torch.zeros(2)}, tmp_path / "x.safetensors")
        with atomic_write(tmp_path / "t.json") as tmp:
            tmp.write_text("{}")
    finally:
        os.umask(old)
    assert {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()} == {
        "v.mp4": 0o640, "x.safetensors": 0o604, "t.json": 0o600}
    assert read_video(tmp_path / "v.mp4").shape == (5, 16, 16, 3)


def test_save_keeps_frames_when_the_writer_refuses_late(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match=r"fps must be a positive number, got 0.* kept in '.*v\.frames\.safetensors'"):
        _result().save(tmp_path / "v.mp4", fps=0, lossless=True)
    assert _listing(tmp_path) == ["v.frames.safetensors"]

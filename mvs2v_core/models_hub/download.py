"""Fetch a :class:`~.presets.Preset` through huggingface-hub into a models root, verified.

Every download goes to a staging folder next to the target (``<root>/.mvs2v-download/<preset>/``,
same file system), through ``hf_hub_download`` / ``snapshot_download`` with ``local_dir``: the hub
resumes a broken transfer with HTTP ranges and never leaves a half file under a final name. The
staged file is then hashed, checked against the pinned sha256 (else the one the lock file recorded
on an earlier download), and moved into place with one ``os.replace``: the target folder never holds
a partial or unverified file. Its sha256 is then written to ``<root>/mvs2v-models.lock.json``.

Nothing here runs unless the user asks: no other command downloads anything.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import MVS2VError
from ..utils import atomic_write
from .presets import Preset

DEFAULT_ENDPOINT = "https://huggingface.co"
LOCK_NAME = "mvs2v-models.lock.json"
STAGING = ".mvs2v-download"
_CHUNK = 8 << 20
_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


@dataclass
class Outcome:
    """What one preset's download did: ``path`` (final), ``status`` and the files' sha256."""

    preset: Preset
    path: Path
    status: str  # "downloaded" | "present"
    hashes: dict[str, str]
    unpinned: list[str]


def models_root(comfyui_dir: str | None, cache_dir: str | None) -> Path:
    """``<comfyui>/models`` (which must exist), else ``--dir``, else ``$MVS2V_MODELS_DIR``, else
    ``~/.cache/mvs2v/models``."""
    if comfyui_dir is not None:
        root = Path(comfyui_dir).expanduser()
        if not (root / "models").is_dir():
            raise MVS2VError(f"--comfyui-dir {comfyui_dir} has no models/ folder: give the ComfyUI folder itself "
                             "(the one holding main.py and models/)")
        return root / "models"
    default = os.environ.get("MVS2V_MODELS_DIR") or "~/.cache/mvs2v/models"
    return Path(cache_dir or default).expanduser()


def resolve_endpoint(endpoint: str | None) -> str:
    return (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# ---- lock file -------------------------------------------------------------------------------------


def read_lock(root: Path) -> dict:
    path = root / LOCK_NAME
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MVS2VError(f"{path} is not readable JSON ({exc}): fix or delete it (it only records hashes)") from None
    return data if isinstance(data, dict) else {}


def write_lock_entry(root: Path, preset: Preset, commit: str | None, hashes: dict[str, str], sizes: dict[str, int]) -> None:
    lock = read_lock(root)
    lock[preset.name] = {
        "repo": preset.repo, "revision": preset.revision, "commit": commit, "target": preset.target,
        "licence": preset.licence, "files": {p: {"sha256": h, "size": sizes[p], "pinned": preset.pinned(p) is not None}
                                             for p, h in sorted(hashes.items())},
        "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with atomic_write(root / LOCK_NAME) as tmp:
        tmp.write_text(json.dumps(lock, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def expected_hash(preset: Preset, lock: dict, path: str) -> tuple[str | None, str]:
    """(sha256 to check against, where it comes from): the pin, else the lock's earlier record."""
    pin = preset.pinned(path)
    if pin is not None:
        return pin, "pinned"
    entry = lock.get(preset.name, {})
    if entry.get("repo") == preset.repo:
        recorded = entry.get("files", {}).get(path, {}).get("sha256")
        if recorded:
            return recorded, f"recorded in {LOCK_NAME}"
    return None, "unknown"


# ---- network errors --------------------------------------------------------------------------------


def _offline(endpoint: str, reason: str, folder: Path) -> MVS2VError:
    return MVS2VError(f"cannot reach {endpoint}: {reason}; set HF_ENDPOINT (or --endpoint) to a reachable mirror, "
                      f"or download the files by hand into {folder}")


def check_reachable(endpoint: str, folder: Path, timeout: float = 10.0) -> None:
    """Fail in one line, at once, when the endpoint's host does not answer (the hub itself would retry
    for about a minute first). Skipped behind a proxy, which only the hub's client knows to use."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE"):
        raise MVS2VError(f"HF_HUB_OFFLINE is set, so nothing can be downloaded: unset it to run 'mvs2v models', "
                         f"or download the files by hand into {folder}")
    if any(os.environ.get(v) for v in _PROXY_VARS):
        return
    url = urlsplit(endpoint)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise MVS2VError(f"endpoint {endpoint!r} is not an http(s) URL: give e.g. --endpoint https://huggingface.co")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError as exc:
        raise _offline(endpoint, str(exc) or type(exc).__name__, folder) from None


def _hub_error(exc: Exception, preset: Preset, endpoint: str, folder: Path) -> MVS2VError | None:
    """The one-line error for an exception of huggingface-hub / httpx, or None when it is not one."""
    from huggingface_hub import errors as hub_errors

    what = f"{preset.repo}@{preset.revision}"
    if isinstance(exc, hub_errors.GatedRepoError):
        return MVS2VError(f"{preset.repo} is gated: accept its terms on the Hub and log in (hf auth login or HF_TOKEN)")
    if isinstance(exc, hub_errors.RepositoryNotFoundError):
        return MVS2VError(f"repository {preset.repo} was not found on {endpoint} (or it is private: set HF_TOKEN)")
    if isinstance(exc, hub_errors.RevisionNotFoundError):
        return MVS2VError(f"revision {preset.revision} of {preset.repo} was not found on {endpoint}")
    if isinstance(exc, hub_errors.EntryNotFoundError):
        return MVS2VError(f"{what} has no {preset.file or ', '.join(preset.patterns)}: the repository changed; "
                          f"download by hand into {folder}")
    if isinstance(exc, (hub_errors.LocalEntryNotFoundError, hub_errors.OfflineModeIsEnabled)):
        cause = exc.__cause__ or exc
        return _offline(endpoint, f"{type(cause).__name__}: {cause}".splitlines()[0], folder)
    if type(exc).__module__.split(".")[0] in ("httpx2", "httpx", "requests", "urllib3"):  # the hub's HTTP client
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
        if "Connect" in type(exc).__name__:
            return _offline(endpoint, reason, folder)
        return MVS2VError(f"download of {what} broke off ({reason}); nothing partial was put in {folder}: "
                          "run the same command again")
    if isinstance(exc, hub_errors.HfHubHTTPError):
        return MVS2VError(f"download of {what} failed: {str(exc).splitlines()[0]}; run the command again")
    if isinstance(exc, OSError) and "Consistency check failed" in str(exc):
        return MVS2VError(f"download of {what} broke off ({str(exc).splitlines()[0]}); nothing partial was put in "
                          f"{folder}: run the same command again")
    return None


# ---- one preset ------------------------------------------------------------------------------------


def _fetch(preset: Preset, staging: Path, endpoint: str) -> tuple[Path, str | None]:
    """Download into ``staging``; (the staged file or folder, the commit it came from)."""
    import huggingface_hub as hub

    if preset.file is not None:
        path = hub.hf_hub_download(preset.repo, preset.file, revision=preset.revision, local_dir=staging,
                                   endpoint=endpoint)
        return Path(path), _staged_commit(staging, preset.file)
    hub.snapshot_download(preset.repo, revision=preset.revision, local_dir=staging, endpoint=endpoint,
                          allow_patterns=list(preset.patterns), max_workers=4)
    files = _folder_files(staging)
    if not files:
        raise MVS2VError(f"no file of {preset.repo}@{preset.revision} matches {', '.join(preset.patterns)}: "
                         "the repository changed; download by hand")
    return staging, _staged_commit(staging, files[0])


def _staged_commit(staging: Path, rel: str) -> str | None:
    """The commit hash huggingface-hub recorded for a file it put in ``staging`` (None if unreadable)."""
    meta = staging / ".cache" / "huggingface" / "download" / f"{rel}.metadata"
    try:
        return meta.read_text(encoding="utf-8").splitlines()[0].strip() or None
    except (OSError, IndexError):
        return None


def _folder_files(folder: Path) -> list[str]:
    """Paths (``/``-separated, relative) of the files under ``folder``, the hub's ``.cache`` left out."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and p.relative_to(folder).parts[0] != ".cache")


def _verify(preset: Preset, staged: Path, lock: dict) -> tuple[dict[str, str], dict[str, int], list[str]]:
    """Hash every staged file and check it; a mismatch removes the file and raises one line."""
    items = {preset.file: staged} if preset.file is not None else {rel: staged / rel for rel in _folder_files(staged)}
    hashes, sizes, unpinned = {}, {}, []
    for rel, path in items.items():
        actual = sha256_of(path)
        expected, origin = expected_hash(preset, lock, rel)
        if expected is not None and actual != expected.lower():
            path.unlink(missing_ok=True)
            raise MVS2VError(f"sha256 mismatch for {preset.repo}/{rel}: expected {expected} ({origin}), got {actual}; "
                             "the file was removed. Run again; if it persists the repository changed (a lock record "
                             f"can be dropped by deleting the {preset.name!r} entry of {LOCK_NAME})")
        if expected is None:
            unpinned.append(rel)
        hashes[rel], sizes[rel] = actual, path.stat().st_size
    return hashes, sizes, unpinned


def _install(preset: Preset, staged: Path, target: Path) -> None:
    """Move the verified file or folder into place in one rename (a folder replaces an older one)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if preset.file is not None:
        with open(staged, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(staged, target)
        return
    shutil.rmtree(staged / ".cache", ignore_errors=True)
    old = target.with_name(f".{target.name}.old")
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(staged, target)
    shutil.rmtree(old, ignore_errors=True)


def _present(preset: Preset, target: Path, lock: dict) -> Outcome | None:
    """An already installed preset whose files match the lock (sizes) or the pin (hash); else None."""
    if not target.exists():
        return None
    entry = lock.get(preset.name, {})
    files = entry.get("files", {}) if entry.get("repo") == preset.repo else {}
    paths = {preset.file: target} if preset.file is not None else {rel: target / rel for rel in files}
    if not paths or (preset.file is None and not files):
        return None
    hashes = {}
    for rel, path in paths.items():
        record = files.get(rel)
        if record and path.is_file() and path.stat().st_size == record.get("size"):
            hashes[rel] = record["sha256"]
        elif preset.pinned(rel) is not None and path.is_file() and sha256_of(path) == preset.pinned(rel):
            hashes[rel] = preset.pinned(rel)
        else:
            return None
    return Outcome(preset, target, "present", hashes, [r for r in hashes if preset.pinned(r) is None])


def download_preset(preset: Preset, root: Path, endpoint: str, force: bool = False) -> Outcome:
    """Fetch ``preset`` into ``root`` (see the module docstring); an installed, matching copy is kept
    unless ``force``."""
    target = root / preset.target
    lock = read_lock(root)
    if not force and (done := _present(preset, target, lock)) is not None:
        return done
    check_reachable(endpoint, target.parent)
    staging = root / STAGING / preset.name
    staging.mkdir(parents=True, exist_ok=True)
    try:
        staged, commit = _fetch(preset, staging, endpoint)
    except MVS2VError:
        raise
    except Exception as exc:  # noqa: BLE001 - hub and httpx errors become one line; others propagate
        mapped = _hub_error(exc, preset, endpoint, target.parent)
        if mapped is None:
            raise
        raise mapped from None
    try:
        hashes, sizes, unpinned = _verify(preset, staged, lock)
        _install(preset, staged, target)
    finally:  # after a mismatch too: a rejected file is not kept anywhere
        shutil.rmtree(staging, ignore_errors=True)
        _remove_if_empty(root / STAGING)
    write_lock_entry(root, preset, commit, hashes, sizes)
    return Outcome(preset, target, "downloaded", hashes, unpinned)


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


def describe(outcome: Outcome, root: Path) -> str:
    """The lines ``mvs2v models`` prints for one preset."""
    p = outcome.preset
    verb = "downloaded" if outcome.status == "downloaded" else "already present:"
    lines = [f"{p.name}: {verb} {outcome.path}  (licence: {p.licence})"]
    for rel in outcome.unpinned:
        lines.append(f"  {rel}: hash unknown (no pinned sha256 for this preset); recorded sha256 "
                     f"{outcome.hashes[rel]} in {root / LOCK_NAME}, later downloads are checked against it")
    pinned = len(outcome.hashes) - len(outcome.unpinned)
    if pinned:
        lines.append(f"  sha256 verified against the pin ({pinned} file{'s' if pinned > 1 else ''})")
    return "\n".join(lines)


def print_outcome(outcome: Outcome, root: Path) -> None:
    print(describe(outcome, root), file=sys.stdout, flush=True)

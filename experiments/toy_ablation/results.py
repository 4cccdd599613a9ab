"""The small, committed result files ``results/<arm>-s<seed>.json`` and the commands that reproduce them.

A result file is rewritten (atomically) after every stage of its run: settings, steps done, training
seconds, the bench summary per world (with intervals and per-scene values), the curve. ``status`` is
``training``, ``scoring`` or ``done``; the runner skips a run whose file says ``done`` with the same settings.
A run's worker and the ``handoff`` command (another process) both update its file, so every
read-modify-write holds the run's :func:`result_lock`.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mvs2v_core.errors import MVS2VError

from .arms import ARMS, AblationSettings
from .files import MODULE, read_json, write_json

DONE = "done"


def settings_argv(s: AblationSettings) -> list[str]:
    """Every command-line setting, spelled out (the rest of :class:`AblationSettings` is the fixed recipe)."""
    if s.schedule:  # the legs replace the step counts; the graded worlds still name datasets
        steps = ["--schedule", ",".join(s.schedule), "--curriculum-samples", str(s.curriculum_samples)]
        graded = ["--graded", ",".join(s.graded_worlds)] if s.graded_worlds else []
    else:
        steps = ["--steps", str(s.steps), "--curriculum-steps", str(s.curriculum_steps),
                 "--curriculum-samples", str(s.curriculum_samples)]
        graded = [*(["--graded", ",".join(s.graded_worlds), "--graded-steps", str(s.graded_steps)]
                    if s.graded_worlds else []), *(["--keep-mix"] if s.graded_worlds and s.keep_mix else [])]
    anchor = ["--slot-anchor", s.slot_anchor] if s.slot_anchor != "canonical" else []
    return ["--samples", str(s.samples), "--data-seed", str(s.data_seed), *steps,
            "--scenes", str(s.bench_scenes), "--sampling-seeds", ",".join(map(str, s.bench_seeds)),
            "--curve-scenes", str(s.curve_scenes), "--eval-seed", str(s.eval_seed),
            "--sample-steps", str(s.sample_steps), "--checkpoint-every", str(s.checkpoint_every), *graded, *anchor]


def run_command(out: str, init: str, results: str, s: AblationSettings, arm: str, seeds: Sequence[int],
                score_every: int = 0, data: str = "") -> str:
    """The shell-quoted command that (re)produces ``arm`` for ``seeds`` with these settings."""
    argv = ["python", "-m", MODULE, "--out", out, *(["--data", data] if data else []), "--init", init,
            "--results", results, *settings_argv(s),
            "--arms", arm, "--seeds", ",".join(str(x) for x in seeds)]
    if score_every:
        argv += ["--score-every", str(score_every)]
    return shlex.join(argv)


def result_path(results: Path, name: str) -> Path:
    return results / f"{name}.json"


def read_result(results: Path, name: str) -> dict[str, Any] | None:
    path = result_path(results, name)
    return read_json(path) if path.is_file() else None


def check_result_settings(results: Path, name: str, s: AblationSettings) -> dict[str, Any] | None:
    """The stored result of ``name`` (None if none); refuse one made with other settings."""
    found = read_result(results, name)
    if found is None:
        return None
    diff = AblationSettings.from_json(found["settings"]).differences(s)
    if diff:
        raise MVS2VError(f"{result_path(results, name)} was made with other settings ({_describe(diff)}, stored vs "
                         "asked): move it away, or pass --results DIR for this ablation")
    return found


def _describe(diff: dict[str, tuple[Any, Any]]) -> str:
    return ", ".join(f"{k} {a} vs {b}" for k, (a, b) in list(diff.items())[:4]) + (" ..." if len(diff) > 4 else "")


def is_done(results: Path, name: str, s: AblationSettings) -> bool:
    found = check_result_settings(results, name, s)
    return found is not None and found.get("status") == DONE


def result_lock(results: Path, name: str) -> Any:
    """The inter-process lock of ``name``'s result file (``results/.locks/<name>.lock``, git-ignored); re-entrant
    within a thread, so a caller may hold it around several updates."""
    from filelock import FileLock

    folder = results / ".locks"
    folder.mkdir(parents=True, exist_ok=True)
    return FileLock(folder / f"{name}.lock", is_singleton=True)


def update_result(results: Path, name: str, base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """Merge ``changes`` into the stored (or ``base``) record and write it atomically; returns it."""
    with result_lock(results, name):
        record = read_result(results, name) or dict(base)
        record.update(base)
        record.update(changes)
        write_json(result_path(results, name), record)
    return record


def read_all(results: Path) -> dict[str, dict[str, Any]]:
    """Every ``<arm>-s<seed>.json`` under ``results`` (other files are ignored), by run name."""
    out = {}
    for path in sorted(results.glob("*-s*.json")):
        arm, _, seed = path.stem.rpartition("-s")
        if arm in ARMS and seed.isdigit():
            out[path.stem] = read_json(path)
    return out

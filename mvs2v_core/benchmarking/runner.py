"""The benchmark loop: every (model, case) generated, scored with the metric registry, cached.

Layout of ``--out``::

    videos/<model>/<case>.mp4        the generated video (lossless mp4)
    results/<model>/<case>.json      its metrics, skip reasons, settings and timings
    failures/<model>/<case>.txt      the traceback of a (model, case) that failed (removed once it succeeds)
    leaderboard.csv / .md, plots/<metric>.png

A result file is written atomically once its video is scored, so an interrupted run leaves whole
results only; a rerun skips every (model, case) whose result file exists *and* was made from the
same case and model (``fingerprint``), and redoes the others. A (model, case) that fails (an
out-of-memory, a ComfyUI job that errors) does not stop the run: the others go on, and the run
ends with one error naming the failed ones (no leaderboard from an incomplete table), so a rerun
retries only those.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import MVS2VError
from .cases import BenchCase

__all__ = ["RESULT_FORMAT", "EvalOptions", "run_bench", "failure_path", "result_path", "score_video"]

RESULT_FORMAT = "mvs2v-bench-result"


@dataclass
class EvalOptions:
    """How videos are scored: weights folders (``dino_model``... -> folder or None), metric names, device."""

    weights: dict[str, Path | None]
    metrics: list[str]
    device: str = "cpu"
    max_frames: int | None = None


def result_path(out: Path, model: str, case: BenchCase) -> Path:
    return out / "results" / model / f"{case.id}.json"


def failure_path(out: Path, model: str, case: BenchCase) -> Path:
    return out / "failures" / model / f"{case.id}.txt"


def score_video(video: Path, case: BenchCase, options: EvalOptions) -> tuple[dict[str, Any], dict[str, str]]:
    """The registry's metrics of one generated video against the case's references (as ``mvs2v eval``)."""
    from ..evaluation.command import RealEvalRequest, registry_inputs, json_ready, reason_with_flag
    from ..evaluation.registry import compute_metrics

    names = [s.name for s in case.subjects]
    request = RealEvalRequest(
        video=video, out=video.parent, names=names, images=[[str(v.image) for v in s.views] for s in case.subjects],
        labels=[s.labels for s in case.subjects], kinds=[s.kind for s in case.subjects],
        boxes={s.name: s.box for s in case.subjects if s.box is not None},
        masks={s.name: s.mask for s in case.subjects if s.mask is not None}, prompt=case.prompt,
        weights=options.weights, max_frames=options.max_frames, device=options.device, metrics=options.metrics)
    results, skipped = compute_metrics(registry_inputs(request), options.metrics)
    return json_ready(results), {n: reason_with_flag(r) for n, r in skipped.items()}


def _key(backend: Any, case: BenchCase) -> dict[str, Any]:
    """What decides a (model, case) result: the case, the model, a --steps given for the whole run."""
    return {"case": case.fingerprint(), "model": backend.spec.fingerprint(), "steps": backend.steps}


def _cached(path: Path, key: dict[str, Any]) -> dict[str, Any] | None:
    """The stored result when it was made from exactly this case and model, else None."""
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None  # unreadable (e.g. edited by hand): made again
    if record.get("format") != RESULT_FORMAT or record.get("key") != key:
        return None
    return record


def _write_text(path: Path, text: str) -> None:
    from ..utils import atomic_write

    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _write_json(path: Path, record: dict[str, Any]) -> None:
    _write_text(path, json.dumps(record, indent=1, allow_nan=False) + "\n")


def run_one(backend: Any, model: str, case: BenchCase, out: Path, options: EvalOptions) -> dict[str, Any]:
    """Generate, score and store one (model, case); returns the result record."""
    video = out / "videos" / model / f"{case.id}.mp4"
    t0 = time.perf_counter()
    info = backend.generate(case, video)
    t1 = time.perf_counter()
    metrics, skipped = score_video(video, case, options)
    record = {"format": RESULT_FORMAT, "version": 1, "model": model, "case": case.id,
              "key": _key(backend, case),
              "video": str(video.relative_to(out)), "metrics": metrics, "skipped": skipped, "generation": info,
              "seconds": {"generate": t1 - t0, "score": time.perf_counter() - t1}}
    _write_json(result_path(out, model, case), record)
    return record


def _failed(out: Path, model: str, case: BenchCase, exc: Exception) -> str:
    """Store the traceback of a failed (model, case); returns its one-line reason."""
    import traceback

    _write_text(failure_path(out, model, case), "".join(traceback.format_exception(exc)))
    if isinstance(exc, MVS2VError):
        return str(exc)
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first[:200]}" if first else type(exc).__name__


def _stop_on_failures(failed: list[str], total: int, out: Path) -> None:
    if failed:
        shown = "; ".join(failed[:3]) + (f"; and {len(failed) - 3} more" if len(failed) > 3 else "")
        raise MVS2VError(f"mvs2v bench: {len(failed)} of {total} runs failed ({shown}); tracebacks in "
                         f"{out / 'failures'}; the finished runs are kept, so the same command retries only the "
                         "failed ones (no leaderboard written)")


def run_bench(backends: list[Any], cases: list[BenchCase], out: Path, options: EvalOptions,
              log: Callable[[str], None] = print) -> dict[str, dict[str, dict[str, Any]]]:
    """Every (model, case) result, model by model (one model's weights loaded at a time), cached ones reused.

    Returns ``{model: {case id: result record}}``. Raises MVS2VError naming the (model, case) pairs that
    failed, after running all the others.
    """
    results: dict[str, dict[str, dict[str, Any]]] = {}
    failed: list[str] = []
    total = len(backends) * len(cases)
    done = 0
    for backend in backends:
        model = backend.spec.name
        results[model] = {}
        for case in cases:
            done += 1
            key = _key(backend, case)
            record = _cached(result_path(out, model, case), key)
            if record is not None:
                log(f"[{done}/{total}] {model} / {case.id}: cached")
            else:
                try:
                    record = run_one(backend, model, case, out, options)
                except Exception as exc:  # one failing pair must not cost the rest of a long run
                    failed.append(f"{model} / {case.id}: {_failed(out, model, case, exc)}")
                    log(f"[{done}/{total}] {failed[-1]}")
                    continue
                failure_path(out, model, case).unlink(missing_ok=True)
                ran = ", ".join(f"{n} {v['value']:.4g}" for n, v in record["metrics"].items()
                                if isinstance(v.get("value"), (int, float)))
                log(f"[{done}/{total}] {model} / {case.id}: {record['seconds']['generate']:.1f} s; {ran or 'no metric ran'}")
            results[model][case.id] = record
    _stop_on_failures(failed, total, out)
    if not any(r["metrics"] for per_case in results.values() for r in per_case.values()):
        reasons = next(iter(next(iter(results.values())).values()))["skipped"]
        raise MVS2VError("mvs2v bench: no metric ran on any video (" + "; ".join(reasons.values()) + "); give the "
                         "weights folders they name (--eval-models)")
    return results

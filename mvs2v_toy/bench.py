"""``mvs2v toy-bench``: the causal evaluation suite of a toy model on held-out W1 / W2 scenes.

For each held-out scene (see :mod:`~mvs2v_toy.bench_plan`), sampling seed and row (``multi``,
``single``, ``none``, ``copy``), the model generates the scene and its counterfactual versions in
batched sampling runs (:meth:`~mvs2v_core.pipeline.generate.MVS2VPipeline.generate_batch`), and every
clip is scored through core's metric registry (:mod:`~mvs2v_toy.bench_score`): per-video metrics,
reference use, slot binding and (W2) causal crosstalk. The summary (:mod:`~mvs2v_toy.bench_report`)
gives each row and metric a mean with a 95% bootstrap interval over scenes, and paired intervals
for multi - single and multi - copy.

Written to ``out``: ``results.json`` (settings, command, summary, notes), ``table.md``,
``command.txt`` (the shell-quoted command that reproduces it), ``settings.json`` and
``records.jsonl`` (one record per clip, keyed ``row/scene/seed/variant``, rewritten atomically
after every batch). A rerun skips every finished key, so an interrupted bench resumes where it
stopped, and more scenes or seeds extend it; an ``out`` folder that holds results of another
model, world, evaluation seed, step count or sampler is refused before anything runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import shlex
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from ._core import MVS2VError, atomic_write
from .bench_plan import ROWS, Unit, bench_scene, plan_units
from .bench_report import aggregate, check_bar, format_bar, markdown_table
from .bench_score import score_unit, unit_values

__all__ = ["BENCH_FORMAT", "RECORDS", "SETTINGS", "model_digest", "run_toy_bench", "run_bench_cli"]

BENCH_FORMAT = "mvs2v-toy-bench"
RECORDS, SETTINGS, RESULTS, TABLE, COMMAND = "records.jsonl", "settings.json", "results.json", "table.md", "command.txt"


def model_digest(model_dir: Path) -> str:
    """SHA-256 over the model's weight and encoder files (model.json / README.md excluded: their sampler and
    frames are stored in the settings, and notes written into them later must not orphan the results)."""
    h = hashlib.sha256()
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file() and p.name not in ("model.json", "README.md")):
        h.update(str(path.relative_to(model_dir)).encode())
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def _check_args(world: str, scenes: int, seeds: Sequence[int], rows: Sequence[str], batch: int,
                steps: int | None) -> None:
    from .world import world_spec

    world_spec(world)  # one-line error naming the worlds
    if isinstance(scenes, bool) or not isinstance(scenes, int) or scenes < 1:
        raise MVS2VError(f"--scenes {scenes!r} must be an integer >= 1")
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds) \
            or len(set(seeds)) != len(seeds):
        raise MVS2VError(f"--seeds {','.join(map(str, seeds))} must be distinct integers >= 0, e.g. 0,1")
    bad = [r for r in rows if r not in ROWS]
    if bad or not rows or len(set(rows)) != len(rows):
        raise MVS2VError(f"--rows {','.join(rows)}: give distinct rows from {', '.join(ROWS)}")
    if batch < 1:
        raise MVS2VError(f"--batch {batch} must be at least 1")
    if steps is not None and steps < 1:
        raise MVS2VError(f"--steps {steps} must be at least 1")


def _with_guidance(info: dict[str, Any], ref_scale: float | None,
                   text_scale: float | None) -> tuple[dict[str, Any], dict[str, float]]:
    """``info`` with the sampler's guidance scales replaced where given (checked now, as generation checks
    them), and the scales given."""
    from ._core import check_generation_settings
    from .demo import generation_settings

    given = {k: float(v) for k, v in (("ref_scale", ref_scale), ("text_scale", text_scale)) if v is not None}
    out = {**info, "sampler": {**info["sampler"], **given}}
    check_generation_settings(generation_settings(out, "", 1, 0))  # one line for a scale it refuses
    return out, given


def _identity(model_dir: Path, info: dict[str, Any], world: str, eval_seed: int, steps: int) -> dict[str, Any]:
    """What every record depends on; an ``out`` folder holds records of one identity only."""
    return {"format": BENCH_FORMAT, "version": 1, "model_sha256": model_digest(model_dir), "world": world,
            "eval_seed": int(eval_seed), "frames": int(info["frames"]), "steps": int(steps),
            "sampler": {k: v for k, v in info["sampler"].items() if k != "steps"}}


def _claim_out(out: Path, identity: dict[str, Any]) -> None:
    """Refuse an ``out`` folder holding results of other settings; else record these settings there."""
    path = out / SETTINGS
    if path.is_file():
        stored = json.loads(path.read_text(encoding="utf-8"))
        differ = [k for k in sorted(set(stored) | set(identity)) if stored.get(k) != identity.get(k)]
        if differ:
            shown = ", ".join(f"{k} {stored.get(k)!r} there, {identity.get(k)!r} now" for k in differ
                              if k != "model_sha256") or "another model (its files differ)"
            raise MVS2VError(f"{out} holds toy-bench results of other settings ({shown}): use another --out, "
                             "or the settings it was made with")
        return
    if (out / RECORDS).exists():
        raise MVS2VError(f"{out} holds {RECORDS} but no {SETTINGS}: use another --out")
    out.mkdir(parents=True, exist_ok=True)
    _write_text(path, json.dumps(identity, indent=2) + "\n")


def _write_text(path: Path, text: str) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _load_records(out: Path) -> dict[str, dict[str, Any]]:
    path = out / RECORDS
    if not path.is_file():
        return {}
    records = (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    return {r["key"]: r for r in records}


def _append_records(out: Path, old_text: str, records: list[dict[str, Any]]) -> str:
    """Rewrite ``records.jsonl`` atomically with ``records`` appended; returns the new text."""
    text = old_text + "".join(json.dumps(r, allow_nan=False) + "\n" for r in records)
    _write_text(out / RECORDS, text)
    return text


def _chunks(units: Sequence[Unit], batch: int) -> Iterator[list[Unit]]:
    """Whole units, at most ``batch`` clips to generate per chunk (a larger unit goes alone)."""
    chunk: list[Unit] = []
    size = 0
    for u in units:
        n = len(u.to_generate())
        if chunk and size + n > batch:
            yield chunk
            chunk, size = [], 0
        chunk.append(u)
        size += n
    if chunk:
        yield chunk


def _generate(pipe: Any, info: dict[str, Any], steps: int, units: Sequence[Unit]) -> list[dict[str, Any]]:
    """Every clip the units need, in one ``generate_batch`` call: per unit, variant -> uint8 ``[F, H, W, 3]``."""
    from .demo import generation_settings
    from .evaluate import load_generated

    settings, subjects, where = [], [], []
    for n, u in enumerate(units):
        scene = u.scene.truth.scene
        for job in u.to_generate():
            assert job.inputs is not None
            s = generation_settings(info, job.inputs.caption, steps, u.gen_seed)
            settings.append(dataclasses.replace(s, width=scene.width, height=scene.height))
            subjects.append(job.inputs.subject_inputs())
            where.append((n, job.variant))
    clips: list[dict[str, Any]] = [{} for _ in units]
    if settings:
        for (n, variant), result in zip(where, pipe.generate_batch(settings, subjects)):
            clips[n][variant] = load_generated(result.video)
    return clips


def _notes(units: Sequence[Unit], rows: Sequence[str]) -> list[str]:
    """What a reader must know to read the table (from the plan, so it holds for every run)."""
    notes = ["S_v->r / S_r->v of every row are measured against all four reference views of the scene."]
    for row in rows:
        recolours = [j for u in units if u.row == row for j in u.jobs if j.variant.startswith("recolour")]
        same = sum(j.same_as_orig for j in recolours)
        if row == "copy":
            notes.append("copy: the true frame 0 repeated, nothing generated; its reference use compares the two "
                         "versions' frame 0 (they differ only where frame 0 shows a recoloured face).")
        elif recolours and same:
            notes.append(f"{row}: in {same} of {len(recolours)} recoloured versions the model inputs equal the "
                         "original's (checked, not assumed): that version's generation IS the original's clip, so "
                         "its reference use is exactly 0 by construction (inputs identical), not estimated.")
    if "multi" in rows:
        notes.append("slot binding is measured on the multi row only (one view cannot be swapped).")
    skipped = sorted({n for u in units for n in u.scene.notes if n})
    notes += [f"not scored: {n}" for n in skipped]
    return notes


def _command(model_dir: Path, out: Path, world: str, scenes: int, seeds: Sequence[int], eval_seed: int,
             rows: Sequence[str], batch: int, steps: int, guidance: dict[str, float], device: str, bar: bool) -> str:
    args = ["mvs2v", "toy-bench", "--model", str(model_dir), "--out", str(out), "--world", world, "--scenes",
            str(scenes), "--seeds", ",".join(map(str, seeds)), "--eval-seed", str(eval_seed), "--rows",
            ",".join(rows), "--batch", str(batch), "--steps", str(steps)]
    args += [a for k, v in guidance.items() for a in ("--" + k.replace("_", "-"), f"{v:g}")]
    return shlex.join(args + (["--device", device] if device != "cpu" else []) + (["--bar"] if bar else []))


def _run_units(units: list[Unit], out: Path, done: dict[str, dict[str, Any]], make_pipe: Callable[[], Any],
               info: dict[str, Any], steps: int, batch: int, log: Callable[[str], None]) -> int:
    """Generate and score every unfinished unit, batch by batch; returns the clips generated."""
    todo = [u for u in units if any(u.key(j.variant) not in done for j in u.jobs)]
    path = out / RECORDS
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    chunks = list(_chunks(todo, batch))
    generated = 0
    pipe = None
    for c, chunk in enumerate(chunks, start=1):
        t0 = time.perf_counter()
        if pipe is None and any(u.to_generate() for u in chunk):
            pipe = make_pipe()
        clips = _generate(pipe, info, steps, chunk)
        records = [r for u, cl in zip(chunk, clips) for r in score_unit(u, cl)]
        text = _append_records(out, text, records)
        done.update({r["key"]: r for r in records})
        n = sum(len(cl) for cl in clips)
        generated += n
        log(f"toy-bench: batch {c}/{len(chunks)}: {n} clips, {len(records)} records in {time.perf_counter() - t0:.1f}s")
    return generated


def run_toy_bench(model_dir: str | Path, out_dir: str | Path, world: str = "w1", scenes: int = 64,
                  seeds: Sequence[int] = (0, 1), eval_seed: int = 1000, rows: Sequence[str] = ROWS,
                  batch: int = 16, steps: int | None = None, ref_scale: float | None = None,
                  text_scale: float | None = None, device: str = "cpu", bar: bool = False,
                  log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume) the bench; write results.json, table.md, command.txt; return the results.

    Args:
        model_dir: a toy model folder (:func:`~mvs2v_toy.demo.demo_model_info` checks it).
        out_dir: output folder (see the module docstring).
        world: ``w1`` or ``w2`` (any :data:`~mvs2v_toy.world.WORLDS` name).
        scenes: held-out scenes ``0 .. scenes-1``; seeds: sampling seeds; eval_seed: draws the scenes.
        rows: from ``multi``, ``single``, ``none``, ``copy``.
        batch: clips per batched sampling run; steps: sampling steps (default the model's).
        ref_scale, text_scale: guidance scales (default the model's); stored in the settings, so an
            ``out`` folder holds one sampler's results.
        device: where the model runs (fp32); bar: add issue 11's W1 bar to the results.

    Returns:
        ``{"format", "settings", "command", "rows", "paired", "notes", "generated", ["bar"]}``.
    """
    from .demo import demo_model_info, model_files

    rows, seeds = tuple(rows), tuple(seeds)
    _check_args(world, scenes, seeds, rows, batch, steps)
    model_dir, out = Path(model_dir), Path(out_dir)
    info, guidance = _with_guidance(demo_model_info(model_dir), ref_scale, text_scale)
    steps = int(info["sampler"]["steps"] if steps is None else steps)
    identity = _identity(model_dir, info, world, eval_seed, steps)
    _claim_out(out, identity)
    done = _load_records(out)
    bench_scenes = [bench_scene(world, eval_seed, i, int(info["frames"])) for i in range(scenes)]
    units = plan_units(rows, bench_scenes, seeds, eval_seed)

    def make_pipe() -> Any:
        from ._core import MVS2VPipeline

        return MVS2VPipeline.from_files(model_files(model_dir, info), device, "fp32")

    generated = _run_units(units, out, done, make_pipe, info, steps, batch, log)
    values = {(u.row, u.scene.index, u.seed): unit_values([done[u.key(j.variant)] for j in u.jobs]) for u in units}
    summary = aggregate(values, rows, range(scenes), seeds)
    notes = _notes(units, rows)
    command = _command(model_dir, out, world, scenes, seeds, eval_seed, rows, batch, steps, guidance, device, bar)
    results = {"format": BENCH_FORMAT, "version": 1, "settings": {**identity, "scenes": scenes, "seeds": list(seeds),
               "rows": list(rows), "batch": batch, "model": str(model_dir)}, "command": command, **summary,
               "notes": notes, "generated": generated}
    table = markdown_table(summary, notes)
    if bar:
        lines = check_bar(summary)
        results["bar"] = [{"requirement": t, "passed": ok, "numbers": n} for t, ok, n in lines]
        scope = "" if world == "w1" else f" -- defined for W1 scenes; these are {world} scenes, so read it as a guide"
        table += f"\nIssue 11 bar (W1){scope}:\n\n```\n" + format_bar(lines) + "```\n"
    _write_text(out / RESULTS, json.dumps(results, indent=2, allow_nan=False) + "\n")
    _write_text(out / TABLE, f"`{command}`\n\n" + table)
    _write_text(out / COMMAND, command + "\n")
    results["table"] = table
    return results


def _int_list(text: str, flag: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in str(text).split(",") if v.strip())
    except ValueError:
        raise MVS2VError(f"{flag} {text!r} must be comma-separated integers, e.g. 0,1") from None


def run_bench_cli(args: argparse.Namespace) -> dict[str, Any]:
    """``mvs2v toy-bench``: run the bench and print the table (and the bar with ``--bar``; report only)."""
    rows = tuple(r.strip() for r in str(args.rows).split(",") if r.strip())
    results = run_toy_bench(args.model, args.out, world=args.world, scenes=args.scenes,
                            seeds=_int_list(args.seeds, "--seeds"), eval_seed=args.eval_seed, rows=rows,
                            batch=args.batch, steps=args.steps, ref_scale=args.ref_scale,
                            text_scale=args.text_scale, device=args.device, bar=args.bar)
    print(results["table"], end="")
    print(f"wrote {Path(args.out) / RESULTS}, {Path(args.out) / TABLE}, {Path(args.out) / COMMAND}")
    return results

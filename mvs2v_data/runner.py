"""Running a stage over the work folder: resumable, ``--workers N`` threads, ``--shard I/N``, a tqdm bar.

A stage is a :class:`Stage`: ``prepare(ctx, todo)`` runs once before any item (load models, check the
servers: a missing model or an unreachable server fails here, before any work) and ``process(ctx,
record)`` does one item and returns ``(state, reason)``. The runner saves each record as soon as its
item is finished, so a crash or Ctrl-C loses only the items in flight, which the next run redoes.

An item-level problem (a corrupt input image or video) is an :class:`ItemError`: that item is dropped
with the message as its reason and the others go on. Any other error stops the stage with one line.
"""

from __future__ import annotations

import copy
import errno
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable

from mvs2v_core.errors import MVS2VError, OutputError

from .config import DataConfig
from .work import STAGES, WorkFolder

__all__ = ["ItemError", "Stage", "Context", "StageSummary", "run_stage", "pending"]


class ItemError(MVS2VError):
    """A problem with one item's inputs (unreadable image or video): the item is dropped with this reason."""


@dataclass
class Context:
    """What the stages share: the config, the work folder and lazily made resources (models, servers)."""

    cfg: DataConfig
    work: WorkFolder
    shard: tuple[int, int] = (0, 1)
    workers: int = 1
    progress: bool = True
    resources: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def resource(self, name: str, make: Callable[[], Any]) -> Any:
        """``make()`` once per run (thread-safe), then the same object."""
        with self.lock:
            if name not in self.resources:
                self.resources[name] = make()
            return self.resources[name]


@dataclass
class Stage:
    name: str
    process: Callable[[Context, dict], tuple[str, str | None]]
    prepare: Callable[[Context, list[dict]], None] = lambda ctx, todo: None
    help: str = ""
    # whether the item has work in this stage (False: it would only be skipped, so later stages need not wait)
    needed: Callable[[Context, dict], bool] = lambda ctx, rec: True


@dataclass
class StageSummary:
    stage: str
    done: int = 0
    skipped: int = 0
    dropped: int = 0
    waiting: int = 0  # items whose earlier stages are not finished
    already: int = 0  # finished by an earlier run

    def line(self) -> str:
        return (f"{self.stage}: {self.done} done, {self.skipped} skipped, {self.dropped} dropped, "
                f"{self.already} finished before, {self.waiting} waiting for earlier stages")


def pending(ctx: Context, record: dict, stage: str, table: dict[str, Stage]) -> str:
    """``"todo"``, ``"finished"``, ``"dropped"`` (earlier) or ``"waiting"`` for ``record`` at ``stage``: an
    item waits while an earlier stage that has work for it has not run (one it would skip does not count)."""
    if stage in record["stages"]:
        return "finished"
    if record.get("dropped"):
        return "dropped"
    earlier = [table[s] for s in STAGES[: STAGES.index(stage)] if s in table]
    ready = all(s.name in record["stages"] or not s.needed(ctx, record) for s in earlier)
    return "todo" if ready else "waiting"


def _finish(ctx: Context, stage: str, record: dict, state: str, reason: str | None) -> None:
    record["stages"][stage] = {"state": state, "reason": reason}
    if state == "dropped":
        record["dropped"] = {"stage": stage, "reason": reason}
    ctx.work.save(record)


def _one(ctx: Context, stage: Stage, record: dict) -> tuple[dict, str, str | None]:
    try:
        state, reason = stage.process(ctx, record)
    except ItemError as exc:
        state, reason = "dropped", f"bad input: {exc}"
    return record, state, reason


def _as_output_error(exc: OSError) -> OutputError:
    what = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
    return OutputError(f"cannot write {exc.filename or 'an output file'}: {what}; free space or fix the folder, "
                       "then re-run the same command (finished items are kept, the rest resume)")


def run_stage(ctx: Context, stage: Stage, table: dict[str, Stage]) -> StageSummary:
    """Run ``stage`` on every item of the shard that needs it (``table``: all stages by name); returns the counts."""
    from tqdm.auto import tqdm

    summary = StageSummary(stage.name)
    todo = []
    for record in ctx.work.records(ctx.shard):
        where = pending(ctx, record, stage.name, table)
        summary.already += where == "finished"
        summary.waiting += where == "waiting"
        if where == "todo":
            todo.append(record)
    if not todo:
        return summary
    stage.prepare(ctx, todo)
    bar = tqdm(total=len(todo), desc=stage.name, unit="item", disable=not ctx.progress)
    pool = ThreadPoolExecutor(max_workers=max(1, ctx.workers))
    try:
        queue = iter(todo)
        running: set[Future] = set()
        for record in queue:  # keep at most `workers` items in flight, so a stop loses only those
            running.add(pool.submit(_one, ctx, stage, copy.deepcopy(record)))
            if len(running) >= max(1, ctx.workers):
                running = _collect(ctx, stage, running, summary, bar)
        while running:
            running = _collect(ctx, stage, running, summary, bar)
    except OSError as exc:
        raise _as_output_error(exc) from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    return summary


def _collect(ctx: Context, stage: Stage, running: set[Future], summary: StageSummary, bar: Any) -> set[Future]:
    finished, rest = wait(running, return_when=FIRST_COMPLETED)
    error: BaseException | None = None
    for fut in finished:  # save every finished item before a stage error stops the run
        if fut.exception() is not None:
            error = error or fut.exception()
            continue
        record, state, reason = fut.result()
        _finish(ctx, stage.name, record, state, reason)
        setattr(summary, state, getattr(summary, state) + 1)
        bar.update(1)
    if error is not None:
        for fut in rest:  # the items already in flight finish and are kept
            fut.cancel()
        _drain(ctx, stage, rest, summary, bar)
        raise error
    return rest


def _drain(ctx: Context, stage: Stage, running: set[Future], summary: StageSummary, bar: Any) -> None:
    for fut in running:
        if not fut.cancelled() and fut.exception() is None:
            record, state, reason = fut.result()
            _finish(ctx, stage.name, record, state, reason)
            setattr(summary, state, getattr(summary, state) + 1)

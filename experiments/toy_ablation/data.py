"""Phase 1: the toy-world dataset, its encoders, and the held-out samples every run is scored on."""

from __future__ import annotations

import json
import time

from mvs2v_core.errors import MVS2VError
from mvs2v_core.utils import atomic_write

from .arms import AblationSettings
from .files import Layout


def _manifest_rows(layout: Layout) -> list[dict]:
    text = (layout.data / "manifest.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def prepare_data(layout: Layout, s: AblationSettings, log=print) -> None:
    """Write the toy dataset, its encoders and the text-to-video manifest (once)."""
    from mvs2v_toy import save_toy_encoders, write_toy_dataset

    data = layout.data
    if (data / "manifest_t2v.jsonl").is_file() and (data / "vision_encoder").is_dir():
        return
    t0 = time.perf_counter()
    if not (data / "manifest.jsonl").is_file():
        summary = write_toy_dataset(data, s.samples, seed=s.data_seed, width=s.size, height=s.size, frames=s.frames,
                                    two_object_prob=s.two_object_prob, val_fraction=s.val_fraction)
        log(f"data: {summary.samples} samples ({summary.train} train, {summary.val} val, {summary.two_object} with "
            f"two objects) in {time.perf_counter() - t0:.0f}s")
    save_toy_encoders(data)
    # The text-to-video pretraining data: the same rows without their reference views.
    rows = _manifest_rows(layout)
    with atomic_write(data / "manifest_t2v.jsonl") as tmp:
        tmp.write_text("".join(json.dumps({**r, "subjects": []}) + "\n" for r in rows), encoding="utf-8")


def eval_rows(layout: Layout, s: AblationSettings) -> list[dict]:
    """The held-out samples every run is scored on: the first ``eval_samples`` rows of the ``val`` split."""
    val = [r for r in _manifest_rows(layout) if r.get("split") == "val"][: s.eval_samples]
    if len(val) < s.eval_samples:
        raise MVS2VError(f"the dataset has only {len(val)} held-out (val) samples but --eval-samples is "
                         f"{s.eval_samples}: raise --samples or lower --eval-samples")
    return val

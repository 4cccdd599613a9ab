"""Generation of the held-out samples through the pipeline API, and their scores against the toy truth."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mvs2v_core.errors import MVS2VError
from mvs2v_core.pipeline.generate import GenerationSettings, ModelFiles, MVS2VPipeline, SubjectInput

from .arms import AblationSettings
from .data import eval_rows
from .files import Layout, read_json, write_json

METRICS = ("psnr", "ssim", "s_v2r", "s_r2v", "hidden_face_accuracy", "face_accuracy", "face_accuracy_all",
           "crosstalk")
EVAL_FPS = 8.0


def score_sample(video: Any, truth: Any, views: Sequence[str], common_views: Sequence[str]) -> dict:
    """The per-sample numbers of the table.

    Every run is scored against the same ``common_views`` (the multi-view runs' references), so a
    single-view run is measured on the views it was not given too: ``s_v2r`` / ``s_r2v`` against
    those views, ``hidden_face_accuracy`` on the faces they reveal that frame 0 hides (the same pixels
    for every run). ``face_accuracy`` is the same score on the faces revealed by the views the run
    was given (``views``).
    """
    from mvs2v_toy.evaluate import evaluate, load_generated, resolve_references
    from mvs2v_toy.metrics import face_accuracy

    frames = load_generated(video)
    names = [o.name for o in truth.scene.objects]
    m = evaluate(frames, truth, references={n: list(common_views) for n in names})
    given, _ = face_accuracy(frames, truth, resolve_references(truth, {n: list(views) for n in names}))
    rs = m["reference_similarity"]
    return {
        "id": truth.sample_id, "objects": len(names), "psnr": m["psnr"], "ssim": m["ssim"],
        "s_v2r": rs["s_v2r"], "s_r2v": rs["s_r2v"], "truth_s_v2r": rs["truth"]["s_v2r"],
        "truth_s_r2v": rs["truth"]["s_r2v"],
        "face_accuracy": given["value"], "hidden_face_accuracy": m["face_accuracy"]["value"],
        "hidden_face_pixels": m["face_accuracy"]["pixels"], "face_accuracy_all": m["face_accuracy_all"]["value"],
        "crosstalk": m["crosstalk"]["value"] if m["crosstalk"] else None,
    }


def mean_metrics(per_sample: list[dict]) -> dict:
    """Means over the samples that have a value (crosstalk: two-object samples only)."""
    out: dict[str, Any] = {}
    for k in (*METRICS, "truth_s_v2r", "truth_s_r2v"):
        vals = [r[k] for r in per_sample if r.get(k) is not None]
        out[k] = float(sum(vals) / len(vals)) if vals else None
        out[f"{k}_n"] = len(vals)
    return out


def model_files(data: Path, dit: Path, adapter: Path | None, mfi: bool) -> ModelFiles:
    """A run's DiT and adapter with the dataset's toy codec and encoders."""
    return ModelFiles(dit=dit, vae=data / "codec", text_encoder=data / "text_encoder", adapter=adapter,
                      vision_encoder=data / "vision_encoder" if mfi else None)


def generation_settings(s: AblationSettings, caption: str) -> GenerationSettings:
    """The same sampler for every run; the reference settings are the adapter's (``references=None``)."""
    return GenerationSettings(prompt=caption, width=s.size, height=s.size, frames=s.frames, steps=s.sample_steps,
                              seed=s.eval_seed, shift=s.sample_shift, solver=s.solver, ref_scale=s.ref_scale,
                              text_scale=s.text_scale)


def sample_subjects(row: dict, data: Path, views: Sequence[str]) -> list[SubjectInput]:
    """The subjects of a manifest row with the reference views the run is given (``views``)."""
    subjects = []
    for subject in row["subjects"]:
        chosen = [v for v in subject["views"] if v.get("label") in views]
        if not chosen:
            raise MVS2VError(f"sample {row['id']}: subject {subject['name']!r} has none of the views "
                             f"{', '.join(views)}: the dataset was written with other reference views")
        subjects.append(SubjectInput(subject["name"], [data / v["image"] for v in chosen],
                                     [v["label"] for v in chosen]))
    return subjects


def evaluate_model(layout: Layout, s: AblationSettings, dit: Path, adapter: Path | None, out: Path,
                   views: Sequence[str], mfi: bool) -> dict:
    """Generate every held-out sample (one pipeline, loaded once) and score it; returns means + per-sample rows.

    Without an adapter (the text-to-video base) the samples are generated from their captions alone.
    """
    from mvs2v_toy import load_truth

    data = layout.data.resolve()
    out.mkdir(parents=True, exist_ok=True)
    pipe = MVS2VPipeline.from_files(model_files(data, dit, adapter, mfi), "cpu", "fp32")
    per_sample = []
    sampling_seconds = 0.0
    for row in eval_rows(layout, s):
        video = out / f"{row['id']}.mp4"
        subjects = sample_subjects(row, data, views) if adapter is not None else []
        result = pipe.generate(generation_settings(s, row["caption"]), subjects)
        result.save(video, fps=EVAL_FPS, lossless=pipe.lossless_output)
        sampling_seconds += result.timings.get("sampling", 0.0)
        truth = load_truth(data / Path(row["meta"]["truth"]).parent)
        per_sample.append(score_sample(video, truth, views, s.eval_views))
    return {"means": mean_metrics(per_sample), "per_sample": per_sample, "views": list(views),
            "sampling_seconds": round(sampling_seconds, 2)}


def reference_rows(layout: Layout, s: AblationSettings) -> dict:
    """Rows that anchor the table: the true clips, an all-gray clip, the text-to-video base (no references)."""
    if layout.reference_rows.is_file():
        return read_json(layout.reference_rows)
    import numpy as np

    from mvs2v_toy import load_truth

    data = layout.data.resolve()
    truth_rows, gray_rows = [], []
    for row in eval_rows(layout, s):
        truth = load_truth(data / Path(row["meta"]["truth"]).parent)
        truth_rows.append(score_sample(truth.frames, truth, s.eval_views, s.eval_views))
        gray_rows.append(score_sample(np.full_like(truth.frames, 128), truth, s.eval_views, s.eval_views))
    base = evaluate_model(layout, s, layout.base_dit, None, layout.pretrain / "eval", s.eval_views, mfi=False)
    rows = {"truth": mean_metrics(truth_rows), "gray": mean_metrics(gray_rows), "t2v_base": base["means"]}
    write_json(layout.reference_rows, rows)
    return rows

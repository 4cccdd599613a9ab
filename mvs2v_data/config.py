"""The ``mvs2v-data`` TOML config: pydantic v2 tables, strict, every problem one line naming the key.

Sections (defaults below; the commented example is ``examples/data/faces.toml``)::

    [work]        dir, inputs, seed, val_fraction
    [generate]    backend (comfyui / a plug-in such as toy / none), servers, workflows, view_yaws, ...
    [caption]     model (a local VLM folder, "" = the item's own caption or prompt), prompt
    [faces]       pack (InsightFace pack folder), det_size, det_thresh, providers
    [references]  kind, yaw_bins, bin_tolerance, count, features, source, held_out, crop_scale, min_size
    [filters]     blur_min, aesthetic_*, identity_curve, pose_tolerance, min_views, min_yaw_spread
    [output]      manifest

Relative paths resolve from the config file's folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mvs2v_core.config_files import ConfigError, read_toml, validation_problems

__all__ = ["DataConfig", "ConfigError", "load_config", "parse_config", "identity_threshold"]

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Yaw = Annotated[float, Field(ge=-180.0, le=180.0)]


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class WorkSection(_Table):
    """``[work]``: the work folder (one record per item) and where new items come from."""

    dir: str = "work"
    inputs: str = ""  # a JSONL items file or a folder of images / videos ("" = only items already in dir)
    seed: int = 0
    val_fraction: Probability = 0.0  # share of kept items written with split = "val" (by a hash of the id)


class GenerateSection(_Table):
    """``[generate]``: the generative stages (ComfyUI servers, or a stage plug-in such as ``toy``)."""

    backend: str = "none"  # comfyui | none | a plug-in name (entry point group mvs2v.data_stages)
    servers: list[str] = ["http://127.0.0.1:8188"]
    timeout: Annotated[float, Field(gt=0)] = 600.0
    retries: Annotated[int, Field(ge=0, le=100)] = 3
    backoff: Annotated[float, Field(ge=0)] = 1.0
    image_workflow: str = ""  # API-format workflow with {prompt} {seed} placeholders (generate-images)
    video_workflow: str = ""  # ... {prompt} {image} {seed} (generate-videos)
    views_workflow: str = ""  # ... {prompt} {image} {yaw} {seed} (synthesize-views)
    view_yaws: list[Yaw] = []  # synthesize-views: the yaws to make from the frontal image ([] = stage off)
    video_prompt_suffix: str = ", the camera slowly orbits around the subject, full 360 degree turn"


class CaptionSection(_Table):
    """``[caption]``: a local VLM folder through transformers, else the item's caption (or its prompt)."""

    model: str = ""
    prompt: str = "Describe this video in one sentence: the subject, what it does, and the setting."
    frames: Annotated[int, Field(ge=1, le=64)] = 4


class FacesSection(_Table):
    """``[faces]``: the InsightFace pack (detector + ArcFace) for face items."""

    pack: str = ""
    det_size: Annotated[int, Field(ge=32, le=4096)] = 640
    det_thresh: Probability = 0.5
    providers: list[str] = []  # [] = the best available: CUDA, else CPU


class ReferencesSection(_Table):
    """``[references]``: which frames of each clip become reference views."""

    kind: Literal["auto", "face", "object"] = "auto"  # auto: the item's kind, else face when faces.pack is set
    yaw_bins: list[Yaw] = [0.0, -30.0, 30.0, -60.0, 60.0, -90.0, 90.0]
    bin_tolerance: Annotated[float, Field(gt=0, le=90)] = 12.0
    count: Annotated[int, Field(ge=1, le=16)] = 4  # objects: K views by farthest-point sampling
    # objects: a view counts as new only this far (Euclidean, L2-normalised features) from every view picked;
    # 0.1 ~ cosine similarity 0.995: frames of a still or barely turning object give one view, not K copies
    min_view_distance: Annotated[float, Field(ge=0.0, le=2.0)] = 0.1
    features: str = ""  # local DINOv2 / CLIP folder ("" = colour histograms)
    source: Literal["held_out", "augment"] = "held_out"
    held_out: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.25  # last share of the clip kept for references
    crop_scale: Annotated[float, Field(ge=1.0, le=8.0)] = 2.0  # face box -> subject crop
    min_size: Annotated[int, Field(ge=1)] = 16
    max_views: Annotated[int, Field(ge=1, le=16)] = 4  # per subject in the manifest (the trainer's slots)


class FiltersSection(_Table):
    """``[filters]``: drop thresholds (docs/data.md explains each default)."""

    blur_min: Annotated[float, Field(ge=0)] = 50.0  # variance of the Laplacian; 0 = off
    aesthetic_model: str = ""  # LAION-style MLP .safetensors ("" = off)
    aesthetic_clip: str = ""  # the CLIP folder the MLP was trained on
    aesthetic_min: float = 4.5
    identity_curve: list[list[float]] = [[0.0, 0.45], [30.0, 0.40], [60.0, 0.30], [90.0, 0.20]]
    pose_tolerance: Annotated[float, Field(gt=0, le=90)] = 15.0
    min_views: Annotated[int, Field(ge=1, le=16)] = 2
    min_yaw_spread: Annotated[float, Field(ge=0, le=360)] = 30.0  # faces: max yaw - min yaw of kept views

    @field_validator("identity_curve")
    @classmethod
    def _increasing(cls, value: list[list[float]]) -> list[list[float]]:
        yaws = [p[0] for p in value]
        increasing = yaws == sorted(yaws) and len(set(yaws)) == len(yaws)
        if not value or any(len(p) != 2 for p in value) or not increasing or yaws[0] < 0:
            raise ValueError("give [|yaw|, min cosine] points with |yaw| increasing from 0 or more, "
                             "e.g. [[0, 0.45], [90, 0.2]]")
        return value


class OutputSection(_Table):
    manifest: str = "manifest.jsonl"  # relative to the work folder


class DataConfig(_Table):
    """The whole config; :meth:`resolve` turns a path of it into an absolute one."""

    work: WorkSection = WorkSection()
    generate: GenerateSection = GenerateSection()
    caption: CaptionSection = CaptionSection()
    faces: FacesSection = FacesSection()
    references: ReferencesSection = ReferencesSection()
    filters: FiltersSection = FiltersSection()
    output: OutputSection = OutputSection()
    base_dir: str = Field(default="", exclude=True)

    def resolve(self, value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else Path(self.base_dir or ".") / p

    @property
    def work_dir(self) -> Path:
        return self.resolve(self.work.dir)


def identity_threshold(curve: list[list[float]], yaw: float) -> float:
    """The minimum ArcFace cosine at ``|yaw|``: linear between the curve's points, flat beyond its ends."""
    import numpy as np

    xs, ys = zip(*curve)
    return float(np.interp(abs(float(yaw)), xs, ys))


def parse_config(data: Mapping[str, Any], path: str | os.PathLike = "") -> DataConfig:
    """A validated :class:`DataConfig` from a parsed TOML mapping; relative paths from ``path``'s folder."""
    if "base_dir" in data:
        raise ConfigError("base_dir is not a table of the config")
    try:
        cfg = DataConfig.model_validate({**data, "base_dir": str(Path(path).parent) if path else ""})
    except ValidationError as e:
        raise ConfigError(*validation_problems(e, DataConfig, hidden=("base_dir",)), source=str(path)) from None
    return cfg


def load_config(path: str | os.PathLike) -> DataConfig:
    """Read and validate a TOML config file (:class:`ConfigError` lists every problem)."""
    return parse_config(read_toml(path), Path(path))

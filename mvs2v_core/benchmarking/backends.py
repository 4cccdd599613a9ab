"""Where benchmark videos come from: the pipeline API (``--model``) or a running ComfyUI (``--workflow``).

A backend's ``generate(case, video_path) -> dict`` writes the case's video (lossless mp4, atomically)
and returns what it used (settings, seconds). Models load on the first case that needs them, so a
rerun whose results are all cached loads nothing.

``--model NAME=PATH[,key=value...]``: ``PATH`` is a DiT file, or a model folder holding
``dit.safetensors`` and, used as defaults, ``adapter.safetensors``, ``codec/`` or ``vae/``,
``text_encoder/``, ``vision_encoder/`` and a ``model.json`` whose ``width``/``height``/``frames``
and ``sampler`` (steps, shift, solver, ref_scale, text_scale) are the defaults of its generations
(the bundled toy model's layout). Keys: ``adapter``, ``vae``, ``text_encoder``, ``vision_encoder``
(paths; ``adapter=none`` drops a folder's adapter), ``scheme``, ``empty_slot_mode``, ``gap``, ``slots_per_subject``, ``steps``, ``lora_strength``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MVS2VError
from .cases import BenchCase

__all__ = ["ModelSpec", "parse_model_spec", "parse_workflow_spec", "PipelineBackend", "ComfyUIBackend",
           "workflow_values", "VIDEO_FPS"]

PATH_KEYS = ("adapter", "vae", "text_encoder", "vision_encoder")
SETTING_KEYS = ("scheme", "empty_slot_mode", "gap", "slots_per_subject", "steps", "lora_strength")
FOLDER_DEFAULTS = {"adapter": ("adapter.safetensors",), "vae": ("codec", "vae"), "text_encoder": ("text_encoder",),
                   "vision_encoder": ("vision_encoder",)}
SAMPLER_KEYS = ("steps", "shift", "solver", "ref_scale", "text_scale")
VIDEO_FPS = 16.0
VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".avi")
ANIMATION_SUFFIXES = (".webp", ".gif", ".png", ".apng")


@dataclass(frozen=True)
class ModelSpec:
    """One column of the leaderboard: a name and where its videos come from (a DiT or a workflow)."""

    name: str
    dit: Path | None = None
    paths: dict[str, Path] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)  # a model folder's model.json
    workflow: Path | None = None

    def fingerprint(self) -> dict[str, Any]:
        return {"dit": str(self.dit) if self.dit else None, "paths": {k: str(v) for k, v in sorted(self.paths.items())},
                "settings": dict(sorted(self.settings.items())),
                "workflow": str(self.workflow) if self.workflow else None}


def _name_and_rest(text: str, flag: str, example: str) -> tuple[str, str]:
    name, eq, rest = text.partition("=")
    name = name.strip()
    if not eq or not name or not rest.strip():
        raise MVS2VError(f"{flag} {text!r} must look like NAME=..., e.g. {flag} {example}")
    if not name.replace("_", "").replace("-", "").replace(".", "").isalnum():
        raise MVS2VError(f"{flag} {text!r}: the name {name!r} names result folders: use letters, digits, _ - .")
    return name, rest.strip()


def parse_model_spec(text: str) -> ModelSpec:
    """``NAME=PATH[,key=value...]`` (see the module docstring), every path checked to exist."""
    name, rest = _name_and_rest(text, "--model", "toy=mvs2v_toy/assets/toy_demo,scheme=ts")
    head, *items = [p.strip() for p in rest.split(",")]
    given: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or key not in PATH_KEYS + SETTING_KEYS or not value:
            raise MVS2VError(f"--model {name}: {item!r} is not KEY=VALUE with KEY one of "
                             f"{', '.join(PATH_KEYS + SETTING_KEYS)}")
        given[key] = value
    where = Path(head).expanduser()
    if not where.exists():
        raise MVS2VError(f"--model {name}: {where} does not exist; give a DiT file or a model folder")
    paths: dict[str, Path] = {}
    defaults: dict[str, Any] = {}
    dit = where
    if where.is_dir() and (where / "dit.safetensors").is_file():  # a model folder
        dit = where / "dit.safetensors"
        for key, names in FOLDER_DEFAULTS.items():
            found = next((where / n for n in names if (where / n).exists()), None)
            if found is not None:
                paths[key] = found
        if (where / "model.json").is_file():
            defaults = json.loads((where / "model.json").read_text(encoding="utf-8"))
            if not defaults.get("mfi"):
                paths.pop("vision_encoder", None)
    for key in PATH_KEYS:
        if given.get(key, "").lower() == "none":  # e.g. adapter=none: the folder's model without its adapter
            paths.pop(key, None)
        elif key in given:
            paths[key] = Path(given[key]).expanduser()
            if not paths[key].exists():
                raise MVS2VError(f"--model {name}: {key}={paths[key]} does not exist")
    for key in ("vae", "text_encoder"):
        if key not in paths:
            raise MVS2VError(f"--model {name}: no {key} given; add ,{key}=PATH (or give a model folder holding it)")
    settings = {k: given[k] for k in SETTING_KEYS if k in given}
    return ModelSpec(name, dit=dit, paths=paths, settings=settings, defaults=defaults)


def parse_workflow_spec(text: str) -> ModelSpec:
    """``[NAME=]api.json``: a ComfyUI API workflow with placeholders (name: the file's stem)."""
    if "=" in text and not Path(text).exists():
        name, rest = _name_and_rest(text, "--workflow", "ts=my_workflow_api.json")
    else:
        name, rest = Path(text).stem, text
    path = Path(rest).expanduser()
    if not path.is_file():
        raise MVS2VError(f"--workflow {path} does not exist; give an API-format workflow (Workflow > Export (API))")
    return ModelSpec(name, workflow=path)


# ---- the pipeline ----------------------------------------------------------------------------------------------------


def _setting(spec: ModelSpec, key: str, cast: type) -> Any:
    if key not in spec.settings:
        return None
    try:
        return cast(spec.settings[key])
    except ValueError:
        raise MVS2VError(f"--model {spec.name}: {key}={spec.settings[key]!r} is not a {cast.__name__}") from None


class PipelineBackend:
    """Generates with :class:`~mvs2v_core.pipeline.generate.MVS2VPipeline` (loaded on first use, kept)."""

    def __init__(self, spec: ModelSpec, device: str | None = None, dtype: str | None = None,
                 steps: int | None = None) -> None:
        self.spec, self.device, self.dtype, self.steps = spec, device, dtype, steps
        self._pipe: Any = None

    def _pipeline(self) -> Any:
        if self._pipe is None:
            from ..pipeline.generate import ModelFiles, MVS2VPipeline

            p = self.spec.paths
            files = ModelFiles(dit=self.spec.dit, vae=p["vae"], text_encoder=p["text_encoder"], adapter=p.get("adapter"),
                               vision_encoder=p.get("vision_encoder"),
                               lora_strength=_setting(self.spec, "lora_strength", float) or 1.0)
            self._pipe = MVS2VPipeline.from_files(files, device=self.device, dtype=self.dtype)
        return self._pipe

    def settings(self, case: BenchCase) -> Any:
        """The case's :class:`GenerationSettings`: case values, else the model folder's, else the defaults."""
        from ..pipeline.generate import GenerationSettings

        d, sampler = self.spec.defaults, self.spec.defaults.get("sampler", {})
        steps = self.steps or _setting(self.spec, "steps", int) or case.steps or sampler.get("steps")
        values = {"width": case.width or d.get("width"), "height": case.height or d.get("height"),
                  "frames": case.frames or d.get("frames"), "steps": steps,
                  **{k: sampler.get(k) for k in SAMPLER_KEYS[1:]}}
        return GenerationSettings(prompt=case.prompt, negative_prompt=case.negative_prompt or "", seed=case.seed,
                                  **{k: v for k, v in values.items() if v is not None})

    def check(self, cases: list[BenchCase]) -> None:
        """Every case's settings checked (numbers, 4n+1 frames...) before any model loads."""
        for case in cases:
            try:
                self.settings(case)
            except MVS2VError as exc:
                raise MVS2VError(f"case {case.id} with model {self.spec.name}: {exc}") from None

    def generate(self, case: BenchCase, video: Path) -> dict[str, Any]:
        from dataclasses import asdict, replace

        from ..pipeline.generate import SubjectInput

        t0 = time.perf_counter()
        pipe = self._pipeline()
        load = time.perf_counter() - t0
        refs = pipe.default_references.with_overrides(
            scheme=self.spec.settings.get("scheme"), empty_slot_mode=self.spec.settings.get("empty_slot_mode"),
            gap=_setting(self.spec, "gap", float), slots_per_subject=_setting(self.spec, "slots_per_subject", int))
        settings = replace(self.settings(case), references=refs)
        subjects = [SubjectInput(s.name, [str(v.image) for v in s.views],
                                 s.labels if any(lab is not None for lab in s.labels) else None, s.frontal)
                    for s in case.subjects]
        t1 = time.perf_counter()
        result = pipe.generate(settings, subjects)
        result.save(video, VIDEO_FPS, pipe.lossless_output)
        used = {k: v for k, v in asdict(settings).items() if k not in ("references", "prompt", "negative_prompt")}
        return {"settings": used, "references": str(refs), "seconds": time.perf_counter() - t1, "load_seconds": load}


# ---- ComfyUI ---------------------------------------------------------------------------------------------------------


def workflow_values(case: BenchCase, uploaded: list[list[str]], steps: int | None, prefix: str) -> dict[str, Any]:
    """The placeholder values of one case (see docs/evaluation.md, Benchmark runner)."""
    values: dict[str, Any] = {"prompt": case.prompt, "negative_prompt": case.negative_prompt or "", "seed": case.seed,
                              "case_id": case.id, "prefix": prefix, "subjects": len(case.subjects)}
    for key in ("width", "height", "frames"):
        if getattr(case, key) is not None:
            values[key] = getattr(case, key)
    if steps or case.steps:
        values["steps"] = steps or case.steps
    for i, (subject, names) in enumerate(zip(case.subjects, uploaded)):
        labels = ["" if lab is None else (f"{lab:g}" if isinstance(lab, float) else lab) for lab in subject.labels]
        values.update({f"subject{i}_name": subject.name, f"subject{i}_kind": subject.kind,
                       f"subject{i}_labels": ",".join(labels), f"subject{i}_views": len(names),
                       # an int, as MV-S2V Subject's frontal_view: -1 = the node's default
                       f"subject{i}_frontal": -1 if subject.frontal is None else subject.frontal})
        for j, (name, label) in enumerate(zip(names, labels)):
            values[f"subject{i}_view{j}"] = name
            values[f"subject{i}_view{j}_label"] = label
    return values


def read_frames(path: Path) -> Any:
    """uint8 ``[F, H, W, 3]`` of a video file, or of an animated / still image (every frame)."""
    import numpy as np

    if path.suffix.lower() in ANIMATION_SUFFIXES:
        from PIL import Image, ImageSequence

        with Image.open(path) as im:
            return np.stack([np.asarray(f.convert("RGB")).copy() for f in ImageSequence.Iterator(im)])
    from ..pipeline.video_io import read_video

    return read_video(path).numpy()


class ComfyUIBackend:
    """Generates by filling a workflow's placeholders and running it on a ComfyUI server.

    The video is the job's first output with a video suffix, else its first animated image, else
    the still images of its first image output stacked as frames; it is stored as lossless mp4.
    """

    def __init__(self, spec: ModelSpec, client: Any, steps: int | None = None, timeout: float | None = None) -> None:
        from ..comfyui_http import find_placeholders

        self.spec, self.client, self.steps, self.timeout = spec, client, steps, timeout
        try:
            self.workflow = json.loads(spec.workflow.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MVS2VError(f"--workflow {spec.workflow} is not JSON ({exc}); export it with Workflow > Export (API)") from None
        if not find_placeholders(self.workflow):
            raise MVS2VError(f"--workflow {spec.workflow} has no {{{{...}}}} placeholder, so every case would give the "
                             "same video; put {{prompt}}, {{seed}}, {{subject0_view0}}... where the case's values go")

    def check(self, cases: list[BenchCase]) -> None:
        """Every case fills every placeholder (checked with stand-in image names, before any upload)."""
        from ..comfyui_http import fill_placeholders

        for case in cases:
            names = [[f"{s.name}_{j}.png" for j in range(len(s.views))] for s in case.subjects]
            try:
                fill_placeholders(self.workflow, workflow_values(case, names, self.steps, "prefix"))
            except MVS2VError as exc:
                raise MVS2VError(f"case {case.id} with --workflow {self.spec.workflow}: {exc}") from None

    def generate(self, case: BenchCase, video: Path) -> dict[str, Any]:
        import tempfile

        from ..comfyui_http import fill_placeholders
        from ..pipeline.video_io import write_lossless_mp4

        uploaded = [[self.client.upload_image(v.image, subfolder=f"mvs2v_bench/{case.id}/{s.name}") for v in s.views]
                    for s in case.subjects]
        prefix = f"mvs2v_bench/{self.spec.name}/{case.id}"
        workflow = fill_placeholders(self.workflow, workflow_values(case, uploaded, self.steps, prefix))
        self.client.check_workflow(workflow)
        job = self.client.run(workflow, timeout=self.timeout)
        chosen = _video_outputs(job.outputs)
        if not chosen:
            raise MVS2VError(f"ComfyUI job {job.prompt_id} for case {case.id} wrote no video or image output; the "
                             "workflow needs a save node (SaveAnimatedWEBP, SaveImage, a video saver)")
        with tempfile.TemporaryDirectory() as tmp:
            frames = [read_frames(self.client.download(f, Path(tmp) / f"{i}_{Path(f.filename).name}"))
                      for i, f in enumerate(chosen)]
        import numpy as np

        write_lossless_mp4(np.concatenate(frames), video, VIDEO_FPS)
        return {"prompt_id": job.prompt_id, "seconds": job.seconds, "outputs": [f.filename for f in chosen],
                "workflow": str(self.spec.workflow)}


def _video_outputs(outputs: list) -> list:
    """The output files that make the video (see :class:`ComfyUIBackend`)."""
    videos = [f for f in outputs if Path(f.filename).suffix.lower() in VIDEO_SUFFIXES]
    if videos:
        return videos[:1]
    animations = [f for f in outputs if Path(f.filename).suffix.lower() in (".webp", ".gif", ".apng")]
    if animations:
        return animations[:1]
    images = [f for f in outputs if f.kind == "images" and f.type == "output"]
    return [f for f in images if f.node_id == images[0].node_id] if images else []

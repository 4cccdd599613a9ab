"""``mvs2v eval``: score a generated video with the metrics of the one registry (docs/evaluation.md).

Core owns the command. Without a plugin's mode it scores a **real** video against per-subject
reference images (``--subject NAME=IMG,...`` as in ``mvs2v generate``), a prompt, optional boxes,
masks and kinds, and the weights folders of :mod:`.real_metrics`; it writes ``metrics.json`` and
prints a table.

Other packages add **modes** through the same ``mvs2v.cli`` entry point that adds their commands:
core builds the ``eval`` parser first, and a plug-in finds it in the subparsers it is given
(``sub.choices["eval"]``) and calls its ``add_eval_mode(name, trigger, add_arguments, handler)``.
``add_arguments(parser)`` adds the mode's own flags (only ``parser.add_argument``); giving the flag
``trigger`` selects the mode, whose ``handler(args)`` then runs instead of the real-video scoring.
The toy world adds its ``--sample`` mode this way; core never names it. A flag of one mode given
in another is a one-line error.

Only argparse and the standard library are imported here; numpy, torch, PyAV and the models are
imported when the real mode runs, so ``mvs2v --help`` stays light.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..cli_inputs import missing_image, parse_subject, quiet_library_progress_bars
from ..errors import MVS2VError

__all__ = ["EVAL_FORMAT", "EvalMode", "EvalModes", "add_eval_parser", "run_eval_command", "real_eval_request",
           "run_real_eval", "format_results", "WEIGHT_FLAGS", "weights_from_args", "parse_metric_names",
           "reason_with_flag", "registry_inputs", "json_ready"]

EVAL_FORMAT = "mvs2v-eval-real"
# weights input -> what the flag names (the folders are those of real_metrics' MetricWeights)
WEIGHT_FLAGS = {"dino_model": "DINOv2 transformers folder (e.g. facebook/dinov2-base)",
                "clip_model": "CLIP transformers folder with its tokenizer (e.g. openai/clip-vit-large-patch14)",
                "face_model": "InsightFace pack folder (det_10g.onnx + w600k_r50.onnx, e.g. buffalo_l)",
                "aesthetic_model": "folder holding aesthetic_mlp.safetensors (LAION aesthetic MLP)"}
# registry input -> the flag that gives it (named in skip reasons)
INPUT_FLAGS = {"video": "--video", "reference_images": "--subject NAME=IMG,...", "prompt": "--prompt"}
KINDS = ("person", "object")
MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff", ".webp", ".jpg", ".jpeg")


# ---- modes ---------------------------------------------------------------------------------------------------------


@dataclass
class EvalMode:
    """One way of running ``mvs2v eval``: selected when the flag of dest ``trigger`` is given."""

    name: str
    trigger: str
    handler: Callable[[argparse.Namespace], Any] | None
    actions: list[argparse.Action]


class _Recorder:
    """Hands ``add_argument`` to an argument group and keeps the actions made (the mode's own flags)."""

    def __init__(self, group: Any) -> None:
        self._group = group
        self.actions: list[argparse.Action] = []

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = self._group.add_argument(*args, **kwargs)
        self.actions.append(action)
        return action


class EvalModes:
    """The modes of one ``eval`` parser: core's real-video mode and those plug-ins add."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser
        self.modes: list[EvalMode] = []

    def add(self, name: str, trigger: str, add_arguments: Callable[[Any], None],
            handler: Callable[[argparse.Namespace], Any] | None, description: str | None = None) -> EvalMode:
        """Add a mode: ``add_arguments(parser)`` adds its flags; giving ``trigger``'s flag selects it."""
        if any(m.name == name for m in self.modes):
            raise MVS2VError(f"mvs2v eval already has a mode called {name!r}")
        recorder = _Recorder(self.parser.add_argument_group(f"{name} mode", description))
        add_arguments(recorder)
        if handler is not None and trigger not in {a.dest for a in recorder.actions}:
            raise MVS2VError(f"mvs2v eval mode {name!r}: its arguments add no flag with dest {trigger!r}")
        mode = EvalMode(name, trigger, handler, recorder.actions)
        self.modes.append(mode)
        return mode

    def selected(self, args: argparse.Namespace) -> EvalMode:
        """The plug-in mode whose trigger flag was given, else the real mode (more than one: an error)."""
        chosen = [m for m in self.modes if m.handler is not None and _given(args, m.trigger, self.parser)]
        if len(chosen) > 1:
            flags = " and ".join(_flag(self.parser, m.trigger) for m in chosen)
            raise MVS2VError(f"mvs2v eval: {flags} select different modes; give one of them")
        return chosen[0] if chosen else self.modes[0]

    def check_flags(self, args: argparse.Namespace, mode: EvalMode) -> None:
        """A flag of another mode given with ``mode``'s: one line naming the flag and its mode."""
        for other in self.modes:
            if other is mode:
                continue
            for action in other.actions:
                if _given(args, action.dest, self.parser):
                    raise MVS2VError(f"mvs2v eval: {action.option_strings[0]} belongs to the {other.name} mode"
                                     f"{_selected_by(other, self.parser)}, not the {mode.name} mode"
                                     f"{_selected_by(mode, self.parser)}; drop it or change mode")


def _given(args: argparse.Namespace, dest: str, parser: argparse.ArgumentParser) -> bool:
    return getattr(args, dest, None) not in (None, False, [], parser.get_default(dest))


def _flag(parser: argparse.ArgumentParser, dest: str) -> str:
    return next((a.option_strings[0] for a in parser._actions if a.dest == dest and a.option_strings), "--" + dest)


def _selected_by(mode: EvalMode, parser: argparse.ArgumentParser) -> str:
    return " (without a mode flag)" if mode.handler is None else f" ({_flag(parser, mode.trigger)})"


# ---- the parser ----------------------------------------------------------------------------------------------------


def _add_real_args(p: Any) -> None:
    """The real-video mode's flags."""
    p.add_argument("--subject", dest="eval_subjects", action="append", default=[], metavar="NAME=IMG[,IMG...]",
                   help="one subject and its reference images, as for mvs2v generate (view labels '@front' are "
                        "kept in metrics.json) (repeatable)")
    p.add_argument("--prompt", dest="eval_prompt", metavar="TEXT", help="the text prompt (for text_alignment)")
    p.add_argument("--boxes", metavar="FILE.json",
                   help="subject boxes in frame pixels: {\"NAME\": [x0, y0, x1, y1]} for every frame, or a list "
                        "with one box (or null: absent) per frame")
    p.add_argument("--mask", dest="masks", action="append", default=[], metavar="NAME=PATH",
                   help="a subject's mask: one image for every frame, or a folder with one image per frame "
                        "(non-zero = subject); its bounding box is the crop (repeatable)")
    p.add_argument("--kind", dest="kinds", action="append", default=[], metavar="NAME=person|object",
                   help="what a subject is (default person: a face crop when no box or mask is given) (repeatable)")
    p.add_argument("--eval-models", metavar="ROOT",
                   help="one folder holding dinov2/, clip/, insightface/ and aesthetic/ (a missing one skips its "
                        "metrics, named); the flags below replace single ones")
    for option, what in WEIGHT_FLAGS.items():
        p.add_argument("--" + option.replace("_", "-"), dest=option, metavar="FOLDER", help=what)
    p.add_argument("--max-frames", type=int, metavar="N",
                   help="frames sampled evenly for the model metrics (default all)")
    p.add_argument("--metrics", metavar="NAME,...",
                   help="score only these registered metrics (default: every metric of real videos)")


def add_eval_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``mvs2v eval`` (core's real-video mode) to the subparsers; plug-ins add modes through
    the parser's ``add_eval_mode`` (see the module docstring)."""
    p = sub.add_parser("eval", help="score a generated video: real videos against reference images (--subject), "
                                    "or a plug-in's mode; --list-metrics shows every metric",
                       description="Score a generated video with the metrics of the one registry. Without a "
                                   "mode flag: a real video against reference images (docs/evaluation.md).")
    p.add_argument("--video", help="the generated video (any file PyAV reads)")
    p.add_argument("--out", help="folder for metrics.json and the mode's other files (created if missing)")
    p.add_argument("--list-metrics", action="store_true",
                   help="print every registered metric and causal probe with the inputs and weights it needs, then "
                        "exit")
    p.add_argument("--eval-device", default="cpu", help="torch device of the feature models (default cpu)")
    modes = EvalModes(p)
    modes.add("real", "eval_subjects", _add_real_args, None,
              "a real video against reference images; every metric whose inputs and weights are given runs, each "
              "other one is skipped with one line")
    p.add_eval_mode = modes.add  # type: ignore[attr-defined] - the plug-in hook
    p.set_defaults(handler=run_eval_command, eval_modes=modes)
    return p


def run_eval_command(args: argparse.Namespace) -> Any:
    """``mvs2v eval``: ``--list-metrics``, a plug-in's mode when its flag is given, else the real mode."""
    if args.list_metrics:
        from .registry import format_metric_table

        print(format_metric_table())
        return None
    modes: EvalModes = args.eval_modes
    mode = modes.selected(args)
    modes.check_flags(args, mode)
    if mode.handler is not None:
        return mode.handler(args)
    return run_real_eval(args)


# ---- the real mode: checks before any work -------------------------------------------------------------------------


@dataclass
class RealEvalRequest:
    """Everything ``mvs2v eval`` (real mode) was asked, checked; nothing decoded yet."""

    video: Path
    out: Path
    names: list[str]
    images: list[list[str]]
    labels: list[list[str | None]]
    kinds: list[str | None]
    boxes: dict[str, Any]
    masks: dict[str, Path]
    prompt: str | None
    weights: dict[str, Path | None]
    max_frames: int | None
    device: str
    metrics: list[str]


def _subjects(items: list[str]) -> tuple[list[str], list[list[str]], list[list[str | None]]]:
    names, images, labels = [], [], []
    for text in items:
        name, paths, view_labels = parse_subject(text)
        if name in names:
            raise MVS2VError(f"subject names must be unique: --subject {name}=... is given twice "
                             f"(list all its images in one --subject {name}=A.png,B.png)")
        missing = next((p for p in paths if not Path(p).is_file()), None)
        if missing is not None:
            raise missing_image(missing, name)
        names.append(name), images.append(paths), labels.append(view_labels)
    return names, images, labels


def _named(items: list[str], flag: str, names: list[str], example: str) -> dict[str, str]:
    """``NAME=VALUE`` items of ``flag`` for known subjects, each at most once."""
    out: dict[str, str] = {}
    for text in items:
        name, eq, value = text.partition("=")
        name, value = name.strip(), value.strip()
        if not eq or not name or not value:
            raise MVS2VError(f"{flag} {text!r} must look like NAME=VALUE, e.g. {flag} {example}")
        if name not in names:
            raise MVS2VError(f"{flag} {text!r} names no --subject (subjects: {', '.join(names) or 'none'})")
        if name in out:
            raise MVS2VError(f"{flag} is given twice for subject {name!r}; give it once")
        out[name] = value
    return out


def _kinds(items: list[str], names: list[str]) -> list[str | None]:
    given = _named(items, "--kind", names, "cat=object")
    for name, kind in given.items():
        if kind not in KINDS:
            raise MVS2VError(f"--kind {name}={kind}: the kind must be one of {', '.join(KINDS)}")
    return [given.get(n) for n in names]


def _masks(items: list[str], names: list[str]) -> dict[str, Path]:
    masks = {n: Path(p) for n, p in _named(items, "--mask", names, "cat=cat_mask.png").items()}
    for name, path in masks.items():
        if not path.exists():
            raise MVS2VError(f"--mask {name}={path} does not exist; give a mask image or a folder of them")
    return masks


def _box(value: Any, where: str) -> tuple[float, ...] | None:
    """One ``[x0, y0, x1, y1]`` (or None) checked."""
    if value is None:
        return None
    ok = isinstance(value, list) and len(value) == 4 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    if not ok or value[2] <= value[0] or value[3] <= value[1]:
        raise MVS2VError(f"--boxes {where}: a box must be [x0, y0, x1, y1] in pixels with x1 > x0 and y1 > y0, "
                         f"got {json.dumps(value)}")
    return tuple(float(v) for v in value)


def _boxes(path: str | None, names: list[str]) -> dict[str, Any]:
    """``--boxes FILE.json``: subject name -> one box, or a list of boxes / None (one per frame)."""
    if path is None:
        return {}
    if not Path(path).is_file():
        raise MVS2VError(f"--boxes {path} does not exist; give a JSON file {{\"NAME\": [x0, y0, x1, y1]}}")
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MVS2VError(f"--boxes {path} is not JSON ({exc}); give {{\"NAME\": [x0, y0, x1, y1]}}") from None
    if not isinstance(data, dict):
        raise MVS2VError(f"--boxes {path} must hold an object {{\"NAME\": [x0, y0, x1, y1], ...}}")
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise MVS2VError(f"--boxes {path} names {', '.join(unknown)}, which no --subject gives "
                         f"(subjects: {', '.join(names) or 'none'})")
    out: dict[str, Any] = {}
    for name, value in data.items():
        if isinstance(value, list) and value and (value[0] is None or isinstance(value[0], list)):
            out[name] = [_box(v, f"{name} frame {i}") for i, v in enumerate(value)]
        else:
            out[name] = _box(value, name)
    return out


def weights_from_args(args: argparse.Namespace) -> dict[str, Path | None]:
    """The weights folders: ``--eval-models ROOT``'s sub-folders, replaced by the single flags given."""
    from .real_metrics import weights_from_root

    weights: dict[str, Path | None] = dict.fromkeys(WEIGHT_FLAGS)
    if args.eval_models is not None:
        root = Path(args.eval_models).expanduser()
        if not root.is_dir():
            raise MVS2VError(f"--eval-models {root} is not a folder; give the folder holding dinov2/, clip/, "
                             "insightface/ and aesthetic/")
        weights.update(weights_from_root(root))
    for option in WEIGHT_FLAGS:
        value = getattr(args, option)
        if value is not None:
            path = Path(value).expanduser()
            if not path.is_dir():
                raise MVS2VError(f"--{option.replace('_', '-')} {path} is not a folder; give the "
                                 f"{WEIGHT_FLAGS[option]}")
            weights[option] = path
    return weights


def parse_metric_names(text: str | None) -> list[str]:
    from .real_metrics import REAL_METRIC_NAMES
    from .registry import get_metric

    if text is None:
        return list(REAL_METRIC_NAMES)
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise MVS2VError("--metrics names no metric; e.g. --metrics s_v2r_dino,motion_amplitude")
    for name in names:
        get_metric(name)  # one line listing the registered names
    return list(dict.fromkeys(names))


def real_eval_request(args: argparse.Namespace) -> RealEvalRequest:
    """Every flag of the real mode checked, files included, before anything is decoded or loaded."""
    from ..pipeline.outputs import check_output_folder

    missing = [flag for flag, value in (("--video", args.video), ("--out", args.out)) if not value]
    if missing:
        raise MVS2VError(f"mvs2v eval needs {' and '.join(missing)} (real videos: also --subject NAME=IMG,...; "
                         "or --list-metrics to list the metrics)")
    if not Path(args.video).is_file():
        raise MVS2VError(f"--video {args.video} does not exist")
    if args.max_frames is not None and args.max_frames < 1:
        raise MVS2VError(f"--max-frames {args.max_frames} must be at least 1 (or leave it out: every frame)")
    names, images, labels = _subjects(args.eval_subjects)
    request = RealEvalRequest(
        video=Path(args.video), out=Path(args.out), names=names, images=images, labels=labels,
        kinds=_kinds(args.kinds, names), boxes=_boxes(args.boxes, names), masks=_masks(args.masks, names),
        prompt=args.eval_prompt, weights=weights_from_args(args), max_frames=args.max_frames, device=args.eval_device,
        metrics=parse_metric_names(args.metrics))
    _check_runnable(request)
    check_output_folder(args.out, "--out", ("metrics.json",))
    return request


def reason_with_flag(reason: str) -> str:
    """A skip reason naming a registry input, with the flag that gives it."""
    for name, flag in INPUT_FLAGS.items():
        if reason.endswith(f"needs input {name}") or f"needs input {name}," in reason:
            return f"{reason} (give {flag})"
    return reason


def _check_runnable(request: RealEvalRequest) -> None:
    """One line when no chosen metric can run on what was given (weights and inputs only; nothing loads)."""
    from .registry import get_metric, missing_requirement

    present = {"video": True, "reference_images": True if request.names else None, "prompt": request.prompt,
               **request.weights}
    reasons = [missing_requirement(get_metric(n), present) for n in request.metrics]
    if all(r is not None for r in reasons):
        listed = "; ".join(reason_with_flag(f"{n}: {r}") for n, r in zip(request.metrics, reasons))
        raise MVS2VError(f"mvs2v eval: no metric can run: {listed}")


# ---- the real mode: inputs, scoring, report ------------------------------------------------------------------------


def _box_rows(value: Any, name: str, frames: int, width: int, height: int) -> Any:
    """A subject's ``--boxes`` entry as the registry's ``subject_boxes`` item, checked against the video."""
    import numpy as np

    if value is None:
        return None
    rows = [value] if isinstance(value, tuple) else value
    if isinstance(value, list) and len(value) != frames:
        raise MVS2VError(f"--boxes: subject {name} has {len(value)} per-frame boxes but the video has {frames} frames; "
                         "give one per frame (null where it is absent) or one box for every frame")
    for i, box in enumerate(rows):
        if box is not None and (box[0] >= width or box[1] >= height or box[2] <= 0 or box[3] <= 0):
            where = f"frame {i}" if isinstance(value, list) else "its box"
            raise MVS2VError(f"--boxes: subject {name} {where} {list(box)} lies outside the {width}x{height} frame "
                             "(boxes are x0, y0, x1, y1 in frame pixels)")
    if isinstance(value, tuple):
        return value
    return np.array([[math.nan] * 4 if b is None else list(b) for b in value], dtype=np.float64)


def _mask_image(path: Path, name: str, width: int, height: int) -> Any:
    import numpy as np

    from ..pipeline.images import load_image

    mask = np.asarray(load_image(path)).max(axis=-1) > 0
    if mask.shape != (height, width):
        raise MVS2VError(f"--mask {name}: {path} is {mask.shape[1]}x{mask.shape[0]} but the video is "
                         f"{width}x{height}; give masks at the video's size")
    return mask


def _mask(path: Path, name: str, frames: int, width: int, height: int) -> Any:
    """``--mask``: one image (every frame) -> ``[H, W]``; a folder of ``frames`` images (sorted) -> ``[F, H, W]``."""
    import numpy as np

    if path.is_file():
        return _mask_image(path, name, width, height)
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in MASK_SUFFIXES)
    if len(files) != frames:
        raise MVS2VError(f"--mask {name}: {path} holds {len(files)} mask images but the video has {frames} frames; "
                         "give one per frame (sorted by name) or one image for every frame")
    return np.stack([_mask_image(p, name, width, height) for p in files])


def registry_inputs(request: RealEvalRequest) -> dict[str, Any]:
    """The registry's inputs: the video and references decoded, boxes and masks checked against the video."""
    import numpy as np

    from ..pipeline.images import load_image
    from ..pipeline.video_io import read_video

    video = read_video(request.video).numpy()
    frames, height, width = video.shape[:3]
    inputs: dict[str, Any] = {
        "video": video, "prompt": request.prompt, "max_frames": request.max_frames, "eval_device": request.device,
        "reference_images": [[np.asarray(load_image(p)) for p in paths] for paths in request.images] or None,
        **request.weights}
    if request.boxes:
        inputs["subject_boxes"] = [_box_rows(request.boxes.get(n), n, frames, width, height) for n in request.names]
    if request.masks:
        inputs["subject_masks"] = [None if n not in request.masks else
                                   _mask(request.masks[n], n, frames, width, height) for n in request.names]
    if any(request.kinds):
        inputs["subject_kinds"] = request.kinds
    return inputs


def json_ready(x: Any) -> Any:
    """numpy / torch scalars and arrays as plain JSON; non-finite floats as None."""
    if isinstance(x, dict):
        return {str(k): json_ready(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_ready(v) for v in x]
    if hasattr(x, "tolist") and not isinstance(x, (str, bytes)):
        return json_ready(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _record(request: RealEvalRequest, video: Any, results: dict[str, Any], skipped: dict[str, str]) -> dict[str, Any]:
    from .registry import get_metric

    return {
        "format": EVAL_FORMAT, "version": 1, "video": str(request.video),
        "frames": int(video.shape[0]), "width": int(video.shape[2]), "height": int(video.shape[1]),
        "prompt": request.prompt,
        "subjects": {n: {"images": imgs, "labels": lab, "kind": k, "box": n in request.boxes,
                         "mask": n in request.masks}
                     for n, imgs, lab, k in zip(request.names, request.images, request.labels, request.kinds)},
        "weights": {k: None if v is None else str(v) for k, v in request.weights.items()},
        "max_frames": request.max_frames,
        "metrics": json_ready(results),
        "skipped": {n: reason_with_flag(r) for n, r in skipped.items()},
        "definitions": {n: get_metric(n).description for n in request.metrics},
    }


def dumps_record(record: dict[str, Any]) -> str:
    """metrics.json's text: indented, with every metric's result, skip reason and definition on one line."""
    lines = ["{"]
    items = list(record.items())
    for i, (key, value) in enumerate(items):
        comma = "," if i < len(items) - 1 else ""
        if key in ("metrics", "skipped", "definitions", "subjects", "weights") and isinstance(value, dict) and value:
            inner = [f"    {json.dumps(k)}: {json.dumps(v, allow_nan=False)}" for k, v in value.items()]
            lines.append(f"  {json.dumps(key)}: {{\n" + ",\n".join(inner) + f"\n  }}{comma}")
        else:
            lines.append(f"  {json.dumps(key)}: {json.dumps(value, allow_nan=False)}{comma}")
    return "\n".join(lines + ["}"]) + "\n"


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "n/a" if value is None else str(value)
    return f"{value:.4f}" if abs(value) < 1e4 else f"{value:.4g}"


def format_results(results: dict[str, Any], skipped: dict[str, str], order: list[str]) -> str:
    """One line per metric: its value and its scalar extras, or ``skipped`` and the reason."""
    width = max([len(n) for n in order] + [6])
    lines = [f"{'metric':<{width}}  {'value':>10}  details"]
    for name in order:
        if name in results:
            r = results[name]
            extras = "  ".join(f"{k} {_number(v)}" for k, v in r.items()
                               if k != "value" and isinstance(v, (int, float, str)) and not isinstance(v, bool))
            lines.append(f"{name:<{width}}  {_number(r.get('value')):>10}  {extras}".rstrip())
        elif name in skipped:
            reason = skipped[name].removeprefix(f"{name}: ")
            lines.append(f"{name:<{width}}  {'skipped':>10}  {reason}")
    return "\n".join(lines)


def run_real_eval(args: argparse.Namespace) -> dict[str, Any]:
    """``mvs2v eval`` on a real video: check every flag, score, write ``--out/metrics.json``, print the table.

    Exits with a one-line error (status 2) when no metric ran; the file then still lists why.
    """
    from ..utils import atomic_write
    from .registry import compute_metrics

    request = real_eval_request(args)
    quiet_library_progress_bars()  # transformers' loading bars would bury the table
    inputs = registry_inputs(request)
    results, skipped = compute_metrics(inputs, request.metrics)
    record = _record(request, inputs["video"], results, skipped)
    target = request.out / "metrics.json"
    try:
        with atomic_write(target) as tmp:
            tmp.write_text(dumps_record(record), encoding="utf-8")
    except OSError as exc:
        raise MVS2VError(f"--out {request.out}: could not write metrics.json ({exc.strerror or exc}); free some "
                         "space or choose another folder") from exc
    print(format_results(record["metrics"], record["skipped"], request.metrics))
    print(f"wrote {target}")
    if not results:
        raise MVS2VError(f"mvs2v eval: no metric ran (each skip reason is above and in {target}); give the inputs "
                         "or weights folders they name")
    return {"metrics": record, "files": {"metrics": str(target)}}

"""Benchmark cases: one JSON object per line of a ``.jsonl`` file, validated with one-line errors.

A case (HarmoView-Bench style)::

    {"id": "cat_garden", "prompt": "a cat walks around a garden", "seed": 42,
     "subjects": [{"name": "cat", "kind": "object",
                   "views": [{"image": "cat/front.png", "view": "front"},
                             {"image": "cat/side.png", "view": 90, "frontal": true}],
                   "box": [x0, y0, x1, y1], "mask": "cat/mask.png"}],
     "width": 832, "height": 480, "frames": 81, "steps": 30}

``view`` is a label (front/left/back/right) or a yaw in degrees; ``"frontal": true`` (at most one
view a subject) marks the view the video starts from (``SubjectInput.frontal``; default: the view
labelled nearest the front), which a slot-anchored model puts in slot 0; ``kind`` is person
(default) or object; ``box`` / ``mask`` (optional) locate the subject in the generated frames for
the crop metrics; ``width``/``height`` (or ``size: [W, H]``), ``frames``, ``steps``,
``negative_prompt`` are optional (default: the model's). Image paths are relative to the case
file's folder.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import MVS2VError

__all__ = ["BenchCase", "BenchSubject", "BenchView", "load_cases"]

CASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")  # a file name on every system
MAX_SUBJECTS = 4


@dataclass(frozen=True)
class BenchView:
    image: Path
    view: str | float | None


@dataclass(frozen=True)
class BenchSubject:
    name: str
    kind: str
    views: tuple[BenchView, ...]
    box: tuple[float, float, float, float] | None = None
    mask: Path | None = None
    frontal: int | None = None  # index of the view marked frontal; None: the layout's default

    @property
    def labels(self) -> list[str | float | None]:
        return [v.view for v in self.views]


@dataclass(frozen=True)
class BenchCase:
    id: str
    prompt: str
    seed: int
    subjects: tuple[BenchSubject, ...]
    negative_prompt: str | None = None
    width: int | None = None
    height: int | None = None
    frames: int | None = None
    steps: int | None = None

    def fingerprint(self) -> dict[str, Any]:
        """Everything that decides the case's generation, as JSON (cached results carry it)."""
        return json.loads(json.dumps(self, default=_plain))


def _plain(x: Any) -> Any:
    if isinstance(x, Path):
        return str(x)
    if hasattr(x, "__dataclass_fields__"):
        # An unset frontal flag is left out, so cases written before it keep their cached results.
        return {k: getattr(x, k) for k in x.__dataclass_fields__ if not (k == "frontal" and x.frontal is None)}
    raise TypeError(type(x).__name__)


def _models():
    """The pydantic schema (built lazily: pydantic is only needed when a case file is read)."""
    try:
        from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator
    except ImportError:
        raise MVS2VError("mvs2v bench needs pydantic >= 2 to read case files: pip install \"mvs2v[bench]\"") from None
    from typing import Literal, Optional, Union

    from ..references.layout import parse_view_label

    class View(BaseModel):
        model_config = ConfigDict(extra="forbid")
        image: str = Field(min_length=1)
        view: Optional[Union[float, str]] = None
        frontal: StrictBool = False

        @field_validator("view")
        @classmethod
        def _label(cls, v: Any) -> Any:
            if isinstance(v, str):
                try:
                    parse_view_label(v)
                except MVS2VError as exc:
                    raise ValueError(str(exc)) from None
                return v.lower()
            return v

    class Subject(BaseModel):
        model_config = ConfigDict(extra="forbid")
        name: str = Field(min_length=1, max_length=64)
        kind: Literal["person", "object"] = "person"
        views: list[View] = Field(min_length=1)
        box: Optional[tuple[float, float, float, float]] = None
        mask: Optional[str] = None

        @field_validator("box")
        @classmethod
        def _box(cls, b: Any) -> Any:
            if b is not None and (b[2] <= b[0] or b[3] <= b[1]):
                raise ValueError("a box is [x0, y0, x1, y1] in frame pixels with x1 > x0 and y1 > y0")
            return b

        @model_validator(mode="after")
        def _one_frontal(self) -> "Subject":
            marked = [j for j, v in enumerate(self.views) if v.frontal]
            if len(marked) > 1:
                raise ValueError(f"subject {self.name!r} has views {marked} marked frontal; mark at most one (the "
                                 "view the video starts from)")
            return self

    class Case(BaseModel):
        model_config = ConfigDict(extra="forbid")
        id: str = Field(pattern=CASE_ID.pattern)
        prompt: str = Field(min_length=1)
        seed: int = Field(0, ge=0)
        subjects: list[Subject] = Field(min_length=1, max_length=MAX_SUBJECTS)
        negative_prompt: Optional[str] = None
        size: Optional[tuple[int, int]] = None
        width: Optional[int] = Field(None, ge=16)
        height: Optional[int] = Field(None, ge=16)
        frames: Optional[int] = Field(None, ge=1)
        steps: Optional[int] = Field(None, ge=1)

        @model_validator(mode="after")
        def _checks(self) -> "Case":
            names = [s.name for s in self.subjects]
            if len(set(names)) != len(names):
                raise ValueError(f"subject names must be unique, got {names}")
            if self.size is not None:
                if self.width is not None or self.height is not None:
                    raise ValueError("give size [W, H] or width and height, not both")
                self.width, self.height = self.size
            if self.frames is not None and self.frames % 4 != 1:
                raise ValueError(f"frames {self.frames} must be 4n+1 (e.g. 9, 33, 81)")
            return self

    return Case


def _one_line(exc: Any) -> str:
    """A pydantic ValidationError as ``field.path: message; ...``."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "the case"
        parts.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)


def _to_case(model: Any, base: Path, where: str) -> BenchCase:
    """The validated pydantic case as a :class:`BenchCase`, every file checked to exist."""
    subjects = []
    for s in model.subjects:
        views = []
        for v in s.views:
            path = (base / v.image).resolve()
            if not path.is_file():
                raise MVS2VError(f"{where}: subject {s.name!r}: image {v.image} does not exist (paths are relative to "
                                 f"{base})")
            views.append(BenchView(path, v.view))
        mask = None
        if s.mask is not None:
            mask = (base / s.mask).resolve()
            if not mask.exists():
                raise MVS2VError(f"{where}: subject {s.name!r}: mask {s.mask} does not exist")
        frontal = next((j for j, v in enumerate(s.views) if v.frontal), None)
        subjects.append(BenchSubject(s.name, s.kind, tuple(views), tuple(s.box) if s.box else None, mask, frontal))
    return BenchCase(model.id, model.prompt, model.seed, tuple(subjects), model.negative_prompt, model.width,
                     model.height, model.frames, model.steps)


def load_cases(path: str | Path) -> list[BenchCase]:
    """Every case of a ``.jsonl`` file (blank lines and ``#`` comments skipped), checked; one line per mistake."""
    from pydantic import ValidationError

    path = Path(path)
    if not path.is_file():
        raise MVS2VError(f"--cases {path} does not exist; give a .jsonl file with one case per line "
                         "(see docs/evaluation.md, Benchmark runner)")
    schema = _models()
    cases: list[BenchCase] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{path} line {number}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise MVS2VError(f"{where} is not JSON ({exc.msg} at column {exc.colno}); give one JSON object a line") from None
        if not isinstance(data, dict):
            raise MVS2VError(f"{where} must be a JSON object with id, prompt, seed and subjects")
        try:
            model = schema.model_validate(data)
        except ValidationError as exc:
            raise MVS2VError(f"{where} (case {data.get('id', '?')!r}): {_one_line(exc)}") from None
        cases.append(_to_case(model, path.parent, where))
    if not cases:
        raise MVS2VError(f"--cases {path} holds no case; give one JSON object a line")
    seen: set[str] = set()
    for case in cases:
        if case.id in seen:
            raise MVS2VError(f"--cases {path}: case id {case.id!r} is used twice; ids name the result files, make "
                             "them unique")
        seen.add(case.id)
    return cases

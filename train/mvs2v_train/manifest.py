"""The JSONL training manifest: one sample per line, every bad row reported with its line number.

A row::

    {"id": "clip-0001",                          # optional; defaults to "line-<n>"
     "video": "clips/0001.mp4",                  # or "latents": "latents/0001.safetensors"
     "caption": "a man walks on the beach",
     "subjects": [
        {"name": "man",
         "views": [{"image": "refs/0001_front.png", "label": "front"},
                   {"image": "refs/0001_left.png", "yaw": 90},
                   "refs/0001_extra.png"]}],      # a bare path is an unlabelled view
     "split": "train",                           # optional (default "train")
     "quality": 0.92,                            # optional number, for stage filters
     "tags": ["curated"],                        # optional strings, for stage filters
     "meta": {...}}                              # optional, ignored

A view's ``label`` is ``front``/``left``/``back``/``right`` or a yaw in degrees (``yaw`` is the
same as a numeric label); a view with ``"frontal": true`` is the subject's frontal view (default:
the view labelled within 45 degrees of front, else the first unlabelled view, else the labelled view
nearest front; see :meth:`~mvs2v_core.references.layout.ReferenceLayout.build`). Views go into the subject's view slots
exactly as :meth:`mvs2v_core.references.layout.ReferenceLayout.build` places them at inference.
A row may have no subjects: it then trains plain text-to-video (keeps the base model's prior).

``latents`` files are safetensors with a ``latents`` tensor ``[C, F, H, W]`` (or ``[1, C, F, H, W]``),
already normalised like :meth:`mvs2v_core.pipeline.vae.WanVAE.encode` returns them.

Relative paths are resolved from the manifest's folder. The manifest is UTF-8 (a leading byte-order
mark is allowed); a line with bytes that are not UTF-8 is a bad row (its line and byte offset are
listed) and the other rows still load.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from mvs2v_core.errors import MVS2VError
from mvs2v_core.references.layout import ReferenceLayout, parse_view_label

ROW_KEYS = {"id", "video", "latents", "caption", "subjects", "split", "quality", "tags", "meta"}
SUBJECT_KEYS = {"name", "views"}
VIEW_KEYS = {"image", "label", "yaw", "frontal"}
_UNDECODED = re.compile("[\udc80-\udcff]")  # what surrogateescape makes of a byte that is not UTF-8


@dataclass(frozen=True)
class ViewSpec:
    """One reference view: an image path, its label (``front``, a yaw...) or None, and the frontal flag."""

    image: Path
    label: str | float | None = None
    frontal: bool = False


@dataclass(frozen=True)
class SubjectSpec:
    """One subject: a name and its views (in the order the manifest gives them)."""

    name: str
    views: tuple[ViewSpec, ...]

    @property
    def labels(self) -> list[str | float | None]:
        return [v.label for v in self.views]

    @property
    def frontal_index(self) -> int | None:
        """The view flagged ``frontal``, or None to let the layout pick (front label / first view)."""
        for i, v in enumerate(self.views):
            if v.frontal:
                return i
        return None

    def layout_frontal(self) -> int:
        """The frontal view index the layout uses (flag, else label nearest front, else 0)."""
        lay = ReferenceLayout.build([self.labels], len(self.views), frontal=[self.frontal_index])
        sl = lay.subjects[0]
        return int(sl.slots[sl.frontal].source)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Sample:
    """One manifest row, parsed. ``line`` is its 1-based line number in the manifest."""

    line: int
    id: str
    caption: str
    subjects: tuple[SubjectSpec, ...]
    video: Path | None = None
    latents: Path | None = None
    split: str = "train"
    quality: float | None = None
    tags: tuple[str, ...] = ()
    raw: str = field(default="", compare=False, repr=False)

    @property
    def view_counts(self) -> list[int]:
        return [len(s.views) for s in self.subjects]

    @property
    def max_views(self) -> int:
        """Most views any subject has (0 for a row without subjects)."""
        return max(self.view_counts, default=0)

    def files(self) -> list[Path]:
        """Every file the sample reads."""
        out = [p for p in (self.video, self.latents) if p is not None]
        out += [v.image for s in self.subjects for v in s.views]
        return out


@dataclass
class ManifestReport:
    """The samples that parsed and, for every bad row, ``(line, reason)``."""

    path: Path
    samples: list[Sample]
    problems: list[tuple[int, str]]
    total_rows: int

    def describe_problems(self, limit: int | None = None) -> str:
        rows = self.problems if limit is None else self.problems[:limit]
        text = "\n".join(f"  line {ln}: {why}" for ln, why in rows)
        if limit is not None and len(self.problems) > limit:
            text += f"\n  ... and {len(self.problems) - limit} more"
        return text


def _resolve(base: Path, value: str) -> Path:
    p = Path(os.path.expanduser(value))
    return p if p.is_absolute() else base / p


def _parse_view(item: Any, base: Path, where: str) -> ViewSpec:
    if isinstance(item, str):
        if not item:
            raise MVS2VError(f"{where} is an empty path")
        return ViewSpec(_resolve(base, item))
    if not isinstance(item, dict):
        raise MVS2VError(f"{where} must be an image path or an object with 'image' (and 'label' / 'yaw')")
    unknown = sorted(set(item) - VIEW_KEYS)
    if unknown:
        raise MVS2VError(f"{where} has unknown key(s) {unknown}; use image, label, yaw, frontal")
    image = item.get("image")
    if not isinstance(image, str) or not image:
        raise MVS2VError(f"{where} has no 'image' path")
    if "label" in item and "yaw" in item:
        raise MVS2VError(f"{where} has both 'label' and 'yaw'; give one")
    label = item.get("label", item.get("yaw"))
    if label is not None:
        if isinstance(label, bool) or not isinstance(label, (str, int, float)):
            raise MVS2VError(f"{where} label {label!r} must be front/left/back/right or a yaw in degrees")
        parse_view_label(label)  # raises with a clear message
        if isinstance(label, str) and label.strip() == "":
            label = None
    frontal = item.get("frontal", False)
    if not isinstance(frontal, bool):
        raise MVS2VError(f"{where} 'frontal' must be true or false")
    return ViewSpec(_resolve(base, image), label, frontal)


def parse_row(text: str, line: int, base: Path, slots_per_subject: int) -> Sample:
    """One manifest line -> :class:`Sample`; raises :class:`MVS2VError` naming the first problem."""
    try:
        row = json.loads(text)
    except json.JSONDecodeError as e:
        raise MVS2VError(f"not valid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(row, dict):
        raise MVS2VError(f"a row must be a JSON object, got {type(row).__name__}")
    unknown = sorted(set(row) - ROW_KEYS)
    if unknown:
        raise MVS2VError(f"unknown key(s) {unknown}; the keys are {sorted(ROW_KEYS)} (put extra data under 'meta')")
    video, latents = row.get("video"), row.get("latents")
    if (video is None) == (latents is None):
        raise MVS2VError("give exactly one of 'video' (a clip) or 'latents' (a cached .safetensors)")
    for key, value in (("video", video), ("latents", latents)):
        if value is not None and (not isinstance(value, str) or not value):
            raise MVS2VError(f"'{key}' must be a non-empty path string")
    caption = row.get("caption")
    if not isinstance(caption, str):
        raise MVS2VError("'caption' is missing or not a string")
    subjects_raw = row.get("subjects", [])
    if not isinstance(subjects_raw, list):
        raise MVS2VError("'subjects' must be a list of {name, views}")
    subjects = []
    names = set()
    for i, s in enumerate(subjects_raw):
        where = f"subjects[{i}]"
        if not isinstance(s, dict):
            raise MVS2VError(f"{where} must be an object with 'name' and 'views'")
        unknown = sorted(set(s) - SUBJECT_KEYS)
        if unknown:
            raise MVS2VError(f"{where} has unknown key(s) {unknown}; use name, views")
        name = s.get("name", f"subject{i + 1}")
        if not isinstance(name, str) or not name:
            raise MVS2VError(f"{where} 'name' must be a non-empty string")
        if name in names:
            raise MVS2VError(f"two subjects are named {name!r}; subject names must be unique in a row")
        names.add(name)
        views_raw = s.get("views")
        if not isinstance(views_raw, list) or not views_raw:
            raise MVS2VError(f"{where} ({name}) has no views: give at least one reference image")
        views = tuple(_parse_view(v, base, f"{where}.views[{j}]") for j, v in enumerate(views_raw))
        if len(views) > slots_per_subject:
            raise MVS2VError(
                f"subject {name!r} has {len(views)} views but references.slots_per_subject is {slots_per_subject}: "
                "raise slots_per_subject or give fewer views"
            )
        if sum(v.frontal for v in views) > 1:
            raise MVS2VError(f"subject {name!r} has more than one view marked frontal")
        # The layout is what inference builds: check it places these labels (e.g. no clash).
        ReferenceLayout.build([[v.label for v in views]], slots_per_subject, names=[name],
                              frontal=[next((j for j, v in enumerate(views) if v.frontal), None)])
        subjects.append(SubjectSpec(name, views))
    split = row.get("split", "train")
    if not isinstance(split, str) or not split:
        raise MVS2VError("'split' must be a non-empty string such as \"train\" or \"val\"")
    quality = row.get("quality")
    if quality is not None and (isinstance(quality, bool) or not isinstance(quality, (int, float))):
        raise MVS2VError("'quality' must be a number")
    tags = row.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise MVS2VError("'tags' must be a list of strings")
    sid = row.get("id", f"line-{line}")
    if not isinstance(sid, (str, int)) or isinstance(sid, bool):
        raise MVS2VError("'id' must be a string")
    return Sample(
        line=line, id=str(sid), caption=caption, subjects=tuple(subjects),
        video=_resolve(base, video) if video else None, latents=_resolve(base, latents) if latents else None,
        split=split, quality=float(quality) if quality is not None else None, tags=tuple(tags), raw=text.strip(),
    )


def _manifest_lines(path: Path) -> Iterator[tuple[int, str, int]]:
    """``(line number, text, byte offset of the line in the file)`` per line, never raising on bad bytes.

    Bytes that are not UTF-8 become lone surrogates (``surrogateescape``) so one bad byte spoils one
    row, not the whole manifest; :func:`_check_utf8` turns them into that row's problem. Lines end
    at ``\\n``, ``\\r\\n`` or ``\\r`` as in text mode, and re-encoding a line gives back its exact bytes.
    """
    offset = 0
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
        for line_no, text in enumerate(f, start=1):
            size = len(text.encode("utf-8", "surrogateescape"))
            if line_no == 1 and text.startswith("\ufeff"):  # a byte-order mark (Windows editors)
                text = text[1:]
            yield line_no, text, offset
            offset += size


def _check_utf8(text: str, offset: int) -> None:
    """Raise naming the first byte of ``text`` that was not UTF-8 (a surrogate from ``surrogateescape``)."""
    bad = _UNDECODED.search(text)
    if bad is None:
        return
    column = len(text[: bad.start()].encode("utf-8", "surrogateescape"))
    byte = ord(bad.group()) - 0xDC00
    raise MVS2VError(f"not valid UTF-8: byte 0x{byte:02x} at byte {column} of the line (byte offset "
                     f"{offset + column} in the file); save the manifest as UTF-8")


def read_manifest(path: str | os.PathLike, slots_per_subject: int, check_files: bool = True) -> ManifestReport:
    """Parse every row; bad rows become ``(line, reason)`` problems instead of exceptions.

    Args:
        path: the JSONL manifest.
        slots_per_subject: K, from ``[references]`` (a subject may have at most K views).
        check_files: also report rows whose files do not exist.
    """
    p = Path(path)
    if not p.is_file():
        raise MVS2VError(f"manifest {str(p)!r} not found: set data.manifest to your JSONL file")
    with open(p, "rb") as f:
        if f.read(2) in (b"\xff\xfe", b"\xfe\xff"):  # every row would be garbage: say why once
            raise MVS2VError(f"manifest {str(p)!r} is UTF-16 text; save it as UTF-8 (one JSON object per line)")
    base = p.resolve().parent
    samples: list[Sample] = []
    problems: list[tuple[int, str]] = []
    ids: dict[str, int] = {}
    total = 0
    for line_no, text, offset in _manifest_lines(p):
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        total += 1
        try:
            _check_utf8(text, offset)
            sample = parse_row(text, line_no, base, slots_per_subject)
        except MVS2VError as e:
            problems.append((line_no, str(e)))
            continue
        if sample.id in ids:
            problems.append((line_no, f"id {sample.id!r} is already used on line {ids[sample.id]}"))
            continue
        if check_files:
            missing = [f for f in sample.files() if not f.is_file()]
            if missing:
                problems.append((line_no, f"file not found: {missing[0]}"
                                 + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")))
                continue
        ids[sample.id] = line_no
        samples.append(sample)
    return ManifestReport(p, samples, problems, total)


__all__ = ["ViewSpec", "SubjectSpec", "Sample", "ManifestReport", "parse_row", "read_manifest"]

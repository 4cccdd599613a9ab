"""Inputs the ``mvs2v`` commands share: ``--subject`` / ``--view`` parsing, the reference-image error, the
DiT precisions, and quieting the libraries' own progress bars. ``generate`` (:mod:`.cli`), ``eval`` and
``bench`` import it; it imports none of them."""

from __future__ import annotations

from pathlib import Path

from .errors import MVS2VError
from .references.layout import is_view_label, parse_view_label

DTYPES = ("bf16", "fp16", "fp32")  # names resolve_device understands


def split_view(item: str) -> tuple[str, str | None]:
    """``PATH[@LABEL]`` -> ``(path, label)``.

    The text after the last ``@`` is the label only when it is one (``front``/``left``/``back``/
    ``right`` or a finite yaw in degrees) or empty; otherwise that ``@`` is part of the file name, so
    ``me@2x.png`` is a path and ``me@2x.png@left`` a path with a label. A trailing ``@`` (an empty
    label) keeps a name that itself ends in ``@90`` whole: ``shot@90@``.
    """
    path, at, label = item.rpartition("@")
    if at and (label.strip() == "" or is_view_label(label)):
        return path.strip(), label.strip() or None
    return item.strip(), None


def parse_subject(text: str) -> tuple[str, list[str], list[str | None]]:
    """``NAME=IMG[@LABEL][,IMG[@LABEL]...]`` -> (name, paths, labels); labels split as :func:`split_view`."""
    if "=" not in text:
        raise MVS2VError(
            f"--subject {text!r} must look like NAME=IMG[,IMG...], e.g. --subject cat=front.png@front,side.png@left"
        )
    name, rest = text.split("=", 1)
    name = name.strip()
    if not name:
        raise MVS2VError(f"--subject {text!r} has no name before '='")
    views = [split_view(item) for item in rest.split(",") if item.strip()]
    if not views:
        raise MVS2VError(f"--subject {name} has no images after '='")
    return name, [p for p, _ in views], [label for _, label in views]


def parse_view(text: str) -> tuple[str, str, str | None]:
    """``NAME=PATH[@LABEL]`` -> (name, path, label): one view, the whole rest a path (commas included)."""
    name, eq, rest = text.partition("=")
    path, label = split_view(rest)
    if not eq or not name.strip() or not path:
        raise MVS2VError(f"--view {text!r} must look like NAME=PATH[@LABEL], e.g. --view cat='front, 2.png@front'")
    return name.strip(), path, label


def quiet_library_progress_bars() -> None:
    """transformers / diffusers draw their own loading bars; ours is the one that matters."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - transformers is only needed for the text encoder
        pass


def missing_image(path: str, name: str) -> MVS2VError:
    """The error for a reference image that does not exist, reading a mistyped label as one."""
    head, at, label = path.rpartition("@")
    if at and Path(head).is_file():
        parse_view_label(label)  # the image exists without the suffix: say what is wrong with the label
    hint = ""
    if "@" in Path(path).name:
        hint = (" (the text after its last '@' is not a view label, so it was read as part of the file name: "
                "labels are front/left/back/right or degrees)")
    return MVS2VError(f"reference image {path} of subject {name!r} does not exist{hint}")

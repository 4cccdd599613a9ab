"""Pure logic behind the ComfyUI nodes: no ComfyUI import anywhere in this module.

The node pack (``nodes/``) is a thin layer over these helpers, so everything that can be checked
without a ComfyUI install is unit-tested here:

* subjects and reference sets (views, labels, frontal view, masks) -> a :class:`ReferenceLayout`;
* slot assembly: each filled slot's view letterboxed on white (masked pixels made white first),
  empty slots mid-gray, in token order;
* a preview grid image that shows every slot (subject / view labels, empty slots marked);
* content keys for the reference-latent cache;
* path safety for folder / file names typed into a workflow (a workflow is untrusted input);
* reading a reference folder (one subfolder per subject, files named by view).

The reference-token pieces of the patch (positions, proxies, timesteps) are not here: the patch
runs the same :mod:`mvs2v_core.references.tokens` code as the core DiT.

ComfyUI images are ``[N, H, W, 3]`` float tensors in [0, 1] (``[N, H, W, 4]`` with alpha: composited
onto white, as image files with transparency are); masks ``[N, H, W]`` in [0, 1] where 1 marks the
subject (what ComfyUI's background-removal nodes output). NaN or infinite pixels are an error.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..mvs2v_core.errors import MVS2VError
from ..mvs2v_core.pipeline.images import GRAY, WHITE, decode_image, letterbox
from ..mvs2v_core.references.layout import (
    VIEW_LABELS,
    ReferenceLayout,
    canonical_yaw,
    parse_view_label,
)
from ..mvs2v_core.references.settings import EmptySlotMode, SlotAnchor, parse_option

try:
    from PIL import Image, ImageDraw
except ImportError as exc:  # pragma: no cover - Pillow is a hard dependency
    raise ImportError("mvs2v needs Pillow: pip install pillow") from exc

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
MAX_SUBJECTS = 16

__all__ = [
    "EncodedReferences",
    "LatentCache",
    "ReferenceSet",
    "SubjectViews",
    "build_reference_set",
    "describe_layout",
    "frontal_pixels",
    "label_from_filename",
    "list_reference_folder",
    "load_image_tensor",
    "make_subject",
    "parse_view_labels",
    "preview_grid",
    "resolve_under",
    "slot_cache_key",
    "slot_pixels",
    "slot_sources",
    "subject_from_folder",
    "tensor_digest",
    "view_to_pil",
]


# ---- subjects and reference sets -----------------------------------------------------------------


@dataclass(frozen=True)
class SubjectViews:
    """Views of one subject as they come from ComfyUI.

    Attributes:
        name: a label for previews and messages.
        images: ``[N, H, W, 3]`` float in [0, 1], one row per view (or a tuple of ``[H, W, 3]``
            views of different sizes, as a reference folder gives).
        labels: per view, a view label / yaw (see :func:`parse_view_label`) or None (unlabelled).
        frontal: index of the frontal view among the N views (MFI uses it), or None for the default
            (the view labelled within 45 degrees of front, else the first unlabelled view, else
            the labelled view nearest front).
        masks: ``[N, H, W]`` in [0, 1] (1 = subject), a tuple of per-view masks (None entries for
            views without one), or None; pixels outside the subject turn white.
    """

    name: str
    images: torch.Tensor | tuple[torch.Tensor, ...]
    labels: tuple[Any, ...]
    frontal: int | None = None
    masks: torch.Tensor | tuple[torch.Tensor | None, ...] | None = None

    @property
    def num_views(self) -> int:
        return len(self.images)


def parse_view_labels(text: str | None, count: int) -> list[Any]:
    """``"front, left, back"`` or ``"0, 90, 180"`` -> one label per view; empty text -> all unlabelled.

    Each entry may be blank (that view is unlabelled). The number of entries must equal ``count``.
    """
    if text is None or not str(text).strip():
        return [None] * count
    parts = [p.strip() for p in str(text).split(",")]
    if len(parts) != count:
        raise MVS2VError(
            f"view labels {text!r} give {len(parts)} label(s) but the subject has {count} view(s): give one "
            f"label per image, separated by commas (front, left, back, right or a yaw in degrees), or leave "
            f"the labels empty"
        )
    labels: list[Any] = []
    for p in parts:
        if p == "":
            labels.append(None)
            continue
        parse_view_label(p)  # validates; raises a plain-words error
        labels.append(p.lower())
    return labels


def _first_non_finite(batch: torch.Tensor) -> int | None:
    """Index of the first row of ``batch`` holding NaN or inf, or None."""
    bad = ~torch.isfinite(batch.reshape(batch.shape[0], -1)).all(dim=1)
    return int(bad.nonzero()[0, 0]) if bool(bad.any()) else None


def _rgb_on_white(image: torch.Tensor) -> torch.Tensor:
    """``[..., 3 or 4]`` float -> ``[..., 3]`` in [0, 1]; a 4th (alpha) channel is composited onto white."""
    rgb = image[..., :3].clamp(0, 1)
    if image.shape[-1] == 4:  # RGBA: transparent -> white, like image files with alpha
        alpha = image[..., 3:].clamp(0, 1)
        rgb = rgb * alpha + (1.0 - alpha)
    return rgb


def _check_image_batch(images: Any, what: str) -> torch.Tensor:
    """An IMAGE batch ``[N, H, W, 3|4]`` -> float ``[N, H, W, 3]`` on CPU, alpha composited onto white.

    ``what`` names the subject in messages; a view with NaN / inf pixels is refused by its index.
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[-1] not in (3, 4):
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise MVS2VError(f"{what} must be an IMAGE batch [views, height, width, 3], got {shape}")
    if images.shape[0] < 1:
        raise MVS2VError(f"{what} is an empty batch: connect at least one image")
    imgs = images.detach().float().cpu()
    bad = _first_non_finite(imgs)
    if bad is not None:
        raise MVS2VError(f"{what}: view {bad} (counted from 0) has NaN or infinite pixel values; fix the node "
                         "that made the image (e.g. a division by zero) or clamp it before MV-S2V")
    return _rgb_on_white(imgs)


def make_subject(
    name: str,
    images: torch.Tensor,
    labels_text: str | None = None,
    frontal: int | None = None,
    masks: torch.Tensor | None = None,
) -> SubjectViews:
    """Validate a subject's inputs (shapes, label count, frontal index, mask size)."""
    name = (name or "").strip() or "subject"
    imgs = _check_image_batch(images, f"subject {name!r} images")
    n = int(imgs.shape[0])
    labels = tuple(parse_view_labels(labels_text, n))
    if frontal is not None and frontal >= 0 and frontal >= n:
        raise MVS2VError(
            f"subject {name!r}: frontal view {frontal} does not exist (it has {n} view(s), counted from 0)"
        )
    front = None if frontal is None or frontal < 0 else int(frontal)
    mask_t = None
    if masks is not None:
        if not isinstance(masks, torch.Tensor) or masks.ndim not in (2, 3):
            raise MVS2VError(f"subject {name!r}: the mask must be a MASK [views, height, width]")
        mask_t = masks.detach().float().cpu()
        if mask_t.ndim == 2:
            mask_t = mask_t[None]
        bad = _first_non_finite(mask_t)
        if bad is not None:
            raise MVS2VError(f"subject {name!r}: mask {bad} (counted from 0) has NaN or infinite values; "
                             "fix the node that made the mask")
        mask_t = mask_t.clamp(0, 1)
        if mask_t.shape[0] == 1 and n > 1:
            mask_t = mask_t.expand(n, -1, -1)
        if mask_t.shape[0] != n:
            raise MVS2VError(
                f"subject {name!r}: {mask_t.shape[0]} masks for {n} views; give one mask per view or one for all"
            )
        if tuple(mask_t.shape[1:]) != tuple(imgs.shape[1:3]):
            raise MVS2VError(
                f"subject {name!r}: mask size {mask_t.shape[2]}x{mask_t.shape[1]} differs from image size "
                f"{imgs.shape[2]}x{imgs.shape[1]}; make the mask from these images"
            )
        mask_t = mask_t.contiguous()
    return SubjectViews(name, imgs, labels, front, mask_t)


@dataclass(frozen=True)
class ReferenceSet:
    """Subjects placed into view slots, what empty slots become, and what slot 0 stands for."""

    subjects: tuple[SubjectViews, ...]
    layout: ReferenceLayout
    empty_slot_mode: EmptySlotMode
    slot_anchor: SlotAnchor = SlotAnchor.CANONICAL

    @property
    def slots_per_subject(self) -> int:
        return self.layout.slots_per_subject


def build_reference_set(
    subjects: Sequence[SubjectViews], slots_per_subject: int, empty_slot_mode: EmptySlotMode | str,
    slot_anchor: SlotAnchor | str = SlotAnchor.CANONICAL,
) -> ReferenceSet:
    """Place every subject's views into ``slots_per_subject`` slots (labels pick the slot, relative to the
    frontal view under ``slot_anchor = frontal``)."""
    empty_slot_mode = parse_option(EmptySlotMode, empty_slot_mode, "empty-slot mode")
    slot_anchor = parse_option(SlotAnchor, slot_anchor, "slot anchor")
    subjects = [s for s in subjects if s is not None]
    if not subjects:
        raise MVS2VError("the reference set has no subjects: connect at least one MV-S2V Subject node")
    if len(subjects) > MAX_SUBJECTS:
        raise MVS2VError(f"{len(subjects)} subjects given; at most {MAX_SUBJECTS} are supported")
    names: list[str] = []
    for s in subjects:  # unique names, so previews and messages can tell subjects apart
        base, k, name = s.name, 2, s.name
        while name in names:
            name, k = f"{base} ({k})", k + 1
        names.append(name)
    layout = ReferenceLayout.build(
        [list(s.labels) for s in subjects], slots_per_subject, names=names, frontal=[s.frontal for s in subjects],
        slot_anchor=slot_anchor,
    )
    renamed = tuple(
        SubjectViews(n, s.images, s.labels, s.frontal, s.masks) for n, s in zip(names, subjects)
    )
    return ReferenceSet(renamed, layout, empty_slot_mode, slot_anchor)


def describe_layout(layout: ReferenceLayout, slot_anchor: SlotAnchor | str = SlotAnchor.CANONICAL) -> list[dict]:
    """Per slot (token order): subject, slot index, the view the slot stands for, filled, source view index.

    The view is a canonical name (``front``, ``left``...) or, with ``slot_anchor = frontal``, the angle
    from the frontal view (``frontal``, ``frontal+90°``...): there slot 0 need not hold the front.
    """
    names = {v: k for k, v in VIEW_LABELS.items()}
    anchored = parse_option(SlotAnchor, slot_anchor, "slot anchor") == SlotAnchor.FRONTAL
    out = []
    for subj in layout.subjects:
        for k, slot in enumerate(subj.slots):
            yaw = canonical_yaw(k, layout.slots_per_subject)
            if anchored:
                view = "frontal" if yaw == 0 else f"frontal+{yaw:g}°"
            else:
                view = names.get(yaw, f"{yaw:g}°")
            out.append({
                "subject": subj.name,
                "slot": k,
                "view": view,
                "filled": slot.filled,
                "source": slot.source,
                "frontal": k == subj.frontal,
            })
    return out


# ---- slot assembly -------------------------------------------------------------------------------


def view_to_pil(image: torch.Tensor, mask: torch.Tensor | None = None) -> Image.Image:
    """``[H, W, 3]`` (or ``[H, W, 4]`` with alpha) in [0, 1] (+ optional ``[H, W]`` subject mask) -> an
    RGB PIL image on white. NaN / inf pixels are refused (make_subject names the subject and view)."""
    img = image.detach().float().cpu()
    if not bool(torch.isfinite(img).all()):
        raise MVS2VError("a reference view has NaN or infinite pixel values; fix the node that made the image")
    img = _rgb_on_white(img)
    if mask is not None:
        m = mask.float().clamp(0, 1)[..., None]
        img = img * m + (1.0 - m)  # outside the subject -> white, as Phantom's references
    arr = (img * 255.0).round().to(torch.uint8).cpu().contiguous()
    h, w = int(arr.shape[0]), int(arr.shape[1])
    return Image.frombuffer("RGB", (w, h), bytes(arr.numpy().tobytes()), "raw", "RGB", 0, 1).copy()


def _pil_to_tensor(image: Image.Image) -> torch.Tensor:
    w, h = image.size
    data = torch.frombuffer(bytearray(image.convert("RGB").tobytes()), dtype=torch.uint8)
    return data.view(h, w, 3).float() / 255.0


def slot_sources(ref_set: ReferenceSet) -> list[tuple[int, int] | None]:
    """Per slot (token order): ``(subject index, view index)`` of the image in it, None when empty."""
    out: list[tuple[int, int] | None] = []
    for si, subj in enumerate(ref_set.layout.subjects):
        for slot in subj.slots:
            out.append((si, int(slot.source)) if slot.filled else None)
    return out


def _slot_view(ref_set: ReferenceSet, subject: int, view: int, width: int, height: int) -> torch.Tensor:
    subj = ref_set.subjects[subject]
    mask = subj.masks[view] if subj.masks is not None else None
    return _pil_to_tensor(letterbox(view_to_pil(subj.images[view], mask), width, height, WHITE))


def frontal_pixels(ref_set: ReferenceSet, width: int, height: int) -> torch.Tensor:
    """``[n_subjects, height, width, 3]``: each subject's frontal view letterboxed on white (for MFI)."""
    width, height = _check_size(width, height)
    out = []
    for si, subj in enumerate(ref_set.layout.subjects):
        out.append(_slot_view(ref_set, si, int(subj.slots[subj.frontal].source), width, height))
    return torch.stack(out)


def slot_pixels(ref_set: ReferenceSet, width: int, height: int) -> tuple[torch.Tensor, list[bool]]:
    """Slot images as the VAE sees them.

    Returns:
        ``([S, height, width, 3] float in [0, 1], filled)``: every filled slot's view letterboxed on
        white (masked pixels white first), every empty slot mid-gray (the ``gray`` empty-slot mode
        encodes it; ``proxy`` / ``drop`` never use its latent). Token order.
    """
    width, height = _check_size(width, height)
    gray = torch.full((height, width, 3), GRAY[0] / 255.0)
    slots, filled = [], []
    for src in slot_sources(ref_set):
        if src is None:
            slots.append(gray)
            filled.append(False)
            continue
        slots.append(_slot_view(ref_set, src[0], src[1], width, height))
        filled.append(True)
    return torch.stack(slots), filled


def _check_size(width: int, height: int) -> tuple[int, int]:
    if int(width) < 16 or int(height) < 16:
        raise MVS2VError(f"reference size {width}x{height} is too small: use the video's width and height")
    return int(width), int(height)


def _empty_tile(size: int, mode: str) -> Image.Image:
    """An empty slot's preview tile: hatched gray, a red cross and what the empty-slot mode puts there.

    Drawn on its own ``size`` x ``size`` image (pasted into the grid) so the hatching and the text
    are clipped to the cell and never spill into a neighbouring one.
    """
    tile = Image.new("RGB", (size, size), (150, 150, 150))
    draw = ImageDraw.Draw(tile)
    for k in range(-size, size, 12):  # hatching
        draw.line((k, 0, k + size, size - 1), fill=(120, 120, 120))
    draw.line((0, 0, size - 1, size - 1), fill=(200, 40, 40), width=3)
    draw.line((0, size - 1, size - 1, 0), fill=(200, 40, 40), width=3)
    draw.text((6, size // 2 - 6), f"empty ({mode})", fill=(255, 255, 255))
    return tile


def preview_grid(ref_set: ReferenceSet, cell: int = 160) -> torch.Tensor:
    """An IMAGE ``[1, rows*cell', cols*cell, 3]`` with one row per subject and one column per slot.

    Filled cells show the view letterboxed on white with ``subject · view`` underneath (``*`` marks
    the frontal view); empty cells are hatched gray and say what the empty-slot mode puts there.
    """
    layout = ref_set.layout
    label_h = 18
    cols, rows = layout.slots_per_subject, layout.num_subjects
    canvas = Image.new("RGB", (cols * cell, rows * (cell + label_h)), (40, 40, 40))
    draw = ImageDraw.Draw(canvas)
    info = describe_layout(layout, ref_set.slot_anchor)
    for i, slot in enumerate(info):
        r, c = divmod(i, cols)
        x0, y0 = c * cell, r * (cell + label_h)
        if slot["filled"]:
            subj = ref_set.subjects[r]
            mask = subj.masks[slot["source"]] if subj.masks is not None else None
            tile = letterbox(view_to_pil(subj.images[slot["source"]], mask), cell - 4, cell - 4, WHITE)
            canvas.paste(tile, (x0 + 2, y0 + 2))
        else:
            canvas.paste(_empty_tile(cell - 4, str(ref_set.empty_slot_mode)), (x0 + 2, y0 + 2))
        star = "*" if slot["frontal"] and slot["filled"] else ""
        text = f"{slot['subject']} · {slot['view']}{star}"
        draw.text((x0 + 4, y0 + cell + 3), text[: max(4, cell // 7)], fill=(235, 235, 235))
    return _pil_to_tensor(canvas)[None]


# ---- caching -------------------------------------------------------------------------------------


def tensor_digest(t: torch.Tensor) -> str:
    """sha256 over dtype, shape and bytes: equal digests mean equal tensors."""
    c = t.detach().cpu().contiguous()
    h = hashlib.sha256()
    h.update(str(c.dtype).encode())
    h.update(str(tuple(c.shape)).encode())
    h.update(c.view(torch.uint8).numpy().tobytes() if c.numel() else b"")
    return h.hexdigest()


def slot_cache_key(pixels: torch.Tensor, width: int, height: int) -> str:
    """Key of one slot's latent: its letterboxed pixels (which already encode view, mask, size)."""
    return f"{int(width)}x{int(height)}:{tensor_digest(pixels)}"


class LatentCache:
    """A small LRU of encoded slot latents: ``key -> tensor`` (CPU), at most ``max_entries``."""

    def __init__(self, max_entries: int = 256) -> None:
        if max_entries < 1:
            raise MVS2VError("the latent cache needs room for at least one entry")
        self.max_entries = max_entries
        self._data: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> torch.Tensor | None:
        value = self._data.get(key)
        if value is None:
            self.misses += 1
            return None
        self._data.move_to_end(key)
        self.hits += 1
        return value

    def put(self, key: str, value: torch.Tensor) -> None:
        self._data[key] = value.detach().cpu()
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


@dataclass
class EncodedReferences:
    """Per-slot latents of a reference set.

    Attributes:
        latents: ``[1, C, S, h, w]`` VAE latents (ComfyUI's un-normalised LATENT convention), one frame
            per slot in token order; empty slots hold the gray image's latent (``gray``) or zeros
            (``proxy`` / ``drop``, never used).
        layout: the slots.
        empty_slot_mode: ``proxy`` | ``gray`` | ``drop``.
        slot_anchor: ``canonical`` | ``frontal`` (what slot 0 stands for; see :class:`ReferenceSettings`).
        width, height: the pixel size the views were letterboxed to (the video's size).
        frontal_pixels: ``[n_subjects, height, width, 3]`` letterboxed frontal views (for MFI).
    """

    latents: torch.Tensor
    layout: ReferenceLayout
    empty_slot_mode: EmptySlotMode
    width: int
    height: int
    frontal_pixels: torch.Tensor = field(repr=False, default=None)  # type: ignore[assignment]
    slot_anchor: SlotAnchor = SlotAnchor.CANONICAL


# ---- path safety ---------------------------------------------------------------------------------

_DRIVE_RE = re.compile(r"^[a-zA-Z]:")


def resolve_under(root: str | os.PathLike, user_path: str, what: str = "path", *, follow_links: bool) -> Path:
    """Resolve a name typed into a workflow inside ``root``.

    The NAME is always confined: empty names, absolute paths (``/x``, ``C:\\x``, ``\\\\server``), any
    ``..`` component, backslashes and NUL bytes are refused, each with a message naming the rule.
    Symbolic links are the folder owner's, not the workflow's, so ``follow_links`` says where they
    may lead:

    * ``follow_links=False`` (ComfyUI's ``input/``, which uploads and other users may fill): a link
      is followed only while its real path stays inside ``root``; one that leads out is refused.
    * ``follow_links=True`` (the registered model folders, which only the server's owner fills):
      links inside ``root`` are followed wherever they lead (model files often live on another
      disk and are linked in).

    The path must exist.

    Returns:
        The resolved real path.
    """
    if not isinstance(user_path, str):
        raise MVS2VError(f"the {what} must be text, got {type(user_path).__name__}")
    text = user_path.strip()
    if not text:
        raise MVS2VError(f"the {what} is empty: type a name relative to {root}")
    if "\x00" in text:
        raise MVS2VError(f"the {what} {user_path!r} contains a NUL byte and is refused")
    if "\\" in text:
        raise MVS2VError(f"the {what} {user_path!r} contains a backslash; use '/' between folder names")
    if text.startswith(("/", "~")) or _DRIVE_RE.match(text) or os.path.isabs(text):
        raise MVS2VError(
            f"the {what} {user_path!r} is an absolute path; only names inside {root} are allowed "
            f"(ComfyUI may be reachable over a network, so a workflow cannot point anywhere on disk)"
        )
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise MVS2VError(f"the {what} {user_path!r} uses '..'; only names inside {root} are allowed")
    real_root = Path(os.path.realpath(root))
    candidate = real_root.joinpath(*parts) if parts else real_root
    real = Path(os.path.realpath(candidate))
    if not follow_links and real != real_root and real_root not in real.parents:
        raise MVS2VError(
            f"the {what} {user_path!r} leads outside {root} (through a symbolic link); that is refused"
        )
    if not real.exists():
        raise MVS2VError(f"the {what} {user_path!r} does not exist inside {root}")
    return real


def label_from_filename(filename: str) -> str | None:
    """View label from a file name: ``front.png`` -> front, ``cat_left_2.jpg`` -> left,
    ``yaw_45.png`` / ``045.png`` -> ``45``; None when the name says nothing about the view."""
    stem = Path(filename).stem.lower()
    tokens = [t for t in re.split(r"[^a-z0-9.]+", stem) if t]
    for t in tokens:
        if t in VIEW_LABELS:
            return t
    # A yaw only where the name says so: the whole stem is a number, or "yaw" precedes it.
    m = re.fullmatch(r"(?:.*?(?:^|[^a-z])yaw[_-]?)?(\d+(?:\.\d+)?)", stem)
    if m and (stem == m.group(1) or "yaw" in stem):
        return f"{float(m.group(1)) % 360.0:g}"
    return None


def list_reference_folder(root: str | os.PathLike, folder: str) -> list[tuple[str, list[tuple[Path, str | None]]]]:
    """Subjects of a reference folder: one subfolder per subject, images named by view.

    Every subfolder and file is checked with :func:`resolve_under` (a symlink out of ``root`` is
    refused). Subjects are sorted by folder name, views by file name.

    Returns:
        ``[(subject name, [(image path, view label or None), ...]), ...]``.
    """
    base = resolve_under(root, folder, "reference folder", follow_links=False)
    if not base.is_dir():
        raise MVS2VError(f"the reference folder {folder!r} is a file; give a folder with one subfolder per subject")
    rel_base = os.path.relpath(base, os.path.realpath(root))
    subjects = []
    for entry in sorted(os.listdir(base)):
        if entry.startswith("."):
            continue
        sub = resolve_under(root, f"{rel_base}/{entry}" if rel_base != "." else entry, "subject folder",
                            follow_links=False)
        if not sub.is_dir():
            continue
        views = []
        for name in sorted(os.listdir(sub)):
            if name.startswith(".") or not name.lower().endswith(IMAGE_SUFFIXES):
                continue
            rel = os.path.relpath(sub / name, os.path.realpath(root))
            path = resolve_under(root, rel.replace(os.sep, "/"), "reference image", follow_links=False)
            if path.is_file():
                views.append((path, label_from_filename(name)))
        if views:
            subjects.append((entry, views))
    if not subjects:
        raise MVS2VError(
            f"the reference folder {folder!r} has no subject subfolders with images: make one subfolder per "
            f"subject holding images named by view (front.png, left.png, back.png, right.png)"
        )
    return subjects


def load_image_tensor(path: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor | None]:
    """An image file -> ``([H, W, 3] in [0, 1], alpha mask [H, W] or None)``.

    Decoded by core's single decoder (:func:`mvs2v_core.pipeline.images.decode_image`: every Pillow
    mode, 16-bit and float images scaled from their real range, NaN refused), so a reference folder
    gives the same pixels as ``mvs2v generate``. Only Pillow's decoders read the file; messages name
    the file, not the server's folders.
    """
    decoded = decode_image(path, name=Path(path).name)
    return decoded.rgb, decoded.alpha


def subject_from_folder(name: str, views: Sequence[tuple[Path, str | None]]) -> SubjectViews:
    """A subject from :func:`list_reference_folder` entries (views may differ in size)."""
    images, masks, labels = [], [], []
    for path, label in views:
        pixels, mask = load_image_tensor(path)
        images.append(pixels)
        masks.append(mask)
        labels.append(label)
    return SubjectViews(name, tuple(images), tuple(labels), None, tuple(masks) if any(m is not None for m in masks) else None)

"""Reference layout: subjects x a fixed number of view slots.

A layout says, for each subject, which of its ``slots_per_subject`` view slots hold an image and
which are empty. Slot ``k`` of a subject stands for the canonical yaw ``360 * k / slots_per_subject``
degrees (slot 0 is the front), so with four slots the slots are front / left / back / right. Views
given with a label or a yaw go to the nearest free canonical slot; views without one fill the free
slots in order. This keeps a fixed correspondence between a slot's position ids and the viewpoint
it shows, which is what HarmoView's fixed slots rely on. With ``slot_anchor = "frontal"`` the yaws
are measured from the subject's frontal view instead (it goes to slot 0), so the slots stand for
angles from the view the video starts from (:class:`~mvs2v_core.references.settings.SlotAnchor`).

Token order, used by every position scheme and by the DiT: video tokens first, then the slots in
layout order (subject-major, slot-minor); each slot is one latent frame of ``h x w`` tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

from ..errors import MVS2VError
from .settings import EmptySlotMode, SlotAnchor, parse_option

VIEW_LABELS: dict[str, float] = {"front": 0.0, "left": 90.0, "back": 180.0, "right": 270.0}


def parse_view_label(value: str | float | int | None) -> float | None:
    """Turn ``"front"``/``"left"``/``"back"``/``"right"`` or a number of degrees into a yaw in [0, 360).

    ``None`` and ``""`` mean "unlabelled". NaN and infinite yaws are refused: ``nan % 360`` is NaN,
    and a NaN yaw would silently land in the front slot.
    """
    if value is None:
        return None
    if isinstance(value, (int, float)):
        yaw = float(value)
    else:
        text = str(value).strip().lower()
        if text == "":
            return None
        if text in VIEW_LABELS:
            return VIEW_LABELS[text]
        try:
            yaw = float(text.rstrip("°").removesuffix("deg"))
        except ValueError:
            raise MVS2VError(
                f"view label {value!r} is not understood: use one of {', '.join(VIEW_LABELS)} "
                "or a yaw angle in degrees such as 45"
            ) from None
    if not math.isfinite(yaw):
        raise MVS2VError(
            f"view label {value!r} is not a finite angle: use one of {', '.join(VIEW_LABELS)} "
            "or a yaw angle in degrees such as 45"
        )
    return yaw % 360.0


def is_view_label(text: str) -> bool:
    """Whether ``text`` is a label :func:`parse_view_label` accepts (a name or a finite yaw), not ``""``."""
    try:
        return parse_view_label(text) is not None
    except MVS2VError:
        return False


def canonical_yaw(slot: int, slots_per_subject: int) -> float:
    """Yaw in degrees that slot ``slot`` stands for."""
    return 360.0 * slot / slots_per_subject


def _angle_distance(a: float, b: float) -> float:
    d = abs(a - b) % 360.0
    return min(d, 360.0 - d)


@dataclass(frozen=True)
class ViewSlot:
    """One view slot of a subject.

    Attributes:
        filled: whether an image occupies the slot.
        yaw: yaw of the view it holds (degrees), or None when unknown / empty.
        source: index of the input view that fills it (order the user gave), or None.
    """

    filled: bool
    yaw: float | None = None
    source: int | None = None


@dataclass(frozen=True)
class SubjectLayout:
    """Slots of one subject. ``frontal`` is the slot index of the frontal view (used by MFI)."""

    name: str
    slots: tuple[ViewSlot, ...]
    frontal: int = 0

    @property
    def num_filled(self) -> int:
        return sum(s.filled for s in self.slots)


@dataclass(frozen=True)
class ReferenceLayout:
    """Subjects x view slots.

    Attributes:
        subjects: one :class:`SubjectLayout` per subject, each with exactly ``slots_per_subject`` slots.
        slots_per_subject: number of view slots each subject has (K).
    """

    subjects: tuple[SubjectLayout, ...]
    slots_per_subject: int

    def __post_init__(self) -> None:
        if self.slots_per_subject < 1:
            raise MVS2VError(f"slots per subject must be at least 1, got {self.slots_per_subject}")
        for s in self.subjects:
            if len(s.slots) != self.slots_per_subject:
                raise MVS2VError(
                    f"subject {s.name!r} has {len(s.slots)} slots but the layout has "
                    f"{self.slots_per_subject} slots per subject"
                )
            if not 0 <= s.frontal < self.slots_per_subject:
                raise MVS2VError(f"subject {s.name!r}: frontal slot {s.frontal} is out of range")

    # ---- counts and masks ---------------------------------------------------------------------
    @property
    def num_subjects(self) -> int:
        return len(self.subjects)

    @property
    def num_slots(self) -> int:
        """All slots, filled or empty: ``num_subjects * slots_per_subject``."""
        return self.num_subjects * self.slots_per_subject

    @property
    def filled(self) -> list[bool]:
        """Per slot, in token order: whether it holds an image."""
        return [slot.filled for s in self.subjects for slot in s.slots]

    @property
    def num_filled(self) -> int:
        return sum(self.filled)

    def forward_key(self, mixed_filled: bool = False) -> tuple:
        """What one DiT forward reads of the layout: slots per subject and which slots are filled, so
        layouts with equal keys share a forward. ``mixed_filled`` (``proxy`` / ``gray``, where every slot
        makes tokens): slots and subjects only -- the filled slots may then differ per sample
        (``ReferenceConditioning.sample_layouts``)."""
        if mixed_filled:
            return (self.slots_per_subject, self.num_subjects)
        return (self.slots_per_subject, tuple(self.filled))

    def slot_subject(self) -> list[int]:
        """Per slot, in token order: the subject index."""
        return [i for i in range(self.num_subjects) for _ in range(self.slots_per_subject)]

    def slot_view(self) -> list[int]:
        """Per slot, in token order: the slot index within its subject (selects a proxy token)."""
        return [k for _ in range(self.num_subjects) for k in range(self.slots_per_subject)]

    def kept_slots(self, empty_slot_mode: EmptySlotMode | str) -> list[int]:
        """Slot indices (token order) that produce tokens: all of them, except empty ones under ``drop``."""
        if parse_option(EmptySlotMode, empty_slot_mode, "empty-slot mode") == EmptySlotMode.DROP:
            return [i for i, f in enumerate(self.filled) if f]
        return list(range(self.num_slots))

    def frontal_slots(self) -> list[int]:
        """Per subject: the global slot index of its frontal view."""
        return [i * self.slots_per_subject + s.frontal for i, s in enumerate(self.subjects)]

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        views_per_subject: Sequence[Sequence[str | float | None]] | Sequence[int],
        slots_per_subject: int,
        names: Sequence[str] | None = None,
        frontal: Sequence[int | None] | None = None,
        slot_anchor: SlotAnchor | str = SlotAnchor.CANONICAL,
    ) -> "ReferenceLayout":
        """Place each subject's views into slots.

        Args:
            views_per_subject: per subject, either a count of unlabelled views or a list with one
                entry per view: a label (``front``/``left``/``back``/``right``), a yaw in degrees,
                or None for unlabelled.
            slots_per_subject: K, the fixed number of slots per subject.
            names: subject names (default ``subject1``, ``subject2``, ...).
            frontal: per subject, the index of the frontal view among the views given. Default:
                the labelled view nearest 0 deg when it is within 45 deg (one labelled ``front``),
                else the first unlabelled view, else the labelled view nearest 0 deg.
            slot_anchor: ``canonical``: a view labelled ``yaw`` goes to the slot nearest ``yaw``.
                ``frontal``: the frontal view goes to slot 0 and a view labelled ``yaw`` to the slot
                nearest ``yaw - frontal yaw`` (an unlabelled frontal view counts as yaw 0), so the
                slots stand for angles from the frontal view. :class:`ViewSlot` keeps the given yaw.
        """
        anchored = parse_option(SlotAnchor, slot_anchor, "slot anchor") == SlotAnchor.FRONTAL
        subjects = []
        for i, views in enumerate(views_per_subject):
            if isinstance(views, int):
                views = [None] * views
            name = names[i] if names is not None else f"subject{i + 1}"
            yaws = [parse_view_label(v) for v in views]
            if len(yaws) == 0:
                raise MVS2VError(f"subject {name!r} has no views: give it at least one image")
            if len(yaws) > slots_per_subject:
                raise MVS2VError(
                    f"subject {name!r} has {len(yaws)} views but there are only {slots_per_subject} "
                    f"slots per subject: raise the slots per subject or give fewer views"
                )
            fr_view = frontal[i] if frontal is not None and frontal[i] is not None else _default_frontal(yaws)
            if not 0 <= fr_view < len(yaws):
                raise MVS2VError(
                    f"subject {name!r}: frontal view {fr_view} does not exist (it has {len(yaws)} views, "
                    "counted from 0)"
                )
            placed = _yaws_from_frontal(yaws, fr_view) if anchored else yaws
            slot_of = _assign_slots(placed, slots_per_subject, name)
            slots = [ViewSlot(False) for _ in range(slots_per_subject)]
            for view, slot in enumerate(slot_of):
                slots[slot] = ViewSlot(True, yaws[view], view)
            subjects.append(SubjectLayout(name, tuple(slots), slot_of[fr_view]))
        if not subjects:
            raise MVS2VError("no subjects given: add at least one subject with one view")
        return cls(tuple(subjects), slots_per_subject)

    def to_dict(self) -> dict:
        return {
            "slots_per_subject": self.slots_per_subject,
            "subjects": [
                {
                    "name": s.name,
                    "frontal": s.frontal,
                    "slots": [{"filled": v.filled, "yaw": v.yaw, "source": v.source} for v in s.slots],
                }
                for s in self.subjects
            ],
        }


# A labelled view counts as frontal when it is nearer the front than any side (strictly under 45 deg).
FRONTAL_TOLERANCE = 45.0


def _default_frontal(yaws: list[float | None]) -> int:
    """The default frontal view: see :meth:`ReferenceLayout.build`.

    An unlabelled view's yaw is unknown, so it may well be the front; a view labelled ``back`` or
    ``left`` is known not to be, so an unlabelled view is preferred over it.
    """
    known = [(_angle_distance(y, 0.0), i) for i, y in enumerate(yaws) if y is not None]
    near = min(known, default=None)
    if near is not None and near[0] < FRONTAL_TOLERANCE:
        return near[1]
    unlabelled = [i for i, y in enumerate(yaws) if y is None]
    if unlabelled:
        return unlabelled[0]
    return near[1] if near is not None else 0


def _yaws_from_frontal(yaws: list[float | None], frontal: int) -> list[float | None]:
    """Each labelled view's angle from the frontal view; the frontal view itself is at 0."""
    origin = yaws[frontal] if yaws[frontal] is not None else 0.0
    turned = [None if y is None else (y - origin) % 360.0 for y in yaws]
    turned[frontal] = 0.0
    return turned


def _assign_slots(yaws: list[float | None], k: int, name: str) -> list[int]:
    """Labelled views go to the nearest free canonical slot (closest first); the rest fill in order."""
    slot_of: list[int | None] = [None] * len(yaws)
    free = set(range(k))
    labelled = [(i, y) for i, y in enumerate(yaws) if y is not None]
    # Greedy by distance, ties broken by view index then slot index, so the result is deterministic.
    pairs = sorted(
        ((_angle_distance(y, canonical_yaw(s, k)), i, s) for i, y in labelled for s in range(k)),
    )
    for _, i, s in pairs:
        if slot_of[i] is None and s in free:
            slot_of[i] = s
            free.remove(s)
    for i in range(len(yaws)):
        if slot_of[i] is None:
            if not free:  # pragma: no cover - guarded by the count check above
                raise MVS2VError(f"subject {name!r}: more views than slots")
            s = min(free)
            slot_of[i] = s
            free.remove(s)
    return [int(s) for s in slot_of]  # type: ignore[arg-type]



def iter_slot_yaws(layout: ReferenceLayout) -> Iterable[float]:
    """Canonical yaw of every slot in token order."""
    for _ in layout.subjects:
        for k in range(layout.slots_per_subject):
            yield canonical_yaw(k, layout.slots_per_subject)

"""The reference settings: the one contract every layer takes or produces.

How reference views become tokens is decided by these things, and only by these: how many view
slots each subject has and which view slot 0 stands for, where the slots sit in RoPE space (the
position scheme and its gaps), what an empty slot becomes, which timestep the reference tokens
carry and what they attend to. The DiT, the CLI, the trainer's ``[references]`` table, the adapter
metadata and the ComfyUI nodes all speak
:class:`ReferenceSettings`; the option values are the enums below (``str`` enums, so they compare
equal to and serialise as their plain values), and the defaults live here, once.

Defaults, and why:

* ``slots_per_subject = 4``: front / left / back / right (slot ``k`` stands for yaw ``90*k``);
  four is the usual reference budget of Phantom-Wan ("within 4") and BindWeave's fixed slots.
* ``scheme = ts`` (gap 8): MV-S2V's TS-RoPE, the method this project implements; the gap values
  are argued in :mod:`mvs2v_core.references.positions` and ``docs/positions.md``.
* ``empty_slot_mode = gray``: the only mode that works for every model without extra weights
  (``proxy`` needs an adapter's learned vectors; ``drop`` moves the sequence length away from
  what fixed-slot models saw in training). HarmoView's ablation ranks gray padding second, after
  learned proxies; an adapter trained with proxies records ``proxy`` in its metadata, and that
  becomes the default whenever the adapter is loaded.
* ``ref_timestep = same``: the reference tokens share the video's timestep, as Phantom-Wan (the
  base model MV-S2V fine-tunes from) was trained.
* ``ref_attention = full``: every token attends to every token, as Phantom-Wan was trained.
  ``cached`` (with ``ref_timestep = zero``) makes the reference tokens attend only to reference
  tokens and skip the text: their keys and values are then the same at every sampling step, so
  they are computed once per generation and cached per block (``docs/cached_references.md``). A
  model trained with full attention runs it only as an approximation.
* ``slot_anchor = canonical``: slot ``k`` shows the subject at yaw ``360*k/K`` of the subject
  itself, as HarmoView's fixed slots do; the prompt says which side the video starts from.
  ``frontal`` turns every subject's slots so that slot 0 holds the view marked frontal -- the view
  the video starts from -- and the others keep their angle to it: the start view is then given
  by the references instead of being read from the prompt (``docs/ablation.md`` measures both).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Mapping, TypeVar

from ..errors import MVS2VError


class SchemeName(StrEnum):
    """Where reference slots sit in RoPE space (see :mod:`mvs2v_core.references.positions`)."""

    VANILLA = "vanilla"  # Phantom-Wan: slots continue the video's time axis
    TS = "ts"  # MV-S2V TS-RoPE: temporal gap before each subject
    SS = "ss"  # MV-S2V SS-RoPE ablation: views side by side on the w axis
    JUMP = "jump"  # HarmoView Jump-RoPE: reference-to-video and identity gaps


class Placement(StrEnum):
    """Jump-RoPE: references after the video (positive t) or before it (negative t)."""

    AFTER = "after"
    BEFORE = "before"


class EmptySlotMode(StrEnum):
    """What an empty view slot becomes."""

    PROXY = "proxy"  # the adapter's learned vector for that slot (HarmoView's proxy tokens)
    GRAY = "gray"  # the latent of a mid-gray image
    DROP = "drop"  # no tokens; the other slots keep their positions


class RefAttention(StrEnum):
    """What the reference tokens attend to (video tokens always attend to everything)."""

    FULL = "full"  # every token (Phantom-Wan)
    CACHED = "cached"  # reference tokens only, no text: keys/values computed once per generation


class SlotAnchor(StrEnum):
    """Which yaw slot 0 stands for (see :meth:`mvs2v_core.references.layout.ReferenceLayout.build`)."""

    CANONICAL = "canonical"  # the subject's own front: slot k = yaw 360*k/K of the subject
    FRONTAL = "frontal"  # the frontal (start) view: slot k = 360*k/K degrees on from it


class RefTimestep(StrEnum):
    """The timestep the reference tokens carry."""

    SAME = "same"  # the video's timestep (Phantom-Wan)
    ZERO = "zero"  # clean, t = 0 (models trained that way)


DEFAULT_SLOTS_PER_SUBJECT = 4
MAX_SLOTS_PER_SUBJECT = 16
DEFAULT_SCHEME = SchemeName.TS
DEFAULT_GAP = 8.0
DEFAULT_REF_GAP = 9.0
DEFAULT_IDENTITY_GAP = 24.0
DEFAULT_PLACEMENT = Placement.AFTER
DEFAULT_EMPTY_SLOT_MODE = EmptySlotMode.GRAY
DEFAULT_REF_TIMESTEP = RefTimestep.SAME
DEFAULT_REF_ATTENTION = RefAttention.FULL
DEFAULT_SLOT_ANCHOR = SlotAnchor.CANONICAL

# What each option is, for messages: "empty-slot mode 'x' is unknown: use one of proxy, gray, drop".
_OPTION_HINTS: dict[type, str] = {
    SchemeName: "vanilla = Phantom, ts = MV-S2V TS-RoPE, ss = spatial shift, jump = HarmoView Jump-RoPE",
    Placement: "after = references follow the video on the t axis, before = they precede it at negative t",
    EmptySlotMode: "proxy = the adapter's learned vector, gray = a mid-gray image, drop = no tokens",
    RefTimestep: "same = the video's timestep, zero = clean references at t = 0",
    RefAttention: "full = references attend to every token, cached = references attend to references only",
    SlotAnchor: ("canonical = slot 0 is the subject's front, "
                 "frontal = slot 0 is the view marked frontal (the video's start)"),
}

E = TypeVar("E", bound=StrEnum)


def parse_option(enum: type[E], value: Any, what: str) -> E:
    """``value`` (an enum member or its string, any case / surrounding spaces) as a member of ``enum``.

    Raises:
        MVS2VError: one line naming ``what``, the bad value and the allowed values.
    """
    if isinstance(value, enum):
        return value
    text = value.strip().lower() if isinstance(value, str) else value
    try:
        return enum(text)
    except ValueError:
        allowed = ", ".join(m.value for m in enum)
        raise MVS2VError(f"{what} {value!r} is unknown: use one of {allowed} ({_OPTION_HINTS[enum]})") from None


def option_values(enum: type[StrEnum]) -> list[str]:
    """The plain values of an option enum, in declaration order (for argparse / node combos)."""
    return [m.value for m in enum]


def _check_gap(label: str, value: Any) -> float:
    """A gap must be a finite number >= 0 (ints, floats and numeric strings from metadata)."""
    if isinstance(value, bool):
        raise MVS2VError(f"position scheme {label} must be a number >= 0, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise MVS2VError(
            f"position scheme {label} must be a number >= 0 (an empty-index count such as 8), got {value!r}"
        ) from None
    if not math.isfinite(number):
        raise MVS2VError(f"position scheme {label} must be a finite number >= 0, got {value!r}")
    if number < 0:
        raise MVS2VError(
            f"position scheme {label} is {value!r} but it must be >= 0: a negative gap would make "
            f"references overlap each other or the video; use 0 for no gap"
        )
    return number


def _check_slots(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SLOTS_PER_SUBJECT:
        raise MVS2VError(
            f"slots per subject must be a whole number from 1 to {MAX_SLOTS_PER_SUBJECT}, got {value!r} "
            f"(4 = front, left, back, right)"
        )
    return value


def _from_mapping(cls: type, d: Any, what: str, example: str) -> dict:
    """``d`` as keyword arguments of dataclass ``cls``; unknown keys are an error."""
    if not isinstance(d, Mapping):
        raise MVS2VError(f"{what} must be a mapping such as {example}, got {d!r}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise MVS2VError(
            f"{what} has unknown key(s) {', '.join(map(repr, unknown))}: the known keys are "
            f"{', '.join(sorted(known))}; the file may come from a newer mvs2v version, update mvs2v"
        )
    return dict(d)


# Which fields change the ids of each scheme (used by :meth:`PositionScheme.canonical`).
_RELEVANT: dict[SchemeName, tuple[str, ...]] = {
    SchemeName.VANILLA: (),
    SchemeName.TS: ("gap",),
    SchemeName.SS: ("gap",),
    SchemeName.JUMP: ("ref_gap", "identity_gap", "placement"),
}


@dataclass(frozen=True)
class PositionScheme:
    """How reference slots are placed in RoPE position space.

    Attributes:
        name: ``vanilla``, ``ts``, ``ss`` or ``jump`` (:class:`SchemeName`).
        gap: ts / ss: empty t indices between the video and the first subject and between subjects.
        ref_gap: jump: empty t indices between the whole reference block and the video.
        identity_gap: jump: empty t indices between the blocks of two consecutive subjects.
        placement: jump: references ``after`` the video (positive t) or ``before`` it (negative t).

    Fields a scheme does not use are kept (and stored in metadata) but do not change its ids;
    :meth:`canonical` resets them so schemes that give the same ids compare equal.
    """

    name: SchemeName = DEFAULT_SCHEME
    gap: float = DEFAULT_GAP
    ref_gap: float = DEFAULT_REF_GAP
    identity_gap: float = DEFAULT_IDENTITY_GAP
    placement: Placement = DEFAULT_PLACEMENT

    def __post_init__(self) -> None:
        # Frozen dataclass: normalise through object.__setattr__ so equality / metadata are stable.
        object.__setattr__(self, "name", parse_option(SchemeName, self.name, "position scheme"))
        object.__setattr__(self, "placement", parse_option(Placement, self.placement, "position scheme placement"))
        for gap in ("gap", "ref_gap", "identity_gap"):
            object.__setattr__(self, gap, _check_gap(gap, getattr(self, gap)))

    def to_dict(self) -> dict:
        """All fields as plain JSON types (for adapter metadata)."""
        return {"name": self.name.value, "gap": self.gap, "ref_gap": self.ref_gap,
                "identity_gap": self.identity_gap, "placement": self.placement.value}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PositionScheme":
        """Inverse of :meth:`to_dict`; missing keys take the defaults, unknown keys are an error."""
        return cls(**_from_mapping(cls, d, "a position scheme", "{'name': 'ts'}"))

    def canonical(self) -> "PositionScheme":
        """The same scheme with the fields it ignores reset to their defaults."""
        return PositionScheme(name=self.name, **{k: getattr(self, k) for k in _RELEVANT[self.name]})

    def describe(self) -> str:
        """``'jump' (ref_gap=9, identity_gap=24, placement=after)``: the fields that matter, for messages."""
        kept = {k: getattr(self, k) for k in _RELEVANT[self.name]}
        rest = ", ".join(f"{k}={_fmt(v)}" for k, v in kept.items())
        return f"{self.name.value!r} ({rest})" if rest else repr(self.name.value)


def _fmt(v: Any) -> str:
    if isinstance(v, StrEnum):
        return v.value
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


@dataclass(frozen=True)
class ReferenceSettings:
    """Everything that decides how reference views become DiT tokens (see the module docstring).

    Attributes:
        slots_per_subject: K, the fixed number of view slots per subject (slot k = yaw 360*k/K).
        scheme: the :class:`PositionScheme`.
        empty_slot_mode: :class:`EmptySlotMode`.
        ref_timestep: :class:`RefTimestep`.
        ref_attention: :class:`RefAttention` (``cached`` needs ``ref_timestep = zero``).
        slot_anchor: :class:`SlotAnchor`, what slot 0 stands for.
    """

    slots_per_subject: int = DEFAULT_SLOTS_PER_SUBJECT
    scheme: PositionScheme = field(default_factory=PositionScheme)
    empty_slot_mode: EmptySlotMode = DEFAULT_EMPTY_SLOT_MODE
    ref_timestep: RefTimestep = DEFAULT_REF_TIMESTEP
    ref_attention: RefAttention = DEFAULT_REF_ATTENTION
    slot_anchor: SlotAnchor = DEFAULT_SLOT_ANCHOR

    def __post_init__(self) -> None:
        _check_slots(self.slots_per_subject)
        scheme = self.scheme
        if isinstance(scheme, (str, SchemeName)):
            scheme = PositionScheme(scheme)
        elif isinstance(scheme, Mapping):
            scheme = PositionScheme.from_dict(scheme)
        elif not isinstance(scheme, PositionScheme):
            raise MVS2VError(f"a position scheme must be a PositionScheme, a name or a mapping, got {scheme!r}")
        object.__setattr__(self, "scheme", scheme)
        object.__setattr__(self, "empty_slot_mode", parse_option(EmptySlotMode, self.empty_slot_mode, "empty-slot mode"))
        object.__setattr__(self, "ref_timestep", parse_option(RefTimestep, self.ref_timestep, "reference timestep mode"))
        object.__setattr__(self, "ref_attention", parse_option(RefAttention, self.ref_attention,
                                                               "reference attention mode"))
        object.__setattr__(self, "slot_anchor", parse_option(SlotAnchor, self.slot_anchor, "slot anchor"))
        if self.ref_attention == RefAttention.CACHED and self.ref_timestep != RefTimestep.ZERO:
            raise MVS2VError("cached references run at timestep 0 (their keys and values must not change between "
                             "steps): set the reference timestep to 'zero', or use reference attention 'full'")

    @property
    def cached(self) -> bool:
        """Whether reference keys/values are computed once and reused (``ref_attention = cached``)."""
        return self.ref_attention == RefAttention.CACHED

    def with_overrides(self, **overrides: Any) -> "ReferenceSettings":
        """These settings with the given fields replaced; ``None`` means "keep".

        Besides the four fields, the scheme's own fields (``scheme`` as a name, ``gap``,
        ``ref_gap``, ``identity_gap``, ``placement``) may be given: they change only the scheme.
        This is how command-line flags and node inputs apply on top of an adapter's settings.
        """
        given = {k: v for k, v in overrides.items() if v is not None}
        scheme_fields = {f.name for f in dataclasses.fields(PositionScheme)} - {"name"}
        scheme_update = {k: given.pop(k) for k in list(given) if k in scheme_fields}
        unknown = sorted(set(given) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise MVS2VError(f"unknown reference setting(s) {', '.join(unknown)}")
        scheme = given.pop("scheme", self.scheme)
        if isinstance(scheme, (str, SchemeName)):
            scheme = dataclasses.replace(self.scheme, name=scheme)
        elif isinstance(scheme, Mapping):
            scheme = PositionScheme.from_dict(scheme)
        if scheme_update:
            scheme = dataclasses.replace(scheme, **scheme_update)
        return dataclasses.replace(self, scheme=scheme, **given)

    def to_dict(self) -> dict:
        """Plain JSON types; the adapter metadata stores these keys at its top level. ``ref_attention``
        is written only when it is not ``full`` and ``slot_anchor`` only when it is not ``canonical``, so
        adapters and training fingerprints made before those options existed stay byte for byte what
        they were."""
        d = {"slots_per_subject": self.slots_per_subject, "position_scheme": self.scheme.to_dict(),
             "empty_slot_mode": self.empty_slot_mode.value, "ref_timestep": self.ref_timestep.value}
        if self.ref_attention != RefAttention.FULL:
            d["ref_attention"] = self.ref_attention.value
        if self.slot_anchor != SlotAnchor.CANONICAL:
            d["slot_anchor"] = self.slot_anchor.value
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ReferenceSettings":
        """Inverse of :meth:`to_dict`; missing keys take the defaults, other keys are ignored."""
        if not isinstance(d, Mapping):
            raise MVS2VError(f"reference settings must be a mapping, got {d!r}")
        kw: dict[str, Any] = {}
        if "slots_per_subject" in d:
            kw["slots_per_subject"] = d["slots_per_subject"]
        if "position_scheme" in d:
            kw["scheme"] = PositionScheme.from_dict(d["position_scheme"])
        for key in ("empty_slot_mode", "ref_timestep", "ref_attention", "slot_anchor"):
            if key in d:
                kw[key] = d[key]
        return cls(**kw)

    def describe(self) -> str:
        """One line for logs and messages."""
        return (f"{self.slots_per_subject} slots per subject, scheme {self.scheme.describe()}, "
                f"empty slots {self.empty_slot_mode.value}, reference timestep {self.ref_timestep.value}"
                + (f", reference attention {self.ref_attention.value}" if self.cached else "")
                + (f", slots anchored on the {self.slot_anchor.value} view"
                   if self.slot_anchor != SlotAnchor.CANONICAL else ""))


__all__ = [
    "SchemeName", "Placement", "EmptySlotMode", "RefTimestep", "RefAttention", "SlotAnchor", "PositionScheme",
    "ReferenceSettings",
    "parse_option", "option_values", "DEFAULT_SLOTS_PER_SUBJECT", "MAX_SLOTS_PER_SUBJECT", "DEFAULT_SCHEME",
    "DEFAULT_GAP", "DEFAULT_REF_GAP", "DEFAULT_IDENTITY_GAP", "DEFAULT_PLACEMENT", "DEFAULT_EMPTY_SLOT_MODE",
    "DEFAULT_REF_TIMESTEP", "DEFAULT_REF_ATTENTION", "DEFAULT_SLOT_ANCHOR",
]

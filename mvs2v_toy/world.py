"""The toy world's scene description: objects, colours, motion, captions, random scenes.

A scene is one or two rigid objects standing on a floor and turning about their vertical axis,
seen by a fixed camera. Everything that the video shows follows from the :class:`ToyScene`
(the renderer is deterministic), and everything the caption does not say is fixed by the world,
so a caption plus the reference views determine the video exactly:

* **Yaw convention.** An object at yaw ``0`` shows its ``front`` to the camera; at yaw ``90`` its
  ``left`` side, at ``180`` its ``back``, at ``270`` its ``right`` side -- the view labels of
  :mod:`mvs2v_core.references.layout`. Increasing yaw moves the front face towards the image's
  left edge; the caption calls that "turns left" (the faces then come round in the order front,
  left, back, right). "turns right" is decreasing yaw.
* **Motion.** Frame ``t`` (0-based) of an ``F``-frame clip has yaw
  ``start_yaw + sign * speed * t`` with ``speed = total / (F - 1)`` degrees per frame; the total
  turn is named by the caption's adverb: ``slowly`` 90, none 180, ``quickly`` 270 degrees.
* **Start.** ``start_view`` (front/left/back/right) is the yaw at frame 0, named by the caption
  ("from its back").
* **Placement.** One object stands at the centre; two stand side by side, in caption order from
  left to right, far enough apart that they never overlap in the image.
* **Colours.** Every face that turning can reveal has its own hue from :data:`PALETTE`; tops and
  bottoms are gray. All hues in a scene differ (across objects and the floor), so a pixel's hue
  says which object and face it shows. The caption names each object's *main colour* (the front
  face of a cube or cylinder, the body of a sphere) and the floor colour.

Shapes and their faces (:data:`SHAPE_FACES`):

* ``cube``: ``front`` (+z), ``left`` (+x), ``back`` (-z), ``right`` (-x), ``top``, ``bottom``; each
  side face has its own hue and pattern.
* ``cylinder``: two-tone side, ``front`` half (facing +z) and ``back`` half, plus ``top``/``bottom``.
* ``sphere``: ``body`` and a ``cap`` (a spherical cap centred on the front direction, +z).

Only numpy is used here.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

import numpy as np

from ._core import MVS2VError

__all__ = [
    "PALETTE", "HUES", "NEUTRAL", "SHAPES", "SHAPE_FACES", "HUED_FACES", "PATTERNS", "SPEEDS",
    "DIRECTIONS", "START_VIEWS", "OBJECT_SPACING", "REFERENCE_CAMERAS", "WORLDS", "WorldSpec", "world_spec", "ToyObject", "ToyScene", "caption_for", "sample_scene",
    "vocabulary",
]


def _hsv(h_deg: float, s: float = 0.85, v: float = 0.9) -> tuple[float, float, float]:
    r, g, b = colorsys.hsv_to_rgb(h_deg / 360.0, s, v)
    return (round(r, 4), round(g, 4), round(b, 4))


# Twelve hues 30 degrees apart plus gray. Shading and patterns only scale a colour, so a pixel's
# colour *direction* (RGB / |RGB|) identifies its face; these directions are >= 15 degrees apart.
PALETTE: dict[str, tuple[float, float, float]] = {
    "red": _hsv(0), "orange": _hsv(30), "yellow": _hsv(60), "lime": _hsv(90),
    "green": _hsv(120), "mint": _hsv(150), "cyan": _hsv(180), "azure": _hsv(210),
    "blue": _hsv(240), "violet": _hsv(270), "magenta": _hsv(300), "pink": _hsv(330),
    "gray": (0.6, 0.6, 0.6),
}
NEUTRAL = "gray"
HUES: tuple[str, ...] = tuple(k for k in PALETTE if k != NEUTRAL)

SHAPES: tuple[str, ...] = ("cube", "cylinder", "sphere")
SHAPE_FACES: dict[str, tuple[str, ...]] = {
    "cube": ("front", "left", "back", "right", "top", "bottom"),
    "cylinder": ("front", "back", "top", "bottom"),
    "sphere": ("cap", "body"),
}
# Faces that get their own hue; the others (tops, bottoms) are NEUTRAL.
HUED_FACES: dict[str, tuple[str, ...]] = {
    "cube": ("front", "left", "back", "right"),
    "cylinder": ("front", "back"),
    "sphere": ("cap", "body"),
}
# Brightness patterns (a darker region on the face); ``plain`` has none.
PATTERNS: tuple[str, ...] = ("plain", "hband", "vband", "dot", "border")
# Caption adverb -> total turn over the clip in degrees ("" = no adverb).
SPEEDS: dict[str, float] = {"slowly": 90.0, "": 180.0, "quickly": 270.0}
# Caption direction -> sign of the yaw change.
DIRECTIONS: dict[str, int] = {"left": 1, "right": -1}
START_VIEWS: dict[str, float] = {"front": 0.0, "left": 90.0, "back": 180.0, "right": 270.0}
# How reference views are rendered (ToyScene.reference_camera).
REFERENCE_CAMERAS: tuple[str, ...] = ("centred", "video", "augmented")
# Distance between the centres of two objects in world units: each object fits in a vertical
# cylinder of radius 0.71 (a cube's half diagonal), so they never overlap or touch in the image.
OBJECT_SPACING = 1.6


@dataclass(frozen=True)
class ToyObject:
    """One rigid object and its motion.

    Attributes:
        shape: ``cube``, ``cylinder`` or ``sphere``.
        colours: face name -> palette colour name, for every face of the shape.
        patterns: face name -> pattern name (:data:`PATTERNS`), for every face of the shape.
        position: ``(x, z)`` of the object's footprint centre on the floor (world units).
        start_view: ``front``/``left``/``back``/``right``: the yaw at frame 0.
        direction: ``left`` (yaw increases) or ``right`` (yaw decreases).
        speed: caption adverb naming the total turn (:data:`SPEEDS`): ``slowly``, ``""``, ``quickly``.
        label: subject name for manifests and reports; ``""`` names it by colour and shape
            (``red_cube``). Worlds whose captions name no colour use colour-free labels
            (``cube``, ``left_cube``) so no file name gives a hidden colour away.
    """

    shape: str
    colours: Mapping[str, str]
    patterns: Mapping[str, str]
    position: tuple[float, float] = (0.0, 0.0)
    start_view: str = "front"
    direction: str = "left"
    speed: str = ""
    label: str = ""

    def __post_init__(self) -> None:
        if self.shape not in SHAPE_FACES:
            raise MVS2VError(f"toy object shape {self.shape!r} is unknown: use one of {', '.join(SHAPES)}")
        faces = set(SHAPE_FACES[self.shape])
        for what, table, allowed in (("colours", self.colours, PALETTE), ("patterns", self.patterns, PATTERNS)):
            if set(table) != faces:
                raise MVS2VError(f"a toy {self.shape}'s {what} must name exactly its faces {sorted(faces)}, "
                                 f"got {sorted(table)}")
            bad = sorted(v for v in table.values() if v not in allowed)
            if bad:
                raise MVS2VError(f"toy {self.shape} {what} {bad} are unknown: use {', '.join(allowed)}")
        if self.start_view not in START_VIEWS:
            raise MVS2VError(f"start_view {self.start_view!r} is unknown: use {', '.join(START_VIEWS)}")
        if self.direction not in DIRECTIONS:
            raise MVS2VError(f"direction {self.direction!r} is unknown: use left or right")
        if self.speed not in SPEEDS:
            raise MVS2VError(f"speed {self.speed!r} is unknown: use one of {sorted(SPEEDS)}")

    @property
    def faces(self) -> tuple[str, ...]:
        """The shape's faces in a fixed order; a face id in a render indexes this tuple."""
        return SHAPE_FACES[self.shape]

    @property
    def main_colour(self) -> str:
        """The colour the caption names: the front face (cube, cylinder) or the body (sphere)."""
        return self.colours["body" if self.shape == "sphere" else "front"]

    @property
    def name(self) -> str:
        """Subject name used in manifests and reports, e.g. ``red_cube`` (unique in a scene)."""
        return self.label or f"{self.main_colour}_{self.shape}"

    @property
    def start_yaw(self) -> float:
        return START_VIEWS[self.start_view]

    def speed_deg_per_frame(self, frames: int) -> float:
        """Degrees turned per frame (unsigned); 0 for a one-frame clip."""
        return SPEEDS[self.speed] / (frames - 1) if frames > 1 else 0.0

    def yaw(self, t: float, frames: int) -> float:
        """Yaw in degrees at frame ``t`` (not wrapped): ``start + sign * speed * t``."""
        return self.start_yaw + DIRECTIONS[self.direction] * self.speed_deg_per_frame(frames) * float(t)

    def colour_rgb(self, face: str) -> tuple[float, float, float]:
        return PALETTE[self.colours[face]]

    def to_dict(self) -> dict[str, Any]:
        return {"shape": self.shape, "colours": dict(self.colours), "patterns": dict(self.patterns),
                "position": [float(self.position[0]), float(self.position[1])], "start_view": self.start_view,
                "direction": self.direction, "speed": self.speed, "label": self.label}

    def with_colours(self, colours: Mapping[str, str]) -> "ToyObject":
        """A copy with some face colours replaced (the counterfactual versions of a scene)."""
        return replace(self, colours={**self.colours, **colours})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ToyObject":
        try:
            return cls(shape=d["shape"], colours=dict(d["colours"]), patterns=dict(d["patterns"]),
                       position=(float(d["position"][0]), float(d["position"][1])),
                       start_view=d["start_view"], direction=d["direction"], speed=d["speed"],
                       label=str(d.get("label", "")))
        except (KeyError, TypeError, IndexError, ValueError) as exc:
            raise MVS2VError(f"toy object description is incomplete or malformed ({exc!r}); "
                             "re-generate the sample with write_toy_dataset") from None


@dataclass(frozen=True)
class ToyScene:
    """A whole clip: objects, floor, image size, length and camera elevation.

    Attributes:
        objects: one or two :class:`ToyObject`, in caption order (left to right in the image).
        floor_colour: palette hue of the floor.
        floor_checker: checker cell size in world units (0 = plain floor); the darker cells are
            the floor colour times 0.8.
        width, height: frame size in pixels.
        frames: number of frames.
        elevation: camera elevation above the horizon in degrees (the tops are visible).
        caption_colours: whether the caption names each object's main colour (the classic world);
            the hidden-colour worlds W1/W2 name none, so only the references tell the colours.
        view_scale: world half-size seen along the image's shorter side; 0 keeps the classic
            choice (0.9 for one object, 1.6 for two). W1/W2 use 0.9 for both, so objects have the
            same size in pixels whether alone (32x32) or side by side (64x32).
        reference_camera: how reference views are rendered: ``centred`` (object alone, centred,
            filling most of the image: the classic world), ``video`` (the video's own camera and
            scale: a reference is a future frame minus the background) or ``augmented`` (the video's
            camera with a random zoom, shift and yaw jitter per view: MV-S2V's remedy for
            copy-paste).
    """

    objects: tuple[ToyObject, ...]
    floor_colour: str
    floor_checker: float = 0.0
    width: int = 32
    height: int = 32
    frames: int = 17
    elevation: float = 25.0
    caption_colours: bool = True
    view_scale: float = 0.0
    reference_camera: str = "centred"

    def __post_init__(self) -> None:
        object.__setattr__(self, "objects", tuple(self.objects))
        if not 1 <= len(self.objects) <= 2:
            raise MVS2VError(f"a toy scene has one or two objects, got {len(self.objects)}")
        if self.floor_colour not in HUES:
            raise MVS2VError(f"floor colour {self.floor_colour!r} must be one of the hues {', '.join(HUES)}")
        used: list[str] = [self.floor_colour]
        for o in self.objects:
            used += [o.colours[f] for f in HUED_FACES[o.shape]]
        if len(set(used)) != len(used):
            raise MVS2VError(f"every hue in a toy scene must be distinct (floor and all hued faces), got {used}")
        for o in self.objects:
            neutral = [f for f in o.faces if f not in HUED_FACES[o.shape]]
            if any(o.colours[f] != NEUTRAL for f in neutral):
                raise MVS2VError(f"the {', '.join(neutral)} faces of a toy {o.shape} must be {NEUTRAL}")
        if min(self.width, self.height) < 8 or self.frames < 1:
            raise MVS2VError(f"toy scenes need at least 8x8 pixels and 1 frame, got "
                             f"{self.width}x{self.height}x{self.frames}")
        if not 5.0 <= self.elevation <= 80.0:
            raise MVS2VError(f"camera elevation {self.elevation} must be between 5 and 80 degrees")
        if self.floor_checker < 0:
            raise MVS2VError("floor_checker must be >= 0 (0 = plain floor)")
        if self.reference_camera not in REFERENCE_CAMERAS:
            raise MVS2VError(f"reference_camera {self.reference_camera!r} is unknown: use one of "
                             f"{', '.join(REFERENCE_CAMERAS)}")
        if self.view_scale < 0:
            raise MVS2VError(f"view_scale must be >= 0 (0 = the classic framing), got {self.view_scale}")
        names = [o.name for o in self.objects]
        if len(set(names)) != len(names):
            raise MVS2VError(f"the objects of a toy scene need distinct names, got {names}")
        for o in self.objects:  # every object must stay inside the frame
            x, z = o.position
            if abs(x) + 0.71 > self.horizontal_extent + 1e-6 or abs(z) > 0.25:
                raise MVS2VError(f"toy object at {o.position} would leave the frame: keep |x| <= "
                                 f"{self.horizontal_extent - 0.71:.2f} and |z| <= 0.25")
        if len(self.objects) == 2:
            (x0, z0), (x1, z1) = self.objects[0].position, self.objects[1].position
            if math.hypot(x1 - x0, z1 - z0) < 1.45 or x1 <= x0:
                raise MVS2VError("two toy objects must stand at least 1.45 apart, the first one on the left")

    @property
    def half_extent(self) -> float:
        """Half the world size seen along the image's shorter side (orthographic camera)."""
        if self.view_scale > 0:
            return float(self.view_scale)
        return 0.9 if len(self.objects) == 1 else 1.6

    @property
    def horizontal_extent(self) -> float:
        """Half the world width seen across the image."""
        return self.half_extent * self.width / min(self.width, self.height)

    def with_object(self, index: int, obj: ToyObject) -> "ToyScene":
        """A copy with object ``index`` replaced (validated again: hues must stay distinct)."""
        objects = list(self.objects)
        objects[index] = obj
        return replace(self, objects=tuple(objects))

    def yaws(self) -> np.ndarray:
        """``[frames, n_objects]`` yaw of every object in every frame, degrees (not wrapped)."""
        return np.array([[o.yaw(t, self.frames) for o in self.objects] for t in range(self.frames)], dtype=np.float64)

    def colours_in_scene(self) -> list[str]:
        """Distinct colour names: every object's face colours (hues and gray), then the floor."""
        out: list[str] = []
        for o in self.objects:
            for f in o.faces:
                if o.colours[f] not in out:
                    out.append(o.colours[f])
        out.append(self.floor_colour)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"objects": [o.to_dict() for o in self.objects], "floor_colour": self.floor_colour,
                "floor_checker": float(self.floor_checker), "width": int(self.width), "height": int(self.height),
                "frames": int(self.frames), "elevation": float(self.elevation),
                "caption_colours": bool(self.caption_colours), "view_scale": float(self.view_scale),
                "reference_camera": self.reference_camera}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ToyScene":
        try:
            return cls(objects=tuple(ToyObject.from_dict(o) for o in d["objects"]), floor_colour=d["floor_colour"],
                       floor_checker=float(d.get("floor_checker", 0.0)), width=int(d["width"]),
                       height=int(d["height"]), frames=int(d["frames"]), elevation=float(d.get("elevation", 25.0)),
                       caption_colours=bool(d.get("caption_colours", True)),
                       view_scale=float(d.get("view_scale", 0.0)),
                       reference_camera=str(d.get("reference_camera", "centred")))
        except (KeyError, TypeError, ValueError) as exc:
            raise MVS2VError(f"toy scene description is incomplete or malformed ({exc!r}); "
                             "re-generate the sample with write_toy_dataset") from None


# ---- captions ---------------------------------------------------------------------------------


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _clause(o: ToyObject, colours: bool = True) -> str:
    adverb = f"{o.speed} " if o.speed else ""
    subject = f"{_article(o.main_colour)} {o.main_colour} {o.shape}" if colours else f"{_article(o.shape)} {o.shape}"
    return f"{subject} {adverb}turns {o.direction} from its {o.start_view}"


def caption_for(scene: ToyScene) -> str:
    """The caption of a scene, from the grammar::

        caption := clause [" and " clause] " on " ART FLOOR " floor"
        clause  := ART COLOUR SHAPE [ADVERB] " turns " DIRECTION " from its " VIEW

    e.g. ``a red cube slowly turns left from its back on a blue floor``. Scenes with
    ``caption_colours=False`` (W1/W2) drop ``COLOUR``: ``a cube slowly turns left from its back on a
    blue floor``.
    """
    floor = scene.floor_colour
    clauses = " and ".join(_clause(o, scene.caption_colours) for o in scene.objects)
    return clauses + f" on {_article(floor)} {floor} floor"


def vocabulary() -> list[str]:
    """Every word the caption grammar can produce, sorted."""
    words = {"a", "an", "and", "on", "floor", "turns", "from", "its"}
    words |= set(PALETTE) | set(SHAPES) | {s for s in SPEEDS if s} | set(DIRECTIONS) | set(START_VIEWS)
    return sorted(words)


# ---- random scenes ----------------------------------------------------------------------------


def _random_object(rng: np.random.Generator, shape: str, hues: list[str], position: tuple[float, float],
                   start_views: Sequence[str], speeds: Sequence[str],
                   directions: Sequence[str] = tuple(DIRECTIONS)) -> ToyObject:
    colours = {f: NEUTRAL for f in SHAPE_FACES[shape]}
    for f in HUED_FACES[shape]:
        colours[f] = hues.pop()
    patterns = {f: "plain" for f in SHAPE_FACES[shape]}
    if shape != "sphere":  # the sphere's cap is its mark; cube and cylinder sides get patterns
        sides = HUED_FACES[shape]
        chosen = rng.permutation(len(PATTERNS))[: len(sides)]
        for f, k in zip(sides, chosen):
            patterns[f] = PATTERNS[int(k)]
    return ToyObject(
        shape=shape, colours=colours, patterns=patterns, position=position,
        start_view=str(start_views[int(rng.integers(len(start_views)))]),
        direction=str(directions[int(rng.integers(len(directions)))]),
        speed=str(speeds[int(rng.integers(len(speeds)))]),
    )


def sample_scene(rng: np.random.Generator, width: int = 32, height: int = 32, frames: int = 17,
                 two_object_prob: float = 0.3, shapes: Sequence[str] = SHAPES,
                 start_views: Sequence[str] = tuple(START_VIEWS), speeds: Sequence[str] = tuple(SPEEDS),
                 checker_sizes: Sequence[float] = (0.0, 0.5, 1.0), elevation: float = 25.0) -> ToyScene:
    """Draw a random scene: shapes, hues, patterns, start view, direction, speed, floor.

    Args:
        rng: the random source (the scene is a pure function of its state).
        width, height, frames: clip size.
        two_object_prob: probability of a two-object scene.
        shapes, start_views, speeds, checker_sizes: the choices to draw from.
        elevation: camera elevation in degrees.
    """
    for name, values, allowed in (("shapes", shapes, SHAPES), ("start_views", start_views, START_VIEWS),
                                  ("speeds", speeds, SPEEDS)):
        if not values or any(v not in allowed for v in values):
            raise MVS2VError(f"{name} must be a non-empty selection of {list(allowed)}, got {list(values)}")
    if not 0.0 <= two_object_prob <= 1.0:
        raise MVS2VError(f"two_object_prob must be in [0, 1], got {two_object_prob}")
    n = 2 if rng.random() < two_object_prob else 1
    hues = [HUES[int(i)] for i in rng.permutation(len(HUES))]
    floor = hues.pop()
    chosen_shapes = [str(shapes[int(rng.integers(len(shapes)))]) for _ in range(n)]
    positions = [(0.0, 0.0)] if n == 1 else [(-OBJECT_SPACING / 2, 0.0), (OBJECT_SPACING / 2, 0.0)]
    objects = tuple(_random_object(rng, s, hues, p, start_views, speeds) for s, p in zip(chosen_shapes, positions))
    checker = float(checker_sizes[int(rng.integers(len(checker_sizes)))]) if checker_sizes else 0.0
    return ToyScene(objects=objects, floor_colour=floor, floor_checker=checker, width=int(width),
                    height=int(height), frames=int(frames), elevation=float(elevation))


# ---- named worlds -----------------------------------------------------------------------------


@dataclass(frozen=True)
class WorldSpec:
    """A named family of random scenes (:data:`WORLDS`).

    Attributes:
        name: the world's name (``classic``, ``w0``, ``w1``, ``w2``, ``w12``).
        description: one line for ``--help`` and reports.
        two_object_prob: probability of a two-object scene.
        size_one, size_two: ``(width, height)`` of one- and two-object clips.
        shapes, start_views, speeds, directions, checker_sizes: the random choices.
        caption_colours: whether captions name colours (see :class:`ToyScene`).
        view_scale: :attr:`ToyScene.view_scale`.
        reference_camera: :attr:`ToyScene.reference_camera`.
    """

    name: str
    description: str
    two_object_prob: float
    size_one: tuple[int, int] = (32, 32)
    size_two: tuple[int, int] = (32, 32)
    shapes: tuple[str, ...] = SHAPES
    start_views: tuple[str, ...] = tuple(START_VIEWS)
    speeds: tuple[str, ...] = tuple(SPEEDS)
    directions: tuple[str, ...] = tuple(DIRECTIONS)
    checker_sizes: tuple[float, ...] = (0.0, 0.5, 1.0)
    caption_colours: bool = True
    view_scale: float = 0.0
    reference_camera: str = "centred"

    def sample(self, rng: np.random.Generator, frames: int, reference_camera: str | None = None) -> ToyScene:
        """Draw one scene of this world (a pure function of ``rng``'s state)."""
        n = 2 if rng.random() < self.two_object_prob else 1
        hues = [HUES[int(i)] for i in rng.permutation(len(HUES))]
        floor = hues.pop()
        shapes = [str(self.shapes[int(rng.integers(len(self.shapes)))]) for _ in range(n)]
        positions = [(0.0, 0.0)] if n == 1 else [(-OBJECT_SPACING / 2, 0.0), (OBJECT_SPACING / 2, 0.0)]
        objects = [_random_object(rng, s, hues, p, self.start_views, self.speeds, self.directions)
                   for s, p in zip(shapes, positions)]
        if not self.caption_colours:  # names that give no colour away
            prefixes = [""] if n == 1 else ["left_", "right_"]
            objects = [replace(o, label=f"{pre}{o.shape}") for pre, o in zip(prefixes, objects)]
        checker = float(self.checker_sizes[int(rng.integers(len(self.checker_sizes)))]) if self.checker_sizes else 0.0
        width, height = self.size_one if n == 1 else self.size_two
        return ToyScene(objects=tuple(objects), floor_colour=floor, floor_checker=checker, width=width, height=height,
                        frames=int(frames), caption_colours=self.caption_colours, view_scale=self.view_scale,
                        reference_camera=reference_camera or self.reference_camera)


_HIDDEN = dict(size_one=(32, 32), size_two=(64, 32), shapes=("cube",), speeds=("", "quickly"),
               caption_colours=False, view_scale=0.9, reference_camera="video")
WORLDS: dict[str, WorldSpec] = {
    "classic": WorldSpec("classic", "the first toy world: captions name each object's main colour", 0.3),
    # The calibration world: the easiest setting in which reference use can be learnt (the
    # hidden sides always come round in the same order), a first curriculum stage before W1.
    "w0": WorldSpec("w0", "one cube from its front, turning left 180 degrees; side colours only in the references",
                    0.0, **{**_HIDDEN, "start_views": ("front",), "speeds": ("",), "directions": ("left",)}),
    # Graded steps from W0 to W1, one choice of W1 freed at a time (the graded curriculum of docs/ablation.md):
    # the caption's start view decides which reference frame 0 shows, then its direction which comes next.
    "w0s": WorldSpec("w0s", "W0 from a random start view: one cube turning left 180 degrees", 0.0,
                     **{**_HIDDEN, "speeds": ("",), "directions": ("left",)}),
    "w0sd": WorldSpec("w0sd", "W1 at one speed: random start view and direction, 180 degrees", 0.0,
                      **{**_HIDDEN, "speeds": ("",)}),
    "w1": WorldSpec("w1", "one cube, random start view and turn; side colours only in the references", 0.0,
                    **_HIDDEN),
    "w2": WorldSpec("w2", "two cubes side by side (64x32) with independent hidden colours, W1's scale", 1.0,
                    **_HIDDEN),
    "w12": WorldSpec("w12", "W1 and W2 mixed (30% two-object scenes)", 0.3, **_HIDDEN),
}


def world_spec(name: str) -> WorldSpec:
    """The :class:`WorldSpec` called ``name``, with a one-line error naming the choices."""
    try:
        return WORLDS[str(name)]
    except KeyError:
        raise MVS2VError(f"toy world {name!r} is unknown: use one of {', '.join(WORLDS)}") from None

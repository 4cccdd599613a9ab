"""A per-pixel ray caster for the toy world (numpy only).

Camera: orthographic, looking at the scene from ``elevation`` degrees above the horizon, along
``d = (0, -sin e, -cos e)``; image right is world ``+x``, image up is ``(0, cos e, -sin e)``. One
ray through each pixel centre, no anti-aliasing: every pixel shows exactly one face (or the
floor), so the face-id map of a render is exact and a pixel's colour is exactly its face's
colour times a brightness factor.

Shading: one white directional light :data:`LIGHT` fixed in the world (it does not turn with the
objects), Lambert: ``colour = albedo * (AMBIENT + DIFFUSE * max(0, n . LIGHT)) * pattern``, where
``pattern`` is 1 or :data:`PATTERN_DARK` inside a face's pattern. Every factor is a scalar, so a
pixel's colour *direction* equals its face's palette colour direction (what the evaluation uses).

Object geometry (world units): cube of side 1 standing on the floor; cylinder of radius 0.5 and
height 1; sphere of radius 0.55 resting on the floor; the sphere's cap is the part within
:data:`CAP_HALF_ANGLE` of its front direction. An object at yaw ``y`` is rotated by ``-y``
about the vertical axis (standard right-handed rotation), which brings its ``left`` face (+x)
to the camera at ``y = 90``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ._core import MVS2VError
from .world import PALETTE, ToyObject, ToyScene

__all__ = [
    "RENDERER_VERSION", "Render", "VideoRender", "render_frame", "render_video", "render_reference",
    "render_objects", "to_uint8", "visible_faces", "LIGHT", "AMBIENT", "DIFFUSE", "PATTERN_DARK",
    "VISIBLE_FRACTION", "REF_HALF_EXTENT", "REF_BACKGROUND",
]

# Bump when a change makes renders differ: stored ground truth then no longer matches.
RENDERER_VERSION = 1

LIGHT = np.array([-0.5, 1.0, 0.7]) / np.linalg.norm([-0.5, 1.0, 0.7])
AMBIENT = 0.45
DIFFUSE = 0.55
PATTERN_DARK = 0.6
FLOOR_CHECKER_DARK = 0.8
CUBE_HALF = 0.5
CYLINDER_RADIUS = 0.5
CYLINDER_HEIGHT = 1.0
SPHERE_RADIUS = 0.55
CAP_HALF_ANGLE = 40.0
TARGET_HEIGHT = 0.5
# A face counts as visible when it covers at least this fraction of its object's pixels (and at
# least VISIBLE_MIN_PIXELS pixels): faces seen edge-on or as a one-pixel sliver do not count.
VISIBLE_FRACTION = 0.05
VISIBLE_MIN_PIXELS = 2
# Reference views: the object alone, centred, filling most of the frame, on white.
REF_HALF_EXTENT = 0.85
REF_BACKGROUND = (1.0, 1.0, 1.0)


@dataclass
class Render:
    """One rendered image.

    Attributes:
        image: float64 ``[H, W, 3]`` in ``[0, 1]``.
        object_id: int16 ``[H, W]``: index of the object seen at each pixel, -1 for background.
        face_id: int16 ``[H, W]``: index into that object's ``faces``, -1 for background.
    """

    image: np.ndarray
    object_id: np.ndarray
    face_id: np.ndarray


@dataclass
class VideoRender:
    """A rendered clip: ``frames`` uint8 ``[F, H, W, 3]`` (what the video file holds, exactly),
    ``object_id`` and ``face_id`` int16 ``[F, H, W]`` as in :class:`Render`."""

    frames: np.ndarray
    object_id: np.ndarray
    face_id: np.ndarray


def to_uint8(image: np.ndarray) -> np.ndarray:
    """``[..., 3]`` float in [0, 1] -> uint8, rounding to nearest."""
    return np.clip(np.round(np.asarray(image) * 255.0), 0, 255).astype(np.uint8)


def _rot_y(deg: float) -> np.ndarray:
    """Right-handed rotation about +y by ``deg`` degrees."""
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _camera(width: int, height: int, elevation: float, half_extent: float,
            target: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Ray origins ``[H*W, 3]`` (row-major pixels) and the shared direction ``[3]``."""
    e = math.radians(elevation)
    d = np.array([0.0, -math.sin(e), -math.cos(e)])
    right = np.array([1.0, 0.0, 0.0])
    up = np.array([0.0, math.cos(e), -math.sin(e)])
    scale = half_extent / (min(width, height) / 2.0)
    px = (np.arange(width) + 0.5 - width / 2.0) * scale
    py = (height / 2.0 - np.arange(height) - 0.5) * scale
    gy, gx = np.meshgrid(py, px, indexing="ij")
    origins = (np.asarray(target, dtype=np.float64)[None, :] + gx.reshape(-1, 1) * right + gy.reshape(-1, 1) * up
               - 20.0 * d)
    return origins, d


def _safe_inverse(d: np.ndarray) -> np.ndarray:
    # An axis-parallel ray (e.g. the x component at yaw 0) gets a huge finite inverse instead of inf.
    return 1.0 / np.where(np.abs(d) < 1e-12, 1e-12, d)


def _pattern(name: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Brightness factor (1 or PATTERN_DARK) of a face pattern at face coordinates ``u, v`` in [0, 1]."""
    if name == "plain":
        dark = np.zeros(u.shape, dtype=bool)
    elif name == "hband":
        dark = np.abs(v - 0.5) < 1.0 / 6.0
    elif name == "vband":
        dark = np.abs(u - 0.5) < 1.0 / 6.0
    elif name == "dot":
        dark = (u - 0.5) ** 2 + (v - 0.5) ** 2 < 0.22 ** 2
    elif name == "border":
        dark = np.minimum(np.minimum(u, 1 - u), np.minimum(v, 1 - v)) < 0.16
    else:  # pragma: no cover - ToyObject validates pattern names
        raise MVS2VError(f"unknown pattern {name!r}")
    return np.where(dark, PATTERN_DARK, 1.0)


# Each hit function takes local ray origins o [N, 3] and direction d [3] and returns
# (t [N] with inf for a miss, local normal [N, 3], face index [N], face coordinates u, v [N]).


def _hit_cube(o: np.ndarray, d: np.ndarray):
    h = CUBE_HALF
    lo, hi = np.array([-h, 0.0, -h]), np.array([h, 2 * h, h])
    inv = _safe_inverse(d)
    t0, t1 = (lo - o) * inv, (hi - o) * inv
    tmin, tmax = np.minimum(t0, t1), np.maximum(t0, t1)
    tnear, axis, tfar = tmin.max(axis=1), tmin.argmax(axis=1), tmax.min(axis=1)
    hit = (tnear <= tfar) & (tnear > 0)
    t = np.where(hit, tnear, np.inf)
    sign = -np.sign(np.where(np.abs(d) < 1e-12, 1e-12, d))[axis]  # the entry face faces the ray
    normal = np.zeros_like(o)
    normal[np.arange(len(o)), axis] = sign
    # faces: front +z, left +x, back -z, right -x, top +y, bottom -y
    face = np.select([(axis == 2) & (sign > 0), (axis == 0) & (sign > 0), (axis == 2) & (sign < 0),
                      (axis == 0) & (sign < 0), (axis == 1) & (sign > 0)], [0, 1, 2, 3, 4], 5)
    p = o + np.where(hit, tnear, 0.0)[:, None] * d
    px, py, pz = (p[:, 0] / h + 1) / 2, p[:, 1] / (2 * h), (p[:, 2] / h + 1) / 2
    u = np.where(axis == 0, pz, px)
    v = np.where(axis == 1, pz, py)
    return t, normal, face, u, v


def _hit_cylinder(o: np.ndarray, d: np.ndarray):
    r, hgt = CYLINDER_RADIUS, CYLINDER_HEIGHT
    a = d[0] ** 2 + d[2] ** 2
    b = 2 * (o[:, 0] * d[0] + o[:, 2] * d[2])
    c = o[:, 0] ** 2 + o[:, 2] ** 2 - r * r
    disc = b * b - 4 * a * c
    with np.errstate(invalid="ignore", divide="ignore"):
        t_side = np.where((disc >= 0) & (a > 1e-12), (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a), np.inf)
    y_side = o[:, 1] + t_side * d[1]
    t_side = np.where((t_side > 0) & (y_side >= 0) & (y_side <= hgt), t_side, np.inf)
    t_top = np.full(len(o), np.inf)
    if abs(d[1]) > 1e-12:
        tt = (hgt - o[:, 1]) / d[1]
        q = o + tt[:, None] * d
        t_top = np.where((tt > 0) & (q[:, 0] ** 2 + q[:, 2] ** 2 <= r * r), tt, np.inf)
    top = t_top < t_side
    t = np.minimum(t_side, t_top)
    p = o + np.where(np.isfinite(t), t, 0.0)[:, None] * d
    alpha = np.arctan2(p[:, 0], p[:, 2])  # 0 at the front (+z), +pi/2 at the left (+x)
    front = np.abs(alpha) <= math.pi / 2
    normal = np.stack([p[:, 0] / r, np.zeros(len(o)), p[:, 2] / r], axis=1)
    normal[top] = (0.0, 1.0, 0.0)
    # faces: front, back, top, bottom (the bottom is never seen from above)
    face = np.where(top, 2, np.where(front, 0, 1))
    u_side = np.where(front, (alpha + math.pi / 2) / math.pi, (np.mod(alpha, 2 * math.pi) - math.pi / 2) / math.pi)
    u = np.where(top, (p[:, 0] / r + 1) / 2, u_side)
    v = np.where(top, (p[:, 2] / r + 1) / 2, p[:, 1] / hgt)
    return t, normal, face, u, v


def _hit_sphere(o: np.ndarray, d: np.ndarray):
    r = SPHERE_RADIUS
    oc = o - np.array([0.0, r, 0.0])
    b = 2 * (oc @ d)
    c = (oc * oc).sum(axis=1) - r * r
    disc = b * b - 4 * float(d @ d) * c
    t = np.where(disc >= 0, (-b - np.sqrt(np.maximum(disc, 0))) / (2 * float(d @ d)), np.inf)
    t = np.where(t > 0, t, np.inf)
    p = oc + np.where(np.isfinite(t), t, 0.0)[:, None] * d
    normal = p / r
    # faces: cap (within CAP_HALF_ANGLE of the front direction +z), body
    face = np.where(normal[:, 2] >= math.cos(math.radians(CAP_HALF_ANGLE)), 0, 1)
    return t, normal, face, np.zeros(len(o)), np.zeros(len(o))


_HIT = {"cube": _hit_cube, "cylinder": _hit_cylinder, "sphere": _hit_sphere}


def render_objects(objects: Sequence[ToyObject], yaws: Sequence[float], width: int, height: int,
                   elevation: float, half_extent: float, target: Sequence[float],
                   floor: tuple[str, float] | None = None,
                   background: tuple[float, float, float] = REF_BACKGROUND,
                   positions: Sequence[tuple[float, float]] | None = None) -> Render:
    """Ray-cast objects at the given yaws.

    Args:
        objects: the objects; ``yaws`` one yaw in degrees per object.
        width, height: image size in pixels.
        elevation: camera elevation in degrees; ``half_extent`` the world half-size seen along the
            shorter image side; ``target`` the world point at the image centre.
        floor: ``(palette hue, checker cell size)`` to draw the floor plane ``y = 0``, or None for
            a flat ``background`` colour (references).
        positions: override the objects' floor positions (references put the object at the origin).

    Returns:
        A :class:`Render`.
    """
    origins, d = _camera(width, height, elevation, half_extent, target)
    n = origins.shape[0]
    best_t = np.full(n, np.inf)
    image = np.empty((n, 3))
    obj_id = np.full(n, -1, dtype=np.int16)
    face_id = np.full(n, -1, dtype=np.int16)
    for k, (obj, yaw) in enumerate(zip(objects, yaws)):
        x, z = positions[k] if positions is not None else obj.position
        to_local = _rot_y(yaw)
        o_local = (origins - np.array([x, 0.0, z])) @ to_local.T
        d_local = to_local @ d
        t, n_local, face, u, v = _HIT[obj.shape](o_local, d_local)
        closer = t < best_t
        if not closer.any():
            continue
        n_world = n_local[closer] @ _rot_y(-yaw).T
        shade = AMBIENT + DIFFUSE * np.maximum(0.0, n_world @ LIGHT)
        albedo = np.array([obj.colour_rgb(f) for f in obj.faces])[face[closer]]
        pattern = np.ones(int(closer.sum()))
        fc, uc, vc = face[closer], u[closer], v[closer]
        for fi, fname in enumerate(obj.faces):
            sel = fc == fi
            if sel.any():
                pattern[sel] = _pattern(obj.patterns[fname], uc[sel], vc[sel])
        image[closer] = albedo * (shade * pattern)[:, None]
        best_t[closer] = t[closer]
        obj_id[closer] = k
        face_id[closer] = face[closer]
    bg = obj_id < 0
    if floor is not None:
        hue, cell = floor
        t_floor = -origins[bg, 1] / d[1]
        p = origins[bg] + t_floor[:, None] * d
        factor = np.ones(len(p))
        if cell > 0:
            parity = (np.floor(p[:, 0] / cell) + np.floor(p[:, 2] / cell)) % 2 == 1
            factor = np.where(parity, FLOOR_CHECKER_DARK, 1.0)
        shade = AMBIENT + DIFFUSE * max(0.0, float(LIGHT[1]))
        image[bg] = np.array(PALETTE[hue])[None, :] * (shade * factor)[:, None]
    else:
        image[bg] = np.asarray(background, dtype=np.float64)
    return Render(np.clip(image, 0.0, 1.0).reshape(height, width, 3), obj_id.reshape(height, width),
                  face_id.reshape(height, width))


def render_frame(scene: ToyScene, t: int) -> Render:
    """Frame ``t`` of a scene (float image; the video holds :func:`to_uint8` of it)."""
    if not 0 <= int(t) < scene.frames:
        raise MVS2VError(f"frame {t} is outside the clip (0..{scene.frames - 1})")
    yaws = [o.yaw(int(t), scene.frames) for o in scene.objects]
    return render_objects(scene.objects, yaws, scene.width, scene.height, scene.elevation, scene.half_extent,
                          (0.0, TARGET_HEIGHT, 0.0), floor=(scene.floor_colour, scene.floor_checker))


def render_video(scene: ToyScene) -> VideoRender:
    """Every frame of a scene: uint8 frames and the exact object / face maps."""
    renders = [render_frame(scene, t) for t in range(scene.frames)]
    return VideoRender(np.stack([to_uint8(r.image) for r in renders]), np.stack([r.object_id for r in renders]),
                       np.stack([r.face_id for r in renders]))


def render_reference(obj: ToyObject, yaw: float, width: int, height: int, elevation: float = 25.0,
                     half_extent: float = REF_HALF_EXTENT) -> Render:
    """A reference view: ``obj`` alone at yaw ``yaw``, centred, on white, same camera elevation."""
    centre = SPHERE_RADIUS if obj.shape == "sphere" else TARGET_HEIGHT
    return render_objects([obj], [float(yaw)], width, height, elevation, half_extent, (0.0, centre, 0.0),
                          floor=None, positions=[(0.0, 0.0)])


def visible_faces(object_id: np.ndarray, face_id: np.ndarray, obj_index: int, faces: Sequence[str],
                  min_fraction: float = VISIBLE_FRACTION, min_pixels: int = VISIBLE_MIN_PIXELS) -> list[str]:
    """Faces of object ``obj_index`` visible in one render, in the object's face order.

    A face is visible when it covers at least ``min_fraction`` of the object's pixels and at least
    ``min_pixels`` pixels.
    """
    mask = object_id == obj_index
    total = int(mask.sum())
    if total == 0:
        return []
    counts = np.bincount(face_id[mask].astype(np.int64), minlength=len(faces))
    need = max(min_pixels, math.ceil(min_fraction * total))
    return [f for i, f in enumerate(faces) if counts[i] >= need]

"""The T slider's and the pusher's geometry, defined once as data.

Every other module (the Drake scene, the task's coverage metric, the planner) takes its shapes from
here, so the published dimensions (science.md §1) live in exactly one place.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BAR_SIZE = (0.1651, 0.04064)  # x, y extents of the T's top bar (m)
STEM_SIZE = (0.04064, 0.12447)  # x, y extents of the stem (m)
STEM_BELOW_BAR = 0.08255  # stem centre lies this far below the bar centre along -y (m)
SLIDER_HEIGHT = 0.03175  # m
SLIDER_MASS = 0.1  # kg
SLIDER_FRICTION = 0.5
TABLE_FRICTION = 0.5
PUSHER_RADIUS = 0.015  # m
PUSHER_HEIGHT = 0.05  # m
# The pusher floats this far above the table so that it never rubs on it (its z is fixed).
PUSHER_CLEARANCE = 0.002  # m


# The published sizes overlap bar and stem by 5 micrometres; the stem here ends exactly at the bar so
# that the two boxes are disjoint and areas, outlines and coverage are exact. Its bottom is as published.
_STEM_BOTTOM_BELOW_BAR = STEM_BELOW_BAR + STEM_SIZE[1] / 2
_STEM_LENGTH = _STEM_BOTTOM_BELOW_BAR - BAR_SIZE[1] / 2
_STEM_CENTRE_BELOW_BAR = _STEM_BOTTOM_BELOW_BAR - _STEM_LENGTH / 2


def _com_below_bar_centre() -> float:
    bar_area = BAR_SIZE[0] * BAR_SIZE[1]
    stem_area = STEM_SIZE[0] * _STEM_LENGTH
    return _STEM_CENTRE_BELOW_BAR * stem_area / (bar_area + stem_area)


@dataclass(frozen=True)
class Box2D:
    """An axis-aligned rectangle in the slider's body frame (centre and full size, metres)."""

    center: tuple[float, float]
    size: tuple[float, float]

    @property
    def half(self) -> np.ndarray:
        return np.asarray(self.size) / 2.0

    def corners(self) -> np.ndarray:
        """Corners counter-clockwise from the lower-left, shape (4, 2)."""
        (cx, cy), (hx, hy) = self.center, self.half
        return np.array([[cx - hx, cy - hy], [cx + hx, cy - hy], [cx + hx, cy + hy], [cx - hx, cy + hy]])


# The body frame sits at the centre of mass of the (uniform-density) T.
_COM = _com_below_bar_centre()
BAR = Box2D(center=(0.0, _COM), size=BAR_SIZE)
STEM = Box2D(center=(0.0, _COM - _STEM_CENTRE_BELOW_BAR), size=(STEM_SIZE[0], _STEM_LENGTH))
T_BOXES: tuple[Box2D, ...] = (BAR, STEM)
# The largest distance from the centre of mass to any point of the T.
T_RADIUS = float(max(np.linalg.norm(box.corners(), axis=1).max() for box in T_BOXES))


def t_polygon() -> np.ndarray:
    """The T's outline in its body frame, counter-clockwise, shape (8, 2)."""
    bx, by = BAR.half
    sx, sy = STEM.half
    top, bar_bottom = BAR.center[1] + by, BAR.center[1] - by
    stem_bottom = STEM.center[1] - sy
    return np.array(
        [
            [-sx, stem_bottom],
            [sx, stem_bottom],
            [sx, bar_bottom],
            [bx, bar_bottom],
            [bx, top],
            [-bx, top],
            [-bx, bar_bottom],
            [-sx, bar_bottom],
        ]
    )


def rotation(theta: float) -> np.ndarray:
    """2-D rotation matrix."""
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[c, -s], [s, c]])


def to_world(points_body: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Map body-frame points (..., 2) to the world with a planar pose (x, y, theta)."""
    pose = np.asarray(pose, dtype=float)
    return np.asarray(points_body) @ rotation(pose[2]).T + pose[:2]


def to_body(points_world: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Map world points (..., 2) into the body frame of a slider at `pose`."""
    pose = np.asarray(pose, dtype=float)
    return (np.asarray(points_world) - pose[:2]) @ rotation(pose[2])


def distance_to_t(points_world: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Signed distance from world points (..., 2) to the T at `pose`: negative inside."""
    p = to_body(points_world, pose)
    distances = []
    for box in T_BOXES:
        q = np.abs(p - np.asarray(box.center)) - box.half
        outside = np.linalg.norm(np.maximum(q, 0.0), axis=-1)
        inside = np.minimum(np.max(q, axis=-1), 0.0)
        distances.append(outside + inside)
    # The union of two boxes: min of their signed distances is exact outside and a bound inside.
    return np.minimum(*distances)


def t_area() -> float:
    """The T's area in m^2."""
    return sum(b.size[0] * b.size[1] for b in T_BOXES)


def polygon_area(polygon: np.ndarray) -> float:
    """Area of a simple polygon (shoelace formula), vertices in order."""
    if len(polygon) < 3:
        return 0.0
    x, y = polygon[:, 0], polygon[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y)) / 2.0)


def clip_convex(subject: np.ndarray, clip: np.ndarray) -> np.ndarray:
    """Intersection of two convex polygons (Sutherland-Hodgman); `clip` counter-clockwise."""
    output = list(subject)
    for a, b in zip(clip, np.roll(clip, -1, axis=0)):
        if not output:
            break
        edge = b - a
        inputs, output = output, []
        for p, q in zip(inputs, inputs[1:] + inputs[:1]):
            # Signed (scaled) distances to the clip edge's line; the crossing is where the linear
            # interpolation of the two is zero. They differ in sign there, so sp - sq is never 0 (an edge
            # parallel to the clip edge, its ends rounded to either side, once gave 0 / 0 = NaN).
            sp = edge[0] * (p[1] - a[1]) - edge[1] * (p[0] - a[0])
            sq = edge[0] * (q[1] - a[1]) - edge[1] * (q[0] - a[0])
            if sp >= 0:
                output.append(p)
            if (sp >= 0) != (sq >= 0):
                output.append(p + sp / (sp - sq) * (q - p))
    return np.array(output).reshape(-1, 2)


def t_overlap_area(pose_a: np.ndarray, pose_b: np.ndarray) -> float:
    """Exact area shared by two Ts: the sum over their disjoint boxes of pairwise box intersections."""
    if np.linalg.norm(np.asarray(pose_a[:2]) - np.asarray(pose_b[:2])) > 2 * T_RADIUS:
        return 0.0
    boxes_a = [to_world(box.corners(), pose_a) for box in T_BOXES]
    boxes_b = [to_world(box.corners(), pose_b) for box in T_BOXES]
    return sum(polygon_area(clip_convex(a, b)) for a in boxes_a for b in boxes_b)

"""The pushable faces of the T in its body frame: where the pusher may touch, and from which side.

A face is a segment of the T's outline (science.md §1 dimensions, taken from `pushing_sim.geometry`)
shortened so that a pusher disk touching it clears the rest of the T and the face's corners.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pushing_sim import geometry


@dataclass(frozen=True)
class Face:
    """A pushable segment: the contact point runs from `start` to `end` (body frame, metres)."""

    index: int
    start: np.ndarray
    end: np.ndarray
    outward_normal: np.ndarray

    @property
    def tangent(self) -> np.ndarray:
        d = self.end - self.start
        return d / np.linalg.norm(d)

    @property
    def length(self) -> float:
        return float(np.linalg.norm(self.end - self.start))

    def point(self, s: float | np.ndarray) -> np.ndarray:
        """Contact point at fraction s in [0, 1] along the face."""
        s = np.asarray(s, dtype=float)
        return self.start + s[..., None] * (self.end - self.start)

    def pusher_centre(self, s: float | np.ndarray, gap: float = 0.0) -> np.ndarray:
        """Where the pusher's centre sits when it touches the face at s (plus an optional gap)."""
        return self.point(s) + (geometry.PUSHER_RADIUS + gap) * self.outward_normal


def pushable_faces(corner_margin: float, concave_margin: float) -> tuple[Face, ...]:
    """The T's eight outline edges, each trimmed by a margin at convex and concave corners.

    `concave_margin` must exceed the pusher radius so that the disk clears the adjacent face.
    """
    polygon = geometry.t_polygon()
    n = len(polygon)
    concave = [_is_concave(polygon, i) for i in range(n)]
    faces = []
    for i in range(n):
        a, b = polygon[i], polygon[(i + 1) % n]
        direction = (b - a) / np.linalg.norm(b - a)
        # Counter-clockwise outline: the outward normal is the edge direction turned clockwise.
        normal = np.array([direction[1], -direction[0]])
        start = a + (concave_margin if concave[i] else corner_margin) * direction
        end = b - (concave_margin if concave[(i + 1) % n] else corner_margin) * direction
        faces.append(Face(index=i, start=start, end=end, outward_normal=normal))
    return tuple(faces)


def _is_concave(polygon: np.ndarray, i: int) -> bool:
    prev, here, nxt = polygon[i - 1], polygon[i], polygon[(i + 1) % len(polygon)]
    d1, d2 = here - prev, nxt - here
    return d1[0] * d2[1] - d1[1] * d2[0] < 0

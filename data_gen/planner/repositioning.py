"""Collision-free pusher paths around the T in its body frame (where the T stands still).

The pusher centre must stay at least `clearance` beyond the pusher radius from the T. The T grown
by that distance is taken as the union of its two boxes grown into larger boxes (which contain the
exact disk-grown T, so it errs on the safe side). The free space outside that union is covered by
convex regions (half-planes of the grown boxes); the shortest path through them bends only at the
grown boxes' outer corners, so it is found exactly on their visibility graph.
"""

from __future__ import annotations

import heapq

import numpy as np

from pushing_sim import geometry


class BodyFrameObstacle:
    """The T grown by `margin` (pusher radius plus clearance) as a union of axis-aligned boxes."""

    def __init__(self, margin: float):
        self.margin = margin
        self.boxes = [
            (np.asarray(b.center) - b.half - margin, np.asarray(b.center) + b.half + margin) for b in geometry.T_BOXES
        ]
        corners = []
        for lo, hi in self.boxes:
            for x in (lo[0], hi[0]):
                for y in (lo[1], hi[1]):
                    # Nudged outwards so the path's bends never graze the obstacle numerically.
                    corner = np.array([x, y]) + 1e-7 * np.sign(np.array([x, y]) - (lo + hi) / 2)
                    if not self.contains(corner):
                        corners.append(corner)
        self.corners = np.array(corners)

    def contains(self, point: np.ndarray, tol: float = 1e-9) -> bool:
        """Whether a point lies strictly inside the grown T."""
        return any(bool(np.all(point > lo + tol) and np.all(point < hi - tol)) for lo, hi in self.boxes)

    def segment_is_free(self, a: np.ndarray, b: np.ndarray, tol: float = 1e-9) -> bool:
        """Whether the segment a-b avoids the open interior of every grown box (slab test)."""
        d = b - a
        for lo, hi in self.boxes:
            t0, t1 = 0.0, 1.0
            hit = True
            for k in range(2):
                if abs(d[k]) < 1e-15:
                    if a[k] <= lo[k] + tol or a[k] >= hi[k] - tol:
                        hit = False
                        break
                    continue
                ta, tb = (lo[k] + tol - a[k]) / d[k], (hi[k] - tol - a[k]) / d[k]
                t0, t1 = max(t0, min(ta, tb)), min(t1, max(ta, tb))
                if t0 >= t1:
                    hit = False
                    break
            if hit:
                return False
        return True

    def shortest_path(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Shortest free polyline from a to b (both outside the grown T), shape (k, 2), endpoints included."""
        a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        if self.segment_is_free(a, b):
            return np.stack([a, b])
        nodes = [a, b, *self.corners]
        n = len(nodes)
        dist = np.full(n, np.inf)
        previous = np.full(n, -1)
        dist[0] = 0.0
        queue = [(0.0, 0)]
        while queue:
            d, i = heapq.heappop(queue)
            if d > dist[i]:
                continue
            if i == 1:
                break
            for j in range(1, n):
                if j == i or not self.segment_is_free(nodes[i], nodes[j]):
                    continue
                nd = d + float(np.linalg.norm(nodes[j] - nodes[i]))
                if nd < dist[j]:
                    dist[j], previous[j] = nd, i
                    heapq.heappush(queue, (nd, j))
        if not np.isfinite(dist[1]):
            raise ValueError("no free path around the T between these points")
        path, i = [], 1
        while i != -1:
            path.append(nodes[i])
            i = previous[i]
        return np.array(path[::-1])

    def escape(self, point: np.ndarray) -> np.ndarray:
        """A nearby point outside the grown T, reached straight away from the T (for a pusher start
        that is clear of the T but inside a grown box's corner)."""
        point = np.asarray(point, dtype=float)
        if not self.contains(point):
            return point
        direction = point - _nearest_point_on_t(point)
        direction /= np.linalg.norm(direction)
        step = 0.0
        while self.contains(point + step * direction):
            step += 0.0005
        return point + step * direction


def path_length(path: np.ndarray) -> float:
    return float(np.sum(np.linalg.norm(np.diff(path, axis=0), axis=1)))


def _nearest_point_on_t(point: np.ndarray) -> np.ndarray:
    best, best_d = None, np.inf
    for box in geometry.T_BOXES:
        lo, hi = np.asarray(box.center) - box.half, np.asarray(box.center) + box.half
        q = np.clip(point, lo, hi)
        d = np.linalg.norm(point - q)
        if d < best_d:
            best, best_d = q, d
    return best

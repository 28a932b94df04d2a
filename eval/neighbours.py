"""Nearest neighbours by state between two demonstration sets (slider pose and pusher position).

The state of a step is (slider x, y, theta, pusher x, y). Angles wrap, so theta enters as the point
``angle_scale * (cos theta, sin theta)`` on a circle of radius ``angle_scale`` metres: Euclidean
distance in the embedding is then

    d^2 = dx^2 + dy^2 + (2 angle_scale sin(dtheta / 2))^2 + dpx^2 + dpy^2,

which treats a small rotation dtheta like a translation of ``angle_scale * dtheta`` metres and is
continuous across theta = +-pi. A KD-tree answers each query in about O(log N).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

# About the T's radius of gyration: rotating it by 1 rad moves its material about this far.
DEFAULT_ANGLE_SCALE_M = 0.05
QUERY_BUDGET = 1 << 22  # neighbours held at once by query_other_groups (queries x width)


def state_features(
    slider_pose: np.ndarray, agent_pos: np.ndarray, angle_scale: float = DEFAULT_ANGLE_SCALE_M
) -> np.ndarray:
    """(N, 6) float64 embedding (x, y, s cos theta, s sin theta, pusher x, y) of (N, 3) poses and (N, 2) pushers."""
    if angle_scale <= 0:
        raise ValueError(f"angle_scale must be positive, got {angle_scale}")
    slider_pose = np.asarray(slider_pose, dtype=np.float64)
    agent_pos = np.asarray(agent_pos, dtype=np.float64)
    theta = slider_pose[:, 2]
    return np.column_stack(
        [slider_pose[:, :2], angle_scale * np.cos(theta), angle_scale * np.sin(theta), agent_pos]
    )


class StateIndex:
    """A KD-tree over the states of reference samples, queried by state."""

    def __init__(self, slider_pose: np.ndarray, agent_pos: np.ndarray, angle_scale: float = DEFAULT_ANGLE_SCALE_M):
        self.angle_scale = angle_scale
        features = state_features(slider_pose, agent_pos, angle_scale)
        if len(features) == 0:
            raise ValueError("a StateIndex needs at least one reference state")
        # Unbalanced, uncompacted trees build several times faster on millions of rows.
        self._tree = cKDTree(features, balanced_tree=False, compact_nodes=False)

    def __len__(self) -> int:
        return self._tree.n

    def query(self, slider_pose: np.ndarray, agent_pos: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Distances and reference indices of the k nearest states to each query, each (Q, k), nearest first."""
        if not 1 <= k <= len(self):
            raise ValueError(f"k must be in [1, {len(self)}] (reference states), got {k}")
        features = state_features(slider_pose, agent_pos, self.angle_scale)
        distances, indices = self._tree.query(features, k=k)
        return distances.reshape(len(features), k), indices.reshape(len(features), k).astype(np.int64)

    def query_other_groups(
        self,
        slider_pose: np.ndarray,
        agent_pos: np.ndarray,
        query_groups: np.ndarray,
        reference_groups: np.ndarray,
        k: int = 1,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Like ``query``, but only among references whose group differs from the query's (e.g. never its own episode).

        query_groups: (Q,) group of each query; reference_groups: (len(self),) group of each reference
        state; groups are non-negative integers (e.g. episode indices).
        """
        query_groups = np.asarray(query_groups, dtype=np.int64)
        reference_groups = np.asarray(reference_groups, dtype=np.int64)
        if len(reference_groups) != len(self):
            raise ValueError(f"need one reference group per reference state ({len(self)}), got {len(reference_groups)}")
        sizes = np.bincount(reference_groups, minlength=query_groups.max(initial=-1) + 1)
        available = len(self) - sizes[query_groups].max(initial=0)
        if not 1 <= k <= available:
            raise ValueError(f"k must be in [1, {available}] (reference states outside a query's group), got {k}")
        features = state_features(slider_pose, agent_pos, self.angle_scale)
        distances = np.empty((len(features), k))
        indices = np.empty((len(features), k), dtype=np.int64)
        # The own group can crowd the nearest list (neighbouring steps of one episode), so widen the
        # search until k others are found: a query needs at most k + (its group's size) candidates.
        pending = [(np.arange(len(features)), k + 16)]
        while pending:
            rows, width = pending.pop()
            width = min(width, len(self))
            for block in np.array_split(rows, max(1, -(-len(rows) * width // QUERY_BUDGET))):
                found_d, found_i = self._tree.query(features[block], k=width)
                found_d, found_i = found_d.reshape(len(block), width), found_i.reshape(len(block), width)
                other = reference_groups[found_i] != query_groups[block, None]
                done = other.sum(axis=1) >= k
                first = np.argsort(~other[done], axis=1, kind="stable")[:, :k]  # the first k others, nearest first
                distances[block[done]] = np.take_along_axis(found_d[done], first, axis=1)
                indices[block[done]] = np.take_along_axis(found_i[done], first, axis=1)
                if not done.all():
                    pending.append((block[~done], width * 4))
        return distances, indices

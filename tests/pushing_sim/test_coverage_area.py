"""The exact overlap of two Ts against an independent estimate: a fine grid over one T, tested against the other.

The test builds the T itself from the published dimensions (science.md §1) and its own rotation, so
it shares no code with ``pushing_sim.geometry``; the pose pairs cover every centre distance from 0 to
past 2 * T_RADIUS, including 0.11-0.22 m, where Ts still overlap by a third of their area.
"""

from __future__ import annotations

import numpy as np
import pytest

from pushing_sim import geometry
from pushing_sim.task import TaskConfig, coverage

# Published T (m), in the bar's own frame: the bar centred on the origin, the stem hanging below it.
BAR_WIDTH, BAR_HEIGHT = 0.1651, 0.04064
STEM_WIDTH, STEM_LENGTH, STEM_CENTRE_BELOW_BAR = 0.04064, 0.12447, 0.08255
BAR_BOTTOM = -BAR_HEIGHT / 2
STEM_BOTTOM = -(STEM_CENTRE_BELOW_BAR + STEM_LENGTH / 2)
# The published stem reaches 5 micrometres into the bar; the T is the union, so its area and centre of
# mass are those of the bar plus the stem's part below the bar.
STEM_BELOW_BAR = (STEM_WIDTH, BAR_BOTTOM - STEM_BOTTOM)
AREA = BAR_WIDTH * BAR_HEIGHT + STEM_BELOW_BAR[0] * STEM_BELOW_BAR[1]
CENTRE_OF_MASS_Y = STEM_BELOW_BAR[0] * STEM_BELOW_BAR[1] * (BAR_BOTTOM + STEM_BOTTOM) / 2 / AREA  # bar frame

GRID_SPACING = 2.5e-4  # m: ~190,000 points per T
# The grid tiles the sampled T exactly; along the other T's edges (none within 0.01 rad of the grid's
# rows, see off_the_grid) the midpoint rule's errors mostly cancel: at most 4.5e-5 of the area here.
TOLERANCE = 2e-4 * AREA


def rotate(points: np.ndarray, theta: float) -> np.ndarray:
    c, s = np.cos(theta), np.sin(theta)
    return np.stack([c * points[..., 0] - s * points[..., 1], s * points[..., 0] + c * points[..., 1]], axis=-1)


def inside_t(points_world: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Whether world points lie in (or on) the T at pose (x, y, theta), its origin at the centre of mass."""
    local = rotate(points_world - pose[:2], -pose[2])
    x, y = local[..., 0], local[..., 1] + CENTRE_OF_MASS_Y  # into the bar frame
    in_bar = (np.abs(x) <= BAR_WIDTH / 2) & (np.abs(y) <= BAR_HEIGHT / 2)
    in_stem = (np.abs(x) <= STEM_WIDTH / 2) & (y >= STEM_BOTTOM) & (y <= STEM_BOTTOM + STEM_LENGTH)
    return in_bar | in_stem


def cell_centres(x_range: tuple[float, float], y_range: tuple[float, float]) -> tuple[np.ndarray, float]:
    """Centres of a grid of about GRID_SPACING cells tiling the rectangle exactly, and one cell's area."""
    nx = round((x_range[1] - x_range[0]) / GRID_SPACING)
    ny = round((y_range[1] - y_range[0]) / GRID_SPACING)
    dx, dy = (x_range[1] - x_range[0]) / nx, (y_range[1] - y_range[0]) / ny
    xs = x_range[0] + dx * (np.arange(nx) + 0.5)
    ys = y_range[0] + dy * (np.arange(ny) + 0.5)
    return np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2), dx * dy


# The T as two disjoint rectangles in its centre-of-mass frame, each tiled by a grid.
T_SAMPLES = [
    cell_centres((-BAR_WIDTH / 2, BAR_WIDTH / 2), (BAR_BOTTOM - CENTRE_OF_MASS_Y, -BAR_BOTTOM - CENTRE_OF_MASS_Y)),
    cell_centres((-STEM_WIDTH / 2, STEM_WIDTH / 2), (STEM_BOTTOM - CENTRE_OF_MASS_Y, BAR_BOTTOM - CENTRE_OF_MASS_Y)),
]


def sampled_overlap(pose_a: np.ndarray, pose_b: np.ndarray) -> float:
    """Area of the T at pose_a that lies in the T at pose_b, by the midpoint rule on T_SAMPLES."""
    area = 0.0
    for centres, cell_area in T_SAMPLES:
        world = rotate(centres, pose_a[2]) + pose_a[:2]
        area += np.count_nonzero(inside_t(world, pose_b)) * cell_area
    return area


def off_the_grid(turn: float) -> bool:
    """Whether one T turned by ``turn`` from the other has no edge within 0.01 rad of the other's grid rows:
    the midpoint rule errs by up to half a cell along each edge parallel to them, elsewhere far less."""
    return abs((turn + np.pi / 4) % (np.pi / 2) - np.pi / 4) > 0.01


def pose_pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    """Fixed-seed pairs at centre distances 0 to 0.26 m, random orientations, plus chosen close calls."""
    rng = np.random.default_rng(37)
    distances = [0.0, 0.005, 0.02, 0.04, 0.06, 0.08, 0.10, 0.11, 0.12, 0.13, 0.14, 0.15, 0.16, 0.17,
                 0.18, 0.19, 0.20, 0.21, 0.22, 0.222, 0.2235, 0.23, 0.26]  # fmt: skip
    pairs = []
    for distance in distances:
        found = 0
        while found < 4:
            pose_a = np.array([*rng.uniform(-0.3, 0.3, 2), rng.uniform(-np.pi, np.pi)])
            direction, theta_b = rng.uniform(-np.pi, np.pi, 2)
            centre_b = pose_a[:2] + distance * np.array([np.cos(direction), np.sin(direction)])
            if off_the_grid(theta_b - pose_a[2]):
                pairs.append((pose_a, np.array([*centre_b, theta_b])))
                found += 1
    # Overlaps at 0.11-0.22 m: bars end to end, stems tip to tip, a bar across the other's stem (each
    # turned 0.02 rad off the other's grid).
    for theta in (0.0, 0.9, -2.3):
        a = np.array([0.1, -0.05, theta])
        along_bar, along_stem = rotate(np.array([1.0, 0.0]), theta), rotate(np.array([0.0, 1.0]), theta)
        for shift, turn in [(0.12 * along_bar, 0.0), (0.15 * along_bar, 0.0), (0.2 * along_bar, np.pi),
                            (0.11 * along_stem, 0.0), (-0.11 * along_stem, np.pi), (-0.13 * along_stem, np.pi),
                            (-0.12 * along_stem, np.pi / 2), (0.10 * along_bar - 0.09 * along_stem, np.pi / 2),
                            (0.2 * along_stem, np.pi)]:  # fmt: skip
            pairs.append((a, np.array([*(a[:2] + shift), theta + turn + 0.02])))
    return pairs


PAIRS = pose_pairs()


def test_the_independent_t_has_the_area_of_the_geometry_module():
    assert np.isclose(AREA, geometry.t_area(), rtol=1e-12)
    assert np.isclose(sum(len(c) * a for c, a in T_SAMPLES), AREA, rtol=1e-12)
    assert np.isclose(sampled_overlap(PAIRS[0][0], PAIRS[0][0]), AREA, rtol=1e-12)


def test_overlap_area_matches_a_dense_grid_at_every_centre_distance():
    band_overlaps = []
    for pose_a, pose_b in PAIRS:
        distance = float(np.linalg.norm(pose_b[:2] - pose_a[:2]))
        expected = sampled_overlap(pose_a, pose_b)
        exact = geometry.t_overlap_area(pose_a, pose_b)
        assert exact == pytest.approx(expected, abs=TOLERANCE), (
            f"poses {pose_a.round(4).tolist()} and {pose_b.round(4).tolist()}, centres {distance:.4f} m apart: "
            f"t_overlap_area {exact:.6g} m^2 ({exact / AREA:.1%}), grid {expected:.6g} m^2 ({expected / AREA:.1%})"
        )
        assert geometry.t_overlap_area(pose_b, pose_a) == pytest.approx(exact, abs=1e-12)  # symmetric
        if 0.11 <= distance <= 0.22:
            band_overlaps.append(expected / AREA)
        if distance > 2 * geometry.T_RADIUS:
            assert expected == exact == 0.0
    # The pairs' power: at 0.11-0.22 m many pairs overlap, some by a third of the T.
    assert sum(f > 0.01 for f in band_overlaps) >= 20 and max(band_overlaps) > 0.3, sorted(band_overlaps)[-5:]


def test_coverage_is_the_overlap_with_the_goal_over_the_area():
    task = TaskConfig()
    goal = np.asarray(task.goal_pose, dtype=float)
    # Goal-aligned Ts turned off the grid's rows (see off_the_grid); the second and third 0.11-0.13 m away.
    for offset in ([0.0, 0.0, 0.0], [0.13, 0.0, np.pi + 0.02], [0.0, -0.11, np.pi - 0.03], [0.05, 0.1, 1.2]):
        pose = goal + offset
        assert coverage(task, pose) == pytest.approx(sampled_overlap(pose, goal) / AREA, abs=TOLERANCE / AREA)


def test_overlap_of_ts_sliding_along_their_own_bar_is_a_number():
    """Two Ts of one orientation, one moved along its bar: edges lie on one line, rounded to either side
    of it (this pair once gave NaN, 0 / 0 in the clipping)."""
    a = np.array([0.13359134368045622, 0.11258044605333911, -2.9670597283903604])
    b = np.array([0.08435095602984582, 0.1038980371699926, -2.9670597283903604])
    area = geometry.t_overlap_area(a, b)
    assert np.isfinite(area) and 0 < area < geometry.t_overlap_area(a, a)
    rng = np.random.default_rng(7)
    for _ in range(2000):  # aligned pairs at random offsets: 43 of 14,600 gave NaN before
        pose = np.array([*rng.uniform(-0.2, 0.2, 2), rng.uniform(-np.pi, np.pi)])
        shift = rng.uniform(-0.1, 0.1) * np.array([np.cos(pose[2]), np.sin(pose[2]), 0.0])
        assert np.isfinite(geometry.t_overlap_area(pose, pose + shift))

import math

import numpy as np
import pytest

from pushing_sim import geometry
from pushing_sim.task import (
    TaskConfig,
    coverage,
    evaluation_initial_poses,
    is_success,
    sample_initial_pose,
    t_inside_box,
    wrap_angle,
)


def test_sampler_keeps_the_whole_t_in_the_box_and_clear_of_the_pusher(task):
    rng = np.random.default_rng(1)
    poses = np.array([sample_initial_pose(task, rng) for _ in range(300)])
    lo, hi = task.init_box()
    for pose in poses:
        corners = geometry.to_world(geometry.t_polygon(), pose)
        assert np.all(corners >= lo - 1e-12) and np.all(corners <= hi + 1e-12)
        assert geometry.distance_to_t(np.array(task.pusher_start), pose) > geometry.PUSHER_RADIUS
    assert np.all(np.abs(poses[:, 2]) <= np.pi)
    # Orientation is uniform over the circle: every quadrant is well represented.
    counts = np.histogram(poses[:, 2], bins=4, range=(-np.pi, np.pi))[0]
    assert counts.min() > 50


def test_sampler_refuses_a_pusher_inside_the_box_region_it_would_touch(task):
    # With the pusher in the box centre, no sampled T may touch it.
    rng = np.random.default_rng(2)
    pusher = np.array(task.goal_pose[:2])
    for _ in range(50):
        pose = sample_initial_pose(task, rng, pusher_xy=pusher)
        assert geometry.distance_to_t(pusher, pose) > geometry.PUSHER_RADIUS + task.init_pusher_clearance


def test_success_needs_both_position_and_angle_within_tolerance(task, goal):
    assert is_success(task, goal)
    assert is_success(task, goal + [0.0149, 0, 0])
    assert not is_success(task, goal + [0.0151, 0, 0])
    assert is_success(task, goal + [0, 0, math.radians(3.4)])
    assert not is_success(task, goal + [0, 0, math.radians(3.6)])
    # Angles wrap: a full turn away is still at the goal.
    assert is_success(task, goal + [0, 0, 2 * np.pi - math.radians(1)])


def test_success_can_also_require_the_pusher_home(goal):
    task = TaskConfig(pusher_home_tolerance=0.02)
    assert not is_success(task, goal, pusher_xy=np.array(task.pusher_start) + [0.05, 0])
    assert is_success(task, goal, pusher_xy=np.array(task.pusher_start))
    with pytest.raises(ValueError):
        is_success(task, goal)


def test_evaluation_poses_are_fixed_by_seed_and_independent_of_their_number(task):
    first = evaluation_initial_poses(task, 5, seed=3)
    np.testing.assert_array_equal(first, evaluation_initial_poses(task, 5, seed=3))
    np.testing.assert_array_equal(first[:3], evaluation_initial_poses(task, 3, seed=3))
    assert not np.allclose(first, evaluation_initial_poses(task, 5, seed=4))
    assert all(t_inside_box(task, pose) for pose in first)


def test_coverage_is_one_at_the_goal_and_falls_with_distance(task, goal):
    assert coverage(task, goal) == pytest.approx(1.0)
    values = [coverage(task, goal + [dx, 0, 0]) for dx in (0.01, 0.03, 0.1, 0.3)]
    assert values == sorted(values, reverse=True)
    assert values[-1] == 0.0
    # A 1 cm shift along x uncovers 1 cm times the bar's height plus the stem's length.
    expected = 1 - 0.01 * (geometry.BAR.size[1] + geometry.STEM.size[1]) / geometry.t_area()
    assert values[0] == pytest.approx(expected, rel=1e-9)


def test_wrap_angle():
    np.testing.assert_allclose(wrap_angle(np.array([0.0, np.pi + 0.1, -np.pi - 0.1, 4 * np.pi])), [0.0, -np.pi + 0.1, np.pi - 0.1, 0.0], atol=1e-12)

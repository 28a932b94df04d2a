"""The GCS contact planner: goal reached in its quasi-static model, no penetration, clean contact
switches, consistent 10 Hz resampling, clear errors on impossible inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from data_gen.planner import REPOSITION, PlannerConfig, PlanningError, plan_push
from data_gen.planner.faces import pushable_faces
from data_gen.planner.quasi_static import contact_jacobian, limit_surface_c, motion_cone_edges, slider_twist
from data_gen.planner.verification import pusher_clearance, replay_quasi_static
from pushing_sim import geometry
from pushing_sim.task import TaskConfig, is_success, pose_errors

TASK = TaskConfig()
CONFIG = PlannerConfig()
START_POSES = {
    "translation": (0.52, -0.06, 0.0),
    "plus_170deg": (0.68, -0.09, math.radians(170)),
    "minus_170deg": (0.5, -0.05, math.radians(-170)),
    "minus_95deg": (0.66, -0.08, math.radians(-95)),
}
_plans = {}


@pytest.fixture(params=sorted(START_POSES), scope="module")
def case(request):
    start = np.array(START_POSES[request.param])
    if request.param not in _plans:
        _plans[request.param] = plan_push(start, TASK, CONFIG)
    return start, _plans[request.param]


def test_replayed_plan_reaches_goal_within_tolerance(case):
    start, plan = case
    replayed = replay_quasi_static(plan.pusher_xy, start)
    position_error, angle_error = pose_errors(TASK, replayed[-1])
    assert is_success(TASK, replayed[-1])
    assert position_error < 0.003 and angle_error < math.radians(1.0)
    # The plan's own slider trajectory is what the replay produces.
    assert np.max(np.abs(replayed - plan.slider_poses)[:, :2]) < 0.003
    position_error, angle_error = pose_errors(TASK, plan.slider_poses[-1])
    assert position_error < CONFIG.position_tolerance and angle_error < math.radians(CONFIG.angle_tolerance_deg)


def test_pusher_never_penetrates_the_t(case):
    _, plan = case
    assert pusher_clearance(plan, hz=200.0).min() >= geometry.PUSHER_RADIUS - 1e-4


def test_plan_starts_and_ends_with_pusher_home(case):
    start, plan = case
    np.testing.assert_allclose(plan.pusher_xy[0], TASK.pusher_start, atol=1e-9)
    np.testing.assert_allclose(plan.pusher_xy[-1], TASK.pusher_start, atol=1e-9)
    np.testing.assert_allclose(plan.slider_poses[0], start, atol=1e-9)
    assert np.all(np.diff(plan.times) > 0)
    assert plan.solve_time > 0 and np.isfinite(plan.cost)


def test_pushes_stay_on_one_face_and_switch_only_through_repositioning(case):
    _, plan = case
    faces = pushable_faces(CONFIG.corner_margin, CONFIG.concave_margin)
    pushing = plan.phase != REPOSITION
    assert pushing.any() and (~pushing).any()
    body = np.array([geometry.to_body(x, q) for x, q in zip(plan.pusher_xy, plan.slider_poses)])
    for i in np.flatnonzero(pushing):
        face = faces[plan.phase[i]]
        along = (body[i] - face.start) @ face.tangent
        assert abs((body[i] - face.start) @ face.outward_normal - geometry.PUSHER_RADIUS) < 1e-6
        assert -1e-6 <= along <= face.length + 1e-6
        assert abs(geometry.distance_to_t(plan.pusher_xy[i], plan.slider_poses[i]) - geometry.PUSHER_RADIUS) < 1e-4
    # Consecutive pushing samples share face and body-frame contact (sticking); any change of contact
    # passes through repositioning samples, during which the T does not move.
    for i in range(1, len(plan.times)):
        if pushing[i] and pushing[i - 1]:
            assert plan.phase[i] == plan.phase[i - 1]
            assert np.linalg.norm(body[i] - body[i - 1]) < 1e-6
        if not pushing[i]:
            np.testing.assert_allclose(plan.slider_poses[i], plan.slider_poses[i - 1], atol=1e-12)


def test_resampling_at_control_rate_is_consistent(case):
    _, plan = case
    hz = TASK.control_hz
    resampled = plan.resample(hz)
    steps = np.diff(resampled.times)
    np.testing.assert_allclose(steps[:-1], 1.0 / hz, atol=1e-9)
    assert 0 < steps[-1] <= 1.0 / hz + 1e-9
    assert resampled.times[-1] == pytest.approx(plan.duration)
    for k in range(2):
        np.testing.assert_allclose(resampled.pusher_xy[:, k], np.interp(resampled.times, plan.times, plan.pusher_xy[:, k]))
    np.testing.assert_allclose(plan.pusher_targets(hz), resampled.pusher_xy)
    np.testing.assert_allclose(resampled.pusher_xy[-1], TASK.pusher_start, atol=1e-9)
    # The pusher never moves faster than the planned speeds.
    top_speed = max(CONFIG.push_speed, CONFIG.reposition_speed)
    assert np.max(np.linalg.norm(np.diff(resampled.pusher_xy, axis=0), axis=1)) <= top_speed / hz + 1e-6


@pytest.mark.parametrize(
    "pose, message",
    [
        ((np.nan, 0.0, 0.0), "finite"),
        ((0.587, -0.0355), "three"),
        ((2.0, 0.0, 0.0), "workspace"),
        ((0.587, 0.15, 0.0), "overlaps"),
    ],
)
def test_impossible_inputs_raise_planning_error(pose, message):
    with pytest.raises(PlanningError, match=message):
        plan_push(pose, TASK, CONFIG)


def test_motion_cone_edges_are_sticking_responses_of_the_forward_model():
    c, mu = limit_surface_c(), geometry.SLIDER_FRICTION
    face = pushable_faces(CONFIG.corner_margin, CONFIG.concave_margin)[4]
    p, inward = face.point(0.3), -face.outward_normal
    edges = motion_cone_edges(p, inward, mu, c)
    for twist in (edges[:, 0], edges[:, 1], edges @ [0.3, 0.7]):
        np.testing.assert_allclose(slider_twist(contact_jacobian(p) @ twist, p, inward, mu, c), twist, atol=1e-12)
    # Pushing along the face (outside the friction cone) slides: the answer is a cone edge, scaled.
    tangent = np.array([-inward[1], inward[0]])
    sliding = slider_twist(0.1 * inward + tangent, p, inward, mu, c)
    cosines = [sliding @ e / np.linalg.norm(sliding) / np.linalg.norm(e) for e in edges.T]
    assert max(cosines) == pytest.approx(1.0)
    # Pulling away does nothing.
    np.testing.assert_allclose(slider_twist(-inward, p, inward, mu, c), 0.0)


def test_limit_surface_c_is_the_mean_distance_of_the_footprint_from_its_centre():
    # Independent estimate: Monte Carlo over the T's two boxes weighted by area.
    rng = np.random.default_rng(0)
    samples = []
    for box in geometry.T_BOXES:
        n = int(200_000 * box.size[0] * box.size[1] / geometry.t_area())
        samples.append(rng.uniform(np.asarray(box.center) - box.half, np.asarray(box.center) + box.half, (n, 2)))
    assert limit_surface_c() == pytest.approx(np.mean(np.linalg.norm(np.concatenate(samples), axis=1)), rel=2e-3)


def test_config_round_trips_through_json():
    config = PlannerConfig(interval_deg=30.0, solver="auto")
    assert PlannerConfig.model_validate_json(config.model_dump_json()) == config


@pytest.mark.parametrize(
    "start, pusher",
    [
        # Measured mid-rollout: a home inside the goal T's grown outline once broke the graph.
        ([0.5486955283423446, -0.028492375644422047, 1.3245387578165992], [0.5750798388057852, 0.03593191795746632]),
        # Pressed 1 mm into the bar's top face, as a pusher is while it pushes.
        ([0.6, 0.0, 0.4], None),
    ],
)
def test_a_replan_may_start_next_to_or_against_the_t_and_still_ends_home(start, pusher):
    task = TaskConfig()
    start = np.array(start)
    if pusher is None:
        top = geometry.BAR.center[1] + geometry.BAR.half[1]
        pusher = geometry.to_world(np.array([0.03, top + geometry.PUSHER_RADIUS - 0.001]), start)
        assert geometry.distance_to_t(pusher, start) == pytest.approx(geometry.PUSHER_RADIUS - 0.001)
    plan = plan_push(start, task, pusher_xy=np.array(pusher))
    np.testing.assert_allclose(plan.pusher_xy[0], pusher)
    np.testing.assert_allclose(plan.pusher_xy[-1], task.pusher_start)
    position_error, angle_error = pose_errors(task, plan.slider_poses[-1])
    assert position_error < 0.002 and angle_error < np.radians(0.5)
    # After leaving the start, the pusher keeps clear of the T.
    resampled = plan.resample(100.0)
    clearance = [geometry.distance_to_t(p, q) for p, q in zip(resampled.pusher_xy[5:], resampled.slider_poses[5:])]
    assert min(clearance) > geometry.PUSHER_RADIUS - 1e-4


def test_a_pusher_deep_inside_the_t_is_refused():
    start = np.array([0.6, 0.0, 0.4])
    with pytest.raises(PlanningError, match="overlaps"):
        plan_push(start, TaskConfig(), pusher_xy=geometry.to_world(np.zeros(2), start))

"""Public entry: plan a pushing demonstration from a start pose of the T to the task's goal."""

from __future__ import annotations

import functools
import math
import time

import numpy as np

from data_gen.planner.config import PlannerConfig, PlanningError
from data_gen.planner.contact_graph import ContactGraph, face_generators
from data_gen.planner.faces import pushable_faces
from data_gen.planner.plan import Plan
from data_gen.planner.quasi_static import limit_surface_c
from data_gen.planner.reconstruction import build_trajectory
from data_gen.planner.refinement import ContactModel, refine
from data_gen.planner.repositioning import BodyFrameObstacle
from pushing_sim import geometry
from pushing_sim.task import TaskConfig, pose_errors, wrap_angle


@functools.lru_cache(maxsize=8)
def _contact_geometry(config: PlannerConfig):
    faces = pushable_faces(config.corner_margin, config.concave_margin)
    c = limit_surface_c()
    generators = [face_generators(f, geometry.SLIDER_FRICTION, c) for f in faces]
    model = ContactModel(faces, geometry.SLIDER_FRICTION, c)
    obstacle = BodyFrameObstacle(geometry.PUSHER_RADIUS + config.clearance)
    return faces, generators, model, obstacle


def workspace(task: TaskConfig, config: PlannerConfig) -> tuple[np.ndarray, np.ndarray]:
    """Box the slider's centre must stay in: the initial-condition box grown by a margin."""
    lo, hi = task.init_box()
    return lo - config.workspace_margin, hi + config.workspace_margin


# A closed-loop re-plan starts with the pusher pressed against the T: allow that much penetration.
START_PENETRATION_ALLOWANCE = 0.002  # m


def plan_push(start_pose, task: TaskConfig = TaskConfig(), config: PlannerConfig = PlannerConfig(),
              pusher_xy=None) -> Plan:
    """Plan pushes and repositionings taking the T from `start_pose` to the goal, pusher home at the end.

    The pusher starts at `pusher_xy` (default: home, `task.pusher_start`) and ends at home.
    Raises PlanningError (with the reason) when the input is invalid or no plan is found; callers that
    mass-produce plans rely on that being the only failure.
    """
    try:
        return _plan_push(start_pose, task, config, pusher_xy)
    except PlanningError:
        raise
    except (ValueError, RuntimeError, ArithmeticError) as error:  # a solver or geometry corner case
        raise PlanningError(f"planner error: {type(error).__name__}: {error}") from error


def _plan_push(start_pose, task: TaskConfig, config: PlannerConfig, pusher_xy) -> Plan:
    t0 = time.perf_counter()
    start = np.asarray(start_pose, dtype=float).reshape(-1)
    if start.shape != (3,) or not np.all(np.isfinite(start)):
        raise PlanningError(f"start pose must be three finite numbers (x, y, theta), got {start_pose!r}")
    lo, hi = workspace(task, config)
    if np.any(start[:2] < lo) or np.any(start[:2] > hi):
        raise PlanningError(f"start position {start[:2]} lies outside the planner's workspace {lo}..{hi}")
    pusher_home = np.asarray(task.pusher_start, dtype=float)
    pusher_start = pusher_home if pusher_xy is None else np.asarray(pusher_xy, dtype=float).reshape(-1)
    if pusher_start.shape != (2,) or not np.all(np.isfinite(pusher_start)):
        raise PlanningError(f"pusher position must be two finite numbers, got {pusher_xy!r}")
    if geometry.distance_to_t(pusher_start, start) < geometry.PUSHER_RADIUS - START_PENETRATION_ALLOWANCE:
        raise PlanningError("the pusher's start position overlaps the T at the start pose")
    start[2] = float(wrap_angle(start[2]))
    goal = np.asarray(task.goal_pose, dtype=float)
    faces, generators, model, obstacle = _contact_geometry(config)

    graph = ContactGraph(
        start,
        goal,
        geometry.to_body(pusher_start, start),
        geometry.to_body(pusher_home, goal),
        faces,
        generators,
        obstacle,
        (lo, hi),
        config,
    )
    paths = graph.solve()
    reasons = []
    for path in paths:
        contacts, end = refine(path, model, start, goal)
        position_error, angle_error = pose_errors(task, end)
        if position_error > config.position_tolerance or angle_error > math.radians(config.angle_tolerance_deg):
            reasons.append(f"refined end off the goal by {position_error * 1e3:.1f} mm, {math.degrees(angle_error):.2f} deg")
            continue
        times, poses, pusher, phase = build_trajectory(contacts, start, pusher_start, pusher_home, faces, model,
                                                       obstacle, config)
        return Plan(
            times=times,
            slider_poses=poses,
            pusher_xy=pusher,
            phase=phase,
            solve_time=time.perf_counter() - t0,
            cost=path.cost,
            contact_points=[(c.face, c.s) for c in contacts],
        )
    raise PlanningError(f"no rounded GCS path could be refined to the goal: {'; '.join(reasons)}")

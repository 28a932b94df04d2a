"""Turn a plan into a recorded episode: kinematic replay (render the plan's states) or physics replay.

Kinematic replay is what the papers do for their corrupt data: the planned slider and pusher states are
placed in the scene and rendered at the control rate, and the actions are the planned pusher targets,
so the data carry the planner's (quasi-static) physics, not the domain's. Physics replay sends the same
targets to the domain's Drake physics and records what really happens; with `replan_every` it becomes
a closed-loop expert that re-plans from the measured state.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from data_gen.episode_store import EpisodeRecorder
from data_gen.planner import PlanningError
from pushing_sim.simulation import PushingSim
from pushing_sim.task import is_success

Planner = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(slider_pose, pusher_xy) -> pusher targets at the control rate, shape (K, 2); raises PlanningError."""


def kinematic_episode(sim: PushingSim, slider_poses: np.ndarray, pusher_xy: np.ndarray) -> dict[str, np.ndarray]:
    """Render a plan sampled at the control rate; the action at step k is the pusher position at k + 1."""
    recorder = EpisodeRecorder(sim.camera_names)
    n = len(pusher_xy)
    for k in range(n):
        sim.set_state(slider_poses[k], pusher_xy[k])
        recorder.add(sim.render(), pusher_xy[k], slider_poses[k], pusher_xy[min(k + 1, n - 1)])
    return recorder.episode()


def physics_episode(
    sim: PushingSim,
    start_pose: np.ndarray,
    targets: np.ndarray,
    planner: Planner | None = None,
    replan_every: int | None = None,
    settle_steps: int = 10,
    command_offsets: np.ndarray | None = None,
) -> tuple[dict[str, np.ndarray], bool]:
    """Track pusher targets in the domain's physics; stop on success, at the time limit, or when done.

    With `replan_every` K and a `planner`, the targets are re-planned from the measured state every K
    steps. `command_offsets` (max_episode_steps, 2): added to the command of each step (a controlled
    corruption, data_gen.corruption), clipped to the workspace, executed and recorded as the action.
    Returns the episode and whether it met the task's success check.
    """
    task = sim.task
    sim.reset(start_pose, np.asarray(task.pusher_start, dtype=float))
    recorder = EpisodeRecorder(sim.camera_names)
    queue = list(targets[1:]) if len(targets) > 1 else list(targets)
    hold = queue[-1]
    success = False
    for step in range(task.max_episode_steps):
        slider_pose, agent_pos = sim.slider_pose(), sim.pusher_xy()
        if is_success(task, slider_pose, agent_pos):
            success = True
            break
        if replan_every and planner is not None and step > 0 and step % replan_every == 0:
            try:
                new_targets = planner(slider_pose, agent_pos)
                queue = list(new_targets[1:]) or [new_targets[-1]]
                hold = queue[-1]
            except PlanningError:  # a failed re-plan keeps the current plan
                pass
        if not queue:
            settle_steps -= 1
            if settle_steps < 0:
                break
        action = queue.pop(0) if queue else hold
        if command_offsets is not None:
            action = np.clip(action + command_offsets[step], *task.workspace())
        recorder.add(sim.render(), agent_pos, slider_pose, action)
        sim.step(action)
    if not len(recorder):  # already at the goal: record the state once
        recorder.add(sim.render(), sim.pusher_xy(), sim.slider_pose(), sim.pusher_xy())
    return recorder.episode(), success

"""From refined contacts to timed slider and pusher trajectories.

Pushing: each push is a constant body twist (its quasi-static response to a pusher moving at a
constant body-frame velocity), followed at the push speed along the contact's path. Repositioning:
the T stands still; the pusher backs off the face along its normal, takes the shortest free path
around the grown T in the body frame, and approaches the next face along its normal.
"""

from __future__ import annotations

import numpy as np

from data_gen.planner.config import PlannerConfig
from data_gen.planner.faces import Face
from data_gen.planner.plan import REPOSITION
from data_gen.planner.quasi_static import apply_body_twist
from data_gen.planner.refinement import Contact, ContactModel
from data_gen.planner.repositioning import BodyFrameObstacle
from pushing_sim import geometry


class TrajectoryBuilder:
    """Appends timed samples piece by piece; each piece starts where the previous one ended."""

    def __init__(self, pose: np.ndarray, pusher: np.ndarray, dt: float):
        self.dt = dt
        self.times, self.poses, self.pusher, self.phase = [0.0], [np.asarray(pose, float)], [np.asarray(pusher, float)], [REPOSITION]

    @property
    def pose(self) -> np.ndarray:
        return self.poses[-1]

    def _append(self, duration: float, pose_at, pusher_at, label: int) -> None:
        n = max(1, int(np.ceil(duration / self.dt - 1e-9)))
        t0 = self.times[-1]
        for i in range(1, n + 1):
            u = i / n
            self.times.append(t0 + u * duration)
            self.poses.append(pose_at(u))
            self.pusher.append(pusher_at(u))
            self.phase.append(label)

    def move_pusher(self, body_path: np.ndarray, speed: float) -> None:
        """Move the pusher along a body-frame polyline while the T stands still."""
        pose = self.pose.copy()
        world = geometry.to_world(body_path, pose)
        for a, b in zip(world[:-1], world[1:]):
            length = float(np.linalg.norm(b - a))
            if length < 1e-9:
                continue
            self._append(length / speed, lambda u: pose, lambda u, a=a, b=b: a + u * (b - a), REPOSITION)

    def push(self, face: Face, s: float, twist: np.ndarray, travel: float, speed: float) -> None:
        """Push with a constant body twist; the pusher rides on the contact point."""
        pose0 = self.pose.copy()
        centre = face.pusher_centre(s)
        pose_at = lambda u: apply_body_twist(pose0, u * twist)  # noqa: E731
        self._append(travel / speed, pose_at, lambda u: geometry.to_world(centre, pose_at(u)), face.index)

    def arrays(self):
        return np.array(self.times), np.array(self.poses), np.array(self.pusher), np.array(self.phase, dtype=int)


def build_trajectory(
    contacts: list[Contact],
    start_pose: np.ndarray,
    pusher_start: np.ndarray,
    pusher_home: np.ndarray,
    faces: tuple[Face, ...],
    model: ContactModel,
    obstacle: BodyFrameObstacle,
    config: PlannerConfig,
):
    """Timed samples (times, slider poses, pusher xy, phase) of the whole demonstration."""
    pusher_start = np.asarray(pusher_start, float)
    builder = TrajectoryBuilder(start_pose, pusher_start, config.sample_dt)
    here = obstacle.escape(geometry.to_body(pusher_start, builder.pose))
    if np.linalg.norm(here - geometry.to_body(pusher_start, builder.pose)) > 0:
        builder.move_pusher(np.stack([geometry.to_body(pusher_start, builder.pose), here]), config.reposition_speed)
    for contact in contacts:
        face = faces[contact.face]
        approach = face.pusher_centre(contact.s, config.standoff)
        path = obstacle.shortest_path(here, approach)
        builder.move_pusher(np.vstack([path, face.pusher_centre(contact.s)]), config.reposition_speed)
        for twist in contact.twists:
            travel = model.pusher_travel(contact.face, contact.s, twist)
            if travel > 1e-7:
                builder.push(face, contact.s, twist, travel, config.push_speed)
        here = face.pusher_centre(contact.s, config.standoff)
        builder.move_pusher(np.stack([face.pusher_centre(contact.s), here]), config.reposition_speed)
    home = geometry.to_body(np.asarray(pusher_home, float), builder.pose)
    builder.move_pusher(obstacle.shortest_path(here, obstacle.escape(home)), config.reposition_speed)
    if np.linalg.norm(obstacle.escape(home) - home) > 0:
        builder.move_pusher(np.stack([obstacle.escape(home), home]), config.reposition_speed)
    return builder.arrays()

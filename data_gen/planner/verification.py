"""Independent checks of a plan: replay its pusher through the quasi-static model, measure clearance.

The replay knows nothing of the planner's contacts: at each step it finds where the pusher touches
the T (if it does) and lets the forward quasi-static model (sticking, sliding or separation) move
the slider. A plan is consistent if the replayed slider follows the planned one to the goal. The
model is the planner's: a sticking pusher keeps its place on the face while the T turns (a real
non-rotating disk would roll along the face by radius x rotation; see quasi_static.slider_twist).
"""

from __future__ import annotations

import numpy as np

from data_gen.planner.plan import Plan
from data_gen.planner.quasi_static import apply_body_twist, limit_surface_c, slider_twist
from pushing_sim import geometry

CONTACT_TOLERANCE = 1e-4  # m: the pusher counts as touching within this of the T's surface


def replay_quasi_static(pusher_xy: np.ndarray, start_pose: np.ndarray, substeps: int = 2) -> np.ndarray:
    """Slider poses (K, 3) obtained by driving the quasi-static model with the pusher path (K, 2)."""
    c = limit_surface_c()
    mu = geometry.SLIDER_FRICTION
    poses = [np.asarray(start_pose, float)]
    for a, b in zip(pusher_xy[:-1], pusher_xy[1:]):
        pose = poses[-1]
        for u in range(substeps):
            p0 = a + (b - a) * u / substeps
            p1 = a + (b - a) * (u + 1) / substeps
            pose = _step(pose, p0, p1, c, mu)
        poses.append(pose)
    return np.array(poses)


def _step(pose: np.ndarray, pusher_from: np.ndarray, pusher_to: np.ndarray, c: float, mu: float) -> np.ndarray:
    centre = geometry.to_body(pusher_from, pose)
    surface = _closest_surface_point(centre)
    inside = _inside(centre)
    gap = -np.linalg.norm(centre - surface) if inside else np.linalg.norm(centre - surface)
    if gap > geometry.PUSHER_RADIUS + CONTACT_TOLERANCE:
        return pose
    inward = (surface - centre) / np.linalg.norm(surface - centre) * (-1.0 if inside else 1.0)
    # Body-frame displacement of the pusher over the step, plus any overlap it starts with.
    chord = geometry.to_body(pusher_to, pose) - centre + max(geometry.PUSHER_RADIUS - gap, 0.0) * inward
    # A constant twist moves a body point along an arc whose chord, seen from the start frame, is
    # turned by half the rotation and shortened by sinc: undo that (fixed point, converges fast),
    # because near-pure rotations make the twist very sensitive to the pusher's direction.
    twist = slider_twist(chord, surface, inward, mu, c, centre)
    for _ in range(4):
        half = twist[2] / 2.0
        motion = geometry.rotation(-half) @ chord / np.sinc(half / np.pi)
        twist = slider_twist(motion, surface, inward, mu, c, centre)
    return apply_body_twist(pose, twist)


def _inside(point: np.ndarray) -> bool:
    return any(bool(np.all(np.abs(point - np.asarray(b.center)) < b.half)) for b in geometry.T_BOXES)


def _closest_surface_point(point: np.ndarray) -> np.ndarray:
    """Closest point of the T's outline to a body-frame point (outside or inside)."""
    best, best_d = None, np.inf
    outline = geometry.t_polygon()
    for a, b in zip(outline, np.roll(outline, -1, axis=0)):
        t = np.clip(np.dot(point - a, b - a) / np.dot(b - a, b - a), 0.0, 1.0)
        q = a + t * (b - a)
        d = np.linalg.norm(point - q)
        if d < best_d:
            best, best_d = q, d
    return best


def pusher_clearance(plan: Plan, hz: float = 100.0) -> np.ndarray:
    """Signed distance from the pusher centre to the T at each sample of the plan resampled at `hz`."""
    dense = plan.resample(hz)
    return np.array([geometry.distance_to_t(p, q) for p, q in zip(dense.pusher_xy, dense.slider_poses)])

"""Quasi-static pushing with an ellipsoidal limit surface (Goyal; Lynch et al.).

A body twist V = (vx, vy, omega) answers a contact wrench w = (fx, fy, tau) by V = A w with
A = diag(1, 1, 1/c^2), c = max torque / max force of the support footprint. With sticking contact at
body point p, the friction-cone edges n_in +- mu t map to the two edges of the motion cone.
"""

from __future__ import annotations

import functools

import numpy as np

from pushing_sim import geometry


@functools.cache
def limit_surface_c(spacing: float = 0.0005) -> float:
    """c = m_max / f_max for a uniform pressure over the T: the mean distance of its area from the CoM."""
    points = []
    for box in geometry.T_BOXES:
        (cx, cy), (hx, hy) = box.center, box.half
        xs = np.arange(cx - hx + spacing / 2, cx + hx, spacing)
        ys = np.arange(cy - hy + spacing / 2, cy + hy, spacing)
        points.append(np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2))
    points = np.concatenate(points)
    return float(np.mean(np.linalg.norm(points, axis=1)))


def contact_jacobian(p: np.ndarray) -> np.ndarray:
    """Maps a body twist to the velocity of body point p (both in the body frame), shape (2, 3)."""
    return np.array([[1.0, 0.0, -p[1]], [0.0, 1.0, p[0]]])


def twist_from_wrench(force: np.ndarray, p: np.ndarray, c: float) -> np.ndarray:
    """Body twist answering a force applied at body point p (limit-surface direction, unscaled)."""
    torque = p[0] * force[1] - p[1] * force[0]
    return np.array([force[0], force[1], torque / c**2])


def motion_cone_edges(p: np.ndarray, inward_normal: np.ndarray, mu: float, c: float) -> np.ndarray:
    """The two edge twists (columns, shape (3, 2)) of the sticking motion cone at p.

    Each is scaled so that the contact point moves a unit distance: coefficients are pusher travel.
    """
    tangent = np.array([-inward_normal[1], inward_normal[0]])
    edges = []
    for sign in (1.0, -1.0):
        twist = twist_from_wrench(inward_normal + sign * mu * tangent, p, c)
        edges.append(twist / np.linalg.norm(contact_jacobian(p) @ twist))
    return np.stack(edges, axis=1)


def slider_twist(
    pusher_velocity: np.ndarray, p: np.ndarray, inward_normal: np.ndarray, mu: float, c: float, pusher_centre=None
) -> np.ndarray:
    """Forward quasi-static model: the slider's body twist when the pusher touching at p moves.

    Body-frame quantities; handles sticking, sliding and separation. The force acts at p. With
    `pusher_centre` given, sticking holds the pusher centre fixed in the body frame (the planner's
    model: the contact point does not roll along the face as the T turns); without it the pusher is
    a point at p.
    """
    if pusher_velocity @ inward_normal <= 0.0:
        return np.zeros(3)  # the pusher moves away from (or along) the face: no contact force
    a_mat = np.diag([1.0, 1.0, 1.0 / c**2])
    kinematic_point = p if pusher_centre is None else pusher_centre
    mobility = contact_jacobian(kinematic_point) @ a_mat @ contact_jacobian(p).T  # velocity per unit force
    tangent = np.array([-inward_normal[1], inward_normal[0]])
    edges = np.stack([inward_normal + mu * tangent, inward_normal - mu * tangent], axis=1)
    # The motion cone: pusher velocities answered by sticking. Inside it the force mixes both edges;
    # outside it the pusher slides and the force lies on the edge on the pusher's side.
    mix = np.linalg.solve(mobility @ edges, pusher_velocity)
    if np.all(mix >= 0.0):
        force = edges @ mix
    else:
        edge = edges[:, 0] if mix[1] < 0.0 else edges[:, 1]
        force = (pusher_velocity @ inward_normal) / (inward_normal @ mobility @ edge) * edge
    return a_mat @ contact_jacobian(p).T @ force


def apply_body_twist(pose: np.ndarray, twist: np.ndarray) -> np.ndarray:
    """Pose after following a constant body twist for unit time (exact: the SE(2) exponential)."""
    omega = twist[2]
    half = omega / 2.0
    sinc = np.sinc(half / np.pi)  # numpy's sinc is sin(pi x) / (pi x)
    c, s = np.cos(pose[2] + half), np.sin(pose[2] + half)
    dx = sinc * (c * twist[0] - s * twist[1])
    dy = sinc * (s * twist[0] + c * twist[1])
    return np.array([pose[0] + dx, pose[1] + dy, pose[2] + omega])

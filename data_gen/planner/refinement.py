"""Exact-kinematics refinement of a GCS mode sequence.

The GCS froze the rotation at each orientation interval's centre, so its end pose is only close to
the goal under the true kinematics. Here the mode sequence is kept and its pushes are re-solved with
the exact SE(2) exponential (a constant body twist per push). Each push becomes a contact point s on
its face and a nonnegative mix (k1, k2) of the motion-cone edges there (an exact change of variables
from the GCS coefficients); SLSQP meets the goal pose while staying close to the GCS plan.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from data_gen.planner.contact_graph import ModePath, face_generators
from data_gen.planner.faces import Face
from data_gen.planner.quasi_static import apply_body_twist, contact_jacobian, twist_from_wrench


@dataclass(frozen=True)
class Contact:
    """A stretch of pushing on one face at one contact point, as a list of constant-twist pushes."""

    face: int
    s: float
    twists: np.ndarray  # (n, 3) body twists, each followed for unit time


class ContactModel:
    """Edge twists of the motion cone at any point of a face (linear in s)."""

    def __init__(self, faces: tuple[Face, ...], mu: float, c: float):
        self.faces, self.mu, self.c = faces, mu, c
        self._edges = {}
        for face in faces:
            inward = -face.outward_normal
            tangent = np.array([-inward[1], inward[0]])
            forces = [inward + mu * tangent, inward - mu * tangent]
            at_start = np.stack([twist_from_wrench(f, face.start, c) for f in forces], axis=1)
            at_end = np.stack([twist_from_wrench(f, face.end, c) for f in forces], axis=1)
            self._edges[face.index] = (at_start, at_end)

    def edges(self, face: int, s: float) -> np.ndarray:
        """Unnormalised edge twists (3, 2) for the friction-cone edges at fraction s of the face."""
        at_start, at_end = self._edges[face]
        return (1.0 - s) * at_start + s * at_end

    def edges_derivative(self, face: int) -> np.ndarray:
        """d edges(face, s) / ds (constant: the edges are linear in s)."""
        at_start, at_end = self._edges[face]
        return at_end - at_start

    def pusher_travel(self, face: int, s: float, twist: np.ndarray) -> float:
        """Distance the pusher centre (fixed in the body frame while sticking) covers along a push."""
        return float(np.linalg.norm(contact_jacobian(self.faces[face].pusher_centre(s)) @ twist))

    def from_gcs(self, face: int, coefficients: np.ndarray) -> tuple[float, np.ndarray]:
        """(s, k) equivalent to GCS coefficients of the unit-travel edge twists at the face's ends."""
        normalised = face_generators(self.faces[face], self.mu, self.c)
        raw = np.concatenate(self._edges[face], axis=1)
        scale = np.linalg.norm(normalised, axis=0) / np.linalg.norm(raw, axis=0)
        a = coefficients * scale
        total = a.sum()
        s = (a[2] + a[3]) / total if total > 0 else 0.5
        return float(s), np.array([a[0] + a[2], a[1] + a[3]])


def refine(
    path: ModePath,
    model: ContactModel,
    start: np.ndarray,
    goal: np.ndarray,
    min_push: float = 1e-4,
    same_point: float = 0.003,
) -> tuple[list[Contact], np.ndarray]:
    """Contacts that reach `goal` from `start` under exact kinematics, and the end pose they reach.

    First every GCS mode keeps its own contact point (and may change its push direction once);
    then consecutive pushes on one face whose points lie within `same_point` metres share one
    point, so the pusher stays in contact between them (kept only if the goal is still met;
    otherwise the pusher re-places itself on the face).
    """
    pushes = [(m.face, *model.from_gcs(m.face, m.coefficients)) for m in path.modes if m.coefficients.sum() >= min_push]
    if not pushes:
        return [], np.asarray(start, float)
    # Each push is split in two halves at the same point: under exact kinematics one constant twist
    # may not reach a pose that the linearised model reached, while two twists bend the path.
    separate = [(face, s, [k / 2.0, k / 2.0]) for face, s, k in pushes]
    contacts, end, ok = _solve(separate, model, start, goal)
    if not ok:
        return contacts, end
    merged: list[tuple[int, float, list[np.ndarray]]] = []
    for c in contacts:
        k_list = [_coefficients(model, c.face, c.s, t) for t in c.twists]
        if merged and merged[-1][0] == c.face and abs(merged[-1][1] - c.s) * model.faces[c.face].length < same_point:
            merged[-1][2].extend(k_list)
        else:
            merged.append((c.face, c.s, k_list))
    if len(merged) == len(contacts):
        return contacts, end
    merged_contacts, merged_end, merged_ok = _solve(merged, model, start, goal)
    return (merged_contacts, merged_end) if merged_ok else (contacts, end)


def _coefficients(model: ContactModel, face: int, s: float, twist: np.ndarray) -> np.ndarray:
    return np.linalg.lstsq(model.edges(face, s), twist, rcond=None)[0]


def _solve(groups, model: ContactModel, start, goal):
    """SLSQP over (s per contact, k per push) meeting the goal; stays near the initial values."""
    layout, x0, bounds, weights = [], [], [], []
    k_scale = np.mean([np.sum(k) for _, _, ks in groups for k in ks])
    for face, s, ks in groups:
        layout.append((face, len(ks)))
        x0.append(s)
        bounds.append((0.0, 1.0))
        weights.append(1.0 / 0.2)
        for k in ks:
            x0.extend(np.maximum(k, 0.0))
            bounds.extend([(0.0, None)] * 2)
            weights.extend([1.0 / k_scale] * 2)
    x0, weights = np.array(x0), np.array(weights)

    def unpack(x):
        contacts, i = [], 0
        for face, n in layout:
            edges = model.edges(face, x[i])
            twists = np.array([edges @ x[i + 1 + 2 * j : i + 3 + 2 * j] for j in range(n)])
            contacts.append(Contact(face=face, s=float(x[i]), twists=twists))
            i += 1 + 2 * n
        return contacts

    def end_pose(x):
        pose = np.asarray(start, float)
        for contact in unpack(x):
            for twist in contact.twists:
                pose = apply_body_twist(pose, twist)
        return pose

    def end_pose_jacobian(x):
        """d(end pose)/dx by forward-mode chain rule through the twists."""
        pose, jac, i = np.asarray(start, float), np.zeros((3, len(x))), 0
        for face, n in layout:
            edges, d_edges = model.edges(face, x[i]), model.edges_derivative(face)
            for j in range(n):
                k = x[i + 1 + 2 * j : i + 3 + 2 * j]
                d_pose, d_twist = _twist_step_jacobians(pose, edges @ k)
                jac = d_pose @ jac
                jac[:, i] += d_twist @ (d_edges @ k)
                jac[:, i + 1 + 2 * j : i + 3 + 2 * j] += d_twist @ edges
                pose = apply_body_twist(pose, edges @ k)
            i += 1 + 2 * n
        return jac

    residual_scale = np.array([100.0, 100.0, 10.0])  # per m, m, rad: cm and ~6 degrees weigh alike
    result = minimize(
        lambda x: float(np.sum(((x - x0) * weights) ** 2)),
        x0,
        jac=lambda x: 2.0 * (x - x0) * weights**2,
        method="SLSQP",
        bounds=bounds,
        constraints=[
            {
                "type": "eq",
                "fun": lambda x: (end_pose(x) - goal) * residual_scale,
                "jac": lambda x: end_pose_jacobian(x) * residual_scale[:, None],
            }
        ],
        options={"maxiter": 100, "ftol": 1e-9},
    )
    x = np.clip(result.x, [b[0] for b in bounds], [np.inf if b[1] is None else b[1] for b in bounds])
    end = end_pose(x)
    ok = bool(np.all(np.abs((end - goal) * residual_scale) < 1e-3))
    return unpack(x), end, ok


def _twist_step_jacobians(pose: np.ndarray, twist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Jacobians (3, 3) of apply_body_twist(pose, twist) with respect to the pose and the twist."""
    v, omega = twist[:2], twist[2]
    half = omega / 2.0
    sinc = np.sinc(half / np.pi)
    # d sinc(h) / dh = (h cos h - sin h) / h^2, with its Taylor series near 0.
    d_sinc = (half * np.cos(half) - np.sin(half)) / half**2 if abs(half) > 1e-4 else -half / 3.0
    rot = np.array([[np.cos(pose[2] + half), -np.sin(pose[2] + half)], [np.sin(pose[2] + half), np.cos(pose[2] + half)]])
    perp = np.array([[0.0, -1.0], [1.0, 0.0]])
    step = sinc * rot @ v
    d_pose = np.eye(3)
    d_pose[:2, 2] = perp @ step
    d_twist = np.zeros((3, 3))
    d_twist[:2, :2] = sinc * rot
    d_twist[:2, 2] = 0.5 * d_sinc * rot @ v + 0.5 * perp @ step
    d_twist[2, 2] = 1.0
    return d_pose, d_twist

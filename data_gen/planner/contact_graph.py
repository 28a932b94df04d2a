"""The graph of contact modes, solved as a shortest path in a graph of convex sets (GCS).

A mode is (face, orientation interval). Its vertex holds z = (x0, y0, theta0, a) where a >= 0 are the
coefficients of four motion-cone edge twists: the two friction-cone edges at each end of the face.
Their conic hull is exactly the union of the sticking motion cones over all contact points on the
face (the torque is linear in the contact point and both edges share one normal force, so any
nonnegative mix of the four is one force in the friction cone at one contact point). With the rotation frozen at the interval's
centre, the pose change D a is linear, so every vertex set is a polytope and every edge constraint
linear: the relaxation is an LP that Clarabel solves without MOSEK.

Edges: start -> modes of the start interval; a mode -> another face in the same interval (a
repositioning, costing the precomputed path length around the T); a mode -> the same face in the next
interval towards the goal (contact kept); modes of the goal interval -> goal. Costs are seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydrake.geometry.optimization import GraphOfConvexSets, GraphOfConvexSetsOptions, HPolyhedron, Point
from pydrake.solvers import Binding, Constraint, Cost, LinearCost, LinearEqualityConstraint

from data_gen.planner.config import PlannerConfig, PlanningError
from data_gen.planner.faces import Face
from data_gen.planner.quasi_static import motion_cone_edges
from data_gen.planner.repositioning import BodyFrameObstacle, path_length
from data_gen.planner.solvers import make_solver, solver_options

N_COEFFS = 4


@dataclass(frozen=True)
class Mode:
    """One pushing mode of a solved path: the face, its start pose and its twist coefficients."""

    face: int
    interval: int
    start_pose: np.ndarray
    coefficients: np.ndarray


@dataclass(frozen=True)
class ModePath:
    modes: list[Mode]
    cost: float


def face_generators(face: Face, mu: float, c: float) -> np.ndarray:
    """Body twists (3, 4) of the motion-cone edges at the face's start and end points."""
    inward = -face.outward_normal
    return np.concatenate([motion_cone_edges(face.start, inward, mu, c), motion_cone_edges(face.end, inward, mu, c)], axis=1)


def interval_of(theta: float, width: float) -> int:
    return int(np.round(theta / width))


class ContactGraph:
    """GCS over the modes whose intervals run from the start orientation to the goal's.

    The graph is acyclic, which keeps the relaxation small (no 2-cycle cuts) and tight: orientation
    intervals are visited in order towards the goal, and inside an interval each contact switch
    moves one layer down (`layers` modes at most per interval). In the linearised model pushes in
    one interval commute, so more layers would only reorder them.
    """

    def __init__(
        self,
        start_pose: np.ndarray,
        goal_pose: np.ndarray,
        pusher_start_body: np.ndarray,
        pusher_home_body: np.ndarray,
        faces: tuple[Face, ...],
        generators: list[np.ndarray],
        obstacle: BodyFrameObstacle,
        workspace: tuple[np.ndarray, np.ndarray],
        config: PlannerConfig,
    ):
        self.config = config
        self.faces = faces
        self.generators = generators
        self.width = np.radians(config.interval_deg)
        k_start, k_goal = interval_of(start_pose[2], self.width), interval_of(goal_pose[2], self.width)
        step = 1 if k_goal >= k_start else -1
        self.intervals = list(range(k_start, k_goal + step, step))
        self.gcs = GraphOfConvexSets()
        self.source = self.gcs.AddVertex(Point(np.asarray(start_pose, float)), "start")
        self.target = self.gcs.AddVertex(Point(np.asarray(goal_pose, float)), "goal")
        self.layers = {k: config.goal_layers if k == k_goal else config.layers for k in self.intervals}
        self.mode_vertices = {}
        self.displacements = {}
        for k in self.intervals:
            for face in faces:
                d = self._displacement(face.index, k)
                self.displacements[(face.index, k)] = d
                mode_set = self._mode_set(d, k, workspace)
                for layer in range(self.layers[k]):
                    v = self.gcs.AddVertex(mode_set, f"f{face.index}_k{k}_l{layer}")
                    v.AddCost(Binding[Cost](LinearCost(np.ones(N_COEFFS) / config.push_speed, 0.0), v.x()[3:]))
                    self.mode_vertices[(face.index, k, layer)] = v

        # Precomputed repositioning times between face midpoints (and from the start / to home).
        gap = config.standoff
        mids = [obstacle.escape(f.pusher_centre(0.5, gap)) for f in faces]
        repo = lambda a, b: path_length(obstacle.shortest_path(a, b)) / config.reposition_speed  # noqa: E731
        start_body = obstacle.escape(pusher_start_body)
        home_body = obstacle.escape(pusher_home_body)
        for face in faces:
            v = self.mode_vertices[(face.index, k_start, 0)]
            e = self.gcs.AddEdge(self.source, v)
            e.AddConstraint(_equality(np.hstack([np.eye(3), -np.eye(3), np.zeros((3, N_COEFFS))]), e.xu(), e.xv()))
            e.AddCost(_constant_cost(repo(start_body, mids[face.index]), e.xv()))
            d = self.displacements[(face.index, k_goal)]
            home_cost = repo(mids[face.index], home_body)
            for layer in range(self.layers[k_goal]):
                e = self.gcs.AddEdge(self.mode_vertices[(face.index, k_goal, layer)], self.target)
                e.AddConstraint(_equality(np.hstack([np.eye(3), d, -np.eye(3)]), e.xu(), e.xv()))
                e.AddCost(_constant_cost(home_cost, e.xu()))
        for (f, k, layer), u in self.mode_vertices.items():
            d = self.displacements[(f, k)]
            continuity = np.hstack([np.eye(3), d, -np.eye(3), np.zeros((3, N_COEFFS))])
            if layer + 1 < self.layers[k]:
                for g in range(len(faces)):
                    if g != f:
                        cost = repo(mids[f], mids[g]) + config.switch_cost
                        self._add_transition(u, self.mode_vertices[(g, k, layer + 1)], continuity, cost)
            if k != k_goal:
                self._add_transition(u, self.mode_vertices[(f, k + step, 0)], continuity, 0.0)

    def _add_transition(self, u, v, continuity: np.ndarray, cost: float) -> None:
        e = self.gcs.AddEdge(u, v)
        e.AddConstraint(_equality(continuity, e.xu(), e.xv()))
        if cost > 0:
            e.AddCost(_constant_cost(cost, e.xu()))

    def _displacement(self, face: int, k: int) -> np.ndarray:
        """World pose change per unit coefficient, rotation frozen at the interval's centre (3, 4)."""
        theta = k * self.width
        c, s = np.cos(theta), np.sin(theta)
        rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        return rot @ self.generators[face]

    def _mode_set(self, d: np.ndarray, k: int, workspace: tuple[np.ndarray, np.ndarray]) -> HPolyhedron:
        lo_theta, hi_theta = (k - 0.5) * self.width, (k + 0.5) * self.width
        lo_xy, hi_xy = workspace
        rows, bounds = [], []

        def bound(row: np.ndarray, lo: float, hi: float) -> None:
            rows.extend([row, -row])
            bounds.extend([hi, -lo])

        # The end position is the next vertex's start (or the goal), bounded there; its orientation
        # is bounded here because the rotation is linearised about this interval's centre.
        pose = np.hstack([np.eye(3), np.zeros((3, N_COEFFS))])
        end = np.hstack([np.eye(3), d])
        bound(pose[2], lo_theta, hi_theta)
        bound(end[2], lo_theta, hi_theta)
        for i in range(2):
            bound(pose[i], lo_xy[i], hi_xy[i])
        for i in range(N_COEFFS):
            row = np.zeros(3 + N_COEFFS)
            row[3 + i] = -1.0
            rows.append(row)
            bounds.append(0.0)
        rows.append(np.hstack([np.zeros(3), np.ones(N_COEFFS)]))
        bounds.append(self.config.max_push_per_mode)
        return HPolyhedron(np.array(rows), np.array(bounds))

    def solve(self) -> list[ModePath]:
        """Convex relaxation, then random rounding into paths; returns feasible paths, cheapest first."""
        options = GraphOfConvexSetsOptions()
        options.convex_relaxation = True
        options.preprocessing = False
        options.max_rounded_paths = 0
        options.solver = make_solver(self.config.solver)
        options.solver_options = solver_options(options.solver, self.config.solver_tolerance)
        relaxation = self.gcs.SolveShortestPath(self.source, self.target, options)
        if not relaxation.is_success():
            raise PlanningError(f"GCS relaxation failed ({relaxation.get_solution_result()}); is the goal reachable?")
        options.max_rounded_paths = self.config.max_rounded_paths
        options.rounding_seed = self.config.rounding_seed
        flows = {e: relaxation.GetSolution(e.phi()) for e in self.gcs.Edges()}
        paths = self._round(flows, options)
        if not paths:
            # The relaxation can be loose: its flow mixes paths none of which is feasible alone. Explore
            # around it by giving every edge a little flow, which reaches paths the flow never touched.
            explore = self.config.exploration_flow
            paths = self._round({e: phi + explore for e, phi in flows.items()}, options, self.config.exploration_paths)
        if not paths:
            raise PlanningError("no rounded GCS path was feasible (the relaxation mixes infeasible paths)")
        return sorted(paths, key=lambda p: p.cost)

    def _round(self, flows, options, max_paths: int | None = None) -> list[ModePath]:
        if max_paths is not None:
            options.max_rounded_paths = max_paths
            options.max_rounding_trials = 10 * max_paths
        paths = []
        for edges in self.gcs.SamplePaths(self.source, self.target, flows, options):
            result = self.gcs.SolveConvexRestriction(edges, options)
            if result.is_success():
                paths.append(self._read_path(edges, result))
        return paths

    def _read_path(self, edges, result) -> ModePath:
        modes = []
        for e in edges[:-1]:
            v = e.v()
            z = result.GetSolution(v.x())
            f, k, _ = (int(t[1:]) for t in v.name().split("_"))
            modes.append(Mode(face=f, interval=k, start_pose=z[:3], coefficients=np.maximum(z[3:], 0.0)))
        return ModePath(modes=modes, cost=float(result.get_optimal_cost()))


def _equality(a: np.ndarray, xu, xv) -> Binding[Constraint]:
    return Binding[Constraint](LinearEqualityConstraint(a, np.zeros(a.shape[0])), np.concatenate([xu, xv]))


def _constant_cost(value: float, x) -> Binding[Cost]:
    return Binding[Cost](LinearCost(np.zeros(len(x)), value), x)

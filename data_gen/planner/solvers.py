"""The convex solver behind the GCS: open solvers by default, MOSEK only when licensed."""

from __future__ import annotations

from pydrake.solvers import ClarabelSolver, MosekSolver, ScsSolver, SolverOptions

from data_gen.planner.config import PlanningError


def make_solver(name: str):
    """A Drake solver instance for 'clarabel', 'scs', 'mosek' or 'auto' (MOSEK if licensed, else Clarabel)."""
    if name == "auto":
        mosek = MosekSolver()
        return mosek if mosek.available() and mosek.enabled() else ClarabelSolver()
    solver = {"clarabel": ClarabelSolver, "scs": ScsSolver, "mosek": MosekSolver}[name]()
    if not (solver.available() and solver.enabled()):
        raise PlanningError(f"solver {name!r} is not available (MOSEK needs a license); use 'clarabel'")
    return solver


def solver_options(solver, tolerance: float) -> SolverOptions:
    """Single-threaded options with the given feasibility/optimality tolerance."""
    options = SolverOptions()
    sid = solver.solver_id()
    if sid == ClarabelSolver.id():
        for name in ("tol_gap_abs", "tol_gap_rel", "tol_feas"):
            options.SetOption(sid, name, tolerance)
    elif sid == ScsSolver.id():
        options.SetOption(sid, "eps_abs", tolerance)
        options.SetOption(sid, "eps_rel", tolerance)
    elif sid == MosekSolver.id():
        options.SetOption(sid, "MSK_IPAR_NUM_THREADS", 1)
    return options

"""Quality of the GCS contact planner on the task's initial conditions.

Prints: the share of start poses that get a plan, the goal error of the quasi-static replay of each
plan (the planner's model, driven only by the plan's pusher path), the pusher's clearance from the T
along the densely resampled plan, and planning times (median, p90).

    taskset -c 0 .venv/bin/python -m benchmarks.planner_quality --n 200
"""

from __future__ import annotations

import argparse
import math
import os
import time

# One core: keep numpy's BLAS single-threaded (Clarabel already is).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import logging  # noqa: E402

import numpy as np  # noqa: E402

from data_gen.planner import PlannerConfig, PlanningError, plan_push  # noqa: E402
from data_gen.planner.verification import pusher_clearance, replay_quasi_static  # noqa: E402
from pushing_sim import geometry  # noqa: E402
from pushing_sim.task import TaskConfig, is_success, pose_errors, sample_initial_pose  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200, help="start poses: sample_initial_pose with rng [seed, i]")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", type=str, default=None, help="PlannerConfig as JSON")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    logging.getLogger("drake").setLevel(logging.WARNING)  # GCS rounding logs a line per solve
    task = TaskConfig()
    config = PlannerConfig.model_validate_json(args.config) if args.config else PlannerConfig()

    solve_times, failures, off_goal, penetrating, errors, durations = [], [], 0, 0, [], []
    wall = time.perf_counter()
    for i in range(args.n):
        start = sample_initial_pose(task, np.random.default_rng([args.seed, i]))
        try:
            plan = plan_push(start, task, config)
        except PlanningError as error:
            failures.append((i, str(error)))
            if args.verbose:
                print(f"{i:4d} FAIL {error}")
            continue
        solve_times.append(plan.solve_time)
        durations.append(plan.duration)
        replayed = replay_quasi_static(plan.pusher_xy, start)[-1]
        position_error, angle_error = pose_errors(task, replayed)
        errors.append((position_error, angle_error))
        off_goal += not is_success(task, replayed)
        clearance = pusher_clearance(plan).min() - geometry.PUSHER_RADIUS
        penetrating += clearance < -1e-4
        if args.verbose:
            print(
                f"{i:4d} solve {plan.solve_time:5.2f} s  plan {plan.duration:5.1f} s  replay error "
                f"{position_error * 1e3:5.2f} mm {math.degrees(angle_error):5.2f} deg  clearance {clearance * 1e3:+.4f} mm"
            )
    n_ok = len(solve_times)
    errors = np.array(errors).reshape(-1, 2)
    print(f"start poses: {args.n}   planned: {n_ok} ({100 * n_ok / max(args.n, 1):.1f}%)   failures: {len(failures)}")
    if n_ok:
        print(f"replayed end within task tolerance: {n_ok - off_goal}/{n_ok}")
        print(
            f"replay goal error: position max {errors[:, 0].max() * 1e3:.2f} mm (median {np.median(errors[:, 0]) * 1e3:.2f}),"
            f" angle max {np.degrees(errors[:, 1].max()):.3f} deg (median {np.degrees(np.median(errors[:, 1])):.3f})"
        )
        print(f"plans with pusher penetrating the T (> 0.1 mm): {penetrating}/{n_ok}")
        print(
            f"planning time: median {np.median(solve_times):.2f} s, p90 {np.percentile(solve_times, 90):.2f} s,"
            f" max {max(solve_times):.2f} s   plan duration: median {np.median(durations):.1f} s"
        )
    for i, reason in failures:
        print(f"failed start {i}: {reason}")
    print(f"total wall time {time.perf_counter() - wall:.1f} s")


if __name__ == "__main__":
    main()

"""Aggregate statistics of evaluation trials: success rate with its Wilson interval, mean errors."""

from __future__ import annotations

import math

import numpy as np


def wilson_interval(successes: int, trials: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (95% by default)."""
    if trials <= 0:
        raise ValueError("trials must be positive")
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must be in [0, {trials}], got {successes}")
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    return max(0.0, centre - half), min(1.0, centre + half)


def aggregate(trials: list[dict]) -> dict:
    """Success rate, its 95% Wilson interval and mean final errors over per-trial results."""
    n = len(trials)
    successes = sum(bool(t["success"]) for t in trials)
    lo, hi = wilson_interval(successes, n)
    times = [t["time_to_success"] for t in trials if t["time_to_success"] is not None]
    return {
        "trials": n,
        "successes": successes,
        "success_rate": successes / n,
        "ci95": [lo, hi],
        "mean_final_position_error": float(np.mean([t["final_position_error"] for t in trials])),
        "mean_final_angle_error_deg": float(np.mean([t["final_angle_error_deg"] for t in trials])),
        "mean_max_coverage": float(np.mean([t["max_coverage"] for t in trials])),
        "mean_time_to_success": float(np.mean(times)) if times else None,
    }

"""Aggregate statistics of evaluation trials: success rate with its Wilson interval, mean errors."""

from __future__ import annotations

import numpy as np
from scipy import stats


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (95% by default), by scipy."""
    if trials <= 0:
        raise ValueError("trials must be positive")
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must be in [0, {trials}], got {successes}")
    interval = stats.binomtest(int(successes), int(trials)).proportion_ci(confidence_level=confidence, method="wilson")
    return max(0.0, float(interval.low)), min(1.0, float(interval.high))


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

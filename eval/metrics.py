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


def _mean_of(trials: list[dict], key: str) -> float | None:
    """The mean of a per-trial field, or None when some trial lacks it (recorded by older code)."""
    values = [t.get(key) for t in trials]
    return None if any(v is None for v in values) else float(np.mean(values))


def aggregate(trials: list[dict]) -> dict:
    """Success rate, its 95% Wilson interval and mean final errors over per-trial results; also the
    aggregate names LeRobot's evaluation (pc_success, avg_sum_reward, avg_max_reward, n_episodes) and
    Diffusion Policy's (test/mean_score: the mean of each trial's max coverage) write."""
    n = len(trials)
    successes = sum(bool(t["success"]) for t in trials)
    lo, hi = wilson_interval(successes, n)
    times = [t["time_to_success"] for t in trials if t["time_to_success"] is not None]
    mean_max_coverage = float(np.mean([t["max_coverage"] for t in trials]))
    return {
        "trials": n,
        "successes": successes,
        "success_rate": successes / n,
        "ci95": [lo, hi],
        "mean_final_position_error": float(np.mean([t["final_position_error"] for t in trials])),
        "mean_final_angle_error_deg": float(np.mean([t["final_angle_error_deg"] for t in trials])),
        "mean_max_coverage": mean_max_coverage,
        "mean_time_to_success": float(np.mean(times)) if times else None,
        "pc_success": 100.0 * successes / n,
        "avg_sum_reward": _mean_of(trials, "sum_reward"),
        "avg_max_reward": _mean_of(trials, "max_reward"),
        "n_episodes": n,
        "test/mean_score": mean_max_coverage,
    }

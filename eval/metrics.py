"""Statistics of evaluation trials: success rate with its Wilson interval, mean errors, and two arms
compared trial by trial on the same starts (paired bootstrap interval, exact McNemar p)."""

from __future__ import annotations

from typing import Any

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


BOOTSTRAP_RESAMPLES = 10_000


def paired_comparison(arm: np.ndarray, reference: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """arm minus reference on the same trials (boolean success arrays of equal length).

    difference: success-rate difference; ci95: paired bootstrap percentile interval; mcnemar_p: the
    exact two-sided McNemar p-value (binomial test on the discordant pairs).
    """
    arm, reference = np.asarray(arm, bool), np.asarray(reference, bool)
    if arm.shape != reference.shape or arm.ndim != 1 or len(arm) == 0:
        raise ValueError(f"paired comparison needs two equal, non-empty trial lists, got {arm.shape} and {reference.shape}")
    only_arm, only_reference = int(np.sum(arm & ~reference)), int(np.sum(~arm & reference))
    discordant = only_arm + only_reference
    p_value = float(stats.binomtest(only_arm, discordant, 0.5).pvalue) if discordant else 1.0
    difference = float(arm.mean() - reference.mean())
    if discordant:
        interval = stats.bootstrap(
            (arm.astype(float), reference.astype(float)), lambda a, b, axis=-1: a.mean(axis=axis) - b.mean(axis=axis),
            paired=True, vectorized=True, n_resamples=BOOTSTRAP_RESAMPLES, confidence_level=0.95,
            method="percentile", rng=np.random.default_rng(seed),
        ).confidence_interval  # fmt: skip
        ci = [float(interval.low), float(interval.high)]
    else:
        ci = [difference, difference]  # every trial agrees: no resampling can differ
    return {"difference": difference, "ci95": ci, "mcnemar_p": p_value, "only_arm": only_arm, "only_reference": only_reference}

import numpy as np
import pytest

from eval.metrics import aggregate, wilson_interval


def _wilson_by_quadratic(k, n, z=1.959963984540054):
    """Independent route: the interval's ends solve (p_hat - p)^2 = z^2 p (1 - p) / n."""
    p_hat = k / n
    return tuple(np.sort(np.roots([1 + z * z / n, -(2 * p_hat + z * z / n), p_hat * p_hat]).real))


@pytest.mark.parametrize("k, n", [(162, 200), (187, 200), (113, 200), (5, 10), (1, 3)])
def test_wilson_interval_matches_the_quadratic_roots(k, n):
    assert wilson_interval(k, n) == pytest.approx(_wilson_by_quadratic(k, n), abs=1e-9)


def test_wilson_interval_edges():
    # All failures: the upper end is z^2 / (n + z^2); all successes mirror it.
    assert wilson_interval(0, 10) == pytest.approx((0.0, 3.8414588 / 13.8414588), abs=1e-6)
    assert wilson_interval(10, 10) == pytest.approx((10 / 13.8414588, 1.0), abs=1e-6)
    assert wilson_interval(162, 200) == pytest.approx((0.7500, 0.8583), abs=1e-4)


def test_wilson_interval_rejects_impossible_counts():
    with pytest.raises(ValueError):
        wilson_interval(3, 2)
    with pytest.raises(ValueError):
        wilson_interval(0, 0)


def test_aggregate():
    trials = [
        {"success": True, "time_to_success": 10.0, "final_position_error": 0.01, "final_angle_error_deg": 1.0, "max_coverage": 0.9},
        {"success": False, "time_to_success": None, "final_position_error": 0.05, "final_angle_error_deg": 9.0, "max_coverage": 0.5},
    ]
    summary = aggregate(trials)
    assert summary["success_rate"] == 0.5 and summary["successes"] == 1
    assert summary["ci95"] == pytest.approx(list(wilson_interval(1, 2)))
    assert summary["mean_final_position_error"] == pytest.approx(0.03)
    assert summary["mean_time_to_success"] == 10.0


def test_aggregate_also_speaks_lerobot_and_diffusion_policy():
    trials = [
        {"success": True, "time_to_success": 3.0, "final_position_error": 0.01, "final_angle_error_deg": 1.0,
         "max_coverage": 0.95, "sum_reward": 20.0, "max_reward": 0.95},
        {"success": False, "time_to_success": None, "final_position_error": 0.05, "final_angle_error_deg": 9.0,
         "max_coverage": 0.45, "sum_reward": 30.0, "max_reward": 0.4},
    ]
    summary = aggregate(trials)
    assert summary["pc_success"] == 50.0 and summary["n_episodes"] == 2
    assert summary["avg_sum_reward"] == pytest.approx(25.0) and summary["avg_max_reward"] == pytest.approx(0.675)
    assert summary["test/mean_score"] == pytest.approx(0.7) == summary["mean_max_coverage"]
    older = [{k: v for k, v in t.items() if k not in ("sum_reward", "max_reward")} for t in trials]
    assert aggregate(older)["avg_sum_reward"] is None  # trials recorded before the field existed: unknown

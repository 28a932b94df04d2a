"""Ambient targets against the closed-form Gaussian denoiser, and the admission sampler's statistics."""

import math
import time

import numpy as np
import pytest
import torch

from policies.ambient import (
    AdmissionSampler,
    ambient_eps_target,
    ambient_noisy_input,
    ambient_training_pair,
    ambient_x0_target,
    buffer_factor,
    linear_alpha_schedule,
)
from policies.noise import NoiseSchedule, add_noise, x0_to_eps

SIGMAS = NoiseSchedule.squaredcos_cap_v2(100).sigmas.double().numpy()


def randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# --- targets ----------------------------------------------------------------------------------


def test_targets_reduce_to_plain_denoising_at_zero_sigma_min():
    y, z = randn(2, 8, 16, 2, seed=0)
    sigma_t = torch.linspace(0.03, 0.99, 8, dtype=torch.float64)
    x_t = ambient_noisy_input(y, z, sigma_t, 0.0)
    torch.testing.assert_close(x_t, add_noise(y, z, sigma_t))
    torch.testing.assert_close(ambient_x0_target(x_t, y, sigma_t, torch.zeros(8)), y)
    torch.testing.assert_close(ambient_eps_target(x_t, y, sigma_t, torch.zeros(8)), z)
    torch.testing.assert_close(ambient_training_pair(y, z, sigma_t, 0.0)[1], z)


def test_targets_broadcast_per_batch_element():
    y, z = randn(2, 4, 16, 2, seed=1)
    sigma_t = torch.tensor([0.5, 0.7, 0.9, 0.99], dtype=torch.float64)
    sigma_min = torch.tensor([0.0, 0.3, 0.5, 0.8], dtype=torch.float64)
    x_t = ambient_noisy_input(y, z, sigma_t, sigma_min)
    h = ambient_x0_target(x_t, y, sigma_t, sigma_min)
    e = ambient_eps_target(x_t, y, sigma_t, sigma_min)
    for i in range(4):
        st, sm = sigma_t[i].item(), sigma_min[i].item()
        torch.testing.assert_close(x_t[i], ambient_noisy_input(y[i], z[i], st, sm))
        torch.testing.assert_close(h[i], ambient_x0_target(x_t[i], y[i], st, sm))
    # The eps form is the x0 form converted with eps = (x_t - sqrt(1 - s_t^2) h) / s_t.
    torch.testing.assert_close(e, x0_to_eps(x_t, h, sigma_t))


def test_noisy_input_has_the_clean_marginal_at_sigma_t():
    """y = x_{s_m} noised on by ambient_noisy_input is distributed as sqrt(1 - s_t^2) x0 + s_t eps."""
    n, sm, st = 200_000, 0.4, 0.7
    x0, eps, z = randn(3, n, seed=2)
    y = math.sqrt(1 - sm**2) * x0 + sm * eps
    noise = ambient_noisy_input(y, z, st, sm) - math.sqrt(1 - st**2) * x0
    assert noise.std().item() == pytest.approx(st, rel=0.01)
    assert torch.corrcoef(torch.stack([noise, x0]))[0, 1].abs().item() < 0.01


def test_buffer_caps_the_ambient_factor_at_s_max_factor():
    assert buffer_factor(4.0) == pytest.approx(math.sqrt(4 / 3))
    for k in [2.0, 4.0, 10.0]:
        b, sm = buffer_factor(k), 0.3
        st = b * sm
        assert st**2 / (st**2 - sm**2) == pytest.approx(k)
    with pytest.raises(ValueError):
        buffer_factor(1.0)


MU = torch.tensor([0.4, -0.3, 0.1, 0.0], dtype=torch.float64)
VAR = torch.tensor([0.04, 0.09, 0.01, 0.25], dtype=torch.float64)
SIGMA_MIN = 0.4


def optimal_affine_denoiser(sigma_t, prediction_type):
    """(A, c) of E[x0 | x_t] (or E[eps | x_t]) = A x_t + c for x0 ~ N(MU, diag(VAR)), VP noise."""
    b = math.sqrt(1 - sigma_t**2)
    gain = VAR * b / (b**2 * VAR + sigma_t**2)
    a_x0, c_x0 = torch.diag(gain), MU - gain * b * MU
    if prediction_type == "sample":
        return a_x0, c_x0
    return torch.diag((1 - b * gain) / sigma_t), -b * c_x0 / sigma_t


def least_squares_affine(x_t, target):
    """The affine minimiser of E||A x_t + c - target||^2: exactly E[target | x_t] for Gaussians."""
    design = torch.cat([x_t, torch.ones(len(x_t), 1, dtype=x_t.dtype)], dim=1)
    w = torch.linalg.lstsq(design, target).solution
    return w[:-1].T, w[-1]


def corrupt_gaussian_data(n, seed):
    """Clean x0 is never seen: only y = x_{SIGMA_MIN}, plus fresh noise z."""
    x0, eps, z = randn(3, n, 4, seed=seed)
    x0 = MU + VAR.sqrt() * x0
    return math.sqrt(1 - SIGMA_MIN**2) * x0 + SIGMA_MIN * eps, z


SIGMAS_ABOVE_BUFFER = [1.01 * buffer_factor() * SIGMA_MIN, 0.6, float(SIGMAS[60]), 0.9]


@pytest.mark.parametrize("prediction_type", ["sample", "epsilon"])
@pytest.mark.parametrize("sigma_t", SIGMAS_ABOVE_BUFFER)
def test_ambient_loss_on_corrupt_data_recovers_the_clean_optimal_denoiser(sigma_t, prediction_type):
    y, z = corrupt_gaussian_data(200_000, seed=3)
    x_t, target = ambient_training_pair(y, z, sigma_t, SIGMA_MIN, prediction_type)
    a, c = least_squares_affine(x_t, target)
    a_opt, c_opt = optimal_affine_denoiser(sigma_t, prediction_type)
    torch.testing.assert_close(a, a_opt, atol=0.03, rtol=0)
    torch.testing.assert_close(c, c_opt, atol=0.03, rtol=0)


@pytest.mark.parametrize("prediction_type", ["sample", "epsilon"])
@pytest.mark.parametrize("sigma_t", SIGMAS_ABOVE_BUFFER[:2])
def test_plain_loss_on_corrupt_data_does_not_recover_it(sigma_t, prediction_type):
    y, z = corrupt_gaussian_data(200_000, seed=3)
    x_t, target = ambient_training_pair(y, z, sigma_t, 0.0, prediction_type)  # y treated as clean
    a, c = least_squares_affine(x_t, target)
    a_opt, c_opt = optimal_affine_denoiser(sigma_t, prediction_type)
    assert max((a - a_opt).abs().max().item(), (c - c_opt).abs().max().item()) > 0.2


# --- admission sampler ------------------------------------------------------------------------


def draw(sampler, batches=400, batch_size=256, seed=0):
    rng = np.random.default_rng(seed)
    parts = [sampler.sample(batch_size, rng) for _ in range(batches)]
    return {k: np.concatenate([getattr(p, k) for p in parts]) for k in vars(parts[0])}


def binomial_tolerance(p, n, z=5.0):
    return z * math.sqrt(p * (1 - p) / n) + 1e-12


@pytest.fixture(scope="module")
def per_sample_sigma_min():
    sigma_min = np.random.default_rng(7).uniform(0.0, 1.0, 2000)
    sigma_min[::5] = np.nan  # falls back to the dataset-level value
    return sigma_min


def test_corrupt_samples_drawn_only_above_their_buffered_sigma_min(per_sample_sigma_min):
    sampler = AdmissionSampler(SIGMAS, 100, 2000, alpha=0.3, corrupt_sigma_min=per_sample_sigma_min, sigma_min=0.25)
    d = draw(sampler)
    resolved = np.where(np.isnan(per_sample_sigma_min), 0.25, per_sample_sigma_min)
    corrupt = ~d["is_clean"]
    sm = resolved[d["pool_index"][corrupt]]
    assert np.all(d["sigma"][corrupt] > buffer_factor() * sm)
    np.testing.assert_array_equal(d["ambient_sigma_min"][corrupt], sm)
    np.testing.assert_array_equal(d["ambient_sigma_min"][~corrupt], 0.0)
    np.testing.assert_array_equal(d["index"], np.where(corrupt, 100 + d["pool_index"], d["pool_index"]))
    assert np.all(d["pool_index"][~corrupt] < 100)
    # The fallback value is used: NaN samples (sigma_min 0.25) appear, and only above 0.25 b.
    drawn_fallback = np.isnan(per_sample_sigma_min[d["pool_index"][corrupt]])
    assert drawn_fallback.any() and np.all(d["sigma"][corrupt][drawn_fallback] > 0.25 * buffer_factor())
    # Every admissible corrupt sample is reachable: the draw is uniform over the admissible prefix.
    assert np.all(sampler.num_admissible_corrupt == (buffer_factor() * resolved[None, :] < SIGMAS[:, None]).sum(1))


def test_clean_fraction_is_alpha_where_corrupt_is_admissible_else_one():
    sigma_min = np.full(500, 0.5)
    sampler = AdmissionSampler(SIGMAS, 100, 500, alpha=0.3, corrupt_sigma_min=sigma_min)
    d = draw(sampler)
    open_ = d["sigma"] > 0.5 * buffer_factor()
    assert 0.2 < open_.mean() < 0.8
    frac = d["is_clean"][open_].mean()
    assert abs(frac - 0.3) < binomial_tolerance(0.3, open_.sum())
    assert d["is_clean"][~open_].all()
    counts = np.bincount(d["t"], minlength=100)
    assert abs(counts - counts.mean()).max() < 5 * math.sqrt(counts.mean())  # t uniform in [0, T)


def test_low_noise_branch_admits_below_sigma_max():
    # sigma_min 0.9 puts the high-noise branch out of reach (0.9 b > 1); only locality admits.
    sampler = AdmissionSampler(SIGMAS, 100, 500, alpha=0.5, sigma_min=0.9, sigma_max=0.3)
    d = draw(sampler)
    corrupt = ~d["is_clean"]
    assert corrupt.any() and np.all(d["sigma"][corrupt] < 0.3)
    np.testing.assert_array_equal(d["ambient_sigma_min"], 0.0)  # locality uses the plain target
    low = d["sigma"] < 0.3
    assert abs(d["is_clean"][low].mean() - 0.5) < binomial_tolerance(0.5, low.sum())
    no_locality = draw(AdmissionSampler(SIGMAS, 100, 500, alpha=0.5, sigma_min=0.9))
    assert no_locality["is_clean"].all()


def test_cotrain_mode_draws_corrupt_at_every_sigma(per_sample_sigma_min):
    sampler = AdmissionSampler(SIGMAS, 100, 2000, alpha=0.3, mode="cotrain", corrupt_sigma_min=per_sample_sigma_min)
    d = draw(sampler)
    corrupt = ~d["is_clean"]
    assert set(d["t"][corrupt].tolist()) == set(range(100))
    assert abs(corrupt.mean() - 0.7) < binomial_tolerance(0.7, len(corrupt))
    np.testing.assert_array_equal(d["ambient_sigma_min"], 0.0)
    low = d["t"] < 10
    assert abs(corrupt[low].mean() - 0.7) < binomial_tolerance(0.7, low.sum())


def test_clean_mode_never_draws_corrupt():
    d = draw(AdmissionSampler(SIGMAS, 100, 2000, alpha=0.3, mode="clean"), batches=50)
    assert d["is_clean"].all() and np.all(d["index"] < 100)


def test_alpha_schedule_sets_the_clean_weight_per_sigma():
    alpha = linear_alpha_schedule(alpha_low_noise=0.9, alpha_high_noise=0.1)
    sampler = AdmissionSampler(SIGMAS, 100, 500, alpha=alpha, sigma_min=0.1)
    d = draw(sampler)
    open_ = d["sigma"] > 0.1 * buffer_factor()
    for lo, hi in [(0.1, 0.4), (0.4, 0.8), (0.8, 1.01)]:
        in_bin = open_ & (d["sigma"] >= lo) & (d["sigma"] < hi)
        expected = alpha(d["sigma"][in_bin]).mean()
        assert abs(d["is_clean"][in_bin].mean() - expected) < binomial_tolerance(expected, in_bin.sum())
    # A (T,) array of per-step weights is the same schedule.
    same = draw(AdmissionSampler(SIGMAS, 100, 500, alpha=alpha(SIGMAS), sigma_min=0.1))
    np.testing.assert_array_equal(same["is_clean"], d["is_clean"])


def test_sampler_is_reproducible_and_validates_inputs():
    sampler = AdmissionSampler(SIGMAS, 10, 20, alpha=0.5, sigma_min=0.2)
    a, b = draw(sampler, 3, seed=11), draw(sampler, 3, seed=11)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    with pytest.raises(ValueError):
        AdmissionSampler(SIGMAS, 10, 20, alpha=0.5)  # ambient without any sigma_min
    with pytest.raises(ValueError):
        AdmissionSampler(SIGMAS, 10, 2, corrupt_sigma_min=np.array([0.1, np.nan]))
    with pytest.raises(ValueError):
        AdmissionSampler(SIGMAS, 10, 20, alpha=1.5, sigma_min=0.2)


def test_sampler_is_fast_for_a_million_samples():
    sigma_min = np.random.default_rng(0).uniform(0, 1, 1_000_000)
    start = time.perf_counter()
    sampler = AdmissionSampler(SIGMAS, 50_000, 1_000_000, alpha=0.3, corrupt_sigma_min=sigma_min)
    built = time.perf_counter() - start
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(200):
        sampler.sample(256, rng)
    per_batch = (time.perf_counter() - start) / 200
    assert built < 2.0 and per_batch < 2e-3, (built, per_batch)


def test_corrupt_draw_is_uniform_over_the_admissible_samples():
    sigma_min = np.array([0.5, 0.1, 0.9, 0.5, 0.1, 0.5])  # 0.9 b > 1: never admissible
    d = draw(AdmissionSampler(SIGMAS, 10, 6, alpha=0.2, corrupt_sigma_min=sigma_min))
    corrupt = ~d["is_clean"]
    b = buffer_factor()
    for lo, admissible in [(0.1 * b, [1, 4]), (0.5 * b, [0, 1, 3, 4, 5])]:
        in_band = corrupt & (d["sigma"] > lo) & (d["sigma"] <= (0.5 * b if lo < 0.5 * b else 1.0))
        counts = np.bincount(d["pool_index"][in_band], minlength=6)
        assert set(np.flatnonzero(counts)) == set(admissible)
        p = 1 / len(admissible)
        assert np.all(abs(counts[admissible] / in_band.sum() - p) < binomial_tolerance(p, in_band.sum()))


def test_sigma_exactly_at_the_buffered_threshold_is_not_admissible():
    b, t = buffer_factor(), 40
    sigma_min = SIGMAS[t] / b
    while b * sigma_min != SIGMAS[t]:  # make b * s_m land exactly on sigma_40 in float64
        sigma_min = np.nextafter(sigma_min, np.inf if b * sigma_min < SIGMAS[t] else -np.inf)
    sampler = AdmissionSampler(SIGMAS, 10, 1, alpha=0.0, corrupt_sigma_min=np.array([sigma_min]))
    assert sampler.num_admissible_corrupt[t] == 0 and sampler.num_admissible_corrupt[t + 1] == 1
    d = draw(sampler, batches=40)
    assert d["is_clean"][d["t"] <= t].all() and not d["is_clean"][d["t"] > t].any()

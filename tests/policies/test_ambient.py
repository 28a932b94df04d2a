"""Ambient targets against the closed-form Gaussian denoiser, and the admission sampler's statistics."""

import math

import numpy as np
import pytest
import torch

from policies.ambient import (
    ADMISSION_ORDERS,
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
    torch.testing.assert_close(ambient_training_pair(y, 5 * z, z, sigma_t, 0.0)[1], z)  # no contraction at s_m = 0


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


def gaussian_chunks(n, seed):
    """x0 ~ N(MU, diag(VAR)) with the two independent noises the training pair takes."""
    x0, z1, z = randn(3, n, 4, seed=seed)
    return MU + VAR.sqrt() * x0, z1, z


SIGMAS_ABOVE_BUFFER = [1.01 * buffer_factor() * SIGMA_MIN, 0.6, float(SIGMAS[60]), 0.9]


@pytest.mark.parametrize("prediction_type", ["sample", "epsilon"])
@pytest.mark.parametrize("sigma_t", SIGMAS_ABOVE_BUFFER)
def test_ambient_loss_on_uncorrupted_data_learns_the_plain_denoiser(sigma_t, prediction_type):
    """Corrupt data drawn from the clean distribution: the ambient least-squares denoiser is the plain one."""
    x0, z1, z = gaussian_chunks(200_000, seed=3)
    x_t, target = ambient_training_pair(x0, z1, z, sigma_t, SIGMA_MIN, prediction_type)
    a, c = least_squares_affine(x_t, target)
    plain_x_t, plain_target = ambient_training_pair(x0, z1, z, sigma_t, 0.0, prediction_type)
    a_plain, c_plain = least_squares_affine(plain_x_t, plain_target)
    a_opt, c_opt = optimal_affine_denoiser(sigma_t, prediction_type)
    torch.testing.assert_close(a, a_plain, atol=0.03, rtol=0)
    torch.testing.assert_close(c, c_plain, atol=0.03, rtol=0)
    torch.testing.assert_close(a, a_opt, atol=0.03, rtol=0)
    torch.testing.assert_close(c, c_opt, atol=0.03, rtol=0)


@pytest.mark.parametrize("prediction_type", ["sample", "epsilon"])
@pytest.mark.parametrize("sigma_t", SIGMAS_ABOVE_BUFFER[:2])
def test_without_the_contraction_the_ambient_denoiser_is_biased(sigma_t, prediction_type):
    """The raw chunk taken as x_{s_m} (no fresh z1): the gains move far from the optimum on identical data."""
    x0, _, z = gaussian_chunks(200_000, seed=3)
    x_t, target = ambient_training_pair(x0, torch.zeros_like(x0), z, sigma_t, SIGMA_MIN, prediction_type)
    a, c = least_squares_affine(x_t, target)
    a_opt, c_opt = optimal_affine_denoiser(sigma_t, prediction_type)
    assert max((a - a_opt).abs().max().item(), (c - c_opt).abs().max().item()) > 0.1


@pytest.mark.parametrize("prediction_type", ["sample", "epsilon"])
@pytest.mark.parametrize("sigma_t", SIGMAS_ABOVE_BUFFER[:2])
def test_plain_loss_on_noisy_data_does_not_recover_the_clean_denoiser(sigma_t, prediction_type):
    """Data that really is x_{s_m} trained with the plain loss learns the noisy data's denoiser."""
    x0, z1, z = gaussian_chunks(200_000, seed=3)
    noisy = math.sqrt(1 - SIGMA_MIN**2) * x0 + SIGMA_MIN * z1
    x_t, target = ambient_training_pair(noisy, z1, z, sigma_t, 0.0, prediction_type)
    a, c = least_squares_affine(x_t, target)
    a_opt, c_opt = optimal_affine_denoiser(sigma_t, prediction_type)
    assert max((a - a_opt).abs().max().item(), (c - c_opt).abs().max().item()) > 0.2


def test_without_contraction_the_chunk_is_x_sigma_min_as_it_is():
    """contract=False: y = a, so x_t = r a + sqrt((s_t^2 - s_m^2)/(1 - s_m^2)) z and the targets are those of y = a."""
    a, z1, z = randn(3, 4, 16, 2, seed=6)
    sigma_t = torch.tensor([0.5, 0.7, 0.9, 0.99], dtype=torch.float64)
    sigma_min = torch.tensor([0.3, 0.4, 0.0, 0.8], dtype=torch.float64)
    s_t, s_m = sigma_t[:, None, None], sigma_min[:, None, None]
    expected_x_t = torch.sqrt(1 - s_t**2) / torch.sqrt(1 - s_m**2) * a + torch.sqrt((s_t**2 - s_m**2) / (1 - s_m**2)) * z
    for prediction_type, target_of in [("epsilon", ambient_eps_target), ("sample", ambient_x0_target)]:
        x_t, target = ambient_training_pair(a, z1, z, sigma_t, sigma_min, prediction_type, contract=False)
        torch.testing.assert_close(x_t, expected_x_t, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(target, target_of(expected_x_t, a, sigma_t, sigma_min), rtol=1e-12, atol=1e-12)
        # z1 plays no part; with the contraction (the default) it does, as y = sqrt(1 - s_m^2) a + s_m z1.
        torch.testing.assert_close(ambient_training_pair(a, -z1, z, sigma_t, sigma_min, prediction_type, contract=False)[0], x_t)
        contracted_x_t, contracted_target = ambient_training_pair(a, z1, z, sigma_t, sigma_min, prediction_type)
        y = add_noise(a, z1, sigma_min)
        torch.testing.assert_close(contracted_x_t, ambient_noisy_input(y, z, sigma_t, sigma_min), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(contracted_target, target_of(contracted_x_t, y, sigma_t, sigma_min), rtol=1e-12, atol=1e-12)
        assert (contracted_x_t[sigma_min > 0] - x_t[sigma_min > 0]).abs().min() > 0
        torch.testing.assert_close(contracted_x_t[2], x_t[2])  # s_m = 0: nothing to contract


@pytest.mark.parametrize("prediction_type", ["sample", "epsilon"])
@pytest.mark.parametrize("sigma_t", SIGMAS_ABOVE_BUFFER)
def test_noisy_copies_without_contraction_learn_the_clean_denoiser(sigma_t, prediction_type):
    """Data that are x_{s_m} (label noise at a known s_m): taken as they are, the least-squares denoiser is
    the clean one; contracted again (to s'^2 = 2 s_m^2 - s_m^4 while the loss assumes s_m) it is biased."""
    x0, z1, z = gaussian_chunks(200_000, seed=4)
    label_noise = randn(200_000, 4, seed=5)
    noisy = math.sqrt(1 - SIGMA_MIN**2) * x0 + SIGMA_MIN * label_noise
    a_opt, c_opt = optimal_affine_denoiser(sigma_t, prediction_type)
    a, c = least_squares_affine(*ambient_training_pair(noisy, z1, z, sigma_t, SIGMA_MIN, prediction_type, contract=False))
    torch.testing.assert_close(a, a_opt, atol=0.03, rtol=0)
    torch.testing.assert_close(c, c_opt, atol=0.03, rtol=0)
    if sigma_t in SIGMAS_ABOVE_BUFFER[:2]:  # near s_m the double contraction's bias is large
        a, c = least_squares_affine(*ambient_training_pair(noisy, z1, z, sigma_t, SIGMA_MIN, prediction_type))
        assert max((a - a_opt).abs().max().item(), (c - c_opt).abs().max().item()) > 0.2


# --- admission sampler ------------------------------------------------------------------------


def draw(sampler, batches=400, batch_size=256, seed=0):
    rng = np.random.default_rng(seed)
    parts = [sampler.sample(batch_size, rng) for _ in range(batches)]
    return {k: np.concatenate([getattr(p, k) for p in parts]) for k in vars(parts[0])}


def binomial_tolerance(p, n, z=5.0):
    return z * math.sqrt(p * (1 - p) / n) + 1e-12


def empirical_clean_fraction(d, steps):
    return np.array([d["is_clean"][d["t"] == t].mean() for t in range(steps)])


# A small example worked by hand: four steps, two corrupt samples. Sample 0 (sigma_min 0.5) is
# admissible at t = 2, 3; sample 1 (sigma_min 0.3) at t = 1, 2, 3. alpha = 0.5, no buffer.
SMALL_SIGMAS = np.array([0.2, 0.4, 0.6, 0.8])
SMALL_SIGMA_MIN = np.array([0.5, 0.3])
# Sample-first: P(clean, t) = 0.5 / 4; sample 0 puts 0.25 on two steps, sample 1 on three.
#   t=1: 0.125 / (0.125 + 0.25/3) = 0.6;  t=2,3: 0.125 / (0.125 + 0.125 + 0.25/3) = 0.375
SAMPLE_FIRST_P_CLEAN = [1.0, 0.6, 0.375, 0.375]
# Step-first fixed weights: alpha / (alpha + (1 - alpha) N_adm(t) / 2) with N_adm = 0, 1, 2, 2.
STEP_FIRST_P_CLEAN = [1.0, 2 / 3, 0.5, 0.5]
# What the sampler did before: P(clean | t) = alpha wherever any corrupt sample is admissible.
OLD_P_CLEAN = [1.0, 0.5, 0.5, 0.5]


@pytest.mark.parametrize("order, expected", [("sample_first", SAMPLE_FIRST_P_CLEAN), ("step_first", STEP_FIRST_P_CLEAN)])
def test_induced_clean_probability_per_step_on_a_small_example(order, expected):
    sampler = AdmissionSampler(SMALL_SIGMAS, 3, 2, alpha=0.5, corrupt_sigma_min=SMALL_SIGMA_MIN, order=order)
    np.testing.assert_allclose(sampler.clean_probability(), expected, rtol=1e-12)
    assert not np.allclose(sampler.clean_probability(), OLD_P_CLEAN)
    d = draw(sampler, batches=200)
    measured = empirical_clean_fraction(d, 4)
    counts = np.bincount(d["t"], minlength=4)
    assert np.all(np.abs(measured - expected) < [binomial_tolerance(p, n) for p, n in zip(expected, counts)])
    corrupt = ~d["is_clean"]
    assert np.all(d["sigma"][corrupt] > SMALL_SIGMA_MIN[d["pool_index"][corrupt]])


def test_sample_first_keeps_each_samples_weight_and_draws_its_steps_uniformly():
    sampler = AdmissionSampler(SMALL_SIGMAS, 3, 2, alpha=0.5, corrupt_sigma_min=SMALL_SIGMA_MIN)
    d = draw(sampler, batches=200)
    n = len(d["t"])
    assert abs(d["is_clean"].mean() - 0.5) < binomial_tolerance(0.5, n)
    corrupt = ~d["is_clean"]
    # Each corrupt sample is drawn equally often (its weight), however few steps admit it.
    share = np.bincount(d["pool_index"][corrupt], minlength=2) / corrupt.sum()
    assert np.all(np.abs(share - 0.5) < binomial_tolerance(0.5, corrupt.sum()))
    for sample, steps in [(0, [2, 3]), (1, [1, 2, 3])]:
        mine = corrupt & (d["pool_index"] == sample)
        freq = np.bincount(d["t"][mine], minlength=4)[steps] / mine.sum()
        assert set(np.unique(d["t"][mine])) == set(steps)
        assert np.all(np.abs(freq - 1 / len(steps)) < binomial_tolerance(1 / len(steps), mine.sum()))
    clean_t = np.bincount(d["t"][d["is_clean"]], minlength=4) / d["is_clean"].sum()
    assert np.all(np.abs(clean_t - 0.25) < binomial_tolerance(0.25, d["is_clean"].sum()))


@pytest.fixture(scope="module")
def per_sample_sigma_min():
    return np.random.default_rng(7).uniform(0.0, 1.0, 2000)


@pytest.mark.parametrize("order", ["sample_first", "step_first"])
def test_corrupt_samples_drawn_only_above_their_buffered_sigma_min(per_sample_sigma_min, order):
    b = buffer_factor()
    sampler = AdmissionSampler(SIGMAS, 100, 2000, alpha=0.3, corrupt_sigma_min=per_sample_sigma_min, buffer=b, order=order)
    d = draw(sampler)
    corrupt = ~d["is_clean"]
    sm = per_sample_sigma_min[d["pool_index"][corrupt]]
    assert np.all(d["sigma"][corrupt] > b * sm)
    np.testing.assert_array_equal(d["ambient_sigma_min"][corrupt], sm)
    np.testing.assert_array_equal(d["ambient_sigma_min"][~corrupt], 0.0)
    np.testing.assert_array_equal(d["index"], np.where(corrupt, 100 + d["pool_index"], d["pool_index"]))
    assert np.all(d["pool_index"][~corrupt] < 100)
    assert np.all(sampler.num_admissible_corrupt == (b * per_sample_sigma_min[None, :] < SIGMAS[:, None]).sum(1))
    # The analytic P(clean | t) is what the draws show, step by step.
    measured, counts = empirical_clean_fraction(d, 100), np.bincount(d["t"], minlength=100)
    expected = sampler.clean_probability()
    assert np.all(np.abs(measured - expected) < [binomial_tolerance(p, n) + 1e-9 for p, n in zip(expected, counts)])


def test_per_sample_sigma_min_changes_the_clean_share_per_step_not_only_which_corrupt_samples(per_sample_sigma_min):
    """Where few corrupt samples are admissible they no longer fill every corrupt slot."""
    sampler = AdmissionSampler(SIGMAS, 100, 2000, alpha=0.5, corrupt_sigma_min=per_sample_sigma_min)
    p = sampler.clean_probability()
    few = np.flatnonzero((sampler.num_admissible_corrupt > 0) & (sampler.num_admissible_corrupt < 0.1 * 2000))
    assert len(few) and np.all(p[few] > 0.7)  # the old sampler: exactly 0.5 there
    assert p[-1] < 0.5  # at the top nearly all corrupt samples are admissible and spend their weight there


def test_the_buffer_is_a_factor_on_sigma_min_and_off_by_default():
    plain = AdmissionSampler(SIGMAS, 10, 1, alpha=0.5, sigma_min=0.5)
    buffered = AdmissionSampler(SIGMAS, 10, 1, alpha=0.5, sigma_min=0.5, buffer=buffer_factor(4.0))
    assert plain.high_start[0] == np.searchsorted(SIGMAS, 0.5, side="right")
    assert buffered.high_start[0] == np.searchsorted(SIGMAS, 0.5 * buffer_factor(4.0), side="right")
    assert buffered.high_start[0] > plain.high_start[0]
    with pytest.raises(ValueError, match="buffer"):
        AdmissionSampler(SIGMAS, 10, 1, sigma_min=0.5, buffer=0.5)


@pytest.mark.parametrize("order", ["sample_first", "step_first"])
def test_low_noise_branch_admits_below_sigma_max(order):
    # sigma_min 0.99999 puts the high-noise branch out of reach; only locality admits.
    sampler = AdmissionSampler(SIGMAS, 100, 500, alpha=0.5, sigma_min=0.99999999, sigma_max=0.3, order=order)
    d = draw(sampler)
    corrupt = ~d["is_clean"]
    assert corrupt.any() and np.all(d["sigma"][corrupt] < 0.3)
    np.testing.assert_array_equal(d["ambient_sigma_min"], 0.0)  # locality uses the plain target
    no_locality = draw(AdmissionSampler(SIGMAS, 100, 500, alpha=0.5, sigma_min=0.99999999, order=order))
    assert no_locality["is_clean"].all()


def test_per_sample_sigma_max_opens_each_samples_own_low_noise_branch():
    sigma_max = np.array([0.1, 0.3, 0.0])
    sampler = AdmissionSampler(SIGMAS, 10, 3, alpha=0.5, sigma_min=0.8, corrupt_sigma_max=sigma_max)
    d = draw(sampler, batches=100)
    corrupt = ~d["is_clean"]
    for sample in range(3):
        mine = corrupt & (d["pool_index"] == sample)
        low, high = mine & (d["sigma"] < 0.8), mine & (d["sigma"] > 0.8)
        assert np.all(d["sigma"][low] < sigma_max[sample]) and high.any()
        assert low.any() == (sigma_max[sample] > SIGMAS[0])
        np.testing.assert_array_equal(d["ambient_sigma_min"][high], 0.8)
        np.testing.assert_array_equal(d["ambient_sigma_min"][low], 0.0)


def test_cotrain_mode_keeps_alpha_at_every_sigma(per_sample_sigma_min):
    for order in ADMISSION_ORDERS:
        sampler = AdmissionSampler(SIGMAS, 100, 2000, alpha=0.3, mode="cotrain", corrupt_sigma_min=per_sample_sigma_min, order=order)
        np.testing.assert_allclose(sampler.clean_probability(), 0.3)
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
    counts = np.bincount(d["t"], minlength=100)
    assert abs(counts - counts.mean()).max() < 5 * math.sqrt(counts.mean())  # t uniform in [0, T)


def test_alpha_schedule_sets_the_clean_weight_per_sigma_in_cotraining():
    alpha = linear_alpha_schedule(alpha_low_noise=0.9, alpha_high_noise=0.1)
    for order in ADMISSION_ORDERS:
        sampler = AdmissionSampler(SIGMAS, 100, 500, alpha=alpha, mode="cotrain", order=order)
        np.testing.assert_allclose(sampler.clean_probability(), alpha(SIGMAS))
        d = draw(sampler)
        for lo, hi in [(0.0, 0.4), (0.4, 0.8), (0.8, 1.01)]:
            in_bin = (d["sigma"] >= lo) & (d["sigma"] < hi)
            expected = alpha(d["sigma"][in_bin]).mean()
            assert abs(d["is_clean"][in_bin].mean() - expected) < binomial_tolerance(expected, in_bin.sum())
    # A (T,) array of per-step weights is the same schedule.
    a = draw(AdmissionSampler(SIGMAS, 100, 500, alpha=alpha, sigma_min=0.1), batches=5)
    b = draw(AdmissionSampler(SIGMAS, 100, 500, alpha=alpha(SIGMAS), sigma_min=0.1), batches=5)
    np.testing.assert_array_equal(a["is_clean"], b["is_clean"])
    np.testing.assert_array_equal(a["t"], b["t"])


def test_sampler_is_reproducible_and_validates_inputs():
    sampler = AdmissionSampler(SIGMAS, 10, 20, alpha=0.5, sigma_min=0.2)
    a, b = draw(sampler, 3, seed=11), draw(sampler, 3, seed=11)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    with pytest.raises(ValueError, match="needs corrupt_sigma_min"):
        AdmissionSampler(SIGMAS, 10, 20, alpha=0.5)  # ambient without any sigma_min
    with pytest.raises(ValueError, match="non-finite"):
        AdmissionSampler(SIGMAS, 10, 2, corrupt_sigma_min=np.array([0.1, np.nan]))
    with pytest.raises(ValueError, match="alpha"):
        AdmissionSampler(SIGMAS, 10, 20, alpha=1.5, sigma_min=0.2)
    with pytest.raises(ValueError, match="order"):
        AdmissionSampler(SIGMAS, 10, 20, sigma_min=0.2, order="random")


def test_corrupt_samples_admissible_nowhere_leave_the_pool():
    sigma_min = np.array([0.5, 0.1, 1.0, 0.5, 0.1, 0.5])  # 1.0: no step has sigma above it
    sampler = AdmissionSampler(SIGMAS, 10, 6, alpha=0.2, corrupt_sigma_min=sigma_min)
    d = draw(sampler)
    corrupt = ~d["is_clean"]
    assert abs(corrupt.mean() - 0.8) < binomial_tolerance(0.8, len(corrupt))
    counts = np.bincount(d["pool_index"][corrupt], minlength=6)
    assert counts[2] == 0 and np.all(np.abs(counts[[0, 1, 3, 4, 5]] / corrupt.sum() - 0.2) < binomial_tolerance(0.2, corrupt.sum()))
    # None admissible anywhere: every element is clean, at uniform steps.
    d = draw(AdmissionSampler(SIGMAS, 10, 2, alpha=0.2, corrupt_sigma_min=np.array([1.0, 1.0])), batches=50)
    assert d["is_clean"].all()


def test_step_first_draw_is_uniform_over_the_samples_admissible_at_t():
    sigma_min = np.array([0.5, 0.1, 1.0, 0.5, 0.1, 0.5])
    d = draw(AdmissionSampler(SIGMAS, 10, 6, alpha=0.2, corrupt_sigma_min=sigma_min, order="step_first"))
    corrupt = ~d["is_clean"]
    for lo, hi, admissible in [(0.1, 0.5, [1, 4]), (0.5, 1.0, [0, 1, 3, 4, 5])]:
        in_band = corrupt & (d["sigma"] > lo) & (d["sigma"] <= hi)
        counts = np.bincount(d["pool_index"][in_band], minlength=6)
        assert set(np.flatnonzero(counts)) == set(admissible)
        p = 1 / len(admissible)
        assert np.all(abs(counts[admissible] / in_band.sum() - p) < binomial_tolerance(p, in_band.sum()))


def test_sigma_exactly_at_the_buffered_threshold_is_not_admissible():
    b, t = buffer_factor(), 40
    sigma_min = SIGMAS[t] / b
    while b * sigma_min != SIGMAS[t]:  # make b * s_m land exactly on sigma_40 in float64
        sigma_min = np.nextafter(sigma_min, np.inf if b * sigma_min < SIGMAS[t] else -np.inf)
    sampler = AdmissionSampler(SIGMAS, 10, 1, alpha=0.0, corrupt_sigma_min=np.array([sigma_min]), buffer=b)
    assert sampler.num_admissible_corrupt[t] == 0 and sampler.num_admissible_corrupt[t + 1] == 1
    d = draw(sampler, batches=40)
    assert not d["is_clean"].any() and d["t"].min() == t + 1

"""The DDPM schedule and DDIM sampler against independent derivations."""

import math

import numpy as np
import pytest
import torch

from policies.noise import (
    NoiseSchedule,
    add_noise,
    ddim_step,
    ddim_timesteps,
    ddpm_sigmas,
    eps_to_x0,
    first_admissible_step,
    x0_to_eps,
)

T = 100


@pytest.fixture(scope="module")
def schedule():
    return NoiseSchedule.squaredcos_cap_v2(T)


def closed_form_alphabar(t: int) -> float:
    """alphabar_t = f((t+1)/T) / f(0) with f the cosine alphabar: the cumulative product telescopes."""

    def f(u):
        return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

    return f((t + 1) / T) / f(0)


def test_alphas_cumprod_matches_telescoped_closed_form(schedule):
    expected = torch.tensor([closed_form_alphabar(t) for t in range(T - 1)], dtype=torch.float64)
    torch.testing.assert_close(schedule.alphas_cumprod[: T - 1].double(), expected, rtol=2e-5, atol=1e-8)
    # Only the last beta hits the 0.999 cap (f(1) = 0 would make it 1).
    assert schedule.betas[-1].item() == pytest.approx(0.999)
    assert torch.all(schedule.betas[:-1] < 0.999)
    assert schedule.alphas_cumprod[-1].item() == pytest.approx(closed_form_alphabar(T - 2) * 1e-3, rel=1e-4)
    assert schedule.betas.dtype == torch.float32


def test_sigmas_are_variance_preserving_and_increasing(schedule):
    torch.testing.assert_close(schedule.sigmas**2 + schedule.alphas_cumprod, torch.ones(T))
    assert torch.all(torch.diff(schedule.sigmas) > 0)
    assert 0.02 < schedule.sigmas[0] < 0.03 and schedule.sigmas[-1] == pytest.approx(1.0, abs=1e-4)


def test_add_noise_uses_each_elements_own_step(schedule):
    gen = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 5, 16, 2, generator=gen)
    t = torch.tensor([0, 17, 50, 98, 99])
    x_t = schedule.add_noise(x0, eps, t)
    for i, step in enumerate(t.tolist()):
        a = schedule.alphas_cumprod[step]
        torch.testing.assert_close(x_t[i], a.sqrt() * x0[i] + (1 - a).sqrt() * eps[i])


def test_add_noise_preserves_unit_variance():
    gen = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(2, 200_000, generator=gen)
    assert add_noise(x0, eps, 0.6).var().item() == pytest.approx(1.0, abs=0.01)


def test_eps_and_x0_conversions_invert_the_forward_process(schedule):
    gen = torch.Generator().manual_seed(2)
    x0, eps = torch.randn(2, 4, 16, 2, generator=gen, dtype=torch.float64)
    t = torch.tensor([3, 30, 60, 90])
    x_t = schedule.add_noise(x0, eps, t)
    torch.testing.assert_close(schedule.eps_to_x0(x_t, eps, t), x0)
    torch.testing.assert_close(schedule.x0_to_eps(x_t, x0, t), eps)
    sigma = schedule.sigma(t)
    torch.testing.assert_close(x0_to_eps(x_t, eps_to_x0(x_t, eps, sigma), sigma), eps)


def test_ddim_timesteps_use_leading_spacing():
    assert ddim_timesteps(100, 10).tolist() == [90, 80, 70, 60, 50, 40, 30, 20, 10, 0]
    assert ddim_timesteps(100, 8).tolist() == [84, 72, 60, 48, 36, 24, 12, 0]
    assert ddim_timesteps(100, 100).tolist() == list(range(99, -1, -1))
    with pytest.raises(ValueError):
        ddim_timesteps(100, 0)


@pytest.mark.parametrize("t", [90, 40, 0])
def test_ddim_step_is_the_eta0_ddim_update(schedule, t):
    """x_prev = sqrt(a_prev) clip(x0_hat) + sqrt(1 - a_prev) eps_hat (Song et al. eq. 12, diffusers)."""
    gen = torch.Generator().manual_seed(3)
    x_t, eps_hat = torch.randn(2, 3, 16, 2, generator=gen, dtype=torch.float64)
    x_t = 1.5 * x_t  # large enough that clipping bites
    a_t = schedule.alphas_cumprod[t].item()
    a_prev = schedule.alphas_cumprod[t - 10].item() if t >= 10 else 1.0
    x0_hat = (x_t - math.sqrt(1 - a_t) * eps_hat) / math.sqrt(a_t)
    expected = math.sqrt(a_prev) * x0_hat.clamp(-1, 1) + math.sqrt(1 - a_prev) * eps_hat
    got = ddim_step(eps_hat, t, x_t, schedule.alphas_cumprod, num_inference_steps=10)
    torch.testing.assert_close(got, expected)
    # The x0 parameterisation of the same prediction gives the same step; per-element t too.
    torch.testing.assert_close(schedule.ddim_step(x0_hat, t, x_t, prediction_type="sample"), expected)
    torch.testing.assert_close(schedule.ddim_step(eps_hat, torch.full((3,), t), x_t), expected)
    unclipped = math.sqrt(a_prev) * x0_hat + math.sqrt(1 - a_prev) * eps_hat
    torch.testing.assert_close(schedule.ddim_step(eps_hat, t, x_t, clip_sample=False), unclipped)


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample"])
def test_ddim_with_oracle_recovers_a_point_mass(schedule, prediction_type):
    point = torch.tensor([[0.3, -0.7], [0.9, 0.0], [1.6, -2.0]], dtype=torch.float64)  # last row outside [-1, 1]

    def oracle(x_t, t):
        if prediction_type == "sample":
            return point.expand_as(x_t)
        return schedule.x0_to_eps(x_t, point.expand_as(x_t), t)

    x_T = torch.randn(3, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    x = schedule.ddim_sample(oracle, x_T, num_inference_steps=10, prediction_type=prediction_type)
    torch.testing.assert_close(x, point.clamp(-1, 1))


def test_ddim_with_oracle_reproduces_a_gaussian(schedule):
    """With the exact eps of N(mu, s^2) data, DDIM over all 100 steps lands on that Gaussian."""
    mu, s = 0.2, 0.3

    def oracle(x_t, t):
        sigma = schedule.sigma(t).double()[:, None]
        b = torch.sqrt(1 - sigma**2)
        x0_mean = mu + s**2 * b / (b**2 * s**2 + sigma**2) * (x_t - b * mu)
        return x0_to_eps(x_t, x0_mean, sigma[:, 0])

    x_T = torch.randn(20_000, 1, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    x = schedule.ddim_sample(oracle, x_T, num_inference_steps=100, clip_sample=False)
    assert x.mean().item() == pytest.approx(mu, abs=0.01)
    assert x.std().item() == pytest.approx(s, rel=0.05)  # 0.2925 measured: discretisation shrinks it


def test_one_rule_maps_sigma_min_to_its_first_admissible_step():
    sigmas = ddpm_sigmas(100)
    torch.testing.assert_close(torch.from_numpy(sigmas).float(), NoiseSchedule.squaredcos_cap_v2(100).sigmas, rtol=0, atol=0)
    # Admissible iff sigma_t > sigma_min: a value equal to sigma_k first admits step k + 1.
    np.testing.assert_array_equal(first_admissible_step(sigmas[[0, 19, 80]], sigmas), [1, 20, 81])
    np.testing.assert_array_equal(first_admissible_step([0.0, sigmas[19] - 1e-9, 1.0], sigmas), [0, 19, 100])

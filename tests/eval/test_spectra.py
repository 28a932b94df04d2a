"""Spectra and neighbours against signals with known spectra and brute-force searches."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.signal import welch

from eval.neighbours import StateIndex, state_features
from eval.spectra import (
    CONTROL_RATE_HZ,
    Demonstrations,
    chunk_psd,
    chunk_starts,
    corruption_spectrum,
    fit_power_law,
    masking_floor,
    psd,
    white_noise_floor,
)

FS = CONTROL_RATE_HZ


def whole_signal_psd(signal: np.ndarray, chunk: int, **kwargs):
    """PSD of one long (N, D) signal cut into half-overlapping chunks."""
    return chunk_psd(signal, chunk_starts(np.array([len(signal)]), chunk, chunk // 2), chunk, **kwargs)


# --------------------------------------------------------------------------------------------------
# Chunks


def test_chunk_starts_on_hand_made_episodes():
    ends = np.array([5, 8, 18])  # lengths 5, 3, 10
    np.testing.assert_array_equal(chunk_starts(ends, 4), [0, 1, 8, 9, 10, 11, 12, 13, 14])
    np.testing.assert_array_equal(chunk_starts(ends, 4, stride=3), [0, 8, 11, 14])
    assert len(chunk_starts(ends, 11)) == 0


def test_chunk_starts_match_a_loop():
    rng = np.random.default_rng(3)
    ends = np.cumsum(rng.integers(1, 40, size=60))
    for chunk, stride in [(1, 1), (7, 1), (16, 8), (32, 5)]:
        expected = [
            start
            for begin, end in zip(np.concatenate([[0], ends[:-1]]), ends)
            for start in range(begin, end - chunk + 1, stride)
        ]
        np.testing.assert_array_equal(chunk_starts(ends, chunk, stride), expected)


# --------------------------------------------------------------------------------------------------
# PSD of signals with known spectra


def test_sinusoids_peak_at_their_frequencies_with_their_power():
    chunk, n = 32, 40_000
    t = np.arange(n) / FS
    # 1.25 Hz and 3.125 Hz are bins 4 and 10 of a 32-step chunk at 10 Hz (bin width 0.3125 Hz).
    signal = (1.0 * np.sin(2 * np.pi * 1.25 * t + 0.3) + 0.7 * np.sin(2 * np.pi * 3.125 * t + 1.1))[:, None]
    spectrum = whole_signal_psd(signal, chunk)
    f, power = spectrum.frequencies, spectrum.mean
    top_two = sorted(f[np.argsort(power[1:])[-2:] + 1])
    assert top_two == pytest.approx([1.25, 3.125])
    # Parseval: the peak (the Hann window spreads it over 3 bins) integrates to the variance A^2 / 2.
    df = f[1]
    assert power[3:6].sum() * df == pytest.approx(0.5, rel=0.02)
    assert power[9:12].sum() * df == pytest.approx(0.7**2 / 2, rel=0.02)
    assert power[7] < 1e-6 * power[4]  # far from both peaks: nothing


def test_random_walk_has_slope_minus_two_and_the_analytic_level():
    rng = np.random.default_rng(1)
    step_std = 0.01
    walk = np.cumsum(rng.normal(scale=step_std, size=(100_000, 2)), axis=0)
    for chunk in (32, 64):
        spectrum = whole_signal_psd(walk, chunk)
        f = spectrum.frequencies
        assert fit_power_law(f, spectrum.mean).slope == pytest.approx(-2.0, abs=0.3)
        # Below fs/5 the discrete walk's spectrum 1 / (4 sin^2(pi f / fs)) is still close to 1 / f^2.
        assert fit_power_law(f, spectrum.mean, fmax=2.0).slope == pytest.approx(-2.0, abs=0.15)
        analytic = white_noise_floor(step_std) / (4 * np.sin(np.pi * f[5:] / FS) ** 2)
        np.testing.assert_allclose(spectrum.per_dim[5:, 0], analytic, rtol=0.08)


def test_white_noise_sits_at_the_derived_floor():
    rng = np.random.default_rng(2)
    sigma = 0.3
    noise = rng.normal(scale=sigma, size=(200_000, 2))
    spectrum = whole_signal_psd(noise, 32)
    floor = white_noise_floor(sigma)
    assert floor == pytest.approx(2 * sigma**2 / FS)
    np.testing.assert_allclose(spectrum.per_dim[2:], floor, rtol=0.06)  # every bin up to Nyquist, both dims
    assert spectrum.per_dim[1].mean() == pytest.approx(floor * 5 / 6, rel=0.06)  # mean removal (docstring)
    assert abs(fit_power_law(spectrum.frequencies, spectrum.mean).slope) < 0.1


def test_psd_agrees_with_scipy_welch_except_the_doubled_nyquist_bin():
    rng = np.random.default_rng(4)
    chunks = rng.normal(size=(5, 16, 1))
    ours = psd(chunks).per_dim[:, 0]
    _, theirs = welch(chunks[..., 0], fs=FS, window="hann", nperseg=16, noverlap=0, detrend="constant", axis=-1)
    theirs = theirs.mean(axis=0)
    np.testing.assert_allclose(ours[:-1], theirs[:-1], rtol=1e-10, atol=1e-14)
    assert ours[-1] == pytest.approx(2 * theirs[-1])


def test_linear_detrend_removes_a_ramp():
    ramp = np.arange(32, dtype=float)[None, :, None] * np.array([1.0, -3.0])
    assert np.max(psd(ramp, detrend="linear").per_dim) < 1e-20
    assert np.max(psd(ramp, detrend="constant").per_dim) > 1.0


def test_power_law_fit_recovers_an_exact_law_and_ignores_dc():
    f = np.linspace(0, 5, 33)
    power = np.empty_like(f)
    power[1:] = 10**1.5 * f[1:] ** -2.5
    power[0] = 1e9
    law = fit_power_law(f, power)
    assert law.slope == pytest.approx(-2.5) and law.intercept == pytest.approx(1.5)
    np.testing.assert_allclose(law(f[1:]), power[1:])
    with pytest.raises(ValueError):
        fit_power_law(f, np.zeros_like(f))


# --------------------------------------------------------------------------------------------------
# Noise levels


def test_every_training_step_has_a_finite_increasing_masking_floor():
    from policies.noise import ddpm_sigmas

    floors = masking_floor(ddpm_sigmas(100))  # raises if the last sigma reached 1
    assert floors.shape == (100,) and np.all(np.isfinite(floors)) and np.all(np.diff(floors) > 0)


def test_masking_floor_is_the_floor_of_the_noise_relative_to_the_shrunk_signal():
    sigma = 0.6
    assert masking_floor(sigma) == pytest.approx(2 * sigma**2 / (1 - sigma**2) / FS)
    # Simulated: x_sigma / sqrt(1 - sigma^2) - x_0 is white noise at that floor.
    rng = np.random.default_rng(5)
    x0 = np.cumsum(rng.normal(size=(50_000, 1)), axis=0)
    x_sigma = math.sqrt(1 - sigma**2) * x0 + sigma * rng.normal(size=x0.shape)
    spectrum = whole_signal_psd(x_sigma / math.sqrt(1 - sigma**2) - x0, 32)
    np.testing.assert_allclose(spectrum.mean[2:], masking_floor(sigma), rtol=0.1)
    with pytest.raises(ValueError):
        masking_floor(1.0)


# --------------------------------------------------------------------------------------------------
# Neighbours


def brute_force_distances(query_pose, query_pusher, ref_pose, ref_pusher, angle_scale):
    """Pairwise distances computed from the wrapped angle difference, not the (cos, sin) embedding."""
    dtheta = np.angle(np.exp(1j * (query_pose[:, None, 2] - ref_pose[None, :, 2])))
    squared = (
        ((query_pose[:, None, :2] - ref_pose[None, :, :2]) ** 2).sum(-1)
        + (2 * angle_scale * np.sin(np.abs(dtheta) / 2)) ** 2
        + ((query_pusher[:, None] - ref_pusher[None]) ** 2).sum(-1)
    )
    return np.sqrt(squared)


def test_neighbours_match_brute_force_including_angle_wrap():
    rng = np.random.default_rng(6)
    n_ref, n_query, scale = 400, 60, 0.07

    def states(n):
        pose = np.column_stack([rng.uniform(0.4, 0.8, n), rng.uniform(-0.2, 0.1, n), rng.uniform(-np.pi, np.pi, n)])
        pose[: n // 3, 2] = rng.choice([-1, 1], n // 3) * rng.uniform(np.pi - 0.2, np.pi, n // 3)  # near the cut
        return pose, rng.uniform(0.3, 0.9, (n, 2))

    ref_pose, ref_pusher = states(n_ref)
    query_pose, query_pusher = states(n_query)
    distances, indices = StateIndex(ref_pose, ref_pusher, scale).query(query_pose, query_pusher, k=3)
    expected = brute_force_distances(query_pose, query_pusher, ref_pose, ref_pusher, scale)
    np.testing.assert_array_equal(indices, np.argsort(expected, axis=1)[:, :3])
    np.testing.assert_allclose(distances, np.sort(expected, axis=1)[:, :3], rtol=1e-9)


def test_angle_wraps_around_pi():
    pusher = np.zeros((2, 2))
    ref_pose = np.array([[0.5, 0.0, np.pi - 0.01], [0.5, 0.0, 0.5]])
    distances, indices = StateIndex(ref_pose, pusher).query(np.array([[0.5, 0.0, -np.pi + 0.01]]), pusher[:1])
    assert indices[0, 0] == 0  # 0.02 rad away across the cut, not 2.6 rad the other way
    assert distances[0, 0] == pytest.approx(2 * 0.05 * math.sin(0.01), rel=1e-9)
    np.testing.assert_allclose(state_features(ref_pose[:1], pusher[:1])[0, 2:4], 0.05 * np.array([-1, 0]), atol=1e-3)


# --------------------------------------------------------------------------------------------------
# Corruption spectrum


def random_demos(rng, n_episodes, length, action_scale=1.0):
    n = n_episodes * length
    slider = np.column_stack([rng.uniform(0.3, 0.9, n), rng.uniform(-0.2, 0.1, n), rng.uniform(-np.pi, np.pi, n)])
    return Demonstrations(
        action=np.cumsum(rng.normal(scale=action_scale, size=(n, 2)), axis=0),
        agent_pos=rng.uniform(0.3, 0.9, (n, 2)),
        slider_pose=slider,
        episode_ends=np.arange(1, n_episodes + 1) * length,
    )


def test_corruption_spectrum_of_noisy_copies_is_the_noise_floor():
    rng = np.random.default_rng(7)
    clean = random_demos(rng, 40, 100)
    # The corrupt set holds the same states shuffled, with actions corrupted by white noise: only
    # correct pairing by state cancels the (large) random-walk actions.
    order = rng.permutation(40)
    steps = np.concatenate([np.arange(e * 100, (e + 1) * 100) for e in order])
    noise_std = 0.05
    corrupt = Demonstrations(
        clean.action[steps] + rng.normal(scale=noise_std, size=clean.action.shape),
        clean.agent_pos[steps],
        clean.slider_pose[steps],
        clean.episode_ends,
    )
    result = corruption_spectrum(clean, corrupt, chunk=16, n_pairs=2000, rng=np.random.default_rng(0))
    assert len(result.clean_starts) == 2000 and np.all(result.distances < 1e-9)
    np.testing.assert_array_equal(steps[result.corrupt_starts], result.clean_starts)
    np.testing.assert_allclose(result.spectrum.mean[2:], white_noise_floor(noise_std), rtol=0.12)


def test_corruption_spectrum_takes_more_neighbours_when_clean_samples_are_few():
    rng = np.random.default_rng(8)
    clean, corrupt = random_demos(rng, 2, 20), random_demos(rng, 30, 50)
    result = corruption_spectrum(clean, corrupt, chunk=8, n_pairs=50)
    clean_samples = chunk_starts(clean.episode_ends, 8)  # 26 of them: k = 2
    assert len(result.clean_starts) == 50
    np.testing.assert_array_equal(result.clean_starts[:26], clean_samples)
    # Each pair's distance is the distance between its own two states, and second neighbours are no nearer.
    c, k = result.clean_starts, result.corrupt_starts
    pair_distances = brute_force_distances(clean.slider_pose[c], clean.agent_pos[c], corrupt.slider_pose[k],
                                           corrupt.agent_pos[k], 0.05).diagonal()
    np.testing.assert_allclose(result.distances, pair_distances, rtol=1e-9)
    assert np.all(result.distances[26:] >= result.distances[: 50 - 26])
    assert result.spectrum.n_chunks == 50

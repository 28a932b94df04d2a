"""Spectra and neighbours against signals with known spectra and brute-force searches."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.signal import welch

from eval.neighbours import StateIndex, state_features
from eval.spectra import (
    CONTROL_RATE_HZ,
    ChunkIndex,
    Demonstrations,
    band_power,
    chunk_psd,
    chunk_starts,
    corruption_comparison,
    corruption_spectrum,
    distance_bin_edges,
    distance_bins,
    episode_of,
    fit_power_law,
    masking_floor,
    match_by_state,
    percentile_interval,
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


def test_other_group_neighbours_match_brute_force_when_the_own_group_crowds_the_nearest():
    rng = np.random.default_rng(9)
    n_ref, scale = 600, 0.05
    ref_pose = np.column_stack([rng.uniform(0.4, 0.8, n_ref), rng.uniform(-0.2, 0.2, n_ref), rng.uniform(-3, 3, n_ref)])
    ref_pusher = rng.uniform(0.3, 0.9, (n_ref, 2))
    groups = rng.integers(0, 5, n_ref)
    # Group 0's 300 states crowd around the queries: far more than the first search width of k + 16.
    groups[:300] = 0
    ref_pose[:300] = [0.6, 0.0, 0.0] + rng.normal(scale=1e-4, size=(300, 3))
    ref_pusher[:300] = [0.5, 0.5] + rng.normal(scale=1e-4, size=(300, 2))
    query_pose = np.array([[0.6, 0.0, 0.0]] * 4 + [[0.5, 0.1, 1.0]] * 2)
    query_pusher = np.array([[0.5, 0.5]] * 4 + [[0.4, 0.6]] * 2)
    query_groups = np.array([0, 0, 1, 2, 0, 3])
    index = StateIndex(ref_pose, ref_pusher, scale)
    distances, indices = index.query_other_groups(query_pose, query_pusher, query_groups, groups, k=4)
    expected = brute_force_distances(query_pose, query_pusher, ref_pose, ref_pusher, scale)
    expected[groups[None, :] == query_groups[:, None]] = np.inf
    np.testing.assert_array_equal(indices, np.argsort(expected, axis=1)[:, :4])
    np.testing.assert_allclose(distances, np.sort(expected, axis=1)[:, :4], rtol=1e-9)
    assert np.all(groups[indices] != query_groups[:, None])
    available = n_ref - np.bincount(groups)[query_groups].max()  # every state outside group 0
    _, everyone = index.query_other_groups(query_pose, query_pusher, query_groups, groups, k=available)
    assert set(everyone[0]) == set(np.flatnonzero(groups != 0))
    with pytest.raises(ValueError, match="outside a query's group"):
        index.query_other_groups(query_pose, query_pusher, query_groups, groups, k=available + 1)


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


# --------------------------------------------------------------------------------------------------
# Baselines: clean vs other clean and corrupt vs other corrupt at matched state distance


def walk_demos(rng, n_episodes, length, step=0.01, high_noise=0.0):
    """Pushes whose pusher wanders (a random walk from a random start) and whose action is its next position.

    Two episodes from nearby states differ by two independent walks, whatever their distance: the
    demos' own variety, 2 * white_noise_floor(step) / (4 sin^2(pi f / fs)). high_noise adds the first
    difference of white noise of that std to the actions: PSD 4 sin^2(pi f / fs) * white_noise_floor
    (high_noise), nothing at DC, the most at fs / 2.
    """
    n = n_episodes * length
    start = rng.uniform(0.3, 0.7, (n_episodes, 1, 2))
    path = start + np.cumsum(rng.normal(scale=step, size=(n_episodes, length + 1, 2)), axis=1)
    noise = np.diff(rng.normal(scale=high_noise, size=(n_episodes, length + 1, 2)), axis=1)
    pusher = path[:, :-1].reshape(n, 2)
    return Demonstrations(
        action=(path[:, 1:] + noise).reshape(n, 2),
        agent_pos=pusher,
        slider_pose=np.column_stack([pusher + 0.05, np.zeros(n)]),
        episode_ends=np.arange(1, n_episodes + 1) * length,
    )


def walk_variety(f, step=0.01):
    """The PSD of the difference of two walks (at DC, where it diverges, 0: band_power skips DC)."""
    variety = np.zeros_like(f)
    variety[f > 0] = 2 * white_noise_floor(step) / (4 * np.sin(np.pi * f[f > 0] / FS) ** 2)
    return variety


def high_noise_psd(f, std):
    return 4 * np.sin(np.pi * f / FS) ** 2 * white_noise_floor(std)


def test_excess_over_the_clean_baseline_is_the_added_high_frequency_noise():
    rng = np.random.default_rng(11)
    clean = walk_demos(rng, 60, 120)
    corrupt = walk_demos(rng, 60, 120, high_noise=0.01)  # new draws of the clean process, actions noised
    result = corruption_comparison(clean, corrupt, chunk=16, n_pairs=3000, n_draws=300, rng=np.random.default_rng(1))
    f = result.frequencies
    high, low = f >= 2.5, (f > 0) & (f <= 1.0)
    noise = high_noise_psd(f, 0.01)
    assert np.all(noise[high] > 1.9 * walk_variety(f)[high])  # the noise is what stands out up there
    excess, draws = result.excess()
    clean_vs_corrupt, clean_vs_clean, corrupt_vs_corrupt = (
        c.spectra for c in (result.clean_vs_corrupt, result.clean_vs_clean, result.corrupt_vs_corrupt))
    for b in range(3):
        # Above 2.5 Hz the excess is the noise, and clearly positive (its whole interval).
        np.testing.assert_allclose(excess[b][high], noise[high], rtol=0.4)
        assert np.all(percentile_interval(draws[:, b])[0][high] > 0)
        # Below 1 Hz the walks dominate both sides; the baseline (other clean episodes) takes them out.
        assert np.all(np.abs(excess[b][low]) < 0.2 * clean_vs_corrupt.bins[b].mean[low])
        # Corrupt vs other corrupt carries the noise of both chunks.
        difference = corrupt_vs_corrupt.bins[b].mean - clean_vs_clean.bins[b].mean
        np.testing.assert_allclose(difference[high], 2 * noise[high], rtol=0.4)
    matched, matched_draws = result.matched(result.clean_vs_corrupt)
    baseline, baseline_draws = result.matched(result.clean_vs_clean)
    assert percentile_interval(band_power(f, matched_draws - baseline_draws))[0] > 0


def test_excess_vanishes_when_corrupt_is_another_draw_of_the_clean_process():
    rng = np.random.default_rng(12)
    clean, corrupt = walk_demos(rng, 60, 120), walk_demos(rng, 60, 120)
    result = corruption_comparison(clean, corrupt, chunk=16, n_pairs=3000, n_draws=300, rng=np.random.default_rng(1))
    f = result.frequencies
    # The raw corruption spectrum is the demos' own variety, nowhere near zero ...
    raw = band_power(f, result.clean_vs_corrupt.spectra.overall.mean)
    assert raw > 0.5 * band_power(f, walk_variety(f))
    # ... and the excess over clean vs other clean is, within 15% of the raw power in every bin.
    excess, draws = result.excess()
    assert list(result.matched_bins()) == [0, 1, 2]
    for b in range(3):
        in_bin = band_power(f, result.clean_vs_corrupt.spectra.bins[b].mean)
        assert abs(band_power(f, excess[b])) < 0.15 * in_bin
        low, high = percentile_interval(band_power(f, draws[:, b]))
        assert low < 0 < high  # eval.analyze's verdict: within the baseline's spread
    matched, matched_draws = result.matched(result.clean_vs_corrupt)
    baseline, baseline_draws = result.matched(result.clean_vs_clean)
    assert abs(band_power(f, matched - baseline)) < 0.1 * band_power(f, matched)


def test_clean_baseline_never_pairs_a_chunk_with_its_own_episode():
    rng = np.random.default_rng(13)
    clean, corrupt = walk_demos(rng, 12, 60), walk_demos(rng, 12, 60)
    index = ChunkIndex(clean, 16)  # 12 x 45 = 540 chunks, so 1500 pairs take 3 neighbours each
    states = clean.slider_pose[index.starts], clean.agent_pos[index.starts]
    _, nearest = index.states.query(*states, k=2)  # the first is the chunk itself
    assert np.mean(index.episodes[nearest[:, 1]] == index.episodes) > 0.8  # mostly a neighbouring step of its episode
    result = corruption_comparison(clean, corrupt, chunk=16, n_pairs=1500, n_draws=0)

    for comparison, demos in ((result.clean_vs_clean, clean), (result.corrupt_vs_corrupt, corrupt)):
        pairs = comparison.pairs
        assert len(pairs.distances) == 1500
        np.testing.assert_array_equal(pairs.query_episodes, episode_of(pairs.query_starts, demos.episode_ends))
        np.testing.assert_array_equal(pairs.reference_episodes, episode_of(pairs.reference_starts, demos.episode_ends))
        assert np.all(pairs.query_episodes != pairs.reference_episodes)
        # The 3 nearest chunks of other episodes of the same set, rank-major, by brute force.
        starts = chunk_starts(demos.episode_ends, 16)
        distances = brute_force_distances(demos.slider_pose[starts], demos.agent_pos[starts], demos.slider_pose[starts],
                                          demos.agent_pos[starts], 0.05)
        episodes = episode_of(starts, demos.episode_ends)
        distances[episodes[:, None] == episodes[None, :]] = np.inf
        np.testing.assert_array_equal(pairs.query_starts, np.tile(starts, 3)[:1500])
        np.testing.assert_allclose(pairs.distances, np.sort(distances, axis=1)[:, :3].T.reshape(-1)[:1500], rtol=1e-9)
        own = brute_force_distances(demos.slider_pose[pairs.query_starts], demos.agent_pos[pairs.query_starts],
                                    demos.slider_pose[pairs.reference_starts], demos.agent_pos[pairs.reference_starts],
                                    0.05).diagonal()
        np.testing.assert_allclose(pairs.distances, own, rtol=1e-9)  # each pair's distance is its own states'
    # The clean baseline queries the very chunks that clean vs corrupt does.
    np.testing.assert_array_equal(result.clean_vs_clean.pairs.query_starts, result.clean_vs_corrupt.pairs.query_starts)
    with pytest.raises(ValueError, match="queries' set"):
        match_by_state(clean, index.starts, ChunkIndex(corrupt, 16), 100, other_episodes_only=True)


def test_bins_compare_pairs_at_matched_distance_when_one_set_is_denser():
    """Differences that grow with state distance: a denser corrupt set's nearer neighbours differ less.

    One chunk per episode, at a uniform random state, its actions a 2.5 Hz tone of phase K (x + y):
    two chunks d apart differ by a tone of power ~ (K d)^2. The clean set's own neighbours are about
    three times farther than its corrupt ones (8x fewer states), so the raw averages differ seven-fold
    though nothing is corrupt; inside a distance bin they agree. (The last bin, open up to the
    largest clean-vs-corrupt distance, keeps some mismatch: eval.analyze prints each bin's medians.)
    """

    def tone_demos(n_episodes, chunk=16, wavenumber=40.0, amplitude=0.05):
        n = n_episodes * chunk
        start = np.repeat(rng.uniform(0.3, 0.7, (n_episodes, 2)), chunk, axis=0)
        phase = np.pi / 2 * np.tile(np.arange(chunk), n_episodes) + wavenumber * start.sum(axis=1)
        action = amplitude * np.sin(phase)[:, None] * np.array([1.0, 0.5])
        return Demonstrations(action, start, np.column_stack([start + 0.05, np.zeros(n)]),
                              np.arange(1, n_episodes + 1) * chunk)

    rng = np.random.default_rng(14)
    clean, corrupt = tone_demos(600), tone_demos(4800)
    result = corruption_comparison(clean, corrupt, chunk=16, n_pairs=3000, n_bins=4, n_draws=200,
                                   rng=np.random.default_rng(1))
    f = result.frequencies
    clean_vs_corrupt, clean_vs_clean = result.clean_vs_corrupt.spectra, result.clean_vs_clean.spectra
    assert band_power(f, clean_vs_corrupt.overall.mean) < 0.3 * band_power(f, clean_vs_clean.overall.mean)
    assert np.count_nonzero(clean_vs_clean.pair_bins < 0) > 1000  # farther than any clean-vs-corrupt pair: no bin
    excess, draws = result.excess()
    for b in range(3):
        assert clean_vs_clean.counts[b] >= 50
        assert abs(band_power(f, excess[b])) < 0.35 * band_power(f, clean_vs_corrupt.bins[b].mean)
        low, high = percentile_interval(band_power(f, draws[:, b]))
        assert low < 0 < high


def test_distance_bins_have_equal_counts_and_drop_what_lies_beyond():
    distances = np.arange(1, 13, dtype=float)
    edges = distance_bin_edges(distances, 3)
    np.testing.assert_allclose(edges, [0.0, 4.666666666666667, 8.333333333333334, 12.0])
    np.testing.assert_array_equal(np.bincount(distance_bins(distances, edges)), [4, 4, 4])
    np.testing.assert_array_equal(distance_bins(np.array([0.0, 4.67, 12.0, 12.5]), edges), [0, 1, 2, -1])


def test_baselines_are_skipped_for_a_set_of_one_episode_and_when_not_asked():
    rng = np.random.default_rng(15)
    clean, corrupt = walk_demos(rng, 1, 80), walk_demos(rng, 10, 80)
    result = corruption_comparison(clean, corrupt, chunk=16, n_pairs=200, n_draws=10)
    assert result.clean_vs_clean is None and result.corrupt_vs_corrupt is not None
    with pytest.raises(ValueError, match="no clean-vs-clean baseline"):
        result.excess()
    result = corruption_comparison(clean, corrupt, chunk=16, n_pairs=200, n_draws=10, baselines=False)
    assert result.clean_vs_clean is None and result.corrupt_vs_corrupt is None
    # The clean-vs-corrupt pairs do not depend on the baselines: the same as corruption_spectrum's.
    plain = corruption_spectrum(clean, corrupt, chunk=16, n_pairs=200)
    np.testing.assert_array_equal(result.clean_vs_corrupt.pairs.reference_starts, plain.corrupt_starts)
    np.testing.assert_allclose(result.clean_vs_corrupt.spectra.overall.per_dim, plain.spectrum.per_dim)

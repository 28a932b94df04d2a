"""Power spectra of action chunks: PSD, power-law fit, Gaussian noise floors and the corruption spectrum.

Pure numpy/scipy functions on in-memory arrays (science.md §5); ``eval.analyze`` reads the stores and
draws the plots. The corruption spectrum (clean chunks against their nearest corrupt neighbours by
state) comes with its baselines at matched state distance, clean vs other clean and corrupt vs other
corrupt (``corruption_comparison``, science.md §7): only power above the demos' own variety is
corruption.

PSD convention (one-sided density in power per Hz, fs the control rate). A chunk x_0 .. x_{H-1} of
one action dimension is detrended (mean or line removed), tapered by a window w and transformed,
X_k = sum_n w_n x_n exp(-2 pi i k n / H), and

    P(f_k) = c_k |X_k|^2 / (fs sum_n w_n^2),   f_k = k fs / H,  k = 0 .. H/2,
    c_0 = 1 and c_k = 2 for every k >= 1 (the Nyquist bin included),

averaged over chunks. Noise floor: for white noise of variance s^2 the terms are uncorrelated, so
E |X_k|^2 = s^2 sum_n w_n^2 and the PSD is flat at

    white_noise_floor(s) = 2 s^2 / fs   (every bin k >= 1).

Doubling the Nyquist bin too (scipy's ``welch`` does not) keeps that floor flat up to fs / 2, which
is what the plots compare against; the price is that a Parseval sum counts the Nyquist bin twice.
Mean removal leaks a little of the floor out of bin 1 (for the Hann window, E P(f_1) is 5/6 of it):
that is the detrend, not the noise.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy.signal import get_window

from eval.neighbours import DEFAULT_ANGLE_SCALE_M, StateIndex

CONTROL_RATE_HZ = 10.0
DETRENDS = ("constant", "linear", "none")
BATCH_CHUNKS = 32_768  # chunks per FFT batch: bounds memory on stores of millions of steps


@dataclass(frozen=True)
class Demonstrations:
    """The low-dimensional step arrays of one episode store (all episodes concatenated)."""

    action: np.ndarray  # (N, A)
    agent_pos: np.ndarray  # (N, 2) pusher xy
    slider_pose: np.ndarray  # (N, 3) slider x, y, theta
    episode_ends: np.ndarray  # (E,) exclusive end index of each episode


@dataclass(frozen=True)
class Spectrum:
    """A PSD averaged over chunks: ``per_dim[k, d]`` is the power of dimension d at ``frequencies[k]``."""

    frequencies: np.ndarray  # (F,) Hz, 0 .. fs / 2
    per_dim: np.ndarray  # (F, D)
    n_chunks: int

    @property
    def mean(self) -> np.ndarray:
        """(F,) the PSD averaged over dimensions."""
        return self.per_dim.mean(axis=1)


@dataclass(frozen=True)
class PowerLaw:
    """log10 P = intercept + slope * log10 f (so ``intercept`` is log10 of the power at 1 Hz)."""

    slope: float
    intercept: float

    def __call__(self, frequencies: np.ndarray) -> np.ndarray:
        return 10.0 ** (self.intercept + self.slope * np.log10(frequencies))


# --------------------------------------------------------------------------------------------------
# Chunks


def chunk_starts(episode_ends: np.ndarray, chunk: int, stride: int = 1) -> np.ndarray:
    """(M,) int64 first step of every chunk of ``chunk`` steps that lies inside one episode, every ``stride`` steps."""
    if chunk < 1 or stride < 1:
        raise ValueError(f"chunk and stride must be >= 1, got {chunk} and {stride}")
    ends = np.asarray(episode_ends, dtype=np.int64)
    begins = np.concatenate([[0], ends[:-1]])
    counts = np.maximum(ends - begins - chunk, -1) // stride + 1  # -1 // stride + 1 == 0: too short
    first = np.repeat(np.cumsum(counts) - counts, counts)
    return np.repeat(begins, counts) + stride * (np.arange(counts.sum()) - first)


def gather_chunks(values: np.ndarray, starts: np.ndarray, chunk: int) -> np.ndarray:
    """(M, chunk, D) float64 windows ``values[s : s + chunk]`` for each start s."""
    return np.asarray(values)[np.asarray(starts)[:, None] + np.arange(chunk)].astype(np.float64)


# --------------------------------------------------------------------------------------------------
# Power spectral density


def psd(
    chunks: np.ndarray,
    fs: float = CONTROL_RATE_HZ,
    window: str = "hann",
    detrend: str = "constant",
) -> Spectrum:
    """Mean PSD of (M, H, D) chunks along axis 1 in the module's convention (doubled bins k >= 1)."""
    return _mean_psd([np.asarray(chunks, dtype=np.float64)], fs, window, detrend)


def chunk_psd(
    values: np.ndarray,
    starts: np.ndarray,
    chunk: int,
    fs: float = CONTROL_RATE_HZ,
    window: str = "hann",
    detrend: str = "constant",
    progress: Iterable | None = None,
) -> Spectrum:
    """Mean PSD of the chunks ``values[s : s + chunk]`` (values (N, D)), gathered in batches.

    progress: optional wrapper for the batch iterator (e.g. ``functools.partial(tqdm, desc=...)``).
    """
    batches = [starts[i : i + BATCH_CHUNKS] for i in range(0, len(starts), BATCH_CHUNKS)]
    iterator = progress(batches) if progress is not None else batches
    return _mean_psd((gather_chunks(values, batch, chunk) for batch in iterator), fs, window, detrend)


def white_noise_floor(std: float | np.ndarray, fs: float = CONTROL_RATE_HZ) -> float | np.ndarray:
    """Flat PSD level of white noise of standard deviation ``std``: 2 std^2 / fs (module docstring)."""
    return 2.0 * np.square(std) / fs


def masking_floor(sigma: float | np.ndarray, fs: float = CONTROL_RATE_HZ) -> float | np.ndarray:
    """Noise floor of the variance-preserving forward process at ``sigma``, in clean-signal units.

    x_sigma = sqrt(1 - sigma^2) x_0 + sigma eps shrinks the signal as it adds noise; dividing by the
    shrink factor, the noise seen against x_0 has std sigma / sqrt(1 - sigma^2). Frequencies where a
    PSD of x_0 (or of a clean-minus-corrupt difference) lies below this floor are masked at sigma.
    """
    sigma = np.asarray(sigma, dtype=np.float64)
    if np.any((sigma < 0) | (sigma >= 1)):
        raise ValueError(f"sigma must be in [0, 1), got {sigma}")
    floor = white_noise_floor(sigma / np.sqrt(1.0 - sigma**2), fs)
    return float(floor) if floor.ndim == 0 else floor


def fit_power_law(
    frequencies: np.ndarray, power: np.ndarray, fmin: float | None = None, fmax: float | None = None
) -> PowerLaw:
    """Least-squares line through (log10 f, log10 P) over the bins with f > 0 (DC excluded) in [fmin, fmax]."""
    frequencies, power = np.asarray(frequencies, dtype=np.float64), np.asarray(power, dtype=np.float64)
    keep = (frequencies > 0) & (power > 0) & np.isfinite(power)
    if fmin is not None:
        keep &= frequencies >= fmin
    if fmax is not None:
        keep &= frequencies <= fmax
    if keep.sum() < 2:
        raise ValueError(f"a power-law fit needs at least 2 positive-frequency bins with power > 0, got {keep.sum()}")
    slope, intercept = np.polyfit(np.log10(frequencies[keep]), np.log10(power[keep]), 1)
    return PowerLaw(float(slope), float(intercept))


def _mean_psd(batches: Iterator[np.ndarray] | list[np.ndarray], fs: float, window: str, detrend: str) -> Spectrum:
    total, count, length = None, 0, 0
    for chunks in batches:
        power = _periodograms(chunks, fs, window, detrend)
        total = power.sum(axis=0) if total is None else total + power.sum(axis=0)
        count, length = count + len(chunks), chunks.shape[1]
    if count == 0:
        raise ValueError("no chunks to take a PSD of")
    return Spectrum(np.fft.rfftfreq(length, d=1.0 / fs), total / count, count)


def _periodograms(chunks: np.ndarray, fs: float, window: str, detrend: str) -> np.ndarray:
    """(M, F, D) PSD of each of the (M, H, D) chunks in the module's convention."""
    if detrend not in DETRENDS:
        raise ValueError(f"detrend must be one of {DETRENDS}, got {detrend!r}")
    if chunks.ndim != 3:
        raise ValueError(f"chunks must be (M, H, D), got shape {chunks.shape}")
    if chunks.shape[1] < 2:
        raise ValueError(f"chunks need at least 2 steps, got {chunks.shape[1]}")
    taper = get_window(window, chunks.shape[1]).astype(np.float64)  # periodic ("DFT-even") window
    power = np.abs(np.fft.rfft(_detrended(chunks, detrend) * taper[None, :, None], axis=1)) ** 2
    scale = np.full(power.shape[1], 2.0 / (fs * np.sum(taper**2)))
    scale[0] /= 2.0
    return power * scale[None, :, None]


def _detrended(chunks: np.ndarray, detrend: str) -> np.ndarray:
    if detrend == "none":
        return chunks
    centred = chunks - chunks.mean(axis=1, keepdims=True)
    if detrend == "constant":
        return centred
    ramp = np.arange(chunks.shape[1]) - (chunks.shape[1] - 1) / 2.0
    slope = np.einsum("mhd,h->md", centred, ramp) / np.sum(ramp**2)
    return centred - slope[:, None, :] * ramp[None, :, None]


# --------------------------------------------------------------------------------------------------
# Corruption spectrum and its baselines


@dataclass(frozen=True)
class MatchedPairs:
    """Query chunks paired with reference chunks by the state at their first step, nearest ranks first."""

    query_starts: np.ndarray  # (P,) step index of each pair's query chunk
    reference_starts: np.ndarray  # (P,) step index of its neighbour's chunk
    distances: np.ndarray  # (P,) state distance of each pair (metres, angles via angle_scale)
    query_episodes: np.ndarray  # (P,) episode of the query chunk in its set
    reference_episodes: np.ndarray  # (P,) episode of the neighbour's chunk in its set


@dataclass(frozen=True)
class CorruptionSpectrum:
    """The PSD of (clean chunk - nearest corrupt chunk) over pairs matched by state."""

    spectrum: Spectrum
    clean_starts: np.ndarray  # (P,) step index of each pair's clean chunk
    corrupt_starts: np.ndarray  # (P,) step index of its corrupt neighbour's chunk
    distances: np.ndarray  # (P,) state distance of each pair (metres, angles via angle_scale)


@dataclass(frozen=True)
class BinnedSpectra:
    """PSD of (query chunk - reference chunk) over matched pairs, overall and per state-distance bin."""

    overall: Spectrum  # every pair, whatever its distance
    bins: list[Spectrum | None]  # one per bin; None where it holds fewer than min_bin_pairs pairs
    pair_bins: np.ndarray  # (P,) bin of each pair, -1 beyond the last edge
    episodes_per_bin: np.ndarray  # (B,) query episodes with a pair in each bin
    draws: np.ndarray  # (n_draws, B, F) bootstrap mean-over-dims PSD per bin; NaN where a draw keeps no pair there

    @property
    def counts(self) -> np.ndarray:
        """(B,) pairs in each bin."""
        return np.bincount(self.pair_bins[self.pair_bins >= 0], minlength=len(self.bins))


@dataclass(frozen=True)
class Comparison:
    """One set's chunks against their nearest neighbours' chunks: the pairs and the PSD of their differences."""

    query: str  # "clean" or "corrupt"
    reference: str
    pairs: MatchedPairs
    spectra: BinnedSpectra


@dataclass(frozen=True)
class CorruptionComparison:
    """The corruption spectrum beside its baselines, binned by state distance (science.md §7).

    Two demonstrations from nearby states differ by their own variety (two valid pushes), so clean vs
    corrupt is read against clean vs other clean at the same state distance: only the excess over that
    baseline is corruption. Corrupt vs other corrupt shows the corrupt set's own variety.
    """

    edges: np.ndarray  # (B + 1,) state-distance bin edges, from the clean-vs-corrupt distances
    clean_vs_corrupt: Comparison
    clean_vs_clean: Comparison | None  # None: not asked for, or fewer than two clean episodes hold a chunk
    corrupt_vs_corrupt: Comparison | None  # likewise for the corrupt set

    @property
    def frequencies(self) -> np.ndarray:
        return self.clean_vs_corrupt.spectra.overall.frequencies

    def excess(self) -> tuple[list[np.ndarray | None], np.ndarray]:
        """Per bin, clean-vs-corrupt minus clean-vs-clean mean PSD ((F,), None where a bin lacks either), and its draws.

        Both comparisons query the same clean chunks under the same resampled episodes, so the
        draws' difference is a paired bootstrap: (n_draws, B, F).
        """
        corrupt, clean = self.clean_vs_corrupt.spectra, self._baseline().spectra
        means = [None if a is None or b is None else a.mean - b.mean for a, b in zip(corrupt.bins, clean.bins)]
        return means, corrupt.draws - clean.draws

    def matched_bins(self) -> np.ndarray:
        """Indices of the bins that both clean vs corrupt and clean vs clean populate."""
        corrupt, clean = self.clean_vs_corrupt.spectra, self._baseline().spectra
        shared = [b for b, (x, y) in enumerate(zip(corrupt.bins, clean.bins)) if x is not None and y is not None]
        return np.array(shared, dtype=np.int64)

    def matched_weights(self) -> np.ndarray:
        """Weights of the matched bins: their share of the clean-vs-corrupt pairs among those bins."""
        counts = self.clean_vs_corrupt.spectra.counts[self.matched_bins()].astype(np.float64)
        return counts / counts.sum() if counts.sum() > 0 else counts

    def matched(self, comparison: Comparison) -> tuple[np.ndarray, np.ndarray] | None:
        """A comparison's mean PSD (F,) and draws (n_draws, F) averaged over the matched bins with their weights.

        This re-weights each comparison to the clean-vs-corrupt distance mix, so that a set whose
        neighbours are nearer is not credited with less variety. None if it misses a matched bin.
        """
        bins, weights = self.matched_bins(), self.matched_weights()
        if len(bins) == 0 or any(comparison.spectra.bins[b] is None for b in bins):
            return None
        mean = sum(w * comparison.spectra.bins[b].mean for b, w in zip(bins, weights))
        return mean, np.einsum("dbf,b->df", comparison.spectra.draws[:, bins], weights)

    def _baseline(self) -> Comparison:
        if self.clean_vs_clean is None:
            raise ValueError("no clean-vs-clean baseline was computed")
        return self.clean_vs_clean


def corruption_comparison(
    clean: Demonstrations,
    corrupt: Demonstrations,
    chunk: int,
    n_pairs: int = 10_000,
    n_bins: int = 3,
    baselines: bool = True,
    n_draws: int = 1000,
    min_bin_pairs: int = 10,
    angle_scale: float = DEFAULT_ANGLE_SCALE_M,
    rng: np.random.Generator | None = None,
    fs: float = CONTROL_RATE_HZ,
    window: str = "hann",
    detrend: str = "constant",
) -> CorruptionComparison:
    """Clean vs corrupt, clean vs other clean and corrupt vs other corrupt chunk differences, binned by state distance.

    Every comparison pairs ``n_pairs`` chunks the same way (``match_by_state``); clean vs clean
    queries the very clean chunks that clean vs corrupt does, each paired with its nearest clean chunk
    of another episode. The ``n_bins`` bins have equal counts of clean-vs-corrupt pairs
    (``distance_bin_edges``); a baseline pair beyond the last edge falls in no bin. Each of the
    ``n_draws`` bootstrap draws resamples the clean and the corrupt episodes once, and every
    comparison uses those draws (``difference_spectra``), so the excess's draws are paired.
    """
    if clean.action.shape[1] != corrupt.action.shape[1]:
        raise ValueError(f"action dims differ: clean {clean.action.shape[1]}, corrupt {corrupt.action.shape[1]}")
    rng = rng if rng is not None else np.random.default_rng(0)
    clean_index = ChunkIndex(clean, chunk, angle_scale, "clean")
    corrupt_index = ChunkIndex(corrupt, chunk, angle_scale, "corrupt")
    clean_queries = sample_queries(clean_index.starts, n_pairs, rng)
    corrupt_queries = sample_queries(corrupt_index.starts, n_pairs, rng)
    clean_weights = bootstrap_weights(len(clean.episode_ends), n_draws, rng)
    corrupt_weights = bootstrap_weights(len(corrupt.episode_ends), n_draws, rng)
    pairs = match_by_state(clean, clean_queries, corrupt_index, n_pairs)
    edges = distance_bin_edges(pairs.distances, n_bins)

    def spectra(queries, references, matched: MatchedPairs, query_weights, reference_weights) -> BinnedSpectra:
        return difference_spectra(queries, references, matched, chunk, edges, query_weights, reference_weights,
                                  min_bin_pairs, fs, window, detrend)

    def baseline(name: str, index: ChunkIndex, starts: np.ndarray, weights: np.ndarray) -> Comparison | None:
        if not baselines or len(np.unique(index.episodes)) < 2:
            return None
        matched = match_by_state(index.demos, starts, index, n_pairs, other_episodes_only=True)
        return Comparison(name, name, matched, spectra(index.demos, index.demos, matched, weights, weights))

    return CorruptionComparison(
        edges=edges,
        clean_vs_corrupt=Comparison("clean", "corrupt", pairs,
                                    spectra(clean, corrupt, pairs, clean_weights, corrupt_weights)),
        clean_vs_clean=baseline("clean", clean_index, clean_queries, clean_weights),
        corrupt_vs_corrupt=baseline("corrupt", corrupt_index, corrupt_queries, corrupt_weights),
    )


def corruption_spectrum(
    clean: Demonstrations,
    corrupt: Demonstrations,
    chunk: int,
    n_pairs: int = 10_000,
    angle_scale: float = DEFAULT_ANGLE_SCALE_M,
    rng: np.random.Generator | None = None,
    fs: float = CONTROL_RATE_HZ,
    window: str = "hann",
    detrend: str = "constant",
) -> CorruptionSpectrum:
    """PSD of clean-minus-corrupt action chunks, each clean chunk paired with its nearest corrupt neighbours by state.

    The pairs are those of ``corruption_comparison``'s clean vs corrupt; no baselines, no bins.
    """
    if clean.action.shape[1] != corrupt.action.shape[1]:
        raise ValueError(f"action dims differ: clean {clean.action.shape[1]}, corrupt {corrupt.action.shape[1]}")
    rng = rng if rng is not None else np.random.default_rng(0)
    queries = sample_queries(ChunkIndex(clean, chunk, angle_scale, "clean").starts, n_pairs, rng)
    pairs = match_by_state(clean, queries, ChunkIndex(corrupt, chunk, angle_scale, "corrupt"), n_pairs)
    batches = (difference for _, difference in _differences(clean, corrupt, pairs, chunk))
    spectrum = _mean_psd(batches, fs, window, detrend)
    return CorruptionSpectrum(spectrum, pairs.query_starts, pairs.reference_starts, pairs.distances)


class ChunkIndex:
    """Every full chunk of one set, searchable by the state at its first step (a sample of the spectra)."""

    def __init__(self, demos: Demonstrations, chunk: int, angle_scale: float = DEFAULT_ANGLE_SCALE_M, name: str = ""):
        self.demos, self.chunk, self.angle_scale = demos, chunk, angle_scale
        self.starts = chunk_starts(demos.episode_ends, chunk)  # (M,) first step of each chunk
        if len(self.starts) == 0:
            raise ValueError(f"no episode of {chunk} steps or more in the {name or 'reference'} set")
        self.episodes = episode_of(self.starts, demos.episode_ends)  # (M,) episode of each chunk

    @cached_property
    def states(self) -> StateIndex:
        return StateIndex(self.demos.slider_pose[self.starts], self.demos.agent_pos[self.starts], self.angle_scale)


def sample_queries(candidates: np.ndarray, n_pairs: int, rng: np.random.Generator) -> np.ndarray:
    """(Q,) sorted query chunk starts: ``n_pairs`` of the candidates drawn without replacement, or all if fewer."""
    if n_pairs < 1:
        raise ValueError(f"n_pairs must be >= 1, got {n_pairs}")
    if len(candidates) >= n_pairs:
        return np.sort(rng.choice(candidates, size=n_pairs, replace=False))
    return np.asarray(candidates)


def match_by_state(
    queries: Demonstrations,
    query_starts: np.ndarray,
    references: ChunkIndex,
    n_pairs: int,
    other_episodes_only: bool = False,
) -> MatchedPairs:
    """Pair each query chunk with its k nearest reference chunks by state, k = ceil(n_pairs / queries).

    other_episodes_only: the references are the queries' own set, and a chunk is never paired with
    one of its own episode (the baseline of two demonstrations from nearby states). k is capped by the
    reference chunks available; the pairs are ordered rank-major and cut to ``n_pairs``, so every
    query keeps its nearer neighbours.
    """
    states = queries.slider_pose[query_starts], queries.agent_pos[query_starts]
    query_episodes = episode_of(query_starts, queries.episode_ends)
    wanted = math.ceil(n_pairs / len(query_starts))
    if other_episodes_only:
        if references.demos is not queries:
            raise ValueError("other_episodes_only pairs a set with itself: references must index the queries' set")
        own = np.bincount(references.episodes, minlength=len(queries.episode_ends))[query_episodes].max()
        k = min(wanted, len(references.starts) - own)
        distances, neighbours = references.states.query_other_groups(*states, query_episodes, references.episodes, k)
    else:
        k = min(wanted, len(references.starts))
        distances, neighbours = references.states.query(*states, k)
    neighbours = neighbours.T.reshape(-1)[:n_pairs]  # rank-major
    return MatchedPairs(
        query_starts=np.tile(query_starts, k)[:n_pairs],
        reference_starts=references.starts[neighbours],
        distances=distances.T.reshape(-1)[:n_pairs],
        query_episodes=np.tile(query_episodes, k)[:n_pairs],
        reference_episodes=references.episodes[neighbours],
    )


def episode_of(starts: np.ndarray, episode_ends: np.ndarray) -> np.ndarray:
    """(M,) int64 index of the episode holding each step."""
    return np.searchsorted(np.asarray(episode_ends), np.asarray(starts), side="right").astype(np.int64)


def distance_bin_edges(distances: np.ndarray, n_bins: int) -> np.ndarray:
    """(n_bins + 1,) edges 0, the 1/n .. (n-1)/n quantiles of ``distances`` and their maximum: equal-count bins."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    edges = np.quantile(np.asarray(distances, dtype=np.float64), np.linspace(0.0, 1.0, n_bins + 1))
    edges[0] = 0.0
    return edges


def distance_bins(distances: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """(P,) bin of each distance: b where edges[b] <= d < edges[b + 1] (the last bin closed), -1 beyond."""
    distances = np.asarray(distances)
    bins = np.minimum(np.searchsorted(edges, distances, side="right") - 1, len(edges) - 2)
    return np.where(distances > edges[-1], -1, bins)


def bootstrap_weights(n_episodes: int, n_draws: int, rng: np.random.Generator) -> np.ndarray:
    """(n_draws, n_episodes) times each episode is drawn in each bootstrap resample of the episodes."""
    drawn = rng.integers(0, n_episodes, size=(n_draws, n_episodes)) + n_episodes * np.arange(n_draws)[:, None]
    return np.bincount(drawn.reshape(-1), minlength=n_draws * n_episodes).reshape(n_draws, n_episodes)


def difference_spectra(
    queries: Demonstrations,
    references: Demonstrations,
    pairs: MatchedPairs,
    chunk: int,
    edges: np.ndarray,
    query_weights: np.ndarray | None = None,
    reference_weights: np.ndarray | None = None,
    min_bin_pairs: int = 10,
    fs: float = CONTROL_RATE_HZ,
    window: str = "hann",
    detrend: str = "constant",
) -> BinnedSpectra:
    """Mean PSD of the pairs' chunk differences, overall and per distance bin, with bootstrap draws per bin.

    query_weights, reference_weights: (n_draws, E) times each episode of the query (reference) set is
    drawn (``bootstrap_weights``); pass the same array twice when both sides are one set. A draw's bin
    mean weights each pair by the product of its two episodes' counts (a two-way cluster bootstrap:
    a pair depends on both demonstrations), so the interval covers the reference set's variety too.
    """
    n_bins = len(edges) - 1
    pair_bins = distance_bins(pairs.distances, edges)
    slot = np.where(pair_bins < 0, n_bins, pair_bins)  # n_bins: beyond the edges
    # Pairs that share a bin and both episodes are interchangeable in every draw: sum them once.
    cells, cell_of_pair = np.unique(
        np.column_stack([slot, pairs.query_episodes, pairs.reference_episodes]), axis=0, return_inverse=True)
    cell_of_pair = cell_of_pair.reshape(-1)
    n_freq, n_dims = chunk // 2 + 1, queries.action.shape[1]
    bin_sums = np.zeros((n_bins + 1, n_freq, n_dims))
    cell_sums = np.zeros((len(cells), n_freq))
    for batch, difference in _differences(queries, references, pairs, chunk):
        power = _periodograms(difference, fs, window, detrend)
        np.add.at(bin_sums, slot[batch], power)
        np.add.at(cell_sums, cell_of_pair[batch], power.mean(axis=2))
    cell_counts = np.bincount(cell_of_pair, minlength=len(cells)).astype(np.float64)
    frequencies = np.fft.rfftfreq(chunk, d=1.0 / fs)
    counts = np.bincount(slot, minlength=n_bins + 1)
    bins = [
        Spectrum(frequencies, bin_sums[b] / counts[b], int(counts[b])) if counts[b] >= max(1, min_bin_pairs) else None
        for b in range(n_bins)
    ]
    draws = np.full((0 if query_weights is None else len(query_weights), n_bins, n_freq), np.nan)
    for b in range(n_bins):
        in_bin = cells[:, 0] == b
        if query_weights is not None and in_bin.any():
            weight = query_weights[:, cells[in_bin, 1]] * reference_weights[:, cells[in_bin, 2]]  # (n_draws, cells)
            with np.errstate(invalid="ignore", divide="ignore"):
                draws[:, b] = (weight @ cell_sums[in_bin]) / (weight @ cell_counts[in_bin])[:, None]
    return BinnedSpectra(
        overall=Spectrum(frequencies, bin_sums.sum(axis=0) / len(pair_bins), len(pair_bins)),
        bins=bins,
        pair_bins=pair_bins,
        episodes_per_bin=np.array([len(np.unique(cells[cells[:, 0] == b, 1])) for b in range(n_bins)]),
        draws=draws,
    )


def band_power(frequencies: np.ndarray, power: np.ndarray) -> np.ndarray:
    """Power summed over the positive-frequency bins times their width (DC left out), along the last axis."""
    frequencies = np.asarray(frequencies)
    return np.sum(np.asarray(power)[..., frequencies > 0], axis=-1) * frequencies[1]


def percentile_interval(draws: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """The central ``level`` interval of bootstrap draws along axis 0, ignoring draws that are NaN."""
    tail = 50.0 * (1.0 - level)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices: no interval
        low, high = np.nanpercentile(draws, [tail, 100.0 - tail], axis=0)
    return low, high


def _differences(
    queries: Demonstrations, references: Demonstrations, pairs: MatchedPairs, chunk: int
) -> Iterator[tuple[slice, np.ndarray]]:
    """(batch, query chunks - reference chunks) for the pairs, BATCH_CHUNKS at a time."""
    for i in range(0, len(pairs.query_starts), BATCH_CHUNKS):
        batch = slice(i, i + BATCH_CHUNKS)
        yield batch, (gather_chunks(queries.action, pairs.query_starts[batch], chunk)
                      - gather_chunks(references.action, pairs.reference_starts[batch], chunk))

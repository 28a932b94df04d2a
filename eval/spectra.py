"""Power spectra of action chunks: PSD, power-law fit, Gaussian noise floors and the corruption spectrum.

Pure numpy/scipy functions on in-memory arrays (science.md §5); ``eval.analyze`` reads the stores and
draws the plots.

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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

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


@dataclass(frozen=True)
class CorruptionSpectrum:
    """The PSD of (clean chunk - nearest corrupt chunk) over pairs matched by state."""

    spectrum: Spectrum
    clean_starts: np.ndarray  # (P,) step index of each pair's clean chunk
    corrupt_starts: np.ndarray  # (P,) step index of its corrupt neighbour's chunk
    distances: np.ndarray  # (P,) state distance of each pair (metres, angles via angle_scale)


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
    if detrend not in DETRENDS:
        raise ValueError(f"detrend must be one of {DETRENDS}, got {detrend!r}")
    total, count, taper = None, 0, None
    for chunks in batches:
        if chunks.ndim != 3:
            raise ValueError(f"chunks must be (M, H, D), got shape {chunks.shape}")
        length = chunks.shape[1]
        if taper is None:
            if length < 2:
                raise ValueError(f"chunks need at least 2 steps, got {length}")
            taper = get_window(window, length).astype(np.float64)  # periodic ("DFT-even") window
        power = np.abs(np.fft.rfft(_detrended(chunks, detrend) * taper[None, :, None], axis=1)) ** 2
        batch_total = power.sum(axis=0)
        total = batch_total if total is None else total + batch_total
        count += len(chunks)
    if count == 0:
        raise ValueError("no chunks to take a PSD of")
    scale = np.full(total.shape[0], 2.0 / (fs * np.sum(taper**2)))
    scale[0] /= 2.0
    return Spectrum(np.fft.rfftfreq(length, d=1.0 / fs), total / count * scale[:, None], count)


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
# Corruption spectrum


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
    """PSD of clean-minus-corrupt action chunks, each clean chunk paired with its nearest corrupt neighbour by state.

    A sample is a step that starts a full chunk inside its episode; its state is the slider pose and
    pusher position at that step. With at least ``n_pairs`` clean samples, ``n_pairs`` of them are
    drawn without replacement and each takes its nearest corrupt sample; with fewer, every clean
    sample takes its k nearest (k = ceil(n_pairs / clean samples)) and the first ``n_pairs`` pairs,
    nearest ranks first, are kept.
    """
    if n_pairs < 1:
        raise ValueError(f"n_pairs must be >= 1, got {n_pairs}")
    if clean.action.shape[1] != corrupt.action.shape[1]:
        raise ValueError(f"action dims differ: clean {clean.action.shape[1]}, corrupt {corrupt.action.shape[1]}")
    rng = rng if rng is not None else np.random.default_rng(0)
    clean_candidates = chunk_starts(clean.episode_ends, chunk)
    corrupt_candidates = chunk_starts(corrupt.episode_ends, chunk)
    if len(clean_candidates) == 0 or len(corrupt_candidates) == 0:
        which = "clean" if len(clean_candidates) == 0 else "corrupt"
        raise ValueError(f"no episode of {chunk} steps or more in the {which} set")
    if len(clean_candidates) >= n_pairs:
        queries, k = np.sort(rng.choice(clean_candidates, size=n_pairs, replace=False)), 1
    else:
        queries = clean_candidates
        k = min(math.ceil(n_pairs / len(queries)), len(corrupt_candidates))
    index = StateIndex(corrupt.slider_pose[corrupt_candidates], corrupt.agent_pos[corrupt_candidates], angle_scale)
    distances, neighbours = index.query(clean.slider_pose[queries], clean.agent_pos[queries], k)
    # Rank-major order, so that truncating to n_pairs keeps every clean sample's nearer neighbours.
    clean_starts = np.tile(queries, k)[:n_pairs]
    corrupt_starts = corrupt_candidates[neighbours.T.reshape(-1)][:n_pairs]
    distances = distances.T.reshape(-1)[:n_pairs]

    def differences() -> Iterator[np.ndarray]:
        for i in range(0, len(clean_starts), BATCH_CHUNKS):
            yield gather_chunks(clean.action, clean_starts[i : i + BATCH_CHUNKS], chunk) - gather_chunks(
                corrupt.action, corrupt_starts[i : i + BATCH_CHUNKS], chunk
            )

    spectrum = _mean_psd(differences(), fs, window, detrend)
    return CorruptionSpectrum(spectrum, clean_starts, corrupt_starts, distances)


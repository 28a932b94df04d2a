"""Ambient Diffusion training pieces: ambient targets, the sigma_min buffer, and the admission sampler.

Formulas are those of science.md §3 (variance-preserving noise, sigma in [0, 1]). A corrupt action
chunk is treated as y = x_{sigma_min} = sqrt(1 - s_m^2) x_0 + s_m eps; clean data has s_m = 0, for
which every function here reduces to ordinary denoising.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from policies.noise import add_noise, broadcast_to_sample, first_admissible_step

SAMPLER_MODES = ("ambient", "cotrain", "clean")


# --- ambient targets --------------------------------------------------------------------------


def ambient_noisy_input(
    y: torch.Tensor, z: torch.Tensor, sigma_t: torch.Tensor | float, sigma_min: torch.Tensor | float
) -> torch.Tensor:
    """Noise y = x_{s_m} on to s_t: x_t = r y + sqrt((s_t^2 - s_m^2) / (1 - s_m^2)) z, r = sqrt(1-s_t^2)/sqrt(1-s_m^2)."""
    s_t = broadcast_to_sample(sigma_t, y)
    s_m = broadcast_to_sample(sigma_min, y)
    r = torch.sqrt(1 - s_t**2) / torch.sqrt(1 - s_m**2)
    return r * y + torch.sqrt((s_t**2 - s_m**2) / (1 - s_m**2)) * z


def ambient_x0_target(
    x_t: torch.Tensor, y: torch.Tensor, sigma_t: torch.Tensor | float, sigma_min: torch.Tensor | float
) -> torch.Tensor:
    """x0-prediction target h* = [s_t^2 sqrt(1-s_m^2) y - s_m^2 sqrt(1-s_t^2) x_t] / (s_t^2 - s_m^2)."""
    s_t = broadcast_to_sample(sigma_t, x_t)
    s_m = broadcast_to_sample(sigma_min, x_t)
    return (s_t**2 * torch.sqrt(1 - s_m**2) * y - s_m**2 * torch.sqrt(1 - s_t**2) * x_t) / (s_t**2 - s_m**2)


def ambient_eps_target(
    x_t: torch.Tensor, y: torch.Tensor, sigma_t: torch.Tensor | float, sigma_min: torch.Tensor | float
) -> torch.Tensor:
    """eps-prediction target eps* = s_t [(1-s_m^2) x_t - sqrt(1-s_t^2) sqrt(1-s_m^2) y] / (s_t^2 - s_m^2)."""
    s_t = broadcast_to_sample(sigma_t, x_t)
    s_m = broadcast_to_sample(sigma_min, x_t)
    return (
        s_t * ((1 - s_m**2) * x_t - torch.sqrt(1 - s_t**2) * torch.sqrt(1 - s_m**2) * y) / (s_t**2 - s_m**2)
    )


def ambient_training_pair(
    a: torch.Tensor,
    z1: torch.Tensor,
    z: torch.Tensor,
    sigma_t: torch.Tensor | float,
    sigma_min: torch.Tensor | float,
    prediction_type: str = "epsilon",
    *,
    contract: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_t, target) for action chunks ``a`` with per-element sigma_min (0: plain denoising of ``a``).

    With ``contract`` (the default), first the contraction: y = sqrt(1 - s_m^2) a + s_m z1, so that a
    corrupt chunk becomes a draw of q_{s_m}, which matches p_{s_m}; only then is y noised on to s_t
    and the ambient target formed from it. Treating the raw chunk as x_{s_m} instead biases the
    denoiser even when the corrupt data equals the clean data. Without it y = a ("idea 2"), right
    only for data that already are noisy copies at level s_m (contracting those again would put them
    at s' with s'^2 = 2 s_m^2 - s_m^4). z1, z: independent standard normal noise shaped like ``a``
    (z1 unused without the contraction).
    """
    y = add_noise(a, z1, sigma_min) if contract else a
    x_t = ambient_noisy_input(y, z, sigma_t, sigma_min)
    if prediction_type == "epsilon":
        return x_t, ambient_eps_target(x_t, y, sigma_t, sigma_min)
    if prediction_type == "sample":
        return x_t, ambient_x0_target(x_t, y, sigma_t, sigma_min)
    raise ValueError(f"prediction_type must be 'epsilon' or 'sample', got {prediction_type!r}")


def buffer_factor(s_max_factor: float = 4.0) -> float:
    """b = sqrt(1 + 1/(s_max_factor - 1)): admitting only s_t > b s_m caps s_t^2/(s_t^2 - s_m^2) at s_max_factor."""
    if s_max_factor <= 1:
        raise ValueError(f"s_max_factor must exceed 1, got {s_max_factor}")
    return math.sqrt(1 + 1 / (s_max_factor - 1))


# --- admission sampler ------------------------------------------------------------------------

AlphaSpec = float | Callable[[np.ndarray], np.ndarray] | np.ndarray
ADMISSION_ORDERS = ("sample_first", "step_first")


def linear_alpha_schedule(alpha_low_noise: float, alpha_high_noise: float) -> Callable[[np.ndarray], np.ndarray]:
    """The "alpha_t" variant: clean weight linear in sigma, alpha_low_noise at sigma=0, alpha_high_noise at sigma=1."""

    def alpha(sigma: np.ndarray) -> np.ndarray:
        return alpha_low_noise + (alpha_high_noise - alpha_low_noise) * np.asarray(sigma, dtype=np.float64)

    return alpha


@dataclass(frozen=True)
class AdmissionBatch:
    """One training batch of (sample, noise level) draws, all arrays of shape (B,).

    index: into the concatenation [clean samples, corrupt samples]; pool_index: within its own pool.
    ambient_sigma_min: the sigma_min to feed the ambient targets (s_m for corrupt samples drawn at a
    step of their high-noise branch in ambient mode, else 0: clean, low-noise branch, cotrain).
    """

    t: np.ndarray
    sigma: np.ndarray
    is_clean: np.ndarray
    pool_index: np.ndarray
    index: np.ndarray
    ambient_sigma_min: np.ndarray


class AdmissionSampler:
    """Draws (sample, DDPM step) pairs for clean, cotrain and ambient training (science.md §3).

    Corrupt sample i is admissible at step t iff sigma_t > buffer * sigma_min_i (the high-noise
    branch: t >= k_i) or sigma_t < sigma_max_i (the low-noise branch, off unless sigma_max is given:
    t < m_i). Clean samples are admissible at every step. Modes share this code: "ambient";
    "cotrain" (every corrupt sample admissible everywhere); "clean" (none ever).

    order "sample_first" (the method's algorithm, the default): an element is clean with probability
    alpha-bar (the mean of alpha(t) over steps), then a sample uniform in its pool (corrupt: among
    those admissible somewhere), then a step: clean t with weight alpha(t), corrupt t among the
    sample's admissible steps with weight 1 - alpha(t) (uniform for a constant alpha). Every sample
    keeps its weight, and a corrupt one spends it where it is admissible, so
    P(clean | t) = (alpha_t / T) / (alpha_t / T + (1 - alpha-bar)(1 - alpha_t) / N' sum_i adm_i(t) / W_i),
    with W_i the sample's admissible weight and N' the corrupt samples admissible somewhere.

    order "step_first" (the fixed-weight form): t uniform, then clean with
    P(clean | t) = alpha_t / (alpha_t + (1 - alpha_t) N_adm(t) / N_corrupt), else a corrupt sample
    uniform among those admissible at t: each (corrupt sample, admissible step) pair has the same
    weight, so a corrupt sample admissible at fewer steps is drawn less.

    sigmas: (T,) increasing sigma per DDPM step. alpha: a float, a callable sigma -> clean weight,
    or a (T,) array of clean weights per step. corrupt_sigma_min / corrupt_sigma_max: (N_corrupt,)
    per-sample values, or None to use the dataset-level sigma_min / sigma_max for all.
    buffer: the factor b on sigma_min (1: none; ``buffer_factor(4)`` for the ambient loss).
    """

    def __init__(
        self,
        sigmas: np.ndarray | torch.Tensor,
        num_clean: int,
        num_corrupt: int,
        alpha: AlphaSpec = 0.5,
        mode: str = "ambient",
        corrupt_sigma_min: np.ndarray | None = None,
        sigma_min: float | None = None,
        buffer: float = 1.0,
        corrupt_sigma_max: np.ndarray | None = None,
        sigma_max: float | None = None,
        order: str = "sample_first",
    ):
        if mode not in SAMPLER_MODES:
            raise ValueError(f"mode must be one of {SAMPLER_MODES}, got {mode!r}")
        if order not in ADMISSION_ORDERS:
            raise ValueError(f"order must be one of {ADMISSION_ORDERS}, got {order!r}")
        if num_clean <= 0 and mode != "cotrain":
            raise ValueError(f"mode {mode!r} needs clean samples: at some sigma no corrupt one may be admissible")
        if buffer < 1:
            raise ValueError(f"buffer must be >= 1, got {buffer}")
        if torch.is_tensor(sigmas):
            sigmas = sigmas.detach().cpu().numpy()
        self.sigmas = np.asarray(sigmas, dtype=np.float64)
        self.num_train_timesteps = T = len(self.sigmas)
        self.num_clean = int(num_clean)
        self.num_corrupt = int(num_corrupt) if mode != "clean" else 0
        self.mode, self.order, self.buffer = mode, order, float(buffer)
        self.alpha_per_step = self._alpha_per_step(alpha)

        # Per corrupt sample: its high-noise branch is t >= k, its low-noise branch t < m.
        self.corrupt_sigma_min = self._per_sample(corrupt_sigma_min, sigma_min, "sigma_min", required=mode == "ambient")
        if mode == "ambient":
            self.high_start = first_admissible_step(self.buffer * self.corrupt_sigma_min, self.sigmas)
        else:
            self.high_start = np.zeros(self.num_corrupt, dtype=np.int64)
        sigma_max_values = self._per_sample(corrupt_sigma_max, sigma_max, "sigma_max", required=False)
        if mode == "ambient" and (corrupt_sigma_max is not None or sigma_max is not None):
            self.low_end = np.searchsorted(self.sigmas, sigma_max_values, side="left")  # sigma_t < sigma_max
        else:
            self.low_end = np.zeros(self.num_corrupt, dtype=np.int64)
        self.low_end = np.minimum(self.low_end, self.high_start)  # the union: [0, m) + [k, T)

        counts_high = np.bincount(self.high_start, minlength=T + 1)[:T].cumsum()
        counts_low = (self.num_corrupt - np.bincount(self.low_end, minlength=T + 1)[:T].cumsum())
        self.num_admissible_corrupt = counts_high + counts_low  # the two branches are disjoint now
        # Step-first draws a corrupt sample at t from the k-sorted prefix (high) or the m-sorted (low).
        self._order_high = np.argsort(self.high_start, kind="stable")
        self._order_low = np.argsort(-self.low_end, kind="stable")
        self._counts_high, self._counts_low = counts_high, counts_low

        # Sample-first: cumulative corrupt weights 1 - alpha(t) give each sample's admissible weight.
        corrupt_weight = 1.0 - self.alpha_per_step
        self._cumulative = np.concatenate([[0.0], np.cumsum(corrupt_weight)])
        self.corrupt_weight = self._cumulative[self.low_end] + self._cumulative[T] - self._cumulative[self.high_start]
        self._eligible = np.flatnonzero(self.corrupt_weight > 1e-12)
        # Clean steps with weight alpha(t) (so cotraining keeps P(clean | t) = alpha_t); uniform when
        # nothing corrupt can be drawn and every element is clean.
        clean_weight = self.alpha_per_step if self.clean_probability_overall < 1 else np.ones(T)
        self._clean_steps = np.cumsum(clean_weight)

    # ----------------------------------------------------------------------------------------------

    def _alpha_per_step(self, alpha: AlphaSpec) -> np.ndarray:
        if self.mode == "clean":
            return np.ones(self.num_train_timesteps)
        if self.num_clean == 0:
            return np.zeros(self.num_train_timesteps)
        if callable(alpha):
            values = np.asarray(alpha(self.sigmas.copy()), dtype=np.float64)
        else:
            values = np.broadcast_to(np.asarray(alpha, dtype=np.float64), (self.num_train_timesteps,)).copy()
        if values.shape != (self.num_train_timesteps,) or np.any((values < 0) | (values > 1)):
            raise ValueError("alpha must give one clean weight in [0, 1] per DDPM step")
        return values

    def _per_sample(self, values: np.ndarray | None, default: float | None, name: str, required: bool) -> np.ndarray:
        if values is None:
            if default is None:
                if required and self.num_corrupt:
                    raise ValueError(f"ambient mode needs corrupt_{name} or a dataset-level {name}")
                return np.zeros(self.num_corrupt)
            return np.full(self.num_corrupt, float(default))
        values = np.asarray(values, dtype=np.float64)
        if values.shape != (self.num_corrupt,):
            raise ValueError(f"corrupt_{name} must have shape ({self.num_corrupt},), got {values.shape}")
        if not np.all(np.isfinite(values)):
            raise ValueError(f"corrupt_{name} has non-finite entries")
        return values

    @property
    def num_corrupt_admissible_somewhere(self) -> int:
        """Corrupt samples admissible at some step (the others are never drawn)."""
        return int(len(self._eligible))

    @property
    def clean_probability_overall(self) -> float:
        """Sample-first: the probability that an element is clean (alpha-bar, or 1 with nothing admissible)."""
        if self.num_corrupt == 0 or len(self._eligible) == 0:
            return 1.0
        return float(self.alpha_per_step.mean())

    def clean_probability(self) -> np.ndarray:
        """(T,) exact probability that an element drawn at step t is clean, for this sampler's order."""
        alpha = self.alpha_per_step
        if self.order == "step_first":
            admissible = self.num_admissible_corrupt / max(1, self.num_corrupt)
            with np.errstate(invalid="ignore", divide="ignore"):
                p = alpha / (alpha + (1 - alpha) * admissible)
            return np.where(self.num_admissible_corrupt > 0, np.nan_to_num(p, nan=1.0), 1.0)
        p_clean = self.clean_probability_overall
        if p_clean == 1.0:
            return np.ones(self.num_train_timesteps)
        T = self.num_train_timesteps
        clean_joint = alpha / T
        # sum over eligible corrupt samples of adm_i(t) / W_i, by difference arrays over [0, m) and [k, T)
        inverse = np.zeros(T + 1)
        weights = 1.0 / self.corrupt_weight[self._eligible]
        inverse[0] = weights.sum()
        np.add.at(inverse, self.low_end[self._eligible], -weights)
        np.add.at(inverse, self.high_start[self._eligible], weights)
        per_step = np.cumsum(inverse)[:T]
        corrupt_joint = (1 - p_clean) * (1 - alpha) * per_step / len(self._eligible)
        total = clean_joint + corrupt_joint
        return np.where(total > 0, clean_joint / np.where(total > 0, total, 1.0), 1.0)

    # ----------------------------------------------------------------------------------------------

    def sample(self, batch_size: int, rng: np.random.Generator) -> AdmissionBatch:
        """Draw one batch of (sample, step) pairs in this sampler's order."""
        if self.order == "step_first":
            t, is_clean, corrupt_index = self._sample_step_first(batch_size, rng)
        else:
            t, is_clean, corrupt_index = self._sample_first(batch_size, rng)
        clean_index = rng.integers(0, max(self.num_clean, 1), size=batch_size)
        pool_index = np.where(is_clean, clean_index, corrupt_index)
        index = np.where(is_clean, pool_index, self.num_clean + pool_index)
        ambient_sigma_min = np.zeros(batch_size)
        if self.mode == "ambient" and self.num_corrupt > 0:
            high_noise = t >= self.high_start[corrupt_index]
            ambient_sigma_min = np.where(~is_clean & high_noise, self.corrupt_sigma_min[corrupt_index], 0.0)
        return AdmissionBatch(
            t=t, sigma=self.sigmas[t], is_clean=is_clean, pool_index=pool_index, index=index,
            ambient_sigma_min=ambient_sigma_min,
        )  # fmt: skip

    def _sample_first(self, batch_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        is_clean = rng.random(batch_size) < self.clean_probability_overall
        T = self.num_train_timesteps
        # Clean: t with weight alpha(t), by inverting the cumulative weights.
        u = rng.random(batch_size) * self._clean_steps[-1]
        clean_t = np.minimum(np.searchsorted(self._clean_steps, u, side="right"), T - 1)
        # Corrupt: a sample among those admissible somewhere, then t over [0, m) + [k, T) with weight 1 - alpha(t).
        if len(self._eligible) == 0:
            return clean_t, np.ones(batch_size, bool), np.zeros(batch_size, np.int64)
        corrupt_index = self._eligible[rng.integers(0, len(self._eligible), size=batch_size)]
        m, k = self.low_end[corrupt_index], self.high_start[corrupt_index]
        cumulative = self._cumulative
        u = rng.random(batch_size) * self.corrupt_weight[corrupt_index]
        low_weight = cumulative[m]
        position = np.where(u < low_weight, u, u - low_weight + cumulative[k])
        corrupt_t = np.clip(np.searchsorted(cumulative, position, side="right") - 1, 0, T - 1)
        return np.where(is_clean, clean_t, corrupt_t), is_clean, corrupt_index

    def _sample_step_first(self, batch_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        t = rng.integers(0, self.num_train_timesteps, size=batch_size)
        is_clean = rng.random(batch_size) < self.clean_probability()[t]
        n_high, n_low = self._counts_high[t], self._counts_low[t]
        position = np.minimum((rng.random(batch_size) * (n_high + n_low)).astype(np.int64), np.maximum(n_high + n_low - 1, 0))
        if self.num_corrupt:
            from_high = position < n_high
            corrupt_index = np.where(
                from_high,
                self._order_high[np.minimum(position, self.num_corrupt - 1)],
                self._order_low[np.clip(position - n_high, 0, self.num_corrupt - 1)],
            )
        else:
            corrupt_index = np.zeros(batch_size, np.int64)
        return t, is_clean, corrupt_index

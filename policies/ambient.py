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

from policies.noise import broadcast_to_sample

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
    y: torch.Tensor,
    z: torch.Tensor,
    sigma_t: torch.Tensor | float,
    sigma_min: torch.Tensor | float,
    prediction_type: str = "epsilon",
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_t, target) for a batch of chunks y with per-element sigma_min (0 for clean: plain denoising)."""
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


def linear_alpha_schedule(alpha_low_noise: float, alpha_high_noise: float) -> Callable[[np.ndarray], np.ndarray]:
    """The "alpha_t" variant: clean weight linear in sigma, alpha_low_noise at sigma=0, alpha_high_noise at sigma=1."""

    def alpha(sigma: np.ndarray) -> np.ndarray:
        return alpha_low_noise + (alpha_high_noise - alpha_low_noise) * np.asarray(sigma, dtype=np.float64)

    return alpha


@dataclass(frozen=True)
class AdmissionBatch:
    """One training batch of (noise level, sample) draws, all arrays of shape (B,).

    index: into the concatenation [clean samples, corrupt samples]; pool_index: within its own pool.
    ambient_sigma_min: the sigma_min to feed the ambient targets (s_m for corrupt samples admitted
    through the high-noise branch in ambient mode, else 0: clean, low-noise branch, cotrain).
    """

    t: np.ndarray
    sigma: np.ndarray
    is_clean: np.ndarray
    pool_index: np.ndarray
    index: np.ndarray
    ambient_sigma_min: np.ndarray


class AdmissionSampler:
    """Draws a DDPM step t per batch element first, then a sample admissible at sigma_t.

    Each element is clean with probability alpha(sigma_t) when some corrupt sample is admissible
    at sigma_t, else clean for sure; then a uniform draw among the admissible samples of its pool.
    Modes share this code path: "ambient" (corrupt sample i admissible iff sigma_t > b s_m_i, or
    sigma_t < sigma_max), "cotrain" (every corrupt sample admissible at every sigma_t) and "clean"
    (none ever admissible).

    sigmas: (T,) sigma per DDPM step. alpha: a float, a callable sigma -> clean weight, or a (T,)
    array of clean weights per step. corrupt_sigma_min: (N_corrupt,) per-sample values, NaN falls
    back to sigma_min (the dataset-level value), which is used for all when the array is None.
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
        s_max_factor: float = 4.0,
        sigma_max: float | None = None,
    ):
        if mode not in SAMPLER_MODES:
            raise ValueError(f"mode must be one of {SAMPLER_MODES}, got {mode!r}")
        if num_clean <= 0 and mode != "cotrain":
            raise ValueError(f"mode {mode!r} needs clean samples: at some sigma no corrupt one may be admissible")
        if torch.is_tensor(sigmas):
            sigmas = sigmas.detach().cpu().numpy()
        self.sigmas = np.asarray(sigmas, dtype=np.float64)
        self.num_train_timesteps = len(self.sigmas)
        self.num_clean = int(num_clean)
        self.num_corrupt = int(num_corrupt)
        self.mode = mode
        self.buffer = buffer_factor(s_max_factor)
        self.sigma_max = sigma_max
        self.alpha_per_step = self._alpha_per_step(alpha)

        sigma_min_per_sample = self._resolve_sigma_min(corrupt_sigma_min, sigma_min)
        # Sorting by sigma_min makes each step's high-noise admissible set a prefix of the order.
        self.corrupt_order = np.argsort(sigma_min_per_sample, kind="stable")
        self.corrupt_sigma_min_sorted = sigma_min_per_sample[self.corrupt_order]
        self.corrupt_sigma_min = sigma_min_per_sample
        self.num_high_noise_admissible = self._count_high_noise_admissible()
        low_noise = np.zeros(self.num_train_timesteps, dtype=bool)
        if mode == "ambient" and sigma_max is not None:
            low_noise = self.sigmas < sigma_max
        self.low_noise_branch_open = low_noise
        self.num_admissible_corrupt = np.where(low_noise, self.num_corrupt, self.num_high_noise_admissible)

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

    def _resolve_sigma_min(self, corrupt_sigma_min: np.ndarray | None, sigma_min: float | None) -> np.ndarray:
        if self.mode != "ambient" or self.num_corrupt == 0:
            return np.zeros(self.num_corrupt)
        if corrupt_sigma_min is None:
            if sigma_min is None:
                raise ValueError("ambient mode needs corrupt_sigma_min or a dataset-level sigma_min")
            return np.full(self.num_corrupt, float(sigma_min))
        values = np.asarray(corrupt_sigma_min, dtype=np.float64).copy()
        if values.shape != (self.num_corrupt,):
            raise ValueError(f"corrupt_sigma_min must have shape ({self.num_corrupt},), got {values.shape}")
        missing = np.isnan(values)
        if missing.any():
            if sigma_min is None:
                raise ValueError("corrupt_sigma_min has NaN entries and no dataset-level sigma_min")
            values[missing] = sigma_min
        return values

    def _count_high_noise_admissible(self) -> np.ndarray:
        if self.mode == "cotrain":
            return np.full(self.num_train_timesteps, self.num_corrupt)
        if self.mode == "clean":
            return np.zeros(self.num_train_timesteps, dtype=np.int64)
        # Admissible iff sigma_t > b s_m, i.e. the sorted thresholds strictly below sigma_t.
        return np.searchsorted(self.buffer * self.corrupt_sigma_min_sorted, self.sigmas, side="left")

    def clean_probability(self) -> np.ndarray:
        """(T,) probability that an element drawn at step t is clean."""
        return np.where(self.num_admissible_corrupt > 0, self.alpha_per_step, 1.0)

    def sample(self, batch_size: int, rng: np.random.Generator) -> AdmissionBatch:
        """Draw one batch: t uniform in [0, T), then clean/corrupt by alpha, then a uniform admissible sample."""
        t = rng.integers(0, self.num_train_timesteps, size=batch_size)
        is_clean = rng.random(batch_size) < self.clean_probability()[t]
        clean_index = rng.integers(0, max(self.num_clean, 1), size=batch_size)
        n_admissible = self.num_admissible_corrupt[t]
        position = np.minimum((rng.random(batch_size) * n_admissible).astype(np.int64), np.maximum(n_admissible - 1, 0))
        corrupt_index = self.corrupt_order[position] if self.num_corrupt > 0 else np.zeros(batch_size, np.int64)
        pool_index = np.where(is_clean, clean_index, corrupt_index)
        index = np.where(is_clean, pool_index, self.num_clean + pool_index)

        ambient_sigma_min = np.zeros(batch_size)
        if self.mode == "ambient" and self.num_corrupt > 0:
            sm = self.corrupt_sigma_min[corrupt_index]
            high_noise = self.sigmas[t] > self.buffer * sm
            ambient_sigma_min = np.where(~is_clean & high_noise, sm, 0.0)
        return AdmissionBatch(
            t=t,
            sigma=self.sigmas[t],
            is_clean=is_clean,
            pool_index=pool_index,
            index=index,
            ambient_sigma_min=ambient_sigma_min,
        )

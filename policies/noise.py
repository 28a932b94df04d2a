"""The DDPM noise schedule (squaredcos_cap_v2) and the DDIM sampler, as small pure functions.

Variance-preserving convention (science.md §3): x_t = sqrt(1 - sigma_t^2) x_0 + sigma_t eps with
sigma_t = sqrt(1 - alphabar_t). Numbers match diffusers' DDPMScheduler / DDIMScheduler with
beta_schedule="squaredcos_cap_v2", clip_sample=True, set_alpha_to_one=True, steps_offset=0 and
"leading" timestep spacing (Diffusion Policy's configuration); diffusers itself is not a dependency.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

PREDICTION_TYPES = ("epsilon", "sample")


def cosine_alpha_bar(u: float) -> float:
    """Continuous-time cosine alphabar of Nichol & Dhariwal, u in [0, 1]."""
    return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2


def squaredcos_cap_v2_betas(num_train_timesteps: int = 100, max_beta: float = 0.999) -> torch.Tensor:
    """Betas beta_i = min(1 - alphabar((i+1)/T) / alphabar(i/T), max_beta), float32."""
    # Computed in Python floats and cast once, as diffusers' betas_for_alpha_bar does, so the
    # float32 values are bit-identical to the reference.
    betas = [
        min(1 - cosine_alpha_bar((i + 1) / num_train_timesteps) / cosine_alpha_bar(i / num_train_timesteps), max_beta)
        for i in range(num_train_timesteps)
    ]
    return torch.tensor(betas, dtype=torch.float32)


def alphas_cumprod_from_betas(betas: torch.Tensor) -> torch.Tensor:
    """alphabar_t = prod_{i <= t} (1 - beta_i)."""
    return torch.cumprod(1.0 - betas, dim=0)


def broadcast_to_sample(values: torch.Tensor | float, sample: torch.Tensor) -> torch.Tensor:
    """Reshape per-batch values of shape (B,) (or a scalar) to broadcast against a (B, ...) sample."""
    values = torch.as_tensor(values, dtype=sample.dtype, device=sample.device)
    if values.ndim == 0:
        return values
    return values.reshape(values.shape + (1,) * (sample.ndim - values.ndim))


def add_noise(x0: torch.Tensor, eps: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    """Variance-preserving forward process x_sigma = sqrt(1 - sigma^2) x0 + sigma eps."""
    sigma = broadcast_to_sample(sigma, x0)
    return torch.sqrt(1 - sigma**2) * x0 + sigma * eps


def eps_to_x0(x_t: torch.Tensor, eps: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    """x0 implied by a noise prediction: (x_t - sigma eps) / sqrt(1 - sigma^2)."""
    sigma = broadcast_to_sample(sigma, x_t)
    return (x_t - sigma * eps) / torch.sqrt(1 - sigma**2)


def x0_to_eps(x_t: torch.Tensor, x0: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    """Noise implied by an x0 prediction: (x_t - sqrt(1 - sigma^2) x0) / sigma."""
    sigma = broadcast_to_sample(sigma, x_t)
    return (x_t - torch.sqrt(1 - sigma**2) * x0) / sigma


# --------------------------------------------------------------------------------------------------
# The one mapping between noise levels and DDPM steps, shared by training, the classifier and the
# diagnostics: the float32 sigmas that training uses, and one admissibility rule.


def ddpm_sigmas(num_train_timesteps: int = 100) -> np.ndarray:
    """(T,) sigma_t of training's float32 schedule, as float64 numbers (exactly the float32 values)."""
    return NoiseSchedule.squaredcos_cap_v2(num_train_timesteps).sigmas.double().numpy()


def first_admissible_step(sigma_min: np.ndarray | float, sigmas: np.ndarray) -> np.ndarray:
    """Smallest step t with sigma_t > sigma_min (science.md §3: admissible iff sigma > sigma_min); T if none.

    sigmas: increasing (T,) noise levels, e.g. ``ddpm_sigmas()``. Give ``b * sigma_min`` for the
    buffered rule. This is also the t_min reported for a sigma_min.
    """
    return np.searchsorted(np.asarray(sigmas, dtype=np.float64), np.asarray(sigma_min, dtype=np.float64), side="right")


def ddim_timesteps(num_train_timesteps: int = 100, num_inference_steps: int = 10) -> torch.Tensor:
    """Descending DDIM timesteps with "leading" spacing: (arange(N) * (T // N))[::-1]."""
    if not 1 <= num_inference_steps <= num_train_timesteps:
        raise ValueError(f"num_inference_steps must be in [1, {num_train_timesteps}], got {num_inference_steps}")
    step_ratio = num_train_timesteps // num_inference_steps
    return torch.arange(num_inference_steps - 1, -1, -1, dtype=torch.long) * step_ratio


def ddim_step(
    model_output: torch.Tensor,
    t: int | torch.Tensor,
    x_t: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    num_inference_steps: int = 10,
    prediction_type: str = "epsilon",
    clip_sample: bool = True,
    clip_sample_range: float = 1.0,
    use_clipped_model_output: bool = False,
) -> torch.Tensor:
    """One deterministic DDIM step (eta = 0) from train step t to t - T // N; returns x_{t_prev}.

    t: an int or a (B,) tensor of train steps. The step below 0 uses alphabar = 1
    (set_alpha_to_one). As in diffusers, the direction term uses the unclipped noise estimate
    unless use_clipped_model_output.
    """
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")
    num_train_timesteps = alphas_cumprod.shape[0]
    t = torch.as_tensor(t, dtype=torch.long, device=alphas_cumprod.device)
    t_prev = t - num_train_timesteps // num_inference_steps
    alphabar_t = alphas_cumprod[t]
    alphabar_prev = torch.where(t_prev >= 0, alphas_cumprod[t_prev.clamp(min=0)], torch.ones_like(alphabar_t))
    alphabar_t = broadcast_to_sample(alphabar_t, x_t)
    alphabar_prev = broadcast_to_sample(alphabar_prev, x_t)

    if prediction_type == "epsilon":
        pred_eps = model_output
        pred_x0 = (x_t - torch.sqrt(1 - alphabar_t) * pred_eps) / torch.sqrt(alphabar_t)
    else:
        pred_x0 = model_output
        pred_eps = (x_t - torch.sqrt(alphabar_t) * pred_x0) / torch.sqrt(1 - alphabar_t)
    if clip_sample:
        pred_x0 = pred_x0.clamp(-clip_sample_range, clip_sample_range)
    if use_clipped_model_output:
        pred_eps = (x_t - torch.sqrt(alphabar_t) * pred_x0) / torch.sqrt(1 - alphabar_t)
    return torch.sqrt(alphabar_prev) * pred_x0 + torch.sqrt(1 - alphabar_prev) * pred_eps


@dataclass(frozen=True)
class NoiseSchedule:
    """The discrete DDPM schedule: betas, alphas_cumprod and sigmas, each of shape (T,)."""

    betas: torch.Tensor
    alphas_cumprod: torch.Tensor
    sigmas: torch.Tensor

    @classmethod
    def squaredcos_cap_v2(cls, num_train_timesteps: int = 100, max_beta: float = 0.999) -> NoiseSchedule:
        """Diffusion Policy's schedule: 100 steps, squaredcos_cap_v2."""
        betas = squaredcos_cap_v2_betas(num_train_timesteps, max_beta)
        alphas_cumprod = alphas_cumprod_from_betas(betas)
        return cls(betas=betas, alphas_cumprod=alphas_cumprod, sigmas=torch.sqrt(1 - alphas_cumprod))

    @property
    def num_train_timesteps(self) -> int:
        return int(self.betas.shape[0])

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> NoiseSchedule:
        """On ``device``; in ``dtype`` if given (float64 holds the float32 values exactly)."""
        return NoiseSchedule(*(v.to(device=device, dtype=dtype) for v in (self.betas, self.alphas_cumprod, self.sigmas)))

    def sigma(self, t: int | torch.Tensor) -> torch.Tensor:
        """sigma_t = sqrt(1 - alphabar_t) for train step(s) t."""
        return self.sigmas[torch.as_tensor(t, dtype=torch.long, device=self.sigmas.device)]

    def add_noise(self, x0: torch.Tensor, eps: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(alphabar_t) x0 + sqrt(1 - alphabar_t) eps, t an int or (B,) steps."""
        return add_noise(x0, eps, self.sigma(t))

    def eps_to_x0(self, x_t: torch.Tensor, eps: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        return eps_to_x0(x_t, eps, self.sigma(t))

    def x0_to_eps(self, x_t: torch.Tensor, x0: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        return x0_to_eps(x_t, x0, self.sigma(t))

    def ddim_timesteps(self, num_inference_steps: int = 10) -> torch.Tensor:
        return ddim_timesteps(self.num_train_timesteps, num_inference_steps)

    def ddim_step(
        self,
        model_output: torch.Tensor,
        t: int | torch.Tensor,
        x_t: torch.Tensor,
        num_inference_steps: int = 10,
        prediction_type: str = "epsilon",
        clip_sample: bool = True,
    ) -> torch.Tensor:
        return ddim_step(
            model_output, t, x_t, self.alphas_cumprod, num_inference_steps, prediction_type, clip_sample
        )

    def ddim_sample(
        self,
        model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        x_T: torch.Tensor,
        num_inference_steps: int = 10,
        prediction_type: str = "epsilon",
        clip_sample: bool = True,
    ) -> torch.Tensor:
        """Run DDIM from x_T; model(x_t, t) gets t as a (B,) long tensor and returns eps or x0."""
        x = x_T
        for t in self.ddim_timesteps(num_inference_steps).tolist():
            t_batch = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
            x = self.ddim_step(model(x, t_batch), t, x, num_inference_steps, prediction_type, clip_sample)
        return x

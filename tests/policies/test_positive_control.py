"""Positive control (science.md §7, "known answers first"): where the method's assumption holds exactly,
ambient training must beat cotraining.

Clean data: a few draws of three tight 2-D clusters. Corrupt data: thousands of fresh draws noised in
VP form, sqrt(1 - s^2) x + s z, half at s = 0.4 and half at s = 0.6, each s known. A small MLP
denoiser is trained through the package's own admission sampler and loss pieces and sampled with its
DDIM; its samples are compared with fresh draws of the true clean distribution by sliced
Wasserstein-1. Cotraining learns the blurred clusters; ambient training, which admits a corrupt
sample only above its sigma_min, keeps them sharp.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from policies.ambient import AdmissionSampler, ambient_training_pair, buffer_factor
from policies.noise import NoiseSchedule, add_noise

CENTERS = np.array([[-0.5, -0.5], [0.5, -0.5], [0.0, 0.55]])
CLUSTER_STD = 0.03
NUM_CLEAN, NUM_CORRUPT = 100, 4000
CORRUPT_SIGMAS = (0.4, 0.6)  # half the corrupt samples at each level
ALPHA = 0.25  # a clean weight low enough that the corrupt data carry the high-noise levels
SCHEDULE = NoiseSchedule.squaredcos_cap_v2(100)
STEPS, BATCH, LR = 1500, 256, 1e-2
DDIM_STEPS, NUM_SAMPLES = 20, 2000
# The ambient-loss arm admits its corrupt samples above b * 0.4 = 0.46 and b * 0.6 = 0.69 (b = buffer_factor(4)).
HIGH_NOISE_BAND = (0.5, 0.9)
# The acceptance margins: ambient samples at most half cotraining's distance from the clean
# distribution; the ambient loss's denoiser error at high noise at most a third of the others'.
AMBIENT_OVER_COTRAIN = 0.5
ERROR_RATIO = 3.0


def clusters(n: int, rng: np.random.Generator) -> np.ndarray:
    """n draws of the true clean distribution: three equally likely tight Gaussian clusters."""
    return CENTERS[rng.integers(0, len(CENTERS), n)] + CLUSTER_STD * rng.standard_normal((n, 2))


def toy_data(seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """[clean samples, corrupt samples] and each corrupt sample's noise level."""
    rng = np.random.default_rng(seed)
    clean, underlying = clusters(NUM_CLEAN, rng), clusters(NUM_CORRUPT, rng)
    corrupt_sigma = np.repeat(CORRUPT_SIGMAS, NUM_CORRUPT // len(CORRUPT_SIGMAS))
    corrupt = np.sqrt(1 - corrupt_sigma[:, None] ** 2) * underlying + corrupt_sigma[:, None] * rng.standard_normal(underlying.shape)
    return torch.tensor(np.concatenate([clean, corrupt]), dtype=torch.float32), corrupt_sigma


def sliced_w1(a: np.ndarray, b: np.ndarray, directions: int = 64) -> float:
    """Sliced Wasserstein-1 between two equal-sized 2-D samples, over fixed directions."""
    angles = np.random.default_rng(0).uniform(0, np.pi, directions)
    projections = np.stack([np.cos(angles), np.sin(angles)])
    return float(np.abs(np.sort(a @ projections, axis=0) - np.sort(b @ projections, axis=0)).mean())


class Denoiser(nn.Module):
    """eps-prediction MLP on (x_t, sinusoidal embedding of the DDPM step)."""

    def __init__(self, width: int = 128, frequencies: int = 8):
        super().__init__()
        self.register_buffer("frequencies", math.pi * torch.arange(1, frequencies + 1, dtype=torch.float32))
        self.net = nn.Sequential(
            nn.Linear(2 + 2 * frequencies, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(),
            nn.Linear(width, width), nn.SiLU(), nn.Linear(width, 2),
        )  # fmt: skip

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        phase = (t.float() / SCHEDULE.num_train_timesteps)[:, None] * self.frequencies
        return self.net(torch.cat([x_t, torch.sin(phase), torch.cos(phase)], dim=1))


@dataclass(frozen=True)
class Arm:
    """One way to train on the same data: the admission mode, its sigma_min, and the loss on corrupt samples."""

    mode: str
    corrupt_loss: str = "denoise"
    per_sample_sigma_min: bool = False
    contract: bool = False


ARMS = {
    "cotrain": Arm("cotrain"),
    # The paper's final form: admitted corrupt samples get the ordinary denoising loss; one
    # dataset-level sigma_min, the largest corrupt level.
    "ambient_denoise": Arm("ambient"),
    # The ambient loss with each sample's own sigma_min, taking the noisy copy as x_{s_m} as it is.
    "ambient_loss": Arm("ambient", "ambient", per_sample_sigma_min=True),
    # The same, contracted first: right for data that are not noisy copies, wrong for these.
    "ambient_loss_contracted": Arm("ambient", "ambient", per_sample_sigma_min=True, contract=True),
}


def admission(arm: Arm, corrupt_sigma: np.ndarray) -> AdmissionSampler:
    """The sampler as policies.train.admission_sampler builds it: the buffer belongs to the ambient loss."""
    if arm.mode == "cotrain":
        return AdmissionSampler(SCHEDULE.sigmas, NUM_CLEAN, NUM_CORRUPT, alpha=ALPHA, mode="cotrain")
    levels = {"corrupt_sigma_min": corrupt_sigma} if arm.per_sample_sigma_min else {"sigma_min": float(corrupt_sigma.max())}
    buffer = buffer_factor(4.0) if arm.corrupt_loss == "ambient" else 1.0
    return AdmissionSampler(SCHEDULE.sigmas, NUM_CLEAN, NUM_CORRUPT, alpha=ALPHA, mode="ambient", buffer=buffer, **levels)


def training_pair(arm: Arm, x0: torch.Tensor, t: np.ndarray, ambient_sigma_min: np.ndarray,
                  rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_t, eps target) of one batch, as DiffusionModel.loss forms it."""
    noise, contraction_noise = (torch.from_numpy(rng.standard_normal(x0.shape, dtype=np.float32)) for _ in range(2))
    sigma = SCHEDULE.sigmas[torch.from_numpy(t)]
    if arm.corrupt_loss == "denoise":  # corrupt chunks taken as x_0, as policies.train does
        return add_noise(x0, noise, sigma), noise
    sigma_min = torch.from_numpy(ambient_sigma_min).float()
    return ambient_training_pair(x0, contraction_noise, noise, sigma, sigma_min, "epsilon", contract=arm.contract)


def train_denoiser(arm: Arm, data: torch.Tensor, corrupt_sigma: np.ndarray, seed: int = 0) -> Denoiser:
    """Train one arm from the shared seed: the same initial weights and batch generator for every arm."""
    sampler = admission(arm, corrupt_sigma)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    model = Denoiser()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / STEPS)))
    for _ in range(STEPS):
        draw = sampler.sample(BATCH, rng)
        x_t, target = training_pair(arm, data[draw.index], draw.t, draw.ambient_sigma_min, rng)
        loss = ((model(x_t, torch.from_numpy(draw.t)) - target) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
    return model


@torch.no_grad()
def ddim_samples(model: Denoiser, seed: int = 0) -> np.ndarray:
    """NUM_SAMPLES draws by the package's DDIM, from the same initial noise for every arm."""
    x_T = torch.randn(NUM_SAMPLES, 2, generator=torch.Generator().manual_seed(seed + 1))
    return SCHEDULE.ddim_sample(model, x_T, DDIM_STEPS, "epsilon").double().numpy()


def exact_eps(x_t: torch.Tensor, sigma: float) -> torch.Tensor:
    """E[eps | x_t] under the true clean distribution (a Gaussian mixture: closed form)."""
    scale = math.sqrt(1 - sigma**2)
    centers = torch.tensor(CENTERS, dtype=x_t.dtype)
    variance = scale**2 * CLUSTER_STD**2 + sigma**2
    log_weight = -((x_t[:, None] - scale * centers) ** 2).sum(-1) / (2 * variance)
    weight = torch.softmax(log_weight, dim=1)
    x0_given_cluster = centers + scale * CLUSTER_STD**2 / variance * (x_t[:, None] - scale * centers)
    x0 = (weight[..., None] * x0_given_cluster).sum(1)
    return (x_t - scale * x0) / sigma


@torch.no_grad()
def denoiser_error(model: Denoiser, steps: range, seed: int = 0) -> float:
    """Mean squared error of the eps prediction against the exact clean denoiser, x_t drawn from p_t."""
    rng = np.random.default_rng([seed, 7])
    errors = []
    for t in steps:
        sigma = float(SCHEDULE.sigmas[t])
        x_t = torch.tensor(math.sqrt(1 - sigma**2) * clusters(NUM_SAMPLES, rng) + sigma * rng.standard_normal((NUM_SAMPLES, 2)),
                           dtype=torch.float32)  # fmt: skip
        prediction = model(x_t, torch.full((NUM_SAMPLES,), t))
        errors.append(float(((prediction.double() - exact_eps(x_t.double(), sigma)) ** 2).sum(1).mean()))
    return float(np.mean(errors))


@pytest.fixture(scope="module")
def trained() -> dict[str, Denoiser]:
    """Every arm trained on the same data from the same seed (on one torch thread: conftest.py)."""
    data, corrupt_sigma = toy_data()
    return {name: train_denoiser(arm, data, corrupt_sigma) for name, arm in ARMS.items()}


@pytest.fixture(scope="module")
def distances(trained) -> dict[str, float]:
    """Sliced W1 of every arm's DDIM samples to fresh draws of the true clean distribution."""
    reference = clusters(NUM_SAMPLES, np.random.default_rng(99))
    measured = {name: sliced_w1(ddim_samples(model), reference) for name, model in trained.items()}
    floor = sliced_w1(clusters(NUM_SAMPLES, np.random.default_rng(98)), reference)
    print(f"\nsliced W1 to the clean distribution (fresh vs fresh {floor:.4f}):", {k: round(v, 4) for k, v in measured.items()})
    return measured


@pytest.fixture(scope="module")
def high_noise_errors(trained) -> dict[str, float]:
    """Each arm's eps error against the exact clean denoiser where the ambient-loss arm admits corrupt samples."""
    sigmas = SCHEDULE.sigmas.double().numpy()
    steps = range(*np.searchsorted(sigmas, HIGH_NOISE_BAND))
    measured = {name: denoiser_error(model, steps) for name, model in trained.items()}
    print(f"\neps error vs the exact denoiser at sigma in {HIGH_NOISE_BAND}:", {k: round(v, 5) for k, v in measured.items()})
    return measured


def test_ambient_denoising_loss_keeps_the_clusters_that_cotraining_blurs(distances):
    assert distances["ambient_denoise"] < AMBIENT_OVER_COTRAIN * distances["cotrain"], distances


def test_ambient_loss_without_contraction_keeps_the_clusters_that_cotraining_blurs(distances):
    assert distances["ambient_loss"] < AMBIENT_OVER_COTRAIN * distances["cotrain"], distances


def test_ambient_loss_without_contraction_learns_the_clean_denoiser_from_noisy_copies(high_noise_errors):
    """Taken as x_{s_m} as they are, noisy copies teach the clean data's denoiser; contracted again (to
    s'^2 = 2 s^2 - s^4 while the loss assumes s) or cotrained on, they teach a blurred one."""
    errors = high_noise_errors
    assert errors["ambient_loss"] < errors["ambient_loss_contracted"] / ERROR_RATIO, errors
    assert errors["ambient_loss"] < errors["cotrain"] / ERROR_RATIO, errors

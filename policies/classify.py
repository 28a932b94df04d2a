"""Per-sample sigma_min for corrupt data from a noise-conditioned classifier: ``python -m policies.classify``.

A classifier c(x_sigma, sigma) is trained with binary cross-entropy to tell clean (label 1) from
corrupt (label 0) action chunks noised to sigma, with balanced batches and sigma drawn over the DDPM
levels (and 0). Where noise hides the corruption it can do no better than 0.5. For each corrupt
chunk i (the chunk starting at step i, padded at the episode end),

    sigma_min_i = inf { sigma : c(x_sigma^i, sigma) > 0.5 - eps },

scanned over the grid [0, sigma_0, ..., sigma_{T-1}] and averaged over noise draws (science.md §3).
It is written into the corrupt store with ``EpisodeStore.set_sigma_min``, for training with
``python -m policies.train --method ambient``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from data_gen.episode_store import EpisodeStore, StoreError
from policies.config import one_line
from policies.dataset import DataError, WindowDataset
from policies.model import resolve_device
from policies.noise import NoiseSchedule
from policies.normalizer import MinMaxNormalizer
from policies.unet import SinusoidalEmbedding


class ClassifierConfig(BaseModel):
    """The classifier, its training and the sigma_min estimate."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    horizon: int = Field(16, ge=2)
    with_agent_pos: bool = False  # condition on the pusher position at the chunk's first step
    channels: int = Field(64, ge=8)
    num_train_timesteps: int = Field(100, ge=2)
    steps: int = Field(2000, ge=1)
    batch_size: int = Field(256, ge=2)
    lr: float = Field(1e-3, gt=0)
    eps: float = Field(0.05, ge=0, lt=0.5)
    draws: int = Field(8, ge=1)
    seed: int = 0
    device: str = "auto"


# Differences of a smooth normalised chunk are ~1 / horizon; the gain brings them to order one.
DIFFERENCE_GAIN = 10.0


class ChunkClassifier(nn.Module):
    """Logit of c(x_sigma, sigma) = P(clean | noisy normalised chunk (B, T, A), sigma (B,)).

    Two FiLM-modulated temporal convolutions pooled by mean and root-mean-square over time. No
    normalisation layer: the energy of the filtered chunk is the evidence (a GroupNorm would
    divide it out).
    """

    def __init__(self, action_dim: int, cond_dim: int = 0, channels: int = 64, embed_dim: int = 64):
        super().__init__()
        self.sigma_encoder = nn.Sequential(
            SinusoidalEmbedding(embed_dim), nn.Linear(embed_dim, 2 * embed_dim), nn.Mish(), nn.Linear(2 * embed_dim, embed_dim)
        )
        film_dim = embed_dim + cond_dim
        # Input channels: the chunk and its step-to-step differences, where local defects show.
        self.convs = nn.ModuleList([nn.Conv1d(2 * action_dim, channels, 5, padding=2), nn.Conv1d(channels, channels, 5, padding=2)])
        self.films = nn.ModuleList([nn.Linear(film_dim, 2 * channels) for _ in self.convs])
        self.head = nn.Sequential(nn.Linear(2 * channels + film_dim, channels), nn.Mish(), nn.Linear(channels, 1))

    def forward(self, chunks: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        film = self.sigma_encoder(sigma * 1000)  # sigma in [0, 1] spread over the embedding's frequencies
        if cond is not None:
            film = torch.cat([film, cond], dim=-1)
        x = chunks.transpose(1, 2)
        differences = torch.diff(x, dim=-1, prepend=x[..., :1])
        x = torch.cat([x, DIFFERENCE_GAIN * differences], dim=1)
        for conv, film_layer in zip(self.convs, self.films, strict=True):
            scale, bias = film_layer(film).unsqueeze(-1).chunk(2, dim=1)
            x = F.mish(conv(x) * (1 + scale) + bias)
        pooled = torch.cat([x.mean(dim=-1), x.pow(2).mean(dim=-1).add(1e-8).sqrt()], dim=-1)
        return self.head(torch.cat([pooled, film], dim=-1)).squeeze(-1)


def sigma_grid(num_train_timesteps: int = 100) -> np.ndarray:
    """The noise levels scanned for sigma_min: 0, then the DDPM sigmas in increasing order."""
    return np.concatenate([[0.0], NoiseSchedule.squaredcos_cap_v2(num_train_timesteps).sigmas.double().numpy()])


# --------------------------------------------------------------------------------------------------
# Training


def train_classifier(
    dataset: WindowDataset, config: ClassifierConfig, device: torch.device, progress: bool = True
) -> tuple[ChunkClassifier, MinMaxNormalizer, list[float]]:
    """Fit the classifier on balanced clean/corrupt windows at random noise levels; returns it, its normaliser, losses."""
    normalizer = MinMaxNormalizer.fitted({key: dataset.low_dim[key] for key in ("action", "agent_pos")})
    model = ChunkClassifier(dataset.action_dim, 2 if config.with_agent_pos else 0, config.channels).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.steps)
    grid = torch.tensor(sigma_grid(config.num_train_timesteps), dtype=torch.float32)
    rng = np.random.default_rng(config.seed)
    half = config.batch_size // 2
    labels = torch.cat([torch.ones(half), torch.zeros(half)]).to(device)
    losses = []
    for _ in tqdm(range(config.steps), disable=not progress, desc="classifier", dynamic_ncols=True):
        indices = np.concatenate(
            [rng.integers(0, dataset.num_clean, half), dataset.num_clean + rng.integers(0, dataset.num_corrupt, half)]
        )
        chunks, cond = _chunks_and_cond(dataset, indices, normalizer, config.with_agent_pos)
        # Uniform in sigma, not in DDPM step: the squaredcos schedule crowds its steps near sigma 1,
        # where nothing can be told apart, and the boundary sigma_min lies lower.
        sigma = torch.from_numpy(rng.uniform(0, grid[-1], len(indices)).astype(np.float32))
        noise = torch.from_numpy(rng.standard_normal(chunks.shape, dtype=np.float32))
        noisy = torch.sqrt(1 - sigma**2)[:, None, None] * chunks + sigma[:, None, None] * noise
        logits = model(noisy.to(device), sigma.to(device), None if cond is None else cond.to(device))
        loss = F.binary_cross_entropy_with_logits(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
    return model.eval(), normalizer, losses


def _chunks_and_cond(
    dataset: WindowDataset, indices: np.ndarray, normalizer: MinMaxNormalizer, with_agent_pos: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Normalised action chunks (B, T, A) of windows, and their first step's normalised agent_pos."""
    actions = dataset.low_dim["action"][dataset.step_indices(indices, dataset.horizon)]
    chunks = normalizer.normalize("action", torch.from_numpy(actions))
    if not with_agent_pos:
        return chunks, None
    first = dataset.step_indices(indices, 1)[:, 0]
    return chunks, normalizer.normalize("agent_pos", torch.from_numpy(dataset.low_dim["agent_pos"][first]))


# --------------------------------------------------------------------------------------------------
# The estimate


@torch.no_grad()
def estimate_sigma_min(
    model: ChunkClassifier,
    chunks: torch.Tensor,
    cond: torch.Tensor | None,
    grid: np.ndarray,
    eps: float = 0.05,
    draws: int = 8,
    seed: int = 0,
    batch_size: int = 4096,
) -> np.ndarray:
    """(N,) mean over ``draws`` of the first grid sigma where c(x_sigma, sigma) > 0.5 - eps (grid[-1] if none)."""
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    levels = torch.tensor(grid, dtype=torch.float32)
    total = np.zeros(len(chunks))
    for _ in range(draws):
        noise = torch.randn(chunks.shape, generator=generator)  # one draw per chunk, shared by all levels
        for start in range(0, len(chunks), max(1, batch_size // len(levels))):
            part = slice(start, start + max(1, batch_size // len(levels)))
            x0, z = chunks[part], noise[part]
            n = len(x0)
            noisy = torch.sqrt(1 - levels**2)[None, :, None, None] * x0[:, None] + levels[None, :, None, None] * z[:, None]
            sigma = levels.repeat(n)
            part_cond = None if cond is None else cond[part].repeat_interleave(len(levels), dim=0).to(device)
            logits = model(noisy.flatten(0, 1).to(device), sigma.to(device), part_cond).reshape(n, len(levels))
            above = (torch.sigmoid(logits) > 0.5 - eps).cpu().numpy()
            first = np.where(above.any(axis=1), above.argmax(axis=1), len(grid) - 1)
            total[part] += grid[first]
    return total / draws


def chunk_indices(episode_ends: np.ndarray, horizon: int) -> np.ndarray:
    """(N, horizon) step indices of the chunk starting at every step, repeating each episode's last step."""
    starts = np.concatenate([[0], episode_ends[:-1]])
    first = np.repeat(starts, np.diff(np.concatenate([[0], episode_ends])))
    last = np.repeat(episode_ends - 1, np.diff(np.concatenate([[0], episode_ends])))
    steps = np.arange(int(episode_ends[-1]))[:, None] + np.arange(horizon)
    return np.clip(steps, first[:, None], last[:, None])


def annotate(
    clean: list[str], corrupt: list[str], config: ClassifierConfig, progress: bool = True, write: bool = True
) -> dict[str, np.ndarray]:
    """Train the classifier and write per-step sigma_min into each corrupt store; returns {store: values}."""
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    # Windows with a full horizon of actions; n_action_steps = horizon pads like the per-step chunks.
    dataset = WindowDataset(clean, corrupt, horizon=config.horizon, n_obs_steps=1, n_action_steps=config.horizon, obs_mode="state")
    if dataset.num_corrupt == 0:
        raise DataError("no corrupt windows to classify")
    model, normalizer, _ = train_classifier(dataset, config, device, progress)
    grid = sigma_grid(config.num_train_timesteps)
    results = {}
    for path in corrupt:
        with EpisodeStore.open(path) as store:
            actions, agent_pos, ends = store.array("action"), store.array("agent_pos"), store.episode_ends
        chunks = normalizer.normalize("action", torch.from_numpy(actions[chunk_indices(ends, config.horizon)]))
        cond = normalizer.normalize("agent_pos", torch.from_numpy(agent_pos)) if config.with_agent_pos else None
        values = estimate_sigma_min(model, chunks, cond, grid, config.eps, config.draws, config.seed)
        if write:
            with EpisodeStore.open(path, mode="a") as store:
                store.set_sigma_min(values.astype(np.float32))
        results[path] = values
    return results


# --------------------------------------------------------------------------------------------------
# Report and command line


def text_histogram(values: np.ndarray, bins: int = 10, width: int = 40) -> str:
    """Lines 'lo-hi | ##### count' over [0, 1]."""
    counts, edges = np.histogram(values, bins=bins, range=(0.0, 1.0))
    scale = width / max(1, counts.max())
    return "\n".join(
        f"{lo:4.2f}-{hi:4.2f} | {'#' * int(round(c * scale)):<{width}} {c}"
        for lo, hi, c in zip(edges[:-1], edges[1:], counts, strict=True)
    )


def mean_t_min(values: np.ndarray, num_train_timesteps: int = 100) -> float:
    """Mean over samples of the first DDPM step whose sigma reaches sigma_min."""
    sigmas = NoiseSchedule.squaredcos_cap_v2(num_train_timesteps).sigmas.double().numpy()
    steps = np.searchsorted(sigmas, np.asarray(values) - 1e-9, side="left")
    return float(np.mean(np.minimum(steps, num_train_timesteps - 1)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m policies.classify", description=__doc__.split("\n\n")[0])
    parser.error = lambda message: parser.exit(2, f"{parser.prog}: error: {message}\n")  # one line, exit 2
    parser.add_argument("--clean", nargs="+", required=True, metavar="STORE")
    parser.add_argument("--corrupt", nargs="+", required=True, metavar="STORE", help="annotated in place")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--eps", type=float, default=0.05)
    parser.add_argument("--draws", type=int, default=8)
    parser.add_argument("--with-agent-pos", action="store_true", help="condition the classifier on agent_pos too")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    prog = parser.prog
    try:
        config = ClassifierConfig(
            steps=args.steps, batch_size=args.batch_size, eps=args.eps, draws=args.draws,
            with_agent_pos=args.with_agent_pos, device=args.device, seed=args.seed,
        )  # fmt: skip
        results = annotate(list(args.clean), list(args.corrupt), config)
    except ValidationError as error:
        print(f"{prog}: error: invalid arguments: {one_line(error)}", file=sys.stderr)
        return 2
    except (StoreError, DataError, ValueError) as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    for path, values in results.items():
        print(f"\n{Path(path)}: sigma_min of {len(values)} steps, mean {values.mean():.3f}, "
              f"mean t_min {mean_t_min(values, config.num_train_timesteps):.1f} of {config.num_train_timesteps} DDPM steps")  # fmt: skip
        print(text_histogram(values))
    return 0


if __name__ == "__main__":
    sys.exit(main())

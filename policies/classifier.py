"""The noise-conditioned clean-vs-corrupt classifier that gives each corrupt chunk its sigma_min.

A classifier c(x_sigma, sigma) is trained with binary cross-entropy to tell clean (label 1) from
corrupt (label 0) action chunks noised to sigma, with balanced batches and sigma drawn uniformly over
[0, sigma_{T-1}]. Where noise hides the corruption it can do no better than 0.5. For each corrupt
chunk i (the chunk starting at step i, padded at the episode end),

    sigma_min_i = inf { sigma : c(x_sigma^i, sigma) > 0.5 - eps },

scanned over the grid [0, sigma_0, ..., sigma_{T-1}] (``policies.noise.ddpm_sigmas``) and averaged
over noise draws (science.md §3). This module holds the classifier, its data (every step's chunk per
pool), its training (one classifier, or k fold classifiers in lockstep with early stopping) and the
reading of sigma_min and held-out accuracy; ``policies.classify`` cross-fits it over folds of
episodes, writes the annotation and is the command line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import torch
from pydantic import ConfigDict, Field, field_validator
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from data_gen.episode_store import EpisodeStore
from policies.config import Recorded
from policies.dataset import DataError
from policies.noise import add_noise, ddpm_sigmas, first_admissible_step
from policies.normalizer import MinMaxNormalizer
from policies.unet import SinusoidalEmbedding

# Noise levels of the held-out accuracy table (each snapped to the nearest grid level).
ACCURACY_SIGMAS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9)
LEVELS_PER_PASS = 8  # noise levels scored together while scanning for sigma_min


class ClassifierConfig(Recorded):
    """The classifier, its cross-fitted training and the sigma_min estimate."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # an infinite lr passes gt=0
    omit_at_default: ClassVar[tuple[str, ...]] = ("action_normalizer",)

    horizon: int = Field(16, ge=2)
    with_agent_pos: bool = False  # condition on the pusher position at the chunk's first step
    channels: int = Field(64, ge=8)
    num_train_timesteps: int = Field(100, ge=2)
    folds: int = Field(5, ge=3)  # per pool; fewer when a pool has fewer episodes
    steps: int = Field(2000, ge=1)  # most training steps per fold
    eval_every: int = Field(50, ge=1)  # steps between validation losses
    patience: int = Field(10, ge=1)  # evaluations without a lower validation loss before a fold stops
    validation_size: int = Field(512, ge=1)  # fixed validation samples per pool
    batch_size: int = Field(256, ge=2)
    lr: float = Field(1e-3, gt=0)
    eps: float = Field(0.05, gt=0, lt=0.5)  # > 0, so a classifier at chance (c = 0.5) admits at sigma 0
    draws: int = Field(8, ge=1)
    seed: int = Field(0, ge=0)  # numpy seed sequences take no negative entropy
    device: str = "auto"
    # The steps the action normaliser is fitted on, as in the policy runs that use the sigma_min
    # (policies.config.DataConfig.action_normalizer): every store's, or the clean stores' alone.
    action_normalizer: Literal["all", "clean"] = "all"

    @field_validator("device")
    @classmethod
    def _known_device(cls, device: str) -> str:
        kind, _, index = device.partition(":")
        if kind not in ("auto", "cpu", "cuda", "mps") or (index and (kind != "cuda" or not index.isdigit())):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, not {device!r}")
        return device


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
        # Logit 0, c = 0.5 everywhere until training finds evidence: a classifier early-stopped
        # before it learnt anything (nothing to tell apart) then admits every sample at sigma 0,
        # instead of a random initialisation's arbitrary sigma_min.
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

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
    """The noise levels scanned for sigma_min: 0, then training's DDPM sigmas in increasing order."""
    return np.concatenate([[0.0], ddpm_sigmas(num_train_timesteps)])


def mean_t_min(values: np.ndarray, num_train_timesteps: int = 100) -> float:
    """Mean over samples of t_min, the first DDPM step admissible for their sigma_min (training's rule)."""
    return float(np.mean(first_admissible_step(values, ddpm_sigmas(num_train_timesteps))))


# --------------------------------------------------------------------------------------------------
# Data: every step's chunk, per pool


@dataclass(frozen=True)
class Chunks:
    """Normalised action chunks (N, horizon, A), the agent_pos (N, 2) they are conditioned on (or None), their episodes."""

    action: torch.Tensor
    cond: torch.Tensor | None
    episode: np.ndarray  # (N,) the pool episode each chunk belongs to

    def __len__(self) -> int:
        return len(self.action)

    def take(self, index: np.ndarray) -> Chunks:
        rows = torch.as_tensor(index)
        return Chunks(self.action[rows], None if self.cond is None else self.cond[rows], self.episode[index])


@dataclass(frozen=True)
class Pool:
    """The chunk starting at every step of the clean (or the corrupt) stores, in the order given."""

    chunks: Chunks  # chunks.episode indexes ``episodes``
    episodes: list[tuple[str, int]]  # (store, episode within it) of each pool episode
    store_steps: dict[str, slice]  # each store's steps within the pool


def chunk_indices(episode_ends: np.ndarray, horizon: int) -> np.ndarray:
    """(N, horizon) step indices of the chunk starting at every step, repeating each episode's last step."""
    if len(episode_ends) == 0:
        return np.zeros((0, horizon), np.int64)
    starts = np.concatenate([[0], episode_ends[:-1]])
    first = np.repeat(starts, np.diff(np.concatenate([[0], episode_ends])))
    last = np.repeat(episode_ends - 1, np.diff(np.concatenate([[0], episode_ends])))
    steps = np.arange(int(episode_ends[-1]))[:, None] + np.arange(horizon)
    return np.clip(steps, first[:, None], last[:, None])


def read_pools(
    clean: Mapping[str, EpisodeStore], corrupt: Mapping[str, EpisodeStore], config: ClassifierConfig
) -> tuple[Pool, Pool, MinMaxNormalizer]:
    """Both pools' chunks, normalised by a min-max normaliser fitted as training's: on every step of every
    store, or with ``action_normalizer: clean`` the actions on the clean stores' steps alone."""
    dims = {path: store.action_dim for path, store in {**clean, **corrupt}.items()}
    if len(set(dims.values())) > 1:
        raise DataError(f"the stores hold different action sizes: {dims}")
    raw = [_read_steps(stores) for stores in (clean, corrupt)]
    union = {key: np.concatenate([steps[key] for steps in raw]) for key in ("action", "agent_pos")}
    if config.action_normalizer == "clean":
        union["action"] = raw[0]["action"]
    normalizer = MinMaxNormalizer.fitted(union)
    pools = []
    for steps in raw:
        chunks = torch.from_numpy(steps["action"][chunk_indices(steps["ends"], config.horizon)])
        action = normalizer.normalize("action", chunks)
        cond = normalizer.normalize("agent_pos", torch.from_numpy(steps["agent_pos"])) if config.with_agent_pos else None
        pools.append(Pool(Chunks(action, cond, steps["step_episode"]), steps["episodes"], steps["store_steps"]))
    return pools[0], pools[1], normalizer


def _read_steps(stores: Mapping[str, EpisodeStore]) -> dict:
    """The stores' committed actions and agent_pos concatenated, with episode bookkeeping."""
    actions, agent_pos, ends, episodes, store_steps = [], [], [], [], {}
    offset = 0
    for path, store in stores.items():
        actions.append(store.array("action"))
        agent_pos.append(store.array("agent_pos"))
        ends.append(offset + store.episode_ends)
        episodes += [(path, episode) for episode in range(store.n_episodes)]
        store_steps[path] = slice(offset, offset + store.n_steps)
        offset += store.n_steps
    ends = np.concatenate(ends).astype(np.int64) if ends else np.zeros(0, np.int64)
    return {
        "action": np.concatenate(actions),
        "agent_pos": np.concatenate(agent_pos),
        "ends": ends,
        "episodes": episodes,
        "step_episode": np.repeat(np.arange(len(ends)), np.diff(np.concatenate([[0], ends]))),
        "store_steps": store_steps,
    }


# --------------------------------------------------------------------------------------------------
# Training: one classifier, or the k fold classifiers in lockstep


@dataclass(frozen=True)
class NoisyBatch:
    """Chunks noised to x_sigma, their sigma, conditioning and episode, and labels (1 clean, 0 corrupt)."""

    noisy: torch.Tensor
    sigma: torch.Tensor
    cond: torch.Tensor | None
    labels: torch.Tensor
    episode: np.ndarray


def noisy_batch(clean: Chunks, corrupt: Chunks, per_pool: int, sigma_max: float, rng: np.random.Generator) -> NoisyBatch:
    """``per_pool`` chunks of each pool, drawn with replacement, each noised to its own sigma uniform in [0, sigma_max]."""
    # Uniform in sigma, not in DDPM step: the squaredcos schedule crowds its steps near sigma 1,
    # where nothing can be told apart, and the boundary sigma_min lies lower.
    chunks = _cat(clean.take(rng.integers(0, len(clean), per_pool)), corrupt.take(rng.integers(0, len(corrupt), per_pool)))
    sigma = torch.from_numpy(rng.uniform(0, sigma_max, 2 * per_pool).astype(np.float32))
    noise = torch.from_numpy(rng.standard_normal(chunks.action.shape, dtype=np.float32))
    labels = torch.cat([torch.ones(per_pool), torch.zeros(per_pool)])
    return NoisyBatch(add_noise(chunks.action, noise, sigma), sigma, chunks.cond, labels, chunks.episode)


class ClassifierFit:
    """One classifier in training on balanced clean/corrupt batches; ``step()`` takes one optimiser step."""

    def __init__(
        self, clean: Chunks, corrupt: Chunks, config: ClassifierConfig, device: torch.device, seed: np.random.SeedSequence | int
    ):
        model_seed, batch_seed = _seed_sequence(seed).spawn(2)
        with torch.random.fork_rng(devices=[]):  # seeded weights, and the caller's global RNG left as it was
            torch.manual_seed(int(model_seed.generate_state(1)[0]))
            self.model = ChunkClassifier(clean.action.shape[-1], 2 if config.with_agent_pos else 0, config.channels).to(device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.lr, weight_decay=1e-4)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, config.steps)
        self.rng = np.random.default_rng(batch_seed)
        self.clean, self.corrupt, self.device = clean, corrupt, device
        self.per_pool = config.batch_size // 2
        self.sigma_max = float(sigma_grid(config.num_train_timesteps)[-1])

    def step(self) -> float:
        batch = noisy_batch(self.clean, self.corrupt, self.per_pool, self.sigma_max, self.rng)
        loss = F.binary_cross_entropy_with_logits(_logits(self.model, batch, self.device), batch.labels.to(self.device))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return loss.item()


def train_classifier(
    clean: Chunks, corrupt: Chunks, config: ClassifierConfig, device: torch.device, seed: np.random.SeedSequence | int = 0
) -> ChunkClassifier:
    """One classifier fitted for ``config.steps`` steps, nothing held out, no early stopping (what cross_fit replaces)."""
    fit = ClassifierFit(clean, corrupt, config, device, seed)
    for _ in range(config.steps):
        fit.step()
    return fit.model.eval()


@dataclass(frozen=True)
class TrainingLog:
    """How one fold classifier's training went."""

    best_step: int  # the step whose state it keeps; 0: the untrained classifier (c = 0.5)
    stopped_step: int  # where its selection loss stalled (or the last step)
    evaluation_steps: list[int]  # 0, eval_every, 2 eval_every, ... (and the last step)
    validation_losses: list[float]  # on its own validation fold, at each evaluation
    selection_losses: list[float]  # on the validation folds that choose its step (see train_folds)


@dataclass(frozen=True)
class _Record:
    """A state whose selection loss was a new lowest: the only states the one-standard-error rule can pick."""

    evaluation: int
    loss: float
    standard_error: float
    state: dict[str, torch.Tensor]


def train_folds(
    train: Sequence[tuple[Chunks, Chunks]],
    validation: Sequence[tuple[Chunks, Chunks]],
    config: ClassifierConfig,
    device: torch.device,
    seeds: Sequence[np.random.SeedSequence],
    bar: tqdm | None = None,
) -> tuple[list[ChunkClassifier], list[TrainingLog]]:
    """The k fold classifiers, trained in lockstep, each kept at a step chosen on every episode outside its test fold.

    train[f], validation[f]: the (clean, corrupt) chunks of classifier f; validation[f] is fold f + 1.
    bar: advanced k per step; its total shrinks on an early stop.

    Classifier f's selection loss is the validation loss of every classifier but f - 1 (which
    validates on fold f, f's test fold), per episode, each pool weighing half. It keeps the earliest
    state whose selection loss is within one standard error (over episodes) of the lowest; step 0,
    the untrained classifier (c = 0.5 everywhere), scores ln 2 with no error. Why not the lowest
    loss on its own validation fold: a few episodes can separate the pools by chance, and a
    classifier that learnt such a difference reads a confident, wrong sigma_min off its test fold
    (clean vs fresh clean gave mean sigma_min 0.05-0.18 over seeds that way, 0-0.03 this way).
    It stops choosing after ``patience`` evaluations without a new lowest loss; training ends when
    all have stopped, or at ``config.steps``.
    """
    k = len(train)
    fits, batches = [], []
    for f in range(k):
        fit_seed, validation_seed = seeds[f].spawn(2)
        fits.append(ClassifierFit(*train[f], config, device, fit_seed))
        rng = np.random.default_rng(validation_seed)
        batches.append(noisy_batch(*validation[f], config.validation_size, fits[f].sigma_max, rng))  # fixed: same every time
    evaluation_steps: list[int] = []
    own_losses: list[list[float]] = [[] for _ in range(k)]
    selection_losses: list[list[float]] = [[] for _ in range(k)]
    records: list[list[_Record]] = [[] for _ in range(k)]
    # Each classifier stops choosing when its own selection loss stalls, so that not even when it
    # stops depends on its test fold; it keeps training, as the others' selection uses its losses.
    stopped: list[int | None] = [None] * k
    step = 0
    while True:
        if step % config.eval_every == 0 or step == config.steps:
            evaluation_steps.append(step)
            evaluation = len(evaluation_steps) - 1
            scores = [episode_losses(fit.model, batch, device) for fit, batch in zip(fits, batches, strict=True)]
            for f in range(k):
                own_losses[f].append(_pooled_loss([scores[f]])[0])
                loss, standard_error = _pooled_loss([score for g, score in enumerate(scores) if g != (f - 1) % k])
                selection_losses[f].append(loss)
                if stopped[f] is not None:
                    continue
                if not records[f] or loss < records[f][-1].loss:
                    records[f].append(_Record(evaluation, loss, standard_error, _copy_state(fits[f].model)))
                if evaluation - records[f][-1].evaluation >= config.patience or step == config.steps:
                    stopped[f] = step
            if bar is not None:
                bar.set_postfix(val_loss=f"{np.mean([losses[-1] for losses in own_losses]):.4f}", refresh=False)
            if all(s is not None for s in stopped):
                break
        for fit in fits:
            fit.step()
        step += 1
        if bar is not None:
            bar.update(k)
    if bar is not None and step < config.steps:  # stopped early: shrink the total so the ETA stays honest
        bar.total -= k * (config.steps - step)
        bar.refresh()
    logs = []
    for f, fit in enumerate(fits):
        lowest = records[f][-1]
        chosen = next(r for r in records[f] if r.loss <= lowest.loss + lowest.standard_error)
        fit.model.load_state_dict(chosen.state)
        best_step = evaluation_steps[chosen.evaluation]
        logs.append(TrainingLog(best_step, stopped[f], evaluation_steps, own_losses[f], selection_losses[f]))
    return [fit.model.eval() for fit in fits], logs


@torch.no_grad()
def episode_losses(model: ChunkClassifier, batch: NoisyBatch, device: torch.device) -> dict[str, np.ndarray]:
    """Binary cross-entropy on a batch, averaged per episode: {"clean": (E_clean,), "corrupt": (E_corrupt,)}."""
    labels = batch.labels.to(device)
    losses = F.binary_cross_entropy_with_logits(_logits(model, batch, device), labels, reduction="none").double().cpu().numpy()
    result = {}
    for kind, label in (("clean", 1), ("corrupt", 0)):
        mine = batch.labels.numpy() == label
        _, index = np.unique(batch.episode[mine], return_inverse=True)
        result[kind] = np.bincount(index, weights=losses[mine]) / np.bincount(index)
    return result


def _pooled_loss(scores: Sequence[Mapping[str, np.ndarray]]) -> tuple[float, float]:
    """Mean per-episode loss with each pool weighing half, and its standard error over episodes."""
    mean, variance = 0.0, 0.0
    for kind in ("clean", "corrupt"):
        losses = np.concatenate([score[kind] for score in scores])
        mean += losses.mean() / 2
        variance += (losses.var(ddof=1) / len(losses) if len(losses) > 1 else 0.0) / 4
    return float(mean), float(np.sqrt(variance))


def _logits(model: ChunkClassifier, batch: NoisyBatch, device: torch.device) -> torch.Tensor:
    return model(batch.noisy.to(device), batch.sigma.to(device), _to(batch.cond, device))


def _seed_sequence(seed: np.random.SeedSequence | int) -> np.random.SeedSequence:
    return seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)


def _copy_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


def _cat(first: Chunks, second: Chunks) -> Chunks:
    cond = None if first.cond is None else torch.cat([first.cond, second.cond])
    return Chunks(torch.cat([first.action, second.action]), cond, np.concatenate([first.episode, second.episode]))


def _to(tensor: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    return None if tensor is None else tensor.to(device)


# --------------------------------------------------------------------------------------------------
# Reading the classifier: sigma_min and held-out accuracy


@torch.no_grad()
def estimate_sigma_min(
    model: ChunkClassifier,
    chunks: Chunks,
    grid: np.ndarray,
    eps: float = 0.05,
    draws: int = 8,
    seed: int = 0,
    batch_size: int = 4096,
    bar: tqdm | None = None,
) -> np.ndarray:
    """(N,) mean over ``draws`` of the first grid sigma where c(x_sigma, sigma) > 0.5 - eps (grid[-1] if none).

    bar: advanced by N after each draw (a long estimate shows its rate and ETA).
    """
    generator = torch.Generator().manual_seed(seed)
    levels = torch.tensor(grid, dtype=torch.float32)
    total = np.zeros(len(chunks))
    for _ in range(draws):
        noise = torch.randn(chunks.action.shape, generator=generator)  # one draw per chunk, shared by all levels
        first = np.full(len(chunks), len(grid) - 1)
        pending = np.arange(len(chunks))
        # Levels in increasing blocks, each scored only on the chunks that have not passed yet: most
        # pass low, so this costs a fraction of scoring every chunk at every level.
        for low in range(0, len(grid), LEVELS_PER_PASS):
            if len(pending) == 0:
                break
            above = _passes(model, chunks.take(pending), noise[pending], levels[low : low + LEVELS_PER_PASS], eps, batch_size)
            passed = above.any(axis=1)
            first[pending[passed]] = low + above[passed].argmax(axis=1)
            pending = pending[~passed]
        total += grid[first]
        if bar is not None:
            bar.update(len(chunks))
    return total / draws


def _passes(
    model: ChunkClassifier, chunks: Chunks, noise: torch.Tensor, levels: torch.Tensor, eps: float, batch_size: int
) -> np.ndarray:
    """(N, L) whether c(x_sigma, sigma) > 0.5 - eps for each chunk (noised with its ``noise``) at each level."""
    device = next(model.parameters()).device
    per_part = max(1, batch_size // len(levels))
    parts = []
    for start in range(0, len(chunks), per_part):
        part = slice(start, start + per_part)
        x0, z = chunks.action[part], noise[part]
        n = len(x0)
        noisy = torch.sqrt(1 - levels**2)[None, :, None, None] * x0[:, None] + levels[None, :, None, None] * z[:, None]
        cond = None if chunks.cond is None else chunks.cond[part].repeat_interleave(len(levels), dim=0).to(device)
        logits = model(noisy.flatten(0, 1).to(device), levels.repeat(n).to(device), cond).reshape(n, len(levels))
        parts.append((torch.sigmoid(logits) > 0.5 - eps).cpu().numpy())
    return np.concatenate(parts)


def accuracy_levels(grid: np.ndarray) -> np.ndarray:
    """The grid levels nearest to ``ACCURACY_SIGMAS``."""
    return grid[np.abs(grid[None, :] - np.array(ACCURACY_SIGMAS)[:, None]).argmin(axis=1)]


@torch.no_grad()
def count_correct(
    model: ChunkClassifier, chunks: Chunks, clean: bool, levels: np.ndarray, draws: int, seed: int, batch_size: int = 4096
) -> np.ndarray:
    """(L,) how many of ``draws`` noisy copies of the chunks the model labels right, (c > 0.5) == clean, per level."""
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    correct = np.zeros(len(levels), np.int64)
    for _ in range(draws):
        noise = torch.randn(chunks.action.shape, generator=generator)
        for start in range(0, len(chunks), batch_size):
            part = chunks.take(np.arange(start, min(start + batch_size, len(chunks))))
            for i, level in enumerate(levels):
                sigma = torch.full((len(part),), float(level))
                noisy = add_noise(part.action, noise[start : start + len(part)], sigma)
                logits = model(noisy.to(device), sigma.to(device), _to(part.cond, device))
                correct[i] += int(((logits > 0) == clean).sum())
    return correct


def accuracy_table(
    levels: np.ndarray, correct: Mapping[str, np.ndarray], totals: Mapping[str, int]
) -> list[dict[str, float]]:
    """Rows {sigma, clean, corrupt, balanced}: per-pool accuracy and their mean (each pool weighs half)."""
    rows = []
    for i, level in enumerate(levels):
        clean, corrupt = correct["clean"][i] / totals["clean"], correct["corrupt"][i] / totals["corrupt"]
        balanced = (clean + corrupt) / 2
        rows.append({"sigma": float(level), "clean": float(clean), "corrupt": float(corrupt), "balanced": float(balanced)})
    return rows

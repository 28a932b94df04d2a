"""How identifiable is the domain to a policy? A linear probe on its observation features: target or sim?

    python -m eval.domain_probe --ckpt RUN --target CLEAN_STORE --sim CORRUPT_STORE [--out probe.json]

One explanation of why cotraining and Ambient Diffusion gain more with pixels is that image
conditioning tells the policy which domain a frame comes from, so it can keep the corrupt data's
actions apart from the clean data's; with the state vector it cannot. This measures it: the features a
trained policy computes from one observation (an image policy: its image encoders' outputs on the
centre crops it acts on, every camera it reads; a state policy: its normalised state input, the
baseline), for frames of the target store and of the sim store, and an L2-regularised logistic
regression on them. The stores' episodes are split 80/20 (whole episodes, so neighbouring frames of
one episode are never on both sides) and the probe's accuracy on the held-out episodes' frames is
reported with its Wilson interval. The two stores also differ in where their states lie (expert
trajectories vs plans), which the state baseline measures: what an image probe scores above it is the
rendering's share.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from data_gen.cli import ArgumentParser, no_empty_dirs_on_failure
from data_gen.episode_store import EpisodeStore, StoreError
from eval.metrics import wilson_interval

HELD_OUT = 0.2  # share of each store's episodes the probe is scored on
L2 = 1e-3  # on the standardised features' weights


class ProbeError(Exception):
    """A policy or store the probe cannot use; the message is one line."""


@dataclass
class ProbeResult:
    features: str  # what was probed: "image encoders (overhead)" or "state input"
    feature_dim: int
    train_frames: int
    test_frames: int
    train_accuracy: float
    test_accuracy: float
    test_ci95: tuple[float, float]
    episodes: dict[str, dict[str, int]]  # per domain: train and test episodes


def split_episodes(n_episodes: int, episodes: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) episode indices: ``episodes`` drawn at random, a HELD_OUT share of them (at least one) for test."""
    if n_episodes < 2:
        raise ProbeError("a store needs at least 2 episodes (one to train the probe, one to test it)")
    chosen = rng.permutation(n_episodes)[: min(episodes, n_episodes)]
    test = max(1, round(HELD_OUT * len(chosen)))
    return np.sort(chosen[test:]), np.sort(chosen[:test])


def frame_steps(store: EpisodeStore, episodes: np.ndarray, per_episode: int) -> np.ndarray:
    """Up to ``per_episode`` evenly spaced steps (global indices) of each episode."""
    steps = []
    for index in episodes:
        part = store.episode_slice(int(index))
        length = part.stop - part.start
        steps.append(part.start + np.unique(np.linspace(0, length - 1, min(per_episode, length)).round().astype(int)))
    return np.concatenate(steps)


def observation_features(model, store: EpisodeStore, steps: np.ndarray, batch: int = 256) -> np.ndarray:
    """(len(steps), D) features of single observations: image encoders' outputs, or the normalised state."""
    from policies.dataset import center_crop

    if model.config.obs_mode == "state":
        state = np.concatenate([store.array("agent_pos"), store.array("slider_pose")], axis=-1)[steps]
        with torch.no_grad():
            return model.encode_obs({"state": torch.from_numpy(state[:, None].astype(np.float32))}).double().numpy()
    missing = [camera for camera in model.cameras if camera not in store.cameras]
    if missing:
        raise ProbeError(f"{store.path}: no camera {', '.join(map(repr, missing))}, which the policy reads")
    parts = []
    for camera, encoder in model.encoders.items():
        if store.image_shape(camera)[:2] != model.cameras[camera]:
            raise ProbeError(f"{store.path}: camera {camera!r} is {store.image_shape(camera)[:2]}, the policy's {model.cameras[camera]}")
        frames = _frames(store, camera, steps)
        out = []
        with torch.no_grad():
            for start in range(0, len(frames), batch):
                crops = center_crop(frames[start : start + batch], model.crops[camera])
                out.append(encoder(torch.from_numpy(crops)).double().numpy())
        parts.append(np.concatenate(out))
    return np.concatenate(parts, axis=1)


def _frames(store: EpisodeStore, camera: str, steps: np.ndarray) -> np.ndarray:
    """The frames at ``steps`` (sorted), read one episode's range at a time."""
    out = np.empty((len(steps), *store.image_shape(camera)), np.uint8)
    order = np.argsort(steps)
    ends = store.episode_ends
    episode_of = np.searchsorted(ends, steps[order], side="right")
    for episode in np.unique(episode_of):
        rows = order[episode_of == episode]
        part = store.episode_slice(int(episode))
        frames = store.array(camera, part.start, part.stop)
        out[rows] = frames[steps[rows] - part.start]
    return out


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = L2) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """Weights, bias and the standardisation (mean, scale) of an L2 logistic regression (full-batch LBFGS, float64)."""
    mean, scale = x.mean(0), x.std(0) + 1e-9
    features = torch.from_numpy((x - mean) / scale)
    labels = torch.from_numpy(y.astype(np.float64))
    weights = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weights, bias], lr=1.0, max_iter=500, tolerance_grad=1e-10, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(features @ weights + bias, labels) + l2 * (weights**2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weights.detach().numpy(), float(bias.detach()), mean, scale


def accuracy(x: np.ndarray, y: np.ndarray, fit: tuple[np.ndarray, float, np.ndarray, np.ndarray]) -> tuple[int, int]:
    weights, bias, mean, scale = fit
    predicted = ((x - mean) / scale) @ weights + bias > 0
    return int((predicted == y.astype(bool)).sum()), len(y)


def probe(model, target: EpisodeStore, sim: EpisodeStore, *, episodes: int = 100, per_episode: int = 20, seed: int = 0) -> ProbeResult:
    """Train the probe on the frames of both stores' training episodes and score it on their held-out episodes."""
    rng = np.random.default_rng(seed)
    sets = {"train": ([], []), "test": ([], [])}
    counts = {}
    episodes = min(episodes, target.n_episodes, sim.n_episodes)  # as many of each: chance is 50%
    for label, store in ((1, target), (0, sim)):
        train, test = split_episodes(store.n_episodes, episodes, rng)
        counts["target" if label else "sim"] = {"train": len(train), "test": len(test)}
        steps = [frame_steps(store, chosen, per_episode) for chosen in (train, test)]
        features = observation_features(model, store, np.concatenate(steps))  # one read of the store
        for name, part in zip(("train", "test"), np.split(features, [len(steps[0])]), strict=True):
            sets[name][0].append(part)
            sets[name][1].append(np.full(len(part), label))
    (x_train, y_train), (x_test, y_test) = ((np.concatenate(xs), np.concatenate(ys)) for xs, ys in sets.values())
    fit = fit_logistic(x_train, y_train)
    right_train, n_train = accuracy(x_train, y_train, fit)
    right, n_test = accuracy(x_test, y_test, fit)
    what = "state input" if model.config.obs_mode == "state" else f"image encoders ({', '.join(model.cameras)})"
    return ProbeResult(what, x_train.shape[1], n_train, n_test, right_train / n_train, right / n_test, wilson_interval(right, n_test), counts)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m eval.domain_probe", description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, required=True, help="a run directory, checkpoint or exported policy")
    parser.add_argument("--target", type=Path, required=True, metavar="STORE", help="episodes of the target (clean) domain")
    parser.add_argument("--sim", type=Path, required=True, metavar="STORE", help="episodes of the sim (corrupt) domain")
    parser.add_argument("--episodes", type=int, default=100,
                        help="episodes drawn per store, as many of each (default 100, or the smaller store's count; 20%% held out)")
    parser.add_argument("--frames-per-episode", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write the result as JSON here")
    args = parser.parse_args(argv)
    for flag, value in (("--episodes", args.episodes), ("--frames-per-episode", args.frames_per_episode)):
        if value < 1:
            parser.error(f"{flag} must be at least 1, got {value}")
    from policies.policy import PolicyError, load_policy

    try:
        model = load_policy(args.ckpt, device="cpu", precision="float32").model
        with EpisodeStore.open(args.target) as target, EpisodeStore.open(args.sim) as sim:
            result = probe(model, target, sim, episodes=args.episodes, per_episode=args.frames_per_episode, seed=args.seed)
    except (PolicyError, StoreError, ProbeError) as error:
        print(f"python -m eval.domain_probe: error: {error}", file=sys.stderr)
        return 2
    lo, hi = result.test_ci95
    print(f"{result.features} ({result.feature_dim} features): held-out accuracy {100 * result.test_accuracy:.1f}% "
          f"[{100 * lo:.1f}, {100 * hi:.1f}] on {result.test_frames} frames of {sum(c['test'] for c in result.episodes.values())} "
          f"episodes (train {100 * result.train_accuracy:.1f}% on {result.train_frames}); chance 50%")  # fmt: skip
    if args.out is not None:
        try:
            with no_empty_dirs_on_failure(args.out.parent):
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps({"ckpt": str(args.ckpt), "target": str(args.target), "sim": str(args.sim), **asdict(result)}, indent=2))
        except OSError as error:
            print(f"python -m eval.domain_probe: error: cannot write {args.out}: {error.strerror}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

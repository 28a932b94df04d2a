"""Tiny real episode stores for the policy tests: smooth pusher paths and a square drawn where the pusher is."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from data_gen.episode_store import EpisodeMeta, EpisodeStore

IMAGE_SIZE = 32
SQUARE = 6


def smooth_actions(steps: int, rng: np.random.Generator, action_dim: int = 2) -> np.ndarray:
    """A smooth path in [0.35, 0.75]^action_dim: a random start plus slow sinusoids."""
    t = np.linspace(0, 1, steps)[:, None]
    start = rng.uniform(0.45, 0.65, action_dim)
    phase = rng.uniform(0, 2 * np.pi, action_dim)
    return start + 0.08 * np.sin(2.5 * t + phase)


def draw_square(positions: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """(T, size, size, 3) uint8 frames with a white square at each xy in [0.3, 0.8]."""
    frames = np.zeros((len(positions), size, size, 3), np.uint8)
    for i, (x, y) in enumerate(positions[:, :2]):
        col = int(np.clip((x - 0.3) / 0.5, 0, 1) * (size - SQUARE))
        row = int(np.clip((y - 0.3) / 0.5, 0, 1) * (size - SQUARE))
        frames[i, row : row + SQUARE, col : col + SQUARE] = (255, 200, 100)
    return frames


def make_store(
    path: Path,
    *,
    episodes: int = 3,
    steps: int | list[int] = 30,
    cameras: tuple[str, ...] = ("overhead",),
    image_size: int = IMAGE_SIZE,
    action_dim: int = 2,
    noise: float = 0.0,
    seed: int = 0,
    actions: list[np.ndarray] | None = None,
) -> Path:
    """A store of smooth episodes (plus white noise of std ``noise`` on the actions, the corruption)."""
    rng = np.random.default_rng(seed)
    noise_rng = np.random.default_rng([seed, 1])  # separate, so the same seed gives the same paths at any noise
    lengths = steps if isinstance(steps, list) else [steps] * episodes
    store = EpisodeStore.create(
        path, cameras={c: (image_size, image_size) for c in cameras}, domain_config={}, run={"seed": seed}, action_dim=action_dim
    )
    with store:
        for episode, length in enumerate(lengths):
            action = actions[episode] if actions is not None else smooth_actions(length, rng, action_dim)
            action = action + noise * noise_rng.standard_normal(action.shape)
            agent_pos = np.vstack([action[:1, :2], action[:-1, :2]])
            data = {
                "action": action,
                "agent_pos": agent_pos,
                "slider_pose": np.tile([0.5, 0.0, 0.3], (length, 1)),
                **{c: draw_square(agent_pos, image_size) for c in cameras},
            }
            meta = EpisodeMeta(source="teleop", domain="target", seed=episode, initial_pose=(0.5, 0.0, 0.3), success=True)
            store.append_episode(data, meta)
    return path

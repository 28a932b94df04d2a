"""Which steps a training window's observations and actions come from, checked step by step.

Every step of the stores below carries its own code, store * 10000 + episode * 1000 + step, in every
observation key, in the camera frames and in the action, so a batch says exactly which steps it was
read from. The expected steps follow the windows' definition (policies/dataset.py): window j of an
episode of length L starts at s = j - (n_obs_steps - 1); its actions are steps s .. s + horizon - 1
and its observations the first n_obs_steps of them, each clipped into 0 .. L - 1; the last window
starts at L - horizon + n_action_steps - 1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from data_gen.episode_store import EpisodeMeta, EpisodeStore
from policies.dataset import WindowDataset

# Episode lengths of the clean store (index 0) and the corrupt store (1). The 5-step episode is
# shorter than some windows' span: it gives no window there, but its steps still come before the next.
LENGTHS = {0: [9, 5, 20], 1: [11, 14]}
IMAGE_SIZE = 4
# (horizon, n_obs_steps, n_action_steps): the default policy's, and two others.
WINDOWS = [(16, 2, 8), (8, 3, 4), (6, 1, 6)]


def code(store: int, episode: int, step: np.ndarray) -> np.ndarray:
    return store * 10000 + episode * 1000 + np.asarray(step)


def coded_episode(store: int, episode: int, length: int) -> dict[str, np.ndarray]:
    """Every key of every step holds the step's code (plus a fixed fraction per column, exact in float32)."""
    steps = np.arange(length)
    c = code(store, episode, steps).astype(float)[:, None]
    frames = np.empty((length, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    frames[..., 0] = (store * 16 + episode)
    frames[..., 1] = steps[:, None, None]
    frames[..., 2] = 255 - steps[:, None, None]
    return {
        "action": c + [0.0, 0.5],
        "agent_pos": c + [0.25, 0.75],
        "slider_pose": c + [0.125, 0.375, 0.625],
        "overhead": frames,
    }


def sigma_min_of(store: int, episode: int, step: np.ndarray) -> np.ndarray:
    """A per-step annotation value that also names its step (in [0, 1])."""
    return (episode * 100 + np.asarray(step) + 1) / 1000


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("coded")
    paths = []
    for store_index, lengths in LENGTHS.items():
        path = root / f"store{store_index}.zarr"
        with EpisodeStore.create(path, cameras={"overhead": (IMAGE_SIZE, IMAGE_SIZE)}, domain_config={}, run={"seed": 0}) as store:
            for episode, length in enumerate(lengths):
                meta = EpisodeMeta(source="teleop", domain="target", seed=episode, initial_pose=(0.5, 0.0, 0.0), success=True)
                store.append_episode(coded_episode(store_index, episode, length), meta)
            values = np.concatenate([sigma_min_of(store_index, e, np.arange(n)) for e, n in enumerate(lengths)])
            store.write_annotation("coded", values)
        paths.append(path)
    return paths[0], paths[1]


def expected_windows(horizon: int, n_obs_steps: int, n_action_steps: int) -> list[dict]:
    """Every window, clean store first, as (store, episode, its action steps, its observation steps)."""
    windows = []
    for store, lengths in LENGTHS.items():
        for episode, length in enumerate(lengths):
            last_start = length - horizon + n_action_steps - 1
            for start in range(-(n_obs_steps - 1), last_start + 1):
                action_steps = np.clip(np.arange(start, start + horizon), 0, length - 1)
                windows.append({"store": store, "episode": episode, "action": action_steps,
                                "obs": action_steps[:n_obs_steps]})  # fmt: skip
    return windows


def stacked(windows: list[dict], key: str) -> np.ndarray:
    return np.stack([code(w["store"], w["episode"], w[key]) for w in windows])


@pytest.mark.parametrize("horizon, n_obs_steps, n_action_steps", WINDOWS)
def test_state_windows_read_their_observations_and_actions_from_the_right_steps(stores, horizon, n_obs_steps, n_action_steps):
    windows = expected_windows(horizon, n_obs_steps, n_action_steps)
    data = WindowDataset([stores[0]], [stores[1]], horizon=horizon, n_obs_steps=n_obs_steps,
                         n_action_steps=n_action_steps, obs_mode="state")  # fmt: skip
    assert len(data) == len(windows)
    assert data.num_clean == sum(w["store"] == 0 for w in windows)
    order = np.random.default_rng(0).permutation(len(windows))  # any order of indices, not just 0..n-1
    batch = data.batch(order)
    windows = [windows[i] for i in order]
    actions, observations = stacked(windows, "action"), stacked(windows, "obs")
    np.testing.assert_array_equal(batch["action"], np.stack([actions, actions + 0.5], -1).astype(np.float32))
    state = np.stack([observations + f for f in (0.25, 0.75, 0.125, 0.375, 0.625)], -1).astype(np.float32)
    np.testing.assert_array_equal(batch["state"], state, err_msg="observations come from other steps")


def test_the_default_windows_at_episode_edges_spelled_out(stores):
    """horizon 16, 2 observations, 8 actions: a window starts one step before its episode and ends up to
    7 steps after it, repeating the first or last step; the 5-step episode gives no window."""
    data = WindowDataset([stores[0]], [stores[1]], horizon=16, n_obs_steps=2, n_action_steps=8, obs_mode="state")
    assert len(data) == (9 - 7) + 0 + (20 - 7) + (11 - 7) + (14 - 7) and data.num_clean == 15
    batch = data.batch(np.arange(len(data)))
    actions, observations = batch["action"][..., 0], batch["state"][..., 0] - 0.25
    first_of_episode_0 = [0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 8, 8, 8, 8, 8, 8]
    np.testing.assert_array_equal(actions[0], first_of_episode_0)
    np.testing.assert_array_equal(observations[0], [0, 0])
    np.testing.assert_array_equal(actions[1], [*range(9), *[8] * 7])
    np.testing.assert_array_equal(observations[1], [0, 1])
    np.testing.assert_array_equal(observations[2], [2000, 2000])  # clean episode 2, after the windowless episode 1
    np.testing.assert_array_equal(actions[14], [*range(2011, 2020), *[2019] * 7])  # its last window
    np.testing.assert_array_equal(observations[14], [2011, 2012])
    np.testing.assert_array_equal(actions[15], [10000, *range(10000, 10011), *[10010] * 4])  # corrupt episode 0: 11 steps
    np.testing.assert_array_equal(observations[15], [10000, 10000])
    # Corrupt episode 1 (14 steps): its last window starts at 14 - 16 + 7 = 5 and ends 7 steps past the episode.
    np.testing.assert_array_equal(actions[-1], [*range(11005, 11014), *[11013] * 7])
    np.testing.assert_array_equal(observations[-1], [11005, 11006])


@pytest.mark.parametrize("cache_images", [True, False], ids=["cached", "on-demand"])
@pytest.mark.parametrize("horizon, n_obs_steps, n_action_steps", WINDOWS)
def test_image_windows_read_their_frames_and_positions_from_the_right_steps(stores, horizon, n_obs_steps, n_action_steps, cache_images):
    windows = expected_windows(horizon, n_obs_steps, n_action_steps)
    data = WindowDataset([stores[0]], [stores[1]], horizon=horizon, n_obs_steps=n_obs_steps,
                         n_action_steps=n_action_steps, obs_mode="image", cache_images=cache_images)  # fmt: skip
    assert len(data) == len(windows)
    indices = np.arange(len(windows))
    full = data.batch(indices)
    cropped = data.batch(indices, {"overhead": (3, 3)}, np.random.default_rng(0))
    actions, observations = stacked(windows, "action"), stacked(windows, "obs")
    for batch in (full, cropped):
        np.testing.assert_array_equal(batch["action"], np.stack([actions, actions + 0.5], -1).astype(np.float32))
        np.testing.assert_array_equal(batch["agent_pos"], np.stack([observations + 0.25, observations + 0.75], -1).astype(np.float32))
    obs_steps = np.stack([w["obs"] for w in windows])
    episode_ids = np.array([w["store"] * 16 + w["episode"] for w in windows])[:, None]
    for batch, size in ((full, IMAGE_SIZE), (cropped, 3)):
        frames = batch["overhead"]  # (B, n_obs_steps, 3, h, w)
        assert frames.shape == (len(windows), n_obs_steps, 3, size, size)
        expected = np.stack([np.broadcast_to(episode_ids, obs_steps.shape), obs_steps, 255 - obs_steps], axis=2)
        np.testing.assert_array_equal(frames, np.broadcast_to(expected[..., None, None], frames.shape).astype(np.uint8))


@pytest.mark.parametrize("horizon, n_obs_steps, n_action_steps", WINDOWS)
def test_corrupt_windows_take_the_annotation_of_their_first_step(stores, horizon, n_obs_steps, n_action_steps):
    windows = [w for w in expected_windows(horizon, n_obs_steps, n_action_steps) if w["store"] == 1]
    data = WindowDataset([stores[0]], [stores[1]], horizon=horizon, n_obs_steps=n_obs_steps,
                         n_action_steps=n_action_steps, obs_mode="state")  # fmt: skip
    expected = np.array([sigma_min_of(1, w["episode"], w["action"][0]) for w in windows], dtype=np.float32)
    np.testing.assert_array_equal(data.corrupt_annotation("coded").sigma_min, expected)

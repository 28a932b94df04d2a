"""Windows over episode stores: edge padding, the normaliser, crops, image caching and clear errors."""

import numpy as np
import pytest
import torch

from data_gen.episode_store import EpisodeStore, StoreError
from policies.dataset import DataError, WindowDataset, center_crop, crop_shape, random_crop
from policies.normalizer import MinMaxNormalizer
from tests.policies.synthetic_stores import make_store


@pytest.fixture(scope="module")
def counting_store(tmp_path_factory):
    """Two episodes (20 and 12 steps) whose action is (global step, episode)."""
    lengths = [20, 12]
    actions, start = [], 0
    for episode, length in enumerate(lengths):
        actions.append(np.stack([np.arange(start, start + length), np.full(length, episode)], -1).astype(float))
        start += length
    return make_store(tmp_path_factory.mktemp("count") / "s.zarr", steps=lengths, actions=actions)


def test_windows_repeat_the_first_and_last_step_at_episode_edges(counting_store):
    data = WindowDataset([counting_store], horizon=16, n_obs_steps=2, n_action_steps=8, obs_mode="state")
    # Diffusion Policy's count: starts from -(n_obs_steps - 1) to L - horizon + n_action_steps - 1.
    assert len(data) == (20 - 7) + (12 - 7)
    batch = data.batch(np.arange(len(data)))
    steps, episodes = batch["action"][..., 0], batch["action"][..., 1]
    assert np.all(episodes == episodes[:, :1]), "a window mixes two episodes"
    np.testing.assert_array_equal(steps[0], [0, *range(15)])  # first window starts one step early
    np.testing.assert_array_equal(batch["state"][0, :, 0], [0, 0])  # obs: first step repeated
    last_of_first = 20 - 7 - 1
    np.testing.assert_array_equal(steps[last_of_first], [*range(11, 20), *[19] * 7])
    np.testing.assert_array_equal(steps[20 - 7], [20, *range(20, 32), 31, 31, 31])  # second episode: its own edges
    assert data.num_clean == len(data) and data.num_corrupt == 0
    assert data.episode_counts == {"clean": 2, "corrupt": 0}


def test_normalizer_maps_the_data_onto_minus_one_one_and_back(clean_store, corrupt_store):
    data = WindowDataset([clean_store], [corrupt_store], obs_mode="state")
    normalizer = data.fit_normalizer()
    actions = torch.from_numpy(data.low_dim["action"])
    scaled = normalizer.normalize("action", actions)
    torch.testing.assert_close(scaled.amin(0), -torch.ones(2))
    torch.testing.assert_close(scaled.amax(0), torch.ones(2))
    torch.testing.assert_close(normalizer.unnormalize("action", scaled), actions, atol=1e-6, rtol=0)
    state = normalizer.normalize("state", torch.from_numpy(data.batch(np.arange(len(data)))["state"]))
    assert state[..., 2:].abs().max().item() == 0  # the slider never moves here: constant dims map to 0
    restored = MinMaxNormalizer({"action": 2, "state": 5})
    restored.load_state_dict(normalizer.state_dict())
    torch.testing.assert_close(restored.normalize("action", actions), scaled)


def test_the_action_normaliser_may_be_fitted_on_the_clean_stores_alone(tmp_path, clean_store):
    noisy = make_store(tmp_path / "noisy.zarr", episodes=3, steps=30, noise=0.2, seed=5)  # labels far outside the clean range
    data = WindowDataset([clean_store], [noisy], obs_mode="state")
    with EpisodeStore.open(clean_store) as store:
        clean_actions = store.array("action")
    on_clean, on_all = data.fit_normalizer("clean"), data.fit_normalizer()
    torch.testing.assert_close(on_clean.action_min, torch.from_numpy(clean_actions.min(0)).to(on_clean.action_min))
    torch.testing.assert_close(on_clean.action_max, torch.from_numpy(clean_actions.max(0)).to(on_clean.action_max))
    assert torch.all(on_all.action_min < on_clean.action_min) and torch.all(on_all.action_max > on_clean.action_max)
    torch.testing.assert_close(on_clean.state_min, on_all.state_min)  # observations: every store's, either way
    with pytest.raises(ValueError, match="action_on"):
        data.fit_normalizer("corrupt")


def test_crops_have_the_requested_shape_and_come_from_the_image():
    assert crop_shape((96, 96), 0.875) == (84, 84)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 2, 32, 40, 3), dtype=np.uint8)
    crops = random_crop(images, (28, 30), rng)
    assert crops.shape == (6, 2, 3, 28, 30) and crops.dtype == np.uint8
    offsets = set()
    for i in range(6):
        hwc = np.moveaxis(crops[i], -3, -1)
        found = [(r, c) for r in range(5) for c in range(11) if np.array_equal(images[i, :, r : r + 28, c : c + 30], hwc)]
        assert len(found) == 1, "a crop must be one window of its own sample, shared by its frames"
        offsets.add(found[0])
    assert len(offsets) > 1, "random crops should differ between samples"
    centre = center_crop(images, (28, 30))
    np.testing.assert_array_equal(np.moveaxis(centre, -3, -1), images[..., 2:30, 5:35, :])


def test_batches_hold_cropped_channels_first_images(clean_store):
    data = WindowDataset([clean_store], obs_mode="image")
    batch = data.batch(np.arange(4), {"overhead": (28, 28)}, np.random.default_rng(0))
    assert batch["overhead"].shape == (4, 2, 3, 28, 28) and batch["overhead"].dtype == np.uint8
    assert batch["agent_pos"].shape == (4, 2, 2) and batch["action"].shape == (4, 16, 2)
    assert batch["overhead"].max() == 255  # the square is in view


def test_cached_and_on_demand_images_agree(clean_store, corrupt_store):
    cached = WindowDataset([clean_store], [corrupt_store], cache_images=True)
    lazy = WindowDataset([clean_store], [corrupt_store], cache_images=False)
    assert "cached in memory" in cached.describe() and "decoded on demand" in lazy.describe()
    auto = WindowDataset([clean_store], [corrupt_store], image_cache_bytes=cached.image_bytes - 1)
    assert "decoded on demand" in auto.describe()  # the cache is used only when it fits
    indices = np.random.default_rng(0).integers(0, len(cached), 32)
    a, b = cached.batch(indices), lazy.batch(indices)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_corrupt_windows_read_a_named_annotation_set(tmp_path, clean_store):
    path = make_store(tmp_path / "c.zarr", episodes=2, steps=[12, 10], noise=0.01)
    values = np.linspace(0.1, 0.9, 22)
    with EpisodeStore.open(path, "a") as store:
        store.write_annotation("strong", values, attrs={"normalizer": {"action_min": [0.0, 0.0]}})
        store.write_annotation("weak", values / 2, sigma_max=np.full(22, 0.05))
    data = WindowDataset([clean_store], [path])
    strong = data.corrupt_annotation("strong")
    assert strong.sigma_min.shape == (data.num_corrupt,) == ((12 - 7) + (10 - 7),)
    # Window k of the first episode starts at step k - 1 (clipped to 0): its chunk's annotation.
    np.testing.assert_allclose(strong.sigma_min[:5], values[[0, 0, 1, 2, 3]], rtol=1e-6)
    np.testing.assert_allclose(strong.sigma_min[5:], values[[12, 12, 13]], rtol=1e-6)
    assert strong.sigma_max is None and strong.attrs[str(path)]["normalizer"] == {"action_min": [0.0, 0.0]}
    weak = data.corrupt_annotation("weak")
    np.testing.assert_allclose(weak.sigma_min, strong.sigma_min / 2, rtol=1e-6)
    np.testing.assert_allclose(weak.sigma_max, 0.05, rtol=1e-6)
    with pytest.raises(StoreError, match="no annotation set 'other'"):
        data.corrupt_annotation("other")


def test_stores_that_cannot_be_trained_together_are_clear_errors(tmp_path, clean_store):
    with pytest.raises(StoreError, match="no such episode store"):
        WindowDataset([tmp_path / "missing.zarr"])
    other_camera = make_store(tmp_path / "cam.zarr", episodes=1, cameras=("wrist",))
    with pytest.raises(DataError, match="cameras .*wrist.* differ"):
        WindowDataset([clean_store], [other_camera])
    other_size = make_store(tmp_path / "size.zarr", episodes=1, image_size=24)
    with pytest.raises(DataError, match="24x24"):
        WindowDataset([clean_store], [other_size])
    other_action = make_store(tmp_path / "act.zarr", episodes=1, action_dim=3)
    with pytest.raises(DataError, match="action_dim 3"):
        WindowDataset([clean_store], [other_action])
    short = make_store(tmp_path / "short.zarr", episodes=1, steps=5)
    with pytest.raises(DataError, match="no training windows"):
        WindowDataset([short])

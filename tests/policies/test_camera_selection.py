"""A policy reads the cameras it names (PolicyConfig.cameras) and a smaller ResNet trunk (resnet_stages):
the CPU image preset's two knobs, from the stores through training to the env a rollout builds."""

import numpy as np
import pytest
import torch
from gymnasium.spaces import Box, Dict

from eval.agents import CheckpointAgent, make_env
from policies.config import ConfigError, DataConfig, PolicyConfig, RunConfig, TrainingConfig
from policies.dataset import DataError, WindowDataset
from policies.policy import PolicyError, load_policy
from policies.train import train
from policies.vision import ResNet18Trunk
from tests.policies.synthetic_stores import make_store


@pytest.fixture(scope="module")
def two_cameras(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("stores") / "two.zarr", episodes=3, cameras=("overhead", "wrist"))


@pytest.fixture(scope="module")
def overhead_run(tmp_path_factory, two_cameras):
    config = RunConfig(
        policy=PolicyConfig(preset="tiny", cameras=("overhead",), resnet_stages=2),
        training=TrainingConfig(method="clean", steps=6, batch_size=8, lr=1e-3, warmup_steps=2, device="cpu", log_every=3),
        data=DataConfig(clean=(str(two_cameras),)),
    )
    out = tmp_path_factory.mktemp("runs") / "overhead"
    train(config, out, progress=False)
    return config, out


def test_the_dataset_reads_the_named_cameras_and_refuses_a_store_without_them(tmp_path, two_cameras):
    both = WindowDataset([two_cameras], cache_images=True)
    wrist = WindowDataset([two_cameras], cameras=("wrist",), cache_images=True)
    assert list(both.cameras) == ["overhead", "wrist"] and list(wrist.cameras) == ["wrist"]
    batch, alone = both.batch(np.arange(4)), wrist.batch(np.arange(4))
    assert set(alone) == {"action", "agent_pos", "wrist"}
    np.testing.assert_array_equal(alone["wrist"], batch["wrist"])
    overhead_only = make_store(tmp_path / "overhead.zarr", episodes=1)
    with pytest.raises(DataError, match=r"overhead.zarr: no camera 'wrist' \(it holds \[overhead 32x32\]\)"):
        WindowDataset([two_cameras], [overhead_only], cameras=("wrist",))
    # The overhead camera alone: both stores hold it at the same size, so they train together.
    assert list(WindowDataset([two_cameras], [overhead_only], cameras=("overhead",)).cameras) == ["overhead"]
    # State mode reads no images: stores with other cameras (or none) train together.
    assert WindowDataset([two_cameras], [overhead_only], obs_mode="state").cameras == {}


def test_a_policy_on_one_camera_ignores_the_others_and_a_rollout_renders_only_its_own(overhead_run):
    _, out = overhead_run
    policy = load_policy(out, device="cpu")
    assert policy.cameras == {"overhead": (32, 32)} and list(policy.model.encoders) == ["overhead"]
    rng = np.random.default_rng(0)
    overhead = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    agent_pos = np.array([0.5, 0.5], np.float32)
    actions = []
    for wrist in (None, np.zeros((32, 32, 3), np.uint8), np.full((32, 32, 3), 255, np.uint8)):
        policy.reset(seed=3)
        pixels = {"overhead": overhead} if wrist is None else {"overhead": overhead, "wrist": wrist}
        actions.append(policy.act({"pixels": pixels, "agent_pos": agent_pos}))
    assert all(np.array_equal(actions[0], a) for a in actions[1:])  # the wrist images change nothing
    policy.reset(seed=3)
    other = policy.act({"pixels": {"overhead": 255 - overhead}, "agent_pos": agent_pos})
    assert not np.array_equal(other, actions[0])  # while the overhead image it reads does
    with pytest.raises(PolicyError, match="differ from training"):
        policy.act({"pixels": {"wrist": overhead}, "agent_pos": agent_pos})
    box, position = Box(0, 255, (32, 32, 3), np.uint8), Box(-1, 1, (2,), np.float32)
    policy.check_observation_space(Dict({"pixels": Dict({"overhead": box, "wrist": box}), "agent_pos": position}))
    with pytest.raises(PolicyError, match="differ from training"):
        policy.check_observation_space(Dict({"pixels": Dict({"wrist": box}), "agent_pos": position}))

    agent = CheckpointAgent(out / "ckpt.pt")
    env = make_env(agent, {"image_size": 32})
    try:  # the built-in target domain has an overhead and a wrist camera; the env builds the one read
        assert list(env.observation_space["pixels"].spaces) == ["overhead"]
        obs, _ = env.reset(seed=0)
        assert set(obs["pixels"]) == {"overhead"} and obs["pixels"]["overhead"].shape == (32, 32, 3)
        assert np.asarray(agent.act(obs, {})).shape == (2,)
    finally:
        env.close()


def test_a_smaller_trunk_keeps_a_finer_map_and_the_knobs_stay_out_of_old_records():
    image = torch.zeros(2, 3, 84, 84)
    assert ResNet18Trunk(16)(image).shape == (2, 128, 3, 3)
    assert ResNet18Trunk(16, stages=3)(image).shape == (2, 64, 6, 6)
    assert ResNet18Trunk(16, stages=1)(image).shape == (2, 16, 21, 21)
    with pytest.raises(ValueError, match="1 to 4 stages"):
        ResNet18Trunk(16, stages=5)
    # At their defaults the new fields are left out of a dump, so the records of earlier runs (an
    # experiment's ledger, a checkpoint's config) still compare equal and resume.
    recorded = PolicyConfig(preset="tiny", obs_mode="state").model_dump(mode="json")
    assert "resnet_stages" not in recorded and "cameras" not in recorded
    assert PolicyConfig.model_validate(recorded) == PolicyConfig(preset="tiny", obs_mode="state")
    cpu = PolicyConfig(preset="cpu", cameras=("overhead",))
    assert cpu.resnet_stages == 3 and cpu.resnet_width == 16 and cpu.down_dims == (64, 128, 256)
    assert PolicyConfig.model_validate(cpu.model_dump(mode="json")) == cpu
    with pytest.raises(ConfigError, match="name a camera twice"):
        RunConfig.from_json('{"policy": {"cameras": ["overhead", "overhead"]}, "data": {"clean": ["x"]}}')


def test_a_checkpoint_whose_config_names_other_cameras_than_its_weights_is_refused(overhead_run, tmp_path):
    _, out = overhead_run
    payload = torch.load(out / "ckpt.pt", weights_only=True)
    config = RunConfig.from_json(payload["config"])
    payload["config"] = config.model_copy(update={"policy": config.policy.model_copy(update={"cameras": ("wrist",)})}).to_json()
    torch.save(payload, tmp_path / "ckpt.pt")
    with pytest.raises(PolicyError, match=r"the weights are for cameras \['overhead'\], the config names \['wrist'\]"):
        load_policy(tmp_path / "ckpt.pt", device="cpu")

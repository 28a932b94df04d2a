"""The domain probe: it tells renderings apart only when they differ, and the state baseline only when states do."""

import contextlib
import json
from pathlib import Path

import numpy as np
import pytest

from data_gen.episode_store import EpisodeMeta, EpisodeStore
from eval.domain_probe import main
from policies.config import DataConfig, PolicyConfig, RunConfig, TrainingConfig
from policies.train import train
from tests.policies.synthetic_stores import draw_square, smooth_actions


def store(path: Path, seed: int, background: int = 0, episodes: int = 12, steps: int = 30, shift: float = 0.0) -> Path:
    """Smooth pusher paths, a square drawn where the pusher is on a grey ``background``; states shifted by ``shift``."""
    rng = np.random.default_rng(seed)
    with EpisodeStore.create(path, cameras={"overhead": (32, 32)}, domain_config={}, run={"seed": seed}) as out:
        for episode in range(episodes):
            action = smooth_actions(steps, rng) + shift
            agent_pos = np.vstack([action[:1], action[:-1]])
            frames = draw_square(agent_pos - shift)  # the same pictures whatever the shift
            frames[frames.sum(-1) == 0] = background
            data = {"action": action, "agent_pos": agent_pos, "slider_pose": np.tile([0.5, 0.0, 0.3], (steps, 1)), "overhead": frames}
            out.append_episode(data, EpisodeMeta(source="gcs", domain="x", seed=episode, initial_pose=(0.5, 0, 0.3), success=True))
    return path


def trained(stores: Path, obs_mode: str, clean: Path) -> Path:
    out = stores / f"policy_{obs_mode}"
    config = RunConfig(
        # 2 stages: a 28 px crop keeps a 4 x 4 map (4 stages would leave 1 x 1, where a spatial softmax sees nothing)
        policy=PolicyConfig(preset="tiny", obs_mode=obs_mode, resnet_stages=2),
        training=TrainingConfig(method="clean", steps=4, batch_size=8, warmup_steps=1, device="cpu", log_every=2),
        data=DataConfig(clean=(str(clean),)),
    )
    train(config, out, progress=False)
    return out


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe")
    return {
        "root": root,
        "target": store(root / "target.zarr", seed=0),
        "same": store(root / "same.zarr", seed=1),  # rendered and distributed like target: indistinguishable
        "lit": store(root / "lit.zarr", seed=1, background=90),  # another rendering, the same states
        "moved": store(root / "moved.zarr", seed=1, shift=0.3),  # the same pictures, other states
    }


def run(stores, ckpt: Path, sim: str, capsys) -> dict:
    out = stores["root"] / f"{ckpt.name}_{sim}.json"
    assert main(["--ckpt", str(ckpt), "--target", str(stores["target"]), "--sim", str(stores[sim]), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert f"held-out accuracy {100 * result['test_accuracy']:.1f}%" in printed
    return result


def test_an_image_probe_sees_the_rendering_and_a_state_probe_sees_the_states(stores, capsys):
    image = trained(stores["root"], "image", stores["target"])
    state = trained(stores["root"], "state", stores["target"])
    lit = run(stores, image, "lit", capsys)
    assert lit["features"] == "image encoders (overhead)" and lit["feature_dim"] == 16
    assert lit["test_accuracy"] >= 0.95 and lit["episodes"] == {"target": {"train": 10, "test": 2}, "sim": {"train": 10, "test": 2}}
    assert lit["test_frames"] == 2 * 2 * 20 and lit["train_frames"] == 2 * 10 * 20
    assert run(stores, image, "same", capsys)["test_accuracy"] <= 0.8  # nothing to see
    assert run(stores, image, "moved", capsys)["test_accuracy"] <= 0.8  # the same pictures: the encoder cannot tell
    assert run(stores, state, "moved", capsys)["test_accuracy"] >= 0.95  # the states can
    assert run(stores, state, "lit", capsys)["test_accuracy"] <= 0.8  # and the rendering is invisible to them


def test_bad_inputs_are_one_line_errors(stores, tmp_path, capsys):
    image = stores["root"] / "policy_image"
    if not image.exists():
        image = trained(stores["root"], "image", stores["target"])
    other = tmp_path / "wrist.zarr"
    with EpisodeStore.create(other, cameras={"wrist": (32, 32)}, domain_config={}, run={"seed": 0}) as out:
        for episode in range(2):
            data = {"action": np.zeros((20, 2)), "agent_pos": np.zeros((20, 2)), "slider_pose": np.zeros((20, 3)),
                    "wrist": np.zeros((20, 32, 32, 3), np.uint8)}  # fmt: skip
            out.append_episode(data, EpisodeMeta(source="gcs", domain="x", seed=episode, initial_pose=(0, 0, 0), success=True))
    for args, message in [
        (["--ckpt", str(tmp_path / "none"), "--target", str(stores["target"]), "--sim", str(stores["lit"])], "no such"),
        (["--ckpt", str(image), "--target", str(tmp_path / "none.zarr"), "--sim", str(stores["lit"])], "no such episode store"),
        (["--ckpt", str(image), "--target", str(stores["target"]), "--sim", str(other)], "no camera 'overhead'"),
        (["--ckpt", str(image), "--target", str(stores["target"]), "--sim", str(stores["lit"]), "--episodes", "0"], "--episodes must be at least 1"),
    ]:
        with pytest.raises(SystemExit) if "--episodes" in args else contextlib.nullcontext():
            code = main(args)
            assert code == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, (args, err)


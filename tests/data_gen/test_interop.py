"""Tests for data_gen.export / data_gen.import: LeRobot v3.0 and Diffusion Policy layouts on real files.

Every comparison is exact: a frame, action, offset or timestamp off by one fails a test.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import imageio.v2 as iio
import numpy as np
import pyarrow.parquet as pq
import pytest
import zarr

from data_gen import export as export_cli
from data_gen.episode_store import EpisodeMeta, EpisodeStore
from data_gen.interop import export_store, import_dataset
from data_gen.interop_format import DEFAULT_FPS
from data_gen.interop_lerobot import OBS_TYPES

import_cli = importlib.import_module("data_gen.import")  # `import` is a keyword: no `from data_gen import import`

CAMERAS = {"overhead": (16, 24), "wrist": (8, 8)}
LENGTHS = [5, 12, 7]
DOMAIN_CONFIG = {"name": "sim", "friction": 0.3, "render": {"image_size": 16}}
RUN = {"generator": "gcs", "seed": 3, "domain": "sim"}
REPO_ROOT = Path(__file__).resolve().parents[2]
FORMATS = ["lerobot", "diffusion-policy"]


def make_store(path: Path) -> Path:
    """Three episodes of noise images (the hardest case for a lossless codec) and two annotation sets."""
    rng = np.random.default_rng(7)
    metas = [
        EpisodeMeta(source="gcs", domain="sim", seed=11, initial_pose=(0.5, -0.1, 0.25), success=True,
                    planning_time=1.25, plan_cost=3.5),
        EpisodeMeta(source="teleop", domain="réel", seed=12, initial_pose=(0.4, 0.0, -1.0), success=False,
                    extra={"operator": "ana", "retries": [1, 2], "pi": 3.141592653589793}),
        EpisodeMeta(source="expert", domain="target", seed=13, initial_pose=(0.45, 0.05, 2.0), success=True),
    ]
    with EpisodeStore.create(path, cameras=CAMERAS, domain_config=DOMAIN_CONFIG, run=RUN) as store:
        for length, meta in zip(LENGTHS, metas):
            episode = {"action": rng.normal(size=(length, 2)), "agent_pos": rng.normal(size=(length, 2)),
                       "slider_pose": rng.normal(size=(length, 3))}
            episode |= {name: rng.integers(0, 256, (length, h, w, 3), dtype=np.uint8) for name, (h, w) in CAMERAS.items()}
            store.append_episode(episode, meta)
        n = store.n_steps
        store.write_annotation("classifier", rng.uniform(size=n), rng.uniform(size=n),
                               {"config": {"steps": 200}, "normaliser": [0.1, 0.2]})
        store.write_annotation("flat-0.5", np.full(n, 0.5))
    return path


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return make_store(tmp_path_factory.mktemp("interop") / "demos.zarr")


@pytest.fixture(scope="module")
def exports(source, tmp_path_factory) -> dict[str, Path]:
    """The source store exported once to each format (tests only read these)."""
    root = tmp_path_factory.mktemp("exports")
    out = {}
    for fmt in FORMATS:
        out[fmt] = root / fmt
        summary = export_store(source, out[fmt], fmt)
        assert (summary.episodes, summary.frames) == (len(LENGTHS), sum(LENGTHS)) and summary.bytes > 0
    return out


def episode_bounds() -> tuple[np.ndarray, np.ndarray]:
    ends = np.cumsum(LENGTHS)
    return ends - LENGTHS, ends


def assert_stores_equal(a: EpisodeStore, b: EpisodeStore) -> None:
    """Bit-exact: step arrays, ends, metadata, annotation sets, root attributes."""
    assert (a.cameras, a.action_dim, a.domain_config, a.run) == (b.cameras, b.action_dim, b.domain_config, b.run)
    assert [a.image_shape(c) for c in a.cameras] == [b.image_shape(c) for c in b.cameras]
    np.testing.assert_array_equal(a.episode_ends, b.episode_ends)
    for key in a.step_keys:
        x, y = a.array(key), b.array(key)
        assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), key
    for i in range(a.n_episodes):
        assert a.episode_meta(i).model_dump_json() == b.episode_meta(i).model_dump_json(), i
    assert a.annotation_names == b.annotation_names
    for name in a.annotation_names:
        x, y = a.annotation(name), b.annotation(name)
        assert x.attrs == y.attrs
        assert x.sigma_min.tobytes() == y.sigma_min.tobytes()
        assert (x.sigma_max is None) == (y.sigma_max is None)
        if x.sigma_max is not None:
            assert x.sigma_max.tobytes() == y.sigma_max.tobytes()


# --------------------------------------------------------------------------------------------------
# LeRobot v3.0


def test_lerobot_export_meta_files(source, exports):
    out, store = exports["lerobot"], EpisodeStore.open(source)
    info = json.loads((out / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == DEFAULT_FPS
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (3, sum(LENGTHS), 1)
    assert info["chunks_size"] == 1000 and info["splits"] == {"train": "0:3"}
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["video_path"] == "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    features = info["features"]
    assert features["action"] == {"dtype": "float32", "shape": [2], "names": ["x", "y"]}
    assert features["observation.state"]["shape"] == [2]
    # An image export: the slider pose is no observation feature (no image obs_type of the env returns it).
    assert "observation.environment_state" not in features and features["slider_pose"]["shape"] == [3]
    for camera, (h, w) in CAMERAS.items():
        feature = features[f"observation.images.{camera}"]
        assert feature["dtype"] == "video" and feature["shape"] == [h, w, 3]
        assert feature["info"]["video.fps"] == DEFAULT_FPS and feature["info"]["video.codec"] == "h264"
    for key in ["annotations.classifier.sigma_min", "annotations.classifier.sigma_max", "annotations.flat-0.5.sigma_min"]:
        assert features[key]["dtype"] == "float32"
    assert "annotations.flat-0.5.sigma_max" not in features
    for key in ["timestamp", "frame_index", "episode_index", "index", "task_index"]:
        assert key in features
    for path in [info["data_path"].format(chunk_index=0, file_index=0), "meta/tasks.parquet",
                 "meta/episodes/chunk-000/file-000.parquet"]:
        assert (out / path).is_file(), path

    stats = json.loads((out / "meta/stats.json").read_text())
    action = store.array("action").astype(np.float64)
    np.testing.assert_allclose(stats["action"]["mean"], action.mean(0))
    assert stats["action"]["min"] == action.min(0).tolist() and stats["action"]["count"] == [sum(LENGTHS)]
    images = store.array("overhead") / 255.0
    np.testing.assert_allclose(np.ravel(stats["observation.images.overhead"]["mean"]), images.reshape(-1, 3).mean(0))
    np.testing.assert_allclose(np.ravel(stats["observation.images.overhead"]["std"]), images.reshape(-1, 3).std(0))
    assert np.shape(stats["observation.images.overhead"]["max"]) == (3, 1, 1)

    tasks = pq.read_table(out / "meta/tasks.parquet").to_pydict()
    assert tasks["task_index"] == [0] and len(tasks["task"]) == 1


def test_lerobot_frames_and_episode_offsets(source, exports):
    out, store = exports["lerobot"], EpisodeStore.open(source)
    frames = pq.read_table(out / "data/chunk-000/file-000.parquet")
    n = sum(LENGTHS)
    assert frames.num_rows == n
    for column, key in [("action", "action"), ("observation.state", "agent_pos"), ("slider_pose", "slider_pose")]:
        values = np.array(frames.column(column).to_pylist(), dtype=np.float32)
        np.testing.assert_array_equal(values, store.array(key), err_msg=column)
    np.testing.assert_array_equal(frames.column("annotations.classifier.sigma_max").to_numpy(),
                                  store.annotation("classifier").sigma_max)
    starts, ends = episode_bounds()
    episode_index = np.repeat(np.arange(3), LENGTHS)
    frame_index = np.concatenate([np.arange(n) for n in LENGTHS])
    np.testing.assert_array_equal(frames.column("episode_index").to_numpy(), episode_index)
    np.testing.assert_array_equal(frames.column("frame_index").to_numpy(), frame_index)
    np.testing.assert_array_equal(frames.column("index").to_numpy(), np.arange(n))
    np.testing.assert_array_equal(frames.column("timestamp").to_numpy(), (frame_index / DEFAULT_FPS).astype(np.float32))
    assert set(frames.column("task_index").to_pylist()) == {0}

    episodes = pq.read_table(out / "meta/episodes/chunk-000/file-000.parquet").to_pydict()
    assert episodes["episode_index"] == [0, 1, 2] and episodes["length"] == LENGTHS
    assert episodes["dataset_from_index"] == starts.tolist() and episodes["dataset_to_index"] == ends.tolist()
    assert episodes["data/chunk_index"] == [0, 0, 0] and episodes["data/file_index"] == [0, 0, 0]
    assert all(len(tasks) == 1 for tasks in episodes["tasks"])
    for camera in CAMERAS:
        key = f"videos/observation.images.{camera}"
        assert episodes[f"{key}/from_timestamp"] == (starts / DEFAULT_FPS).tolist()
        assert episodes[f"{key}/to_timestamp"] == (ends / DEFAULT_FPS).tolist()
    for i in range(3):
        meta = store.episode_meta(i)
        assert episodes["source"][i] == meta.source and episodes["domain"][i] == meta.domain
        assert episodes["seed"][i] == meta.seed and episodes["success"][i] == meta.success
        assert tuple(episodes["initial_pose"][i]) == meta.initial_pose
        assert json.loads(episodes["extra"][i]) == meta.extra
    assert episodes["plan_cost"][0] == 3.5 and np.isnan(episodes["plan_cost"][1])


def test_lerobot_videos_are_lossless_and_timestamps_select_each_episode(source, exports):
    out, store = exports["lerobot"], EpisodeStore.open(source)
    episodes = pq.read_table(out / "meta/episodes/chunk-000/file-000.parquet").to_pydict()
    for camera in CAMERAS:
        reader = iio.get_reader(out / f"videos/observation.images.{camera}/chunk-000/file-000.mp4", format="FFMPEG")
        assert reader.get_meta_data()["pix_fmt"].startswith("gbrp")  # RGB planes, no YUV rounding
        decoded = np.stack([frame for frame in reader.iter_data()])
        reader.close()
        assert decoded.shape == store.array(camera).shape
        assert decoded.tobytes() == store.array(camera).tobytes(), camera
        for i in range(3):
            key = f"videos/observation.images.{camera}"
            first = round(episodes[f"{key}/from_timestamp"][i] * DEFAULT_FPS)
            last = round(episodes[f"{key}/to_timestamp"][i] * DEFAULT_FPS)
            np.testing.assert_array_equal(decoded[first:last], store.episode(i)[camera], err_msg=f"{camera} {i}")


# --------------------------------------------------------------------------------------------------
# Diffusion Policy


def test_diffusion_policy_export_opens_with_zarr_2(source, exports):
    out, store = exports["diffusion-policy"], EpisodeStore.open(source)
    for file in [".zgroup", "data/.zgroup", "meta/.zgroup", "data/state/.zarray", "data/overhead/.zarray",
                 "meta/episode_ends/.zarray"]:
        assert (out / file).is_file(), file
    assert not (out / "zarr.json").exists()
    root = zarr.open_group(out, mode="r", zarr_format=2)
    ends = root["meta/episode_ends"][:]
    assert ends.dtype == np.int64
    np.testing.assert_array_equal(ends, np.cumsum(LENGTHS))
    for key, ours in [("state", "agent_pos"), ("action", "action"), ("slider_pose", "slider_pose"),
                      ("overhead", "overhead"), ("wrist", "wrist")]:
        values = root[f"data/{key}"][:]
        assert values.dtype == store.array(ours).dtype
        np.testing.assert_array_equal(values, store.array(ours), err_msg=key)
    assert all(array.shape[0] == ends[-1] for _, array in root["data"].arrays())  # DP's ReplayBuffer checks this
    assert list(root["meta/source"][:]) == ["gcs", "teleop", "expert"]
    np.testing.assert_array_equal(root["meta/seed"][:], [11, 12, 13])
    assert root.attrs["cameras"] == {name: [h, w, 3] for name, (h, w) in CAMERAS.items()}
    assert root.attrs["run"] == RUN and root.attrs["domain_config"] == DOMAIN_CONFIG
    np.testing.assert_array_equal(root["annotations/classifier/sigma_min"][:], store.annotation("classifier").sigma_min)


# --------------------------------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_is_bit_exact(source, exports, tmp_path, fmt):
    back = tmp_path / "back.zarr"
    summary = import_dataset(exports[fmt], back, fmt)
    assert (summary.episodes, summary.frames) == (3, sum(LENGTHS))
    assert_stores_equal(EpisodeStore.open(source), EpisodeStore.open(back))
    assert [p.name for p in tmp_path.iterdir()] == ["back.zarr"]  # the staging directory is gone


def test_foreign_lerobot_dataset_imports_with_defaults(source, exports, tmp_path):
    foreign = tmp_path / "foreign"
    shutil.copytree(exports["lerobot"], foreign)
    (foreign / "meta/ambient_push.json").unlink()  # what makes it ours
    import_dataset(foreign, tmp_path / "back.zarr", "lerobot")
    store, back = EpisodeStore.open(source), EpisodeStore.open(tmp_path / "back.zarr")
    assert back.cameras == tuple(CAMERAS) and back.annotation_names == ()
    for key in store.step_keys:
        np.testing.assert_array_equal(back.array(key), store.array(key), err_msg=key)
    np.testing.assert_array_equal(back.episode_ends, store.episode_ends)
    assert back.run["generator"] == "import" and back.run["format"] == "lerobot"
    for i in range(3):
        meta = back.episode_meta(i)
        assert (meta.source, meta.domain, meta.seed, meta.success) == ("import", "import", i, True)
        assert meta.initial_pose == tuple(float(x) for x in store.episode(i)["slider_pose"][0])
        assert np.isnan(meta.planning_time)


def test_foreign_diffusion_policy_push_t_imports(tmp_path):
    """DP's push-T keeps float images and a 5-wide state (agent xy, block xy, angle)."""
    rng = np.random.default_rng(1)
    ends = np.array([4, 10])
    images = rng.integers(0, 256, (10, 8, 8, 3)).astype(np.float32)
    state = rng.normal(size=(10, 5)).astype(np.float32)
    action = rng.normal(size=(10, 2)).astype(np.float32)
    root = zarr.open_group(tmp_path / "pusht.zarr", mode="w", zarr_format=2)
    for key, values in [("img", images), ("state", state), ("action", action), ("keypoint", rng.normal(size=(10, 9, 2)))]:
        root.create_array(f"data/{key}", data=values)
    root.create_array("meta/episode_ends", data=ends)
    summary = import_dataset(tmp_path / "pusht.zarr", tmp_path / "back.zarr", "diffusion-policy")
    assert len(summary.warnings) == 1 and "not imported" in summary.warnings[0] and "data/keypoint" in summary.warnings[0]
    back = EpisodeStore.open(tmp_path / "back.zarr")
    assert back.cameras == ("img",) and back.image_shape("img") == (8, 8, 3)
    np.testing.assert_array_equal(back.array("img"), images.astype(np.uint8))
    np.testing.assert_array_equal(back.array("agent_pos"), state[:, :2])
    np.testing.assert_array_equal(back.array("slider_pose"), state[:, 2:5])
    np.testing.assert_array_equal(back.array("action"), action)
    np.testing.assert_array_equal(back.episode_ends, ends)
    assert back.episode_meta(1).source == "import" and back.episode_meta(1).initial_pose == tuple(float(x) for x in state[4, 2:5])


# --------------------------------------------------------------------------------------------------
# Which obs_type of the env an export matches, and camera names


def env_observation_features(obs_type: str) -> set[str]:
    """The features LeRobot's preprocess_observation makes of the real env's observation (lerobot/envs/utils.py).

    It reads a dict's ``pixels`` (a dict: one observation.images.<camera> each), ``environment_state``
    and ``agent_pos``; anything else (obs_type="state"'s bare array) gives nothing.
    """
    from pushing_sim.env import PlanarPushingEnv

    env = PlanarPushingEnv(obs_type=obs_type, image_size=16)
    space = env.observation_space
    env.close()
    keys = set(space.spaces) if isinstance(space, gym.spaces.Dict) else set()
    features = {f"observation.images.{camera}" for camera in space["pixels"].spaces} if "pixels" in keys else set()
    features |= {"observation.environment_state"} if "environment_state" in keys else set()
    return features | ({"observation.state"} if "agent_pos" in keys else set())


def observation_features(out: Path) -> set[str]:
    info = json.loads((out / "meta/info.json").read_text())
    return {key for key in info["features"] if key.startswith("observation.")}


def sidecar(out: Path) -> dict:
    return json.loads((out / "meta/ambient_push.json").read_text())


def camera_less_store(path: Path) -> Path:
    rng = np.random.default_rng(5)
    with EpisodeStore.create(path, cameras={}, domain_config={}, run={}) as store:
        store.append_episode({"action": rng.normal(size=(4, 2)), "agent_pos": rng.normal(size=(4, 2)),
                              "slider_pose": rng.normal(size=(4, 3))},
                             EpisodeMeta(source="gcs", domain="sim", seed=1, initial_pose=(0, 0, 0), success=True))
    return path


def test_each_lerobot_export_matches_the_obs_type_it_records(source, exports, tmp_path):
    """Exactly the recorded obs_type's observation, as LeRobot renames it, has the export's observation features."""
    from pushing_sim.env import OBS_TYPES as ENV_OBS_TYPES

    env_features = {obs_type: env_observation_features(obs_type) for obs_type in ENV_OBS_TYPES}
    # obs_type="state" is a bare array: LeRobot takes nothing from it, so state exports match environment_state_agent_pos.
    assert env_features["state"] == set()
    state_source = camera_less_store(tmp_path / "state.zarr")
    export_store(state_source, tmp_path / "state", "lerobot")
    assert "observation.environment_state" in observation_features(tmp_path / "state")  # state policies need it
    # Asked for, the slider pose joins the images; no obs_type returns both, and the export says so. Kept out of a
    # state export, it leaves agent_pos alone, which no obs_type returns either.
    summary = export_store(source, tmp_path / "both", "lerobot", environment_state=True)
    assert summary.notes[0].startswith("no obs_type")
    export_store(state_source, tmp_path / "bare", "lerobot", environment_state=False)
    expected = {exports["lerobot"]: "pixels_agent_pos", tmp_path / "state": "environment_state_agent_pos",
                tmp_path / "both": None, tmp_path / "bare": None}
    for out, obs_type in expected.items():
        assert sidecar(out)["obs_type"] == obs_type, out
        matching = [name for name, features in env_features.items() if features == observation_features(out)]
        assert matching == ([obs_type] if obs_type else []), out
    assert set(OBS_TYPES.values()) == {"pixels_agent_pos", "environment_state_agent_pos"}
    # Left out of the observation, the pose still travels (as slider_pose): the round trip stays exact.
    for out in (tmp_path / "both", tmp_path / "bare"):
        import_dataset(out, tmp_path / f"{out.name}.zarr", "lerobot")
    assert_stores_equal(EpisodeStore.open(source), EpisodeStore.open(tmp_path / "both.zarr"))
    assert_stores_equal(EpisodeStore.open(state_source), EpisodeStore.open(tmp_path / "bare.zarr"))


def test_export_names_the_obs_type_on_its_last_line(source, tmp_path, capsys):
    code, out, _ = run_main(export_cli.main, [str(source), "--format", "lerobot", "--out", str(tmp_path / "x")], capsys)
    assert code == 0 and out.count("\n") == 2
    assert "obs_type='pixels_agent_pos'" in out.splitlines()[1]
    assert "observation.environment_state" not in out


def test_diffusion_policy_export_with_img_reads_as_push_t_image_dataset(source, tmp_path):
    """What DP's PushTImageDataset reads: data/img (N, H, W, 3), data/state (agent_pos in [:2]), data/action, meta/episode_ends."""
    store = EpisodeStore.open(source)
    export_store(source, tmp_path / "dp", "diffusion-policy", cameras={"overhead": "img"})
    root = zarr.open_group(tmp_path / "dp", mode="r", zarr_format=2)
    assert {"img", "state", "action", "wrist"} <= set(root["data"].array_keys()) and "overhead" not in root["data"]
    np.testing.assert_array_equal(root["data/img"][:], store.array("overhead"))
    np.testing.assert_array_equal(root["data/state"][..., :2], store.array("agent_pos"))
    np.testing.assert_array_equal(root["data/action"][:], store.array("action"))
    np.testing.assert_array_equal(root["meta/episode_ends"][:], store.episode_ends)
    assert root["data/img"].dtype == np.uint8 and root["data/img"].shape[1:] == (*CAMERAS["overhead"], 3)
    import_dataset(tmp_path / "dp", tmp_path / "back.zarr", "diffusion-policy")
    assert_stores_equal(store, EpisodeStore.open(tmp_path / "back.zarr"))  # the store's own names come back


def test_lerobot_export_and_import_rename_cameras(source, tmp_path):
    export_store(source, tmp_path / "lr", "lerobot", cameras={"overhead": "img"})
    features = json.loads((tmp_path / "lr/meta/info.json").read_text())["features"]
    assert "observation.images.img" in features and "observation.images.overhead" not in features
    assert (tmp_path / "lr/videos/observation.images.img/chunk-000/file-000.mp4").is_file()
    import_dataset(tmp_path / "lr", tmp_path / "back.zarr", "lerobot")
    assert_stores_equal(EpisodeStore.open(source), EpisodeStore.open(tmp_path / "back.zarr"))
    import_dataset(tmp_path / "lr", tmp_path / "renamed.zarr", "lerobot", cameras={"wrist": "hand"})
    renamed, store = EpisodeStore.open(tmp_path / "renamed.zarr"), EpisodeStore.open(source)
    assert renamed.cameras == ("overhead", "hand")
    assert renamed.array("hand").tobytes() == store.array("wrist").tobytes()


@pytest.mark.parametrize("main, fmt, argv, expected", [
    (export_cli.main, "lerobot", ["--camera", "top=img"], "no camera 'top' to rename (its cameras: overhead, wrist)"),
    (export_cli.main, "lerobot", ["--camera", "overhead=wrist"], "both be named 'wrist'"),
    (export_cli.main, "lerobot", ["--camera", "overhead=agent_pos"], "not a camera name"),
    (export_cli.main, "lerobot", ["--camera", "overhead"], "is not OLD=NEW"),
    (export_cli.main, "lerobot", ["--camera", "overhead=a", "--camera", "overhead=b"], "renamed twice"),
    (export_cli.main, "diffusion-policy", ["--camera", "overhead=state"], "collide with Diffusion Policy's data/state"),
    (export_cli.main, "diffusion-policy", ["--environment-state"], "--environment-state applies only to --format lerobot"),
    (export_cli.main, "diffusion-policy", ["--video-codec", "h264"], "--video-codec applies only to --format lerobot"),
    (import_cli.main, "diffusion-policy", ["--camera", "img=overhead"], "no camera 'img' to rename"),
    (import_cli.main, "diffusion-policy", ["--push-t-pixels"], "in metres already"),
])
def test_bad_camera_names_and_options_are_one_line(source, exports, tmp_path, capsys, main, fmt, argv, expected):
    given = str(source) if main is export_cli.main else str(exports["diffusion-policy"])
    assert_fails_cleanly(main, [given, "--format", fmt, "--out", str(tmp_path / "out"), *argv], capsys, tmp_path, expected)


# --------------------------------------------------------------------------------------------------
# Command lines and bad input


def run_main(main, argv, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        code = main(argv)
        raise SystemExit(code)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def assert_fails_cleanly(main, argv, capsys, where: Path, expected: str) -> None:
    """Exit 2, one line on stderr naming the problem, and nothing new left in ``where``."""
    before = sorted(p.name for p in where.iterdir())
    code, _, err = run_main(main, argv, capsys)
    assert code == 2, err
    assert err.count("\n") == 1 and expected in err, err
    assert sorted(p.name for p in where.iterdir()) == before


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_errors_are_one_line_and_leave_nothing(source, tmp_path, capsys, fmt):
    out = str(tmp_path / "out" / "nested")
    assert_fails_cleanly(export_cli.main, [str(tmp_path / "nosuch.zarr"), "--format", fmt, "--out", out], capsys,
                         tmp_path, "no such episode store")
    damaged = tmp_path / "damaged.zarr"
    shutil.copytree(source, damaged)
    (damaged / "zarr.json").write_text("{not json")
    assert_fails_cleanly(export_cli.main, [str(damaged), "--format", fmt, "--out", out], capsys, tmp_path, str(damaged))
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    assert_fails_cleanly(export_cli.main, [str(source), "--format", fmt, "--out", str(full)], capsys, tmp_path,
                         "not an empty directory")
    assert [p.name for p in full.iterdir()] == ["keep.txt"]


def test_wrong_format_is_one_line(source, tmp_path, capsys):
    for main in (export_cli.main, import_cli.main):
        assert_fails_cleanly(main, [str(source), "--format", "hdf5", "--out", str(tmp_path / "x")], capsys, tmp_path,
                             "invalid choice")


def test_import_errors_are_one_line_and_leave_nothing(exports, tmp_path, capsys):
    out = str(tmp_path / "new" / "store.zarr")
    assert_fails_cleanly(import_cli.main, [str(tmp_path / "nosuch"), "--format", "lerobot", "--out", out], capsys,
                         tmp_path, "no such dataset directory")
    broken = tmp_path / "broken"
    shutil.copytree(exports["lerobot"], broken)
    (broken / "meta/info.json").write_text("{")
    assert_fails_cleanly(import_cli.main, [str(broken), "--format", "lerobot", "--out", out], capsys, tmp_path, "info.json")
    # A video cut short fails half-way through the import: still one line, and no store left behind.
    shutil.rmtree(broken)
    shutil.copytree(exports["lerobot"], broken)
    video = broken / "videos/observation.images.wrist/chunk-000/file-000.mp4"
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 3])
    assert_fails_cleanly(import_cli.main, [str(broken), "--format", "lerobot", "--out", out], capsys, tmp_path,
                         str(broken))
    assert_fails_cleanly(import_cli.main, [str(exports["lerobot"]), "--format", "diffusion-policy", "--out", out], capsys,
                         tmp_path, "not a Diffusion Policy zarr")
    assert_fails_cleanly(import_cli.main, [str(exports["lerobot"]), "--format", "lerobot", "--out", str(broken)], capsys,
                         tmp_path, "not an empty directory")


def test_lerobot_without_pyarrow_says_how_to_install(source, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    assert_fails_cleanly(export_cli.main, [str(source), "--format", "lerobot", "--out", str(tmp_path / "x")], capsys,
                         tmp_path, "pip install -e '.[interop]'")


def test_command_lines_run_as_modules(source, tmp_path):
    """`python -m data_gen.export` and `python -m data_gen.import` end with a one-line summary."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    for module, args in [("data_gen.export", [str(source), "--out", str(tmp_path / "dp")]),
                         ("data_gen.import", [str(tmp_path / "dp"), "--out", str(tmp_path / "back.zarr")])]:
        done = subprocess.run([sys.executable, "-m", module, *args, "--format", "diffusion-policy"], cwd=REPO_ROOT,
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stdout.count("\n") == 1 and "3 episodes, 24 frames" in done.stdout and "MB on disk" in done.stdout
    assert_stores_equal(EpisodeStore.open(source), EpisodeStore.open(tmp_path / "back.zarr"))

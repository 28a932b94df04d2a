"""LeRobot dataset v3.0: parquet tables plus one mp4 per camera, written without `lerobot`.

Layout (LeRobot's v3.0 layout; every episode goes in file 000 of chunk 000)::

    DIR/
      meta/info.json          codebase_version "v3.0", fps, features (dtype, shape, names), the
                              data_path and video_path templates, totals, chunks_size, file size limits
      meta/stats.json         per feature: min, max, mean, std, count (images per channel, in [0, 1])
      meta/tasks.parquet      task_index and task: the one push-T instruction
      meta/episodes/chunk-000/file-000.parquet
                              per episode: episode_index, tasks, length, data/chunk_index,
                              data/file_index, dataset_from_index, dataset_to_index,
                              videos/<key>/chunk_index, file_index, from_timestamp, to_timestamp,
                              meta/episodes/chunk_index, file_index; and our metadata: source, domain,
                              seed, initial_pose, success, planning_time, plan_cost, extra (JSON)
      meta/ambient_push.json  what LeRobot has no place for: the store's root attributes (cameras,
                              action_dim, domain_config, run), the annotation sets' attributes, the camera
                              names, the env obs_type the export matches, where the fps came from and
                              how the videos were encoded
      data/chunk-000/file-000.parquet
                              per frame: action, observation.state (agent_pos), the slider pose as
                              observation.environment_state (see below) or else as slider_pose,
                              annotations.<name>.sigma_min / .sigma_max, then timestamp, frame_index,
                              episode_index, index, task_index
      videos/observation.images.<camera>/chunk-000/file-000.mp4
                              all episodes' frames one after another; episode i spans
                              [from_timestamp, to_timestamp) = [dataset_from_index, dataset_to_index) / fps

The observation features are those one obs_type of pushing_sim's env returns (after LeRobot's
``preprocess_observation``), so a policy trained on the export can be evaluated in the env:
with cameras, ``observation.images.<camera>`` and ``observation.state`` (``pixels_agent_pos``); without,
``observation.environment_state`` and ``observation.state`` (``environment_state_agent_pos``, which
LeRobot's state policies need; ``obs_type="state"`` returns a bare array, from which LeRobot takes
nothing). ``environment_state`` forces the slider pose in or out of the observation features; kept
out, it is the column ``slider_pose``, which LeRobot's policies do not read. The export records the
matching obs_type (None when no obs_type returns its features) in ambient_push.json.

Videos are lossless by default, or standard H.264 (``video_codec="h264"``): see data_gen.interop_video.

fps is the store's control rate: ``control_hz`` in its run or domain_config if one records it, else
the task's 10 Hz (``data_gen.interop_format.DEFAULT_FPS``); ambient_push.json says which. Per-episode stats
columns (``stats/...``), which LeRobot strips when loading, are not written.

Import reads any v3.0 dataset: without ambient_push.json, cameras come from the video and image
features (``observation.images.top`` becomes camera ``top``), agent_pos from ``observation.state``
(width 2), slider_pose from ``slider_pose`` or ``observation.environment_state`` when it has width 3
(else zeros; LeRobot push-T's keypoint state is not a pose), success from ``next.success`` when
present, and the rest of the metadata from ``data_gen.interop``'s defaults; the features it leaves out
are named in a warning. A dataset whose info.json disagrees with its files (fps with the video
timestamps, total_frames, total_episodes) is refused, not read misaligned or short, and so is one
whose path templates use more than LeRobot's placeholders or lead outside the dataset.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import string
from pathlib import Path
from typing import Any

import imageio.v2 as iio
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from data_gen.episode_store import ANNOTATION_ARRAYS, FORMAT_NAME, META_COLUMNS, Annotation, EpisodeStore, \
    meta_from_columns
from data_gen.interop_format import DEFAULT_FPS, Contents, InteropError, camera_name, foreign_meta, foreign_run
from data_gen.interop_video import DEFAULT_CODEC, VIDEO_CODECS, VideoCursor, VideoWriter, check_frame_size, encoding

FORMAT = "lerobot"
CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000  # LeRobot's defaults, recorded in info.json; one file per stream holds everything here
DATA_FILES_SIZE_IN_MB = 100
VIDEO_FILES_SIZE_IN_MB = 500
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
SIDECAR_PATH = "meta/ambient_push.json"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
ROBOT_TYPE = "planar_pusher"
TASK = "Push the T-shaped block onto the target pose."
STATE_KEY = "observation.state"
ENVIRONMENT_KEY = "observation.environment_state"
SLIDER_KEY = "slider_pose"  # the slider pose when it is not an observation feature; LeRobot's policies skip it
SUCCESS_KEY = "next.success"
IMAGE_PREFIX = "observation.images."
DEFAULT_FEATURES = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}
# The placeholders LeRobot v3.0's templates use (v2's {episode_chunk}/{episode_index} name per-episode files,
# a layout this reader does not take); any other field, attribute or item lookup is refused.
TEMPLATE_FIELDS = {"data_path": ("chunk_index", "file_index"), "video_path": ("video_key", "chunk_index", "file_index")}
INDEX_FORMAT = re.compile(r"0?[0-9]{0,2}d?")  # "", "d", "03d": a zero-padded index, at most 99 wide
TIMESTAMP_TOLERANCE_S = 1e-4  # LeRobot's tolerance_s when it looks up a frame by timestamp
ENV_ID = "pushing_sim/PlanarPushing-v0"
# (has cameras, has observation.environment_state) -> the obs_type of ENV_ID whose observation LeRobot's
# preprocess_observation turns into exactly these features (every export has observation.state);
# tests/data_gen/test_interop.py checks it against the env's observation spaces.
OBS_TYPES = {(True, False): "pixels_agent_pos", (False, True): "environment_state_agent_pos"}


def annotation_key(name: str, array: str) -> str:
    return f"annotations.{name}.{array}"


# --------------------------------------------------------------------------------------------------
# Export


def write(store: EpisodeStore, out: Path, progress: bool = False, names: dict[str, str] | None = None,
          environment_state: bool | None = None, video_codec: str = DEFAULT_CODEC) -> list[str]:
    """Write the store into the (empty, existing) directory ``out`` as a LeRobot v3.0 dataset.

    names: {store camera: camera name in the export}. environment_state: the slider pose as
    observation.environment_state (None: only when the store has no cameras). Returns the note
    that says which obs_type of the env matches the export.
    """
    names = names or {camera: camera for camera in store.cameras}
    if video_codec not in VIDEO_CODECS:
        raise InteropError(f"unknown video codec {video_codec!r}; codecs are {', '.join(VIDEO_CODECS)}")
    for camera in store.cameras:
        check_frame_size(video_codec, camera, store.image_shape(camera))
    if environment_state is None:
        environment_state = not store.cameras
    obs_type = OBS_TYPES.get((bool(store.cameras), environment_state))
    fps, fps_from = _store_fps(store)
    ends = store.episode_ends
    starts = np.concatenate([[0], ends[:-1]]).astype(np.int64)
    lengths = ends - starts
    n_episodes, n_steps = store.n_episodes, store.n_steps
    video_keys = {camera: IMAGE_PREFIX + names[camera] for camera in store.cameras}
    histograms = _write_videos(store, out, fps, video_keys, starts, ends, video_codec, progress)

    pose_key = ENVIRONMENT_KEY if environment_state else SLIDER_KEY
    vectors = {"action": store.array("action"), STATE_KEY: store.array("agent_pos"), pose_key: store.array("slider_pose")}
    annotations = [store.annotation(name) for name in store.annotation_names]
    scalars = {}
    for annotation in annotations:
        scalars[annotation_key(annotation.name, "sigma_min")] = annotation.sigma_min
        if annotation.sigma_max is not None:
            scalars[annotation_key(annotation.name, "sigma_max")] = annotation.sigma_max
    frame_index = np.arange(n_steps, dtype=np.int64) - np.repeat(starts, lengths)
    defaults = {
        "timestamp": (frame_index / fps).astype(np.float32),
        "frame_index": frame_index,
        "episode_index": np.repeat(np.arange(n_episodes, dtype=np.int64), lengths),
        "index": np.arange(n_steps, dtype=np.int64),
        "task_index": np.zeros(n_steps, dtype=np.int64),
    }
    frames = pa.table({**{key: _fixed_list(values) for key, values in vectors.items()},
                       **{key: pa.array(values) for key, values in {**scalars, **defaults}.items()}})
    _write_parquet(frames, out / DATA_PATH.format(chunk_index=0, file_index=0))
    _write_parquet(_episodes_table(store, starts, ends, lengths, fps, video_keys), out / EPISODES_PATH.format(chunk_index=0, file_index=0))
    _write_parquet(_tasks_table(), out / TASKS_PATH)

    stats = {key: _stats(values) for key, values in {**vectors, **scalars, **defaults}.items()}
    stats |= {video_keys[camera]: _image_stats(histogram, n_steps) for camera, histogram in histograms.items()}
    features = {
        "action": {"dtype": "float32", "shape": [store.action_dim],
                   "names": ["x", "y"] if store.action_dim == 2 else [f"action_{i}" for i in range(store.action_dim)]},
        STATE_KEY: {"dtype": "float32", "shape": [2], "names": ["x", "y"]},
        pose_key: {"dtype": "float32", "shape": [3], "names": ["x", "y", "theta"]},
        **{key: _video_feature(store.image_shape(camera), fps, video_codec) for camera, key in video_keys.items()},
        **{key: {"dtype": "float32", "shape": [1], "names": None} for key in scalars},
        **DEFAULT_FEATURES,
    }
    info = {
        "codebase_version": CODEBASE_VERSION, "robot_type": ROBOT_TYPE,
        "total_episodes": n_episodes, "total_frames": n_steps, "total_tasks": 1,
        "chunks_size": CHUNKS_SIZE, "data_files_size_in_mb": DATA_FILES_SIZE_IN_MB,
        "video_files_size_in_mb": VIDEO_FILES_SIZE_IN_MB, "fps": fps, "splits": {"train": f"0:{n_episodes}"},
        "data_path": DATA_PATH, "video_path": VIDEO_PATH, "features": features,
    }
    sidecar = {
        "format": FORMAT_NAME, "cameras": {camera: list(store.image_shape(camera)) for camera in store.cameras},
        "camera_features": video_keys, "action_dim": store.action_dim, "domain_config": store.domain_config,
        "run": store.run, "annotations": {annotation.name: annotation.attrs for annotation in annotations},
        "fps": fps, "fps_from": fps_from, "video": encoding(video_codec),
        "env": ENV_ID, "obs_type": obs_type, "environment_state": environment_state,
    }
    for name, payload in ((INFO_PATH, info), (STATS_PATH, stats), (SIDECAR_PATH, sidecar)):
        (out / name).write_text(json.dumps(payload, indent=4, ensure_ascii=False))
    return [_obs_type_note(obs_type, [key for key in features if key.startswith("observation.")], names)]


def _obs_type_note(obs_type: str | None, observed: list[str], names: dict[str, str]) -> str:
    """Which obs_type of the env a policy trained on the export needs, in one line."""
    features = ", ".join(observed)
    if obs_type is None:
        return (f"no obs_type of {ENV_ID} returns the features {features}: a LeRobot policy trained on them "
                "cannot be evaluated in the env (drop --environment-state, or pass it for a store without cameras)")
    note = f"evaluate in {ENV_ID} with obs_type={obs_type!r}: it returns {features}"
    renames = [f"{old} -> {new}" for old, new in names.items() if old != new]
    if renames:
        note += f" once the env's cameras are named as here ({', '.join(renames)})"
    return note


def _store_fps(store: EpisodeStore) -> tuple[int, str]:
    """The control rate a store records (``control_hz`` in run or domain_config), else the task's default."""
    domain = store.domain_config
    for where, mapping in (("run", store.run), ("domain_config", domain), ("domain_config.task", domain.get("task"))):
        if isinstance(mapping, dict) and "control_hz" in mapping:
            hz = float(mapping["control_hz"])
            if not hz.is_integer() or hz <= 0:
                raise InteropError(f"{store.path}: {where}.control_hz is {hz}; LeRobot needs a whole fps")
            return int(hz), f"{where}.control_hz"
    return DEFAULT_FPS, "default: the task's control rate (the store does not record one)"


def _write_videos(store: EpisodeStore, out: Path, fps: int, video_keys: dict[str, str], starts: np.ndarray,
                  ends: np.ndarray, codec: str, progress: bool) -> dict[str, np.ndarray]:
    """One mp4 per camera with every episode in order; returns each camera's (3, 256) value histogram."""
    histograms = {camera: np.zeros((3, 256), dtype=np.int64) for camera in store.cameras}
    writers: dict[str, VideoWriter] = {}
    try:
        for camera, key in video_keys.items():
            path = out / VIDEO_PATH.format(video_key=key, chunk_index=0, file_index=0)
            path.parent.mkdir(parents=True, exist_ok=True)
            writers[camera] = VideoWriter(path, store.image_shape(camera), fps, codec)
        for index in tqdm(range(store.n_episodes), unit="episode", desc=f"exporting to {out.name}",
                          disable=not progress, dynamic_ncols=True):
            for camera, writer in writers.items():
                frames = store.array(camera, int(starts[index]), int(ends[index]))
                writer.write(frames)
                for channel in range(3):
                    histograms[camera][channel] += np.bincount(frames[..., channel].ravel(), minlength=256)
        for writer in writers.values():
            writer.close()
    finally:
        for writer in writers.values():
            writer.kill()  # after a failure or Ctrl-C: do not wait for ffmpeg to finish a file being removed
    return histograms


def _episodes_table(store: EpisodeStore, starts: np.ndarray, ends: np.ndarray, lengths: np.ndarray, fps: int,
                    video_keys: dict[str, str]) -> pa.Table:
    n = store.n_episodes
    zeros = np.zeros(n, dtype=np.int64)
    columns: dict[str, Any] = {
        "episode_index": np.arange(n, dtype=np.int64),
        "tasks": pa.array([[TASK]] * n, type=pa.list_(pa.string())),
        "length": lengths.astype(np.int64),
        "data/chunk_index": zeros, "data/file_index": zeros,
        "dataset_from_index": starts, "dataset_to_index": ends.astype(np.int64),
    }
    for key in video_keys.values():
        columns |= {f"videos/{key}/chunk_index": zeros, f"videos/{key}/file_index": zeros,
                    f"videos/{key}/from_timestamp": starts / fps, f"videos/{key}/to_timestamp": ends / fps}
    columns |= {"meta/episodes/chunk_index": zeros, "meta/episodes/file_index": zeros}
    for name, values in store.meta_columns().items():
        if values.ndim == 2:
            columns[name] = _fixed_list(values)
        elif values.dtype.kind == "U":
            columns[name] = pa.array(values.tolist(), type=pa.string())
        else:
            columns[name] = values
    return pa.table({key: value if isinstance(value, pa.Array) else pa.array(value) for key, value in columns.items()})


def _tasks_table() -> pa.Table:
    """LeRobot writes a pandas frame indexed by task; the pandas metadata makes pandas read it so again."""
    table = pa.table({"task_index": pa.array([0], type=pa.int64()), "task": pa.array([TASK], type=pa.string())})
    pandas_meta = {
        "index_columns": ["task"],
        "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object",
                            "metadata": {"encoding": "UTF-8"}}],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64", "metadata": None},
            {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object", "metadata": None},
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.3",
    }
    return table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})


def _video_feature(shape: tuple[int, int, int], fps: int, codec: str) -> dict[str, Any]:
    height, width, channels = shape
    return {
        "dtype": "video", "shape": [height, width, channels], "names": ["height", "width", "channels"],
        "info": {"video.height": height, "video.width": width, "video.codec": "h264",
                 "video.pix_fmt": VIDEO_CODECS[codec]["stream_pix_fmt"], "video.is_depth_map": False, "video.fps": fps,
                 "video.channels": channels, "has_audio": False},
    }


def _stats(values: np.ndarray) -> dict[str, list]:
    rows = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
    return {"min": rows.min(0).tolist(), "max": rows.max(0).tolist(), "mean": rows.mean(0).tolist(),
            "std": rows.std(0).tolist(), "count": [len(rows)]}


def _image_stats(histogram: np.ndarray, frames: int) -> dict[str, list]:
    """Per-channel stats of values in [0, 1], shaped (3, 1, 1) as LeRobot keeps them, from exact counts."""
    levels = np.arange(256) / 255.0
    total = histogram.sum(1)
    mean = (histogram * levels).sum(1) / total
    std = np.sqrt(np.maximum((histogram * levels**2).sum(1) / total - mean**2, 0.0))
    low = np.array([levels[np.flatnonzero(h)[0]] for h in histogram])
    high = np.array([levels[np.flatnonzero(h)[-1]] for h in histogram])
    shaped = lambda v: np.asarray(v).reshape(3, 1, 1).tolist()  # noqa: E731
    return {"min": shaped(low), "max": shaped(high), "mean": shaped(mean), "std": shaped(std), "count": [frames]}


def _fixed_list(values: np.ndarray) -> pa.FixedSizeListArray:
    """(n, d) values as a parquet fixed-size list column, the type LeRobot's (d,) features have."""
    values = np.ascontiguousarray(values)
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])


def _write_parquet(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


# --------------------------------------------------------------------------------------------------
# Import


def read(path: Path) -> Contents:
    """The LeRobot v3.0 dataset in ``path`` as store contents (ours exactly; a foreign one with defaults)."""
    try:
        return _read(path)
    except (pa.ArrowException, OSError, KeyError, ValueError, TypeError, IndexError, AttributeError) as error:
        detail = f"missing {error}" if isinstance(error, KeyError) else f"{type(error).__name__}: {error}"
        raise InteropError(f"{path}: not a readable LeRobot v3.0 dataset ({' '.join(detail.split())[:300]})") from None


def _read(path: Path) -> Contents:
    info = _load_json(path / INFO_PATH)
    version = str(info.get("codebase_version"))
    if not version.startswith("v3."):
        raise InteropError(f"{path}: codebase_version {version}; this reads LeRobot v3.0 datasets (convert older ones "
                           "with LeRobot's convert_dataset_v21_to_v30)")
    fps = float(info["fps"])
    if not math.isfinite(fps) or fps <= 0:
        raise InteropError(f"{path}: {INFO_PATH} fps is {info['fps']}; it must be positive")
    features: dict[str, dict] = info["features"]
    if not isinstance(features, dict) or not all(isinstance(feature, dict) for feature in features.values()):
        raise InteropError(f"{path}: {INFO_PATH} features must be a JSON object of feature objects")
    sidecar = _load_json(path / SIDECAR_PATH) if (path / SIDECAR_PATH).is_file() else None
    data_path = _template(path, info, "data_path")

    episode_files = sorted((path / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    if not episode_files:
        raise InteropError(f"{path}: no meta/episodes/chunk-*/file-*.parquet")
    episodes = pa.concat_tables([pq.read_table(file) for file in episode_files])
    episodes = episodes.take(pa.array(np.argsort(_column(episodes, "episode_index"), kind="stable")))
    episode_ids = _column(episodes, "episode_index")
    lengths = _column(episodes, "length")
    data_files = sorted(set(zip(_column(episodes, "data/chunk_index").tolist(), _column(episodes, "data/file_index").tolist())))
    frames = pa.concat_tables([
        pq.read_table(_dataset_file(path, "data_path", data_path, chunk_index=int(c), file_index=int(f)))
        for c, f in data_files])
    rows = _episode_rows(path, frames, episode_ids, lengths)
    order = np.concatenate(rows)
    for name, count in (("total_episodes", len(episode_ids)), ("total_frames", len(order))):
        if int(info[name]) != count:
            raise InteropError(f"{path}: {INFO_PATH} {name} is {info[name]} but the dataset holds {count}")
    offsets = np.concatenate([[0], np.cumsum(lengths)])

    action = _matrix(frames, "action")[order]
    agent_pos = _matrix(frames, STATE_KEY)[order]
    if agent_pos.shape[1] != 2:
        raise InteropError(f"{path}: {STATE_KEY} has width {agent_pos.shape[1]}; the store's agent_pos is the pusher xy (2)")
    # The slider pose: ours under one of these names; a foreign environment_state of another width (LeRobot
    # push-T's keypoints) is no pose.
    pose_key = next((key for key in (SLIDER_KEY, ENVIRONMENT_KEY)
                     if key in frames.column_names and _matrix(frames, key).shape[1] == 3), None)
    slider_pose = _matrix(frames, pose_key)[order] if pose_key else np.zeros((len(order), 3))

    visual = [key for key, feature in features.items() if feature.get("dtype") in ("video", "image")]
    videos = [key for key in visual if features[key]["dtype"] == "video"]
    video_path = _template(path, info, "video_path") if videos else ""
    for key in videos:
        _check_video_span(path, episodes, key, fps)
    if sidecar is not None:
        by_key = {key: camera for camera, key in sidecar["camera_features"].items()}
        names = {key: by_key[key] for key in visual}
        cameras = {camera: (int(shape[0]), int(shape[1])) for camera, shape in sidecar["cameras"].items()}
    else:
        names, cameras = {}, {}
        for key in visual:
            names[key] = camera_name(key.removeprefix(IMAGE_PREFIX) if key != "observation.image" else "image", cameras)
            cameras[names[key]] = _image_size(features[key])

    annotations = []
    for name, attrs in (sidecar or {}).get("annotations", {}).items():
        values = {array: _column(frames, annotation_key(name, array))[order]
                  for array in ANNOTATION_ARRAYS if annotation_key(name, array) in frames.column_names}
        annotations.append(Annotation(name, values["sigma_min"], values.get("sigma_max"), attrs))

    ours = sidecar is not None and all(name in episodes.column_names for name in META_COLUMNS)
    columns = {name: _meta_values(episodes, name) for name in META_COLUMNS} if ours else None
    success = None
    if not ours and SUCCESS_KEY in frames.column_names:
        success = _column(frames, SUCCESS_KEY)[order].astype(bool)

    def episode_stream():
        cursors: dict[str, VideoCursor] = {}  # one open file per camera: episodes come in file order
        try:
            for i, episode in enumerate(episode_ids.tolist()):
                steps_slice = slice(int(offsets[i]), int(offsets[i + 1]))
                steps = {"action": action[steps_slice], "agent_pos": agent_pos[steps_slice],
                         "slider_pose": slider_pose[steps_slice]}
                for key, camera in names.items():
                    if features[key]["dtype"] == "image":
                        cells = frames.column(key).take(pa.array(rows[i])).to_pylist()
                        steps[camera] = np.stack([iio.imread(io.BytesIO(cell["bytes"])) for cell in cells])
                        continue
                    chunk = int(episodes.column(f"videos/{key}/chunk_index")[i].as_py())
                    file = int(episodes.column(f"videos/{key}/file_index")[i].as_py())
                    video = _dataset_file(path, "video_path", video_path, video_key=key, chunk_index=chunk,
                                          file_index=file)
                    if key not in cursors or cursors[key].path != video:
                        if key in cursors:
                            cursors[key].close()
                        cursors[key] = VideoCursor(video)
                    start = int(round(episodes.column(f"videos/{key}/from_timestamp")[i].as_py() * fps))
                    steps[camera] = cursors[key].read(start, int(lengths[i]))
                if ours:
                    meta = meta_from_columns(columns, i)
                else:
                    won = bool(success[steps_slice].any()) if success is not None else True
                    meta = foreign_meta(episode, steps["slider_pose"], won, {"imported_from": str(path), "episode_index": episode})
                yield steps, meta
        finally:
            for cursor in cursors.values():
                cursor.close()

    if sidecar is not None:
        run, domain_config, action_dim = sidecar["run"], sidecar["domain_config"], int(sidecar["action_dim"])
    else:
        run, domain_config, action_dim = foreign_run(FORMAT, path, fps=fps), {}, int(action.shape[1])
    read_keys = {"action", STATE_KEY, SUCCESS_KEY, pose_key, *visual, *DEFAULT_FEATURES}
    return Contents(source=path, cameras=cameras, action_dim=action_dim, domain_config=domain_config, run=run,
                    n_episodes=len(episode_ids), episodes=episode_stream(), annotations=annotations,
                    foreign=sidecar is None, slider_pose_found=pose_key is not None,
                    not_imported=[key for key in features if key not in read_keys] if sidecar is None else [])


def _episode_rows(path: Path, frames: pa.Table, episode_ids: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    """For each episode (in order), its rows of the frame table in frame order; checks the lengths."""
    episode_index = _column(frames, "episode_index")
    order = np.lexsort((_column(frames, "frame_index"), episode_index))
    sorted_ids = episode_index[order]
    rows = []
    for episode, length in zip(episode_ids.tolist(), lengths.tolist()):
        low, high = np.searchsorted(sorted_ids, [episode, episode + 1])
        if high - low != length:
            raise InteropError(f"{path}: episode {episode} has {high - low} frames in data/ but length {length} in meta/episodes")
        rows.append(order[low:high])
    if sum(lengths.tolist()) != len(order):
        raise InteropError(f"{path}: data/ holds {len(order)} frames, meta/episodes counts {sum(lengths.tolist())}")
    return rows


def _load_json(path: Path) -> dict[str, Any]:
    """A JSON object from a file (info.json and our sidecar are objects; anything else is refused)."""
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        raise InteropError(f"{path}: missing (not a LeRobot dataset?)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InteropError(f"{path}: unreadable ({type(error).__name__}: {' '.join(str(error).split())[:200]})") from None
    if not isinstance(value, dict):
        raise InteropError(f"{path}: holds a JSON {type(value).__name__}, not the object LeRobot writes")
    return value


def _template(path: Path, info: dict, name: str) -> str:
    """info.json's path template ``name``, if it uses only LeRobot's placeholders, with plain formats.

    str.format evaluates attribute and item lookups (``{chunk_index.__class__}``) and pads to any
    width, so a dataset's template is checked before it is filled; _dataset_file checks where it leads.
    """
    template, allowed = info.get(name), TEMPLATE_FIELDS[name]
    try:
        fields = [(field, spec, conversion) for _, field, spec, conversion in string.Formatter().parse(template)
                  if field is not None]
    except (TypeError, ValueError):  # not a string, or unbalanced braces
        fields = None
    if fields is None or any(field not in allowed or conversion or not INDEX_FORMAT.fullmatch(spec)
                             or (field == "video_key" and spec) for field, spec, conversion in fields):
        placeholders = ", ".join("{" + field + "}" for field in allowed)
        raise InteropError(f"{path}: {INFO_PATH} {name} {repr(template)[:200]} is not a LeRobot path template "
                           f"(its placeholders: {placeholders}, with formats such as :03d)")
    return template


def _dataset_file(path: Path, name: str, template: str, **values: Any) -> Path:
    """The file a template names, which must lie inside the dataset (no absolute path, no way up out of it)."""
    relative = template.format(**values)
    root = os.path.abspath(path)
    target = os.path.normpath(os.path.join(root, relative))
    if os.path.commonpath([root, target]) != root:
        raise InteropError(f"{path}: {INFO_PATH} {name} names {relative[:200]!r}, outside the dataset")
    return Path(target)


def _check_video_span(path: Path, episodes: pa.Table, key: str, fps: float) -> None:
    """Each episode's [from_timestamp, to_timestamp) must start on a frame and hold its length at ``fps``.

    The frames are read by position (timestamp x fps), so an edited fps or shifted timestamps would pair
    an episode's actions with another's frames. LeRobot itself finds video frames to 1e-4 s.
    """
    start = _column(episodes, f"videos/{key}/from_timestamp").astype(np.float64) * fps
    stop = _column(episodes, f"videos/{key}/to_timestamp").astype(np.float64) * fps
    lengths = _column(episodes, "length")
    tolerance = TIMESTAMP_TOLERANCE_S * fps
    fits = (np.abs(start - np.round(start)) <= tolerance) & (np.abs(stop - start - lengths) <= tolerance)
    if not fits.all():  # NaN timestamps fit nothing
        i = int(np.flatnonzero(~fits)[0])
        raise InteropError(f"{path}: episode {_column(episodes, 'episode_index')[i]}'s {key} timestamps at fps "
                           f"{fps:g} span frames {start[i]:.4g} to {stop[i]:.4g}, not its {lengths[i]} frames from a "
                           f"whole frame (is {INFO_PATH}'s fps right?)")


def _column(table: pa.Table, name: str) -> np.ndarray:
    return table.column(name).to_numpy()


def _matrix(table: pa.Table, name: str) -> np.ndarray:
    """A (d,) feature column as an (n, d) array (fixed-size or variable lists of one width, or scalars)."""
    column = table.column(name).combine_chunks()
    kind = column.type
    if pa.types.is_fixed_size_list(kind):
        width = kind.list_size
    elif pa.types.is_list(kind) or pa.types.is_large_list(kind):
        widths = np.unique(column.value_lengths().to_numpy(zero_copy_only=False))
        if len(widths) != 1:
            raise InteropError(f"{name}: rows of different lengths {widths.tolist()}")
        width = int(widths[0])
    else:
        return column.to_numpy(zero_copy_only=False).reshape(len(column), 1)
    return column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), width)


def _meta_values(episodes: pa.Table, name: str) -> np.ndarray:
    if META_COLUMNS[name][1]:
        return _matrix(episodes, name)
    return np.array(episodes.column(name).to_pylist())


def _image_size(feature: dict) -> tuple[int, int]:
    """(height, width) of a visual feature, from its video info or its shape and names."""
    info = feature.get("info") or {}
    if "video.height" in info and "video.width" in info:
        return int(info["video.height"]), int(info["video.width"])
    names, shape = feature.get("names") or ["height", "width", "channels"], feature["shape"]
    return int(shape[names.index("height")]), int(shape[names.index("width")])

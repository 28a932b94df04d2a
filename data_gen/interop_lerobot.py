"""LeRobot dataset v3.0: parquet tables plus one lossless mp4 per camera, written without `lerobot`.

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
                              action_dim, domain_config, run), the annotation sets' attributes, where the
                              fps came from and how the videos were encoded
      data/chunk-000/file-000.parquet
                              per frame: action, observation.state (agent_pos), the extra features
                              observation.environment_state (slider_pose) and
                              annotations.<name>.sigma_min / .sigma_max, then timestamp, frame_index,
                              episode_index, index, task_index
      videos/observation.images.<camera>/chunk-000/file-000.mp4
                              all episodes' frames one after another; episode i spans
                              [from_timestamp, to_timestamp) = [dataset_from_index, dataset_to_index) / fps

Lossless video: LeRobot encodes AV1 in yuv420p, which rounds every pixel through RGB -> YUV and
halves the chroma resolution, so a round trip could not give the store's pixels back. Here ffmpeg's
libx264rgb codes the RGB planes themselves at ``-qp 0`` (lossless H.264; the stream's pixel format is
gbrp), which ffmpeg-based decoders (PyAV, torchcodec, imageio) read back bit for bit.

fps is the store's control rate: ``control_hz`` in its run or domain_config if one records it, else
the task's 10 Hz (``data_gen.interop.DEFAULT_FPS``); ambient_push.json says which. Per-episode stats
columns (``stats/...``), which LeRobot strips when loading, are not written.

Import reads any v3.0 dataset: without ambient_push.json, cameras come from the video and image
features (``observation.images.top`` becomes camera ``top``), agent_pos from ``observation.state``
(width 2), slider_pose from ``observation.environment_state`` when it has width 3 (else zeros; LeRobot
push-T's keypoint state is not a pose), success from ``next.success`` when present, and the rest of
the metadata from ``data_gen.interop``'s defaults.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import imageio.v2 as iio
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from data_gen.episode_store import ANNOTATION_ARRAYS, FORMAT_NAME, META_COLUMNS, Annotation, EpisodeStore, \
    meta_from_columns
from data_gen.interop import DEFAULT_FPS, Contents, InteropError, camera_name, foreign_meta, foreign_run

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
IMAGE_PREFIX = "observation.images."
DEFAULT_FEATURES = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}
VIDEO_ENCODING = {"codec": "libx264rgb", "input_pix_fmt": "rgb24", "stream_pix_fmt": "gbrp", "qp": 0, "preset": "veryfast"}


def annotation_key(name: str, array: str) -> str:
    return f"annotations.{name}.{array}"


# --------------------------------------------------------------------------------------------------
# Export


def write(store: EpisodeStore, out: Path, progress: bool = False) -> None:
    """Write the store into the (empty, existing) directory ``out`` as a LeRobot v3.0 dataset."""
    fps, fps_from = _store_fps(store)
    ends = store.episode_ends
    starts = np.concatenate([[0], ends[:-1]]).astype(np.int64)
    lengths = ends - starts
    n_episodes, n_steps = store.n_episodes, store.n_steps
    video_keys = {camera: IMAGE_PREFIX + camera for camera in store.cameras}
    histograms = _write_videos(store, out, fps, video_keys, starts, ends, progress)

    vectors = {"action": store.array("action"), STATE_KEY: store.array("agent_pos"),
               ENVIRONMENT_KEY: store.array("slider_pose")}
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
        ENVIRONMENT_KEY: {"dtype": "float32", "shape": [3], "names": ["x", "y", "theta"]},
        **{video_keys[camera]: _video_feature(store.image_shape(camera), fps) for camera in store.cameras},
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
        "fps": fps, "fps_from": fps_from, "video": VIDEO_ENCODING,
    }
    for name, payload in ((INFO_PATH, info), (STATS_PATH, stats), (SIDECAR_PATH, sidecar)):
        (out / name).write_text(json.dumps(payload, indent=4, ensure_ascii=False))


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
                  ends: np.ndarray, progress: bool) -> dict[str, np.ndarray]:
    """One mp4 per camera with every episode in order; returns each camera's (3, 256) value histogram."""
    histograms = {camera: np.zeros((3, 256), dtype=np.int64) for camera in store.cameras}
    writers = {}
    try:
        for camera, key in video_keys.items():
            path = out / VIDEO_PATH.format(video_key=key, chunk_index=0, file_index=0)
            path.parent.mkdir(parents=True, exist_ok=True)
            writers[camera] = iio.get_writer(
                path, format="FFMPEG", fps=fps, codec=VIDEO_ENCODING["codec"], pixelformat=VIDEO_ENCODING["input_pix_fmt"],
                output_params=["-qp", str(VIDEO_ENCODING["qp"]), "-preset", VIDEO_ENCODING["preset"]],
                macro_block_size=1, ffmpeg_log_level="error",
            )
        for index in tqdm(range(store.n_episodes), unit="episode", desc=f"exporting to {out.name}",
                          disable=not progress, dynamic_ncols=True):
            for camera, writer in writers.items():
                frames = store.array(camera, int(starts[index]), int(ends[index]))
                for frame in frames:
                    writer.append_data(frame)
                for channel in range(3):
                    histograms[camera][channel] += np.bincount(frames[..., channel].ravel(), minlength=256)
    finally:
        for writer in writers.values():
            writer.close()
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


def _video_feature(shape: tuple[int, int, int], fps: int) -> dict[str, Any]:
    height, width, channels = shape
    return {
        "dtype": "video", "shape": [height, width, channels], "names": ["height", "width", "channels"],
        "info": {"video.height": height, "video.width": width, "video.codec": "h264",
                 "video.pix_fmt": VIDEO_ENCODING["stream_pix_fmt"], "video.is_depth_map": False, "video.fps": fps,
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
    except (pa.ArrowException, OSError, KeyError, ValueError, TypeError, IndexError) as error:
        detail = f"missing {error}" if isinstance(error, KeyError) else f"{type(error).__name__}: {error}"
        raise InteropError(f"{path}: not a readable LeRobot v3.0 dataset ({' '.join(detail.split())[:300]})") from None


def _read(path: Path) -> Contents:
    info = _load_json(path / INFO_PATH)
    version = str(info.get("codebase_version"))
    if not version.startswith("v3."):
        raise InteropError(f"{path}: codebase_version {version}; this reads LeRobot v3.0 datasets (convert older ones "
                           "with LeRobot's convert_dataset_v21_to_v30)")
    fps = float(info["fps"])
    features: dict[str, dict] = info["features"]
    sidecar = _load_json(path / SIDECAR_PATH) if (path / SIDECAR_PATH).is_file() else None

    episode_files = sorted((path / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    if not episode_files:
        raise InteropError(f"{path}: no meta/episodes/chunk-*/file-*.parquet")
    episodes = pa.concat_tables([pq.read_table(file) for file in episode_files])
    episodes = episodes.take(pa.array(np.argsort(_column(episodes, "episode_index"), kind="stable")))
    episode_ids = _column(episodes, "episode_index")
    lengths = _column(episodes, "length")
    data_files = sorted(set(zip(_column(episodes, "data/chunk_index").tolist(), _column(episodes, "data/file_index").tolist())))
    frames = pa.concat_tables([pq.read_table(path / info["data_path"].format(chunk_index=c, file_index=f))
                               for c, f in data_files])
    rows = _episode_rows(path, frames, episode_ids, lengths)
    order = np.concatenate(rows)
    offsets = np.concatenate([[0], np.cumsum(lengths)])

    action = _matrix(frames, "action")[order]
    agent_pos = _matrix(frames, STATE_KEY)[order]
    if agent_pos.shape[1] != 2:
        raise InteropError(f"{path}: {STATE_KEY} has width {agent_pos.shape[1]}; the store's agent_pos is the pusher xy (2)")
    environment = _matrix(frames, ENVIRONMENT_KEY)[order] if ENVIRONMENT_KEY in frames.column_names else None
    slider_pose = environment if environment is not None and environment.shape[1] == 3 else np.zeros((len(order), 3))

    visual = [key for key, feature in features.items() if feature.get("dtype") in ("video", "image")]
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
    if not ours and "next.success" in frames.column_names:
        success = _column(frames, "next.success")[order].astype(bool)

    def episode_stream():
        cursors: dict[str, _VideoCursor] = {}  # one open file per camera: episodes come in file order
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
                    video = path / info["video_path"].format(video_key=key, chunk_index=chunk, file_index=file)
                    if key not in cursors or cursors[key].path != video:
                        if key in cursors:
                            cursors[key].close()
                        cursors[key] = _VideoCursor(video)
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
    return Contents(source=path, cameras=cameras, action_dim=action_dim, domain_config=domain_config, run=run,
                    n_episodes=len(episode_ids), episodes=episode_stream(), annotations=annotations)


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


class _VideoCursor:
    """The frames of one mp4, read forward once (episodes come in file order); going back reopens it."""

    def __init__(self, path: Path):
        self.path = path
        self._reader = None
        self._frames = None
        self._position = 0

    def read(self, start: int, count: int) -> np.ndarray:
        if self._reader is None or start < self._position:
            self.close()
            if not self.path.is_file():
                raise InteropError(f"{self.path}: missing video file")
            self._reader = iio.get_reader(self.path, format="FFMPEG")
            self._frames = self._reader.iter_data()
            self._position = 0
        try:
            while self._position < start:
                next(self._frames)
                self._position += 1
            frames = [next(self._frames) for _ in range(count)]
        except StopIteration:
            raise InteropError(f"{self.path}: has fewer frames than the episodes need ({start + count})") from None
        self._position += count
        return np.stack(frames)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InteropError(f"{path}: missing (not a LeRobot dataset?)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InteropError(f"{path}: unreadable ({type(error).__name__}: {' '.join(str(error).split())[:200]})") from None


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

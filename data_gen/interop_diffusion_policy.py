"""Diffusion Policy's ReplayBuffer layout: a zarr format 2 directory that its code opens as it is.

Diffusion Policy (Chi et al.) reads ``data/<key>`` (all steps concatenated) and ``meta/episode_ends``
with zarr 2, so the export is written in zarr format 2 (zarr-python 3 writes it with
``zarr_format=2``)::

    DIR/
      .zgroup, .zattrs            root attributes: format, cameras, camera_keys, action_dim, domain_config,
                                  run, keys
      data/<camera>               (N, H, W, 3) uint8, one per camera (zstd 9, 128-frame chunks, as the
                                  store), under its name or the one --camera gives it (camera_keys:
                                  store camera -> key under data/)
      data/state                  (N, 2) float32    agent_pos (pusher xy), DP's low-dim observation
      data/action                 (N, A) float32
      data/slider_pose            (N, 3) float32    extra: x, y, theta of the T
      meta/episode_ends           (E,) int64        exclusive end of each episode, as DP expects
      meta/source, domain, seed, initial_pose, planning_time, plan_cost, success, extra
                                  (E,) per-episode metadata (strings as zarr 2 vlen-utf8)
      annotations/<name>/sigma_min, sigma_max   (N,) float32, the store's annotation sets (group
                                  attributes as in the store); DP ignores groups it does not know

Every array under ``data/`` has N rows, which DP's ReplayBuffer checks. DP's push-T image dataset
(``PushTImageDataset``) reads ``data/img``, ``data/state`` (agent_pos = its first two columns),
``data/action`` and ``meta/episode_ends``: export with the camera renamed to ``img``
(``--camera overhead=img``) and its config reads the export as it is.

Import reads our own export back exactly (its root attribute ``format`` says so). A foreign DP dataset
(e.g. the push-T ``pusht_cchi_v7_replay.zarr``) imports with: cameras from every (N, H, W, 3) array
under ``data/`` (float images holding whole 0-255 values become uint8); agent_pos the first two
columns of ``data/state`` (or ``data/agent_pos``); slider_pose ``data/slider_pose`` if present, else
columns 2-4 of ``data/state`` when it has five (DP push-T's state is agent x, y, block x, y, angle),
else zeros; and the metadata defaults of ``data_gen.interop_format``. What it leaves out (push-T's
``data/keypoint`` and ``data/n_contacts``, extra state columns, ``meta/`` arrays) is named in a warning.
"""

from __future__ import annotations

from pathlib import Path

import numcodecs
import numpy as np
import zarr
from tqdm import tqdm

from data_gen.episode_store import (
    ANNOTATION_ARRAYS, FORMAT_NAME, IMAGE_CHUNK_FRAMES, META_COLUMNS, Annotation, EpisodeStore, meta_from_columns,
)
from data_gen.interop_format import Contents, InteropError, foreign_meta, foreign_run, camera_name, to_uint8_images

FORMAT = "diffusion-policy"
STATE_KEY = "state"  # DP's name for the low-dim observation; ours is agent_pos
LOW_DIM_CHUNK_STEPS = 4096
IMAGE_COMPRESSOR = numcodecs.Zstd(level=9)  # as the store: a rendered 96x96 frame takes a few KB
LOW_DIM_COMPRESSOR = numcodecs.Blosc(cname="zstd", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE)


def write(store: EpisodeStore, out: Path, progress: bool = False, names: dict[str, str] | None = None) -> None:
    """Write the store into the (empty, existing) directory ``out`` as a DP replay buffer.

    names: {store camera: its key under data/}.
    """
    names = names or {camera: camera for camera in store.cameras}
    if STATE_KEY in names.values():
        raise InteropError(f"{store.path}: camera {STATE_KEY!r} would collide with Diffusion Policy's "
                           f"data/{STATE_KEY} (rename it with --camera {STATE_KEY}=NAME)")
    root = zarr.open_group(out, mode="w", zarr_format=2)
    low_dim = {"action": store.array("action"), STATE_KEY: store.array("agent_pos"), "slider_pose": store.array("slider_pose")}
    for key, values in low_dim.items():
        _array(root, f"data/{key}", values, LOW_DIM_CHUNK_STEPS, LOW_DIM_COMPRESSOR)
    images = {
        name: root.create_array(f"data/{names[name]}", shape=(store.n_steps, *store.image_shape(name)),
                                dtype=np.uint8, chunks=(IMAGE_CHUNK_FRAMES, *store.image_shape(name)),
                                compressors=IMAGE_COMPRESSOR)
        for name in store.cameras
    }
    for index in tqdm(range(store.n_episodes), unit="episode", desc=f"exporting to {out.name}", disable=not progress,
                      dynamic_ncols=True):
        steps = store.episode_slice(index)
        for name, array in images.items():
            array[steps] = store.array(name, steps.start, steps.stop)
    _array(root, "meta/episode_ends", store.episode_ends, None, LOW_DIM_COMPRESSOR)
    for name, values in store.meta_columns().items():
        _array(root, f"meta/{name}", values, None, LOW_DIM_COMPRESSOR)
    annotation_attrs = {}
    for name in store.annotation_names:
        annotation = store.annotation(name)
        _array(root, f"annotations/{name}/sigma_min", annotation.sigma_min, LOW_DIM_CHUNK_STEPS, LOW_DIM_COMPRESSOR)
        if annotation.sigma_max is not None:
            _array(root, f"annotations/{name}/sigma_max", annotation.sigma_max, LOW_DIM_CHUNK_STEPS, LOW_DIM_COMPRESSOR)
        root[f"annotations/{name}"].attrs.update(annotation.attrs)
        annotation_attrs[name] = annotation.attrs
    root.attrs.update({
        "format": FORMAT_NAME, "exported_as": FORMAT,
        "cameras": {name: list(store.image_shape(name)) for name in store.cameras}, "camera_keys": names,
        "action_dim": store.action_dim, "domain_config": store.domain_config, "run": store.run,
        "keys": {STATE_KEY: "agent_pos"},
    })


def _array(root: zarr.Group, key: str, values: np.ndarray, chunk_rows: int | None, compressor) -> None:
    values = np.asarray(values)
    chunks = (min(chunk_rows or len(values), max(len(values), 1)), *values.shape[1:])
    dtype = str if values.dtype.kind in "UTO" else values.dtype
    array = root.create_array(key, shape=values.shape, dtype=dtype, chunks=chunks, compressors=compressor)
    array[...] = values


# --------------------------------------------------------------------------------------------------
# Import


def read(path: Path) -> Contents:
    """The DP replay buffer in ``path`` as store contents (ours exactly; a foreign one with defaults)."""
    try:
        root = zarr.open_group(path, mode="r", zarr_format=2)
        attrs = dict(root.attrs)
        data_group, ends_array = root["data"], root["meta/episode_ends"]
        if not isinstance(data_group, zarr.Group):
            raise InteropError(f"{path}: data is an array; Diffusion Policy keeps one array per key in the group data/")
        data = {key: data_group[key] for key in data_group.array_keys()}
        if not isinstance(ends_array, zarr.Array) or ends_array.ndim != 1 or ends_array.dtype.kind not in "iu":
            raise InteropError(f"{path}: meta/episode_ends must be a 1-D integer array (it is {_describe(ends_array)})")
        ends = np.asarray(ends_array[:]).astype(np.int64)
        meta_keys = sorted(root["meta"].keys())
    except (KeyError, FileNotFoundError, ValueError, TypeError, zarr.errors.BaseZarrError) as error:
        detail = f"missing {error}" if isinstance(error, KeyError) else f"{type(error).__name__}: {error}"
        raise InteropError(f"{path}: not a Diffusion Policy zarr (format 2) replay buffer ({' '.join(detail.split())[:200]})") from None
    if len(ends) == 0 or np.any(np.diff(np.concatenate([[0], ends])) <= 0):
        raise InteropError(f"{path}: meta/episode_ends must be non-empty and strictly increasing from above 0")
    n_steps = int(ends[-1])
    # DP's ReplayBuffer holds every array under data/ to episode_ends[-1] rows; fewer would be read as
    # missing steps, more would be dropped without a word.
    wrong = [f"data/{key} has {array.shape[0]} rows" if array.ndim else f"data/{key} is 0-d"
             for key, array in data.items() if array.ndim == 0 or array.shape[0] != n_steps]
    if wrong:
        raise InteropError(f"{path}: meta/episode_ends ends at {n_steps} steps but {'; '.join(wrong)}")
    if attrs.get("format") == FORMAT_NAME:
        return _read_ours(path, root, attrs, data, ends)
    return _read_foreign(path, data, ends, meta_keys)


def _describe(node: zarr.Array | zarr.Group) -> str:
    return f"a {node.ndim}-D {node.dtype} array" if isinstance(node, zarr.Array) else "a group"


def _read_ours(path: Path, root: zarr.Group, attrs: dict, data: dict[str, zarr.Array], ends: np.ndarray) -> Contents:
    try:
        cameras = {name: (int(shape[0]), int(shape[1])) for name, shape in attrs["cameras"].items()}
        camera_keys = attrs.get("camera_keys", {name: name for name in cameras})  # none before camera renaming
        columns = {name: np.asarray(root[f"meta/{name}"][:]) for name in META_COLUMNS}
        uneven = [f"meta/{name} has {len(values)}" for name, values in columns.items() if len(values) != len(ends)]
        if uneven:
            raise InteropError(f"{path}: {len(ends)} episodes in meta/episode_ends but {'; '.join(uneven)}")
        keys = {"action": data["action"], "agent_pos": data[STATE_KEY], "slider_pose": data["slider_pose"],
                **{name: data[camera_keys[name]] for name in cameras}}
        annotations = []
        if "annotations" in root:
            for name in sorted(root["annotations"].group_keys()):
                group = root[f"annotations/{name}"]
                values = {key: np.asarray(group[key][:]) for key in ANNOTATION_ARRAYS if key in group}
                annotations.append(Annotation(name, values["sigma_min"], values.get("sigma_max"), dict(group.attrs)))
        contents = Contents(source=path, cameras=cameras, action_dim=int(attrs["action_dim"]), domain_config=attrs["domain_config"],
                            run=attrs["run"], n_episodes=len(ends), episodes=(), annotations=annotations)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise InteropError(f"{path}: incomplete ambient-push export ({type(error).__name__}: {error})") from None

    def episodes():
        start = 0
        for index, end in enumerate(ends):
            yield {key: np.asarray(array[start:end]) for key, array in keys.items()}, meta_from_columns(columns, index)
            start = int(end)

    contents.episodes = episodes()
    return contents


def _read_foreign(path: Path, data: dict[str, zarr.Array], ends: np.ndarray, meta_keys: list[str]) -> Contents:
    if "action" not in data or data["action"].ndim != 2:
        raise InteropError(f"{path}: no data/action of shape (N, action_dim)")
    state = data.get("agent_pos", data.get(STATE_KEY))
    if state is None or state.ndim != 2 or state.shape[1] < 2:
        raise InteropError(f"{path}: no data/state or data/agent_pos with the pusher xy in its first two columns")
    image_keys = [key for key, array in data.items() if array.ndim == 4 and array.shape[-1] == 3]
    cameras: dict[str, tuple[int, int]] = {}
    names: dict[str, str] = {}
    for key in image_keys:
        names[key] = camera_name(key, cameras)
        cameras[names[key]] = (int(data[key].shape[1]), int(data[key].shape[2]))
    slider = data.get("slider_pose")
    action = data["action"]
    state_key = "agent_pos" if "agent_pos" in data else STATE_KEY
    state_columns_read = 5 if slider is None and state.shape[1] >= 5 else 2
    read = {"action", state_key, *image_keys, *(["slider_pose"] if slider is not None else [])}
    not_imported = [f"data/{key}" for key in sorted(data) if key not in read]
    if state.shape[1] > state_columns_read:
        not_imported.append(f"data/{state_key} columns {state_columns_read}-{state.shape[1] - 1}")
    not_imported += [f"meta/{key}" for key in meta_keys if key != "episode_ends"]

    def episodes():
        start = 0
        for index, end in enumerate(ends):
            rows = slice(start, int(end))
            state_rows = np.asarray(state[rows])
            if slider is not None:
                slider_pose = np.asarray(slider[rows])
            elif state.shape[1] >= 5:
                slider_pose = state_rows[:, 2:5]
            else:
                slider_pose = np.zeros((rows.stop - rows.start, 3))
            steps = {"action": np.asarray(action[rows]), "agent_pos": state_rows[:, :2], "slider_pose": slider_pose}
            for key, name in names.items():
                steps[name] = to_uint8_images(path, f"data/{key}", np.asarray(data[key][rows]))
            yield steps, foreign_meta(index, slider_pose, True, {"imported_from": str(path), "episode_index": index})
            start = int(end)

    return Contents(source=path, cameras=cameras, action_dim=int(action.shape[1]), domain_config={},
                    run=foreign_run(FORMAT, path), n_episodes=len(ends), episodes=episodes(), foreign=True,
                    slider_pose_found=slider is not None or state.shape[1] >= 5, not_imported=not_imported)


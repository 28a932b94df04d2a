"""The episode store's on-disk format: layout, attributes, the per-episode metadata row.

What a store is, apart from how it is opened, appended to and checked (``data_gen.episode_store``)
and how damage is found (``data_gen.store_damage``). Importers outside ``data_gen`` take these names
from ``data_gen.episode_store``, which re-exports them.

Layout (a zarr v3 directory store; N steps in E episodes, all episodes concatenated along N)::

    <store>/
      zarr.json                 root attributes, see below
      data/action               (N, A) float32   absolute pusher xy target per step (A = action_dim)
      data/agent_pos            (N, 2) float32   pusher xy
      data/slider_pose          (N, 3) float32   x, y, theta of the T
      data/<camera>             (N, H, W, 3) uint8, one array per camera (e.g. overhead, wrist)
      meta/episode_ends         (E,) int64       exclusive end index of each episode
      meta/source               (E,) string      gcs | teleop | expert | import (data_gen.interop)
      meta/domain               (E,) string      domain name the episode was generated in
      meta/seed                 (E,) int64
      meta/initial_pose         (E, 3) float64   x, y, theta of the T at the start
      meta/planning_time        (E,) float64     seconds, NaN if not applicable
      meta/plan_cost            (E,) float64     NaN if not applicable
      meta/success              (E,) bool
      meta/extra                (E,) string      free JSON object per episode
      annotations/<name>/       one named annotation set per classifier run (see below)
        sigma_min               (N,) float32     per-step sigma_min (normalised action units)
        sigma_max               (N,) float32     optional, per-step sigma_max (locality branch)
      writer.lock               present only while (or after a crash while) a writer had it open

Episode i spans steps ``episode_ends[i-1]:episode_ends[i]`` (0 for i = 0), the Diffusion Policy /
LeRobot convention. Strings use zarr's variable-length UTF-8 type, the one string type with a zarr
v3 extension spec. Root attributes: ``format`` ("ambient-push-episodes"), ``format_version``,
``cameras`` ({name: [H, W, 3]}, in creation order), ``action_dim``, ``domain_config`` (the
generator's domain settings, any JSON object) and ``run`` (the generator's identity, e.g.
{"seed": 0, "domain": "sim", "replay": "kinematic"}; a resume with a different run is refused).

Annotation sets hold per-step noise levels measured on the committed steps (e.g. by
``policies.classify``), keyed by a name, so that several classifiers' values can coexist and a
training run names the one it uses. A set's group attributes record ``n_steps`` (the steps it
covers), and whatever its producer needs to make it reproducible and checkable (its config, the
action normaliser it measured in). A set is written whole into a hidden temporary group and renamed
into place, so it is either complete or absent; replacing one needs ``overwrite``. Format version 1
stores kept one anonymous ``data/sigma_min`` column; it is no longer read (re-run the classifier).

Images are compressed with zstd level 9 in chunks of 128 frames (whole H, W, 3 per chunk): rendered
96x96 frames take a few KB each, and a training read of a short window decompresses one chunk.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import zarr
from pydantic import BaseModel, ConfigDict, Field
from zarr.codecs import Crc32cCodec, ZstdCodec

FORMAT_NAME = "ambient-push-episodes"
FORMAT_VERSION = 3
# 1 has an unread data/sigma_min column; 1-2 lack the commit record and checksums (upgraded on append).
READABLE_FORMAT_VERSIONS = (1, 2, 3)
COMMIT_ATTRIBUTE = "committed"
ANNOTATIONS_GROUP = "annotations"
ANNOTATION_ARRAYS = ("sigma_min", "sigma_max")

LOCK_FILE = "writer.lock"
IMAGE_CHUNK_FRAMES = 128
LOW_DIM_CHUNK_STEPS = 4096
META_CHUNK_EPISODES = 1024
IMAGE_COMPRESSORS = (ZstdCodec(level=9), Crc32cCodec())
COMPRESSORS = (ZstdCodec(level=0), Crc32cCodec())  # zarr's default compressor, plus the checksum
WRITE_CONFIG = {"write_empty_chunks": True}  # a missing chunk is then always damage, never "all fill"
# Format 1-2 stores skipped chunks holding only fill values; these columns could legitimately do so.
LEGACY_MAY_SKIP = ("meta/seed", "meta/success")

# Step arrays other than images, with their width (action's comes from action_dim).
STATE_WIDTHS = {"agent_pos": 2, "slider_pose": 3}
RESERVED_NAMES = {"action", "sigma_min", *STATE_WIDTHS}  # sigma_min: format 1's column


class StoreError(Exception):
    """Any problem with an episode store; the message is one line and names the path."""


ANNOTATION_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class Annotation:
    """One annotation set: per-step sigma_min (and optional sigma_max) plus its producer's attributes."""

    name: str
    sigma_min: np.ndarray  # (N,) float32
    sigma_max: np.ndarray | None  # (N,) float32 or None
    attrs: dict[str, Any]


class EpisodeMeta(BaseModel):
    """Per-episode metadata, one row of the ``meta/`` table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: Literal["gcs", "teleop", "expert", "import"]
    domain: str = Field(min_length=1)
    seed: int
    initial_pose: tuple[float, float, float]
    success: bool
    planning_time: float = math.nan
    plan_cost: float = math.nan
    extra: dict[str, Any] = Field(default_factory=dict)


# Column name -> (dtype, shape of one row). "str" is zarr's variable-length UTF-8 string.
META_COLUMNS: dict[str, tuple[Any, tuple[int, ...]]] = {
    "source": (str, ()),
    "domain": (str, ()),
    "seed": (np.int64, ()),
    "initial_pose": (np.float64, (3,)),
    "planning_time": (np.float64, ()),
    "plan_cost": (np.float64, ()),
    "success": (np.bool_, ()),
    "extra": (str, ()),
}


def meta_from_columns(columns: Mapping[str, Any], index: int) -> EpisodeMeta:
    """Row ``index`` of metadata columns (as ``EpisodeStore.meta_column`` or an export holds them) as
    an EpisodeMeta, ``extra`` parsed from its JSON string."""
    return EpisodeMeta(
        source=str(columns["source"][index]),
        domain=str(columns["domain"][index]),
        seed=int(columns["seed"][index]),
        initial_pose=tuple(float(x) for x in columns["initial_pose"][index]),
        success=bool(columns["success"][index]),
        planning_time=float(columns["planning_time"][index]),
        plan_cost=float(columns["plan_cost"][index]),
        extra=json.loads(str(columns["extra"][index])),
    )


class EpisodeRecorder:
    """Collects one episode's steps, in the store's keys, for ``append_episode``."""

    def __init__(self, cameras: Iterable[str]):
        self.steps: dict[str, list] = {"action": [], "agent_pos": [], "slider_pose": [], **{c: [] for c in cameras}}

    def __len__(self) -> int:
        return len(self.steps["action"])

    def add(self, images: Mapping[str, np.ndarray], agent_pos, slider_pose, action) -> None:
        """One step: the camera images and state observed, and the action then sent."""
        for name, image in images.items():
            self.steps[name].append(image)
        self.steps["agent_pos"].append(np.asarray(agent_pos, dtype=np.float32))
        self.steps["slider_pose"].append(np.asarray(slider_pose, dtype=np.float32))
        self.steps["action"].append(np.asarray(action, dtype=np.float32))

    def episode(self) -> dict[str, np.ndarray]:
        return {key: np.stack(values) for key, values in self.steps.items()}


def check_creation_args(path: Path, cameras: Mapping[str, tuple[int, int]], action_dim: int) -> None:
    for name, size in cameras.items():
        if not name.isidentifier() or name in RESERVED_NAMES:
            raise StoreError(
                f"{path}: camera name {name!r} must be an identifier other than {sorted(RESERVED_NAMES)}"
            )
        if len(size) != 2 or not all(isinstance(n, (int, np.integer)) and n > 0 for n in size):
            raise StoreError(f"{path}: camera {name!r} size must be (height, width), got {size!r}")
    if not isinstance(action_dim, (int, np.integer)) or action_dim < 1:
        raise StoreError(f"{path}: action_dim must be a positive int, got {action_dim!r}")


def json_roundtrip(path: Path, what: str, value: Mapping[str, Any]) -> dict[str, Any]:
    """The value as it will read back from the store's JSON attributes (tuples become lists)."""
    try:
        result = json.loads(json.dumps(dict(value)))
    except (TypeError, ValueError) as error:
        raise StoreError(f"{path}: {what} must be a JSON-able dict: {error}") from None
    return result


def create_layout(path: Path, attributes: dict[str, Any]) -> None:
    """Write the empty arrays, then the root attributes that mark the store as complete."""
    group = zarr.open_group(path, mode="a", use_consolidated=False)
    new = {"compressors": COMPRESSORS, "config": WRITE_CONFIG}
    low_dim = {"action": attributes["action_dim"], **STATE_WIDTHS}
    for key, width in low_dim.items():
        group.create_array(f"data/{key}", shape=(0, width), dtype=np.float32, chunks=(LOW_DIM_CHUNK_STEPS, width), **new)
    for name, shape in attributes["cameras"].items():
        group.create_array(
            f"data/{name}", shape=(0, *shape), dtype=np.uint8, chunks=(IMAGE_CHUNK_FRAMES, *shape),
            compressors=IMAGE_COMPRESSORS, config=WRITE_CONFIG,
        )
    group.create_array("meta/episode_ends", shape=(0,), dtype=np.int64, chunks=(META_CHUNK_EPISODES,), **new)
    for name, (dtype, row_shape) in META_COLUMNS.items():
        group.create_array(
            f"meta/{name}", shape=(0, *row_shape), dtype=dtype, chunks=(META_CHUNK_EPISODES, *row_shape), **new
        )
    group.attrs.update({**attributes, COMMIT_ATTRIBUTE: {"episodes": 0, "steps": 0}})


def check_attributes(path: Path, attrs: dict[str, Any]) -> dict[str, Any]:
    if attrs.get("format") != FORMAT_NAME:
        raise StoreError(f"{path}: not an episode store (format attribute is {attrs.get('format')!r})")
    version = attrs.get("format_version")
    if version not in READABLE_FORMAT_VERSIONS:
        raise StoreError(f"{path}: episode store format version {version!r}; this code reads {list(READABLE_FORMAT_VERSIONS)}")
    missing = [key for key in ("cameras", "action_dim", "domain_config", "run") if key not in attrs]
    if missing:
        raise StoreError(f"{path}: store attributes lack {missing}")
    cameras = attrs["cameras"]
    if not isinstance(cameras, dict) or not all(
        isinstance(s, list) and len(s) == 3 and s[2] == 3 for s in cameras.values()
    ):
        raise StoreError(f"{path}: malformed cameras attribute {cameras!r}")
    return attrs


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """A nested JSON mapping as {"a.b.c": leaf}; lists are leaves."""
    if not isinstance(value, Mapping):
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, item in value.items():
        flat.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return flat

"""The episode store: the one on-disk format shared by data generation and training.

Demonstrations (GCS planner, teleop, expert) are appended here one episode at a time; training reads
them back through this module only, so it imports nothing heavier than numpy, zarr and pydantic.

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

Crash safety: an append writes the step arrays, the per-episode metadata and ``meta/episode_ends``,
then commits by rewriting the root attribute ``committed`` ({"episodes": E, "steps": N}). Every zarr
file write is an atomic rename, so a writer killed at any point (kill -9, not power loss: nothing is
fsynced) leaves at most some uncommitted steps and rows past the committed ones. Readers never see
them; opening in append mode trims them, and nothing else: the commit record and
``meta/episode_ends`` check each other, so a damaged ends chunk (which reads as zeros) or a
non-increasing end is a StoreError that changes nothing on disk, never a "crash tail" to cut off.
Format 1-2 stores have no commit record: their ends must all be strictly increasing; opening one in
append mode adds the record (and makes it format 3).

Damage: every chunk covering the committed range must exist (zarr reads a missing chunk as zeros);
open checks that, and new arrays end in a crc32c codec, so a damaged chunk fails its checksum when
read (append-mode open verifies every checksummed chunk before anything is written). Either is a
StoreError naming the array and the steps and episodes the chunk holds. Every chunk is written even
when it holds only fill values, so a missing one is always damage. One writer at a time: append mode holds an flock on ``writer.lock``
(which records the writer's pid), and the kernel releases it when the writer dies, so a lock left by
a killed writer is never stale. Readers take no lock and see the episodes committed when they opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import itertools
import json
import math
import os
import re
import shutil
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import zarr
from pydantic import BaseModel, ConfigDict, Field
import google_crc32c
from zarr.codecs import Crc32cCodec, ZstdCodec

from data_gen.dir_lock import FileLock, Locked

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


_ANNOTATION_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")


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


class EpisodeStore:
    """An episode store opened for reading (``mode="r"``) or appending (``mode="a"``).

    Build one with ``EpisodeStore.create`` or ``EpisodeStore.open``; close it (or use ``with``) to
    release the writer lock.
    """

    # ----------------------------------------------------------------------------------------------
    # Creating and opening

    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        *,
        cameras: Mapping[str, tuple[int, int]],
        domain_config: Mapping[str, Any],
        run: Mapping[str, Any],
        action_dim: int = 2,
        overwrite: bool = False,
    ) -> EpisodeStore:
        """Create an empty store and open it for appending.

        cameras: {name: (height, width)} of the RGB images recorded each step.
        overwrite: replace an existing store (never a directory that is not a zarr store).
        """
        path = Path(path)
        _check_creation_args(path, cameras, action_dim)
        attributes = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "cameras": {name: [int(h), int(w), 3] for name, (h, w) in cameras.items()},
            "action_dim": int(action_dim),
            "domain_config": _json_roundtrip(path, "domain_config", domain_config),
            "run": _json_roundtrip(path, "run", run),
        }
        if path.exists() and not _is_empty_dir(path):
            if not overwrite:
                raise StoreError(f"{path}: already exists (open it to append, or pass overwrite=True)")
            if not path.is_dir() or not (path / "zarr.json").is_file():
                raise StoreError(f"{path}: refusing to overwrite something that is not a zarr store")
        path.mkdir(parents=True, exist_ok=True)
        lock = _WriterLock.acquire(path)
        try:
            for child in path.iterdir():
                if child.name != LOCK_FILE:
                    shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
            _create_layout(path, attributes)
            return cls(path, "a", lock)
        except BaseException:
            lock.release()
            raise

    @classmethod
    def open(cls, path: str | os.PathLike, mode: Literal["r", "a"] = "r") -> EpisodeStore:
        """Open an existing store; ``mode="a"`` takes the writer lock and drops uncommitted steps."""
        if mode not in ("r", "a"):
            raise ValueError(f"mode must be 'r' or 'a', not {mode!r}")
        path = Path(path)
        if not path.exists():
            raise StoreError(f"{path}: no such episode store")
        if not (path / "zarr.json").is_file():
            # A store another writer is still creating has its lock but no zarr.json yet.
            if path.is_dir() and (path / LOCK_FILE).is_file():
                holder = _WriterLock.holder(path)
                if holder is not None:
                    raise StoreError(f"{path}: locked by another writer ({holder}), which is creating it")
            raise StoreError(f"{path}: not a zarr store (no zarr.json)")
        lock = _WriterLock.acquire(path) if mode == "a" else None
        try:
            return cls(path, mode, lock)
        except BaseException:
            if lock is not None:
                lock.release()
            raise

    @classmethod
    def open_for_writing(
        cls,
        path: str | os.PathLike,
        *,
        cameras: Mapping[str, tuple[int, int]],
        domain_config: Mapping[str, Any],
        run: Mapping[str, Any],
        check_run: bool = True,
        overwrite: bool = False,
    ) -> EpisodeStore:
        """A store to append to: created if absent (or replaced with ``overwrite``), else opened after
        checking that it holds the same cameras and image sizes and, with ``check_run``, the same run
        in the same domain config.

        With ``check_run``, a store that holds no episode and no annotation set (left by a run that
        failed before its first episode, say a worker that could not start) is this run's to take: it
        is made again with this run's record, so its attributes describe the episodes it will hold.
        """
        path = Path(path)
        if overwrite or not path.exists() or _is_empty_dir(path):
            return cls.create(path, cameras=cameras, domain_config=domain_config, run=run, overwrite=overwrite)
        store = cls.open(path, "a")
        if check_run and store.n_episodes == 0 and not store.annotation_names:
            store.close()
            return cls.create(path, cameras=cameras, domain_config=domain_config, run=run, overwrite=True)
        try:
            if check_run:
                store.check_compatible(run)
                store.check_same_domain(domain_config)
            held = {name: store.image_shape(name)[:2] for name in store.cameras}
            wanted = {name: tuple(int(v) for v in size) for name, size in cameras.items()}
            if held != wanted:
                raise StoreError(f"{path}: holds cameras {held}, this writer renders {wanted}")
        except BaseException:
            store.close()
            raise
        return store

    def __init__(self, path: Path, mode: Literal["r", "a"], lock: _WriterLock | None):
        """Use ``create`` or ``open``."""
        self.path = path
        self.mode = mode
        self._lock = lock
        with _store_errors(path):
            self._group = zarr.open_group(path, mode="r" if mode == "r" else "r+", use_consolidated=False)
            attrs = dict(self._group.attrs)
            self._attrs = _check_attributes(path, attrs)
        self._arrays = {key: self._open_array(f"data/{key}") for key in self.step_keys}
        self._meta = {name: self._open_array(f"meta/{name}") for name in META_COLUMNS}
        self._episode_ends_array = self._open_array("meta/episode_ends")
        self._check_arrays()
        ends = self._read("meta/episode_ends", self._episode_ends_array, 0, self._episode_ends_array.shape[0])
        self._ends = _committed_ends(path, ends, self._attrs.get(COMMIT_ATTRIBUTE))
        self._check_lengths()
        self._check_chunks_exist()
        if mode == "a":
            self._verify_checksums()  # before anything is written: never append to a damaged store
            with _store_errors(path):
                self._truncate_uncommitted()
                if COMMIT_ATTRIBUTE not in self._attrs:
                    self._upgrade()

    def close(self) -> None:
        """Release the writer lock; the store can no longer be appended to through this object."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        self.mode = "r"

    def __enter__(self) -> EpisodeStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ----------------------------------------------------------------------------------------------
    # Store-level attributes

    @property
    def cameras(self) -> tuple[str, ...]:
        return tuple(self._attrs["cameras"])

    def image_shape(self, camera: str) -> tuple[int, int, int]:
        """(H, W, 3) of one camera's images."""
        if camera not in self._attrs["cameras"]:
            raise KeyError(f"{self.path}: no camera {camera!r}; cameras are {list(self.cameras)}")
        return tuple(self._attrs["cameras"][camera])

    @property
    def action_dim(self) -> int:
        return int(self._attrs["action_dim"])

    @property
    def run(self) -> dict[str, Any]:
        return dict(self._attrs["run"])

    @property
    def domain_config(self) -> dict[str, Any]:
        return dict(self._attrs["domain_config"])

    @property
    def step_keys(self) -> tuple[str, ...]:
        """Names of the per-step arrays under ``data/``, as returned by ``episode``."""
        return ("action", *STATE_WIDTHS, *self._attrs["cameras"])

    def check_compatible(self, run: Mapping[str, Any]) -> None:
        """Raise StoreError unless this store was made by a generator with the same run identity."""
        theirs = self._attrs["run"]
        ours = _json_roundtrip(self.path, "run", run)
        differences = [
            f"{key} {theirs.get(key, '<unset>')!r} != {ours.get(key, '<unset>')!r}"
            for key in sorted(set(theirs) | set(ours))
            if theirs.get(key) != ours.get(key) or (key in theirs) != (key in ours)
        ]
        if differences:
            raise StoreError(
                f"{self.path}: made by a different run (store vs this run: {', '.join(differences)})"
            )

    def check_same_domain(self, domain_config: Mapping[str, Any]) -> None:
        """Raise StoreError unless ``domain_config`` is the one this store's episodes were made in.

        Settings that only one side records (a field added to the domain config since the store was
        made) are not compared: a store from before it still resumes.
        """
        theirs = _flatten(self._attrs["domain_config"])
        ours = _flatten(_json_roundtrip(self.path, "domain_config", domain_config))
        differences = [f"{key} {theirs[key]!r} != {ours[key]!r}" for key in sorted(set(theirs) & set(ours)) if theirs[key] != ours[key]]
        if differences:
            shown = ", ".join(differences[:3]) + (f" and {len(differences) - 3} more" if len(differences) > 3 else "")
            raise StoreError(f"{self.path}: made by a different run (its domain config vs this run's: {shown})")

    # ----------------------------------------------------------------------------------------------
    # Reading committed episodes

    @property
    def n_episodes(self) -> int:
        return len(self._ends)

    @property
    def n_steps(self) -> int:
        return int(self._ends[-1]) if len(self._ends) else 0

    @property
    def episode_ends(self) -> np.ndarray:
        """(E,) int64 exclusive end index of each committed episode."""
        return self._ends.copy()

    def episode_slice(self, index: int) -> slice:
        """The steps of episode ``index`` (negative counts from the end)."""
        index = self._episode_index(index)
        start = int(self._ends[index - 1]) if index > 0 else 0
        return slice(start, int(self._ends[index]))

    def episode(self, index: int) -> dict[str, np.ndarray]:
        """All step arrays of one episode, keyed as ``step_keys``."""
        steps = self.episode_slice(index)
        return {key: self._read(f"data/{key}", array, steps.start, steps.stop) for key, array in self._arrays.items()}

    def array(self, key: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Committed steps ``start:stop`` of one step array (all of them by default)."""
        if key not in self._arrays:
            raise KeyError(f"{self.path}: no step array {key!r}; step arrays are {list(self.step_keys)}")
        begin, end, _ = slice(start, stop).indices(self.n_steps)
        return self._read(f"data/{key}", self._arrays[key], begin, max(begin, end))

    def episode_meta(self, index: int) -> EpisodeMeta:
        """The metadata row of one episode."""
        index = self._episode_index(index)
        row = {name: self._read(f"meta/{name}", self._meta[name], index, index + 1) for name in META_COLUMNS}
        return meta_from_columns(row, 0)

    def episode_metas(self) -> list[EpisodeMeta]:
        """Every committed episode's metadata, read column by column (not one read per episode)."""
        columns = self.meta_columns()
        return [meta_from_columns(columns, index) for index in range(self.n_episodes)]

    def meta_columns(self) -> dict[str, np.ndarray]:
        """Every metadata column (``extra`` as the JSON string it stores, so it round-trips exactly)."""
        return {name: self.meta_column(name) for name in META_COLUMNS}

    def meta_column(self, name: str) -> np.ndarray:
        """One metadata column over all committed episodes (strings as a numpy str array)."""
        if name not in META_COLUMNS:
            raise KeyError(f"{self.path}: no metadata column {name!r}; columns are {list(META_COLUMNS)}")
        values = self._read(f"meta/{name}", self._meta[name], 0, self.n_episodes)
        return np.array(values.tolist(), dtype=str) if META_COLUMNS[name][0] is str else values

    # ----------------------------------------------------------------------------------------------
    # Annotation sets

    @property
    def annotation_names(self) -> tuple[str, ...]:
        """Names of the complete annotation sets, sorted."""
        root = self.path / ANNOTATIONS_GROUP
        if not root.is_dir():
            return ()
        return tuple(sorted(p.name for p in root.iterdir() if p.is_dir() and _ANNOTATION_NAME.fullmatch(p.name)))

    def annotation(self, name: str) -> Annotation:
        """The annotation set ``name``; StoreError if absent, damaged or not covering every committed step."""
        if name not in self.annotation_names:
            raise StoreError(f"{self.path}: no annotation set {name!r} (sets: {list(self.annotation_names) or 'none'})")
        key = f"{ANNOTATIONS_GROUP}/{name}"
        with _store_errors(self.path, key):
            group = zarr.open_group(self.path / ANNOTATIONS_GROUP / name, mode="r", use_consolidated=False)
            attrs = dict(group.attrs)
            values = {a: np.asarray(group[a][:]) for a in ANNOTATION_ARRAYS if a in group}
        n_steps = attrs.get("n_steps")
        if "sigma_min" not in values or any(v.shape != (n_steps,) for v in values.values()):
            raise StoreError(f"{self.path}: damaged annotation set {name!r} (arrays do not match n_steps {n_steps!r})")
        if n_steps != self.n_steps:
            raise StoreError(
                f"{self.path}: annotation set {name!r} covers {n_steps} steps but the store commits {self.n_steps} "
                "(episodes changed since it was written); write it again"
            )
        return Annotation(name, values["sigma_min"], values.get("sigma_max"), attrs)

    def write_annotation(
        self,
        name: str,
        sigma_min: np.ndarray,
        sigma_max: np.ndarray | None = None,
        attrs: Mapping[str, Any] | None = None,
        overwrite: bool = False,
    ) -> None:
        """Write annotation set ``name`` for every committed step: (N,) values in [0, 1], all finite.

        The set appears whole or not at all; an existing set is replaced only with ``overwrite``.
        """
        self._require_writer("write an annotation set")
        if not _ANNOTATION_NAME.fullmatch(name or ""):
            raise StoreError(f"{self.path}: annotation name {name!r} must be letters, digits, '_', '-' or '.', not starting with '.'")
        arrays = {"sigma_min": sigma_min} if sigma_max is None else {"sigma_min": sigma_min, "sigma_max": sigma_max}
        for key, values in arrays.items():
            values = np.asarray(values)
            if values.shape != (self.n_steps,) or not np.issubdtype(values.dtype, np.floating):
                raise StoreError(
                    f"{self.path}: {key} must be a float array of shape ({self.n_steps},), got {values.dtype} {values.shape}"
                )
            if not np.all(np.isfinite(values) & (values >= 0) & (values <= 1)):
                raise StoreError(f"{self.path}: {key} values must be finite and in [0, 1]")
        attributes = {**_json_roundtrip(self.path, "annotation attrs", attrs or {}), "n_steps": self.n_steps}
        root = self.path / ANNOTATIONS_GROUP
        final = root / name
        if final.exists() and not overwrite:
            raise StoreError(f"{self.path}: annotation set {name!r} exists; choose another name or overwrite it")
        temporary = root / f".partial-{name}"
        with _store_errors(self.path, f"{ANNOTATIONS_GROUP}/{name}"):
            if not (root / "zarr.json").is_file():
                zarr.open_group(self.path, mode="r+", use_consolidated=False).require_group(ANNOTATIONS_GROUP)
            shutil.rmtree(temporary, ignore_errors=True)
            group = zarr.open_group(temporary, mode="w", use_consolidated=False)
            for key, values in arrays.items():
                array = group.create_array(
                    key, shape=(self.n_steps,), dtype=np.float32, chunks=(LOW_DIM_CHUNK_STEPS,),
                    compressors=COMPRESSORS, config=WRITE_CONFIG,
                )
                array[:] = np.asarray(values, dtype=np.float32)
            group.attrs.update(attributes)
            if final.exists():  # overwrite: move the old set aside, then swap the new one in
                retired = root / f".retired-{name}"
                shutil.rmtree(retired, ignore_errors=True)
                os.replace(final, retired)
                os.replace(temporary, final)
                shutil.rmtree(retired)
            else:
                os.replace(temporary, final)

    # ----------------------------------------------------------------------------------------------
    # Appending

    def append_episode(self, episode: Mapping[str, np.ndarray], meta: EpisodeMeta) -> int:
        """Append one episode and commit it; return its index.

        episode: one array per ``step_keys`` entry, all with the same number of
        steps T >= 1: action (T, A) and agent_pos (T, 2), slider_pose (T, 3) as floats (stored as
        float32), each camera (T, H, W, 3) uint8.
        """
        self._require_writer("append")
        if not isinstance(meta, EpisodeMeta):
            raise TypeError(f"meta must be an EpisodeMeta, not {type(meta).__name__}")
        steps = self._checked_episode(episode)
        try:
            extra = json.dumps(meta.extra, sort_keys=True)
        except (TypeError, ValueError) as error:
            raise StoreError(f"{self.path}: episode meta 'extra' is not JSON-able: {error}") from None
        with _store_errors(self.path):
            end = self._write_steps(steps)
            self._write_meta_row(meta, extra)
            self._commit(end)
        return self.n_episodes - 1

    def _write_steps(self, steps: dict[str, np.ndarray]) -> int:
        """Write one episode's steps past the committed ones; return the new end index."""
        start = self.n_steps
        length = len(steps["action"])
        for key, array in self._arrays.items():
            array.resize((start + length, *array.shape[1:]))
            array[start : start + length] = steps[key]
        return start + length

    def _write_meta_row(self, meta: EpisodeMeta, extra: str) -> None:
        row = self.n_episodes
        values = {**meta.model_dump(), "extra": extra}
        for name, array in self._meta.items():
            array.resize((row + 1, *array.shape[1:]))
            array[row] = values[name]

    def _commit(self, end: int) -> None:
        """Extend episode_ends, then rewrite the commit record: the single write that makes the episode
        visible. A crash before it leaves ends past the record, which the next writer trims."""
        row = self.n_episodes
        self._episode_ends_array.resize((row + 1,))
        self._episode_ends_array[row] = end
        self._write_commit_record(row + 1, end)
        self._ends = np.append(self._ends, np.int64(end))

    def _write_commit_record(self, episodes: int, steps: int, **attributes: Any) -> None:
        record = {COMMIT_ATTRIBUTE: {"episodes": int(episodes), "steps": int(steps)}, **attributes}
        self._group.attrs.update(record)  # one atomic rewrite of the root zarr.json
        self._attrs.update(record)

    def _upgrade(self) -> None:
        """Make a format 1-2 store format 3: every chunk written, and a commit record."""
        for key in LEGACY_MAY_SKIP:  # chunks skipped for holding only fill values, written out now
            array = self._meta[key.removeprefix("meta/")]
            if self.n_episodes:
                array[: self.n_episodes] = array[: self.n_episodes]
        self._write_commit_record(self.n_episodes, self.n_steps, format_version=FORMAT_VERSION)

    def _truncate_uncommitted(self) -> None:
        """Drop steps and rows past the last committed episode, left by a writer that died."""
        # Stale values can remain inside the last chunk beyond the new shape; every append writes
        # its whole range before committing, so they are never read.
        for array in self._arrays.values():
            if array.shape[0] != self.n_steps:
                array.resize((self.n_steps, *array.shape[1:]))
        for array in (*self._meta.values(), self._episode_ends_array):
            if array.shape[0] != self.n_episodes:
                array.resize((self.n_episodes, *array.shape[1:]))
        for leftover in self.path.rglob("*.partial"):  # half-written files of zarr's atomic writes
            leftover.unlink(missing_ok=True)

    # ----------------------------------------------------------------------------------------------
    # Summary

    def disk_bytes(self) -> int:
        """Bytes on disk of the whole store."""
        return _tree_bytes(self.path)

    def describe(self) -> str:
        """One-line summary: episodes, steps, cameras, bytes on disk and per image frame."""
        cameras = ", ".join(f"{name} {h}x{w}" for name, (h, w, _) in self._attrs["cameras"].items())
        frames = self.n_steps * len(self.cameras)
        image_bytes = sum(_tree_bytes(self.path / "data" / name) for name in self.cameras)
        per_frame = f"{image_bytes / frames / 1e3:.1f} KB/frame" if frames else "no frames"
        return (
            f"EpisodeStore({self.path}: {self.n_episodes} episodes, {self.n_steps} steps, "
            f"cameras [{cameras}], {self.disk_bytes() / 1e6:.1f} MB on disk, {per_frame})"
        )

    __repr__ = describe

    def digest(self) -> str:
        """SHA-256 of the committed episodes: ends, seeds, actions and states, whatever the store's path.

        The identity of the data: a training run resumes only on the data it began with. Images are left
        out (a rendered store's follow from its states) so that the digest reads no frame.
        """
        digest = hashlib.sha256()
        digest.update(np.ascontiguousarray(self.episode_ends, dtype=np.int64).tobytes())
        digest.update(np.ascontiguousarray(self.meta_column("seed"), dtype=np.int64).tobytes())
        for key in self.step_keys:
            if key not in self.cameras:
                digest.update(key.encode() + np.ascontiguousarray(self.array(key), dtype=np.float64).tobytes())
        return digest.hexdigest()

    # ----------------------------------------------------------------------------------------------
    # Checks

    def _open_array(self, key: str) -> zarr.Array:
        with _store_errors(self.path, key):
            array = self._group[key]
        return array.with_config(WRITE_CONFIG) if self.mode == "a" else array

    def _committed_arrays(self) -> Iterator[tuple[str, zarr.Array, int]]:
        """(key, array, committed rows) of every array: steps for data/, episodes for meta/."""
        for name, array in self._arrays.items():
            yield f"data/{name}", array, self.n_steps
        for name, array in self._meta.items():
            yield f"meta/{name}", array, self.n_episodes
        yield "meta/episode_ends", self._episode_ends_array, self.n_episodes

    def _chunk_extent(self, key: str, array: zarr.Array, chunk: int) -> str:
        """What chunk ``chunk`` (along the first axis) of ``key`` holds, for error messages."""
        length = array.chunks[0]
        first, last = chunk * length, min((chunk + 1) * length, array.shape[0]) - 1
        if not key.startswith("data/"):
            return f"episodes {first}-{last}"
        episodes = np.searchsorted(self._ends, [first, last], side="right") if hasattr(self, "_ends") else None
        where = f", episodes {episodes[0]}-{episodes[1]}" if episodes is not None else ""
        return f"steps {first}-{last}{where}"

    def _read(self, key: str, array: zarr.Array, start: int, stop: int) -> np.ndarray:
        """Rows start:stop of one array; a damaged chunk is a StoreError naming it and what it holds.

        Step arrays never hold NaN or inf (appends refuse them), so a read that finds one has decoded a
        damaged chunk of an array without a checksum (format 1-2): that is an error too.
        """
        length = array.chunks[0]
        try:
            values = np.asarray(array[start:stop])
        except Exception:
            for chunk in range(start // length, (max(stop, start + 1) - 1) // length + 1):
                try:
                    array[chunk * length : min((chunk + 1) * length, array.shape[0])]
                except Exception as error:
                    raise StoreError(
                        f"{self.path}: damaged chunk {chunk} of {key} ({self._chunk_extent(key, array, chunk)}): "
                        f"{_one_line(error)}"
                    ) from None
            with _store_errors(self.path, key):
                values = np.asarray(array[start:stop])
        if key.startswith("data/") and values.dtype.kind == "f" and not np.isfinite(values).all():
            chunk = (start + int(np.argwhere(~np.isfinite(values))[0][0])) // length
            raise StoreError(
                f"{self.path}: damaged chunk {chunk} of {key} ({self._chunk_extent(key, array, chunk)}): "
                "non-finite values, which no append writes"
            )
        return values

    def _chunk_files(self, key: str, array: zarr.Array, rows: int) -> Iterator[tuple[int, Path]]:
        """(chunk index along the first axis, file) of every chunk holding the first ``rows`` rows."""
        rest = [range(n) for n in array.cdata_shape[1:]]
        for chunk in range(math.ceil(rows / array.chunks[0])):
            for coords in itertools.product(*rest):
                yield chunk, self.path / key / array.metadata.encode_chunk_key((chunk, *coords))

    def _check_chunks_exist(self) -> None:
        """zarr reads a missing chunk as fill values (zeros): every committed chunk must be on disk."""
        legacy = COMMIT_ATTRIBUTE not in self._attrs
        for key, array, rows in self._committed_arrays():
            if legacy and key in LEGACY_MAY_SKIP:
                continue
            for chunk, file in self._chunk_files(key, array, rows):
                if not file.is_file():
                    raise StoreError(
                        f"{self.path}: damaged episode store: chunk file {file.relative_to(self.path)} is missing "
                        f"({self._chunk_extent(key, array, chunk)}); nothing was changed"
                    )

    def _verify_checksums(self) -> None:
        """Check the crc32c of every committed chunk that has one, from its bytes (nothing decoded)."""
        for key, array, rows in self._committed_arrays():
            if not any(isinstance(codec, Crc32cCodec) for codec in array.compressors):
                continue
            for chunk, file in self._chunk_files(key, array, rows):
                if not file.is_file():  # one a format 1-2 store may skip (the others were checked)
                    continue
                data = file.read_bytes()
                if len(data) < 4 or google_crc32c.value(data[:-4]) != int.from_bytes(data[-4:], "little"):
                    raise StoreError(
                        f"{self.path}: damaged episode store: chunk {file.relative_to(self.path)} fails its checksum "
                        f"({self._chunk_extent(key, array, chunk)}); nothing was changed"
                    )

    def _require_writer(self, what: str) -> None:
        if self.mode != "a" or self._lock is None:
            raise StoreError(f"{self.path}: opened read-only; open with mode='a' to {what}")

    def _episode_index(self, index: int) -> int:
        if not -self.n_episodes <= index < self.n_episodes:
            raise IndexError(f"{self.path}: episode {index} out of range ({self.n_episodes} episodes)")
        return index % self.n_episodes

    def _check_arrays(self) -> None:
        """Each array has the dtype and row shape the layout promises."""
        expected: dict[str, tuple[Any, tuple[int, ...], zarr.Array]] = {
            "data/action": (np.float32, (self.action_dim,), self._arrays["action"]),
            **{f"data/{k}": (np.float32, (w,), self._arrays[k]) for k, w in STATE_WIDTHS.items()},
            **{
                f"data/{name}": (np.uint8, tuple(shape), self._arrays[name])
                for name, shape in self._attrs["cameras"].items()
            },
            "meta/episode_ends": (np.int64, (), self._episode_ends_array),
            **{f"meta/{n}": (dtype, shape, self._meta[n]) for n, (dtype, shape) in META_COLUMNS.items()},
        }
        for key, (dtype, row_shape, array) in expected.items():
            dtype_ok = array.dtype.kind in "TUO" if dtype is str else array.dtype == np.dtype(dtype)
            if not dtype_ok or tuple(array.shape[1:]) != row_shape:
                raise StoreError(
                    f"{self.path}: {key} is {array.dtype} {tuple(array.shape)}, expected "
                    f"{'string' if dtype is str else np.dtype(dtype)} (n, {', '.join(map(str, row_shape))})"
                )

    def _check_lengths(self) -> None:
        """Every array holds at least the committed steps or episodes."""
        short = [f"data/{k} has {a.shape[0]}" for k, a in self._arrays.items() if a.shape[0] < self.n_steps]
        short += [f"meta/{k} has {a.shape[0]}" for k, a in self._meta.items() if a.shape[0] < self.n_episodes]
        if short:
            raise StoreError(
                f"{self.path}: inconsistent lengths ({'; '.join(short)}, but episode_ends commits "
                f"{self.n_steps} steps in {self.n_episodes} episodes)"
            )

    def _checked_episode(self, episode: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The episode's arrays in storage dtypes, or StoreError naming what is wrong."""
        expected = list(self.step_keys)
        if set(episode) != set(expected):
            missing, unknown = sorted(set(expected) - set(episode)), sorted(set(episode) - set(expected))
            raise StoreError(
                f"{self.path}: episode keys do not match the store (missing {missing}, unknown {unknown})"
            )
        arrays = {key: np.asarray(episode[key]) for key in expected}
        length = len(arrays["action"]) if arrays["action"].ndim else 0
        if length < 1:
            raise StoreError(f"{self.path}: an episode needs at least one step")
        row_shapes = {"action": (self.action_dim,), **{k: (w,) for k, w in STATE_WIDTHS.items()}}
        row_shapes |= {name: self.image_shape(name) for name in self.cameras}
        checked = {}
        for key, value in arrays.items():
            is_image = key in self._attrs["cameras"]
            if value.shape != (length, *row_shapes[key]):
                raise StoreError(
                    f"{self.path}: episode {key} has shape {value.shape}, expected {(length, *row_shapes[key])}"
                )
            if is_image and value.dtype != np.uint8:
                raise StoreError(f"{self.path}: episode {key} images must be uint8, got {value.dtype}")
            if not is_image:
                if not np.issubdtype(value.dtype, np.floating):
                    raise StoreError(f"{self.path}: episode {key} must be floating point, got {value.dtype}")
                if not np.all(np.isfinite(value)):
                    raise StoreError(f"{self.path}: episode {key} has non-finite values")
            checked[key] = value if is_image else value.astype(np.float32)
        return checked


# --------------------------------------------------------------------------------------------------
# Helpers


class _WriterLock(FileLock):
    """An exclusive flock on ``<store>/writer.lock``: one writer per store."""

    @classmethod
    def acquire(cls, store: Path) -> _WriterLock:
        try:
            return super().acquire(store / LOCK_FILE)
        except Locked as error:
            raise StoreError(f"{store}: locked by another writer ({error.holder})") from None

    @staticmethod
    def holder(store: Path) -> str | None:
        """Who holds the store's lock (its recorded pid), or None if nobody does. Takes nothing."""
        return FileLock.holder(store / LOCK_FILE)


def open_derived(source: EpisodeStore, out: str | os.PathLike, run: Mapping[str, Any], what: str) -> EpisodeStore:
    """A store made from ``source``'s episodes (its cameras and domain), opened for writing under ``run``;
    one that exists resumes if it was made the same way, else a StoreError that ends with ``what``."""
    cameras = {name: source.image_shape(name)[:2] for name in source.cameras}
    try:
        return EpisodeStore.open_for_writing(out, cameras=cameras, domain_config=source.domain_config, run=run)
    except StoreError as error:
        raise StoreError(f"{error} ({what})") from None


@contextlib.contextmanager
def _store_errors(path: Path, key: str | None = None) -> Iterator[None]:
    """Turn any exception from zarr or the file system into a one-line StoreError naming the path."""
    try:
        yield
    except StoreError:
        raise
    except Exception as error:
        settle_zarr_io()
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            raise StoreError(f"{path}: no space left on device (committed episodes are intact)") from None
        if isinstance(error, OSError) and error.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
            raise StoreError(f"{path}: cannot write: {error.strerror}") from None
        if isinstance(error, KeyError) and key is not None:
            detail = f"missing {key}"
        else:
            where = f"{key}: " if key else ""
            detail = f"{where}{_one_line(error)}"
        # from None: the caller gets one line, not a traceback through zarr's internals.
        raise StoreError(f"{path}: damaged episode store ({detail})") from None


def settle_zarr_io(timeout: float = 30.0) -> None:
    """Wait (at most ``timeout``) for the tasks a failed zarr call left running to finish.

    zarr writes an array's chunks as concurrent tasks on its own IO loop; when one fails (a full disk),
    the call raises while its siblings still run. Left pending, they are destroyed at interpreter exit
    and asyncio logs "Task was destroyed but it is pending!" under our one-line error.
    """
    from zarr.core.sync import loop as zarr_loop  # zarr's IO loop, created on first use

    io_loop = zarr_loop[0]
    if io_loop is None or not io_loop.is_running():
        return

    async def settle() -> None:
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        if not others:
            return
        await asyncio.wait(others, timeout=timeout)  # not cancelled: another thread's read may own some

    with contextlib.suppress(Exception):  # settling is best effort; the error being reported matters more
        asyncio.run_coroutine_threadsafe(settle(), io_loop).result(timeout + 5)


def _one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"


def _check_creation_args(path: Path, cameras: Mapping[str, tuple[int, int]], action_dim: int) -> None:
    for name, size in cameras.items():
        if not name.isidentifier() or name in RESERVED_NAMES:
            raise StoreError(
                f"{path}: camera name {name!r} must be an identifier other than {sorted(RESERVED_NAMES)}"
            )
        if len(size) != 2 or not all(isinstance(n, (int, np.integer)) and n > 0 for n in size):
            raise StoreError(f"{path}: camera {name!r} size must be (height, width), got {size!r}")
    if not isinstance(action_dim, (int, np.integer)) or action_dim < 1:
        raise StoreError(f"{path}: action_dim must be a positive int, got {action_dim!r}")


def _json_roundtrip(path: Path, what: str, value: Mapping[str, Any]) -> dict[str, Any]:
    """The value as it will read back from the store's JSON attributes (tuples become lists)."""
    try:
        result = json.loads(json.dumps(dict(value)))
    except (TypeError, ValueError) as error:
        raise StoreError(f"{path}: {what} must be a JSON-able dict: {error}") from None
    return result


def _create_layout(path: Path, attributes: dict[str, Any]) -> None:
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


def _check_attributes(path: Path, attrs: dict[str, Any]) -> dict[str, Any]:
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


def _committed_ends(path: Path, ends: np.ndarray, record: Any) -> np.ndarray:
    """The committed episode ends: those the commit record counts (all of them in format 1-2), which
    must increase strictly from above 0 and end where the record says. Never guesses a crash tail."""
    ends = ends.astype(np.int64)
    if record is not None:
        try:
            episodes, steps = int(record["episodes"]), int(record["steps"])
        except (TypeError, KeyError, ValueError):
            raise StoreError(f"{path}: damaged episode store (malformed commit record {record!r})") from None
        if not 0 <= episodes <= len(ends):
            raise StoreError(
                f"{path}: damaged episode store (the commit record counts {episodes} episodes, "
                f"meta/episode_ends holds {len(ends)}); nothing was changed"
            )
        ends = ends[:episodes]
    previous = np.concatenate([[0], ends[:-1]])
    bad = np.flatnonzero(ends <= previous)
    if len(bad):
        i = int(bad[0])
        hint = "" if record is not None else " or a format 1-2 writer killed while committing"
        raise StoreError(
            f"{path}: damaged episode store (meta/episode_ends not strictly increasing at episode {i}: "
            f"{int(previous[i])} then {int(ends[i])}; a damaged chunk{hint}); nothing was changed"
        )
    if record is not None and (int(ends[-1]) if len(ends) else 0) != steps:
        raise StoreError(
            f"{path}: damaged episode store (meta/episode_ends ends at {int(ends[-1]) if len(ends) else 0} "
            f"but the commit record says {steps} steps); nothing was changed"
        )
    return ends


def _is_empty_dir(path: Path) -> bool:
    """True for a directory holding nothing, or only the lock of a writer that died creating it."""
    return path.is_dir() and all(child.name == LOCK_FILE for child in path.iterdir())


def _tree_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


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


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """A nested JSON mapping as {"a.b.c": leaf}; lists are leaves."""
    if not isinstance(value, Mapping):
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, item in value.items():
        flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return flat

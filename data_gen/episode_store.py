"""The episode store: the one on-disk format shared by data generation and training.

Demonstrations (GCS planner, teleop, expert) are appended here one episode at a time; training reads
them back through this module only, so it imports nothing heavier than numpy, zarr and pydantic.

This module opens, reads, appends to and annotates a store. Its layout and metadata row are
``data_gen.store_format``'s; how a writer killed mid-append leaves it intact, and how damage is
found, ``data_gen.store_damage``'s. The store's public names (``__all__``) are re-exported here:
import them from here.

One writer at a time: append mode holds an flock on ``writer.lock`` (which records the writer's pid),
and the kernel releases it when the writer dies, so a lock left by a killed writer is never stale.
Readers take no lock and see the episodes committed when they opened.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import zarr

from data_gen.dir_lock import FileLock, Locked
from data_gen.store_damage import check_chunks_exist, committed_ends, read_rows, settle_zarr_io, store_errors, verify_checksums
from data_gen.store_format import (
    ANNOTATION_ARRAYS, ANNOTATION_NAME, ANNOTATIONS_GROUP, COMMIT_ATTRIBUTE, COMPRESSORS, FORMAT_NAME, FORMAT_VERSION,
    IMAGE_CHUNK_FRAMES, LEGACY_MAY_SKIP, LOCK_FILE, LOW_DIM_CHUNK_STEPS, META_COLUMNS, RESERVED_NAMES, STATE_WIDTHS,
    WRITE_CONFIG, Annotation, EpisodeMeta, EpisodeRecorder, StoreError, check_attributes, check_creation_args,
    create_layout, flatten, json_roundtrip, meta_from_columns,
)  # fmt: skip

__all__ = [
    "ANNOTATION_ARRAYS", "FORMAT_NAME", "FORMAT_VERSION", "IMAGE_CHUNK_FRAMES", "META_COLUMNS", "RESERVED_NAMES",
    "STATE_WIDTHS", "Annotation", "EpisodeMeta", "EpisodeRecorder", "EpisodeStore", "StoreError", "meta_from_columns",
    "open_derived", "settle_zarr_io",
]  # fmt: skip


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
        check_creation_args(path, cameras, action_dim)
        attributes = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "cameras": {name: [int(h), int(w), 3] for name, (h, w) in cameras.items()},
            "action_dim": int(action_dim),
            "domain_config": json_roundtrip(path, "domain_config", domain_config),
            "run": json_roundtrip(path, "run", run),
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
            create_layout(path, attributes)
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
        with store_errors(path):
            self._group = zarr.open_group(path, mode="r" if mode == "r" else "r+", use_consolidated=False)
            attrs = dict(self._group.attrs)
            self._attrs = check_attributes(path, attrs)
        self._arrays = {key: self._open_array(f"data/{key}") for key in self.step_keys}
        self._meta = {name: self._open_array(f"meta/{name}") for name in META_COLUMNS}
        self._episode_ends_array = self._open_array("meta/episode_ends")
        self._check_arrays()
        ends = self._read("meta/episode_ends", self._episode_ends_array, 0, self._episode_ends_array.shape[0])
        self._ends = committed_ends(path, ends, self._attrs.get(COMMIT_ATTRIBUTE))
        self._check_lengths()
        self._check_chunks_exist()
        if mode == "a":
            self._verify_checksums()  # before anything is written: never append to a damaged store
            with store_errors(path):
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
        ours = json_roundtrip(self.path, "run", run)
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
        theirs = flatten(self._attrs["domain_config"])
        ours = flatten(json_roundtrip(self.path, "domain_config", domain_config))
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
        return tuple(sorted(p.name for p in root.iterdir() if p.is_dir() and ANNOTATION_NAME.fullmatch(p.name)))

    def annotation(self, name: str) -> Annotation:
        """The annotation set ``name``; StoreError if absent, damaged or not covering every committed step."""
        if name not in self.annotation_names:
            raise StoreError(f"{self.path}: no annotation set {name!r} (sets: {list(self.annotation_names) or 'none'})")
        key = f"{ANNOTATIONS_GROUP}/{name}"
        with store_errors(self.path, key):
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
        if not ANNOTATION_NAME.fullmatch(name or ""):
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
        attributes = {**json_roundtrip(self.path, "annotation attrs", attrs or {}), "n_steps": self.n_steps}
        root = self.path / ANNOTATIONS_GROUP
        final = root / name
        if final.exists() and not overwrite:
            raise StoreError(f"{self.path}: annotation set {name!r} exists; choose another name or overwrite it")
        temporary = root / f".partial-{name}"
        with store_errors(self.path, f"{ANNOTATIONS_GROUP}/{name}"):
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
        with store_errors(self.path):
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
        with store_errors(self.path, key):
            array = self._group[key]
        return array.with_config(WRITE_CONFIG) if self.mode == "a" else array

    def _committed_arrays(self) -> Iterator[tuple[str, zarr.Array, int]]:
        """(key, array, committed rows) of every array: steps for data/, episodes for meta/."""
        for name, array in self._arrays.items():
            yield f"data/{name}", array, self.n_steps
        for name, array in self._meta.items():
            yield f"meta/{name}", array, self.n_episodes
        yield "meta/episode_ends", self._episode_ends_array, self.n_episodes

    def _read(self, key: str, array: zarr.Array, start: int, stop: int) -> np.ndarray:
        """Rows start:stop of one array; a damaged chunk is a StoreError naming it and what it holds."""
        return read_rows(self.path, key, array, start, stop, getattr(self, "_ends", None))

    def _check_chunks_exist(self) -> None:
        legacy = COMMIT_ATTRIBUTE not in self._attrs  # format 1-2 stores skipped chunks holding only fill values
        check_chunks_exist(self.path, self._committed_arrays(), self._ends, skip=LEGACY_MAY_SKIP if legacy else ())

    def _verify_checksums(self) -> None:
        verify_checksums(self.path, self._committed_arrays(), self._ends)

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


def _is_empty_dir(path: Path) -> bool:
    """True for a directory holding nothing, or only the lock of a writer that died creating it."""
    return path.is_dir() and all(child.name == LOCK_FILE for child in path.iterdir())


def _tree_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())

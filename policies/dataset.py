"""Training windows over episode stores, each store tagged clean or corrupt.

A window is what one training sample needs: ``n_obs_steps`` observation frames and the
``horizon``-step action chunk that starts with the first of them. As in Diffusion Policy, windows
start up to ``n_obs_steps - 1`` steps before an episode and end up to ``n_action_steps - 1`` steps
after it, the missing steps repeating the episode's first or last step. Windows are numbered
clean first, then corrupt: the order ``policies.ambient.AdmissionSampler`` indexes.

Low-dimensional arrays are always held in memory; decoded images too (uint8) when they fit in the
cache budget, else frames are decoded on demand through a small cache of zarr chunks.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from data_gen.episode_store import IMAGE_CHUNK_FRAMES, EpisodeStore, StoreError
from policies.normalizer import MinMaxNormalizer

LOW_DIM_KEYS = ("action", "agent_pos", "slider_pose")
LAZY_CHUNK_CACHE_BYTES = 512 * 2**20
LOAD_BLOCK_FRAMES = 8 * IMAGE_CHUNK_FRAMES


class DataError(Exception):
    """Stores that cannot be trained on together, or no windows to train on; one line."""


@dataclass(frozen=True)
class StoreInfo:
    path: str
    kind: str  # clean | corrupt
    n_episodes: int
    n_steps: int


@dataclass(frozen=True)
class CorruptAnnotation:
    """One annotation set read for training: per corrupt window values and each store's attributes."""

    name: str
    sigma_min: np.ndarray  # (num_corrupt,)
    sigma_max: np.ndarray | None  # (num_corrupt,), or None when a store's set has no sigma_max
    attrs: dict[str, dict]  # store path -> the set's attributes (its producer's config, normaliser, ...)


class WindowDataset:
    """Windows over clean and corrupt episode stores; ``batch(indices)`` assembles a training batch.

    obs_mode "image": each window gives the cameras' frames and agent_pos; "state": agent_pos and
    slider_pose concatenated into a (5,) state. cameras: in image mode, the cameras to read (None:
    every camera the stores hold; each store must hold these, and may hold others); state mode reads
    none, so its stores may differ in cameras. cache_images: True, False, or None to cache decoded
    images when they fit in ``image_cache_bytes`` (default: half the available memory).
    """

    def __init__(
        self,
        clean: Sequence[str | Path],
        corrupt: Sequence[str | Path] = (),
        *,
        horizon: int = 16,
        n_obs_steps: int = 2,
        n_action_steps: int = 8,
        obs_mode: str = "image",
        cameras: Sequence[str] | None = None,
        cache_images: bool | None = None,
        image_cache_bytes: int | None = None,
    ):
        if not clean and not corrupt:
            raise DataError("no episode stores given")
        self.horizon, self.n_obs_steps, self.obs_mode = horizon, n_obs_steps, obs_mode
        stores = [(EpisodeStore.open(p), "clean") for p in clean] + [(EpisodeStore.open(p), "corrupt") for p in corrupt]
        self.cameras, self.action_dim = _common_layout(stores, cameras if obs_mode == "image" else ())
        self.stores = [StoreInfo(str(s.path), kind, s.n_episodes, s.n_steps) for s, kind in stores]
        self._store_offsets = np.cumsum([0] + [s.n_steps for s, _ in stores])

        arrays = {key: [s.array(key) for s, _ in stores] for key in LOW_DIM_KEYS}
        self.low_dim = {key: np.concatenate(parts) if parts else np.zeros((0,)) for key, parts in arrays.items()}
        self._build_windows(stores, pad_before=n_obs_steps - 1, pad_after=n_action_steps - 1)

        self.image_load_seconds = 0.0
        self.images: _ImageSource | None = None
        if obs_mode == "image" and self.cameras:
            needed = self.image_bytes
            budget = image_cache_bytes if image_cache_bytes is not None else _available_memory() // 2
            cache = cache_images if cache_images is not None else needed <= budget
            start = time.perf_counter()
            self.images = _CachedImages(stores, self.cameras) if cache else _LazyImages(stores, self.cameras)
            self.image_load_seconds = time.perf_counter() - start
        elif obs_mode == "image":
            raise DataError(f"{self.stores[0].path}: obs mode 'image' needs cameras; the stores record none")

    # ----------------------------------------------------------------------------------------------
    # Windows

    def _build_windows(self, stores: list[tuple[EpisodeStore, str]], pad_before: int, pad_after: int) -> None:
        starts, episode_first, episode_last, kinds = [], [], [], []
        self.episode_counts = {"clean": 0, "corrupt": 0}
        for (store, kind), offset in zip(stores, self._store_offsets, strict=False):
            ends = store.episode_ends
            for first, end in zip(np.concatenate([[0], ends[:-1]]), ends, strict=True):
                length = int(end - first)
                window_starts = np.arange(-pad_before, length - self.horizon + pad_after + 1)
                starts.append(offset + first + window_starts)
                episode_first.append(np.full(len(window_starts), offset + first))
                episode_last.append(np.full(len(window_starts), offset + end - 1))
                kinds.append(np.full(len(window_starts), kind == "clean"))
                self.episode_counts[kind] += 1
        concat = lambda parts: np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)  # noqa: E731
        self.window_start, self.window_first, self.window_last = concat(starts), concat(episode_first), concat(episode_last)
        is_clean = np.concatenate(kinds) if kinds else np.zeros(0, bool)
        # Clean windows first: stores are opened clean first, so this is already their order.
        assert not np.any(np.diff(is_clean.astype(int)) > 0)
        self.num_clean = int(is_clean.sum())
        self.num_corrupt = len(is_clean) - self.num_clean
        if len(is_clean) == 0:
            raise DataError(
                f"no training windows: every episode is shorter than horizon - n_action_steps + 1 "
                f"= {self.horizon - pad_after}"
            )

    def __len__(self) -> int:
        return len(self.window_start)

    def step_indices(self, indices: np.ndarray, length: int) -> np.ndarray:
        """(B, length) buffer indices of the windows' first ``length`` steps, clipped to their episode."""
        steps = self.window_start[indices, None] + np.arange(length)
        return np.clip(steps, self.window_first[indices, None], self.window_last[indices, None])

    def corrupt_annotation(self, name: str) -> CorruptAnnotation:
        """Annotation set ``name`` of every corrupt store, per corrupt window (the value at its first step).

        StoreError (one line) if a corrupt store lacks the set or the set no longer covers the store.
        """
        per_step = {"sigma_min": np.zeros(self.n_steps), "sigma_max": np.zeros(self.n_steps)}
        has_sigma_max, attrs = True, {}
        for info, offset in zip(self.stores, self._store_offsets[:-1], strict=True):
            if info.kind != "corrupt":
                continue
            annotation = EpisodeStore.open(info.path).annotation(name)
            per_step["sigma_min"][offset : offset + info.n_steps] = annotation.sigma_min
            if annotation.sigma_max is None:
                has_sigma_max = False
            else:
                per_step["sigma_max"][offset : offset + info.n_steps] = annotation.sigma_max
            attrs[info.path] = annotation.attrs
        first = self.step_indices(np.arange(self.num_clean, len(self)), 1)[:, 0]
        return CorruptAnnotation(
            name=name,
            sigma_min=per_step["sigma_min"][first],
            sigma_max=per_step["sigma_max"][first] if has_sigma_max else None,
            attrs=attrs,
        )

    # ----------------------------------------------------------------------------------------------
    # Batches

    def batch(
        self,
        indices: np.ndarray,
        crops: dict[str, tuple[int, int]] | None = None,
        rng: np.random.Generator | None = None,
    ) -> dict[str, np.ndarray]:
        """The windows ``indices`` as arrays: action (B, horizon, A), obs (B, n_obs_steps, ...).

        crops: {camera: (h, w)} of random crops (needs rng), or None for full frames. Images come
        out channels-first uint8 (B, n_obs_steps, 3, h, w).
        """
        indices = np.asarray(indices, dtype=np.int64)
        actions = self.low_dim["action"][self.step_indices(indices, self.horizon)]
        obs_steps = self.step_indices(indices, self.n_obs_steps)
        batch = {"action": actions}
        if self.obs_mode == "state":
            batch["state"] = np.concatenate([self.low_dim["agent_pos"][obs_steps], self.low_dim["slider_pose"][obs_steps]], axis=-1)
            return batch
        batch["agent_pos"] = self.low_dim["agent_pos"][obs_steps]
        for camera in self.cameras:
            frames = self.images.frames(camera, obs_steps)
            batch[camera] = random_crop(frames, crops[camera], rng) if crops is not None else channels_first(frames)
        return batch

    def fit_normalizer(self, action_on: str = "all") -> MinMaxNormalizer:
        """A normaliser fitted on every step of every store: action and agent_pos, or state.

        action_on "clean": the action's on the clean stores' steps alone (which come first), so that
        noisy corrupt labels do not stretch the action units (DataConfig.action_normalizer).
        """
        if action_on not in ("all", "clean"):
            raise ValueError(f"action_on must be 'all' or 'clean', not {action_on!r}")
        clean_steps = int(sum(s.n_steps for s in self.stores if s.kind == "clean"))
        data = {"action": self.low_dim["action"][:clean_steps] if action_on == "clean" else self.low_dim["action"]}
        if self.obs_mode == "state":
            data["state"] = np.concatenate([self.low_dim["agent_pos"], self.low_dim["slider_pose"]], axis=-1)
        else:
            data["agent_pos"] = self.low_dim["agent_pos"]
        return MinMaxNormalizer.fitted(data)

    # ----------------------------------------------------------------------------------------------
    # Summary

    @property
    def image_bytes(self) -> int:
        """Bytes of all decoded frames of all cameras."""
        return int(sum(self.n_steps * h * w * 3 for h, w in self.cameras.values()))

    @property
    def n_steps(self) -> int:
        return int(self._store_offsets[-1])

    def describe(self) -> str:
        parts = [f"{s.kind} {s.path}: {s.n_episodes} episodes, {s.n_steps} steps" for s in self.stores]
        images = "no images"
        if self.images is not None:
            mode = "cached in memory" if isinstance(self.images, _CachedImages) else "decoded on demand"
            images = f"images {self.image_bytes / 1e9:.2f} GB {mode} (loaded in {self.image_load_seconds:.1f} s)"
        return f"{'; '.join(parts)}; {self.num_clean} clean + {self.num_corrupt} corrupt windows; {images}"


# --------------------------------------------------------------------------------------------------
# Crops (images as (..., H, W, 3) uint8, the store's and the env's layout)


def crop_shape(image_hw: tuple[int, int], ratio: float) -> tuple[int, int]:
    """(h, w) of the crop of an (H, W) image: round(ratio * size), 96 -> 84 at ratio 0.875."""
    return tuple(max(1, round(ratio * n)) for n in image_hw)


def channels_first(images: np.ndarray) -> np.ndarray:
    """(..., H, W, 3) -> (..., 3, H, W), contiguous."""
    return np.ascontiguousarray(np.moveaxis(images, -1, -3))


def center_crop(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The centre (h, w) of (..., H, W, 3) images, channels first: (..., 3, h, w)."""
    height, width = images.shape[-3:-1]
    top, left = (height - size[0]) // 2, (width - size[1]) // 2
    return channels_first(images[..., top : top + size[0], left : left + size[1], :])


def random_crop(images: np.ndarray, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """One random (h, w) crop per sample of (B, ..., H, W, 3) images, shared by its frames: (B, ..., 3, h, w)."""
    height, width = images.shape[-3:-1]
    if size[0] > height or size[1] > width:
        raise ValueError(f"crop {size} larger than the images {(height, width)}")
    batch = images.shape[0]
    tops = rng.integers(0, height - size[0] + 1, size=batch)
    lefts = rng.integers(0, width - size[1] + 1, size=batch)
    out = np.empty((*images.shape[:-3], 3, *size), dtype=images.dtype)
    for i, (top, left) in enumerate(zip(tops, lefts, strict=True)):
        out[i] = np.moveaxis(images[i, ..., top : top + size[0], left : left + size[1], :], -1, -3)
    return out


# --------------------------------------------------------------------------------------------------
# Image sources


class _ImageSource(Protocol):
    """Where a batch's frames come from: the in-memory cache or the stores themselves."""

    def frames(self, camera: str, steps: np.ndarray) -> np.ndarray:
        """(*steps.shape, H, W, 3) uint8 frames at buffer indices ``steps``."""
        ...


class _CachedImages(_ImageSource):
    """Every decoded frame in memory, one (N, H, W, 3) uint8 array per camera."""

    def __init__(self, stores: list[tuple[EpisodeStore, str]], cameras: dict[str, tuple[int, int]]):
        total = sum(store.n_steps for store, _ in stores)
        self._frames = {name: np.empty((total, h, w, 3), np.uint8) for name, (h, w) in cameras.items()}
        offset = 0
        for store, _ in stores:
            for name, frames in self._frames.items():
                for start in range(0, store.n_steps, LOAD_BLOCK_FRAMES):
                    block = store.array(name, start, start + LOAD_BLOCK_FRAMES)
                    frames[offset + start : offset + start + len(block)] = block
            offset += store.n_steps

    def frames(self, camera: str, steps: np.ndarray) -> np.ndarray:
        return self._frames[camera][steps]


class _LazyImages(_ImageSource):
    """Frames decoded on demand, one zarr chunk at a time, through an LRU cache of decoded chunks."""

    def __init__(self, stores: list[tuple[EpisodeStore, str]], cameras: dict[str, tuple[int, int]]):
        self._stores = [store for store, _ in stores]
        self._offsets = np.cumsum([0] + [store.n_steps for store in self._stores])
        self._cameras = cameras
        self._chunks: OrderedDict[tuple[int, str, int], np.ndarray] = OrderedDict()
        h, w = next(iter(cameras.values()))
        self._capacity = max(4, LAZY_CHUNK_CACHE_BYTES // (IMAGE_CHUNK_FRAMES * h * w * 3))

    def _chunk(self, store_id: int, camera: str, chunk: int) -> np.ndarray:
        key = (store_id, camera, chunk)
        if key in self._chunks:
            self._chunks.move_to_end(key)
            return self._chunks[key]
        start = chunk * IMAGE_CHUNK_FRAMES
        frames = self._stores[store_id].array(camera, start, start + IMAGE_CHUNK_FRAMES)
        self._chunks[key] = frames
        if len(self._chunks) > self._capacity:
            self._chunks.popitem(last=False)
        return frames

    def frames(self, camera: str, steps: np.ndarray) -> np.ndarray:
        flat = steps.reshape(-1)
        h, w = self._cameras[camera]
        out = np.empty((len(flat), h, w, 3), np.uint8)
        store_ids = np.searchsorted(self._offsets, flat, side="right") - 1
        for i, (store_id, step) in enumerate(zip(store_ids, flat, strict=True)):
            local = int(step - self._offsets[store_id])
            out[i] = self._chunk(int(store_id), camera, local // IMAGE_CHUNK_FRAMES)[local % IMAGE_CHUNK_FRAMES]
        return out.reshape(*steps.shape, h, w, 3)


# --------------------------------------------------------------------------------------------------
# Checks


def _common_layout(stores: list[tuple[EpisodeStore, str]], wanted: Sequence[str] | None) -> tuple[dict[str, tuple[int, int]], int]:
    """The cameras {name: (H, W)} read and the action_dim all stores share, or DataError naming the odd one.

    wanted: the cameras to read (None: all the first store holds, which every store must hold alike).
    """
    first = stores[0][0]
    for store, _ in stores:
        missing = [name for name in wanted or () if name not in store.cameras]
        if missing:
            raise DataError(f"{store.path}: no camera {', '.join(map(repr, missing))} (it holds {_describe(_shapes(store, store.cameras))})")
    names = first.cameras if wanted is None else tuple(wanted)
    cameras = _shapes(first, names)
    for store, _ in stores[1:]:
        theirs = _shapes(store, store.cameras if wanted is None else names)
        if theirs != cameras:
            raise DataError(f"{store.path}: cameras {_describe(theirs)} differ from {first.path}'s {_describe(cameras)}")
        if store.action_dim != first.action_dim:
            raise DataError(f"{store.path}: action_dim {store.action_dim} differs from {first.path}'s {first.action_dim}")
    for store, _ in stores:
        if store.n_episodes == 0:
            raise DataError(f"{store.path}: episode store has no episodes")
    return cameras, first.action_dim


def _shapes(store: EpisodeStore, names: Sequence[str]) -> dict[str, tuple[int, int]]:
    return {name: store.image_shape(name)[:2] for name in names}


def _describe(cameras: dict[str, tuple[int, int]]) -> str:
    return "[" + ", ".join(f"{name} {h}x{w}" for name, (h, w) in cameras.items()) + "]"


def _available_memory() -> int:
    """MemAvailable from /proc/meminfo in bytes (4 GB if unknown)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 * 2**30


__all__ = ["DataError", "StoreError", "WindowDataset", "center_crop", "crop_shape", "random_crop"]

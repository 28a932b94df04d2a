"""The commit protocol under a writer killed between any two file writes of an append.

Every zarr file write goes through ``LocalStore.set``; the kill is simulated there, at write N for
every N of one append, so the test knows nothing of the order ``append_episode`` and ``_commit``
write in. Whatever N, the store must reopen with exactly the episodes committed before, and the next
writer must append as if nothing had happened.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from zarr.storage import LocalStore

from data_gen.episode_store import EpisodeMeta, EpisodeStore, StoreError

CAMERAS = {"overhead": (8, 8)}


class InjectedKill(Exception):
    """The writer's process dying at this write: this write and every later one never reach the disk."""


def make_episode(steps: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "action": rng.normal(size=(steps, 2)),
        "agent_pos": rng.normal(size=(steps, 2)),
        "slider_pose": rng.normal(size=(steps, 3)),
        "overhead": rng.integers(0, 256, size=(steps, 8, 8, 3), dtype=np.uint8),
    }


def make_meta(seed: int) -> EpisodeMeta:
    return EpisodeMeta(source="gcs", domain="sim", seed=seed, initial_pose=(0.1 * seed, 0.0, 0.0), success=bool(seed % 2),
                       planning_time=0.5 + seed, plan_cost=2.0 * seed, extra={"n": seed})  # finite: NaN != NaN


def assert_store_holds(path: Path, episodes: list[tuple[dict[str, np.ndarray], EpisodeMeta]]) -> None:
    """The store at ``path`` commits exactly ``episodes``, step for step and row for row."""
    store = EpisodeStore.open(path)
    np.testing.assert_array_equal(store.episode_ends, np.cumsum([len(episode["action"]) for episode, _ in episodes]))
    for key in store.step_keys:
        expected = np.concatenate([episode[key] for episode, _ in episodes])
        expected = expected if expected.dtype == np.uint8 else expected.astype(np.float32)
        np.testing.assert_array_equal(store.array(key), expected, err_msg=key)
    assert store.episode_metas() == [meta for _, meta in episodes]


class KillAtWrite:
    """Patches LocalStore's writes: counts them, and from write ``kill_at`` on (0-based) raises instead.

    The write being killed leaves a half-written ``.partial`` file, as zarr's atomic write would.
    """

    def __init__(self, kill_at: int | None):
        self.kill_at, self.keys = kill_at, []
        self._set, self._set_if_not_exists = LocalStore.set, LocalStore.set_if_not_exists

    def _write(self, real):
        async def write(store: LocalStore, key: str, value, *args, **kwargs):
            number = len(self.keys)
            self.keys.append(key)
            if self.kill_at is not None and number >= self.kill_at:
                if number == self.kill_at:
                    partial = (store.root / key).with_suffix(".killed.partial")
                    partial.parent.mkdir(parents=True, exist_ok=True)
                    partial.write_bytes(bytes(value.to_bytes())[: len(value) // 2])
                raise InjectedKill(f"killed at write {number} ({key})")
            return await real(store, key, value, *args, **kwargs)

        return write

    def install(self, patch: pytest.MonkeyPatch) -> None:
        patch.setattr(LocalStore, "set", self._write(self._set))
        patch.setattr(LocalStore, "set_if_not_exists", self._write(self._set_if_not_exists))


BEFORE = [(make_episode(5, seed=0), make_meta(0)), (make_episode(3, seed=1), make_meta(1))]
CRASHED = (make_episode(6, seed=2), make_meta(2))
LATER = [(make_episode(2, seed=3), make_meta(3))]  # shorter than CRASHED: its leftover rows must not show


@pytest.fixture(scope="module")
def base_store(tmp_path_factory) -> Path:
    """A store holding the two committed episodes of BEFORE, copied afresh for each kill."""
    path = tmp_path_factory.mktemp("base") / "demos.zarr"
    with EpisodeStore.create(path, cameras=CAMERAS, domain_config={}, run={"seed": 0}) as store:
        for episode, meta in BEFORE:
            store.append_episode(episode, meta)
    return path


@pytest.fixture(scope="module")
def writes_of_one_append(base_store, tmp_path_factory) -> list[str]:
    """The keys one append writes, in order, counted on an append that is not killed."""
    path = tmp_path_factory.mktemp("counted") / "demos.zarr"
    shutil.copytree(base_store, path)
    counter = KillAtWrite(kill_at=None)
    with pytest.MonkeyPatch.context() as patch, EpisodeStore.open(path, "a") as store:
        counter.install(patch)
        store.append_episode(*CRASHED)
    assert_store_holds(path, [*BEFORE, CRASHED])
    return counter.keys


def test_the_counted_append_writes_every_array_and_the_commit_record(writes_of_one_append):
    """The kill points below cover the whole append: each array's metadata (its new shape) and new
    rows, and the root zarr.json that holds the commit record, written once."""
    arrays = [f"data/{key}" for key in ("action", "agent_pos", "slider_pose", "overhead")]
    arrays += [f"meta/{name}" for name in ("episode_ends", "source", "domain", "seed", "initial_pose",
                                           "planning_time", "plan_cost", "success", "extra")]
    for array in arrays:
        assert f"{array}/zarr.json" in writes_of_one_append, array
        assert any(key.startswith(f"{array}/c/") for key in writes_of_one_append), array
    assert writes_of_one_append.count("zarr.json") == 1


def test_a_writer_killed_at_any_write_of_an_append_leaves_the_committed_episodes(base_store, writes_of_one_append, tmp_path):
    for kill_at in range(len(writes_of_one_append)):
        path = tmp_path / f"killed-at-{kill_at}.zarr"
        shutil.copytree(base_store, path)
        killer = KillAtWrite(kill_at)
        store = EpisodeStore.open(path, "a")
        with pytest.MonkeyPatch.context() as patch:
            killer.install(patch)
            with pytest.raises(StoreError, match="InjectedKill"):
                store.append_episode(*CRASHED)
        store.close()  # the dead writer's lock goes with it
        assert killer.keys[kill_at] == writes_of_one_append[kill_at], "the append wrote in another order"

        where = f"killed at write {kill_at} ({writes_of_one_append[kill_at]})"
        try:
            assert_store_holds(path, BEFORE)  # a reader, before any writer has tidied up
        except (AssertionError, StoreError) as error:
            raise AssertionError(f"{where}: the reopened store does not hold the 2 committed episodes: {error}") from None
        with EpisodeStore.open(path, "a") as writer:  # the next writer drops the dead one's leftovers
            assert writer.n_episodes == len(BEFORE), where
            for episode, meta in LATER:
                writer.append_episode(episode, meta)
        assert not list(path.rglob("*.partial")), where
        assert_store_holds(path, [*BEFORE, *LATER])

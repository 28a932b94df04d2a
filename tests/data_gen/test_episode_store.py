"""Tests for the episode store: round trip, crash safety, validation, locking, compression."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import zarr

from data_gen.episode_store import EpisodeMeta, EpisodeStore, StoreError

CAMERAS = {"overhead": (24, 32), "wrist": (16, 16)}
RUN = {"seed": 0, "domain": "sim", "replay": "kinematic"}
REPO_ROOT = Path(__file__).resolve().parents[2]


def make_episode(steps: int, seed: int, cameras=CAMERAS) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    episode = {
        "action": rng.normal(size=(steps, 2)),
        "agent_pos": rng.normal(size=(steps, 2)),
        "slider_pose": rng.normal(size=(steps, 3)),
    }
    for name, (h, w) in cameras.items():
        episode[name] = rng.integers(0, 256, size=(steps, h, w, 3), dtype=np.uint8)
    return episode


def make_meta(seed: int, **overrides) -> EpisodeMeta:
    fields = dict(source="gcs", domain="sim", seed=seed, initial_pose=(0.5, -0.1, 0.3 * seed), success=True)
    return EpisodeMeta(**(fields | overrides))


def new_store(path: Path, **kwargs) -> EpisodeStore:
    return EpisodeStore.create(path, cameras=CAMERAS, domain_config={"friction": 0.3}, run=RUN, **kwargs)


def raw_lengths(path: Path) -> dict[str, int]:
    """Rows stored in each array, committed or not, read with zarr directly."""
    group = zarr.open_group(path, mode="r", use_consolidated=False)
    keys = ["data/action", "data/overhead", "meta/seed", "meta/episode_ends"]
    return {key: group[key].shape[0] for key in keys}


def assert_episode_equal(stored: dict[str, np.ndarray], written: dict[str, np.ndarray]) -> None:
    for key, value in written.items():
        expected = value if value.dtype == np.uint8 else value.astype(np.float32)
        assert stored[key].dtype == expected.dtype, key
        np.testing.assert_array_equal(stored[key], expected, err_msg=key)


def assert_one_line_error(error: pytest.ExceptionInfo, path: Path) -> None:
    message = str(error.value)
    assert "\n" not in message
    assert str(path) in message


# --------------------------------------------------------------------------------------------------
# Round trip


def test_round_trip_of_several_episodes(tmp_path):
    path = tmp_path / "demos.zarr"
    lengths = [5, 1, 9, 4]
    episodes = [make_episode(n, seed=i) for i, n in enumerate(lengths)]
    metas = [
        make_meta(0),
        make_meta(1, source="teleop", domain="réel", success=False, extra={"operator": "ana", "retries": [1, 2]}),
        make_meta(2, planning_time=1.25, plan_cost=3.5),
        make_meta(3, source="expert"),
    ]
    with new_store(path) as store:
        indices = [store.append_episode(ep, meta) for ep, meta in zip(episodes, metas)]
    assert indices == [0, 1, 2, 3]

    store = EpisodeStore.open(path)
    assert store.n_episodes == 4 and store.n_steps == sum(lengths)
    np.testing.assert_array_equal(store.episode_ends, np.cumsum(lengths))
    assert store.episode_ends.dtype == np.int64
    for i, (episode, meta) in enumerate(zip(episodes, metas)):
        assert_episode_equal(store.episode(i), episode)
        assert store.episode_meta(i).model_dump_json() == meta.model_dump_json()
    assert [m.model_dump_json() for m in store.episode_metas()] == [m.model_dump_json() for m in metas]
    assert_episode_equal(store.episode(-1), episodes[-1])
    np.testing.assert_array_equal(
        store.array("slider_pose"), np.concatenate([ep["slider_pose"] for ep in episodes]).astype(np.float32)
    )
    np.testing.assert_array_equal(store.array("wrist", 5, 6), episodes[1]["wrist"])
    assert list(store.meta_column("source")) == ["gcs", "teleop", "gcs", "expert"]
    assert list(store.meta_column("domain")) == ["sim", "réel", "sim", "sim"]
    np.testing.assert_array_equal(store.meta_column("seed"), [0, 1, 2, 3])
    np.testing.assert_array_equal(store.meta_column("success"), [True, False, True, True])
    np.testing.assert_array_equal(store.meta_column("initial_pose")[:, 2], [0.3 * i for i in range(4)])
    assert np.isnan(store.meta_column("planning_time")[[0, 1, 3]]).all()
    assert store.meta_column("plan_cost")[2] == 3.5
    assert store.cameras == ("overhead", "wrist")
    assert store.image_shape("overhead") == (24, 32, 3)
    assert store.run == RUN and store.domain_config == {"friction": 0.3}
    assert "4 episodes" in repr(store) and "19 steps" in repr(store)
    with pytest.raises(IndexError):
        store.episode(4)


def test_reader_opened_before_an_append_does_not_see_it(tmp_path):
    path = tmp_path / "demos.zarr"
    writer = new_store(path)
    writer.append_episode(make_episode(3, seed=0), make_meta(0))
    reader = EpisodeStore.open(path)
    writer.append_episode(make_episode(4, seed=1), make_meta(1))
    assert reader.n_episodes == 1 and reader.array("action").shape == (3, 2)
    assert EpisodeStore.open(path).n_episodes == 2


# --------------------------------------------------------------------------------------------------
# Crash safety


class SimulatedKill(BaseException):
    """Stands in for the process dying; a BaseException so nothing converts it."""


def crash_before_commit(monkeypatch, store: EpisodeStore, episode, meta) -> None:
    def die(self, end):
        raise SimulatedKill

    with monkeypatch.context() as patch:
        patch.setattr(EpisodeStore, "_commit", die)
        with pytest.raises(SimulatedKill):
            store.append_episode(episode, meta)


def test_crash_before_commit_hides_the_partial_episode_and_resume_truncates_it(tmp_path, monkeypatch):
    path = tmp_path / "demos.zarr"
    first, second, lost, third = (make_episode(n, seed=i) for i, n in enumerate([4, 6, 5, 7]))
    store = new_store(path)
    store.append_episode(first, make_meta(0))
    store.append_episode(second, make_meta(1))
    crash_before_commit(monkeypatch, store, lost, make_meta(2))
    store.close()
    # The partial episode really is on disk, past the committed steps and rows.
    assert raw_lengths(path) == {
        "data/action": 15, "data/overhead": 15, "meta/seed": 3, "meta/episode_ends": 2
    }

    reader = EpisodeStore.open(path)
    assert reader.n_episodes == 2 and reader.n_steps == 10
    assert reader.array("action").shape == (10, 2) and len(reader.meta_column("seed")) == 2

    with EpisodeStore.open(path, mode="a") as writer:
        assert raw_lengths(path) == {
            "data/action": 10, "data/overhead": 10, "meta/seed": 2, "meta/episode_ends": 2
        }
        assert writer.append_episode(third, make_meta(3)) == 2

    store = EpisodeStore.open(path)
    np.testing.assert_array_equal(store.episode_ends, [4, 10, 17])
    for i, episode in enumerate([first, second, third]):
        assert_episode_equal(store.episode(i), episode)
    np.testing.assert_array_equal(store.meta_column("seed"), [0, 1, 3])


@pytest.mark.parametrize("written_end", [False, True], ids=["ends-grown", "end-written"])
def test_a_crash_inside_the_commit_is_uncommitted_until_the_record_counts_it(tmp_path, written_end):
    path = tmp_path / "demos.zarr"
    with new_store(path) as store:
        store.append_episode(make_episode(4, seed=0), make_meta(0))
    # Killed after growing episode_ends (and perhaps writing the new end) but before the commit record.
    group = zarr.open_group(path, mode="r+", use_consolidated=False)
    group["meta/episode_ends"].resize((2,))
    if written_end:
        group["meta/episode_ends"][1] = 7
    for key in ("action", "agent_pos", "slider_pose", "overhead", "wrist"):
        array = group[f"data/{key}"]
        array.resize((7, *array.shape[1:]))

    assert EpisodeStore.open(path).n_episodes == 1
    with EpisodeStore.open(path, mode="a") as writer:
        assert raw_lengths(path)["meta/episode_ends"] == 1 and raw_lengths(path)["data/action"] == 4
        writer.append_episode(make_episode(2, seed=1), make_meta(1))
    np.testing.assert_array_equal(EpisodeStore.open(path).episode_ends, [4, 6])


def test_writer_killed_mid_append_leaves_a_store_the_next_writer_can_resume(tmp_path):
    path = tmp_path / "demos.zarr"
    with new_store(path) as store:
        store.append_episode(make_episode(4, seed=0), make_meta(0))
    child = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO_ROOT)!r})
        import numpy as np
        from data_gen.episode_store import EpisodeMeta, EpisodeStore
        def hang(self, end):
            print("ready", flush=True)
            time.sleep(60)
        EpisodeStore._commit = hang
        store = EpisodeStore.open({str(path)!r}, mode="a")
        episode = {{"action": np.zeros((5, 2)), "agent_pos": np.zeros((5, 2)), "slider_pose": np.zeros((5, 3)),
                   "overhead": np.zeros((5, 24, 32, 3), np.uint8), "wrist": np.zeros((5, 16, 16, 3), np.uint8)}}
        store.append_episode(episode, EpisodeMeta(source="gcs", domain="sim", seed=9, initial_pose=(0, 0, 0),
                                                  success=True))
    """)
    process = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "ready"
        with pytest.raises(StoreError, match=f"pid {process.pid}"):
            EpisodeStore.open(path, mode="a")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert raw_lengths(path)["data/action"] == 9  # the killed writer's steps are on disk

    with EpisodeStore.open(path, mode="a") as writer:  # its lock file is left behind, but not held
        assert writer.n_episodes == 1 and raw_lengths(path)["data/action"] == 4
        writer.append_episode(make_episode(3, seed=1), make_meta(1))
    np.testing.assert_array_equal(EpisodeStore.open(path).episode_ends, [4, 7])


# --------------------------------------------------------------------------------------------------
# Validation on append


def bad_episodes():
    episode = make_episode(5, seed=0)
    yield "missing camera", {k: v for k, v in episode.items() if k != "wrist"}
    yield "unknown camera", episode | {"side": episode["wrist"]}
    yield "float image", episode | {"overhead": episode["overhead"].astype(np.float32)}
    yield "image size", episode | {"overhead": np.zeros((5, 32, 24, 3), np.uint8)}
    yield "grey image", episode | {"wrist": np.zeros((5, 16, 16), np.uint8)}
    yield "integer action", episode | {"action": np.zeros((5, 2), np.int64)}
    yield "action width", episode | {"action": np.zeros((5, 3))}
    yield "short slider_pose", episode | {"slider_pose": np.zeros((4, 3))}
    yield "nan agent_pos", episode | {"agent_pos": np.full((5, 2), np.nan)}
    yield "empty", make_episode(0, seed=0)


@pytest.mark.parametrize("case, episode", list(bad_episodes()), ids=[c for c, _ in bad_episodes()])
def test_append_rejects_a_malformed_episode_without_writing(tmp_path, case, episode):
    path = tmp_path / "demos.zarr"
    store = new_store(path)
    store.append_episode(make_episode(3, seed=1), make_meta(1))
    with pytest.raises(StoreError) as error:
        store.append_episode(episode, make_meta(0))
    assert_one_line_error(error, path)
    assert store.n_episodes == 1
    assert raw_lengths(path) == {
        "data/action": 3, "data/overhead": 3, "meta/seed": 1, "meta/episode_ends": 1
    }


def test_read_only_store_refuses_writes(tmp_path):
    path = tmp_path / "demos.zarr"
    new_store(path).close()
    store = EpisodeStore.open(path)
    with pytest.raises(StoreError, match="read-only"):
        store.append_episode(make_episode(2, seed=0), make_meta(0))
    with pytest.raises(StoreError, match="read-only"):
        store.write_annotation("classifier", np.zeros(0, np.float32))


# --------------------------------------------------------------------------------------------------
# Opening damaged or foreign paths


def damage_delete_episode_ends(path: Path) -> None:
    shutil.rmtree(path / "meta" / "episode_ends")


def damage_garbage_root(path: Path) -> None:
    (path / "zarr.json").write_text("garbage{")


def damage_garbage_array_metadata(path: Path) -> None:
    (path / "data" / "overhead" / "zarr.json").write_text("garbage{")


def damage_future_version(path: Path) -> None:
    metadata = json.loads((path / "zarr.json").read_text())
    metadata["attributes"]["format_version"] = 99
    (path / "zarr.json").write_text(json.dumps(metadata))


def damage_short_data(path: Path) -> None:
    zarr.open_group(path, mode="r+", use_consolidated=False)["data/agent_pos"].resize((2, 2))


def damage_wrong_dtype(path: Path) -> None:
    group = zarr.open_group(path, mode="r+", use_consolidated=False)
    del group["data/action"]
    group.create_array("data/action", shape=(4, 2), dtype=np.float64, chunks=(8, 2))


def damage_unordered_ends(path: Path) -> None:
    zarr.open_group(path, mode="r+", use_consolidated=False)["meta/episode_ends"][:] = [4, 2, 6]


DAMAGES = [
    damage_delete_episode_ends,
    damage_garbage_root,
    damage_garbage_array_metadata,
    damage_future_version,
    damage_short_data,
    damage_wrong_dtype,
    damage_unordered_ends,
]


@pytest.mark.parametrize("damage", DAMAGES, ids=[d.__name__ for d in DAMAGES])
@pytest.mark.parametrize("mode", ["r", "a"])
def test_damaged_store_gives_a_one_line_store_error(tmp_path, damage, mode):
    path = tmp_path / "demos.zarr"
    with new_store(path) as store:
        for i, steps in enumerate([2, 2, 2]):
            store.append_episode(make_episode(steps, seed=i), make_meta(i))
    damage(path)
    with pytest.raises(StoreError) as error:
        EpisodeStore.open(path, mode=mode)
    assert_one_line_error(error, path)
    if mode == "a":  # a refused writer must not keep the lock
        assert not (path / "writer.lock").exists()


def files_of(path: Path) -> dict[str, bytes]:
    return {str(f.relative_to(path)): f.read_bytes() for f in sorted(path.rglob("*")) if f.is_file()}


def three_episode_store(path: Path) -> None:
    with new_store(path) as store:
        for i, steps in enumerate([2, 3, 4]):
            store.append_episode(make_episode(steps, seed=i), make_meta(i))


def make_legacy(path: Path) -> None:
    """Turn a store into format 2 as that code wrote it: no commit record."""
    metadata = json.loads((path / "zarr.json").read_text())
    metadata["attributes"]["format_version"] = 2
    del metadata["attributes"]["committed"]
    (path / "zarr.json").write_text(json.dumps(metadata))


def flip_a_byte(file: Path) -> None:
    data = bytearray(file.read_bytes())
    data[len(data) // 2] ^= 0x40
    file.write_bytes(bytes(data))


def last_end_zero(path: Path) -> None:
    zarr.open_group(path, mode="r+", use_consolidated=False)["meta/episode_ends"][2] = 0


def last_end_not_above(path: Path) -> None:
    zarr.open_group(path, mode="r+", use_consolidated=False)["meta/episode_ends"][2] = 5


def ends_chunk_missing(path: Path) -> None:
    (path / "meta" / "episode_ends" / "c" / "0").unlink()


SHORTENING_DAMAGES = {  # each was once read as a crash tail and cut off by the next writer
    "last end 0": last_end_zero,
    "last end not above the one before": last_end_not_above,
    "ends chunk missing": ends_chunk_missing,
    "legacy, last end 0": lambda p: (make_legacy(p), last_end_zero(p)),
    "legacy, last end not above": lambda p: (make_legacy(p), last_end_not_above(p)),
    "legacy, ends chunk missing": lambda p: (make_legacy(p), ends_chunk_missing(p)),
}


@pytest.mark.parametrize("damage", SHORTENING_DAMAGES.values(), ids=SHORTENING_DAMAGES.keys())
@pytest.mark.parametrize("mode", ["r", "a"])
def test_damaged_episode_ends_are_an_error_that_changes_nothing(tmp_path, damage, mode):
    path = tmp_path / "demos.zarr"
    three_episode_store(path)
    damage(path)
    before = files_of(path)
    with pytest.raises(StoreError, match="damaged episode store") as error:
        EpisodeStore.open(path, mode=mode)
    assert_one_line_error(error, path)
    assert files_of(path) == before


@pytest.mark.parametrize("array", ["data/action", "data/overhead", "meta/seed", "meta/extra"])
@pytest.mark.parametrize("mode", ["r", "a"])
def test_a_missing_chunk_is_an_error_naming_the_array_and_its_episodes(tmp_path, array, mode):
    path = tmp_path / "demos.zarr"
    three_episode_store(path)
    chunk = path / array / "c" / "0"
    shutil.rmtree(chunk) if chunk.is_dir() else chunk.unlink()
    before = files_of(path)
    with pytest.raises(StoreError, match=f"chunk file {array}/c/0.* is missing") as error:
        EpisodeStore.open(path, mode=mode)
    assert_one_line_error(error, path)
    assert ("steps 0-8, episodes 0-2" if array.startswith("data/") else "episodes 0-2") in str(error.value)
    assert files_of(path) == before


@pytest.mark.parametrize("array", ["data/action", "data/wrist", "meta/initial_pose"])
def test_a_flipped_byte_fails_the_chunk_checksum(tmp_path, array):
    path = tmp_path / "demos.zarr"
    three_episode_store(path)
    chunk = next(f for f in (path / array / "c").rglob("*") if f.is_file())
    flip_a_byte(chunk)
    before = files_of(path)
    with pytest.raises(StoreError, match="fails its checksum") as error:  # a writer checks first
        EpisodeStore.open(path, mode="a")
    assert_one_line_error(error, path)
    store = EpisodeStore.open(path)  # a reader finds it when it reads the chunk
    read = {
        "data/action": lambda: store.array("action"),
        "data/wrist": lambda: store.episode(1),
        "meta/initial_pose": lambda: store.episode_meta(0),
    }[array]
    with pytest.raises(StoreError, match=f"damaged chunk 0 of {array}.*checksum") as error:
        read()
    assert_one_line_error(error, path)
    assert files_of(path) == before


def test_a_chunk_that_decodes_to_non_finite_values_is_damage(tmp_path):
    """Format 1-2 arrays have no checksum: damaged zstd bytes can decode to NaN, which no append writes."""
    path = tmp_path / "demos.zarr"
    three_episode_store(path)
    zarr.open_group(path, mode="r+", use_consolidated=False)["data/slider_pose"][4, 1] = np.nan
    store = EpisodeStore.open(path)
    with pytest.raises(StoreError, match=r"damaged chunk 0 of data/slider_pose \(steps 0-8, episodes 0-2\): non-finite"):
        store.array("slider_pose")
    with pytest.raises(StoreError, match="non-finite"):
        store.episode(1)
    np.testing.assert_array_equal(store.episode(0)["action"].shape, (2, 2))  # episode 0 has no NaN


def test_only_a_genuinely_uncommitted_tail_is_trimmed(tmp_path):
    path = tmp_path / "demos.zarr"
    three_episode_store(path)
    make_legacy(path)  # a format 2 store whose writer died after writing steps, before committing
    group = zarr.open_group(path, mode="r+", use_consolidated=False)
    for key in ("action", "agent_pos", "slider_pose", "overhead", "wrist"):
        group[f"data/{key}"].resize((12, *group[f"data/{key}"].shape[1:]))
    with EpisodeStore.open(path, mode="a") as store:
        assert store.n_steps == 9 and raw_lengths(path)["data/action"] == 9
    metadata = json.loads((path / "zarr.json").read_text())["attributes"]
    assert metadata["format_version"] == 3 and metadata["committed"] == {"episodes": 3, "steps": 9}


def test_a_legacy_store_with_skipped_fill_chunks_opens_and_is_upgraded_on_append(tmp_path):
    path = tmp_path / "demos.zarr"
    with new_store(path) as store:
        store.append_episode(make_episode(2, seed=0), make_meta(0, success=False))
    make_legacy(path)
    for key in ("seed", "success"):  # all fill values: format 2 never wrote these chunks
        (path / "meta" / key / "c" / "0").unlink()
    reader = EpisodeStore.open(path)
    assert reader.meta_column("seed").tolist() == [0] and reader.meta_column("success").tolist() == [False]
    with EpisodeStore.open(path, mode="a") as store:
        store.append_episode(make_episode(3, seed=1), make_meta(1))
    assert (path / "meta" / "success" / "c" / "0").is_file()
    store = EpisodeStore.open(path)
    assert store.meta_column("success").tolist() == [False, True] and store.episode_ends.tolist() == [2, 5]


def test_chunks_holding_only_fill_values_are_written(tmp_path):
    path = tmp_path / "demos.zarr"
    with new_store(path) as store:
        episode = {k: np.zeros_like(v) for k, v in make_episode(2, seed=0).items()}
        store.append_episode(episode, make_meta(0, success=False))
    shutil.rmtree(path / "data" / "overhead" / "c")
    with pytest.raises(StoreError, match="data/overhead/c/0/0/0/0 is missing"):
        EpisodeStore.open(path)


def test_a_full_disk_is_reported_as_such_and_loses_no_committed_episode(tmp_path, monkeypatch):
    import errno

    path = tmp_path / "demos.zarr"
    three_episode_store(path)
    store = EpisodeStore.open(path, mode="a")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(EpisodeStore, "_write_meta_row", full)
        with pytest.raises(StoreError, match="no space left on device") as error:
            store.append_episode(make_episode(5, seed=9), make_meta(9))
    assert_one_line_error(error, path)
    store.close()
    assert EpisodeStore.open(path).episode_ends.tolist() == [2, 5, 9]


def test_a_store_being_created_reads_as_locked(tmp_path):
    from data_gen.episode_store import _WriterLock

    path = tmp_path / "demos.zarr"
    path.mkdir()
    lock = _WriterLock.acquire(path)  # the winner of a creation race, before it writes zarr.json
    try:
        for mode in ("r", "a"):
            with pytest.raises(StoreError, match="locked by another writer"):
                EpisodeStore.open(path, mode=mode)
        with pytest.raises(StoreError, match="locked by another writer"):
            EpisodeStore.open_for_writing(path, cameras=CAMERAS, domain_config={}, run=RUN)
    finally:
        lock.release()
    path.mkdir(exist_ok=True)
    (path / "writer.lock").write_text("pid 999999 on elsewhere")  # its creator died: a new writer creates
    EpisodeStore.open_for_writing(path, cameras=CAMERAS, domain_config={}, run=RUN).close()
    assert EpisodeStore.open(path).n_episodes == 0


def test_missing_path_and_non_stores_give_store_errors(tmp_path):
    plain_dir = tmp_path / "plain"
    plain_dir.mkdir()
    (plain_dir / "notes.txt").write_text("hello")
    plain_file = tmp_path / "file.zarr"
    plain_file.write_text("hello")
    foreign = tmp_path / "foreign.zarr"
    zarr.open_group(foreign, mode="w").create_array("x", shape=(3,), dtype=np.int8)
    for path, reason in [
        (tmp_path / "missing.zarr", "no such"),
        (plain_dir, "not a zarr store"),
        (plain_file, "not a zarr store"),
        (foreign, "not an episode store"),
    ]:
        with pytest.raises(StoreError, match=reason) as error:
            EpisodeStore.open(path)
        assert_one_line_error(error, path)


def test_create_refuses_existing_paths_unless_overwriting_a_store(tmp_path):
    path = tmp_path / "demos.zarr"
    with new_store(path) as store:
        store.append_episode(make_episode(3, seed=0), make_meta(0))
    with pytest.raises(StoreError, match="already exists"):
        new_store(path)
    with new_store(path, overwrite=True) as store:
        assert store.n_episodes == 0
    assert EpisodeStore.open(path).n_episodes == 0

    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("do not delete")
    with pytest.raises(StoreError, match="not a zarr store"):
        new_store(precious, overwrite=True)
    assert (precious / "thesis.tex").exists()


# --------------------------------------------------------------------------------------------------
# Locking and run identity


def test_lock_admits_one_writer_at_a_time(tmp_path):
    path = tmp_path / "demos.zarr"
    writer = new_store(path)
    with pytest.raises(StoreError, match=f"locked by another writer \\(pid {os.getpid()}") as error:
        EpisodeStore.open(path, mode="a")
    assert_one_line_error(error, path)
    with pytest.raises(StoreError, match="locked"):
        new_store(path, overwrite=True)
    assert EpisodeStore.open(path).n_episodes == 0  # readers take no lock
    writer.close()
    with EpisodeStore.open(path, mode="a") as second:
        second.append_episode(make_episode(2, seed=0), make_meta(0))
    assert not (path / "writer.lock").exists()


def test_lock_file_of_a_dead_writer_is_not_a_lock(tmp_path):
    path = tmp_path / "demos.zarr"
    new_store(path).close()
    (path / "writer.lock").write_text("pid 999999 on elsewhere")
    with EpisodeStore.open(path, mode="a") as writer:
        assert f"pid {os.getpid()}" in (path / "writer.lock").read_text()
        writer.append_episode(make_episode(2, seed=0), make_meta(0))


def test_check_compatible_refuses_a_different_run(tmp_path):
    path = tmp_path / "demos.zarr"
    new_store(path, overwrite=False).close()
    store = EpisodeStore.open(path)
    store.check_compatible(dict(RUN))
    store.check_compatible({"replay": "kinematic", "domain": "sim", "seed": 0})
    with pytest.raises(StoreError, match="seed 0 != 1") as error:
        store.check_compatible(RUN | {"seed": 1})
    assert_one_line_error(error, path)
    with pytest.raises(StoreError, match="domain 'sim' != 'real'"):
        store.check_compatible(RUN | {"domain": "real"})
    with pytest.raises(StoreError, match="noise"):
        store.check_compatible(RUN | {"noise": 0.1})
    with pytest.raises(StoreError, match="replay"):
        store.check_compatible({"seed": 0, "domain": "sim"})


# --------------------------------------------------------------------------------------------------
# Annotation sets


def test_annotation_sets_are_named_coexist_and_round_trip(tmp_path):
    path = tmp_path / "demos.zarr"
    store = new_store(path)
    store.append_episode(make_episode(3, seed=0), make_meta(0))
    store.append_episode(make_episode(4, seed=1), make_meta(1))
    assert store.annotation_names == ()
    first = np.linspace(0.0, 0.6, 7)
    store.write_annotation("fold3", first, attrs={"normalizer": {"min": [0.1, 0.2]}})
    store.write_annotation("strong", first[::-1].copy(), sigma_max=np.full(7, 0.05))
    with pytest.raises(StoreError, match="'fold3' exists"):
        store.write_annotation("fold3", np.zeros(7))
    with pytest.raises(StoreError, match=r"shape \(7,\)"):
        store.write_annotation("short", np.zeros(6))
    with pytest.raises(StoreError, match="finite and in"):
        store.write_annotation("nan", np.full(7, np.nan))
    with pytest.raises(StoreError, match="must be letters"):
        store.write_annotation("../escape", np.zeros(7))
    store.close()

    reader = EpisodeStore.open(path)
    assert reader.annotation_names == ("fold3", "strong")
    fold3 = reader.annotation("fold3")
    np.testing.assert_array_equal(fold3.sigma_min, first.astype(np.float32))
    assert fold3.sigma_max is None and fold3.attrs["normalizer"] == {"min": [0.1, 0.2]} and fold3.attrs["n_steps"] == 7
    np.testing.assert_array_equal(reader.annotation("strong").sigma_max, np.full(7, 0.05, np.float32))
    with pytest.raises(StoreError, match="no annotation set 'other'"):
        reader.annotation("other")
    assert set(reader.episode(0)) == {"action", "agent_pos", "slider_pose", "overhead", "wrist"}


def test_overwriting_an_annotation_replaces_it_whole_and_appends_make_it_stale(tmp_path):
    path = tmp_path / "demos.zarr"
    with new_store(path) as store:
        store.append_episode(make_episode(3, seed=0), make_meta(0))
        store.write_annotation("classifier", np.full(3, 0.2))
        store.write_annotation("classifier", np.full(3, 0.4), overwrite=True)
        assert not [p.name for p in (path / "annotations").iterdir() if p.name.startswith(".")]
        np.testing.assert_array_equal(store.annotation("classifier").sigma_min, np.full(3, 0.4, np.float32))
        store.append_episode(make_episode(2, seed=1), make_meta(1))
        with pytest.raises(StoreError, match="covers 3 steps but the store commits 5"):
            store.annotation("classifier")


def test_an_interrupted_annotation_write_leaves_no_set(tmp_path, monkeypatch):
    path = tmp_path / "demos.zarr"
    with new_store(path) as store:
        store.append_episode(make_episode(3, seed=0), make_meta(0))
        monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError("disk gone")))
        with pytest.raises(StoreError, match="disk gone"):
            store.write_annotation("classifier", np.full(3, 0.2))
    assert EpisodeStore.open(path).annotation_names == ()


def test_format_1_stores_with_a_sigma_min_column_still_open(tmp_path):
    path = tmp_path / "demos.zarr"
    with new_store(path) as store:
        store.append_episode(make_episode(3, seed=0), make_meta(0))
    group = zarr.open_group(path, mode="r+", use_consolidated=False)
    group.create_array("data/sigma_min", shape=(3,), dtype=np.float32, chunks=(4096,))
    group.attrs["format_version"] = 1
    with EpisodeStore.open(path, mode="a") as store:
        store.append_episode(make_episode(2, seed=1), make_meta(1))
    assert EpisodeStore.open(path).n_steps == 5


# --------------------------------------------------------------------------------------------------
# Compression


def rendered_frame(k: int, size: int = 96) -> np.ndarray:
    """A rendered-looking frame: shaded background, a moving red T, a green target, a blue pusher."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    image = np.stack([200 + 20 * xx / size, 200 + 20 * yy / size, np.full_like(xx, 210)], axis=-1)
    image[40 + k : 48 + k, 25 + k : 55 + k] = (200, 60, 60)
    image[48 + k : 70 + k, 36 + k : 44 + k] = (200, 60, 60)
    image[10:22, 65:77] = (60, 160, 60)
    image[(xx - 70 + k) ** 2 + (yy - 30 - k) ** 2 < 16] = (40, 40, 200)
    return image.astype(np.uint8)


def test_rendered_frames_take_under_5_kb_each(tmp_path):
    path = tmp_path / "demos.zarr"
    frames = np.stack([rendered_frame(k) for k in range(20)])
    steps = len(frames)
    episode = {
        "action": np.zeros((steps, 2)),
        "agent_pos": np.zeros((steps, 2)),
        "slider_pose": np.zeros((steps, 3)),
        "overhead": frames,
    }
    with EpisodeStore.create(
        path, cameras={"overhead": (96, 96)}, domain_config={}, run=RUN
    ) as store:
        store.append_episode(episode, make_meta(0))
        assert "KB/frame" in store.describe()
    image_bytes = sum(f.stat().st_size for f in (path / "data" / "overhead").rglob("*") if f.is_file())
    assert image_bytes / steps < 5_000
    np.testing.assert_array_equal(EpisodeStore.open(path).array("overhead"), frames)


def test_open_for_writing_creates_then_reopens_only_a_matching_store(tmp_path):
    path = tmp_path / "w.zarr"
    args = dict(cameras={"overhead": (8, 8)}, domain_config={"name": "sim"}, run={"seed": 0})
    EpisodeStore.open_for_writing(path, **args).close()
    with EpisodeStore.open_for_writing(path, **args) as store:
        store.append_episode(make_episode(3, 0, cameras={"overhead": (8, 8)}), make_meta(0))
    with pytest.raises(StoreError, match="different run"):
        EpisodeStore.open_for_writing(path, **{**args, "run": {"seed": 1}})
    EpisodeStore.open_for_writing(path, **{**args, "run": {"seed": 1}}, check_run=False).close()
    with pytest.raises(StoreError, match="holds cameras"):
        EpisodeStore.open_for_writing(path, **{**args, "cameras": {"overhead": (16, 16)}}, check_run=False)
    # A refused open leaves no writer lock behind.
    EpisodeStore.open(path, "a").close()


def test_a_failed_write_leaves_no_zarr_task_pending(tmp_path, monkeypatch):
    """A chunk write that fails on a full disk must not leave its sibling writes pending on zarr's IO loop:
    the interpreter destroys them at exit and asyncio logs "Task was destroyed but it is pending!" under
    the one-line error (seen in CI)."""
    import asyncio
    import errno

    from zarr.core.sync import _get_loop
    from zarr.storage import LocalStore

    path = tmp_path / "demos.zarr"
    three_episode_store(path)
    store = EpisodeStore.open(path, mode="a")
    real_set = LocalStore.set
    failed = []

    async def full_then_slow(self, key, value, *args, **kwargs):
        if key.startswith("data/overhead/c/"):
            if not failed:
                failed.append(key)
                raise OSError(errno.ENOSPC, "No space left on device")
            await asyncio.sleep(0.5)  # the sibling chunks are still being written when the first one fails
        return await real_set(self, key, value, *args, **kwargs)

    async def pending() -> int:
        return len([task for task in asyncio.all_tasks() if task is not asyncio.current_task()])

    with monkeypatch.context() as patch:
        patch.setattr(LocalStore, "set", full_then_slow)
        with pytest.raises(StoreError, match="no space left on device") as error:
            store.append_episode(make_episode(300, seed=9), make_meta(9))  # 300 steps: 3 chunks of 128
        assert failed
        assert asyncio.run_coroutine_threadsafe(pending(), _get_loop()).result(timeout=5) == 0
    assert_one_line_error(error, path)
    store.close()
    assert EpisodeStore.open(path).episode_ends.tolist() == [2, 5, 9]


def test_a_resumed_run_in_another_domain_config_is_refused_and_an_empty_store_is_the_next_runs(tmp_path):
    """A store's domain_config must describe its episodes: a resume with another is refused; an empty store
    left by a run that failed before its first episode is made again with the next run's record."""
    path = tmp_path / "w.zarr"
    cameras = {"overhead": (8, 8)}
    failed = {"name": "target", "render": {"cameras": {"overhead": {"up": [0.0, 0.0, 1.0]}}}, "physics": {"friction": 0.5}}
    fixed = {"name": "target", "render": {"cameras": {"overhead": {"up": [0.0, 1.0, 0.0]}}}, "physics": {"friction": 0.5}}
    EpisodeStore.open_for_writing(path, cameras=cameras, domain_config=failed, run={"seed": 0}).close()  # no episode
    with EpisodeStore.open_for_writing(path, cameras={"overhead": (16, 16)}, domain_config=fixed, run={"seed": 0}) as store:
        store.append_episode(make_episode(3, 0, cameras={"overhead": (16, 16)}), make_meta(0))
    reopened = EpisodeStore.open(path)
    assert reopened.domain_config == fixed and reopened.cameras == ("overhead",) and reopened.image_shape("overhead")[:2] == (16, 16)
    before = sorted((p.relative_to(path), p.read_bytes()) for p in path.rglob("*") if p.is_file() and p.name != ".lock")

    changed = {**fixed, "physics": {"friction": 0.3}, "extra_field_added_later": 1}
    with pytest.raises(StoreError) as error:
        EpisodeStore.open_for_writing(path, cameras={"overhead": (16, 16)}, domain_config=changed, run={"seed": 0})
    assert str(error.value) == f"{path}: made by a different run (its domain config vs this run's: physics.friction 0.5 != 0.3)"
    after = sorted((p.relative_to(path), p.read_bytes()) for p in path.rglob("*") if p.is_file() and p.name != ".lock")
    assert after == before
    # A field only one side records is not a difference; --append (check_run=False) adds across configs.
    EpisodeStore.open_for_writing(path, cameras={"overhead": (16, 16)}, domain_config={**fixed, "new": 1}, run={"seed": 0}).close()
    EpisodeStore.open_for_writing(path, cameras={"overhead": (16, 16)}, domain_config=changed, run={"seed": 0}, check_run=False).close()

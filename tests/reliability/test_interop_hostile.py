"""Hostile datasets, signals and a full disk for `data_gen.import` and `data_gen.export` (issue 35).

A dataset edited by hand or made to attack (a wrong fps or total, a path template that leaves the
dataset or evaluates attributes, JSON or zarr of the wrong shape) is refused in one line, exit 2,
with the dataset untouched and nothing written. A run stopped by Ctrl-C or SIGTERM says so in one
line and leaves nothing; one killed with -9 leaves its hidden partial output, which the next run
removes. A full disk is named as such.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import zarr

from data_gen.episode_store import EpisodeMeta, EpisodeStore
from data_gen.interop import export_store
from tests import stopping
from tests.reliability.cli_runs import REPO_ROOT, assert_one_line_failure, run_cli, tree
from tests.reliability.test_full_disk import small_disk  # noqa: F401  (a fixture: tmpfs mounts of a given size)

pytest.importorskip("pyarrow")


def make_store(path: Path, lengths: list[int], image_size: int, seed: int) -> Path:
    """A real store of noise episodes (one camera, ``top``): every frame differs, so misalignment shows."""
    rng = np.random.default_rng(seed)
    with EpisodeStore.create(path, cameras={"top": (image_size, image_size)}, domain_config={}, run={"seed": seed}) as store:
        for index, length in enumerate(lengths):
            steps = {"action": rng.normal(size=(length, 2)), "agent_pos": rng.normal(size=(length, 2)),
                     "slider_pose": rng.normal(size=(length, 3)),
                     "top": rng.integers(0, 256, (length, image_size, image_size, 3), dtype=np.uint8)}
            store.append_episode(steps, EpisodeMeta(source="gcs", domain="sim", seed=index, initial_pose=(0, 0, 0),
                                                    success=True))
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, Path]:
    """A three-episode store exported once to each format; tests edit copies."""
    root = tmp_path_factory.mktemp("exported")
    store = make_store(root / "demos.zarr", [4, 6, 5], image_size=8, seed=35)
    for fmt in ("lerobot", "diffusion-policy"):
        export_store(store, root / fmt, fmt)
    return {"lerobot": root / "lerobot", "diffusion-policy": root / "diffusion-policy"}


@pytest.fixture(scope="module")
def noisy_store(tmp_path_factory) -> Path:
    """300 frames of 96 px noise: a LeRobot export of it takes seconds (time to signal it) and megabytes."""
    return make_store(tmp_path_factory.mktemp("noisy") / "noisy.zarr", [150, 150], image_size=96, seed=36)


def slow_dataset(path: Path, episodes: int = 100) -> Path:
    """A foreign Diffusion Policy zarr of many two-step episodes: importing it commits for many seconds."""
    rng = np.random.default_rng(37)
    root = zarr.open_group(path, mode="w", zarr_format=2)
    root.create_array("data/action", data=rng.normal(size=(2 * episodes, 2)).astype(np.float32))
    root.create_array("data/state", data=rng.normal(size=(2 * episodes, 5)).astype(np.float32))
    root.create_array("meta/episode_ends", data=np.arange(2, 2 * episodes + 1, 2, dtype=np.int64))
    return path


def import_args(dataset: Path, fmt: str, out: Path) -> list[str]:
    return [str(dataset), "--format", fmt, "--out", str(out)]


def partials(out: Path) -> list[Path]:
    return sorted(out.parent.glob(f".{out.name}.partial-*"))


# --------------------------------------------------------------------------------------------------
# Hostile datasets (items 4, 7, 10, 14): refused in one line, the dataset untouched, nothing written


def edit_info(**changes) -> Callable[[Path], None]:
    def edit(dataset: Path) -> None:
        info = json.loads((dataset / "meta/info.json").read_text())
        (dataset / "meta/info.json").write_text(json.dumps(info | changes))

    return edit


def write_info(text: str) -> Callable[[Path], None]:
    return lambda dataset: (dataset / "meta/info.json").write_text(text)


def features_as_list(dataset: Path) -> None:
    info = json.loads((dataset / "meta/info.json").read_text())
    edit_info(features=list(info["features"]))(dataset)


def evaluated_attribute(dataset: Path) -> None:
    """A template that str.format would evaluate; the file it names exists, so only refusing it stops the read."""
    (dataset / "data/chunk-int").mkdir()
    shutil.copy(dataset / "data/chunk-000/file-000.parquet", dataset / "data/chunk-int/file-000.parquet")
    edit_info(data_path="data/chunk-{chunk_index.__class__.__name__}/file-{file_index:03d}.parquet")(dataset)


def dp_edit(change: Callable[[zarr.Group], None]) -> Callable[[Path], None]:
    return lambda dataset: change(zarr.open_group(dataset, mode="r+", zarr_format=2))


def rewrite(group: zarr.Group, key: str, values: np.ndarray) -> None:
    del group[key]
    group.create_array(key, data=values)


def data_as_array(group: zarr.Group) -> None:
    for key in list(group["data"].array_keys()):
        del group[f"data/{key}"]
    del group["data"]
    group.create_array("data", data=np.zeros(15))


# (format, edit, what the one line must name). The "outside" copy sits at ../outside next to the dataset
# ("{outside}" in a template is replaced by its absolute path).
DATA_FILE = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_FILE = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
HOSTILE = {
    # item 4: an edited fps would pair each episode's actions with other frames
    "fps 5": ("lerobot", edit_info(fps=5), "fps"),
    "fps 0": ("lerobot", edit_info(fps=0), "fps"),
    # item 7: totals and lengths that disagree with the files
    "total_frames 99999": ("lerobot", edit_info(total_frames=99999), "total_frames"),
    "arrays longer than episode_ends": (
        "diffusion-policy", dp_edit(lambda g: rewrite(g, "meta/episode_ends", np.array([4, 10, 13]))), "episode_ends"),
    # item 10: templates that read outside the dataset, or evaluate attributes
    "data_path leaves the dataset": ("lerobot", edit_info(data_path=f"../outside/{DATA_FILE}"), "data_path"),
    "absolute data_path": ("lerobot", edit_info(data_path=f"{{outside}}/{DATA_FILE}"), "data_path"),
    "video_path leaves the dataset": ("lerobot", edit_info(video_path=f"../outside/{VIDEO_FILE}"), "video_path"),
    "data_path evaluates an attribute": ("lerobot", evaluated_attribute, "data_path"),
    # item 14: JSON and zarr of the wrong shape
    "info.json a list": ("lerobot", write_info("[1, 2]"), "info.json"),
    "features a list": ("lerobot", features_as_list, "features"),
    "2-D episode_ends": (
        "diffusion-policy", dp_edit(lambda g: rewrite(g, "meta/episode_ends", np.array([[4], [10], [15]]))), "episode_ends"),
    "data an array": ("diffusion-policy", dp_edit(data_as_array), "data"),
    "0-d array under data/": (
        "diffusion-policy", dp_edit(lambda g: g.create_array("data/scalar", data=np.array(3.0))), "data/scalar"),
    # camera renaming: the attribute that says where each camera's frames are
    "camera_keys naming no array": (
        "diffusion-policy", dp_edit(lambda g: g.attrs.update(camera_keys={"top": "../../etc"})), "incomplete ambient-push export"),
    "camera_keys a list": (
        "diffusion-policy", dp_edit(lambda g: g.attrs.update(camera_keys=["top"])), "incomplete ambient-push export"),
}


@pytest.mark.parametrize("case", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_dataset_is_refused_in_one_line(exported, tmp_path, case):
    fmt, edit, expected = case
    datasets = tmp_path / "datasets"
    dataset, outside = datasets / "dataset", datasets / "outside"
    shutil.copytree(exported[fmt], dataset)
    shutil.copytree(exported[fmt], outside)  # a dataset the edited one must not read from
    edit(dataset)
    info = dataset / "meta/info.json"
    if info.is_file():
        info.write_text(info.read_text().replace("{outside}", str(outside)))
    before = tree(datasets)

    outcome = run_cli("data_gen.import", import_args(dataset, fmt, tmp_path / "out" / "back.zarr"), cwd=tmp_path)

    assert_one_line_failure(outcome, expected)
    assert tree(datasets) == before
    assert not (tmp_path / "out").exists()


def test_allowed_templates_and_the_unedited_datasets_import(exported, tmp_path):
    """The refusals above are the edits' doing: LeRobot's placeholders in another layout still import."""
    for fmt, source in exported.items():
        outcome = run_cli("data_gen.import", import_args(source, fmt, tmp_path / f"{fmt}.zarr"), cwd=tmp_path)
        assert outcome.returncode == 0 and not outcome.stderr, outcome.stderr[-2000:]
    dataset = tmp_path / "moved"
    shutil.copytree(exported["lerobot"], dataset)
    (dataset / "data/chunk-000/file-000.parquet").rename(dataset / "data/chunk-000/frames_0000.parquet")
    edit_info(data_path="./data/chunk-{chunk_index:03d}/frames_{file_index:04d}.parquet")(dataset)
    outcome = run_cli("data_gen.import", import_args(dataset, "lerobot", tmp_path / "moved.zarr"), cwd=tmp_path)
    assert outcome.returncode == 0, outcome.stderr[-2000:]
    original, moved = EpisodeStore.open(tmp_path / "lerobot.zarr"), EpisodeStore.open(tmp_path / "moved.zarr")
    for key in original.step_keys:
        assert original.array(key).tobytes() == moved.array(key).tobytes(), key


# --------------------------------------------------------------------------------------------------
# Signals (items 13, 14): Ctrl-C and SIGTERM stop a run in one line and leave nothing; kill -9 is cleaned next time


def started(module: str, args: list[str], out: Path, cwd: Path) -> subprocess.Popen:
    """The command started, once it has begun writing its hidden partial output (and has not finished)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    # stopping.start: SIGINT back to its default, which a suite started in the background inherits ignored
    process = stopping.start([sys.executable, "-m", module, *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300  # a busy machine takes long to start python and import zarr
    while not (out.parent / f".{out.name}.partial-{process.pid}").exists():
        assert process.poll() is None, f"{module} ended before it was signalled: {process.communicate()}"
        assert time.monotonic() < deadline, f"{module} never began writing"
        time.sleep(0.02)
    return process


RUNS = {"import": "data_gen.import", "export": "data_gen.export"}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("run", RUNS)
def test_a_signal_stops_a_run_in_one_line_leaving_nothing(noisy_store, tmp_path, run, signum):
    out = tmp_path / "out"
    if run == "import":
        args = import_args(slow_dataset(tmp_path / "slow.zarr"), "diffusion-policy", out)
    else:
        args = [str(noisy_store), "--format", "lerobot", "--out", str(out)]
    process = started(RUNS[run], args, out, tmp_path)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=300)

    lines = [line for line in stderr.splitlines() if line.strip()]
    assert process.returncode == 130, (process.returncode, stderr[-2000:])
    assert len(lines) == 1 and "interrupted" in lines[0] and "Traceback" not in stderr, stderr[-2000:]
    assert not out.exists() and partials(out) == []


def test_a_partial_left_by_kill_9_is_removed_by_the_next_run(exported, tmp_path):
    out = tmp_path / "back.zarr"
    process = started("data_gen.import", import_args(slow_dataset(tmp_path / "slow.zarr"), "diffusion-policy", out),
                      out, tmp_path)
    process.kill()
    process.communicate(timeout=60)
    dead = out.parent / f".{out.name}.partial-{process.pid}"
    assert partials(out) == [dead]  # nothing can clean up after kill -9
    alive = out.parent / f".{out.name}.partial-{os.getpid()}"  # a run still writing (this test's pid): kept
    alive.mkdir()
    (alive / "work").write_text("in progress")

    outcome = run_cli("data_gen.import", import_args(exported["diffusion-policy"], "diffusion-policy", out), cwd=tmp_path)

    assert outcome.returncode == 0, outcome.stderr[-2000:]
    assert len(outcome.error_lines) == 1 and str(dead) in outcome.error_lines[0], outcome.error_lines
    assert partials(out) == [alive] and (alive / "work").read_text() == "in progress"
    assert EpisodeStore.open(out).n_episodes == 3


# --------------------------------------------------------------------------------------------------
# A full disk (item 15)


def test_lerobot_export_to_a_full_disk_says_so_in_one_line(small_disk, noisy_store, tmp_path):  # noqa: F811
    disk = small_disk(256)  # the parquet tables fit, the videos do not
    out = disk / "lerobot"

    outcome = run_cli("data_gen.export", [str(noisy_store), "--format", "lerobot", "--out", str(out)], cwd=tmp_path)

    line = assert_one_line_failure(outcome, "no space left on device")
    assert str(out) in line and ".partial-" not in line
    assert list(disk.iterdir()) == []

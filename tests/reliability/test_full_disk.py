"""A real full disk (a small tmpfs): writers say "no space left on device" in one line, exit 2, and keep
what was committed before. Skipped where this machine does not let the test mount a tmpfs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from data_gen.episode_store import EpisodeStore
from tests.reliability.cli_runs import assert_one_line_failure, run_cli


@pytest.fixture
def small_disk(tmp_path):
    """A factory of tmpfs mounts of a given size under tmp_path, unmounted afterwards."""
    mounts: list[Path] = []

    def mount(size_kb: int) -> Path:
        point = tmp_path / f"disk{len(mounts)}"
        point.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(point)],
                              capture_output=True, text=True) if shutil.which("mount") else None
        if done is None or done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() if done else 'no mount command'})")
        mounts.append(point)
        return point

    yield mount
    for point in mounts:
        subprocess.run(["umount", str(point)], capture_output=True)


def test_generation_on_a_full_disk_keeps_the_committed_episodes(small_disk, tmp_path):
    disk = small_disk(200)  # room for a few 32 px episodes, not 40
    store = disk / "sim.zarr"
    outcome = run_cli("data_gen.gcs", ["--n", "40", "--workers", "1", "--image-size", "32", "--out", str(store)],
                      cwd=tmp_path)
    line = assert_one_line_failure(outcome, "no space left on device")
    assert "damaged" not in line
    with EpisodeStore.open(store) as reader:
        assert 1 <= reader.n_episodes < 40
        for i in range(reader.n_episodes):  # every committed episode reads back whole
            episode = reader.episode(i)
            assert len(episode["action"]) == len(episode["overhead"]) > 0


def test_training_on_a_full_disk_leaves_no_partial_checkpoint(small_disk, made_stores, tmp_path):
    disk = small_disk(64)  # the run's config files fit, its first checkpoint does not
    run = disk / "run"
    outcome = run_cli("policies.train", ["--clean", str(made_stores / "target.zarr"), "--method", "clean", "--obs",
                                         "state", "--preset", "tiny", "--steps", "4", "--checkpoint-every", "2",
                                         "--device", "cpu", "--out", str(run)], cwd=tmp_path)
    line = assert_one_line_failure(outcome, "no space left on device")
    assert str(run / "ckpt.pt") in line and "none saved yet" in line  # not "the previous one is kept": there is none
    assert not list(run.glob("*.partial")) and not (run / "ckpt.pt").exists()

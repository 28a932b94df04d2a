"""The GCS data-generation CLI: a real planner, real Drake rendering, real zarr stores on disk."""

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from data_gen.episode_store import EpisodeStore
from data_gen.gcs import Summary, _print_summary, main, start_pose
from pushing_sim import geometry
from pushing_sim.task import TaskConfig, evaluation_initial_poses, is_success
from tests import stopping

CLI = [sys.executable, "-m", "data_gen.gcs"]


def _episodes(path):
    with EpisodeStore.open(path) as store:
        return [store.episode(i) for i in range(store.n_episodes)], [store.episode_meta(i) for i in range(store.n_episodes)]


def test_n3_writes_a_valid_store_of_plans_that_reach_the_goal(tmp_path, capsys):
    out = tmp_path / "sim.zarr"
    assert main(["--n", "3", "--workers", "1", "--out", str(out), "--image-size", "48"]) == 0
    episodes, metas = _episodes(out)
    assert len(episodes) == 3
    task = TaskConfig()
    for episode, meta in zip(episodes, metas):
        assert meta.source == "gcs" and meta.domain == "sim" and meta.success
        assert episode["overhead"].shape[1:] == (48, 48, 3) and episode["wrist"].dtype == np.uint8
        np.testing.assert_allclose(episode["slider_pose"][0], meta.initial_pose, atol=1e-5)
        assert is_success(task, episode["slider_pose"][-1])
        # Kinematic replay: the action is the next recorded pusher position.
        np.testing.assert_allclose(episode["action"][:-1], episode["agent_pos"][1:])
        # The pusher never sits inside the T.
        clearance = [geometry.distance_to_t(p, s) for p, s in zip(episode["agent_pos"], episode["slider_pose"])]
        assert min(clearance) > geometry.PUSHER_RADIUS - 1e-3
        # Frames change over the episode (the T and the pusher move).
        assert np.abs(episode["overhead"][0].astype(int) - episode["overhead"][-1].astype(int)).max() > 50
    summary = capsys.readouterr().out
    assert "plans tried 3, succeeded 3" in summary and "KB per camera frame" in summary
    assert "episodes meeting the success check 3 of 3" in summary
    assert (tmp_path / "sim.generation.json").is_file()

    # The same command again: nothing to add, said in words, with no rates of nothing.
    assert main(["--n", "3", "--workers", "1", "--out", str(out), "--image-size", "48"]) == 0
    again = capsys.readouterr().out
    assert f"nothing to add: 3/3 episodes of this run already in {out}\n" in again
    assert "nan" not in again and "per minute" not in again and "plans tried" not in again
    assert len(_episodes(out)[0]) == 3


def test_a_run_stopped_before_any_plan_prints_no_rates_of_nothing(capsys):
    _print_summary(Summary(stored=2, added=0, attempts=0, failures=Counter(), planning_times=[], frames=0, wall_time=0.5,
                           bytes_per_frame=0.0, interrupted=True), Path("s.zarr"), 4)  # fmt: skip
    printed = capsys.readouterr().out
    assert printed.startswith("interrupted: 0 episodes added, 2 in s.zarr") and "re-run the same command" in printed
    assert "nan" not in printed and "per minute" not in printed


def test_start_poses_depend_on_seed_and_attempt_and_avoid_the_evaluation_starts():
    task = TaskConfig()
    first = start_pose(task, 0, 5)
    np.testing.assert_array_equal(first, start_pose(task, 0, 5))
    assert not np.allclose(first, start_pose(task, 1, 5))
    evaluation = evaluation_initial_poses(task, 20, seed=0)
    generation = np.array([start_pose(task, 0, i) for i in range(20)])
    assert not np.any(np.all(np.isclose(evaluation[:, None], generation[None]), axis=-1))


def test_a_killed_run_resumes_with_no_loss_and_no_duplicates(tmp_path):
    reference, killed = tmp_path / "reference.zarr", tmp_path / "killed.zarr"
    args = ["--n", "4", "--workers", "1", "--image-size", "32"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    subprocess.run(CLI + args + ["--out", str(reference)], check=True, env=env, capture_output=True)

    process = stopping.start(CLI + args + ["--out", str(killed)], env=env, stderr=subprocess.DEVNULL)
    stopping.wait_for(lambda: stopping.stored_episodes(killed) >= 1, process, timeout=120)
    stopping.kill(process)  # and any worker with it
    process.wait()
    with EpisodeStore.open(killed) as store:
        assert store.n_episodes < 4  # it really was interrupted

    resumed = subprocess.run(CLI + args + ["--out", str(killed)], env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    ref_episodes, ref_metas = _episodes(reference)
    got_episodes, got_metas = _episodes(killed)
    assert [m.extra["attempt"] for m in got_metas] == [m.extra["attempt"] for m in ref_metas]
    for a, b in zip(ref_episodes, got_episodes):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_a_different_seed_on_an_existing_store_is_refused_unless_appended(tmp_path, capsys):
    out = tmp_path / "sim.zarr"
    assert main(["--n", "1", "--workers", "1", "--out", str(out), "--image-size", "32"]) == 0
    assert main(["--n", "1", "--workers", "1", "--out", str(out), "--image-size", "32", "--seed", "1"]) == 2
    assert "different run" in capsys.readouterr().err
    # The same run with another domain setting: its episodes would not be what the store's domain config says.
    assert main(["--n", "2", "--workers", "1", "--out", str(out), "--image-size", "32", "--set", "physics.table_friction=0.3"]) == 2
    assert "domain config vs this run's: physics.table_friction 0.5 != 0.3" in capsys.readouterr().err
    assert main(["--n", "1", "--workers", "1", "--out", str(out), "--image-size", "32", "--seed", "1", "--append"]) == 0
    _, metas = _episodes(out)
    assert [m.seed for m in metas] == [0, 1]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--n", "0"], "--n must be positive"),
        (["--n", "2", "--domain", "moon"], "unknown domain 'moon'"),
        (["--n", "2", "--workers", "0"], "--workers must be positive"),
        (["--n", "2", "--replan-every", "5"], "--replay physics"),
    ],
)
def test_bad_inputs_are_one_line_errors(args, message, tmp_path):
    result = subprocess.run(CLI + args + ["--out", str(tmp_path / "x.zarr")], capture_output=True, text=True)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_an_output_path_that_is_a_file_is_refused(tmp_path):
    path = tmp_path / "file.zarr"
    path.write_text("precious")
    result = subprocess.run(CLI + ["--n", "1", "--out", str(path)], capture_output=True, text=True)
    assert result.returncode == 2 and "not a directory" in result.stderr
    assert path.read_text() == "precious"


def test_physics_replay_with_replanning_makes_successful_expert_demos(tmp_path):
    out = tmp_path / "expert.zarr"
    assert main(["--n", "1", "--workers", "1", "--out", str(out), "--image-size", "32", "--domain", "target",
                 "--replay", "physics", "--replan-every", "20", "--keep", "successful"]) == 0
    episodes, metas = _episodes(out)
    episode, meta = episodes[0], metas[0]
    assert meta.source == "expert" and meta.domain == "target" and meta.success
    # Physics replay records what happened: the pusher lags its targets, unlike a kinematic replay.
    assert not np.allclose(episode["action"][:-1], episode["agent_pos"][1:], atol=1e-4)
    assert np.linalg.norm(episode["action"][:-1] - episode["agent_pos"][1:], axis=1).max() < 0.05
    task = TaskConfig()
    final = episode["slider_pose"][-1]
    assert np.linalg.norm(final[:2] - np.array(task.goal_pose[:2])) < 0.03


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_or_kill_stops_the_worker_pool_cleanly_and_the_run_resumes(tmp_path, signum):
    """Ctrl-C at a terminal, or `kill` (SIGTERM) of a run started from a script with `cmd &` (Ctrl-C ignored)."""
    out = tmp_path / "sim.zarr"
    args = CLI + ["--n", "6", "--workers", "2", "--image-size", "32", "--out", str(out)]
    process = stopping.start(args, ctrl_c_ignored=signum == signal.SIGTERM, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    stopping.wait_for(lambda: stopping.stored_episodes(out) >= 1, process, timeout=120)
    if signum == signal.SIGINT:
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C sends: the whole foreground process group
    else:
        os.kill(process.pid, signal.SIGTERM)  # what `kill PID` sends
    output, _ = stopping.ended(process, 60, "the run went on for 60 s after the signal")
    assert process.returncode == 130
    assert "re-run the same command to resume" in output and "Traceback" not in output
    resumed = subprocess.run(args, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    _, metas = _episodes(out)
    attempts = [m.extra["attempt"] for m in metas]
    assert len(metas) == 6 and attempts == sorted(set(attempts))

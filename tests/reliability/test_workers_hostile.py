"""Hostile but plausible use of the worker pools: a worker that cannot start, one killed mid-item, and `kill` of a Ray run.

A worker that cannot start must end the command in one line (exit 2), never in a pool that starts it
again and again (a traceback each time, no progress, a core busy); a worker killed mid-item (kill -9,
the OOM killer) must end it in one line (exit 2) within moments, never in a pool that waits forever for
the lost item; `kill` (SIGTERM) of a run on Ray must stop it as on the local backend (exit 130, the
summary); and what was committed stays as it was, and resumes.

The worker that cannot start is a real input: the target domain's overhead camera, which looks straight
down, given 'up' along its line of sight. The domain loads (each field is valid alone), so every check
in the parent passes, and only building the scene, in the worker, finds that the camera has no orientation.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from data_gen.episode_store import EpisodeStore
from tests import stopping
from tests.policies.synthetic_stores import make_store
from tests.reliability.cli_runs import REPO_ROOT, Outcome, assert_one_line_failure, run_cli, tree

CAMERA_WITHOUT_ORIENTATION = "render.cameras.overhead.up=[0, 0, 1]"  # with --domain target: it looks straight down
# Generous: these start Drake (and Ray) in fresh processes, which took up to 10 minutes at nice 19 on two
# cores busy training; pytest's own limit (pyproject) ends a hang first in an ordinary run.
TIMEOUT = 1800


def cli_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    return env | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}


def run_watching_for_restarts(module: str, args: list[str], cwd: Path, timeout: float = TIMEOUT) -> Outcome:
    """Run a command line to its end, as ``run_cli`` does; fail at its second traceback (a pool restarting a worker)."""
    errors_path = cwd / f"{module}.stderr"
    with open(errors_path, "w") as errors:
        process = stopping.start([sys.executable, "-m", module, *args], cwd=cwd, env=cli_env(),
                                 stdout=subprocess.PIPE, stderr=errors)  # fmt: skip
        deadline = time.monotonic() + timeout
        while process.poll() is None:
            tracebacks = errors_path.read_text().count("Traceback")
            if tracebacks >= 2 or time.monotonic() > deadline:
                stopping.kill(process)  # the whole group: the command and its workers
                process.wait()
                why = "a pool starting its workers again and again" if tracebacks >= 2 else f"no end in {timeout:.0f} s"
                pytest.fail(f"{module}: {why} ({tracebacks} tracebacks); stderr ends: {errors_path.read_text()[-1500:]}")
            time.sleep(0.5)
        output = process.stdout.read()
    return Outcome(process.returncode, output, errors_path.read_text())


# --------------------------------------------------------------------------------------------------
# Item 1: a worker that cannot start


def test_a_rollout_whose_workers_cannot_start_is_one_line_exit_2(tmp_path):
    outcome = run_watching_for_restarts("eval.rollout", ["--policy", "random", "--trials", "2", "--max-steps", "1", "--workers", "2",
                                                         "--videos", "0", "--out", "ev", "--domain", "target",
                                                         "--set", CAMERA_WITHOUT_ORIENTATION], tmp_path)  # fmt: skip

    line = assert_one_line_failure(outcome, "could not start")
    assert "parallel to its viewing direction" in line, line
    header, *trials = (tmp_path / "ev" / "trials.jsonl").read_text().splitlines()
    assert json.loads(header)["evaluation"]["domain_overrides"] == [CAMERA_WITHOUT_ORIENTATION]
    assert trials == [] and not (tmp_path / "ev" / "results.json").exists()


def test_a_generation_whose_workers_cannot_start_is_one_line_exit_2_and_keeps_the_store(tmp_path):
    # GCS demonstrations added to a store that holds others (made here without Drake) at its cameras' size.
    out = make_store(tmp_path / "demos.zarr", episodes=2, cameras=("overhead", "wrist"), image_size=32)
    before = tree(out)

    outcome = run_watching_for_restarts("data_gen.gcs", ["--n", "2", "--workers", "2", "--image-size", "32", "--append",
                                                         "--out", str(out), "--domain", "target",
                                                         "--set", CAMERA_WITHOUT_ORIENTATION], tmp_path)  # fmt: skip

    line = assert_one_line_failure(outcome, "could not start")
    assert "parallel to its viewing direction" in line, line
    assert tree(out) == before


def test_a_fresh_generation_that_could_not_start_leaves_a_store_the_corrected_command_makes_its_own(tmp_path):
    """The empty store a failed first run leaves is the next run's: its record is the corrected domain's, not the failed one's."""
    args = ["--n", "1", "--workers", "2", "--image-size", "32", "--out", "demos.zarr", "--domain", "target"]
    outcome = run_watching_for_restarts("data_gen.gcs", [*args, "--set", CAMERA_WITHOUT_ORIENTATION], tmp_path)
    assert_one_line_failure(outcome, "could not start")

    corrected = run_cli("data_gen.gcs", args, tmp_path, timeout=TIMEOUT)
    assert corrected.returncode == 0, corrected.stderr
    store = EpisodeStore.open(tmp_path / "demos.zarr")
    assert store.n_episodes == 1
    assert store.domain_config["render"]["cameras"]["overhead"]["up"] != [0, 0, 1]  # the domain its episode was made in


# --------------------------------------------------------------------------------------------------
# A worker killed mid-item


def pool_workers(pid: int) -> list[int]:
    """The worker processes that process ``pid`` spawned (not its multiprocessing resource tracker)."""
    workers = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and b"spawn_main" in (entry / "cmdline").read_bytes():
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])  # "pid (name) state ppid ..."
                workers += [int(entry.name)] if parent == pid else []
        except (OSError, ValueError, IndexError):  # a process that ended meanwhile
            continue
    return workers


def test_kill_9_of_an_evaluation_worker_is_one_line_exit_2_and_the_same_command_resumes(tmp_path):
    args = ["--policy", "random", "--trials", "40", "--max-steps", "30", "--workers", "2", "--videos", "0"]
    trials = tmp_path / "ev" / "trials.jsonl"
    process = stopping.start([sys.executable, "-m", "eval.rollout", *args, "--out", "ev"], cwd=tmp_path, env=cli_env())
    stopping.wait_for(lambda: stopping.lines(trials) >= 4 and len(pool_workers(process.pid)) == 2, process, timeout=TIMEOUT)
    worker = pool_workers(process.pid)[0]
    os.kill(worker, signal.SIGKILL)  # as the OOM killer does
    output, errors = stopping.ended(process, 60, "the evaluation hung for 60 s after one of its workers was killed")

    line = assert_one_line_failure(Outcome(process.returncode, output, errors), "a worker process died")
    assert f"pid {worker}, SIGKILL" in line and "run the same command to resume" in line, line
    saved = trials.read_text().splitlines()
    assert all(json.loads(saved_line) for saved_line in saved)  # every line whole
    assert 4 <= len(saved) < 41  # the header and some trials, not all

    resumed = run_cli("eval.rollout", [*args, "--out", "ev"], tmp_path, timeout=TIMEOUT)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    reference = run_cli("eval.rollout", [*args, "--out", "reference"], tmp_path, timeout=TIMEOUT)
    assert reference.returncode == 0, reference.stderr[-2000:]

    def per_trial(name: str) -> list[dict]:
        results = json.loads((tmp_path / name / "results.json").read_text())["per_trial"]
        return [{key: value for key, value in result.items() if key != "wall_time"} for result in results]

    assert [result["index"] for result in per_trial("ev")] == list(range(40))
    assert per_trial("ev") == per_trial("reference")


def test_kill_9_of_a_generation_worker_is_one_line_exit_2_and_keeps_the_store_whole(tmp_path):
    out = tmp_path / "sim.zarr"
    args = [sys.executable, "-m", "data_gen.gcs", "--n", "6", "--workers", "2", "--image-size", "32", "--out", str(out)]
    process = stopping.start(args, cwd=tmp_path, env=cli_env())
    stopping.wait_for(lambda: stopping.stored_episodes(out) >= 1 and len(pool_workers(process.pid)) == 2, process, timeout=TIMEOUT)
    worker = pool_workers(process.pid)[0]
    os.kill(worker, signal.SIGKILL)
    output, errors = stopping.ended(process, 60, "the generation hung for 60 s after one of its workers was killed")

    line = assert_one_line_failure(Outcome(process.returncode, output, errors), "a worker process died")
    assert f"pid {worker}, SIGKILL" in line, line
    with EpisodeStore.open(out) as store:  # what it committed is whole, in attempt order
        attempts = [store.episode_meta(i).extra["attempt"] for i in range(store.n_episodes)]
        assert 1 <= len(attempts) < 6 and attempts == sorted(set(attempts))
        assert store.episode_ends[-1] == store.n_steps

    resumed = subprocess.run(args, cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=TIMEOUT)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    with EpisodeStore.open(out) as store:
        resumed_attempts = [store.episode_meta(i).extra["attempt"] for i in range(store.n_episodes)]
    assert len(resumed_attempts) == 6 and resumed_attempts == sorted(set(resumed_attempts))
    assert resumed_attempts[: len(attempts)] == attempts  # the committed episodes kept as they were


# --------------------------------------------------------------------------------------------------
# Item 16: SIGTERM to a Ray run


def test_ray_starts_its_own_instance_unless_given_an_address_and_leaves_sigterm_as_it_was(monkeypatch):
    """Without an address, never a cluster that `ray start` left running here (ray.init's default joins it);
    and ray.init's SIGTERM handler (sys.exit at once) does not outlive it."""
    ray = pytest.importorskip("ray")
    from data_gen.backends import BackendError, ordered_map

    calls = []

    def init(**kwargs):  # as ray.init does first, then a start that fails
        calls.append(kwargs)
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(signum))
        raise ConnectionError("stop here")

    def stop(signum, frame):
        raise KeyboardInterrupt

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    before = signal.signal(signal.SIGTERM, stop)  # what stops_on_sigterm installs in a command
    try:
        with pytest.raises(BackendError, match="cannot start or reach Ray"):
            list(ordered_map(print, (), print, range(2), workers=1, backend="ray"))
        assert signal.getsignal(signal.SIGTERM) is stop
        monkeypatch.setenv("RAY_ADDRESS", "head:6379")
        with pytest.raises(BackendError, match="at head:6379"):
            list(ordered_map(print, (), print, range(2), workers=1, backend="ray"))
        assert signal.getsignal(signal.SIGTERM) is stop
    finally:
        signal.signal(signal.SIGTERM, before)
    assert [call.get("address") for call in calls] == ["local", "head:6379"]


def test_kill_of_a_ray_generation_stops_it_as_on_the_local_backend(tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "sim.zarr"
    args = [sys.executable, "-m", "data_gen.gcs", "--n", "6", "--workers", "2", "--image-size", "32",
            "--backend", "ray", "--out", str(out)]  # fmt: skip
    # Started as a script's `cmd &` would be (Ctrl-C ignored): `kill` is the way to stop it.
    process = stopping.start(args, ctrl_c_ignored=True, cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE)
    stopping.wait_for(lambda: stopping.stored_episodes(out) >= 1, process, timeout=TIMEOUT)
    os.kill(process.pid, signal.SIGTERM)  # what `kill PID` sends
    output, errors = stopping.ended(process, TIMEOUT, f"the Ray run went on for {TIMEOUT} s after SIGTERM")

    assert process.returncode == 130, (process.returncode, errors[-2000:])
    assert "interrupted:" in output and "re-run the same command to resume" in output, output
    assert "Traceback" not in errors and "SIGTERM" not in errors, errors[-2000:]  # Ray's C++ dump names it
    with EpisodeStore.open(out) as store:  # what it committed is whole, in attempt order
        attempts = [store.episode_meta(i).extra["attempt"] for i in range(store.n_episodes)]
        assert attempts and attempts == sorted(set(attempts))
        assert store.episode_ends[-1] == store.n_steps

"""The backends: the local process pool (items in order, a worker that dies is an error within moments,
never a hang, and workers that stop at once), and the Ray backend against the local one on a real
local 2-CPU Ray instance (same episodes, same trials, retried tasks, Ctrl-C that leaves a store which
resumes, and one-line errors)."""

import hashlib
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from data_gen.backends import WorkerDiedError, ordered_map
from data_gen.episode_store import EpisodeStore
from data_gen.gcs import GenerationConfig, generate
from eval.rollout import RolloutSpec, run_trials
from pushing_sim.domains import load_domain
from tests import stopping
from tests.data_gen import pool_work

RAY_MISSING = "the Ray backend needs the 'ray' extra (installed by `make test`)"


def _within(seconds: float, function):
    """``function()``'s result, or its exception raised here; the test fails if it runs on past ``seconds`` (a hang)."""
    outcome: dict = {}

    def run():
        try:
            outcome["result"] = function()
        except BaseException as error:  # noqa: BLE001 - handed to the test's thread
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)  # daemon: a hang must not keep pytest from ending
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"no answer within {seconds:.0f} s: a hang")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


@pytest.fixture
def two_cores(monkeypatch):
    """Two cores for ordered_map to count, whatever this machine has: two workers, never this process (which a dying item would end)."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)


def test_local_workers_yield_results_in_item_order_however_they_finish(two_cores):
    expected = [item * item + 7 for item in range(40)]
    assert _within(120, lambda: list(ordered_map(pool_work.start, (7,), pool_work.square, range(40), workers=2))) == expected
    assert multiprocessing.active_children() == []


@pytest.mark.parametrize("how", ["exit", "kill"])
def test_a_local_worker_that_dies_mid_item_is_a_one_line_error_within_seconds(tmp_path, how, two_cores):
    """A worker killed (kill -9, the OOM killer) or crashed mid-item: WorkerDiedError naming it, not a pool waiting forever."""
    pid_file = tmp_path / "dead_worker_pid"
    got = []

    def run():
        for result in ordered_map(pool_work.start, (7, 5, how, str(pid_file)), pool_work.square, range(20), workers=2):
            got.append(result)

    started = time.monotonic()
    with pytest.raises(WorkerDiedError) as error:
        _within(60, run)
    assert time.monotonic() - started < 30
    message = str(error.value)
    assert "\n" not in message and "run the same command to resume" in message, message
    assert f"pid {pid_file.read_text()}, {'exit code 3' if how == 'exit' else 'SIGKILL'}" in message, message
    assert got == [item * item + 7 for item in range(len(got))] and len(got) <= 5  # what came first, in order
    assert multiprocessing.active_children() == []  # the other worker stopped too


def test_local_workers_stop_at_once_when_the_caller_has_enough(two_cores):
    """Closing the results (a caller that has what it needs, or Ctrl-C) ends the workers mid-item, as Pool.terminate did."""
    results = ordered_map(pool_work.start, (0,), pool_work.sleep_after_the_first, range(6), workers=2)
    assert _within(60, lambda: next(results)) == 0
    started = time.monotonic()
    _within(30, results.close)  # the other items sleep for ten minutes
    assert time.monotonic() - started < 15
    assert multiprocessing.active_children() == []


@pytest.fixture(scope="module")
def local_ray():
    """One local 2-CPU Ray instance for the module (ordered_map joins it instead of starting its own)."""
    ray = pytest.importorskip("ray", reason=RAY_MISSING)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    yield
    ray.shutdown()


def _digest(path) -> str:
    digest = hashlib.sha256()
    with EpisodeStore.open(path) as store:
        digest.update(store.episode_ends.tobytes())
        for key in store.step_keys:
            digest.update(key.encode() + np.ascontiguousarray(store.array(key)).tobytes())
        for name in ("seed", "success", "initial_pose", "extra"):
            digest.update(np.asarray(store.meta_column(name)).tobytes())
    return digest.hexdigest()


def _config(n: int) -> GenerationConfig:
    return GenerationConfig(n=n, seed=3, domain=load_domain("sim", ["render.image_size=32"]))


def test_ray_generates_the_same_store_as_the_local_backend(tmp_path, local_ray):
    local = generate(_config(3), tmp_path / "local.zarr", workers=1, progress=False)
    remote = generate(_config(3), tmp_path / "ray.zarr", workers=2, progress=False, backend="ray")
    assert local.stored == remote.stored == 3 and not remote.interrupted
    assert _digest(tmp_path / "local.zarr") == _digest(tmp_path / "ray.zarr")  # actions, states, images, meta


def test_ray_evaluates_the_same_trials_as_the_local_backend(tmp_path, local_ray):
    spec = RolloutSpec(policy="random", ckpt=None, domain="target", domain_overrides=(), seed=0, videos=1,
                       video_dir=str(tmp_path), device="cpu", max_steps=10)  # fmt: skip
    local = run_trials(spec, trials=3, workers=1, progress=False)
    video = (tmp_path / "trial_000.mp4").read_bytes()
    (tmp_path / "trial_000.mp4").unlink()
    remote = run_trials(spec, trials=3, workers=2, progress=False, backend="ray")
    strip = lambda rs: [{k: v for k, v in r.items() if k != "wall_time"} for r in rs]  # noqa: E731
    assert strip(local) == strip(remote) and len({r["final_position_error"] for r in remote}) == 3
    assert (tmp_path / "trial_000.mp4").read_bytes() == video  # encoded by the actor, written by the driver


def test_a_task_whose_worker_dies_is_retried(tmp_path, local_ray):
    marker = tmp_path / "died"

    def init(offset):
        globals()["OFFSET"] = offset

    def work(item):
        if item == 2 and not marker.exists():
            marker.write_text("once")
            os._exit(1)  # the actor's process dies mid-task
        return item * item + globals()["OFFSET"]

    assert list(ordered_map(init, (7,), work, range(5), workers=2, backend="ray")) == [7, 8, 11, 16, 23]
    assert marker.exists()


def test_an_interrupted_ray_run_leaves_a_store_that_resumes_to_the_same_episodes(tmp_path, local_ray, monkeypatch):
    out = tmp_path / "ray.zarr"
    appended = []
    original = EpisodeStore.append_episode

    def append_then_interrupt(self, episode, meta):
        index = original(self, episode, meta)
        appended.append(index)
        if len(appended) == 2:
            raise KeyboardInterrupt  # Ctrl-C in the driver, just after a commit
        return index

    monkeypatch.setattr(EpisodeStore, "append_episode", append_then_interrupt)
    first = generate(_config(4), out, workers=2, progress=False, backend="ray")
    assert first.interrupted and first.stored == 2
    monkeypatch.setattr(EpisodeStore, "append_episode", original)
    resumed = generate(_config(4), out, workers=2, progress=False, backend="ray")
    assert resumed.stored == 4 and resumed.added == 2
    generate(_config(4), tmp_path / "local.zarr", workers=1, progress=False)
    assert _digest(out) == _digest(tmp_path / "local.zarr")


def test_ctrl_c_on_the_ray_cli_exits_cleanly_and_the_run_resumes(tmp_path):
    pytest.importorskip("ray", reason=RAY_MISSING)
    out = tmp_path / "sim.zarr"
    args = [sys.executable, "-m", "data_gen.gcs", "--n", "4", "--workers", "2", "--image-size", "32",
            "--backend", "ray", "--out", str(out)]  # fmt: skip
    process = stopping.start(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    stopping.wait_for(lambda: stopping.stored_episodes(out) >= 1, process, timeout=180)
    os.kill(process.pid, signal.SIGINT)  # Ctrl-C to the driver
    output, _ = stopping.ended(process, 120, "the ray run went on for 120 s after a Ctrl-C")
    assert process.returncode in (0, 130), output  # 0: it had finished all 4 by then
    assert "Traceback" not in output
    resumed = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    with EpisodeStore.open(out) as store:
        attempts = [store.episode_meta(i).extra["attempt"] for i in range(store.n_episodes)]
    assert len(attempts) == 4 and attempts == sorted(set(attempts))


@pytest.mark.parametrize("argv, message", [
    (["data_gen.gcs", "--n", "2", "--address", "127.0.0.1:1"], "--address needs --backend ray"),
    (["data_gen.gcs", "--n", "2", "--backend", "dask"], "invalid choice: 'dask'"),
    (["eval.rollout", "--policy", "random", "--address", "127.0.0.1:1"], "--address needs --backend ray"),
])  # fmt: skip
def test_bad_backend_options_are_one_line_errors(tmp_path, argv, message):
    result = subprocess.run([sys.executable, "-m", *argv, "--out", str(tmp_path / "x")], capture_output=True, text=True)
    err = result.stderr.strip()
    assert result.returncode == 2 and len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "x").exists()

"""The experiment's arms trained as Ray tasks (``backend: ray``) on a local Ray instance: the same weights and
trials as local processes; a stop, a lost worker, a failing arm, a rerun, and a request no node can meet."""

import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

pytest.importorskip("ray")

import eval.experiment  # noqa: E402
from eval.arm_training_ray import task_options, train_arm_task  # noqa: E402
from eval.experiment import Experiment, main  # noqa: E402
from eval.experiment_config import ExperimentConfig, ExperimentError, TrainingBudget  # noqa: E402
from policies.checkpoint import load_checkpoint  # noqa: E402
from tests import stopping  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "experiments" / "smoke.yaml"
ARMS = ("clean", "cotrain_a0.2")  # a couple of the smoke experiment's arms: no classifier, no sweep to wait for
STORES = ROOT / "docs" / "results" / "cpu" / "run" / "data"  # the CPU run's stores (states): nothing to generate


def _config(path: Path, backend: str, **training) -> Path:
    """experiments/smoke.yaml cut down to ARMS, on the CPU run's stores, one evaluation worker."""
    values = yaml.safe_load(SMOKE.read_text())
    values["arms"] = [arm for arm in values["arms"] if arm["name"] in ARMS]
    values["clean"], values["corrupt"] = {"store": str(STORES / "clean.zarr")}, {"store": str(STORES / "corrupt.zarr")}
    values["evaluation"]["workers"] = 1
    values["training"].update(training)
    values["backend"] = backend
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """A run of the cut-down smoke experiment with its data checked, nothing trained yet."""
    out = tmp_path_factory.mktemp("ray") / "data"
    config = _config(out.parent / "local.yaml", "local")
    Experiment(ExperimentConfig.load(config), out, progress=False).run(("data",))
    return out


def _run(data: Path, at: Path) -> Path:
    shutil.copytree(data, at)
    return at


def test_arms_trained_as_ray_tasks_have_the_weights_and_trials_of_local_processes(data, tmp_path, monkeypatch):
    runs = {}
    for backend in ("ray", "local"):
        run = runs[backend] = _run(data, tmp_path / backend)
        with monkeypatch.context() as patch:
            if backend == "ray":  # no arm may train in a local process; the YAML says local, --backend ray wins
                patch.setattr(eval.experiment, "LocalArms", None)
                assert main([str(_config(tmp_path / "as_local.yaml", "local")), "--out", str(run), "--backend", "ray"]) == 0
                assert yaml.safe_load((run / "experiment.yaml").read_text())["backend"] == "ray"
            else:
                Experiment(ExperimentConfig.load(_config(tmp_path / f"{backend}.yaml", backend)), run, progress=False).run(("train", "eval"))
    ledgers = {backend: json.loads((run / "ledger.json").read_text()) for backend, run in runs.items()}
    for arm in ARMS:
        local, ray = (load_checkpoint(runs[backend] / "arms" / arm / "train" / "ckpt.pt") for backend in ("local", "ray"))
        assert local["step"] == ray["step"] == 30
        for weights in ("model", "ema_model"):
            assert local[weights].keys() == ray[weights].keys()
            assert all(torch.equal(local[weights][key], ray[weights][key]) for key in local[weights]), f"{arm} {weights}"
        trials = {backend: json.loads((run / "arms" / arm / "eval_target" / "results.json").read_text())["per_trial"] for backend, run in runs.items()}
        strip = lambda results: [{k: v for k, v in r.items() if k != "wall_time"} for r in results]  # noqa: E731
        assert len(trials["local"]) == 2 and strip(trials["local"]) == strip(trials["ray"])
        local_entry, ray_entry = ledgers["local"][f"train/{arm}"], ledgers["ray"][f"train/{arm}"]
        assert local_entry["done"] and ray_entry["done"] and ray_entry["seconds"] > 0
        assert local_entry["section"] == ray_entry["section"] and local_entry["threads"] == ray_entry["threads"] == 1


def _ledger_entries(run: Path) -> dict:
    try:
        ledger = json.loads((run / "ledger.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return {arm: ledger[f"train/{arm}"] for arm in ARMS if f"train/{arm}" in ledger}


def _steps(run: Path, arm: str) -> list[int]:
    metrics = run / "arms" / arm / "train" / "metrics.jsonl"
    return [json.loads(line)["step"] for line in metrics.read_text().splitlines()] if metrics.is_file() else []


def _metrics_span(run: Path, arm: str) -> float:
    times = [json.loads(line)["time"] for line in (run / "arms" / arm / "train" / "metrics.jsonl").read_text().splitlines()]
    return times[-1] - times[0]


def _task_pid(run: Path, arm: str) -> int | None:
    """The pid of the Ray worker training ``arm`` (train() writes it into the run directory's lock)."""
    try:
        holder = (run / "arms" / arm / "train" / "train.lock").read_text()
    except OSError:
        return None
    return int(holder.split()[1]) if holder.startswith("pid ") else None


def _runner(config: Path, run: Path, background: bool = False):
    command = [sys.executable, "-m", "eval.experiment", str(config), "--out", str(run), "--stage", "train"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return stopping.start(command, ctrl_c_ignored=background, cwd=ROOT, env=env)


def test_ray_arms_survive_a_lost_worker_stop_on_ctrl_c_and_sigterm_and_a_rerun_continues(data, tmp_path):
    """kill -9 of an arm's Ray worker: the task runs again from its checkpoint. Ctrl-C to the runner: every arm
    stops after its step, saves and keeps its time. The same command again continues from the checkpoints,
    and `kill` (SIGTERM) to a runner started from a script stops it the same way."""
    run = _run(data, tmp_path / "run")
    config = _config(tmp_path / "long.yaml", "ray", steps=10**7, checkpoint_every=10)
    process = _runner(config, run)
    stopping.wait_for(lambda: all(len(_steps(run, arm)) >= 3 for arm in ARMS), process, timeout=900.0)  # past a checkpoint
    lost = _task_pid(run, "clean")
    os.kill(lost, signal.SIGKILL)
    before = _steps(run, "clean")  # all it recorded: its retry has yet to start
    stopping.wait_for(lambda: _task_pid(run, "clean") not in (None, lost) and len(_steps(run, "clean")) > len(before) + 2, process, timeout=900.0)
    resumed = _steps(run, "clean")[len(before)]
    assert 10 <= resumed - 10 <= before[-1], (resumed, before[-5:])  # from its last checkpoint, not afresh
    os.kill(process.pid, signal.SIGINT)
    err = stopping.ended(process, 300, "the runner did not stop within 300 s of a Ctrl-C")[1]
    assert process.returncode == 130 and err.strip().splitlines()[-1].endswith("interrupted; run the same command to resume"), err[-2000:]
    entries = _ledger_entries(run)
    saved = {}
    for arm in ARMS:
        checkpoint = load_checkpoint(run / "arms" / arm / "train" / "ckpt.pt")
        saved[arm] = checkpoint["step"]
        assert not entries[arm]["done"] and entries[arm]["seconds"] > 0 and 0 <= saved[arm] - _steps(run, arm)[-1] < 10
    assert entries["cotrain_a0.2"]["seconds"] >= _metrics_span(run, "cotrain_a0.2")  # (clean's span also holds its retry's start)

    lines = {arm: len(_steps(run, arm)) for arm in ARMS}
    process = _runner(config, run, background=True)
    stopping.wait_for(lambda: all(len(_steps(run, arm)) >= lines[arm] + 2 for arm in ARMS), process, timeout=900.0)
    for arm in ARMS:
        first = _steps(run, arm)[lines[arm]]
        assert saved[arm] < first <= saved[arm] + 10  # from the checkpoint the stop saved
    os.kill(process.pid, signal.SIGTERM)
    err = stopping.ended(process, 300, "the runner did not stop within 300 s of a SIGTERM")[1]
    assert process.returncode == 130 and "Traceback" not in err, err[-2000:]
    for arm in ARMS:
        assert load_checkpoint(run / "arms" / arm / "train" / "ckpt.pt")["step"] >= _steps(run, arm)[-1] > saved[arm]
        assert not _ledger_entries(run)[arm]["done"]


def _alive(pid: int | None) -> bool:
    try:
        return pid is not None and Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def test_a_runner_killed_with_minus_9_leaves_no_arm_training_and_the_same_command_continues(data, tmp_path):
    """kill -9 of the runner: Ray ends the arms' tasks (their owner is gone), no worker trains on into the run
    directory, and the same command continues every arm from its last checkpoint."""
    run = _run(data, tmp_path / "run")
    config = _config(tmp_path / "long.yaml", "ray", steps=10**7, checkpoint_every=10)
    process = _runner(config, run)
    stopping.wait_for(lambda: all(len(_steps(run, arm)) >= 3 for arm in ARMS), process, timeout=900.0)  # past a checkpoint
    workers = {arm: _task_pid(run, arm) for arm in ARMS}
    assert all(_alive(pid) for pid in workers.values()), workers
    os.kill(process.pid, signal.SIGKILL)  # the runner alone, as `kill -9 PID`
    process.wait()
    deadline = time.monotonic() + 120
    while any(_alive(pid) for pid in workers.values()):
        assert time.monotonic() < deadline, f"arms still training 120 s after their runner died: {workers}"
        time.sleep(0.5)
    saved = {arm: load_checkpoint(run / "arms" / arm / "train" / "ckpt.pt")["step"] for arm in ARMS}
    lines = {arm: len(_steps(run, arm)) for arm in ARMS}
    process = _runner(config, run)  # the directory's lock died with the runner: not refused
    stopping.wait_for(lambda: all(len(_steps(run, arm)) >= lines[arm] + 2 for arm in ARMS), process, timeout=900.0)
    for arm in ARMS:
        assert saved[arm] < _steps(run, arm)[lines[arm]] <= saved[arm] + 10  # from its last checkpoint, not afresh
    os.kill(process.pid, signal.SIGINT)
    err = stopping.ended(process, 300, "the resumed runner did not stop within 300 s of a Ctrl-C")[1]
    assert process.returncode == 130 and "Traceback" not in err, err[-2000:]
    # (seconds are booked every BOOK_EVERY_S and at a stop: kill -9 may lose the last ones, a Ctrl-C books them)
    entries = _ledger_entries(run)
    assert all(not entries[arm]["done"] and entries[arm]["seconds"] > 0 for arm in ARMS), entries


def test_an_arm_that_fails_as_a_ray_task_stops_the_others_and_its_error_is_one_line(data, tmp_path):
    run = _run(data, tmp_path / "run")
    damaged = run / "arms" / "cotrain_a0.2" / "train" / "ckpt.pt"
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"damaged")
    process = _runner(_config(tmp_path / "long.yaml", "ray", steps=10**7, checkpoint_every=10), run)
    err = stopping.ended(process, 900, "the runner trained on after an arm failed")[1]
    assert process.returncode == 2, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert "Traceback" not in err and last.startswith("python -m eval.experiment: error:") and str(damaged) in last, err[-2000:]
    clean, entry = run / "arms" / "clean" / "train", _ledger_entries(run)["clean"]
    assert not entry["done"]
    if (clean / "metrics.jsonl").is_file():  # it had begun training: it stopped after its step, saved, and kept its time
        assert load_checkpoint(clean / "ckpt.pt")["step"] >= max(_steps(run, "clean"), default=1) and entry["seconds"] > 0


def test_a_request_no_node_can_meet_is_a_one_line_error(data, tmp_path, capsys):
    run = _run(data, tmp_path / "run")
    config = _config(tmp_path / "big.yaml", "ray", resources={"cpus": 512})
    assert main([str(config), "--out", str(run), "--stage", "train"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "asks Ray for 512 CPUs and 0 GPUs, and no node of the cluster has that much" in err


def test_backend_flag_replaces_the_yaml_s_backend_before_it_is_checked(tmp_path):
    reserving = _config(tmp_path / "reserving.yaml", "local", resources={"cpus": 2})  # says local, reserves for Ray
    with pytest.raises(ExperimentError, match="training.resources needs backend: ray"):
        ExperimentConfig.load(reserving)
    assert ExperimentConfig.load(reserving, backend="ray").backend == "ray"
    with pytest.raises(ExperimentError) as error:  # the local backend would ignore the reservation: refused
        ExperimentConfig.load(_config(tmp_path / "ray.yaml", "ray", resources={"cpus": 2}), backend="local")
    message = str(error.value)
    assert "with --backend local: " in message and "training.resources needs backend: ray" in message and "\n" not in message


def test_a_task_that_cannot_see_the_run_directory_refuses_in_one_line(tmp_path):
    elsewhere = tmp_path / "not-mounted" / "ledger.json"
    with pytest.raises(ExperimentError) as error:
        train_arm_task("clean", "{}", str(tmp_path / "not-mounted" / "arms" / "clean" / "train"), 1, str(elsewhere), coordinator=None)
    message = str(error.value)
    assert "\n" not in message and "cannot see the run directory" in message and str(elsewhere.parent) in message


def test_an_arm_s_reservation_defaults_to_its_threads_and_a_gpu_with_cuda_and_stays_out_of_the_records():
    budget = TrainingBudget(steps=10, device="cpu")
    assert "resources" not in budget.model_dump(mode="json")  # the ledger's records of earlier runs still match
    assert {k: task_options(budget, 3, cluster_gpus=2)[k] for k in ("num_cpus", "num_gpus")} == {"num_cpus": 3, "num_gpus": 0}
    assert task_options(budget, 3, 2)["runtime_env"]["env_vars"]["OMP_NUM_THREADS"] == "3"
    assert task_options(budget.model_copy(update={"device": "cuda"}), 2, 0)["num_gpus"] == 1
    auto = budget.model_copy(update={"device": "auto"})
    assert task_options(auto, 2, 0)["num_gpus"] == 0 and task_options(auto, 2, 4)["num_gpus"] == 1
    given = TrainingBudget(steps=10, device="cuda", resources={"cpus": 8, "gpus": 0.5})
    assert given.model_dump(mode="json")["resources"] == {"cpus": 8, "gpus": 0.5}
    assert {k: task_options(given, 2, 4)[k] for k in ("num_cpus", "num_gpus")} == {"num_cpus": 8, "num_gpus": 0.5}

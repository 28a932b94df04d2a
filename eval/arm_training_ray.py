"""Training arms as Ray tasks (``backend: ray``): each arm on any node of the cluster with room for it.

One task per arm reserves ``training.resources`` (default: CPUs for the arm's torch threads, a GPU with
device cuda) and trains with ``policies.train`` into the arm's directory, exactly as a local worker
(``eval.arm_training``) would: torch's thread count is the arm's own before anything runs, so the
weights are the same on either backend. The run directory must be on storage every node sees at the
same path; a task that cannot see it (the experiment's ledger there) fails with one line.

A small actor carries the runner's stop request to the tasks (asked after every step, at most every
``STOP_POLL_S``) and their step reports back. A task whose worker or node dies is run again, up to
``TASK_RETRIES`` times, and resumes from its last checkpoint (train() does so by itself); an arm that
fails returns its own exception, which the runner reports in one line.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from pathlib import Path

from data_gen.backends import BackendError, connect_ray
from eval.arm_training import Outcome, checkpoint_step
from eval.experiment_config import ExperimentError, TrainingBudget

TASK_RETRIES = 3  # a task whose worker or node died runs again (from its checkpoint) this many times
STOP_POLL_S = 0.5  # a task asks the runner's stop request at most this often (a step may take milliseconds)


def task_options(budget: TrainingBudget, threads: int, cluster_gpus: float) -> dict:
    """The Ray options of one arm's task: its reservation, retries, and torch's threads from the start."""
    resources = budget.resources
    if resources.gpus is not None:
        gpus = resources.gpus
    else:  # as device auto picks cuda wherever there is one
        gpus = 1 if budget.device == "cuda" or (budget.device == "auto" and cluster_gpus > 0) else 0
    return {
        "num_cpus": resources.cpus or threads, "num_gpus": gpus, "max_retries": TASK_RETRIES, "retry_exceptions": False,
        "runtime_env": {"env_vars": {"OMP_NUM_THREADS": str(threads)}},  # Ray would set it to the task's CPUs
    }  # fmt: skip


def train_arm_task(name: str, config_json: str, out: str, threads: int, ledger: str, coordinator):
    """One arm's training in a Ray worker; returns (name, step, interrupted, seconds, attempt)."""
    if not Path(ledger).is_file():
        raise ExperimentError(
            f"arm {name}: Ray node {socket.gethostname()} cannot see the run directory {Path(ledger).parent} (no {Path(ledger).name} "
            "there); put --out on storage every node mounts at the same path"
        )
    import ray
    import torch

    from policies.config import RunConfig
    from policies.train import train

    torch.set_num_threads(threads)  # the arm's own, fixed when it first started (eval.experiment)
    attempt = uuid.uuid4().hex  # a retried task is a new attempt: its seconds add to the last one's
    started = time.perf_counter()
    coordinator.report.remote(name, attempt, checkpoint_step(Path(out)), 0.0)  # it runs
    asked = {"at": float("-inf"), "stop": False}

    def should_stop() -> bool:
        if not asked["stop"] and time.monotonic() - asked["at"] >= STOP_POLL_S:
            try:
                asked["stop"] = ray.get(coordinator.stopped.remote())
            except ray.exceptions.RayError:  # the runner is gone: save and end
                asked["stop"] = True
            asked["at"] = time.monotonic()
        return asked["stop"]

    def report(step: int, total: int) -> None:
        coordinator.report.remote(name, attempt, step, time.perf_counter() - started)

    if should_stop():  # asked before this arm began: it does not begin
        return name, checkpoint_step(Path(out)), True, 0.0, attempt
    result = train(RunConfig.from_json(config_json), out, progress=False, on_log=report, should_stop=should_stop)
    return name, result.step, result.interrupted, time.perf_counter() - started, attempt


class Coordinator:
    """The runner's stop request, which the tasks ask, and the step reports they send it (a Ray actor)."""

    def __init__(self):
        self._stopped, self._reports = False, []

    def stop(self) -> None:
        self._stopped = True

    def stopped(self) -> bool:
        return self._stopped

    def report(self, name: str, attempt: str, step: int, seconds: float) -> None:
        self._reports.append((name, attempt, step, seconds))

    def take(self) -> list[tuple[str, str, int, float]]:
        reports, self._reports = self._reports, []
        return reports


class RayArms:
    """Arms trained as Ray tasks; the runner's handle on them is the same as on ``LocalArms``.

    ``address`` (or RAY_ADDRESS) joins a running cluster; without one, a local Ray instance with
    ``local_cpus`` CPUs is started here and shut down by ``close``.
    """

    def __init__(self, address: str | None, ledger: Path, budget: TrainingBudget, local_cpus: int):
        try:
            import ray
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
        except ImportError:
            raise BackendError("backend ray needs Ray: pip install -e '.[ray]'") from None
        self._ray, self._ledger, self._budget = ray, ledger, budget
        self._started_here = not ray.is_initialized()
        if self._started_here:
            connect_ray(address or os.environ.get("RAY_ADDRESS"), local_cpus)  # SIGTERM stays the runner's
        self._nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
        self._cluster_gpus = sum(resources.get("GPU", 0) for resources in self._nodes)
        # Beside the runner (no CPU of the arms'), so the tasks' reports and stop requests stay on this node.
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
        self._coordinator = ray.remote(num_cpus=0, scheduling_strategy=here)(Coordinator).remote()
        self._task = ray.remote(max_calls=1)(train_arm_task)  # a fresh process per arm, as a local worker is
        self._refs: dict = {}  # task ref -> arm name
        self._started: set[str] = set()
        self._unread: list[tuple[str, int, float]] = []  # reports taken from the actor, not yet handed to the runner
        self._seconds: dict[str, tuple[str | None, float, float]] = {}  # arm -> (attempt, earlier attempts' seconds, its seconds)
        self._stopping = False

    def submit(self, name: str, config_json: str, out: str, threads: int) -> None:
        options = task_options(self._budget, threads, self._cluster_gpus)
        cpus, gpus = options["num_cpus"], options["num_gpus"]
        if not any(node.get("CPU", 0) >= cpus and node.get("GPU", 0) >= gpus for node in self._nodes):
            raise ExperimentError(
                f"arm {name} asks Ray for {cpus} CPUs and {gpus} GPUs, and no node of the cluster has that much; "
                "set training.resources (or training.threads) to what a node has"
            )
        ref = self._task.options(**options).remote(name, config_json, out, threads, str(self._ledger), self._coordinator)
        self._refs[ref] = name
        self._seconds.setdefault(name, (None, 0.0, 0.0))

    @property
    def pending(self) -> bool:
        return bool(self._refs)

    def running(self) -> list[str]:
        return sorted(name for name in self._refs.values() if name in self._started)

    def wait(self, timeout: float) -> list[tuple[str, Outcome]]:
        """The arms that ended within ``timeout`` seconds, with their outcomes."""
        ray = self._ray
        ready, _ = ray.wait(list(self._refs), num_returns=1, timeout=timeout)
        if ready:
            ready, _ = ray.wait(list(self._refs), num_returns=len(self._refs), timeout=0)
        return [self._outcome(ref) for ref in ready]

    def reports(self) -> list[tuple[str, int, float]]:
        """(arm, step, seconds it has trained, over all its attempts) reported since the last call."""
        self._take_reports()
        found, self._unread = self._unread, []
        return found

    def _take_reports(self) -> None:
        for name, attempt, step, seconds in self._ray.get(self._coordinator.take.remote()):
            self._started.add(name)
            self._unread.append((name, step, self._total_seconds(name, attempt, seconds)))

    def stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        self._coordinator.stop.remote()  # every arm stops after its step and saves; one not started yet does not start
        self._take_reports()  # (so an arm that began a moment ago is not taken for one still waiting for room)
        for ref, name in self._refs.items():
            if name not in self._started:  # waiting for room on the cluster, which may take hours: given up
                self._ray.cancel(ref)

    def close(self) -> None:
        """Stop every arm still training, wait until each has saved, and end the local Ray instance if it was started here."""
        ray = self._ray
        try:
            if self._refs:
                self.stop()
                ray.wait(list(self._refs), num_returns=len(self._refs))
            ray.kill(self._coordinator)
        finally:
            if self._started_here:
                ray.shutdown()

    def _outcome(self, ref) -> tuple[str, Outcome]:
        ray, name = self._ray, self._refs.pop(ref)
        try:
            _, step, interrupted, seconds, attempt = ray.get(ref)
        except ray.exceptions.TaskCancelledError:
            return name, None
        except ray.exceptions.RayTaskError as error:  # the arm's own exception, as a local worker would raise it
            cause = error.cause
            if isinstance(cause, KeyboardInterrupt):  # cancelled as it began
                return name, None
            if isinstance(cause, Exception) and not isinstance(cause, ray.exceptions.RayError):
                return name, cause
            return name, ExperimentError(f"arm {name}: {' '.join(str(cause).split())[:300]}")
        except ray.exceptions.RayError as error:  # its worker or node died, and so did its retries
            return name, ExperimentError(
                f"arm {name}: its Ray task was lost {TASK_RETRIES + 1} times ({type(error).__name__}); run the same command "
                "to resume from its checkpoint"
            )
        return name, (step, interrupted, self._total_seconds(name, attempt, seconds))

    def _total_seconds(self, name: str, attempt: str, seconds: float) -> float:
        current, earlier, last = self._seconds[name]
        if attempt != current:  # a retry after its worker or node died: it counts from zero again
            earlier, last = earlier + last, 0.0
        last = max(last, seconds)
        self._seconds[name] = (attempt, earlier, last)
        return earlier + last

"""Training workers of the experiment: spawned processes that train one arm each with ``policies.train``.

Torch's thread count is set before anything runs in a worker (the run's cores divided among the arms
trained at once), a Ctrl-C reaches a worker only as the runner's stop event, and each reports its
steps on a queue; the runner books the seconds. ``LocalArms`` is the runner's handle on these
workers; ``eval.arm_training_ray.RayArms`` is the same handle on Ray tasks (``backend: ray``).
"""

from __future__ import annotations

import ctypes
import json
import multiprocessing
import os
import signal
import time
from concurrent.futures import FIRST_COMPLETED, CancelledError, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from queue import Empty
from typing import Any

import numpy as np

from eval.experiment_config import ExperimentError

_WORKER: dict[str, Any] = {}  # a training worker's progress queue and the runner's stop event

# What an arm's training came to: (step, interrupted, seconds) when it returned, the exception it
# failed with, or None when it was stopped before it began.
Outcome = tuple[int, bool, float] | BaseException | None


class LocalArms:
    """Arms trained in spawned processes on this machine, ``parallel`` at a time.

    The runner submits every arm, then asks ``wait`` for arms that ended and ``reports`` for the
    steps of those still training; ``stop`` asks each arm to stop after its step and save, and an arm
    not begun yet not to begin; ``close`` waits for them.
    """

    def __init__(self, parallel: int, threads: int):
        context = multiprocessing.get_context("spawn")
        # Handed to the workers as they start: their progress reports, and the runner's stop request.
        self._queue, self._stop = context.Queue(), context.Event()
        self._pool = ProcessPoolExecutor(parallel, context, init_train_worker, (threads, self._queue, self._stop))
        self._futures: dict[Future, str] = {}
        self._names: list[str] = []

    def submit(self, name: str, config_json: str, out: str, threads: int) -> None:
        self._futures[self._pool.submit(train_arm, name, config_json, out, threads)] = name
        self._names.append(name)

    @property
    def pending(self) -> bool:
        return bool(self._futures)

    def running(self) -> list[str]:
        return sorted(name for future, name in self._futures.items() if future.running())

    def wait(self, timeout: float) -> list[tuple[str, Outcome]]:
        """The arms that ended within ``timeout`` seconds, with their outcomes."""
        done, _ = wait(list(self._futures), timeout=timeout, return_when=FIRST_COMPLETED)
        ended = []
        for future in done:
            name = self._futures.pop(future)
            try:
                _, step, interrupted, seconds = future.result()
                ended.append((name, (step, interrupted, seconds)))
            except CancelledError:
                ended.append((name, None))
            except BrokenProcessPool:  # every arm's future says so: it is not this arm's fault
                ended.append((name, ExperimentError(
                    f"a training process died (out of memory?), and the pool stopped the arms {sorted(self._names)} "
                    "without saving their last steps; run the same command to resume from their checkpoints"
                )))  # fmt: skip
            except Exception as error:
                ended.append((name, error))
        return ended

    def reports(self) -> list[tuple[str, int, float]]:
        """(arm, step, seconds it has trained) reported since the last call."""
        return drain(self._queue)

    def stop(self) -> None:
        if not self._stop.is_set():
            self._stop.set()  # every arm stops after its step and saves; one not started yet does not start
            for future in self._futures:
                future.cancel()

    def close(self) -> None:
        self._stop.set()  # after an error in the runner, too: the arms save and end, rather than train on
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._queue.close()


def init_train_worker(threads: int, progress, stop) -> None:
    # A worker never takes a Ctrl-C itself: the runner passes it on as the stop event, which train() asks
    # after every step. So a second Ctrl-C never forces a stop mid-step (a checkpoint of half a step).
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    # A SIGTERM to the whole run (timeout, a scheduler) reaches the workers too: each saves and stops, as
    # train() does with one while it trains; noted here, it also stops an arm still loading its data.
    signal.signal(signal.SIGTERM, _note_terminate)
    progress.cancel_join_thread()  # an exit never waits on reports nobody reads: the result has the final figures
    _WORKER.update(progress=progress, stop=stop)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    try:  # die with the parent (kill -9 of the runner), so no orphan keeps writing a run directory
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    import torch

    torch.set_num_threads(threads)


def _note_terminate(signum, frame) -> None:
    _WORKER["terminated"] = True


def train_arm(name: str, config_json: str, out: str, threads: int) -> tuple[str, int, bool, float]:
    import torch

    from policies.config import RunConfig
    from policies.train import train

    torch.set_num_threads(threads)  # the arm's own, fixed when it first started (eval.experiment)
    started = time.perf_counter()

    def report(step: int, total: int) -> None:
        try:
            _WORKER["progress"].put((name, step, time.perf_counter() - started))
        except (OSError, ValueError):  # the queue is gone; training goes on and saves
            pass

    def should_stop() -> bool:
        return _WORKER.get("terminated", False) or _WORKER["stop"].is_set()

    if should_stop():  # asked before this arm began: it does not begin
        return name, checkpoint_step(Path(out)), True, 0.0
    result = train(RunConfig.from_json(config_json), out, progress=False, on_log=report, should_stop=should_stop)
    return name, result.step, result.interrupted, time.perf_counter() - started


def drain(queue) -> list:
    found = []
    while True:
        try:
            found.append(queue.get_nowait())
        except Empty:
            return found


def checkpoint_step(run: Path) -> int:
    metrics = run / "metrics.jsonl"
    if not metrics.is_file():
        return 0
    lines = [line for line in metrics.read_text().splitlines() if line.strip()]
    try:
        return int(json.loads(lines[-1])["step"]) if lines else 0
    except (json.JSONDecodeError, KeyError):
        return 0


def train_seconds(run: Path) -> float:
    """Training time of a run from metrics.jsonl: its steps at the median of its windows' measured rates.

    It counts resumed and killed runs too (the ledger sees only calls that returned), and a window
    in which the process was paused (or shared its cores) does not inflate it.
    """
    config = json.loads((run / "config.json").read_text())
    batch = config["training"]["batch_size"]
    steps, rates = 0, []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        steps = max(steps, int(record["step"]))
        rates.append(float(record["samples_per_s"]))
    return steps * batch / max(float(np.median(rates)), 1e-9) if rates else 0.0


def training_summary(run: Path, all_corrupt: bool = False) -> dict[str, float | None]:
    """What an arm's training did, for the report beside its success: the final training loss (mean over
    the last 5% of steps), the corrupt share of its batches (1 - clean_fraction, averaged over training)
    and, from admission.json, the fraction of corrupt windows admissible at a diffusion step, averaged
    over the steps (a dataset-level sigma_min admits none below it). None where a run does not record it.
    all_corrupt: the arm trained on corrupt data alone, as clean (sim_only): its share is 1."""
    last: dict[int, dict] = {}
    metrics = run / "metrics.jsonl"
    for line in metrics.read_text().splitlines() if metrics.is_file() else ():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        last[int(record["step"])] = record  # a resumed run logs some steps again: the last one counts
    steps = sorted(last)
    tail = [last[s]["loss"] for s in steps if s > 0.95 * steps[-1]] if steps else []
    shares = [1.0 - last[s]["clean_fraction"] for s in steps if "clean_fraction" in last[s]]
    admissible = None
    admission_path = run / "admission.json"
    if admission_path.is_file():
        admission = json.loads(admission_path.read_text())
        per_step, windows = admission.get("num_admissible_corrupt_per_step"), admission.get("corrupt_windows")
        if per_step and windows:
            admissible = float(np.mean(per_step) / windows)
    share = 1.0 if all_corrupt else float(np.mean(shares)) if shares else None
    return {"final_loss": float(np.mean(tail)) if tail else None, "corrupt_share": share,
            "admissible_fraction": admissible}

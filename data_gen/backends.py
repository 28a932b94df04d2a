"""Where simulation work runs: in this process, in a local process pool, or on a Ray cluster.

Data generation (one GCS attempt per item) and evaluation (one trial per item) both map a worker
function over items whose results depend only on the item, and the driver alone writes what comes
back (the episode store's atomic commits, ``trials.jsonl``). ``ordered_map`` hides where the work
runs and always yields results in item order, so the same seed gives the same store and the same
per-trial results whatever the backend and the number of workers.

Ray (an optional extra, ``pip install -e '.[ray]'``): one actor per worker builds its
Drake plant (and policy) once with ``init(*init_args)`` and runs items as tasks; a task whose
worker dies is retried on a restarted actor (results depend only on the item, so a retry is
exact); Ctrl-C or SIGTERM in the driver kills the actors, and what the driver committed resumes as
usual. ``address`` (or ``RAY_ADDRESS``) joins a running cluster; without one, a new local Ray instance
with ``workers`` CPUs is started (never one that ``ray start`` left running) and shut down afterwards.

A worker whose ``init`` fails (a domain whose scene cannot be built, say) is an error, never a retry:
the driver raises WorkerStartError, one line, with whatever it had committed kept. A local worker
process that dies mid-item (kill -9, the OOM killer, a crash in Drake) is an error too: the driver
raises WorkerDiedError within moments (never waits for the lost item), and the same command resumes.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

BACKENDS = ("local", "ray")
TASK_RETRIES = 3  # a task on a worker that died runs again on a restarted actor, this many times
IN_FLIGHT_PER_ACTOR = 2  # tasks queued per actor: enough to keep it busy, few to wait for at the end
# Items submitted per local worker ahead of the oldest unfinished one: a slow item (a hard plan) rarely
# leaves the other workers idle, and few results wait in memory for their turn.
AHEAD_PER_WORKER = 4


class BackendError(Exception):
    """A backend that cannot run here (Ray not installed, a cluster that cannot be reached); one line."""


class WorkerStartError(BackendError):
    """A worker whose ``init`` raised: nothing can run there, and starting it again would fail the same way."""


class WorkerDiedError(BackendError):
    """A local worker process that died while running an item (killed, out of memory, a crash): its result is lost."""


def worker_start_error(error: BaseException) -> WorkerStartError:
    """The one-line WorkerStartError for ``init``'s exception ``error``."""
    message = " ".join(str(error).split())[:300] or "no message"
    return WorkerStartError(f"a worker could not start: {message} ({type(error).__name__})")


def check_backend(backend: str) -> None:
    """BackendError unless ``backend`` is known and can run here (before any work starts)."""
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}: use {' or '.join(BACKENDS)}")
    if backend == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise BackendError("--backend ray needs Ray: pip install -e '.[ray]'") from None


def add_backend_arguments(parser) -> None:
    """The --backend and --address options of every command that fans simulation work out."""
    parser.add_argument("--backend", choices=BACKENDS, default="local",
                        help="local: --workers processes; ray: --workers Ray actors (pip install -e '.[ray]')")
    parser.add_argument("--address", default=None, help="with --backend ray: the cluster to join (default: RAY_ADDRESS, else a local instance)")


def check_backend_arguments(backend: str, address: str | None) -> None:
    """BackendError for options that cannot work, before anything is created."""
    if address is not None and backend != "ray":
        raise BackendError("--address needs --backend ray")
    check_backend(backend)


def available_cores() -> int:
    """The cores this process may run on: its CPU affinity (taskset, a container's cpuset) where the OS has one."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def cap_workers(workers: int, backend: str = "local", address: str | None = None) -> int:
    """``workers``, at most the cores available here, with a one-line notice when capped.

    Each worker is a process with its own Drake plant (about 300 MB); more of them than cores only
    share the cores and take the memory. A Ray cluster (an address, or RAY_ADDRESS) runs its actors on
    its own machines, so its workers are not capped; a local Ray instance runs on these cores.
    """
    if backend == "ray" and (address or os.environ.get("RAY_ADDRESS")):
        return workers
    cores = available_cores()
    if workers <= cores:
        return workers
    # On stdout, with the other progress reports: stderr is kept for the one line of an error.
    print(f"notice: --workers {workers} is more than the {cores} core{'s' if cores > 1 else ''} available; using {cores}")
    return cores


def ordered_map(init: Callable[..., None], init_args: tuple, work: Callable[[Any], Any], items: Iterable[Any],
                workers: int = 1, backend: str = "local", address: str | None = None) -> Iterator[Any]:
    """Yield ``work(item)`` for each item, in item order, after ``init(*init_args)`` in each worker.

    init and work are module-level functions (picklable): init builds the worker's state in a
    module global, work uses it. local with one worker runs everything in this process.
    Raises WorkerStartError (an ``init`` that raised) or, locally, WorkerDiedError (a worker process
    that died mid-item): BackendErrors of one line, after the results before them were yielded.
    """
    check_backend(backend)
    items = list(items)
    workers = cap_workers(workers, backend, address)
    if backend == "ray":
        yield from _ray_map(init, init_args, work, items, workers, address)
    elif workers > 1 and len(items) > 1:
        yield from _local_map(init, init_args, work, items, min(workers, len(items)))
    elif items:
        try:
            init(*init_args)
        except Exception as error:
            raise worker_start_error(error) from error
        yield from map(work, items)


def _local_map(init, init_args, work, items, workers) -> Iterator[Any]:
    # An executor, not a multiprocessing Pool: a Pool replaces a worker that died and waits forever for the
    # item it was running (a hang, a core idle); the executor fails every unfinished item at once instead.
    # A worker whose init raised would be just as fatal to either, so it keeps the failure, and its first
    # item raises it here (WorkerStartError), rather than dying.
    executor = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_start_worker, initargs=(init, init_args))
    in_flight: deque = deque()  # futures in item order
    try:
        for item in items:
            if len(in_flight) >= AHEAD_PER_WORKER * workers:
                yield in_flight.popleft().result()
            in_flight.append(executor.submit(_work_if_started, work, item))
        while in_flight:
            yield in_flight.popleft().result()
    except BrokenProcessPool:
        raise _worker_died_error(_stop_workers(executor)) from None
    finally:
        _stop_workers(executor)  # at once, as Pool.terminate did: on Ctrl-C, an error, or a caller that has enough


def _stop_workers(executor: ProcessPoolExecutor) -> list[multiprocessing.Process]:
    """End the executor's workers now (those still running an item included), wait for them, and return them."""
    # ProcessPoolExecutor has no public terminate (Python 3.11): its processes are ended through its private
    # table, read before shutdown() drops it (None once shut down, so a second call does nothing).
    processes = list((executor._processes or {}).values())
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(5)
        if process.is_alive():  # a worker that handles SIGTERM: it holds nothing the driver needs
            process.kill()
            process.join()
    executor.shutdown(wait=True, cancel_futures=True)
    return processes


def _worker_died_error(processes: list[multiprocessing.Process]) -> WorkerDiedError:
    """The one-line WorkerDiedError naming the worker among ``processes`` (all ended) that died first."""
    # The executor, then _stop_workers, end the others with SIGTERM: the first to die is the one that did not
    # (unless SIGTERM was what killed it too, in which case any of them).
    ended = [process for process in processes if process.exitcode is not None]
    dead = next((p for p in ended if p.exitcode != -signal.SIGTERM), ended[0] if ended else None)
    if dead is None:
        which = ""
    elif dead.exitcode < 0:
        which = f"pid {dead.pid}, {_signal_name(-dead.exitcode)}; "
    else:
        which = f"pid {dead.pid}, exit code {dead.exitcode}; "
    return WorkerDiedError(f"a worker process died while running an item ({which}killed, or out of memory?); "
                           "what was finished is kept: run the same command to resume")


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:  # a real-time signal
        return f"signal {number}"


_START_FAILURE: WorkerStartError | None = None  # in a pool worker: why its init failed


def _start_worker(init: Callable[..., None], init_args: tuple) -> None:
    global _START_FAILURE
    try:
        init(*init_args)
    except Exception as error:  # noqa: BLE001 - any failure: the driver reports it, in one line
        _START_FAILURE = worker_start_error(error)


def _work_if_started(work: Callable[[Any], Any], item: Any) -> Any:
    if _START_FAILURE is not None:
        raise _START_FAILURE
    return work(item)


def connect_ray(address: str | None, cpus: int) -> None:
    """Join the Ray cluster at ``address``, or start a new local instance with ``cpus`` CPUs; BackendError in one line.

    ray.init makes SIGTERM end this process at once (``sys.exit(15)``, with a dump from Ray's C++
    threads, and no summary and no last save); the handler this process had (``stops_on_sigterm``,
    which stops as Ctrl-C does) is put back. A SIGTERM during ray.init itself still ends it at once.
    """
    import ray

    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    try:
        if address:
            ray.init(address=address, logging_level="WARNING", log_to_driver=False)
        else:
            # "local": a new instance, never one that `ray start` left running on this machine
            ray.init(address="local", num_cpus=cpus, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    except Exception as error:  # noqa: BLE001 - Ray reports a start that timed out as a bare Exception
        raise BackendError(f"cannot start or reach Ray{f' at {address}' if address else ''}: {' '.join(str(error).split())[:200]}") from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _ray_map(init, init_args, work, items, workers, address) -> Iterator[Any]:
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        connect_ray(address or os.environ.get("RAY_ADDRESS"), workers)

    @ray.remote(num_cpus=1, max_restarts=TASK_RETRIES, max_task_retries=TASK_RETRIES)
    class Worker:
        def __init__(self):
            # As a pool worker (the actor has its own process): a failed start is kept, not raised, since
            # Ray would report it as a dead actor, with a traceback; its first item raises it.
            _start_worker(init, init_args)

        def run(self, item):
            return _work_if_started(work, item)

    # Ray gives an actor OMP_NUM_THREADS=1 (its one CPU); a local worker has the driver's setting (by
    # default, one thread per core). Threaded BLAS sums in another order, and the planner's results
    # would differ in the last bits, so the actors get the driver's setting too.
    threads = os.environ.get("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    options = {"runtime_env": {"env_vars": {"OMP_NUM_THREADS": threads}}}
    actors = [Worker.options(**options).remote() for _ in range(max(1, min(workers, len(items))))] if items else []
    in_flight: deque = deque()  # task refs in item order, at most IN_FLIGHT_PER_ACTOR per actor

    def result(ref):
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as error:
            if isinstance(error.cause, WorkerStartError):  # str(error) would carry the actor's traceback
                raise WorkerStartError(str(error.cause)) from None
            raise

    try:
        for index, item in enumerate(items):
            if len(in_flight) >= IN_FLIGHT_PER_ACTOR * len(actors):
                yield result(in_flight.popleft())
            in_flight.append(actors[index % len(actors)].run.remote(item))
        while in_flight:
            yield result(in_flight.popleft())
    except GeneratorExit:  # the caller has what it needs: let the few tasks in flight end, then stop quietly
        if in_flight:
            ray.wait(list(in_flight), num_returns=len(in_flight), timeout=120)
        raise
    finally:
        for actor in actors:
            ray.kill(actor)
        if started_here:
            ray.shutdown()

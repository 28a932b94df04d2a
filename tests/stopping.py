"""Starting a long command as a terminal or a script would, waiting until it has work to lose, and its end.

The tests that stop a long run (Ctrl-C, `kill`, kill -9) share these so that each waits the same way: a
command that dies or stalls before the moment to signal it fails the test with its stderr, rather than
being signalled late (or after it had finished) and passing or failing for the wrong reason.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from data_gen.episode_store import EpisodeStore


def start(command: list[str], *, ctrl_c_ignored: bool = False, **popen) -> subprocess.Popen:
    """``command`` in a new session (its own process group, as a terminal's job) with text pipes.

    ``ctrl_c_ignored``: as a script's ``cmd &`` starts a job (SIGINT ignored; only ``kill`` reaches it).
    Otherwise SIGINT is back to its default, since a suite started in the background inherits it ignored.
    """
    popen = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "text": True, **popen}
    ctrl_c = signal.SIG_IGN if ctrl_c_ignored else signal.SIG_DFL
    return subprocess.Popen(command, start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, ctrl_c), **popen)


def kill(process: subprocess.Popen) -> None:
    """kill -9 of the process's whole group (it and its workers)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def wait_for(condition, process: subprocess.Popen, timeout: float = 180.0, every: float = 0.2) -> None:
    """Return once ``condition()`` holds; fail the test (after kill -9) if the process ends or ``timeout`` passes first."""
    deadline = time.monotonic() + timeout
    while not condition():
        gone = process.poll() is not None
        if gone and condition():  # it got there, then ended, between the two looks
            return
        if gone or time.monotonic() > deadline:
            kill(process)
            output = process.stderr or process.stdout
            pytest.fail(f"condition not met within {timeout:.0f} s (exit {process.poll()}): {output.read()[-2000:] if output else ''}")
        time.sleep(every)


def ended(process: subprocess.Popen, timeout: float, failure: str) -> tuple[str, str]:
    """The process's (stdout, stderr) once it has ended; the test fails with ``failure`` if it runs on past ``timeout``."""
    try:
        return process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill(process)
        pytest.fail(failure)


def stored_episodes(path: Path) -> int:
    """Episodes a (possibly still being written) store holds; 0 before it exists."""
    try:
        with EpisodeStore.open(path) as store:
            return store.n_episodes
    except Exception:  # noqa: BLE001 - not created yet, or its first write under way
        return 0


def lines(path: Path) -> int:
    """Lines of a file being appended to; 0 before it exists."""
    return len(path.read_text().splitlines()) if path.is_file() else 0

"""Work for the tests of ordered_map's local process pool, in a module its spawned workers import by name.

It imports nothing heavy, so that a worker starts in a moment.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

_SETTINGS: dict = {}


def start(offset: int, die_at: int | None = None, how: str = "exit", pid_file: str | None = None) -> None:
    """The worker's settings: ``square`` adds ``offset``, and its worker dies (``how``: exit or kill -9) at ``die_at``."""
    _SETTINGS.update(offset=offset, die_at=die_at, how=how, pid_file=pid_file)


def square(item: int) -> int:
    """item * item + offset, sooner for later items (so that they finish out of order); at ``die_at`` the worker dies."""
    if item == _SETTINGS["die_at"]:
        Path(_SETTINGS["pid_file"]).write_text(str(os.getpid()))
        if _SETTINGS["how"] == "exit":
            os._exit(3)  # as a crash in native code that ends the process
        os.kill(os.getpid(), signal.SIGKILL)  # as kill -9, or the OOM killer
    time.sleep(0.02 * (3 - item % 4))
    return item * item + _SETTINGS["offset"]


def sleep_after_the_first(item: int) -> int:
    """``item`` at once for item 0, after ten minutes for any other."""
    if item:
        time.sleep(600)
    return item

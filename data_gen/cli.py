"""What every command line of the package shares: one-line errors (exit 2), and how a long run is stopped.

argparse prints a usage block before its error; a user scanning a log (or a test) wants the one line
that says what is wrong, and `--help` still shows the usage. Every entry point builds its parser here.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

# Both ask long work to stop and save: Ctrl-C at a terminal, and what `kill`, `timeout` and job schedulers send.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with errors as one line: ``<prog>: error: <message>`` and exit status 2."""

    def error(self, message: str) -> NoReturn:
        fail(self.prog, message)

    def flags(self) -> dict[str, str]:
        """Each option's destination and its flag, {"batch_size": "--batch-size", ...}: for ``flag_message``."""
        return {action.dest: max(action.option_strings, key=len) for action in self._actions
                if action.option_strings and action.dest != "help"}  # fmt: skip


def fail(prog: str, message: object) -> NoReturn:
    """Print ``<prog>: error: <message>`` on one line of stderr and exit 2."""
    print(f"{prog}: error: {' '.join(str(message).split())}", file=sys.stderr)
    raise SystemExit(2)


# pydantic's bound checks, in the words of a command line.
_BOUNDS = {"greater_than_equal": ("ge", "at least"), "greater_than": ("gt", "greater than"),
           "less_than_equal": ("le", "at most"), "less_than": ("lt", "less than")}  # fmt: skip


def flag_message(error: Any, flags: Mapping[str, str]) -> str:
    """A pydantic ValidationError in a command line's words: '--steps must be at least 1, got 0'.

    A user who typed flags should not have to map a config's field names back to them. flags: field
    name -> flag (``ArgumentParser.flags`` and any field named otherwise); a key may also be a phrase of
    a config's own messages ('contraction=False' -> '--no-contraction'). A field no flag sets keeps its
    dotted name.
    """
    parts = []
    for item in error.errors():
        loc = [str(part) for part in item["loc"]]
        field = next((part for part in reversed(loc) if part in flags), None)
        text = _plain(item)
        if not loc:  # a check across fields, in the config's words: each field it names becomes its flag
            parts.append(_in_flags(text, flags))
        elif field is None:
            parts.append(f"{'.'.join(loc)}: {text}")
        elif item["type"] in ("value_error", "assertion_error"):  # a field validator's words, which may quote others'
            flag = flags[field]
            parts.append(flag + text[len(field):] if re.match(rf"{re.escape(field)}\b", text) else f"{flag}: {text}")
        else:
            parts.append(f"{flags[field]} {text}, got {_shown(item.get('input'))}")
    return "; ".join(parts)


def _plain(item: dict[str, Any]) -> str:
    kind, context = item["type"], item.get("ctx") or {}
    if kind in _BOUNDS and _BOUNDS[kind][0] in context:
        key, words = _BOUNDS[kind]
        return f"must be {words} {context[key]}"
    if kind == "finite_number":
        return "must be a finite number"
    if kind == "literal_error" and "expected" in context:
        return f"must be {context['expected']}"
    message = str(item["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return re.sub(r"^Input should", "should", message)


def _in_flags(text: str, flags: Mapping[str, str]) -> str:
    """Field names in a message replaced by their flags; "method 'ambient'" becomes "--method ambient"."""
    if not flags:
        return text
    names = "|".join(re.escape(name) for name in sorted(flags, key=len, reverse=True))
    pattern = re.compile(rf"(?<![\w-])({names})(?!\w)(?: '([^']*)')?")
    return pattern.sub(lambda m: flags[m[1]] + (f" {m[2]}" if m[2] is not None else ""), text)


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, (tuple, list)):
        return " ".join(_shown(v) for v in value)
    return str(value)


@contextlib.contextmanager
def no_empty_dirs_on_failure(path: Path) -> Iterator[None]:
    """If the body fails, remove the directories it created for ``path`` that are still empty.

    A failed run must not leave an empty output directory for the user to wonder about; a directory
    that existed before, or that holds anything, is never touched.
    """
    path = Path(path).absolute()
    created = [p for p in (path, *path.parents) if not p.exists()]  # deepest first
    try:
        yield
    except BaseException:
        for directory in created:
            try:
                directory.rmdir()
            except OSError:  # absent, or not empty: leave it and its parents
                break
        raise


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def stops_on_sigterm(main: F) -> F:
    """Decorate an entry point so that SIGTERM stops it as Ctrl-C does: KeyboardInterrupt, work saved, resumable.

    A job started from a script with ``cmd &`` has SIGINT ignored (the shell's way of keeping a terminal's
    Ctrl-C off background jobs), so ``kill -INT`` cannot stop it; SIGTERM (``kill``, ``timeout``, a scheduler)
    can. Without this, SIGTERM would end the process at once, without its summary or its last save.
    """

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is not threading.main_thread():
            return main(*args, **kwargs)
        previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            return main(*args, **kwargs)
        finally:
            signal.signal(signal.SIGTERM, previous)

    return wrapper  # type: ignore[return-value]


class StopOnInterrupt:
    """While active, a Ctrl-C or SIGTERM (or another of ``signals``) only asks long work to stop at its next safe point.

    The work asks ``requested`` after each unit (a training step) and ends there, saving, so an
    interrupted run resumes where it stopped. With ``force`` a second signal raises KeyboardInterrupt
    (a user at a terminal who means it); without, more signals change nothing (a runner whose workers
    must save first; kill -9 still stops at once). Signal handlers exist only in the main thread:
    elsewhere this records nothing and ``request()`` is the only way to ask.
    """

    def __init__(self, signals: tuple[signal.Signals, ...] = STOP_SIGNALS, *, force: bool = True):
        self.requested = False
        self._signals = signals
        self._force = force
        self._previous: dict[signal.Signals, Any] = {}

    def request(self) -> None:
        self.requested = True

    def _handle(self, signum, frame) -> None:
        if self.requested and self._force:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> StopOnInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = {signum: signal.signal(signum, self._handle) for signum in self._signals}
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}


@contextlib.contextmanager
def ignoring_interrupts() -> Iterator[None]:
    """SIGINT ignored while child processes are started: they inherit it, until they block it themselves.

    A Ctrl-C in this window (the milliseconds it takes to start them) is missed by this process too.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)

"""What every command line of the package shares: a bad option is one line on stderr and exit 2.

argparse prints a usage block before its error; a user scanning a log (or a test) wants the one line
that says what is wrong, and `--help` still shows the usage. Every entry point builds its parser here.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with errors as one line: ``<prog>: error: <message>`` and exit status 2."""

    def error(self, message: str) -> NoReturn:
        fail(self.prog, message)


def fail(prog: str, message: object) -> NoReturn:
    """Print ``<prog>: error: <message>`` on one line of stderr and exit 2."""
    print(f"{prog}: error: {' '.join(str(message).split())}", file=sys.stderr)
    raise SystemExit(2)


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

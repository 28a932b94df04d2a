"""An exclusive lock file, held by one process at a time; the kernel drops it when the holder dies.

Two writers on one episode store, or two experiment runners on one output directory, would interleave
their writes and silently lose data. flock needs no clean-up after kill -9 (a pid file would), and the
file records who holds it, for the error the second process prints.
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path


class Locked(Exception):
    """The lock is held by another process; ``holder`` says which (``pid N on HOST``)."""

    def __init__(self, path: Path, holder: str):
        super().__init__(f"{path}: held by {holder}")
        self.path, self.holder = path, holder


class FileLock:
    """An exclusive flock on ``path``, taken without waiting; ``release()`` (or the holder's death) frees it."""

    def __init__(self, path: Path, fd: int):
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, path: Path):
        """Take the lock or raise Locked at once."""
        path = Path(path)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise Locked(path, holder) from None
            # The previous holder may have unlinked the file between our open and flock; then our
            # lock is on a dead inode and we must retry on the current file.
            try:
                same_file = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same_file = False
            if same_file:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode(), 0)
                return cls(path, fd)
            os.close(fd)

    @staticmethod
    def holder(path: Path) -> str | None:
        """Who holds the lock (its recorded pid), or None if nobody does. Takes nothing."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
        finally:
            os.close(fd)  # closing drops a shared lock we may have taken
        return None

    def release(self) -> None:
        if self._fd is not None:
            self.path.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()

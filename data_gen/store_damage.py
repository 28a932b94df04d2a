"""Finding damage in an episode store, and turning zarr's and the file system's errors into one line.

Kept apart from ``data_gen.episode_store`` (which calls these checks on open and on every read) so that
the store's operations read in one sitting; importers outside ``data_gen`` use ``episode_store``.

Crash safety: an append writes the step arrays, the per-episode metadata and ``meta/episode_ends``,
then commits by rewriting the root attribute ``committed`` ({"episodes": E, "steps": N}). Every zarr
file write is an atomic rename, so a writer killed at any point (kill -9, not power loss: nothing is
fsynced) leaves at most some uncommitted steps and rows past the committed ones. Readers never see
them; opening in append mode trims them, and nothing else: the commit record and
``meta/episode_ends`` check each other, so a damaged ends chunk (which reads as zeros) or a
non-increasing end is a StoreError that changes nothing on disk, never a "crash tail" to cut off.
Format 1-2 stores have no commit record: their ends must all be strictly increasing; opening one in
append mode adds the record (and makes it format 3).

Damage: every chunk covering the committed range must exist (zarr reads a missing chunk as zeros);
open checks that, and new arrays end in a crc32c codec, so a damaged chunk fails its checksum when
read (append-mode open verifies every checksummed chunk before anything is written). Either is a
StoreError naming the array and the steps and episodes the chunk holds. Every chunk is written even
when it holds only fill values, so a missing one is always damage.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import errno
import itertools
import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import google_crc32c
import numpy as np
import zarr
from zarr.codecs import Crc32cCodec

from data_gen.store_format import StoreError


@contextlib.contextmanager
def store_errors(path: Path, key: str | None = None) -> Iterator[None]:
    """Turn any exception from zarr or the file system into a one-line StoreError naming the path."""
    try:
        yield
    except StoreError:
        raise
    except Exception as error:
        settle_zarr_io()
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            raise StoreError(f"{path}: no space left on device (committed episodes are intact)") from None
        if isinstance(error, OSError) and error.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
            raise StoreError(f"{path}: cannot write: {error.strerror}") from None
        if isinstance(error, KeyError) and key is not None:
            detail = f"missing {key}"
        else:
            where = f"{key}: " if key else ""
            detail = f"{where}{one_line(error)}"
        # from None: the caller gets one line, not a traceback through zarr's internals.
        raise StoreError(f"{path}: damaged episode store ({detail})") from None


def forget_unstarted_zarr_io() -> None:
    """At exit: drop zarr's IO loop if a signal stopped the process between creating its thread and
    starting it.

    zarr's own exit hook joins that thread, and a thread never started cannot be joined: it printed a
    traceback under the one-line "interrupted" of a run stopped by Ctrl-C at its first zarr call.
    Registered after zarr's hook, so it runs first (atexit runs last-registered first).
    """
    from zarr.core import sync

    thread = sync.iothread[0]
    if thread is None or thread.ident is not None:  # none, or started: zarr's hook stops it
        return
    if sync.loop[0] is not None:
        sync.loop[0].close()
    sync.loop[0] = None
    sync.iothread[0] = None


atexit.register(forget_unstarted_zarr_io)


def settle_zarr_io(timeout: float = 30.0) -> None:
    """Wait (at most ``timeout``) for the tasks a failed zarr call left running to finish.

    zarr writes an array's chunks as concurrent tasks on its own IO loop; when one fails (a full disk),
    the call raises while its siblings still run. Left pending, they are destroyed at interpreter exit
    and asyncio logs "Task was destroyed but it is pending!" under our one-line error.
    """
    from zarr.core.sync import loop as zarr_loop  # zarr's IO loop, created on first use

    io_loop = zarr_loop[0]
    if io_loop is None or not io_loop.is_running():
        return

    async def settle() -> None:
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        if not others:
            return
        await asyncio.wait(others, timeout=timeout)  # not cancelled: another thread's read may own some

    with contextlib.suppress(Exception):  # settling is best effort; the error being reported matters more
        asyncio.run_coroutine_threadsafe(settle(), io_loop).result(timeout + 5)


def one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"


def committed_ends(path: Path, ends: np.ndarray, record: Any) -> np.ndarray:
    """The committed episode ends: those the commit record counts (all of them in format 1-2), which
    must increase strictly from above 0 and end where the record says. Never guesses a crash tail."""
    ends = ends.astype(np.int64)
    if record is not None:
        try:
            episodes, steps = int(record["episodes"]), int(record["steps"])
        except (TypeError, KeyError, ValueError):
            raise StoreError(f"{path}: damaged episode store (malformed commit record {record!r})") from None
        if not 0 <= episodes <= len(ends):
            raise StoreError(
                f"{path}: damaged episode store (the commit record counts {episodes} episodes, "
                f"meta/episode_ends holds {len(ends)}); nothing was changed"
            )
        ends = ends[:episodes]
    previous = np.concatenate([[0], ends[:-1]])
    bad = np.flatnonzero(ends <= previous)
    if len(bad):
        i = int(bad[0])
        hint = "" if record is not None else " or a format 1-2 writer killed while committing"
        raise StoreError(
            f"{path}: damaged episode store (meta/episode_ends not strictly increasing at episode {i}: "
            f"{int(previous[i])} then {int(ends[i])}; a damaged chunk{hint}); nothing was changed"
        )
    if record is not None and (int(ends[-1]) if len(ends) else 0) != steps:
        raise StoreError(
            f"{path}: damaged episode store (meta/episode_ends ends at {int(ends[-1]) if len(ends) else 0} "
            f"but the commit record says {steps} steps); nothing was changed"
        )
    return ends


# --------------------------------------------------------------------------------------------------
# Chunks: every committed one on disk, each checksum right, each read naming what a damaged one holds


def chunk_extent(key: str, array: zarr.Array, chunk: int, ends: np.ndarray | None = None) -> str:
    """What chunk ``chunk`` (along the first axis) of ``key`` holds, for error messages; with the
    committed episode ends, a step array's chunk names its episodes too."""
    length = array.chunks[0]
    first, last = chunk * length, min((chunk + 1) * length, array.shape[0]) - 1
    if not key.startswith("data/"):
        return f"episodes {first}-{last}"
    if ends is None:
        return f"steps {first}-{last}"
    episodes = np.searchsorted(ends, [first, last], side="right")
    return f"steps {first}-{last}, episodes {episodes[0]}-{episodes[1]}"


def read_rows(path: Path, key: str, array: zarr.Array, start: int, stop: int, ends: np.ndarray | None = None) -> np.ndarray:
    """Rows start:stop of one array; a damaged chunk is a StoreError naming it and what it holds.

    Step arrays never hold NaN or inf (appends refuse them), so a read that finds one has decoded a
    damaged chunk of an array without a checksum (format 1-2): that is an error too.
    """
    length = array.chunks[0]
    try:
        values = np.asarray(array[start:stop])
    except Exception:
        for chunk in range(start // length, (max(stop, start + 1) - 1) // length + 1):
            try:
                array[chunk * length : min((chunk + 1) * length, array.shape[0])]
            except Exception as error:
                raise StoreError(
                    f"{path}: damaged chunk {chunk} of {key} ({chunk_extent(key, array, chunk, ends)}): {one_line(error)}"
                ) from None
        with store_errors(path, key):
            values = np.asarray(array[start:stop])
    if key.startswith("data/") and values.dtype.kind == "f" and not np.isfinite(values).all():
        chunk = (start + int(np.argwhere(~np.isfinite(values))[0][0])) // length
        raise StoreError(
            f"{path}: damaged chunk {chunk} of {key} ({chunk_extent(key, array, chunk, ends)}): "
            "non-finite values, which no append writes"
        )
    return values


def chunk_files(path: Path, key: str, array: zarr.Array, rows: int) -> Iterator[tuple[int, Path]]:
    """(chunk index along the first axis, file) of every chunk holding the first ``rows`` rows."""
    rest = [range(n) for n in array.cdata_shape[1:]]
    for chunk in range(math.ceil(rows / array.chunks[0])):
        for coords in itertools.product(*rest):
            yield chunk, path / key / array.metadata.encode_chunk_key((chunk, *coords))


def check_chunks_exist(path: Path, arrays: Iterable[tuple[str, zarr.Array, int]], ends: np.ndarray, skip: Iterable[str] = ()) -> None:
    """zarr reads a missing chunk as fill values (zeros): every committed chunk must be on disk.

    arrays: (key, array, committed rows) of each array; skip: keys whose chunks may be absent.
    """
    skip = set(skip)
    for key, array, rows in arrays:
        if key in skip:
            continue
        for chunk, file in chunk_files(path, key, array, rows):
            if not file.is_file():
                raise StoreError(
                    f"{path}: damaged episode store: chunk file {file.relative_to(path)} is missing "
                    f"({chunk_extent(key, array, chunk, ends)}); nothing was changed"
                )


def verify_checksums(path: Path, arrays: Iterable[tuple[str, zarr.Array, int]], ends: np.ndarray) -> None:
    """Check the crc32c of every committed chunk that has one, from its bytes (nothing decoded)."""
    for key, array, rows in arrays:
        if not any(isinstance(codec, Crc32cCodec) for codec in array.compressors):
            continue
        for chunk, file in chunk_files(path, key, array, rows):
            if not file.is_file():  # one a format 1-2 store may skip (the others were checked)
                continue
            data = file.read_bytes()
            if len(data) < 4 or google_crc32c.value(data[:-4]) != int.from_bytes(data[-4:], "little"):
                raise StoreError(
                    f"{path}: damaged episode store: chunk {file.relative_to(path)} fails its checksum "
                    f"({chunk_extent(key, array, chunk, ends)}); nothing was changed"
                )

"""The store's exit hygiene: a run stopped before zarr's IO thread started exits without a traceback."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# A process whose zarr IO loop was created but whose thread never started: what a Ctrl-C landing inside
# zarr's first call leaves (zarr.core.sync._get_loop sets the thread, then starts it).
UNSTARTED_LOOP = textwrap.dedent(
    """
    import asyncio, threading
    {import_line}
    from zarr.core import sync
    new_loop = asyncio.new_event_loop()
    sync.loop[0] = new_loop
    sync.iothread[0] = threading.Thread(target=new_loop.run_forever, name="zarr_io", daemon=True)
    """
)


def exit_stderr(import_line: str) -> str:
    code = UNSTARTED_LOOP.format(import_line=import_line)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stderr


def test_zarr_alone_prints_a_traceback_at_exit_for_an_unstarted_io_thread():
    # The failure the hook exists for; if zarr fixes it, this test says the hook can go.
    assert "cannot join thread before it is started" in exit_stderr("import zarr")


def test_the_store_modules_exit_cleanly_with_an_unstarted_io_thread():
    assert exit_stderr("import data_gen.episode_store") == ""

"""Every damage of a store x every command that reads or writes it: exit 2, one line, nothing changed.

The stores are real (made by ``data_gen.gcs``), damaged the way disks and people damage them, and
handed to the real command lines. A damaged store must never be read as zeros, shortened, or
written to; its files must be byte-identical afterwards.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import zarr

from tests.reliability.cli_runs import assert_one_line_failure, run_cli, tree


def missing_chunk(store: Path) -> None:
    (store / "data" / "action" / "c" / "0" / "0").unlink()


def flipped_bytes(store: Path) -> None:
    chunk = store / "data" / "action" / "c" / "0" / "0"
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0x5A
    chunk.write_bytes(bytes(data))


def bad_ends(store: Path) -> None:
    zarr.open_group(store, mode="r+", use_consolidated=False)["meta/episode_ends"][-1] = 0


def missing_array_metadata(store: Path) -> None:
    (store / "data" / "action" / "zarr.json").unlink()


def missing_root_metadata(store: Path) -> None:
    (store / "zarr.json").unlink()


DAMAGES = [missing_chunk, flipped_bytes, bad_ends, missing_array_metadata, missing_root_metadata]

# Commands given the damaged sim store ({sim}) and an intact target store ({target}).
COMMANDS = {
    "gcs resume": ("data_gen.gcs", ["--n", "4", "--workers", "1", "--image-size", "32", "--seed", "3",
                                    "--out", "{sim}"]),
    "classify": ("policies.classify", ["--clean", "{target}", "--corrupt", "{sim}", "--steps", "5", "--folds", "3"]),
    "train": ("policies.train", ["--clean", "{target}", "--corrupt", "{sim}", "--method", "cotrain", "--obs", "state",
                                 "--preset", "tiny", "--steps", "2", "--out", "out/run"]),
    "analyze": ("eval.analyze", ["--store", "{target}", "--store", "{sim}", "--out", "out/analysis"]),
}


@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
@pytest.mark.parametrize("damage", DAMAGES, ids=[d.__name__ for d in DAMAGES])
def test_a_damaged_store_is_refused_and_left_as_it_was(stores, tmp_path, damage, command):
    damage(stores / "sim.zarr")
    before = tree(stores)
    work = tmp_path / "work"
    work.mkdir()
    module, args = command

    outcome = run_cli(module, [a.format(sim=stores / "sim.zarr", target=stores / "target.zarr") for a in args], work)

    line = assert_one_line_failure(outcome, str(stores / "sim.zarr"))
    assert "damaged" in line or "not a zarr store" in line, line
    assert tree(stores) == before
    assert tree(work) == {}, f"left behind: {sorted(tree(work))}"


def test_an_intact_copy_runs_every_command(stores, tmp_path):
    """The same commands on the undamaged stores succeed: the refusals above are the damage's doing."""
    work = tmp_path / "work"
    work.mkdir()
    for name, (module, args) in COMMANDS.items():
        outcome = run_cli(module, [a.format(sim=stores / "sim.zarr", target=stores / "target.zarr") for a in args],
                          work)
        assert outcome.returncode == 0, (name, outcome.stderr[-2000:])
    shutil.rmtree(work)

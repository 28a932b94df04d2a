"""The reliability suite's inputs: small real stores made by the real generator."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.reliability.cli_runs import run_cli


@pytest.fixture(scope="session")
def made_stores(tmp_path_factory) -> Path:
    """A directory with two small real stores made by ``data_gen.gcs`` (sim and target), kept pristine."""
    root = tmp_path_factory.mktemp("stores")
    for name, extra in [("sim", []), ("target", ["--domain", "target"])]:
        outcome = run_cli("data_gen.gcs", ["--n", "3", "--workers", "1", "--image-size", "32", "--seed", "3",
                                           "--out", str(root / f"{name}.zarr"), *extra], cwd=root)
        assert outcome.returncode == 0, outcome.stderr[-2000:]
    return root


@pytest.fixture
def stores(made_stores, tmp_path) -> Path:
    """Fresh copies of the made stores for one test to damage."""
    copy = tmp_path / "stores"
    shutil.copytree(made_stores, copy)
    return copy

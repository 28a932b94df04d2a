"""Shared fixtures of the policy tests: a small clean and a small corrupt episode store."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.policies.synthetic_stores import make_store

# One intra-op thread: these models are tiny, and OpenMP threads that spin-wait slow down by 10-50x
# when another process holds one of the machine's cores.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def clean_store(tmp_path_factory) -> Path:
    return make_store(tmp_path_factory.mktemp("stores") / "clean.zarr", episodes=3, seed=0)


@pytest.fixture(scope="session")
def corrupt_store(tmp_path_factory) -> Path:
    return make_store(tmp_path_factory.mktemp("stores") / "corrupt.zarr", episodes=5, noise=0.01, seed=1)

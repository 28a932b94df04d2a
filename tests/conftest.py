"""Shared fixtures: envs are costly to build (a Drake Diagram and two renderers), so tests share them."""

import numpy as np
import pytest

import pushing_sim  # noqa: F401  (registers the env)
from pushing_sim.task import TaskConfig


@pytest.fixture(scope="session")
def task() -> TaskConfig:
    return TaskConfig()


@pytest.fixture(scope="session")
def goal(task) -> np.ndarray:
    return np.array(task.goal_pose)

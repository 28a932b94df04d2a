"""Every experiment config the repository ships loads: the runnable ones in experiments/ and the records
carried under docs/results/, which a user resumes or reruns (``eval.experiment DIR/experiment.yaml``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from eval.experiment_config import ExperimentConfig

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "experiments").glob("*.yaml")) + sorted((ROOT / "docs" / "results").rglob("*.yaml"))


def test_the_repository_ships_the_configs_the_readme_names():
    names = {path.name for path in CONFIGS if path.parent.name == "experiments"}
    assert {"smoke.yaml", "cpu.yaml", "paper.yaml", "controls.yaml", "images.yaml", "scaling.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(ROOT)) for p in CONFIGS])
def test_a_shipped_config_loads_with_its_domains(path):
    config = ExperimentConfig.load(path)  # validation and every domain and override it names
    assert config.arms and config.name
    assert ExperimentConfig.model_validate(config.model_dump(mode="json")) == config  # what a run writes reads back the same

"""The experiment runner given hostile configs and runs (issue 35): one line and exit 2, or the same weights.

Each config case edits experiments/smoke.yaml as a careless user would and runs the real command; the
error must come when the config loads, before any stage has made anything.
"""

from __future__ import annotations

import json
from concurrent.futures import Future
from pathlib import Path

import pytest
import yaml

import eval.arm_training as experiment_module
from eval.experiment import Experiment
from eval.experiment_config import ExperimentConfig, ExperimentError
from tests.reliability.cli_runs import REPO_ROOT, assert_one_line_failure, run_cli

SMOKE = REPO_ROOT / "experiments" / "smoke.yaml"


def smoke(**changes) -> dict:
    values = yaml.safe_load(SMOKE.read_text())
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = values
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[last] = value
    return values


# (what a careless user wrote, the word the error line must name)
CONFIG_CASES = [
    (smoke(evaluation__domain="nosuchdomain"), "nosuchdomain"),
    (smoke(evaluation__overrides=["physics.bogus=1"]), "bogus"),
    (smoke(arms__0__eval_domains=["target", "nosuch"]), "nosuch"),
    (smoke(corrupt__domain="elsewhere"), "elsewhere"),
    (smoke(name="../../escaped"), "name"),
    (smoke(name="a/b"), "name"),
    (smoke(training__lr=float("inf")), "lr"),
    (smoke(arms__2__alpha_schedule=[5, 6]), "alpha_schedule"),
]


@pytest.mark.parametrize("values,expected", CONFIG_CASES, ids=[c[1] + str(i) for i, c in enumerate(CONFIG_CASES)])
def test_bad_config_fails_at_load_with_one_line(tmp_path, values, expected):
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump(values))
    outcome = run_cli("eval.experiment", [str(config), "--stage", "eval", "--arms", "gcs_expert"], cwd=tmp_path)
    assert_one_line_failure(outcome, expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]  # no runs/experiments/... made


def test_a_key_given_twice_is_refused(tmp_path):
    config = tmp_path / "twice.yaml"
    config.write_text(SMOKE.read_text() + "data_workers: 5\n")  # smoke.yaml sets data_workers: 2 above
    outcome = run_cli("eval.experiment", [str(config), "--out", "out", "--stage", "data"], cwd=tmp_path)
    line = assert_one_line_failure(outcome, "data_workers")
    assert "twice" in line
    assert not (tmp_path / "out").exists()


def test_an_arm_named_twice_in_arms_is_refused(tmp_path):
    outcome = run_cli("eval.experiment", [str(SMOKE), "--out", "out", "--arms", "sim_only,sim_only", "--stage", "train"], cwd=tmp_path)
    assert_one_line_failure(outcome, "sim_only")
    assert not (tmp_path / "out").exists()


def _finished_run(out: Path) -> Experiment:
    """A run of smoke.yaml whose every stage the ledger books as finished (no stage is actually run)."""
    experiment = Experiment(ExperimentConfig.load(SMOKE), out, progress=False)
    for arm in experiment.all_arms():  # in order: the sigma_min sweep is 'evaluated' before the 'best' arm trains
        if arm.trained:
            experiment.ledger.start(f"train/{arm.name}", experiment.train_section(arm))
            experiment.ledger.finish(f"train/{arm.name}", 1.0)
        for job in experiment.eval_jobs([arm]):
            experiment.ledger.start(job.key, experiment.eval_section(job))
            results = experiment.arm_dir(arm) / job.dirname / "results.json"
            results.parent.mkdir(parents=True, exist_ok=True)
            results.write_text(json.dumps({"success_rate": 0.5, "mean_max_coverage": 0.5}))
            experiment.ledger.finish(job.key, 1.0)
    (out / "experiment.yaml").write_text(experiment.config.to_yaml())
    return experiment


@pytest.mark.parametrize("change,expected", [({"training__steps": 45000}, "steps"), ({"evaluation__trials": 200}, "trials")])
def test_report_refuses_a_config_edited_after_the_run(tmp_path, change, expected):
    out = tmp_path / "run"
    _finished_run(out)
    _finished_run(out).check_unchanged()  # the config it ran with: nothing to refuse
    edited = tmp_path / "edited.yaml"
    edited.write_text(yaml.safe_dump(smoke(**change)))
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    outcome = run_cli("eval.experiment", [str(edited), "--out", str(out), "--stage", "report"], cwd=tmp_path)
    line = assert_one_line_failure(outcome, expected)
    assert "experiment.yaml" in line
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # no results.json claiming the edit


class _RecordingPool:
    """Stands in for the training process pool: records each arm's job and 'trains' it at once."""

    jobs: list[tuple] = []

    def __init__(self, workers, context, initializer, initargs):
        self.default_threads = initargs[0]

    def submit(self, function, name, config_json, out, threads):
        _RecordingPool.jobs.append((name, threads))
        future = Future()
        future.set_result((name, 30, False, 0.5))
        return future

    def shutdown(self, wait=True, cancel_futures=False):
        pass


def test_an_arm_resumed_alone_keeps_the_threads_it_started_with(tmp_path, monkeypatch):
    monkeypatch.setattr(experiment_module, "ProcessPoolExecutor", _RecordingPool)
    _RecordingPool.jobs = []
    out = tmp_path / "run"
    experiment = Experiment(ExperimentConfig.load(SMOKE), out, progress=False)  # parallel: 2
    experiment.cores = 4
    clean, sim_only = experiment.config.arm("clean"), experiment.config.arm("sim_only")
    experiment.ledger.start("train/clean", experiment.train_section(clean))
    experiment.ledger.note("train/clean", threads=2)  # it started beside another arm on these 4 cores
    experiment.cores = 2  # and is resumed, alone, on a 2-core machine
    experiment.train([clean])
    experiment.train([sim_only])  # a new arm alone: cores // parallel, not all the cores
    assert _RecordingPool.jobs == [("clean", 2), ("sim_only", 1)]
    assert [experiment.ledger.entries[f"train/{n}"]["threads"] for n in ("clean", "sim_only")] == [2, 1]
    assert experiment.ledger.finished("train/clean") and experiment.ledger.finished("train/sim_only")


def test_threads_given_in_the_config_are_used(tmp_path, monkeypatch):
    monkeypatch.setattr(experiment_module, "ProcessPoolExecutor", _RecordingPool)
    _RecordingPool.jobs = []
    config = ExperimentConfig.model_validate(smoke(training__threads=3))
    experiment = Experiment(config, tmp_path / "run", progress=False)
    experiment.train([config.arm("clean"), config.arm("sim_only")])
    assert sorted(_RecordingPool.jobs) == [("clean", 3), ("sim_only", 3)]


def test_an_impossible_arm_config_is_one_error_before_anything_runs(tmp_path):
    # alpha and alpha_schedule together: the experiment's model allows it, policies.train's does not
    config = ExperimentConfig.model_validate(smoke(arms__2__alpha_schedule=[0.1, 0.9]))
    with pytest.raises(ExperimentError, match="cotrain_a0.2: .*alpha"):
        Experiment(config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()

"""experiments/controls.yaml, shrunk: corrupt pools with known corruptions, and the protocol (tuning vs held-out
starts, a primary comparison per pool, Holm, replicate seeds), through every stage with real Drake and torch."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from data_gen.corruption import TRUE_ANNOTATION
from data_gen.episode_store import EpisodeStore
from eval.experiment import main
from eval.experiment_config import ExperimentConfig
from pushing_sim.task import TaskConfig, evaluation_initial_poses

ROOT = Path(__file__).resolve().parents[2]
ARMS = ["clean", "ln_cotrain_a0.25", "ln_ambient_true", "ln_ambient_loss_true", "ln_ambient_classifier",
        "bias_cotrain_a0.25", "bias_ambient_s0.3"]  # fmt: skip


def tiny_controls(path: Path) -> Path:
    """The committed controls config with tiny data, budget and evaluation, and two of its pools."""
    values = yaml.safe_load((ROOT / "experiments" / "controls.yaml").read_text())
    values["name"] = "controls-tiny"
    values["clean"].update(n=3, overrides=["render.image_size=32"])
    values["corrupt"] = {pool: {**values["corrupt"][pool], "n": 3, "overrides": ["render.image_size=32"]} for pool in ("label_noise", "bias")}
    values["protocol"]["replicate_seeds"] = [1]
    values["training"].update(steps=30, batch_size=16, warmup_steps=5, checkpoint_every=10)
    values["classifier"] = {"folds": 3, "steps": 60, "eval_every": 20, "batch_size": 64, "channels": 16, "draws": 2, "device": "cpu"}
    values["evaluation"].update(trials=2, max_steps=15, videos=0, workers=1, envs_per_worker=2)
    values["arms"] = [arm for arm in values["arms"] if arm["name"] in ARMS]
    path.write_text(yaml.safe_dump(values))
    return path


# About 6 minutes on 2 idle cores (12 trainings of 30 steps, 26 evaluations of 2 short trials), more when loaded.
pytestmark = pytest.mark.timeout(2400)


@pytest.fixture(scope="module")
def controls(tmp_path_factory):
    root = tmp_path_factory.mktemp("controls")
    config = tiny_controls(root / "controls.yaml")
    out = root / "run"
    assert main([str(config), "--out", str(out)]) == 0
    return ExperimentConfig.load(config), out


def test_the_label_noise_pool_is_its_base_with_noisy_labels_in_the_clean_units(controls):
    config, out = controls
    with EpisodeStore.open(out / "data" / "clean.zarr") as clean:
        actions = clean.array("action").astype(np.float64)
    with EpisodeStore.open(out / "data" / "label_noise.raw.zarr") as base, EpisodeStore.open(out / "data" / "label_noise.zarr") as noisy:
        assert base.n_episodes == noisy.n_episodes == 3
        np.testing.assert_array_equal(base.array("slider_pose"), noisy.array("slider_pose"))
        assert not np.allclose(base.array("action"), noisy.array("action"))
        true = noisy.annotation(TRUE_ANNOTATION)
        assert true.attrs["normalizer"] == {"action_min": actions.min(0).tolist(), "action_max": actions.max(0).tolist()}
        assert 0.1 <= true.sigma_min.min() <= true.sigma_min.max() <= 0.6
    with EpisodeStore.open(out / "data" / "bias.zarr") as bias:
        assert bias.run["corruption"]["kind"] == "bias" and bias.n_episodes == 3
    ledger = json.loads((out / "ledger.json").read_text())
    recovery = ledger["sigma_min/label_noise"]["result"]["recovery"]
    assert recovery["episodes"] == 3 and 0 <= recovery["mean_abs_error"] <= 1
    assert "sigma_min/bias" not in ledger  # no bias arm asks for the classifier


def test_every_arm_normalises_on_the_clean_data_and_takes_its_pool_and_noise_level(controls):
    config, out = controls
    with EpisodeStore.open(out / "data" / "clean.zarr") as clean:
        actions = clean.array("action").astype(np.float64)
    for name in ARMS:
        run = json.loads((out / "arms" / name / "train" / "config.json").read_text())
        assert run["data"]["action_normalizer"] == "clean"
        weights = torch.load(out / "arms" / name / "train" / "ckpt.pt", weights_only=True)["model"]
        np.testing.assert_allclose(weights["normalizer.action_min"].double().numpy(), actions.min(0), rtol=1e-6)
        pool = config.pool(config.arm(name))
        assert run["data"]["corrupt"] == ([str(out / "data" / f"{pool}.zarr")] if pool else [])
    admission = json.loads((out / "arms" / "ln_ambient_true" / "train" / "admission.json").read_text())
    assert admission["sources"]["sigma_min"]["annotation"] == TRUE_ANNOTATION
    loss = json.loads((out / "arms" / "ln_ambient_loss_true" / "train" / "config.json").read_text())["training"]
    assert loss["corrupt_loss"] == "ambient" and loss["contraction"] is False and loss["sigma_min_from"] == TRUE_ANNOTATION


def test_arms_are_chosen_on_the_tuning_starts_and_reported_on_the_held_out_starts(controls):
    config, out = controls
    report = json.loads((out / "results.json").read_text())
    task, n = TaskConfig(), config.evaluation.trials
    for starts, seed, folder in (("tuning", 0, "eval_target"), ("heldout", 1, "eval_target_heldout")):
        trials = json.loads((out / "arms" / "clean" / folder / "results.json").read_text())["per_trial"]
        np.testing.assert_allclose([t["initial_pose"] for t in trials], evaluation_initial_poses(task, n, seed))
        assert {r["eval_seed"] for r in report["arms"] if r["starts"] == starts} == {seed}
    # Per pool, the primary comparison is the best of each method on the tuning starts, measured held out.
    primary = {c["pool"]: c for c in report["primary"]}
    assert set(primary) == {"label_noise", "bias"}
    tuning = report["tuning_success"]
    for pool, chosen in report["primary_choices"].items():
        for role, method in (("treatment", "ambient"), ("control", "cotrain")):
            candidates = [a.name for a in config.arms if a.method == method and config.pool(a) == pool]
            assert chosen[role] in candidates and tuning[chosen[role]] == max(tuning[c] for c in candidates)
        assert (primary[pool]["arm"], primary[pool]["reference"]) == (chosen["treatment"], chosen["control"])
    # The rest: against the pool's best control, with Holm-adjusted p-values at least the raw ones.
    assert report["comparisons"] and all(c["holm_p"] >= c["mcnemar_p"] for c in report["comparisons"])
    assert {(c["arm"], c["pool"]) for c in report["comparisons"]} >= {("clean", "label_noise"), ("clean", "bias")}
    for row in report["arms"]:
        assert {"arm", "corruption", "method", "training_seed", "eval_seed", "successes", "trials"} <= set(row)
    assert "held-out starts" in (out / "results.md").read_text()


def test_the_primary_arms_are_trained_again_under_the_replicate_seeds(controls):
    config, out = controls
    report = json.loads((out / "results.json").read_text())
    chosen = [c for pool in report["primary_choices"].values() for c in pool.values()]
    for name in ["clean", *chosen]:
        replicate = out / "arms" / f"{name}_seed1"
        assert json.loads((replicate / "train" / "config.json").read_text())["training"]["seed"] == 1
        assert (replicate / "eval_target_heldout").is_dir() and not (replicate / "eval_target").exists()
    spread = {s["arm"]: s for s in report["seeds"]}
    assert set(spread) == {"clean", *chosen}
    for s in spread.values():
        assert s["training_seeds"] == [0, 1] and s["mean"] == pytest.approx(np.mean(s["success_rates"]))


def test_a_replicate_can_be_named_once_its_primary_arm_is_chosen(tmp_path):
    """--arms clean_seed1: on the controls run's carried record, where the label-noise pool's primary arms are chosen."""
    import shutil

    from eval.experiment import Experiment
    from eval.experiment_config import ExperimentConfig, ExperimentError

    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "controls"
    shutil.copytree(root / "docs" / "results" / "controls" / "run", out, ignore=shutil.ignore_patterns("data"))
    config = ExperimentConfig.load(root / "experiments" / "controls.yaml")
    experiment = Experiment(config, out, arms=["clean_seed1", "ln_ambient_loss_true_seed2"], progress=False)
    seed1, seed2 = experiment.arms
    assert (seed1.name, seed2.name) == ("clean_seed1", "ln_ambient_loss_true_seed2")
    assert experiment.run_config(seed1).training.seed == 1 and experiment.run_config(seed2).training.seed == 2
    assert experiment.base_arm(seed2).name == "ln_ambient_loss_true"
    with pytest.raises(ExperimentError, match=r"no arm 'bias_cotrain_a0.5_seed1'.*replicates so far: \['clean_seed1', 'clean_seed2', "
                                              r"'ln_ambient_loss_true_seed1', 'ln_ambient_loss_true_seed2', 'ln_cotrain_a0.5_seed1', "
                                              r"'ln_cotrain_a0.5_seed2'\]"):
        Experiment(config, out, arms=["bias_cotrain_a0.5_seed1"], progress=False)

"""experiments/scaling.yaml: nested corrupt pools, the stated primary comparisons, and a shrunk run through every stage."""

import json
from pathlib import Path

import pytest
import yaml

from data_gen.episode_store import EpisodeStore
from eval.experiment import Experiment, main
from eval.experiment_config import ExperimentConfig

ROOT = Path(__file__).resolve().parents[2]
SCALING = ROOT / "experiments" / "scaling.yaml"


def test_the_scaling_config_nests_its_pools_states_its_primaries_and_keeps_the_cpu_run_s_setup(tmp_path):
    config, cpu = ExperimentConfig.load(SCALING), ExperimentConfig.load(ROOT / "experiments" / "cpu.yaml")
    assert config.policy == cpu.policy and config.training == cpu.training
    assert config.clean.model_copy(update={"digest": None}) == cpu.clean
    pools = config.pools
    assert (pools["ds8000"].n, pools["ds2000"].prefix_of, pools["ds2000"].n, pools["ds500"].prefix_of, pools["ds500"].n) == (
        8000, "ds8000", 2000, "ds8000", 500)
    assert pools["ds8000"].model_copy(update={"n": 2000}) == cpu.corrupt  # so its first 2000 are the CPU run's episodes
    ledger = json.loads((ROOT / "docs" / "results" / "cpu" / "run" / "ledger.json").read_text())
    assert pools["ds2000"].digest == ledger["data/corrupt"]["result"]["digest"]
    assert config.clean.digest == ledger["data/clean"]["result"]["digest"]
    # The alpha the config keeps is the best of the CPU run's cotrain arms on its starts (seed 0: the tuning starts).
    results = json.loads((ROOT / "docs" / "results" / "cpu" / "run" / "results.json").read_text())
    cotrain = {r["arm"]: r["success_rate"] for r in results["arms"] if r["arm"].startswith("cotrain_a") and "_seed" not in r["arm"]}
    assert max(cotrain, key=cotrain.get) == "cotrain_a0.25" and results["config"]["seed"] == 0 == config.seed
    for size in ("ds500", "ds2000", "ds8000"):
        arms = {a.name: a for a in config.arms if a.corrupt == size}
        assert {a.method for a in arms.values()} == {"cotrain", "ambient"} and len(arms) == 3
        assert arms[f"{size}_cotrain_a0.25"].alpha == 0.25
        assert arms[f"{size}_ambient_loss"].corrupt_loss == "ambient" and arms[f"{size}_ambient_loss"].sigma_min == 0.15
        assert arms[f"{size}_ambient_s0.15"].corrupt_loss == "denoise"
    assert [(c.arm, c.reference) for c in config.protocol.primary] == [
        (f"{s}_ambient_loss", f"{s}_ambient_s0.15") for s in ("ds500", "ds2000", "ds8000")]
    experiment = Experiment(config, tmp_path / "run", progress=False)
    assert len(experiment.replicate_arms()) == 7 and all(a.seed == 1 for a in experiment.replicate_arms())


def tiny_scaling(path: Path) -> Path:
    values = yaml.safe_load(SCALING.read_text())
    values["name"] = "scaling-tiny"
    values["clean"].update(n=3, overrides=["render.image_size=32"])
    del values["clean"]["digest"]
    values["corrupt"]["ds8000"].update(n=5, overrides=["render.image_size=32"])
    values["corrupt"]["ds2000"] = {"prefix_of": "ds8000", "n": 3}
    values["corrupt"]["ds500"] = {"prefix_of": "ds8000", "n": 2}
    values["protocol"]["primary"] = values["protocol"]["primary"][:1]
    values["policy"] = {"preset": "tiny", "obs_mode": "state"}
    values["training"].update(steps=30, batch_size=16, warmup_steps=5, checkpoint_every=10)
    values["evaluation"].update(trials=2, max_steps=15, videos=0, workers=1, envs_per_worker=2)
    keep = {"clean", "ds500_cotrain_a0.25", "ds500_ambient_s0.15", "ds500_ambient_loss", "ds2000_ambient_loss"}
    values["arms"] = [arm for arm in values["arms"] if arm["name"] in keep]
    path.write_text(yaml.safe_dump(values))
    return path


# About 3 minutes on 2 idle cores (8 trainings of 30 steps, 13 evaluations of 2 short trials).
@pytest.mark.timeout(1800)
def test_a_shrunk_scaling_run_trains_on_its_prefixes_and_reports_its_stated_primary(tmp_path):
    config, out = tiny_scaling(tmp_path / "scaling.yaml"), tmp_path / "run"
    assert main([str(config), "--out", str(out)]) == 0
    with EpisodeStore.open(out / "data" / "ds8000.zarr") as large, EpisodeStore.open(out / "data" / "ds500.zarr") as small:
        assert small.n_episodes == 2 and list(small.episode_ends) == list(large.episode_ends[:2])
    run = json.loads((out / "arms" / "ds2000_ambient_loss" / "train" / "config.json").read_text())
    assert run["data"]["corrupt"] == [str(out / "data" / "ds2000.zarr")] and run["training"]["corrupt_loss"] == "ambient"
    report = json.loads((out / "results.json").read_text())
    (primary,) = report["primary"]
    assert (primary["arm"], primary["reference"], primary["chosen_on"]) == ("ds500_ambient_loss", "ds500_ambient_s0.15", "stated")
    assert {(c["arm"], c["reference"]) for c in report["comparisons"] if c["pool"] == "ds500"} == {
        ("ds500_ambient_loss", "ds500_cotrain_a0.25"), ("ds500_ambient_s0.15", "ds500_cotrain_a0.25"), ("clean", "ds500_cotrain_a0.25")}
    replicated = {s["arm"] for s in report["seeds"]}
    assert replicated == {"clean", "ds500_ambient_loss", "ds500_ambient_s0.15"}
    markdown = (out / "results.md").read_text()
    assert "stated before the run: `ds500_ambient_loss` vs `ds500_ambient_s0.15`." in markdown
    # The curve over the pools' sizes: each kind of arm at the sizes it was trained on, clean flat.
    assert "| arm kind | 2 demos | 3 demos | 5 demos |" in markdown
    loss_line = next(line for line in markdown.splitlines() if line.startswith("| ambient s0.15 ambient-loss |"))
    assert loss_line.count("%") == 2 and loss_line.endswith("| - |")  # at 2 and 3 demos, not 5
    assert (out / "results_by_size.png").read_bytes()[:4] == b"\x89PNG"

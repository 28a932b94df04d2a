"""The protocol's choices and report on fake evaluations where the tuning and held-out starts disagree."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from eval.experiment import Experiment
from eval.experiment_config import ExperimentConfig, ExperimentError
from eval.protocol import build_protocol_report, holm, protocol_markdown

ROOT = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, **changes) -> ExperimentConfig:
    values = yaml.safe_load((ROOT / "experiments" / "controls.yaml").read_text())
    values["arms"] = [a for a in values["arms"] if a["name"] in ("clean", "ln_cotrain_a0.25", "ln_cotrain_a0.5", "ln_ambient_true",
                                                                 "ln_ambient_classifier", "bias_cotrain_a0.25", "bias_ambient_s0.3")]
    values.update(changes)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(values))
    return ExperimentConfig.load(path)


def _evaluated(experiment: Experiment, name: str, successes: list[bool], heldout: bool = False) -> None:
    """A finished evaluation of ``name`` with these per-trial successes (what the runner leaves behind)."""
    folder = experiment.arm_dir(experiment.config.arm(name)) / ("eval_target_heldout" if heldout else "eval_target")
    folder.mkdir(parents=True, exist_ok=True)
    trials = [{"success": s, "max_coverage": 0.5, "time_to_success": None} for s in successes]
    (folder / "results.json").write_text(json.dumps({"success_rate": float(np.mean(successes)), "mean_max_coverage": 0.5,
                                                     "per_trial": trials}))  # fmt: skip
    key = f"eval/{name}/target" + ("/heldout" if heldout else "")
    experiment.ledger.start(key, {})
    experiment.ledger.finish(key, 1.0)


def test_the_best_arms_are_chosen_on_the_tuning_starts_only_when_all_candidates_are_evaluated(tmp_path):
    experiment = Experiment(_config(tmp_path), tmp_path / "run", progress=False)
    # Tuning: a0.5 best; held out: a0.25 best. The choice must follow the tuning starts.
    _evaluated(experiment, "ln_cotrain_a0.25", [True, False, False, False])
    _evaluated(experiment, "ln_cotrain_a0.25", [True, True, True, True], heldout=True)
    assert experiment.best_of("label_noise", "cotrain") is None  # a0.5 not evaluated yet
    _evaluated(experiment, "ln_cotrain_a0.5", [True, True, False, False])
    _evaluated(experiment, "ln_cotrain_a0.5", [False, False, False, False], heldout=True)
    assert experiment.best_of("label_noise", "cotrain").name == "ln_cotrain_a0.5"
    assert experiment.best_of("bias", "cotrain") is None
    # Replicates: the clean arm from the start, a pool's best once chosen; each under seeds 1 and 2.
    names = {a.name: a for a in experiment.replicate_arms()}
    assert set(names) == {"clean_seed1", "clean_seed2", "ln_cotrain_a0.5_seed1", "ln_cotrain_a0.5_seed2"}
    assert names["ln_cotrain_a0.5_seed2"].seed == 2 and names["ln_cotrain_a0.5_seed2"].alpha == 0.5
    assert experiment.base_arm(names["clean_seed1"]).name == "clean"
    # A replicate chooses nothing: it is evaluated on the held-out starts alone.
    assert [job.key for job in experiment.eval_jobs([names["clean_seed1"]])] == ["eval/clean_seed1/target/heldout"]
    assert [job.key for job in experiment.eval_jobs([experiment.config.arm("clean")])] == [
        "eval/clean/target", "eval/clean/target/heldout"]


def _row(arm, pool, method, successes, starts="heldout", seed=0, base=None):
    n = len(successes)
    return {"arm": arm, "domain": "target", "role": method, "pool": pool, "method": method, "starts": starts,
            "eval_seed": 1 if starts == "heldout" else 0, "training_seed": seed, "replicate": seed != 0,
            "base_arm": base or arm, "corruption": None, "trials": n, "successes": sum(successes),
            "success_rate": sum(successes) / n, "ci95": [0.0, 1.0], "success_by_trial": successes}  # fmt: skip


def test_the_report_compares_held_out_trials_with_holm_and_seed_spread():
    rng = np.random.default_rng(0)
    coin = lambda p: [bool(x) for x in rng.random(60) < p]  # noqa: E731
    cotrain, ambient = coin(0.3), coin(0.8)
    rows = [
        _row("cotrain", "ln", "cotrain", cotrain), _row("ambient", "ln", "ambient", ambient),
        _row("ambient_2", "ln", "ambient", coin(0.5)), _row("clean", None, "clean", coin(0.2)),
        _row("clean_seed1", None, "clean", coin(0.4), seed=1, base="clean"),
        _row("cotrain", "ln", "cotrain", coin(0.9), starts="tuning"),  # tuning rows are never compared
    ]  # fmt: skip
    meta = {"name": "t", "config": {"seed": 0, "evaluation": {"heldout_seed": 1},
                                    "protocol": {"treatment": "ambient", "control": "cotrain"}},
            "primary_choices": {"ln": {"treatment": "ambient", "control": "cotrain"}}}  # fmt: skip
    report = build_protocol_report(rows, "target", meta)
    (primary,) = report["primary"]
    assert (primary["arm"], primary["reference"]) == ("ambient", "cotrain")
    assert primary["difference"] == pytest.approx(np.mean(ambient) - np.mean(cotrain)) and primary["mcnemar_p"] < 0.01
    compared = {c["arm"]: c for c in report["comparisons"]}
    assert set(compared) == {"ambient_2", "clean"}  # not the primaries, the replicate or the tuning rows
    raw = [compared[a]["mcnemar_p"] for a in ("ambient_2", "clean")]
    expected = np.minimum(1, np.maximum.accumulate(np.sort(raw) * np.array([2, 1])))  # Holm by hand, m = 2
    assert sorted(compared[a]["holm_p"] for a in compared) == pytest.approx(expected.tolist())
    (spread,) = report["seeds"]
    assert spread["arm"] == "clean" and spread["training_seeds"] == [0, 1]
    assert spread["sd"] == pytest.approx(np.std(spread["success_rates"], ddof=1))
    markdown = protocol_markdown(report)
    assert "| ln | ambient | cotrain |" in markdown and "held-out starts" in markdown


def test_stated_comparisons_are_the_primaries_and_the_pools_best_controls_stay_the_family_s_reference(tmp_path):
    """A scaling study's question is about given arms (the ambient loss vs the denoising loss): it names them."""
    rng = np.random.default_rng(1)
    coin = lambda p: [bool(x) for x in rng.random(80) < p]  # noqa: E731
    loss, denoise, cotrain = coin(0.7), coin(0.3), coin(0.5)
    rows = [_row("big_loss", "big", "ambient", loss), _row("big_denoise", "big", "ambient", denoise),
            _row("big_cotrain", "big", "cotrain", cotrain), _row("clean", None, "clean", coin(0.2)),
            _row("big_denoise", "big", "ambient", coin(0.9), starts="tuning")]  # fmt: skip
    meta = {"name": "t", "config": {"seed": 0, "evaluation": {"heldout_seed": 1},
                                    "protocol": {"treatment": "ambient", "control": "cotrain"}},
            "primary_choices": {"big": {"treatment": "big_denoise", "control": "big_cotrain"}},
            "stated_primary": [{"arm": "big_loss", "reference": "big_denoise"}]}  # fmt: skip
    report = build_protocol_report(rows, "target", meta)
    (primary,) = report["primary"]  # the stated one, not the tuning starts' best vs best
    assert (primary["arm"], primary["reference"], primary["chosen_on"]) == ("big_loss", "big_denoise", "stated")
    assert primary["difference"] == pytest.approx(np.mean(loss) - np.mean(denoise)) and primary["holm_p"] == primary["mcnemar_p"]
    assert {(c["arm"], c["reference"]) for c in report["comparisons"]} == {
        ("big_loss", "big_cotrain"), ("big_denoise", "big_cotrain"), ("clean", "big_cotrain")}
    markdown = protocol_markdown(report)
    assert "stated before the run: `big_loss` vs `big_denoise`." in markdown and "| big | big_loss | big_denoise |" in markdown
    # The config: the stated arms (and clean) are the replicated ones; names must be trained arms evaluated in target.
    values = yaml.safe_load((ROOT / "experiments" / "controls.yaml").read_text())
    stated = {**values["protocol"], "primary": [{"arm": "ln_ambient_true", "reference": "ln_cotrain_a0.25"}]}
    experiment = Experiment(_config(tmp_path, protocol=stated), tmp_path / "run", progress=False)
    assert [a.name for a in experiment.primary_arms()] == ["clean", "ln_ambient_true", "ln_cotrain_a0.25"]
    assert experiment.expected_primary_arms() == 3
    assert {a.name for a in experiment.replicate_arms()} == {f"{n}_seed{s}" for n in ("clean", "ln_ambient_true", "ln_cotrain_a0.25")
                                                              for s in (1, 2)}  # fmt: skip
    against_clean = {**values["protocol"], "primary": [{"arm": "ln_ambient_true", "reference": "clean"}]}
    experiment = Experiment(_config(tmp_path, protocol=against_clean), tmp_path / "run2", progress=False)
    assert [a.name for a in experiment.primary_arms()] == ["clean", "ln_ambient_true"] and experiment.expected_primary_arms() == 2
    best = values["arms"] + [{"name": "ln_best", "method": "ambient", "corrupt": "label_noise", "sigma_min": "best"},
                             {"name": "ln_s0.3", "method": "ambient", "corrupt": "label_noise", "sigma_min": 0.3}]  # fmt: skip
    with pytest.raises(ExperimentError, match="sigma_min 'best' is chosen during the run"):
        _config(tmp_path, arms=best, protocol={**values["protocol"], "primary": [{"arm": "ln_best", "reference": "clean"}]})
    for bad, message in ((["nope", "clean"], "names 'nope'"), (["clean", "clean"], "with itself")):
        with pytest.raises(ExperimentError, match=message):
            _config(tmp_path, protocol={**values["protocol"], "primary": [{"arm": bad[0], "reference": bad[1]}]})


def test_nested_pools_get_a_curve_of_each_arm_kind_over_the_pools_sizes(tmp_path):
    from eval.experiment_config import Arm
    from eval.protocol import write_protocol_report

    rows = [_row("s_cotrain", "small", "cotrain", [True, False]), _row("b_cotrain", "big", "cotrain", [True, True]),
            _row("s_loss", "small", "ambient", [False, False]), _row("clean", None, "clean", [True, False]),
            _row("s_loss_seed1", "small", "ambient", [True, True], seed=1, base="s_loss"),  # replicates: not on the curve
            _row("b_cotrain", "big", "cotrain", [False, False], starts="tuning")]  # fmt: skip
    kinds = {"s_cotrain": "cotrain a0.25", "b_cotrain": "cotrain a0.25", "s_loss": "ambient s0.15 ambient-loss", "clean": "clean"}
    meta = {"name": "t", "config": {"seed": 0, "evaluation": {"heldout_seed": 1}, "protocol": {"treatment": "ambient", "control": "cotrain"}},
            "primary_choices": {}, "pool_sizes": {"small": 500, "big": 8000}, "arm_kinds": kinds}  # fmt: skip
    report = build_protocol_report(rows, "target", meta)
    write_protocol_report(report, tmp_path)
    markdown = (tmp_path / "results.md").read_text()
    assert "| arm kind | 500 demos | 8000 demos |" in markdown
    assert "| cotrain a0.25 | 50.0% [" in markdown and "| ambient s0.15 ambient-loss | 0.0% [0.0, 100.0] | - |" in markdown
    assert "| clean (no corrupt data) | 50.0%" in markdown
    assert (tmp_path / "results_by_size.png").read_bytes()[:4] == b"\x89PNG"
    # Arm kinds name what differs between arms, not their pool or seed.
    assert Arm(name="x", method="ambient", corrupt="p", sigma_min=0.15, corrupt_loss="ambient", seed=3).kind == "ambient s0.15 ambient-loss"
    assert Arm(name="y", method="cotrain", alpha=0.5).kind == "cotrain a0.5" and Arm(name="z", method="clean").kind == "clean"


def test_holm_matches_its_definition():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([]) == []


def test_protocol_configs_refuse_what_would_mislead(tmp_path):
    with pytest.raises(ExperimentError, match="go together"):
        _config(tmp_path, evaluation={"heldout_seed": None})
    with pytest.raises(ExperimentError, match="go together"):
        _config(tmp_path, evaluation={"heldout_seed": 0})
    values = yaml.safe_load((ROOT / "experiments" / "controls.yaml").read_text())
    clash = values["arms"][:3] + [{**values["arms"][2], "name": "ln_cotrain_a0.25_seed1", "seed": 1}]
    with pytest.raises(ExperimentError, match="named as the protocol's replicates"):
        _config(tmp_path, arms=clash)


def test_a_run_recorded_before_pools_and_protocols_still_matches_its_ledger(tmp_path):
    """docs/results/cpu/run was made before these fields existed: every stage it finished is still finished."""
    run = tmp_path / "cpu"
    shutil.copytree(ROOT / "docs" / "results" / "cpu" / "run", run)
    config = ExperimentConfig.load(ROOT / "experiments" / "cpu.yaml")
    assert yaml.safe_load(config.to_yaml()) == yaml.safe_load((run / "experiment.yaml").read_text())
    experiment = Experiment(config, run, progress=False)
    assert all(experiment.train_done(arm) for arm in config.arms if arm.trained)
    assert all(experiment.ledger.is_done(job.key, experiment.eval_section(job)) for job in experiment.eval_jobs(list(config.arms)))

"""The experiment runner on experiments/smoke.yaml: every stage and arm kind, skipping, refusing stale outputs, resuming."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from data_gen.episode_store import EpisodeStore
from eval.carry import carry
from eval.experiment import Experiment, main
from eval.experiment_config import ExperimentConfig, ExperimentError
from eval.metrics import paired_comparison
from eval.report import build_report
from tests import stopping

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "experiments" / "smoke.yaml"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("experiment") / "smoke"
    assert main([str(SMOKE), "--out", str(out)]) == 0
    return out


def test_the_smoke_experiment_runs_every_stage_and_reports_every_arm(smoke):
    config = ExperimentConfig.load(SMOKE)
    report = json.loads((smoke / "results.json").read_text())
    rows = {(row["arm"], row["domain"]) for row in report["arms"]}
    assert rows == {(arm.name, "target") for arm in config.arms} | {("sim_only", "sim")}
    assert all(row["trials"] == config.evaluation.trials for row in report["arms"])
    # Every arm ran on the same start poses.
    starts = {
        json.dumps([t["initial_pose"] for t in json.loads((smoke / "arms" / arm.name / "eval_target" / "results.json").read_text())["per_trial"]])
        for arm in config.arms
    }
    assert len(starts) == 1
    assert report["best_cotrain"] in {"cotrain_a0.2", "cotrain_a0.5"}
    compared = {c["arm"] for c in report["paired_vs_best_cotrain"]}
    assert compared == {arm.name for arm in config.arms} - {report["best_cotrain"]}
    assert (smoke / "results.png").read_bytes()[:4] == b"\x89PNG" and "| arm |" in (smoke / "results.md").read_text()
    # The classifier's annotation set trains the per-sample arm; the best sweep value the "best" arm.
    with EpisodeStore.open(smoke / "data" / "corrupt.zarr") as store:
        assert "smoke-classifier" in store.annotation_names
    admission = json.loads((smoke / "arms" / "ambient_classifier" / "train" / "admission.json").read_text())
    assert admission["sources"]["sigma_min"]["annotation"] == "smoke-classifier"
    best = json.loads((smoke / "arms" / "ambient_loss_best" / "train" / "config.json").read_text())["training"]
    assert best["sigma_min"] == report["best_sigma_min"]["ambient_loss_best"] in (0.2, 0.5) and best["corrupt_loss"] == "ambient"
    sim_only = json.loads((smoke / "arms" / "sim_only" / "train" / "config.json").read_text())
    assert sim_only["data"]["clean"] == [str(smoke / "data" / "corrupt.zarr")]


def test_a_second_run_skips_finished_stages(smoke, capsys):
    ledger = (smoke / "ledger.json").read_text()
    assert main([str(SMOKE), "--out", str(smoke)]) == 0
    printed = capsys.readouterr().out
    assert "== " not in printed  # no stage ran again
    assert json.loads((smoke / "ledger.json").read_text()) == json.loads(ledger)


def test_a_changed_config_refuses_stale_outputs(smoke, tmp_path, capsys):
    values = yaml.safe_load(SMOKE.read_text())
    values["training"]["steps"] = 31
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(values))
    assert main([str(changed), "--out", str(smoke), "--stage", "train"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "made with another config" in err and "steps 30 -> 31" in err


def test_an_unfinished_evaluation_resumes_its_missing_trials(smoke):
    ledger = json.loads((smoke / "ledger.json").read_text())
    ledger["eval/clean/target"]["done"] = False
    (smoke / "ledger.json").write_text(json.dumps(ledger))
    trials = smoke / "arms" / "clean" / "eval_target" / "trials.jsonl"
    before = json.loads((trials.parent / "results.json").read_text())["per_trial"]
    trials.write_text("\n".join(trials.read_text().splitlines()[:2]) + "\n")  # header + trial 0: killed mid-run
    experiment = Experiment(ExperimentConfig.load(SMOKE), smoke, ["clean"], progress=False)
    experiment.run(("eval",))
    after = json.loads((trials.parent / "results.json").read_text())
    assert after["resumed_trials"] == 1 and experiment.ledger.entries["eval/clean/target"]["done"]
    strip = lambda rs: [{k: v for k, v in r.items() if k != "wall_time"} for r in rs]  # noqa: E731
    assert strip(after["per_trial"]) == strip(before)



def test_an_evaluation_killed_mid_run_keeps_the_time_it_spent_in_the_ledger(smoke, tmp_path, monkeypatch):
    import eval.rollout

    run = tmp_path / "run"
    shutil.copytree(smoke, run)
    ledger = json.loads((run / "ledger.json").read_text())
    del ledger["eval/clean/target"]
    shutil.rmtree(run / "arms" / "clean" / "eval_target")
    (run / "ledger.json").write_text(json.dumps(ledger))
    real = eval.rollout.evaluate

    def killed_after_one_trial(*args, on_result, **kwargs):
        def tick(result):
            on_result(result)
            raise SystemExit(137)  # nothing after the first trial runs, as with kill -9

        return real(*args, on_result=tick, **kwargs)

    monkeypatch.setattr(eval.rollout, "evaluate", killed_after_one_trial)
    with pytest.raises(SystemExit):
        Experiment(ExperimentConfig.load(SMOKE), run, ["clean"], progress=False).run(("eval",))
    entry = json.loads((run / "ledger.json").read_text())["eval/clean/target"]
    trial = json.loads((run / "arms" / "clean" / "eval_target" / "trials.jsonl").read_text().splitlines()[1])
    assert not entry["done"] and entry["seconds"] >= trial["wall_time"] > 0

    monkeypatch.setattr(eval.rollout, "evaluate", real)
    Experiment(ExperimentConfig.load(SMOKE), run, ["clean"], progress=False).run(("eval",))
    resumed = json.loads((run / "ledger.json").read_text())["eval/clean/target"]
    results = json.loads((run / "arms" / "clean" / "eval_target" / "results.json").read_text())
    assert resumed["done"] and results["resumed_trials"] == 1
    assert resumed["seconds"] >= entry["seconds"] + results["wall_time"] * 0.99

def _start_runner(args: list[str], config: Path, run: Path, as_background_job: bool) -> subprocess.Popen:
    """`python -m eval.experiment CONFIG --out RUN ARGS` as a terminal's job, or as a script's `cmd &` (Ctrl-C ignored)."""
    command = [sys.executable, "-m", "eval.experiment", str(config), "--out", str(run), *args]
    return stopping.start(command, ctrl_c_ignored=as_background_job, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})


def _training_run(smoke: Path, tmp_path: Path, before=lambda: None, as_background_job: bool = False):
    """The smoke run with clean and sim_only untrained, and a config whose training would last for hours."""
    run = tmp_path / "run"
    shutil.copytree(smoke, run)
    ledger = json.loads((run / "ledger.json").read_text())
    for arm in ("clean", "sim_only"):
        ledger = {k: v for k, v in ledger.items() if not k.startswith((f"train/{arm}", f"eval/{arm}/"))}
        shutil.rmtree(run / "arms" / arm)
    (run / "ledger.json").write_text(json.dumps(ledger))
    before()
    values = yaml.safe_load(SMOKE.read_text())
    values["training"].update(steps=10**7, checkpoint_every=50)
    config = tmp_path / "long.yaml"
    config.write_text(yaml.safe_dump(values))
    return run, _start_runner(["--arms", "clean,sim_only", "--stage", "train"], config, run, as_background_job)


def _ended(process, timeout: float, failure: str) -> str:
    """The runner's stderr once it has ended; the test fails with ``failure`` if it runs on past ``timeout``."""
    return stopping.ended(process, timeout, failure)[1]


def _train_entries(run: Path) -> dict:
    try:
        ledger = json.loads((run / "ledger.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return {arm: ledger[f"train/{arm}"] for arm in ("clean", "sim_only") if f"train/{arm}" in ledger}


def _metrics_span(run: Path, arm: str) -> float:
    times = [json.loads(line)["time"] for line in (run / "arms" / arm / "train" / "metrics.jsonl").read_text().splitlines()]
    return times[-1] - times[0]


@pytest.mark.parametrize(("to", "signum"), [("group", signal.SIGINT), ("runner", signal.SIGINT), ("group", signal.SIGTERM), ("runner", signal.SIGTERM)],
                         ids=["group-SIGINT", "runner-SIGINT", "group-SIGTERM", "runner-SIGTERM"])
def test_an_interrupted_training_stops_saves_and_books_every_arm(smoke, tmp_path, to, signum):
    """A Ctrl-C of the terminal (the process group) or sent to the runner alone stops both arms; each saves and keeps its time.

    So does SIGTERM: from `kill` to a runner started from a script (`cmd &`: Ctrl-C ignored), or from
    `timeout` or a scheduler to every process of the run.
    """
    run, process = _training_run(smoke, tmp_path, as_background_job=signum == signal.SIGTERM)
    metrics = [run / "arms" / arm / "train" / "metrics.jsonl" for arm in ("clean", "sim_only")]
    stopping.wait_for(lambda: all(stopping.lines(m) >= 3 for m in metrics), process)
    (os.killpg if to == "group" else os.kill)(process.pid, signum)
    err = _ended(process, 120, f"the runner did not stop within 120 s of {signal.Signals(signum).name}")
    assert process.returncode == 130 and err.strip().splitlines()[-1].endswith("interrupted; run the same command to resume")
    entries = _train_entries(run)
    for arm in ("clean", "sim_only"):
        assert not entries[arm]["done"] and entries[arm]["seconds"] >= _metrics_span(run, arm) > 0
        assert (run / "arms" / arm / "train" / "ckpt.pt").is_file()


def test_a_background_runner_stopped_with_sigterm_while_it_evaluates_keeps_its_trials(smoke, tmp_path):
    """`kill` reaches a runner whose Ctrl-C is ignored (started with `cmd &`) also between its training workers' lives."""
    run = tmp_path / "run"
    shutil.copytree(smoke, run)
    ledger = json.loads((run / "ledger.json").read_text())
    (run / "ledger.json").write_text(json.dumps({k: v for k, v in ledger.items() if not k.startswith("eval/clean/")}))
    shutil.rmtree(run / "arms" / "clean" / "eval_target")
    values = yaml.safe_load(SMOKE.read_text())
    values["evaluation"].update(trials=10**4)  # hours of trials
    config = tmp_path / "long.yaml"
    config.write_text(yaml.safe_dump(values))
    process = _start_runner(["--arms", "clean", "--stage", "eval"], config, run, as_background_job=True)
    trials = run / "arms" / "clean" / "eval_target" / "trials.jsonl"
    stopping.wait_for(lambda: stopping.lines(trials) >= 3, process)
    os.kill(process.pid, signal.SIGTERM)
    err = _ended(process, 60, "the runner did not stop within 60 s of a SIGTERM")
    assert process.returncode == 130 and err.strip().splitlines()[-1].endswith("interrupted; run the same command to resume")
    entry = json.loads((run / "ledger.json").read_text())["eval/clean/target"]
    kept = trials.read_text().splitlines()
    assert len(kept) >= 3 and all(json.loads(line) for line in kept)  # every line whole
    assert not entry["done"] and entry["seconds"] > 0


def test_an_arm_that_fails_stops_the_others_and_its_error_is_one_line(smoke, tmp_path):
    damaged = tmp_path / "run" / "arms" / "sim_only" / "train" / "ckpt.pt"
    run, process = _training_run(smoke, tmp_path, before=lambda: damaged.parent.mkdir(parents=True) or damaged.write_bytes(b"damaged"))
    err = _ended(process, 180, "the runner trained on after an arm failed")  # not the hours the other arm's training would take
    assert process.returncode == 2
    last = err.strip().splitlines()[-1]  # above it, only the progress display
    assert "Traceback" not in err and last.startswith("python -m eval.experiment: error:") and str(damaged) in last
    clean = _train_entries(run)["clean"]
    assert not clean["done"] and clean["seconds"] > 0 and (run / "arms" / "clean" / "train" / "ckpt.pt").is_file()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_ctrl_c_while_the_arms_start_stops_them_once_they_can_save(smoke, tmp_path, signum):
    """A Ctrl-C (or a SIGTERM to the whole run) that reaches the workers while they load their data is noted, and they stop after their first step."""
    run, process = _training_run(smoke, tmp_path, as_background_job=signum == signal.SIGTERM)
    runs = [run / "arms" / arm / "train" for arm in ("clean", "sim_only")]
    stopping.wait_for(lambda: all(r.is_dir() for r in runs), process, timeout=180.0)  # train() began: loading, building
    os.killpg(process.pid, signum)
    err = _ended(process, 120, f"the arms trained on after a {signal.Signals(signum).name} that came while they started")
    assert process.returncode == 130 and "Traceback" not in err
    assert all((r / "ckpt.pt").is_file() for r in runs) and not any(e["done"] for e in _train_entries(run).values())


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split() if entry.name.isdigit() else []
        except OSError:
            continue
        if fields and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def test_ctrl_c_again_and_again_as_the_workers_start_kills_none_of_them(smoke, tmp_path):
    """Workers start with Ctrl-C ignored: one that died of it while starting would break the pool (rc 2, a traceback)."""
    run, process = _training_run(smoke, tmp_path)
    stopping.wait_for(lambda: len(_train_entries(run)) == 2, process, timeout=180.0)  # the workers are being started
    for _ in range(60):  # to every process of the run but the runner, which would stop the run
        for pid in set(_group_members(process.pid)) - {process.pid}:
            try:
                os.kill(pid, signal.SIGINT)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    metrics = [run / "arms" / arm / "train" / "metrics.jsonl" for arm in ("clean", "sim_only")]
    stopping.wait_for(lambda: all(m.is_file() for m in metrics), process)  # both arms train
    os.kill(process.pid, signal.SIGINT)
    err = _ended(process, 120, "the runner did not stop within 120 s of a Ctrl-C")
    assert process.returncode == 130 and "Traceback" not in err, err[-2000:]
    assert all((m.parent / "ckpt.pt").is_file() for m in metrics)


def test_a_training_killed_with_minus_9_keeps_the_time_each_arm_spent(smoke, tmp_path, capsys):
    run, process = _training_run(smoke, tmp_path)
    started = time.monotonic()
    stopping.wait_for(lambda: len(entries := _train_entries(run)) == 2 and all(e["seconds"] > 0 for e in entries.values()), process)
    # While it runs, a second run on the same directory (which would book into the same ledger) is refused.
    ledger = (run / "ledger.json").read_text()
    try:
        assert main([str(tmp_path / "long.yaml"), "--out", str(run), "--arms", "clean", "--stage", "eval"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"another run is using it (pid {process.pid} on " in err and process.poll() is None
        (run / "results.md").unlink()
        # A report only reads: allowed (under the config the finished arms were made with; long.yaml changed their steps).
        assert main([str(SMOKE), "--out", str(run), "--arms", "gcs_expert", "--stage", "report"]) == 0
        assert "| gcs_expert | target |" in (run / "results.md").read_text()
    finally:
        stopping.kill(process)
        process.wait()
    entries = _train_entries(run)
    assert all(not e["done"] and 0 < e["seconds"] <= time.monotonic() - started for e in entries.values())
    # kill -9 frees the directory: the next run takes it (clean is not trained: nothing to evaluate).
    assert main([str(tmp_path / "long.yaml"), "--out", str(run), "--arms", "clean", "--stage", "eval"]) == 0
    assert "skipping evaluation of clean in target: not trained yet" in capsys.readouterr().out
    assert json.loads((run / "ledger.json").read_text()).keys() >= json.loads(ledger).keys()


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda v: v.update(bogus=1), "bogus"),
        (lambda v: v["arms"].append({"name": "clean", "method": "clean"}), "unique"),
        (lambda v: v["arms"].append({"name": "x", "method": "ambient"}), "needs sigma_min"),
        (lambda v: v["arms"].append({"name": "y", "method": "clean", "alpha": 0.3}), "alpha applies"),
        (lambda v: v["arms"].append({"name": "z", "method": "ambient", "sigma_min": "best", "sigma_max": 0.1}), "needs a sweep to pick from"),
        (lambda v: v["arms"].append({"name": "e2", "method": "expert", "seed": 3}), "seed (the training seed) applies to trained arms"),
        (lambda v: v["clean"].update(store="a.zarr"), "either store"),
        (lambda v: v.update(ray_address="127.0.0.1:6379"), "ray_address needs backend: ray"),
        (lambda v: v["training"].update(resources={"cpus": 2}), "training.resources needs backend: ray"),
        (lambda v: v.setdefault("evaluation", {}).update(precision="float32", envs_per_worker=2), "depend on the batching"),
    ],
)
def test_bad_configs_are_one_line_errors(tmp_path, capsys, edit, message):
    values = yaml.safe_load(SMOKE.read_text())
    edit(values)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(values))
    assert main([str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def test_the_paper_and_cpu_configs_build_every_arm(tmp_path):
    from policies.config import PolicyConfig
    from policies.model import DiffusionModel

    for name in ("paper", "cpu"):
        config = ExperimentConfig.load(ROOT / "experiments" / f"{name}.yaml")
        assert config.evaluation.trials == 200 and {a.method for a in config.arms} >= {"clean", "sim_only", "cotrain", "ambient", "expert"}
    paper = ExperimentConfig.load(ROOT / "experiments" / "paper.yaml")
    assert paper.clean.n == 50 and paper.corrupt.n == 2000 and paper.policy.obs_mode == "image" and paper.policy.preset == "default"
    tiny = paper.model_copy(update={"policy": PolicyConfig(preset="tiny", obs_mode=paper.policy.obs_mode)})
    experiment = Experiment(tiny, tmp_path / "paper", progress=False)
    for arm in [a for a in tiny.arms if a.trained and a.sigma_min != "best"]:
        run = experiment.run_config(arm)
        assert run.training.steps == paper.training.steps and run.policy.obs_mode == "image"
    model = DiffusionModel(run.policy, {"overhead": (96, 96), "wrist": (96, 96)}, 2)
    assert sum(p.numel() for p in model.parameters()) < 2_000_000
    batch = {"action": torch.rand(2, 16, 2), "agent_pos": torch.rand(2, 2, 2),
             **{c: torch.randint(0, 256, (2, 2, 3, 84, 84), dtype=torch.uint8) for c in ("overhead", "wrist")}}
    loss = model.loss(batch, torch.tensor([3, 90]), torch.zeros(2), torch.randn(2, 16, 2), torch.randn(2, 16, 2))
    assert loss.shape == (2,) and torch.isfinite(loss).all()


def test_paired_comparison_statistics():
    arm = np.array([True] * 8 + [False] * 2 + [True] * 5 + [False] * 5)
    ref = np.array([False] * 8 + [True] * 2 + [True] * 5 + [False] * 5)
    result = paired_comparison(arm, ref)
    assert (result["only_arm"], result["only_reference"]) == (8, 2)
    assert result["mcnemar_p"] == pytest.approx(0.109375)  # exact: 2 * P(Binom(10, 0.5) <= 2)
    assert result["difference"] == pytest.approx(0.3) and result["ci95"][0] < 0.3 < result["ci95"][1]
    same = paired_comparison(arm, arm)
    assert same["mcnemar_p"] == 1.0 and same["ci95"] == [0.0, 0.0]
    with pytest.raises(ValueError):
        paired_comparison(arm, arm[:3])


def test_arms_trained_earlier_are_evaluated_before_other_arms_train(smoke, tmp_path, monkeypatch):
    from eval.experiment import Experiment

    run = tmp_path / "run"
    shutil.copytree(smoke, run, ignore=shutil.ignore_patterns("data"))
    shutil.copytree(smoke / "data", run / "data")
    ledger = json.loads((run / "ledger.json").read_text())
    del ledger["eval/clean/target"]  # trained, not evaluated (stopped after training)
    del ledger["train/cotrain_a0.2"], ledger["eval/cotrain_a0.2/target"]  # not trained yet
    shutil.rmtree(run / "arms" / "cotrain_a0.2")
    (run / "ledger.json").write_text(json.dumps(ledger))
    calls = []
    for name in ("train", "evaluate"):
        original = getattr(Experiment, name)
        monkeypatch.setattr(Experiment, name, lambda self, arms, name=name, original=original: calls.append(
            (name, [a.name for a in arms if not self.ledger.finished(f"{'train' if name == 'train' else 'eval'}/{a.name}" + ("" if name == "train" else "/target"))]))
            or original(self, arms))
    assert main([str(SMOKE), "--out", str(run)]) == 0
    work = [(name, arms) for name, arms in calls if arms]  # the calls that had something to do
    assert work[0] == ("evaluate", ["clean"]) and work[1] == ("train", ["cotrain_a0.2"])
    assert all(entry["done"] for entry in json.loads((run / "ledger.json").read_text()).values())



def test_a_classifier_arm_left_over_trains_beside_the_best_arm_not_alone(smoke, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(smoke, run)
    ledger = json.loads((run / "ledger.json").read_text())
    for arm in ("ambient_classifier", "ambient_loss_best"):
        del ledger[f"train/{arm}"], ledger[f"eval/{arm}/target"]
        shutil.rmtree(run / "arms" / arm)
    (run / "ledger.json").write_text(json.dumps(ledger))
    rounds = []
    original = Experiment.train
    monkeypatch.setattr(Experiment, "train", lambda self, arms: rounds.append([a.name for a in arms]) or original(self, arms))
    assert main([str(SMOKE), "--out", str(run)]) == 0
    assert rounds == [["ambient_classifier", "ambient_loss_best"]]  # one round of two, not two of one
    assert all(entry["done"] for entry in json.loads((run / "ledger.json").read_text()).values())

    # With an odd number of other arms still to train, the classifier arm fills their last round instead.
    values = yaml.safe_load(SMOKE.read_text())
    values["arms"].insert(0, {"name": "cotrain_a0.8", "method": "cotrain", "alpha": 0.8})
    odd = tmp_path / "odd.yaml"
    odd.write_text(yaml.safe_dump(values))
    first, later = Experiment(ExperimentConfig.load(odd), tmp_path / "fresh", progress=False).arm_groups()
    assert [a.name for a in first][-1] == "ambient_classifier" and len(first) == 9  # the 7 to train, the expert, it
    assert [a.name for a in later] == ["ambient_loss_best"]
    even_first, even_later = Experiment(ExperimentConfig.load(SMOKE), tmp_path / "fresh2", progress=False).arm_groups()
    assert [a.name for a in even_later] == ["ambient_classifier", "ambient_loss_best"]

def test_a_best_arm_takes_its_sweep_s_value_and_arms_varying_other_levers_neither_set_nor_delay_it(smoke, tmp_path):
    values = yaml.safe_load(SMOKE.read_text())
    next(a for a in values["arms"] if a["name"] == "ambient_s0.5")["alpha"] = 0.5  # given, or the default: the same sweep
    values["arms"][-1:-1] = [
        {"name": "ambient_s0.35_a0.8", "method": "ambient", "sigma_min": 0.35, "alpha": 0.8},
        {"name": "ambient_s0.35_smax", "method": "ambient", "sigma_min": 0.35, "sigma_max": 0.1},
        {"name": "ambient_s0.35_b2", "method": "ambient", "sigma_min": 0.35, "s_max_factor": 2.0},
        {"name": "ambient_s0.35_seed5", "method": "ambient", "sigma_min": 0.35, "seed": 5},
        {"name": "ambient_s0.35_sim", "method": "ambient", "sigma_min": 0.35, "eval_domains": ["sim"]},  # never scored in target
    ]
    with_seed0 = {**values, "arms": [*values["arms"], {"name": "ambient_s0.35_seed0", "method": "ambient", "sigma_min": 0.35, "seed": 0}]}
    for name, config_values in (("levers", values), ("seed0", with_seed0)):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(config_values))
    config = ExperimentConfig.load(tmp_path / "levers.yaml")
    best = next(a for a in config.arms if a.name == "ambient_loss_best")
    assert [a.name for a in config.sweep(best)] == ["ambient_s0.2", "ambient_s0.5"]
    seed0 = ExperimentConfig.load(tmp_path / "seed0.yaml")  # the experiment's own seed, given: the same training
    assert [a.name for a in seed0.sweep(best)] == ["ambient_s0.2", "ambient_s0.5", "ambient_s0.35_seed0"]

    run = tmp_path / "run"
    shutil.copytree(smoke, run)
    ledger = json.loads((run / "ledger.json").read_text())
    del ledger["train/ambient_loss_best"], ledger["eval/ambient_loss_best/target"]
    shutil.rmtree(run / "arms" / "ambient_loss_best")
    # The alpha lever, evaluated with a perfect score: were it part of the sweep, 'best' would be its 0.35.
    ledger["eval/ambient_s0.35_a0.8/target"] = {**ledger["eval/ambient_s0.2/target"], "done": True}
    perfect = json.loads((run / "arms" / "ambient_s0.2" / "eval_target" / "results.json").read_text()) | {"success_rate": 1.0, "mean_max_coverage": 1.0}
    (run / "arms" / "ambient_s0.35_a0.8" / "eval_target").mkdir(parents=True)
    (run / "arms" / "ambient_s0.35_a0.8" / "eval_target" / "results.json").write_text(json.dumps(perfect))
    (run / "ledger.json").write_text(json.dumps(ledger))
    experiment = Experiment(config, run, progress=False)
    # The other levers are not evaluated (nor trained), yet the sweep's value stands.
    assert experiment.best_sigma_min(best) == json.loads((smoke / "results.json").read_text())["best_sigma_min"]["ambient_loss_best"]
    first, later = experiment.arm_groups()  # so the best arm need not wait: it trains beside the lever arms
    assert later == [] and "ambient_loss_best" in [a.name for a in first if a.trained and not experiment.train_done(a)]


def test_a_replicate_under_another_seed_is_compared_but_never_the_reference():
    def row(arm, successes, replicate=False):
        return {"arm": arm, "domain": "target", "role": "cotrain", "replicate": replicate, "trials": 4, "success_rate": sum(successes) / 4,
                "mean_max_coverage": 0.5, "success_by_trial": successes}  # fmt: skip

    report = build_report([row("cotrain_a0.5", [1, 1, 0, 0]), row("cotrain_a0.5_seed1", [1, 1, 1, 1], replicate=True)], "target", {})
    assert report["best_cotrain"] == "cotrain_a0.5"
    assert [c["arm"] for c in report["paired_vs_best_cotrain"]] == ["cotrain_a0.5_seed1"]


def test_an_arm_s_seed_is_its_training_seed_and_its_evaluation_keeps_the_experiment_s_starts(tmp_path):
    values = yaml.safe_load(SMOKE.read_text())
    values["arms"] += [{"name": "cotrain_a0.5_seed7", "method": "cotrain", "alpha": 0.5, "seed": 7},
                       {"name": "ambient_s0.2_seed7", "method": "ambient", "sigma_min": 0.2, "seed": 7}]  # fmt: skip
    path = tmp_path / "replicates.yaml"
    path.write_text(yaml.safe_dump(values))
    config = ExperimentConfig.load(path)
    arms = {a.name: a for a in config.arms}
    experiment = Experiment(config, tmp_path / "run", progress=False)
    assert experiment.run_config(arms["cotrain_a0.5_seed7"]).training.seed == 7 != config.seed
    assert experiment.run_config(arms["cotrain_a0.5"]).training.seed == config.seed
    (replicate,), (original,) = experiment.eval_jobs([arms["cotrain_a0.5_seed7"]]), experiment.eval_jobs([arms["cotrain_a0.5"]])
    assert experiment.eval_section(replicate)["seed"] == experiment.eval_section(original)["seed"] == config.seed
    assert [a.name for a in config.sweep(arms["ambient_loss_best"])] == ["ambient_s0.2", "ambient_s0.5"]  # a replicate is not a sweep value


def test_a_run_carried_with_its_states_neither_generates_the_data_nor_classifies_and_checks_the_stores(smoke, tmp_path, capsys):
    carried = tmp_path / "carried"
    carry(smoke, carried, states=True)
    with EpisodeStore.open(carried / "data" / "corrupt.zarr") as store:
        assert store.cameras == () and store.annotation_names  # the classifier's sigma_min came along
    capsys.readouterr()
    assert main([str(SMOKE), "--out", str(carried)]) == 0
    printed = capsys.readouterr().out
    assert not any(f"== {stage}" in printed for stage in ("data", "sigma_min", "train", "eval"))
    rows = lambda run: {(r["arm"], r["domain"]): r["success_by_trial"] for r in json.loads((run / "results.json").read_text())["arms"]}  # noqa: E731
    assert rows(carried) == rows(smoke)

    ledger = json.loads((carried / "ledger.json").read_text())
    ledger["data/corrupt"]["result"]["digest"] = "0" * 64  # as if other data had been carried in
    (carried / "ledger.json").write_text(json.dumps(ledger))
    assert main([str(SMOKE), "--out", str(carried)]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("python -m eval.experiment: error:") and "corrupt.zarr: differs from the data the finished arms used" in error


def test_a_run_carried_without_data_or_checkpoints_regenerates_the_data_and_retrains_only_unevaluated_arms(smoke, tmp_path, capsys):
    # What survives a machine that is gone: the ledger, configs, metrics and evaluation results.
    carried = tmp_path / "carried"
    files = set(carry(smoke, carried))
    everything = {p.relative_to(smoke) for p in smoke.rglob("*") if p.is_file()}
    left_behind = {f for f in everything if f.parts[0] == "data" or "videos" in f.parts or f.suffix == ".pt" or f.name == "experiment.lock"}
    assert files == everything - left_behind  # every other file of the run is its record
    assert {p.relative_to(carried) for p in carried.rglob("*") if p.is_file()} == files
    assert {Path("ledger.json"), Path("arms/clean/train/metrics.jsonl"), Path("arms/clean/eval_target/trials.jsonl")} <= files
    assert any(f.suffix == ".pt" for f in left_behind) and any(f.parts[0] == "data" for f in left_behind)
    ledger = json.loads((carried / "ledger.json").read_text())
    digest = ledger["data/clean"]["result"]["digest"]
    assert len(digest) == 64 and ledger["data/corrupt"]["result"]["digest"] != digest
    ledger["eval/cotrain_a0.5/target"]["done"] = False  # killed before its evaluation finished
    ledger["train/cotrain_a0.2"]["done"] = False  # killed while training: its metrics carried, its checkpoint not
    del ledger["eval/cotrain_a0.2/target"]
    ledger["data/clean"]["result"]["digest"] = "0" * 64  # as if the generator had changed since
    (carried / "ledger.json").write_text(json.dumps(ledger))
    kept = (carried / "arms" / "clean" / "train" / "metrics.jsonl").read_text()

    assert main([str(SMOKE), "--out", str(carried)]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]  # after the regeneration's progress bar
    assert error.startswith("python -m eval.experiment: error:") and "differs from the data the finished arms used" in error

    ledger = json.loads((carried / "ledger.json").read_text())
    ledger["data/clean"]["result"]["digest"] = digest
    (carried / "ledger.json").write_text(json.dumps(ledger))
    assert main([str(SMOKE), "--out", str(carried)]) == 0
    printed = capsys.readouterr().out
    assert "training it again" in printed and "== sigma_min" not in printed  # the classifier arm is finished
    ledger = json.loads((carried / "ledger.json").read_text())
    assert ledger["data/clean"]["result"]["digest"] == digest and all(entry["done"] for entry in ledger.values())
    assert (carried / "arms" / "cotrain_a0.5" / "train" / "ckpt.pt").is_file()  # retrained, then evaluated
    steps = [json.loads(line)["step"] for line in (carried / "arms" / "cotrain_a0.2" / "train" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))  # trained afresh, not appended to the lost run's records
    assert not (carried / "arms" / "clean" / "train" / "ckpt.pt").exists()  # finished: left alone
    assert (carried / "arms" / "clean" / "train" / "metrics.jsonl").read_text() == kept
    report = json.loads((carried / "results.json").read_text())
    assert {row["arm"] for row in report["arms"]} == {arm.name for arm in ExperimentConfig.load(SMOKE).arms}


def test_a_pool_s_named_digest_checks_that_generation_made_the_episodes_of_an_earlier_run(smoke, tmp_path, capsys):
    ledger = json.loads((smoke / "ledger.json").read_text())
    values = yaml.safe_load(SMOKE.read_text())
    for pool in ("clean", "corrupt"):
        values[pool]["digest"] = ledger[f"data/{pool}"]["result"]["digest"]
    named = tmp_path / "named.yaml"
    named.write_text(yaml.safe_dump(values))
    out = tmp_path / "again"
    assert main([str(named), "--out", str(out), "--stage", "data"]) == 0  # generated again: the same episodes
    again = json.loads((out / "ledger.json").read_text())
    for pool in ("clean", "corrupt"):  # the digest is a check, not part of the data's identity
        assert again[f"data/{pool}"]["section"] == ledger[f"data/{pool}"]["section"]
        assert again[f"data/{pool}"]["result"]["digest"] == values[pool]["digest"]

    values["corrupt"]["digest"] = "0" * 64  # a config naming other episodes
    named.write_text(yaml.safe_dump(values))
    capsys.readouterr()
    assert main([str(named), "--out", str(out), "--stage", "data"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("python -m eval.experiment: error:") and "corrupt.zarr: its episodes are not those the config's corrupt.digest names" in error
    values["corrupt"]["digest"] = "not hex"
    named.write_text(yaml.safe_dump(values))
    assert main([str(named), "--out", str(out), "--stage", "data"]) == 2
    assert "digest" in capsys.readouterr().err


def test_the_images_config_names_the_cpu_run_s_episodes_and_builds_its_image_policy():
    from policies.model import DiffusionModel

    images, cpu = (ExperimentConfig.load(ROOT / "experiments" / f"{name}.yaml") for name in ("images", "cpu"))
    ledger = json.loads((ROOT / "docs" / "results" / "cpu" / "run" / "ledger.json").read_text())
    for pool in ("clean", "corrupt"):
        source, theirs = getattr(images, pool), getattr(cpu, pool)
        assert source.model_copy(update={"digest": None}) == theirs and source.digest == ledger[f"data/{pool}"]["result"]["digest"]
    assert images.policy.preset == "cpu" and images.policy.obs_mode == "image" and images.policy.cameras == ("overhead",)
    model = DiffusionModel(images.policy, {"overhead": (96, 96)}, 2)
    batch = {"action": torch.rand(2, 16, 2), "agent_pos": torch.rand(2, 2, 2), "overhead": torch.randint(0, 256, (2, 2, 3, 84, 84), dtype=torch.uint8)}
    loss = model.loss(batch, torch.tensor([3, 90]), torch.zeros(2), torch.randn(2, 16, 2), torch.randn(2, 16, 2))
    assert loss.shape == (2,) and torch.isfinite(loss).all()


def test_kept_snapshots_are_not_part_of_an_arm_s_identity(tmp_path):
    config = ExperimentConfig.load(SMOKE)
    pilot = config.model_copy(update={"training": config.training.model_copy(update={"keep_checkpoints": (10, 20)})})
    arm = next(a for a in config.arms if a.name == "cotrain_a0.2")
    plain, snapshots = Experiment(config, tmp_path / "plain", progress=False), Experiment(pilot, tmp_path / "pilot", progress=False)
    assert snapshots.run_config(arm).training.keep_checkpoints == (10, 20) and plain.run_config(arm).training.keep_checkpoints == ()
    assert snapshots.train_section(arm) == plain.train_section(arm)  # an arm trained with snapshots moves into a run without
    assert "keep_checkpoints" not in json.dumps(plain.train_section(arm))


def test_an_evaluation_s_threads_are_not_part_of_its_identity(tmp_path):
    """An evaluation started beside a training run (threads 1) may be resumed alone with the default."""
    config = ExperimentConfig.load(SMOKE)
    one = config.model_copy(update={"evaluation": config.evaluation.model_copy(update={"threads": 1})})
    plain, beside = Experiment(config, tmp_path / "plain", progress=False), Experiment(one, tmp_path / "one", progress=False)
    job, same = plain.eval_jobs(list(config.arms))[0], beside.eval_jobs(list(one.arms))[0]
    assert plain.eval_section(job) == beside.eval_section(same) and "threads" not in json.dumps(plain.eval_section(job))
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        config.evaluation.model_validate({**config.evaluation.model_dump(), "threads": 0})


def test_each_trained_arm_s_row_says_what_its_training_did(smoke, tmp_path):
    """Final loss, corrupt share of the batches, admissible fraction: what a scaling curve is read beside."""
    from eval.arm_training import training_summary

    rows = {r["arm"]: r for r in json.loads((smoke / "results.json").read_text())["arms"] if r["domain"] == "target"}
    assert "training" not in rows["gcs_expert"]
    clean, cotrain, high, low = (rows[a]["training"] for a in ("clean", "cotrain_a0.2", "ambient_s0.5", "ambient_s0.2"))
    assert clean["corrupt_share"] == 0 and clean["admissible_fraction"] is None and clean["final_loss"] > 0
    assert cotrain["admissible_fraction"] == 1 and 0.5 < cotrain["corrupt_share"] < 1  # alpha 0.2: ~80% corrupt
    assert 0 < high["admissible_fraction"] < low["admissible_fraction"] < 1  # a higher sigma_min admits fewer steps
    assert rows["sim_only"]["training"]["corrupt_share"] == 1  # its corrupt data, trained on as if clean
    # Steps logged again after a resume count once (the last); the final loss is the last 5% of steps'.
    run = tmp_path / "train"
    run.mkdir()
    lines = [{"step": s, "loss": 9.0, "clean_fraction": 0.5} for s in range(10, 110, 10)]
    lines += [{"step": 100, "loss": 1.0, "clean_fraction": 0.5}]
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n{\"step\": 1")
    (run / "admission.json").write_text(json.dumps({"num_admissible_corrupt_per_step": [0, 5, 10, 10], "corrupt_windows": 10}))
    assert training_summary(run) == {"final_loss": 1.0, "corrupt_share": 0.5, "admissible_fraction": 0.625}
    (run / "metrics.jsonl").unlink()  # a run that never logged: nothing to say, no crash
    assert training_summary(run)["final_loss"] is None and training_summary(run, all_corrupt=True)["corrupt_share"] == 1

"""The evaluation harness with real envs: the random floor, the GCS expert, determinism, the report."""

import json
import os
import signal
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from eval.compare import main as compare_main
from eval.metrics import wilson_interval
from eval.rollout import RolloutSpec, TrialRunner, main, run_trials
from tests import stopping

CLI = [sys.executable, "-m", "eval.rollout"]


def _spec(policy, **kw):
    base = dict(policy=policy, ckpt=None, domain="target", domain_overrides=(), seed=0, videos=0, video_dir=None,
                device="cpu", max_steps=12)
    return RolloutSpec(**{**base, **kw})


def test_same_command_same_per_trial_results_whatever_the_workers():
    one = run_trials(_spec("random"), trials=3, workers=1, progress=False)
    again = run_trials(_spec("random"), trials=3, workers=1, progress=False)
    two = run_trials(_spec("random"), trials=3, workers=2, progress=False)
    strip = lambda rs: [{k: v for k, v in r.items() if k != "wall_time"} for r in rs]  # noqa: E731
    assert strip(one) == strip(again) == strip(two)
    # Different trials start from different poses and end differently.
    assert len({tuple(r["initial_pose"]) for r in one}) == 3
    assert len({r["final_position_error"] for r in one}) == 3


def test_the_gcs_expert_succeeds_in_closed_loop(tmp_path):
    results = run_trials(_spec("gcs", max_steps=None), trials=2, workers=2, progress=False)
    assert all(r["success"] for r in results)
    assert all(r["final_position_error"] <= 0.015 and r["final_angle_error_deg"] <= 3.5 for r in results)
    assert all(r["time_to_success"] is not None and r["time_to_success"] < 75 for r in results)


def test_results_json_schema_video_and_compare(tmp_path, capsys):
    out = tmp_path / "random"
    assert main(["--policy", "random", "--trials", "3", "--workers", "1", "--max-steps", "8", "--videos", "1",
                 "--out", str(out)]) == 0
    report = json.loads((out / "results.json").read_text())
    assert {"command", "config", "success_rate", "ci95", "mean_final_position_error", "mean_final_angle_error_deg",
            "wall_time", "per_trial"} <= set(report)
    assert report["success_rate"] == 0.0 and report["ci95"][0] == 0.0 and 0 < report["ci95"][1] < 1
    trial = report["per_trial"][0]
    assert {"index", "initial_pose", "success", "time_to_success", "final_position_error", "final_angle_error_deg",
            "max_coverage"} <= set(trial)
    assert [t["index"] for t in report["per_trial"]] == [0, 1, 2]
    # LeRobot's and Diffusion Policy's aggregate names beside ours (docs/evaluation.md)
    assert report["n_episodes"] == 3 and report["pc_success"] == 0.0 and report["eval_s"] == report["wall_time"]
    assert all(0 < t["sum_reward"] <= t["steps"] and t["max_reward"] <= t["max_coverage"] for t in report["per_trial"])
    assert report["avg_sum_reward"] == pytest.approx(np.mean([t["sum_reward"] for t in report["per_trial"]]))
    assert report["test/mean_score"] == report["mean_max_coverage"]
    assert (out / "videos" / "trial_000.mp4").stat().st_size > 1000
    assert not (out / "videos" / "trial_001.mp4").exists()
    assert "95% CI" in capsys.readouterr().out
    # The same command again: nothing to run, and it says so (no wall time of nothing, no progress bar).
    assert main(["--policy", "random", "--trials", "3", "--workers", "1", "--max-steps", "8", "--videos", "1",
                 "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert f"nothing to add: 3/3 trials already in {out / 'trials.jsonl'}" in captured.out
    assert "wall time" not in captured.out and "trial/s" not in captured.err

    png = tmp_path / "cmp.png"
    assert compare_main([str(out), str(out), "--out", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--ckpt", "missing.pt"], "does not exist"),
        ([], "give --ckpt"),
        (["--policy", "random", "--trials", "0"], "--trials must be at least 1, got 0"),
        (["--policy", "random", "--envs-per-worker", "0"], "--envs-per-worker must be at least 1, got 0"),
        (["--policy", "random", "--videos", "-1"], "--videos must be at least 0, got -1"),
        (["--policy", "random", "--threads", "0"], "--threads must be at least 1, got 0"),
        (["--policy", "random", "--envs-per-worker", "2", "--precision", "float32"], "depend on the batching"),
        (["--policy", "random", "--domain", "moon"], "unknown domain"),
        (["--policy", "random", "--trials", "1", "--max-steps", "1", "--device", "tpu"], "unknown device 'tpu'"),
    ],
)
def test_bad_inputs_are_one_line_errors(args, message, tmp_path):
    result = subprocess.run(CLI + args + ["--out", str(tmp_path / "o")], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_compare_paired_pairs_trials_on_the_same_starts_and_refuses_other_starts(tmp_path, capsys):
    runs = {}
    for name, seed in (("first", 0), ("other_starts", 1)):
        runs[name] = tmp_path / name / "eval_target"  # an experiment's layout: named for its arm
        assert main(["--policy", "random", "--trials", "3", "--workers", "1", "--max-steps", "4", "--videos", "0",
                     "--seed", str(seed), "--out", str(runs[name])]) == 0
    report = json.loads((runs["first"] / "results.json").read_text())
    assert not any(t["success"] for t in report["per_trial"])
    better = tmp_path / "better" / "eval_target"  # the same starts, two of them now successes
    better.mkdir(parents=True)
    for trial, success in zip(report["per_trial"], (True, False, True)):
        trial["success"] = success
    (better / "results.json").write_text(json.dumps({**report, "success_rate": 2 / 3, "ci95": list(wilson_interval(2, 3))}))
    capsys.readouterr()

    assert compare_main([str(runs["first"]), str(better), "--paired", "--out", str(tmp_path / "c.png")]) == 0
    table = capsys.readouterr().out.splitlines()
    assert "vs first (target) (paired)" in table[0]
    row = next(line for line in table if line.startswith("better (target)"))
    assert "+66.7 [+0.0, +100.0]" in row and row.split()[-1] == "0.5"  # 2 discordant trials, both for it: p = 0.5

    assert compare_main([str(runs["first"]), str(runs["other_starts"]), "--paired"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not evaluated on the start poses" in err
    assert compare_main([str(runs["first"]), str(runs["other_starts"]), "--out", str(tmp_path / "d.png")]) == 0  # unpaired: fine


def test_compare_refuses_a_directory_without_results(tmp_path, capsys):
    assert compare_main([str(tmp_path)]) == 2
    assert "no results.json" in capsys.readouterr().err


def test_compare_writes_the_file_it_names(tmp_path, capsys):
    evaluation = tmp_path / "eval"
    evaluation.mkdir()
    (evaluation / "results.json").write_text(json.dumps({"success_rate": 0.5, "ci95": [0.3, 0.7], "trials": 10}))
    assert compare_main([str(evaluation), "--out", str(evaluation)]) == 2  # a directory is no file name
    err = capsys.readouterr().err
    assert "is a directory" in err and err.count("\n") == 1 and not (tmp_path / "eval.png").exists()
    assert compare_main([str(evaluation), "--out", str(tmp_path / "plot")]) == 0  # matplotlib adds .png: say so
    assert f"wrote {tmp_path / 'plot.png'}" in capsys.readouterr().out and (tmp_path / "plot.png").is_file()


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A tiny policy trained a few steps on a real (32 px) GCS store: the real pipeline, small."""
    from data_gen.gcs import main as gcs_main
    from policies.train import main as train_main

    root = tmp_path_factory.mktemp("pipeline")
    assert gcs_main(["--n", "2", "--workers", "1", "--image-size", "32", "--out", str(root / "sim.zarr")]) == 0
    assert train_main(["--clean", str(root / "sim.zarr"), "--method", "clean", "--preset", "tiny", "--steps", "3",
                       "--batch-size", "8", "--out", str(root / "run")]) == 0
    return root / "run" / "ckpt.pt"


def test_a_checkpoint_rollout_is_deterministic(tiny_checkpoint, tmp_path):
    spec = _spec("ckpt", ckpt=str(tiny_checkpoint), domain="sim", domain_overrides=("render.image_size=32",), max_steps=10)
    first = run_trials(spec, trials=2, workers=1, progress=False)
    second = run_trials(spec, trials=2, workers=2, progress=False)
    strip = lambda rs: [{k: v for k, v in r.items() if k != "wall_time"} for r in rs]  # noqa: E731
    assert strip(first) == strip(second)
    assert first[0]["final_position_error"] != first[1]["final_position_error"]


def test_a_checkpoint_for_other_image_sizes_or_a_damaged_one_is_a_clear_error(tiny_checkpoint, tmp_path):
    result = subprocess.run(CLI + ["--ckpt", str(tiny_checkpoint), "--trials", "1", "--out", str(tmp_path / "o")],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "(96, 96, 3)" in result.stderr and "(32, 32, 3)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()  # refused before anything was written
    # Into a directory holding another evaluation: its trials survive the refusal.
    from eval import rollout

    rollout.evaluate(_spec("random", max_steps=2), 1, tmp_path / "earlier", workers=1, progress=False)
    before = (tmp_path / "earlier" / "trials.jsonl").read_bytes()
    result = subprocess.run(CLI + ["--ckpt", str(tiny_checkpoint), "--trials", "1", "--out", str(tmp_path / "earlier")],
                            capture_output=True, text=True)
    assert result.returncode == 2 and (tmp_path / "earlier" / "trials.jsonl").read_bytes() == before
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(tiny_checkpoint.read_bytes()[:5000])
    result = subprocess.run(CLI + ["--ckpt", str(damaged), "--trials", "1", "--out", str(tmp_path / "o")],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "damaged" in result.stderr and "weights_only" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    import torch

    payload = torch.load(tiny_checkpoint, weights_only=True)  # trained weights gone NaN: refused at load, not mid-rollout
    name = next(k for k, v in payload["ema_model"].items() if v.is_floating_point())
    payload["ema_model"][name].view(-1)[0] = float("nan")
    torch.save(payload, tmp_path / "nan.pt")
    result = subprocess.run(CLI + ["--ckpt", str(tmp_path / "nan.pt"), "--trials", "1", "--out", str(tmp_path / "o")],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"error: {tmp_path / 'nan.pt'}: ema_model weight {name!r} holds NaN or infinite values"


def test_an_interrupted_evaluation_resumes_with_the_missing_trials_only(tmp_path, monkeypatch):
    from eval import rollout

    spec = _spec("random", max_steps=6)
    out = tmp_path / "eval"
    full = rollout.evaluate(spec, 4, out, workers=1, progress=False)
    strip = lambda rs: [{k: v for k, v in r.items() if k != "wall_time"} for r in rs]  # noqa: E731
    # kill -9 after two trials, the second line cut short: trials 1..3 run again, the rest is kept.
    lines = (out / "trials.jsonl").read_text().splitlines()
    (out / "trials.jsonl").write_text("\n".join(lines[:2] + [lines[2][:20]]) + "\n")
    ran = []
    original = rollout.TrialRunner.run_group
    monkeypatch.setattr(rollout.TrialRunner, "run_group",
                        lambda self, jobs, on_result=None: ran.extend(j[0] for j in jobs) or original(self, jobs, on_result))
    handed, new = [], []
    resumed = rollout.evaluate(spec, 4, out, workers=1, progress=False, on_resumed=lambda rs: handed.append([r["index"] for r in rs]),
                               on_result=lambda r: new.append(r["index"]))
    assert ran == [1, 2, 3] and resumed["resumed_trials"] == 1
    assert handed == [[0]] and sorted(new) == [1, 2, 3]  # a caller's progress starts at the resumed trial
    assert strip(resumed["per_trial"]) == strip(full["per_trial"])
    # Another evaluation in the same directory starts afresh.
    ran.clear()
    rollout.evaluate(_spec("random", max_steps=5), 2, out, workers=1, progress=False)
    assert ran == [0, 1]


def test_kill_stops_an_evaluation_started_with_ctrl_c_ignored_and_keeps_its_trials(tmp_path):
    """`kill` (SIGTERM) of an evaluation started from a script with `cmd &` (so deaf to Ctrl-C) ends it as Ctrl-C does."""
    out = tmp_path / "eval"
    # 5000 trials outlast the wait (~15 trials/s); 100000 took ~45 s to draw their starts, over the wait on a loaded machine.
    process = stopping.start(CLI + ["--policy", "random", "--trials", "5000", "--max-steps", "6", "--workers", "2", "--videos", "0",
                                    "--out", str(out)], ctrl_c_ignored=True)
    trials = out / "trials.jsonl"
    stopping.wait_for(lambda: stopping.lines(trials) >= 4, process, timeout=120)
    os.kill(process.pid, signal.SIGTERM)
    _, err = stopping.ended(process, 60, "the evaluation ran on for 60 s after a SIGTERM")
    assert process.returncode == 130 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == f"interrupted: finished trials kept in {trials}; run the same command to resume"
    assert all(json.loads(line) for line in trials.read_text().splitlines())  # every line whole


@pytest.fixture(scope="module")
def state_checkpoint(tiny_checkpoint):
    from policies.train import main as train_main

    root = tiny_checkpoint.parent.parent
    assert train_main(["--clean", str(root / "sim.zarr"), "--method", "clean", "--preset", "tiny", "--obs", "state", "--steps", "2",
                       "--batch-size", "8", "--out", str(root / "state")]) == 0
    return root / "state" / "ckpt.pt"


def test_per_trial_results_do_not_depend_on_the_envs_per_worker(state_checkpoint, tiny_checkpoint, tmp_path):
    """Several envs per worker in lockstep, one batched policy call: the same per-trial results as one env."""
    from eval import rollout

    strip = lambda rs: [{k: v for k, v in r.items() if k != "wall_time"} for r in rs]  # noqa: E731
    # 7 trials: with 4 envs, envs take new trials as theirs end; 20 steps: chunks at 0, 8, 16, then a new trial's.
    spec = _spec("ckpt", ckpt=str(state_checkpoint), max_steps=20)
    one = run_trials(spec, trials=7, workers=1, progress=False)
    calls = []
    original = rollout.TrialRunner._act
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rollout.TrialRunner, "_act", lambda self, trials: calls.append(len(trials)) or original(self, trials))
        four = run_trials(replace(spec, envs=4), trials=7, workers=1, progress=False)
    assert max(calls) == 4 and len(calls) == 40  # 20 lockstep steps of trials 0-3, then 20 of trials 4-6
    assert strip(four) == strip(one)
    assert len({r["final_position_error"] for r in one}) == 7  # seven different trials, not one repeated
    assert strip(run_trials(replace(spec, envs=3), trials=7, workers=2, progress=False)) == strip(one)
    # Images too (the float64 encoder), and the float32 sampler is recorded as another evaluation.
    image = _spec("ckpt", ckpt=str(tiny_checkpoint), domain="sim", domain_overrides=("render.image_size=32",), max_steps=9)
    assert strip(run_trials(replace(image, envs=3), trials=3, workers=1, progress=False)) == strip(
        run_trials(image, trials=3, workers=1, progress=False))
    assert rollout.evaluation_identity(replace(spec, precision="float32")) != rollout.evaluation_identity(spec)
    assert rollout.evaluation_identity(replace(spec, envs=4)) == rollout.evaluation_identity(spec)
    # trials.jsonl from before --precision: float32's (the only sampler then), resumed by float32 only.
    float32 = replace(spec, precision="float32")
    full = rollout.evaluate(float32, 2, tmp_path / "old", workers=1, progress=False)
    lines = (tmp_path / "old" / "trials.jsonl").read_text().splitlines()
    header = json.loads(lines[0])
    del header["evaluation"]["precision"]
    (tmp_path / "old" / "trials.jsonl").write_text("\n".join([json.dumps(header), lines[1]]) + "\n")
    assert rollout.load_finished_trials(tmp_path / "old" / "trials.jsonl", rollout.evaluation_identity(spec)) == {}
    resumed = rollout.evaluate(float32, 2, tmp_path / "old", workers=1, progress=False)
    assert resumed["resumed_trials"] == 1 and strip(resumed["per_trial"]) == strip(full["per_trial"])


def test_an_evaluation_in_this_process_uses_its_threads_and_saves_each_trial_as_it_ends(state_checkpoint, tmp_path):
    """One process beside a training run takes --threads 1 (two processes' threads on two cores ran an image
    evaluation 5.6x slower); each trial is saved when it ends, not when its group of envs does."""
    import torch

    from eval import rollout

    before = torch.get_num_threads()
    seen, acts, ended_at = [], [0], []
    original = rollout.TrialRunner._act

    def act(self, trials):
        seen.append(torch.get_num_threads())
        acts[0] += 1
        return original(self, trials)

    spec = _spec("ckpt", ckpt=str(state_checkpoint), max_steps=6, envs=2)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rollout.TrialRunner, "_act", act)
        report = rollout.evaluate(replace(spec, threads=1), 8, tmp_path / "e", workers=1, progress=False,
                                  on_result=lambda r: ended_at.append((r["index"], acts[0])))
    assert set(seen) == {1} and torch.get_num_threads() == before  # set for the trials, then set back
    # Each pair saved after its own 6 steps (groups of 4 trials, as before, would save 0-1 after 12).
    assert ended_at == [(0, 6), (1, 6), (2, 12), (3, 12), (4, 18), (5, 18), (6, 24), (7, 24)]
    assert [json.loads(line)["index"] for line in (tmp_path / "e" / "trials.jsonl").read_text().splitlines()[1:]] == list(range(8))
    assert report["config"]["workers"] == 1
    # Unset: the cores shared among the workers; a Ray actor's cluster is not known here, so 1.
    from data_gen.backends import available_cores

    assert rollout.policy_threads(spec, 1) == available_cores()
    assert rollout.policy_threads(spec, 2) == max(1, available_cores() // 2)
    assert rollout.policy_threads(spec, 2, "ray") == 1 and rollout.policy_threads(replace(spec, threads=3), 2) == 3
    # Threads change neither the per-trial results nor the evaluation's identity (a resume may use others).
    assert rollout.evaluation_identity(replace(spec, threads=1)) == rollout.evaluation_identity(spec)


def test_trials_are_grouped_so_that_every_worker_gets_several_groups():
    from eval.rollout import group_size

    assert group_size(1, 200, 2) == 1  # one env: one trial per task, saved as it ends
    assert group_size(4, 200, 2) == 16  # 4 rounds of 4 envs: 13 groups for 2 workers
    assert group_size(8, 64, 2) == 16  # 64 trials: 4 groups, two per worker, not 2 groups of 32
    assert group_size(4, 7, 2) == 4  # fewer trials than two rounds per worker: one round per group


def test_a_state_policy_is_evaluated_on_the_state_vector(state_checkpoint):
    spec = _spec("ckpt", ckpt=str(state_checkpoint), max_steps=4)
    runner = TrialRunner(spec)
    assert runner.env.observation_space.shape == (5,)
    results = run_trials(spec, trials=2, workers=1, progress=False, runner=runner)
    assert [r["steps"] for r in results] == [4, 4]


def test_a_run_directory_and_its_export_evaluate_as_its_checkpoint(state_checkpoint, tmp_path):
    """--ckpt takes the checkpoint, its run directory or its export: the same trials, and the export says which checkpoint it is."""
    from policies.export import export_policy

    export = export_policy(state_checkpoint.parent, tmp_path / "shipped" / "clean_state")
    reports = {}
    for name, ckpt, out in (("file", state_checkpoint, tmp_path / "file"), ("run", state_checkpoint.parent, tmp_path / "run"),
                            ("export", export, None)):
        args = ["--ckpt", str(ckpt), "--trials", "2", "--workers", "1", "--max-steps", "6", "--videos", "0"]
        result = subprocess.run(CLI + args + (["--out", str(out)] if out else []), capture_output=True, text=True, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        reports[name] = json.loads(((out or tmp_path / "eval_runs" / "clean_state") / "results.json").read_text())
    strip = lambda report: [{k: v for k, v in r.items() if k != "wall_time"} for r in report["per_trial"]]  # noqa: E731
    assert strip(reports["file"]) == strip(reports["run"]) == strip(reports["export"])
    assert len({r["final_position_error"] for r in reports["file"]["per_trial"]}) == 2
    assert not (export / "eval").exists()  # a shipped export stays as shipped
    # The export names the checkpoint its evaluations measured (the digest their trials.jsonl header records).
    header = json.loads((tmp_path / "file" / "trials.jsonl").read_text().splitlines()[0])["evaluation"]
    assert json.loads((export / "policy.json").read_text())["checkpoint_sha256"] == header["checkpoint_sha256"]
    empty = tmp_path / "empty_run"
    empty.mkdir()
    result = subprocess.run(CLI + ["--ckpt", str(empty), "--trials", "1"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.strip() == f"error: checkpoint {empty}: a run directory without ckpt.pt, nor an exported policy"

"""Every command line, given bad options: exit 2, one line naming the problem, nothing created.

Each case runs the real command in an empty working directory whose outputs all point inside it, with
real stores made by the generator beside it; afterwards the directory must still be empty and the
stores unchanged.
"""

from __future__ import annotations

import json

import pytest

from policies.config import DataConfig, PolicyConfig, RunConfig, TrainingConfig
from tests.reliability.cli_runs import REPO_ROOT, assert_one_line_failure, run_cli, tree

SMOKE = str(REPO_ROOT / "experiments" / "smoke.yaml")

# (module, arguments, a word the error line must contain). {sim} and {target} are real stores,
# {file} an existing plain file, {garbage} a file that is not a checkpoint, {results} an evaluation
# directory, {bad_yaml} an experiment config with an unknown key, {recorded} an ambient run's config.json
# naming stores that are gone; every output goes under out/ in the empty working directory.
CASES = [
    ("data_gen.gcs", ["--n", "0", "--out", "out/s.zarr"], "--n"),
    ("data_gen.gcs", ["--n", "x", "--out", "out/s.zarr"], "--n"),
    ("data_gen.gcs", ["--n", "2", "--seed", "-1", "--out", "out/s.zarr"], "--seed"),
    ("data_gen.gcs", ["--n", "2", "--workers", "0", "--out", "out/s.zarr"], "--workers"),
    ("data_gen.gcs", ["--n", "2", "--image-size", "0", "--out", "out/s.zarr"], "--image-size"),
    ("data_gen.gcs", ["--n", "2", "--replan-every", "5", "--out", "out/s.zarr"], "--replan-every"),
    ("data_gen.gcs", ["--n", "2", "--domain", "nosuch.yaml", "--out", "out/s.zarr"], "nosuch"),
    ("data_gen.gcs", ["--n", "2", "--set", "physics.bogus=1", "--out", "out/s.zarr"], "bogus"),
    ("data_gen.gcs", ["--n", "2", "--out", "{file}"], "not a directory"),
    ("data_gen.teleop", ["--scale", "0", "--out", "out/t.zarr"], "--scale"),
    ("data_gen.teleop", ["--seed", "-1", "--out", "out/t.zarr"], "--seed"),
    ("policies.train", ["--clean", "out/missing.zarr", "--method", "clean", "--steps", "5", "--out", "out/run"], "no such"),
    ("policies.train", ["--clean", "{target}", "--method", "clean", "--steps", "0", "--out", "out/run"], "--steps must be at least 1, got 0"),
    ("policies.train", ["--clean", "{target}", "--method", "clean", "--steps", "5", "--seed", "-1", "--out", "out/run"], "--seed must be at least 0, got -1"),
    ("policies.train", ["--clean", "{target}", "--method", "clean", "--steps", "5", "--threads", "0", "--out", "out/run"], "--threads must be at least 1, got 0"),
    ("policies.train", ["--clean", "{target}", "--method", "clean", "--steps", "5", "--batch-size", "0", "--out", "out/run"], "--batch-size must be at least 1, got 0"),
    ("policies.train", ["--clean", "{target}", "--corrupt", "{sim}", "--method", "ambient", "--steps", "5",
                        "--out", "out/run"], "--method ambient needs exactly one of --sigma-min (dataset-level) or --sigma-min-from"),
    ("policies.train", ["--clean", "{target}", "--corrupt", "{sim}", "--method", "cotrain", "--alpha", "2",
                        "--steps", "5", "--out", "out/run"], "--alpha must be at most 1.0, got 2.0"),
    ("policies.train", ["--clean", "{target}", "--method", "clean", "--steps", "5", "--device", "tpu", "--out", "out/run"], "tpu"),
    ("policies.train", ["--clean", "{target}", "--method", "clean", "--steps", "5", "--out", "{file}"], "file"),
    ("policies.train", ["--clean", "{target}", "--method", "clean", "--steps", "5", "--lr", "inf", "--out", "out/run"], "--lr must be a finite number, got inf"),
    ("policies.train", ["--clean", "{target}", "--steps", "5", "--out", "out/run"], "required: --method"),
    ("policies.train", ["--clean", "{target}", "--method", "clean", "--preset", "tiny", "--down-dims", "8", "12", "--steps", "5",
                        "--out", "out/run"], "--down-dims (8, 12) must be multiples of n_groups 8"),
    ("policies.train", ["--clean", "{target}", "--corrupt", "{sim}", "--method", "cotrain", "--no-contraction", "--steps", "5",
                        "--out", "out/run"], "--no-contraction applies to --method ambient"),
    ("policies.train", ["--config", "out/none.json", "--out", "out/run"], "--config out/none.json: no such file"),
    ("policies.train", ["--config", "{garbage}", "--out", "out/run"], "not valid JSON"),
    ("policies.train", ["--config", "{recorded}", "--out", "out/run"], "gone/clean.zarr: no such clean store"),
    ("policies.train", ["--config", "{recorded}", "--clean", "{target}", "--out", "out/run"], "gone/corrupt.zarr: no such corrupt store"),
    ("policies.train", ["--config", "{recorded}", "--clean", "{target}", "--corrupt", "{sim}", "--method", "cotrain",
                        "--out", "out/run"], "--sigma-min, --sigma-min-from, --sigma-max, --sigma-max-from and --s-max-factor apply to --method ambient only"),
    ("policies.classify", ["--clean", "{target}", "--corrupt", "{sim}", "--device", "tpu"], "--device must be auto, cpu, cuda or cuda:N, not 'tpu'"),
    ("policies.classify", ["--clean", "{target}", "--corrupt", "{sim}", "--folds", "1"], "--folds must be at least 3, got 1"),
    ("policies.classify", ["--clean", "{target}", "--corrupt", "{sim}", "--steps", "0"], "--steps must be at least 1, got 0"),
    ("policies.classify", ["--clean", "{target}", "--corrupt", "{sim}", "--seed", "-1"], "--seed must be at least 0, got -1"),
    ("policies.classify", ["--clean", "{sim}", "--corrupt", "{sim}"], "twice"),
    ("policies.classify", ["--clean", "{target}", "--corrupt", "out/missing.zarr"], "no such"),
    ("policies.plot", ["out/no_run", "--out", "out/curves.png"], "no metrics.jsonl"),
    ("eval.rollout", ["--policy", "random", "--trials", "0", "--out", "out/ev"], "--trials must be at least 1, got 0"),
    ("eval.rollout", ["--policy", "random", "--max-steps", "0", "--out", "out/ev"], "--max-steps"),
    ("eval.rollout", ["--policy", "random", "--max-steps", "-1", "--out", "out/ev"], "--max-steps"),
    ("eval.rollout", ["--policy", "random", "--seed", "-1", "--out", "out/ev"], "--seed"),
    ("eval.rollout", ["--policy", "random", "--workers", "0", "--out", "out/ev"], "--workers must be at least 1, got 0"),
    ("eval.rollout", ["--policy", "random", "--trials", "1", "--max-steps", "1", "--device", "tpu", "--out", "out/ev"], "tpu"),
    ("eval.rollout", ["--ckpt", "out/missing.pt", "--out", "out/ev"], "missing.pt"),
    ("eval.rollout", ["--ckpt", "{garbage}", "--out", "out/ev"], "garbage.pt"),
    ("eval.compare", ["out/no_eval", "--out", "out/c.png"], "no_eval"),
    ("eval.compare", ["{results}", "--out", "{file}/c.png"], "cannot write"),
    ("eval.compare", ["{results}", "--out", "{results}"], "is a directory"),
    ("eval.compare", ["{results}", "{results}", "--paired", "--out", "out/c.png"], "no per-trial results"),
    ("eval.analyze", ["--store", "out/missing.zarr", "--out", "out/an"], "missing.zarr"),
    ("eval.analyze", ["--store", "{target}", "--store", "{sim}", "--chunk", "0", "--out", "out/an"], "--chunk must be at least 4, got 0"),
    ("eval.analyze", ["--store", "{target}", "--store", "{sim}", "--window", "bogus", "--out", "out/an"], "--window: unknown window 'bogus'"),
    ("eval.analyze", ["--store", "{target}", "--annotation", "nosuch", "--out", "out/an"], "nosuch"),
    ("eval.experiment", ["out/none.yaml"], "none.yaml"),
    ("eval.experiment", ["{bad_yaml}", "--out", "out/x"], "bogus"),
    ("eval.experiment", [SMOKE, "--arms", "nosuch", "--out", "out/x"], "nosuch"),
    ("eval.experiment", [SMOKE, "--stage", "bogus", "--out", "out/x"], "bogus"),
    ("eval.experiment", [SMOKE, "--backend", "slurm", "--out", "out/x"], "--backend"),
    ("eval.carry", ["out/norun", "out/record"], "norun"),
    ("eval.carry", ["{results}", "out/record"], "not an experiment run directory"),
    ("eval.carry", ["{results}"], "dest"),
    ("eval.domain_probe", ["--ckpt", "out/missing.pt", "--target", "{target}", "--sim", "{sim}"], "no such checkpoint"),
    ("eval.domain_probe", ["--ckpt", "{garbage}", "--target", "{target}", "--sim", "{sim}"], "garbage.pt"),
    ("eval.side_by_side", ["--state", "out/none.json", "--image", "out/none.json", "--out", "out/s"], "no such results file"),
    ("eval.side_by_side", ["--state", "{results}", "--image", "{results}", "--out", "out/s"], "not an experiment's results.json"),
    ("eval.side_by_side", ["--state", "{results}", "--image", "{results}", "--out", "{file}"], "is a file"),
]


@pytest.mark.parametrize(
    "module, args, expected", CASES, ids=[f"{m.split('.')[1]}:{' '.join(a)[:60]}" for m, a, _ in CASES]
)
def test_a_bad_option_is_one_line_exit_2_and_creates_nothing(made_stores, tmp_path, module, args, expected):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "file").write_text("a plain file where a directory belongs\n")
    (inputs / "garbage.pt").write_bytes(b"not a checkpoint")
    (inputs / "eval").mkdir()
    (inputs / "eval" / "results.json").write_text(json.dumps({"success_rate": 0.5, "ci95": [0.3, 0.7], "trials": 10}))
    (inputs / "bad.yaml").write_text((REPO_ROOT / "experiments" / "smoke.yaml").read_text() + "\nbogus: 1\n")
    (inputs / "recorded").mkdir()  # an ambient arm's recorded run config whose stores are gone
    RunConfig(policy=PolicyConfig(preset="tiny", obs_mode="state"),
              training=TrainingConfig(method="ambient", sigma_min=0.2, steps=5, device="cpu"),
              data=DataConfig(clean=("gone/clean.zarr",), corrupt=("gone/corrupt.zarr",))).save(inputs / "recorded" / "config.json")
    work = tmp_path / "work"
    work.mkdir()
    places = {"sim": made_stores / "sim.zarr", "target": made_stores / "target.zarr", "file": inputs / "file",
              "garbage": inputs / "garbage.pt", "bad_yaml": inputs / "bad.yaml", "results": inputs / "eval",
              "recorded": inputs / "recorded" / "config.json"}
    before = tree(made_stores), tree(inputs)

    outcome = run_cli(module, [a.format(**places) for a in args], cwd=work)

    assert_one_line_failure(outcome, expected)
    assert tree(work) == {}, f"left behind: {sorted(tree(work))}"
    assert (tree(made_stores), tree(inputs)) == before

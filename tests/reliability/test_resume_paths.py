"""A training run resumes on the data it began with, however its stores are named, and on nothing else.

The checkpoint records each store's digest: a relative path for an absolute one, or an experiment
directory moved or copied with its stores, resumes (and trains on to the weights of an uninterrupted
run); new data at the old path is refused in one line with the run directory left as it was. A
checkpoint from before the digests compares paths, as it always did, but another spelling passes.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from policies.checkpoint import load_checkpoint, save_checkpoint
from policies.config import DataConfig, PolicyConfig, RunConfig, TrainingConfig
from policies.train import TrainingError, main, train
from tests.policies.synthetic_stores import make_store
from tests.reliability.cli_runs import Outcome, assert_one_line_failure, tree

# One intra-op thread: tiny models, and a busy machine slows spinning OpenMP threads by 10-50x.
torch.set_num_threads(1)

STEPS = 6
STOP_AT = 3


def config(clean: str | Path, **training) -> RunConfig:
    training = {"method": "clean", "steps": STEPS, "batch_size": 8, "lr": 1e-3, "warmup_steps": 2, "seed": 0,
                "device": "cpu", "log_every": 1, **training}  # fmt: skip
    return RunConfig(policy=PolicyConfig(preset="tiny", obs_mode="state"), training=TrainingConfig(**training),
                     data=DataConfig(clean=(str(clean),)))  # fmt: skip


def train_until_stopped(run_config: RunConfig, out: Path) -> None:
    """Train ``STOP_AT`` of the run's steps and stop, as a Ctrl-C or the experiment runner would."""
    taken = []
    result = train(run_config, out, progress=False, should_stop=lambda: taken.append(1) or len(taken) >= STOP_AT)
    assert result.interrupted and result.step == STOP_AT


def weights(out: Path) -> dict[str, torch.Tensor]:
    saved = load_checkpoint(out)
    return {**{f"model.{k}": v for k, v in saved["model"].items()}, **{f"ema.{k}": v for k, v in saved["ema_model"].items()}}


def assert_same_weights(out: Path, reference: Path) -> None:
    mine, theirs = weights(out), weights(reference)
    assert mine.keys() == theirs.keys()
    different = [key for key in mine if not torch.equal(mine[key], theirs[key])]
    assert not different, different[:5]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    """The run every resumed one must reach: STEPS steps in one go, on a store like the tests' own."""
    root = tmp_path_factory.mktemp("uninterrupted")
    store = make_store(root / "clean.zarr", episodes=2, steps=20, seed=0)
    result = train(config(store), root / "run", progress=False)
    assert result.step == STEPS
    return root / "run"


def test_a_relative_path_resumes_a_run_begun_with_the_absolute_one(tmp_path, monkeypatch, uninterrupted):
    store = make_store(tmp_path / "data" / "clean.zarr", episodes=2, steps=20, seed=0)
    out = tmp_path / "run"
    train_until_stopped(config(store.resolve()), out)

    monkeypatch.chdir(tmp_path)
    result = train(config("data/clean.zarr"), Path("run"), progress=False)
    assert result.step == STEPS and len(result.losses) == STEPS - STOP_AT
    assert load_checkpoint(out)["step"] == STEPS
    assert_same_weights(out, uninterrupted)
    # Every other field still has to match: the same data under another spelling is no licence for another lr.
    with pytest.raises(TrainingError, match=r"another config \(training\.lr 0\.001 -> 0\.0005\)"):
        train(config("data/clean.zarr", steps=2 * STEPS, lr=5e-4), Path("run"), progress=False)


@pytest.mark.parametrize("relocate", [shutil.move, shutil.copytree], ids=["moved", "copied"])
def test_an_experiment_directory_moved_with_its_stores_resumes_its_half_trained_arm(tmp_path, relocate, uninterrupted):
    experiment = tmp_path / "runs" / "experiments" / "pilot"
    store = make_store(experiment / "data" / "clean.zarr", episodes=2, steps=20, seed=0)
    arm = Path("arms") / "clean" / "train"
    train_until_stopped(config(store), experiment / arm)

    elsewhere = tmp_path / "elsewhere" / "pilot"
    elsewhere.parent.mkdir()
    relocate(experiment, elsewhere)
    result = train(config(elsewhere / "data" / "clean.zarr"), elsewhere / arm, progress=False)
    assert result.step == STEPS and len(result.losses) == STEPS - STOP_AT
    assert_same_weights(elsewhere / arm, uninterrupted)
    assert load_checkpoint(elsewhere / arm)["run_config"].data.clean == (str(elsewhere / "data" / "clean.zarr"),)


def test_other_data_at_the_same_path_is_refused_in_one_line_and_the_run_is_left_as_it_was(tmp_path, capsys):
    store = make_store(tmp_path / "clean.zarr", episodes=2, steps=20, seed=0)
    out = tmp_path / "run"
    train_until_stopped(config(store), out)
    shutil.rmtree(store)
    make_store(store, episodes=2, steps=20, seed=1)  # same shape and path, other episodes
    before = tree(out)

    args = ["--clean", str(store), "--method", "clean", "--obs", "state", "--preset", "tiny", "--steps", str(STEPS),
            "--batch-size", "8", "--lr", "1e-3", "--warmup-steps", "2", "--log-every", "1", "--device", "cpu",
            "--out", str(out)]  # fmt: skip
    code = main(args)  # in this process: a second interpreter importing torch takes minutes on a busy machine
    captured = capsys.readouterr()
    line = assert_one_line_failure(Outcome(code, captured.out, captured.err), "holds a run trained on other data")
    assert f"{store} holds other episodes" in line and "use a new --out" in line
    assert tree(out) == before


def test_a_checkpoint_without_digests_compares_paths_but_takes_another_spelling_of_the_same_store(tmp_path, monkeypatch):
    store = make_store(tmp_path / "data" / "clean.zarr", episodes=2, steps=20, seed=0)
    copy = tmp_path / "copy.zarr"
    shutil.copytree(store, copy)
    out = tmp_path / "run"
    train_until_stopped(config(store.resolve()), out)
    saved = load_checkpoint(out)  # as a checkpoint written before the digests were recorded
    saved["data"].pop("store_digests", None)
    save_checkpoint(out / "ckpt.pt", {k: v for k, v in saved.items() if k not in ("run_config", "format", "format_version")})

    with pytest.raises(TrainingError, match=r"another config \(data\.clean"):  # the same episodes, but not the same store
        train(config(copy), out, progress=False)
    monkeypatch.chdir(tmp_path / "data")
    assert os.path.samefile("clean.zarr", store)
    result = train(config("clean.zarr"), out, progress=False)
    assert result.step == STEPS
    assert "store_digests" in load_checkpoint(out)["data"]  # recorded from now on

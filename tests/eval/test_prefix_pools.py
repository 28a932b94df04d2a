"""Nested corrupt pools (``prefix_of``): a scaling curve's smaller sets are the first episodes of its largest one."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from data_gen.episode_store import EpisodeStore
from eval.experiment import main
from eval.experiment_config import ExperimentConfig
from tests.policies.synthetic_stores import make_store

ROOT = Path(__file__).resolve().parents[2]


def nested_config(tmp_path: Path, **pools) -> Path:
    clean = make_store(tmp_path / "clean.zarr", episodes=3, steps=20, seed=1)
    values = yaml.safe_load((ROOT / "experiments" / "smoke.yaml").read_text())
    values["name"] = "nested"
    values["clean"] = {"store": str(clean)}
    values["corrupt"] = pools or {"large": {"n": 4, "domain": "sim", "seed": 2, "overrides": ["render.image_size=32"]},
                                  "small": {"prefix_of": "large", "n": 2}}  # fmt: skip
    values["arms"] = [{"name": "clean", "method": "clean"}, {"name": "small_cotrain", "method": "cotrain", "corrupt": "small", "alpha": 0.5}]
    path = tmp_path / "nested.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def digest(path: Path) -> str:
    with EpisodeStore.open(path) as store:
        return store.digest()


def test_a_prefix_pool_is_its_base_s_first_episodes_made_once_and_checked_again(tmp_path, capsys):
    config, out = nested_config(tmp_path), tmp_path / "run"
    # Only a prefix pool's arm is asked for: its base is generated all the same, then copied from.
    assert main([str(config), "--out", str(out), "--stage", "data"]) == 0
    with EpisodeStore.open(out / "data" / "large.zarr") as large, EpisodeStore.open(out / "data" / "small.zarr") as small:
        assert (large.n_episodes, small.n_episodes) == (4, 2)
        assert list(small.episode_ends) == list(large.episode_ends[:2])
        assert list(small.meta_column("seed")) == list(large.meta_column("seed")[:2])
    ledger = json.loads((out / "ledger.json").read_text())
    assert ledger["data/small"]["section"] == {"prefix_of": ledger["data/large"]["section"], "n": 2}
    assert ledger["data/small"]["result"]["digest"] == digest(out / "data" / "small.zarr")
    # Gone (a run carried without its stores): copied again, and it must come out the same.
    before = digest(out / "data" / "small.zarr")
    shutil.rmtree(out / "data" / "small.zarr")
    capsys.readouterr()
    assert main([str(config), "--out", str(out), "--stage", "data"]) == 0
    assert "small.zarr: gone; copying it again" in capsys.readouterr().out
    assert digest(out / "data" / "small.zarr") == before
    # The arm trains on the prefix's store.
    from eval.experiment import Experiment

    experiment = Experiment(ExperimentConfig.load(config), out, progress=False)
    run = experiment.run_config(experiment.config.arm("small_cotrain"))
    assert run.data.corrupt == (str(out / "data" / "small.zarr"),)


@pytest.mark.parametrize(
    "pools, message",
    [
        ({"a": {"n": 4, "domain": "sim"}, "b": {"prefix_of": "c", "n": 2}}, "prefix_of 'c' must name another corrupt pool"),
        ({"a": {"n": 4, "domain": "sim"}, "b": {"prefix_of": "a", "n": 3}, "c": {"prefix_of": "b", "n": 2}}, "not itself a prefix"),
        ({"a": {"n": 4, "domain": "sim"}, "b": {"prefix_of": "a", "n": 5}}, "its first 5 episodes of a, which has 4"),
        ({"a": {"n": 4, "domain": "sim"}, "b": {"prefix_of": "a", "n": 2, "seed": 3}}, "nothing of how to make them, not ['seed']"),
        ({"a": {"n": 4, "domain": "sim"}, "b": {"prefix_of": "a"}}, "give n"),
        ({"a": {"n": 4, "domain": "sim"}, "b": {"n": 2, "domain": "sim"}, "clean": {"prefix_of": "a", "n": 2}}, "the clean pool cannot be a prefix"),
    ],
)
def test_a_prefix_pool_that_cannot_be_made_is_refused_in_one_line(tmp_path, capsys, pools, message):
    clean = pools.pop("clean", None)
    config = nested_config(tmp_path, **pools)
    values = yaml.safe_load(config.read_text())
    values["arms"][1]["corrupt"] = "b"
    if clean is not None:
        values["clean"] = clean
    config.write_text(yaml.safe_dump(values))
    assert main([str(config), "--out", str(tmp_path / "run"), "--stage", "data"]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and len(error.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_a_prefix_of_a_label_noise_pool_keeps_the_true_levels_and_not_the_base_s_classifier_set(tmp_path):
    from data_gen.corruption import TRUE_ANNOTATION

    base = make_store(tmp_path / "expert.zarr", episodes=4, steps=[14, 10, 12, 9], seed=3)
    config = nested_config(tmp_path, noisy={"store": str(base), "corruption": {"kind": "label_noise", "seed": 0}},
                           few={"prefix_of": "noisy", "n": 2})  # fmt: skip
    values = yaml.safe_load(config.read_text())
    values["action_normalizer"] = "clean"
    values["arms"][1] = {"name": "few_true", "method": "ambient", "corrupt": "few", "sigma_min": True}
    config.write_text(yaml.safe_dump(values))
    out = tmp_path / "run"
    assert main([str(config), "--out", str(out), "--stage", "data"]) == 0
    with EpisodeStore.open(out / "data" / "noisy.zarr", "a") as noisy, EpisodeStore.open(out / "data" / "few.zarr") as few:
        assert few.annotation_names == (TRUE_ANNOTATION,)
        assert list(few.annotation(TRUE_ANNOTATION).sigma_min) == list(noisy.annotation(TRUE_ANNOTATION).sigma_min[:24])
        noisy.write_annotation("nested-classifier", np.full(noisy.n_steps, 0.4))  # as if the base's arms were run first
    shutil.rmtree(out / "data" / "few.zarr")
    assert main([str(config), "--out", str(out), "--stage", "data"]) == 0
    with EpisodeStore.open(out / "data" / "few.zarr") as few:
        assert few.annotation_names == (TRUE_ANNOTATION,)  # the classifier would annotate the prefix itself

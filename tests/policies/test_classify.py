"""The cross-fitted classifier's sigma_min: zero for indistinguishable data, growing with the corruption."""

import numpy as np
import pytest
import torch

from data_gen.episode_store import EpisodeStore
from policies.classifier import (
    ChunkClassifier,
    Chunks,
    ClassifierConfig,
    chunk_indices,
    estimate_sigma_min,
    mean_t_min,
    read_pools,
    sigma_grid,
    train_classifier,
)
from policies.classify import annotate, assign_folds, main, text_histogram
from policies.normalizer import MinMaxNormalizer
from tests.policies.synthetic_stores import make_store

# Corrupt stores are copies of the clean paths plus white noise of this std (metres; the paths span
# about 0.36 m, so 0.06 is about 0.33 after normalisation to [-1, 1]). Below ~0.01 m this small,
# briefly trained classifier finds nothing.
AMPLITUDES = [0.015, 0.03, 0.06]
EPISODES = 12
CONFIG = ClassifierConfig(
    steps=300, batch_size=128, channels=16, folds=4, eval_every=25, patience=4, validation_size=256, draws=4, device="cpu"
)
PROG = "python -m policies.classify: error:"


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """A clean store, a fresh clean one (same distribution, other paths), and noisy copies of the clean one."""
    root = tmp_path_factory.mktemp("classify")
    clean = make_store(root / "clean.zarr", episodes=EPISODES, steps=40, cameras=(), seed=0)
    fresh = make_store(root / "fresh.zarr", episodes=EPISODES, steps=40, cameras=(), seed=1)
    corrupt = [make_store(root / f"corrupt{a}.zarr", episodes=EPISODES, steps=40, cameras=(), noise=a, seed=0) for a in AMPLITUDES]
    return clean, fresh, corrupt


@pytest.fixture(scope="module")
def fresh_result(stores):
    clean, fresh, _ = stores
    return annotate([clean], [fresh], CONFIG, progress=False)


@pytest.fixture(scope="module")
def classified(stores):
    """annotate() on each noisy copy against the clean store."""
    clean, _, corrupt = stores
    return [annotate([clean], [path], CONFIG, progress=False) for path in corrupt]


def test_clean_vs_fresh_clean_is_admissible_everywhere_but_a_memorising_classifier_is_not(stores, fresh_result):
    clean, fresh, _ = stores
    values = fresh_result.sigma_min[str(fresh)]
    assert values.mean() <= 0.1, f"cross-fitted sigma_min of indistinguishable data: mean {values.mean():.3f}"
    # What cross-fitting replaced: train on every episode, read sigma_min off the same episodes.
    with EpisodeStore.open(clean) as clean_store, EpisodeStore.open(fresh) as fresh_store:
        clean_pool, fresh_pool, _ = read_pools({str(clean): clean_store}, {str(fresh): fresh_store}, CONFIG)
    memorised = train_classifier(clean_pool.chunks, fresh_pool.chunks, CONFIG, torch.device("cpu"))
    memorised_values = estimate_sigma_min(memorised, fresh_pool.chunks, sigma_grid(), CONFIG.eps, CONFIG.draws)
    assert memorised_values.mean() > values.mean() + 0.2, f"memorising {memorised_values.mean():.3f} vs {values.mean():.3f}"


def test_every_corrupt_value_comes_from_a_classifier_that_held_its_episode_out(stores, fresh_result):
    clean, fresh, _ = stores
    assert len(fresh_result.folds) == CONFIG.folds
    ends = EpisodeStore.open(fresh).episode_ends
    step_episode = np.repeat(np.arange(len(ends)), np.diff(np.concatenate([[0], ends])))
    step_fold = fresh_result.step_fold[str(fresh)]
    for step, episode in enumerate(step_episode):
        report = fresh_result.folds[step_fold[step]]
        assert (str(fresh), episode) in report.test
        assert (str(fresh), episode) not in report.train and (str(fresh), episode) not in report.validation
    for report in fresh_result.folds:  # the clean episodes it is tested against were held out too
        clean_test = {e for e in report.test if e[0] == str(clean)}
        assert clean_test and not clean_test & (set(report.train) | set(report.validation))
        assert not set(report.validation) & set(report.train)


def test_sigma_min_grows_with_the_corruption(fresh_result, classified):
    # The fresh clean store is amplitude 0.
    means = [next(iter(result.sigma_min.values())).mean() for result in [fresh_result, *classified]]
    assert all(a < b for a, b in zip(means, means[1:], strict=False)), f"means (fresh, {AMPLITUDES}): {np.round(means, 3)}"
    assert means[-1] > 0.2


def test_heldout_accuracy_per_sigma(classified):
    rows = classified[-1].accuracy
    sigmas = [row["sigma"] for row in rows]
    grid = sigma_grid()
    assert sigmas[0] == 0.0 and sigmas == sorted(sigmas) and all(s in grid for s in sigmas)
    assert rows[0]["balanced"] > 0.85, rows[0]  # the strong corruption is plain at sigma 0
    at_09 = min(rows, key=lambda row: abs(row["sigma"] - 0.9))
    assert abs(at_09["balanced"] - 0.5) < 0.05, at_09  # and hidden at sigma 0.9
    for row in rows:
        assert row["balanced"] == pytest.approx((row["clean"] + row["corrupt"]) / 2)


def test_annotation_set_records_what_made_it(stores, classified):
    clean, _, corrupt = stores
    path, result = corrupt[-1], classified[-1]
    annotation = EpisodeStore.open(path).annotation("classifier")
    np.testing.assert_array_equal(annotation.sigma_min, result.sigma_min[str(path)].astype(np.float32))
    attrs = annotation.attrs
    assert attrs["producer"] == "policies.classify"
    assert attrs["config"] == CONFIG.model_dump()
    assert attrs["clean"] == [str(clean.resolve())] and attrs["corrupt"] == [str(path.resolve())]
    union = np.concatenate([EpisodeStore.open(p).array("action") for p in (clean, path)])
    expected = MinMaxNormalizer.fitted({"action": union})
    np.testing.assert_array_equal(attrs["normalizer"]["action_min"], expected.action_min.double().numpy())
    np.testing.assert_array_equal(attrs["normalizer"]["action_max"], expected.action_max.double().numpy())
    assert attrs["heldout_accuracy"] == result.accuracy
    assert attrs["mean_sigma_min"] == pytest.approx(annotation.sigma_min.mean(), abs=1e-6)
    assert attrs["mean_t_min"] == pytest.approx(mean_t_min(result.sigma_min[str(path)]))
    assert attrs["folds"] == CONFIG.folds and attrs["best_steps"] == [report.log.best_step for report in result.folds]
    assert sorted(attrs["episode_folds"]) == sorted(np.arange(EPISODES) % CONFIG.folds)


def test_cli_writes_refuses_an_existing_name_and_overwrites(tmp_path, capsys):
    clean = make_store(tmp_path / "clean.zarr", episodes=3, steps=20, cameras=(), seed=0)
    corrupt = make_store(tmp_path / "corrupt.zarr", episodes=3, steps=20, cameras=(), noise=0.05, seed=0)
    quick = ["--clean", str(clean), "--corrupt", str(corrupt), "--steps", "2", "--draws", "1", "--device", "cpu"]
    assert main([*quick, "--name", "quick"]) == 0
    printed = capsys.readouterr().out
    assert "mean t_min" in printed and "held-out accuracy" in printed and "wall time" in printed
    first = EpisodeStore.open(corrupt).annotation("quick")
    assert first.attrs["config"]["steps"] == 2 and first.attrs["folds"] == 3

    assert main([*quick, "--name", "quick", "--seed", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(PROG) and "exists" in err and err.count("\n") == 1
    assert EpisodeStore.open(corrupt).annotation("quick").attrs["config"]["seed"] == 0  # unchanged

    assert main([*quick, "--name", "quick", "--seed", "1", "--overwrite", "--with-agent-pos"]) == 0
    replaced = EpisodeStore.open(corrupt).annotation("quick").attrs
    assert replaced["config"]["seed"] == 1 and set(replaced["normalizer"]) == {"action_min", "action_max", "agent_pos_min", "agent_pos_max"}
    assert EpisodeStore.open(corrupt).annotation_names == ("quick",)


def test_cli_fits_the_action_normaliser_on_the_clean_stores_when_asked(tmp_path):
    """--action-normalizer clean measures sigma_min in the units policies.train --action-normalizer clean uses."""
    clean = make_store(tmp_path / "clean.zarr", episodes=3, steps=20, cameras=(), seed=0)
    corrupt = make_store(tmp_path / "corrupt.zarr", episodes=3, steps=20, cameras=(), noise=0.2, seed=1)
    quick = ["--clean", str(clean), "--corrupt", str(corrupt), "--steps", "2", "--draws", "1", "--device", "cpu"]
    assert main([*quick, "--name", "on_clean", "--action-normalizer", "clean"]) == 0
    assert main([*quick, "--name", "on_all"]) == 0
    with EpisodeStore.open(clean) as store:
        actions = store.array("action").astype(np.float64)
    with EpisodeStore.open(corrupt) as store:
        on_clean, on_all = (store.annotation(name).attrs["normalizer"] for name in ("on_clean", "on_all"))
    np.testing.assert_allclose(on_clean["action_min"], actions.min(0), rtol=1e-6)
    np.testing.assert_allclose(on_clean["action_max"], actions.max(0), rtol=1e-6)
    assert np.all(np.array(on_all["action_min"]) < actions.min(0))  # the noisy labels stretch a fit on every store


def test_cli_bad_inputs_are_one_line_exit_2(tmp_path, capsys):
    clean = make_store(tmp_path / "clean.zarr", episodes=3, steps=20, cameras=(), seed=0)
    short = make_store(tmp_path / "short.zarr", episodes=2, steps=20, cameras=(), seed=1)
    quick = ["--steps", "1", "--device", "cpu"]
    cases = {
        "given twice": ["--clean", str(clean), "--corrupt", str(clean)],
        "--device must be auto, cpu, cuda or cuda:N, not 'tpu'": ["--clean", str(clean), "--corrupt", str(short), "--device", "tpu"],
        "no such episode store": ["--clean", str(clean), "--corrupt", str(tmp_path / "missing.zarr")],
        "--eps must be less than 0.5, got 0.7": ["--clean", str(clean), "--corrupt", str(short), "--eps", "0.7"],
        "at least 3 episodes in each pool": ["--clean", str(clean), "--corrupt", str(short)],
    }
    for expected, argv in cases.items():
        assert main([*quick, *argv]) == 2, expected
        err = capsys.readouterr().err
        assert err.startswith(PROG) and expected in err and err.count("\n") == 1, err
    with EpisodeStore.open(short, mode="a"):  # another writer holds the corrupt store: fail before training
        assert main([*quick, "--clean", str(clean), "--corrupt", str(short)]) == 2
        assert "locked" in capsys.readouterr().err
    assert EpisodeStore.open(short).annotation_names == ()


def test_an_untrained_classifier_admits_everything_at_sigma_0():
    model = ChunkClassifier(action_dim=2, channels=8).eval()
    chunks = Chunks(torch.randn(5, 16, 2), None, np.zeros(5, np.int64))
    with torch.no_grad():
        assert torch.equal(model(chunks.action, torch.rand(5)), torch.zeros(5))  # c = 0.5 exactly
    np.testing.assert_array_equal(estimate_sigma_min(model, chunks, sigma_grid(), draws=2), np.zeros(5))


def test_folds_are_balanced_and_the_same_shuffle_for_both_pools():
    folds = assign_folds(11, 4, seed=3)
    assert sorted(np.bincount(folds)) == [2, 3, 3, 3]
    np.testing.assert_array_equal(folds, assign_folds(11, 4, seed=3))
    assert not np.array_equal(folds, assign_folds(11, 4, seed=4))


def test_chunks_start_at_every_step_and_repeat_the_episode_end():
    indices = chunk_indices(np.array([5, 8]), horizon=4)
    np.testing.assert_array_equal(indices[0], [0, 1, 2, 3])
    np.testing.assert_array_equal(indices[3], [3, 4, 4, 4])
    np.testing.assert_array_equal(indices[5], [5, 6, 7, 7])
    assert indices.shape == (8, 4)


def test_report_helpers():
    # Training's rule: sigma 0 -> step 0 (sigma_0 > 0), sigma 1 -> T (never admissible).
    assert mean_t_min(np.array([0.0, 1.0])) == pytest.approx(100 / 2)
    lines = text_histogram(np.array([0.05, 0.05, 0.95])).splitlines()
    assert len(lines) == 10 and lines[0].endswith(" 2") and lines[-1].endswith(" 1")

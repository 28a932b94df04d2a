"""The analysis CLI on tiny real episode stores: files, JSON numbers, sigma_min sets and t_min, one-line errors."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from data_gen.episode_store import EpisodeMeta, EpisodeStore
from eval.analyze import NUM_TRAIN_TIMESTEPS, main
from policies.noise import ddpm_sigmas, first_admissible_step

REPO_ROOT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def grid_sigma_min(n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(n_steps,) sigma_min cycling through 0 and every training sigma, and the t_min derived by hand.

    Training admits sigma_t > sigma_min, so sigma_min = 0 gives t_min 0, sigma_min = sigma_k gives
    k + 1, and sigma_{T-1} gives T: no step is admissible.
    """
    grid = np.concatenate([[0.0], ddpm_sigmas(NUM_TRAIN_TIMESTEPS)])
    expected = np.concatenate([[0], np.arange(1, NUM_TRAIN_TIMESTEPS + 1)])
    return np.resize(grid, n_steps).astype(np.float32), np.resize(expected, n_steps)


def write_store(path: Path, n_episodes: int, seed: int, action_noise: float, sigma_min: bool) -> Path:
    """A store of smooth pushes (random-walk actions, pusher following them) with 8x8 images.

    sigma_min: also write two annotation sets, "classifier" (uniform in [0.05, 0.4]) and "grid"
    (``grid_sigma_min``).
    """
    rng = np.random.default_rng(seed)
    with EpisodeStore.create(path, cameras={"overhead": (8, 8)}, domain_config={}, run={"seed": seed}) as store:
        for episode in range(n_episodes):
            steps = int(rng.integers(40, 70))
            action = 0.5 + np.cumsum(rng.normal(scale=0.004, size=(steps, 2)), axis=0)
            theta = rng.uniform(-np.pi, np.pi) + np.cumsum(rng.normal(scale=0.02, size=steps))
            arrays = {
                "action": action + rng.normal(scale=action_noise, size=action.shape),
                "agent_pos": action,
                "slider_pose": np.column_stack([action + 0.05, theta]),
                "overhead": np.zeros((steps, 8, 8, 3), np.uint8),
            }
            meta = EpisodeMeta(source="gcs", domain="sim", seed=episode, initial_pose=(0.5, 0.0, 0.0), success=True)
            store.append_episode(arrays, meta)
    if sigma_min:
        with EpisodeStore.open(path, mode="a") as store:
            store.write_annotation("classifier", rng.uniform(0.05, 0.4, size=store.n_steps).astype(np.float32))
            store.write_annotation("grid", grid_sigma_min(store.n_steps)[0], attrs={"made_by": "test"})
    return path


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("stores")
    return (
        write_store(root / "target.zarr", 6, seed=0, action_noise=0.0, sigma_min=False),
        write_store(root / "sim.zarr", 12, seed=1, action_noise=0.003, sigma_min=True),
    )


def finite_numbers(value) -> list[float]:
    """Every number in a JSON value; raises if one is not finite."""
    if isinstance(value, dict):
        return [x for item in value.values() for x in finite_numbers(item)]
    if isinstance(value, list):
        return [x for item in value for x in finite_numbers(item)]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        assert math.isfinite(value), value
        return [value]
    return []


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as exit:
        code = exit.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_two_stores_write_plots_and_json(stores, tmp_path, capsys):
    clean, corrupt = stores
    out = tmp_path / "out"
    code, stdout, _ = run_cli(capsys, "--store", str(clean), "--store", str(corrupt), "--out", str(out),
                              "--pairs", "300", "--chunk", "16")
    assert code == 0
    both_sets = ("sigma_min_sim_classifier.png", "sigma_min_sim_grid.png")
    for name in ("psd_target.png", "psd_sim.png", "corruption_spectrum.png", *both_sets, "summary.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC, name
    assert not list(out.glob("sigma_min_target*"))  # target holds no annotation set

    result = json.loads((out / "analysis.json").read_text())
    assert {"config", "normalisation", "stores", "corruption_spectrum", "figures", "timing_s"} <= set(result)
    assert len(finite_numbers(result)) > 100
    target, sim = result["stores"]
    for store in (target, sim):
        psd = store["psd"]
        assert len(psd["frequencies_hz"]) == 9 and psd["frequencies_hz"][-1] == pytest.approx(5.0)
        assert len(psd["per_dim"]) == 2 and len(psd["fit_per_dim"]) == 2
        assert {"slope", "intercept"} == set(psd["fit"])
        assert np.allclose(psd["mean"], np.mean(psd["per_dim"], axis=0))
    # Smooth random-walk actions: a steep power law.
    assert -2.6 < target["psd"]["fit"]["slope"] < -1.2

    assert target["sigma_min"] == {} and result["figures"]["sigma_min"]["target"] == {}
    assert set(sim["sigma_min"]) == {"classifier", "grid"}
    assert result["figures"]["sigma_min"]["sim"] == {"classifier": both_sets[0], "grid": both_sets[1]}
    histogram = sim["sigma_min"]["classifier"]
    assert histogram["n_samples"] == sim["n_steps"] == sum(histogram["counts"])
    assert 0.05 <= histogram["mean"] <= 0.4 and 5 <= histogram["mean_t_min"] <= 25
    assert histogram["n_without_admissible_step"] == 0

    corruption = result["corruption_spectrum"]
    assert (corruption["clean"], corruption["corrupt"], corruption["n_pairs"]) == ("target", "sim", 300)
    floors = corruption["noise_floors"]
    assert [level["t"] for level in floors] == [5, 10, 20, 40, 80]
    assert all(a["floor"] < b["floor"] for a, b in zip(floors, floors[1:]))
    assert floors[-1]["masked_fraction"] == 1.0  # t = 80 hides everything of these small differences
    assert "slope" in stdout and "corruption spectrum target vs sim" in stdout and "wrote" in stdout
    check_baselines(corruption, stdout)


def check_baselines(corruption: dict, stdout: str) -> None:
    """The baselines' numbers agree with each other: counts, bins, excess = clean-corrupt minus clean-clean."""
    assert corruption["baselines"] is True
    comparisons = corruption["comparisons"]
    assert [(c["query"], c["reference"], c["own_episode_excluded"]) for c in comparisons.values()] == [
        ("target", "sim", False), ("target", "target", True), ("sim", "sim", True)]
    for item in comparisons.values():
        assert item["n_pairs"] == corruption["n_pairs"]
        assert sum(item["pairs_per_bin"]) + item["pairs_beyond_last_bin"] == item["n_pairs"]
    assert comparisons["clean_vs_corrupt"]["pairs_per_bin"] == [100, 100, 100]  # bins of equal clean/corrupt counts
    assert comparisons["clean_vs_corrupt"]["pairs_beyond_last_bin"] == 0
    edges = corruption["distance_bins"]["edges_m"]
    assert len(edges) == 4 and edges[0] == 0 and np.all(np.diff(edges) > 0)
    f = np.asarray(corruption["frequencies_hz"])
    for entry in corruption["bins"]:
        assert entry["distance_m"] == edges[entry["bin"]: entry["bin"] + 2]
        for key, item in comparisons.items():
            power = entry[key]
            if entry["bin"] not in item["populated_bins"]:
                assert power is None
                continue
            assert power["n_pairs"] == item["pairs_per_bin"][entry["bin"]]
            assert power["total_power"] == pytest.approx(np.sum(power["mean"][1:]) * f[1])
            low, high = power["total_power_interval"]
            assert low <= power["total_power"] <= high
        excess = entry["excess"]
        np.testing.assert_allclose(excess["mean"], np.subtract(entry["clean_vs_corrupt"]["mean"],
                                                               entry["clean_vs_clean"]["mean"]), atol=1e-15)
        assert excess["verdict"] in ("above", "within", "below")
    matched = corruption["matched"]
    assert matched["bins"] == [0, 1, 2] and sum(matched["weights"]) == pytest.approx(1.0)
    weighted = sum(w * np.asarray(entry["clean_vs_clean"]["mean"]) for w, entry in zip(matched["weights"],
                                                                                        corruption["bins"]))
    np.testing.assert_allclose(matched["clean_vs_clean"]["mean"], weighted)
    assert matched["excess"]["total_power"] == pytest.approx(
        matched["clean_vs_corrupt"]["total_power"] - matched["clean_vs_clean"]["total_power"])
    assert "target - other target" in stdout and "sim - other sim" in stdout and "excess" in stdout
    assert stdout.count("excess  ") == 4 and "matched: bins 1, 2, 3" in stdout


def test_baselines_can_be_left_out_or_impossible(stores, tmp_path, capsys):
    clean, corrupt = stores
    common = ["--pairs", "200", "--chunk", "16"]
    code, stdout, _ = run_cli(capsys, "--store", str(clean), "--store", str(corrupt), "--out", str(tmp_path / "off"),
                              "--no-baselines", *common)
    assert code == 0 and "no baselines (--no-baselines)" in stdout
    off = json.loads((tmp_path / "off" / "analysis.json").read_text())["corruption_spectrum"]
    assert off["baselines"] is False and off["matched"] is None
    assert off["comparisons"]["clean_vs_clean"] is None and off["comparisons"]["corrupt_vs_corrupt"] is None
    assert all(entry["clean_vs_clean"] is None and entry["excess"] is None for entry in off["bins"])

    # One clean episode: no clean demo to compare with; no bootstrap: no intervals, numbers side by side.
    one = write_store(tmp_path / "one.zarr", 1, seed=2, action_noise=0.0, sigma_min=False)
    code, stdout, _ = run_cli(capsys, "--store", str(one), "--store", str(corrupt), "--out", str(tmp_path / "one"),
                              "--bootstrap", "0", "--distance-bins", "2", *common)
    assert code == 0 and "no one - other one baseline: one has full chunks in one episode only" in stdout
    single = json.loads((tmp_path / "one" / "analysis.json").read_text())["corruption_spectrum"]
    assert single["comparisons"]["clean_vs_clean"] is None and single["matched"] is None
    assert len(single["bins"]) == 2
    assert all(entry["corrupt_vs_corrupt"]["total_power_interval"] is None for entry in single["bins"])


def test_one_store_skips_the_corruption_spectrum_and_defaults_the_output_dir(stores, capsys):
    clean, _ = stores
    code, stdout, _ = run_cli(capsys, "--store", str(clean), "--chunk", "16")
    assert code == 0
    out = clean.parent / "analysis"
    assert "skipping the corruption spectrum" in stdout
    assert json.loads((out / "analysis.json").read_text())["corruption_spectrum"] is None
    assert (out / "summary.png").exists() and not (out / "corruption_spectrum.png").exists()
    shutil.rmtree(out)


def test_cli_runs_as_a_module(stores, tmp_path):
    clean, corrupt = stores
    command = [sys.executable, "-m", "eval.analyze", "--store", str(clean), "--store", str(corrupt),
               "--out", str(tmp_path), "--pairs", "100", "--chunk", "16"]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "analysis.json").exists() and (tmp_path / "summary.png").exists()

    done = subprocess.run(command[:4] + [str(tmp_path / "nope.zarr")], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "nope.zarr" in done.stderr and "Traceback" not in done.stderr


def test_annotation_chooses_a_set_and_t_min_is_the_training_rule(stores, tmp_path, capsys):
    _, corrupt = stores
    out = tmp_path / "out"
    code, stdout, _ = run_cli(capsys, "--store", str(corrupt), "--annotation", "grid", "--out", str(out),
                              "--chunk", "16")
    assert code == 0
    assert (out / "sigma_min_sim_grid.png").exists() and not (out / "sigma_min_sim_classifier.png").exists()
    result = json.loads((out / "analysis.json").read_text())
    assert result["config"]["annotations"] == ["grid"]
    (sim,) = result["stores"]
    assert set(sim["sigma_min"]) == {"grid"}

    histogram = sim["sigma_min"]["grid"]
    values, expected = grid_sigma_min(sim["n_steps"])
    # Exactly the rule training admits by: sigma_k -> k + 1, 0 -> 0 (a ">=" rule would give k).
    np.testing.assert_array_equal(first_admissible_step(values, ddpm_sigmas(NUM_TRAIN_TIMESTEPS)), expected)
    assert histogram["mean_t_min"] == pytest.approx(expected.mean(), rel=1e-12)
    # sigma_{T-1} leaves no admissible step: t_min is T (never a schedule index), and it is counted.
    assert histogram["n_without_admissible_step"] == np.count_nonzero(expected == NUM_TRAIN_TIMESTEPS) > 0
    assert "grid" in stdout and "none admissible" in stdout


def test_t_min_is_an_index_of_the_schedule_unless_it_is_T_for_none_admissible():
    sigmas = ddpm_sigmas(NUM_TRAIN_TIMESTEPS)
    values = np.concatenate([[0.0, 1.0], sigmas, np.nextafter(sigmas, 0), np.nextafter(sigmas, 1)])
    steps = first_admissible_step(values, sigmas)
    assert steps.min() == 0 and steps.max() == NUM_TRAIN_TIMESTEPS  # T means "none admissible"
    admissible = steps < NUM_TRAIN_TIMESTEPS
    assert np.all(sigmas[steps[admissible]] > values[admissible])
    assert np.all(values[~admissible] >= sigmas[-1])


@pytest.fixture
def damaged_store(stores, tmp_path) -> Path:
    copy = tmp_path / "damaged.zarr"
    shutil.copytree(stores[0], copy)
    (copy / "data" / "action" / "zarr.json").unlink()
    return copy


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--store", "{tmp}/missing.zarr"], "no such episode store"),
        (["--store", "{damaged}"], "damaged episode store"),
        (["--store", "{clean}", "--chunk", "500"], "longer than every episode"),
        (["--store", "{clean}", "--chunk", "2"], "--chunk must be at least 4, got 2"),
        (["--store", "{clean}", "--chunk", "many"], "invalid int"),
        (["--store", "{clean}", "--noise-steps", "100"], "--noise-steps: noise steps must be in [0, 99], got [100]"),
        (["--store", "{clean}", "--window", "wobbly"], "--window: unknown window 'wobbly'"),
        (["--store", "{clean}", "--distance-bins", "0"], "--distance-bins must be at least 1, got 0"),
        (["--store", "{clean}", "--bootstrap", "-1"], "--bootstrap must be at least 0, got -1"),
        (["--store", "{clean}", "--annotation", "classifier"], "no annotation set 'classifier'"),
        (["--store", "{corrupt}", "--annotation", "grid", "--annotation", "nope"], "no annotation set 'nope'"),
        ([], "--store"),
    ],
)
def test_bad_inputs_exit_2_with_one_line(args, expected, stores, damaged_store, tmp_path, capsys):
    args = [a.format(tmp=tmp_path, damaged=damaged_store, clean=stores[0], corrupt=stores[1]) for a in args]
    code, stdout, stderr = run_cli(capsys, *args, "--out", str(tmp_path / "out"))
    assert code == 2
    assert stderr.startswith("python -m eval.analyze: error:") and stderr.count("\n") == 1, stderr
    assert expected in stderr
    assert not (tmp_path / "out").exists()  # a failed run leaves no output directory

"""The noise-conditioned classifier's sigma_min: zero for indistinguishable data, growing with the corruption."""

import numpy as np
import pytest

from data_gen.episode_store import EpisodeStore
from policies.classify import ClassifierConfig, annotate, chunk_indices, main, mean_t_min, text_histogram
from tests.policies.synthetic_stores import make_store

# Same smooth paths in every store; corrupt stores add white noise of this std (metres; the paths
# span about 0.36 m, so 0.06 is about 0.33 after normalisation to [-1, 1]).
AMPLITUDES = [0.0, 0.02, 0.06]
CONFIG = ClassifierConfig(steps=300, batch_size=128, channels=32, draws=4, device="cpu")


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("classify")
    clean = make_store(root / "clean.zarr", episodes=6, steps=40, cameras=(), seed=0)
    corrupt = [make_store(root / f"corrupt{a}.zarr", episodes=6, steps=40, cameras=(), noise=a, seed=0) for a in AMPLITUDES]
    return clean, corrupt


def test_sigma_min_grows_with_the_corruption_and_is_written_to_the_store(stores, capsys):
    clean, corrupt = stores
    means = []
    for path in corrupt[:-1]:
        values = annotate([str(clean)], [str(path)], CONFIG, progress=False)[str(path)]
        np.testing.assert_allclose(EpisodeStore.open(path).sigma_min, values, rtol=1e-6)
        means.append(values.mean())
    # The CLI does the same for the strongest corruption and prints its histogram.
    assert main(["--clean", str(clean), "--corrupt", str(corrupt[-1]), "--steps", "300", "--batch-size", "128",
                 "--draws", "4", "--device", "cpu"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    strongest = EpisodeStore.open(corrupt[-1]).sigma_min
    assert not np.isnan(strongest).any()
    means.append(strongest.mean())
    assert "mean t_min" in printed and printed.count("|") == 10
    assert means[0] < 0.03, f"identical data should be admissible almost everywhere, got {means[0]:.3f}"
    assert 0.03 < means[1] < means[2], f"sigma_min means {means}"
    assert np.mean(strongest > 0) > 0.9  # nearly every corrupt chunk is told apart at low noise


def test_chunks_start_at_every_step_and_repeat_the_episode_end():
    indices = chunk_indices(np.array([5, 8]), horizon=4)
    np.testing.assert_array_equal(indices[0], [0, 1, 2, 3])
    np.testing.assert_array_equal(indices[3], [3, 4, 4, 4])
    np.testing.assert_array_equal(indices[5], [5, 6, 7, 7])
    assert indices.shape == (8, 4)


def test_report_helpers():
    assert mean_t_min(np.array([0.0, 1.0])) == pytest.approx(99 / 2)  # sigma 0 -> step 0, sigma 1 -> last step
    lines = text_histogram(np.array([0.05, 0.05, 0.95])).splitlines()
    assert len(lines) == 10 and lines[0].endswith(" 2") and lines[-1].endswith(" 1")


def test_cli_bad_inputs_exit_2(tmp_path, stores, capsys):
    clean, _ = stores
    assert main(["--clean", str(clean), "--corrupt", str(tmp_path / "missing.zarr"), "--steps", "1"]) == 2
    assert "no such episode store" in capsys.readouterr().err
    assert main(["--clean", str(clean), "--corrupt", str(clean), "--eps", "0.7", "--steps", "1"]) == 2
    assert "eps" in capsys.readouterr().err

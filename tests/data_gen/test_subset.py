"""Prefix stores (nested data sets for a scaling curve): the base's first episodes, exactly, with their annotation sets."""

import numpy as np
import pytest

from data_gen.episode_store import EpisodeStore, StoreError
from data_gen.subset import write_prefix
from tests.policies.synthetic_stores import make_store


@pytest.fixture
def base(tmp_path):
    path = make_store(tmp_path / "base.zarr", episodes=5, steps=[12, 9, 15, 10, 11], seed=4)
    with EpisodeStore.open(path, "a") as store:
        store.write_annotation("true", np.linspace(0.1, 0.6, store.n_steps), attrs={"producer": "test"})
    return path


def test_a_prefix_holds_the_first_episodes_their_metadata_and_annotations(base, tmp_path):
    out = tmp_path / "first3.zarr"
    summary = write_prefix(base, out, 3, progress=False)
    assert summary == {"episodes": 3, "steps": 36, "annotations": ["true"]}
    with EpisodeStore.open(base) as whole, EpisodeStore.open(out) as prefix:
        assert prefix.n_episodes == 3 and list(prefix.episode_ends) == [12, 21, 36]
        for index in range(3):
            for key, values in whole.episode(index).items():
                np.testing.assert_array_equal(prefix.episode(index)[key], values)
        for name, column in whole.meta_columns().items():  # NaN planning times alike
            np.testing.assert_array_equal(prefix.meta_column(name), column[:3])
        true = prefix.annotation("true")
        np.testing.assert_array_equal(true.sigma_min, whole.annotation("true").sigma_min[:36])
        assert true.attrs["producer"] == "test" and true.attrs["n_steps"] == 36
        assert prefix.run == {**whole.run, "prefix_episodes": 3}
        assert prefix.digest() != whole.digest()
    # Only the sets asked for: a set estimated from the whole base (a classifier's) is not the prefix's.
    with EpisodeStore.open(base, "a") as store:
        store.write_annotation("run-classifier", np.full(store.n_steps, 0.3))
    write_prefix(base, tmp_path / "only_true.zarr", 2, progress=False, annotations=("true", "absent"))
    with EpisodeStore.open(tmp_path / "only_true.zarr") as prefix:
        assert prefix.annotation_names == ("true",)
    # Nested: the first 2 of the first 3 are the first 2 of the base.
    write_prefix(out, tmp_path / "first2.zarr", 2, progress=False)
    write_prefix(base, tmp_path / "direct2.zarr", 2, progress=False)
    with EpisodeStore.open(tmp_path / "first2.zarr") as a, EpisodeStore.open(tmp_path / "direct2.zarr") as b:
        assert a.digest() == b.digest()


def test_an_interrupted_copy_resumes_to_the_same_store(base, tmp_path, monkeypatch):
    straight = tmp_path / "straight.zarr"
    write_prefix(base, straight, 4, progress=False)
    out = tmp_path / "resumed.zarr"
    original, calls = EpisodeStore.append_episode, []

    def dies_on_the_third(self, episode, meta):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, episode, meta)

    with monkeypatch.context() as patch:
        patch.setattr(EpisodeStore, "append_episode", dies_on_the_third)
        with pytest.raises(KeyboardInterrupt):
            write_prefix(base, out, 4, progress=False)
    with EpisodeStore.open(out) as partial:
        assert partial.n_episodes == 2 and partial.annotation_names == ()
    assert write_prefix(base, out, 4, progress=False)["episodes"] == 4
    with EpisodeStore.open(out) as resumed, EpisodeStore.open(straight) as whole:
        assert resumed.digest() == whole.digest() and resumed.annotation_names == ("true",)


def test_a_prefix_longer_than_its_base_or_over_another_prefix_is_a_one_line_error(base, tmp_path):
    with pytest.raises(StoreError, match="holds 5 episodes, fewer than the 6") as error:
        write_prefix(base, tmp_path / "six.zarr", 6, progress=False)
    assert "\n" not in str(error.value) and not (tmp_path / "six.zarr").exists()
    write_prefix(base, tmp_path / "p.zarr", 3, progress=False)
    with pytest.raises(StoreError, match="another length"):
        write_prefix(base, tmp_path / "p.zarr", 2, progress=False)
    with EpisodeStore.open(tmp_path / "p.zarr") as kept:  # refused, and nothing lost
        assert kept.n_episodes == 3
    with pytest.raises(ValueError, match="at least 1"):
        write_prefix(base, tmp_path / "none.zarr", 0, progress=False)

"""Controlled corruptions: command offsets in their band, label noise in normalised units, real stores and real physics."""

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from data_gen.corruption import (
    TRUE_ANNOTATION,
    Corruption,
    command_offsets,
    normalised_units,
    write_label_noise,
)
from data_gen.episode_store import EpisodeStore, StoreError
from data_gen.gcs import GenerationConfig, generate
from pushing_sim.domains import load_domain
from tests.policies.synthetic_stores import make_store


def _band_power(offsets: np.ndarray, hz: float, above: float | None = None, below: float | None = None) -> float:
    power = np.abs(np.fft.rfft(offsets, axis=0)) ** 2
    frequencies = np.fft.rfftfreq(len(offsets), 1 / hz)
    keep = np.ones_like(frequencies, bool)
    if above is not None:
        keep &= frequencies > above
    if below is not None:
        keep &= frequencies < below
    return float(power[keep].sum() / power.sum())


@pytest.mark.parametrize("kind", ["jitter", "bias"])
def test_command_offsets_have_their_rms_and_no_power_outside_their_band(kind):
    corruption = Corruption(kind=kind, seed=3)
    offsets = command_offsets(corruption, episode_key=7, n_steps=750, control_hz=10.0)
    assert offsets.shape == (750, 2)
    np.testing.assert_allclose(np.sqrt((offsets**2).mean(axis=0)), corruption.rms_m, rtol=1e-9)
    if kind == "jitter":  # nothing below 2 Hz, zero mean
        assert _band_power(offsets, 10.0, below=corruption.cutoff_hz) < 1e-20
        np.testing.assert_allclose(offsets.mean(axis=0), 0, atol=1e-12)
    else:  # nothing above 0.2 Hz: a slow drift
        assert _band_power(offsets, 10.0, above=corruption.cutoff_hz) < 1e-20
        assert np.abs(np.diff(offsets, axis=0)).max() < 0.2 * corruption.rms_m
    # Deterministic per (seed, episode), different across episodes and seeds.
    np.testing.assert_array_equal(offsets, command_offsets(corruption, 7, 750, 10.0))
    assert not np.allclose(offsets, command_offsets(corruption, 8, 750, 10.0))
    assert not np.allclose(offsets, command_offsets(Corruption(kind=kind, seed=4), 7, 750, 10.0))


def test_corruption_fills_its_kinds_defaults_and_refuses_foreign_fields():
    assert Corruption(kind="label_noise").s_range == (0.1, 0.6)
    assert Corruption(kind="bias", rms_m=0.03).cutoff_hz == 0.2
    with pytest.raises(ValidationError, match="belong to another kind"):
        Corruption(kind="label_noise", rms_m=0.01)
    with pytest.raises(ValidationError, match="belong to another kind"):
        Corruption(kind="jitter", s_range=(0.1, 0.2))
    with pytest.raises(ValidationError, match="s_range"):
        Corruption(kind="label_noise", s_range=(0.5, 1.0))
    with pytest.raises(ValueError, match="labels, not commands"):
        command_offsets(Corruption(kind="label_noise"), 0, 100, 10.0)


def _label_noise_store(tmp_path: Path, name: str, corruption: Corruption, low, high) -> Path:
    out = tmp_path / name
    write_label_noise(tmp_path / "base.zarr", out, corruption, low, high, progress=False)
    return out


def test_label_noise_is_vp_noise_in_normalised_units_with_the_true_level_annotated(tmp_path):
    make_store(tmp_path / "base.zarr", episodes=40, steps=[20 + i for i in range(40)], image_size=8)
    low, high = np.array([0.3, 0.35]), np.array([0.8, 0.7])  # the clean pool's range, wider than this base's
    corruption = Corruption(kind="label_noise", s_range=(0.2, 0.5), seed=1)
    out = _label_noise_store(tmp_path, "noisy.zarr", corruption, low, high)
    centre, scale = normalised_units(low, high)
    with EpisodeStore.open(tmp_path / "base.zarr") as base, EpisodeStore.open(out) as noisy:
        assert noisy.n_episodes == base.n_episodes and noisy.run["corruption"]["kind"] == "label_noise"
        true = noisy.annotation(TRUE_ANNOTATION)
        assert true.attrs["normalizer"] == {"action_min": low.tolist(), "action_max": high.tolist()}
        residuals, levels = [], []
        for i in range(base.n_episodes):
            clean, corrupt = base.episode(i), noisy.episode(i)
            for key in ("agent_pos", "slider_pose", "overhead"):  # the executed motion is the expert's
                np.testing.assert_array_equal(clean[key], corrupt[key])
            s = float(true.sigma_min[noisy.episode_slice(i)][0])
            assert np.all(true.sigma_min[noisy.episode_slice(i)] == np.float32(s)) and 0.2 <= s <= 0.5
            assert noisy.episode_meta(i).extra["label_noise_s"] == pytest.approx(s)
            a, y = (clean["action"] - centre) * scale, (corrupt["action"].astype(np.float64) - centre) * scale
            residuals.append((y - np.sqrt(1 - s**2) * a) / s)  # must be the white z
            levels.append(s)
        z = np.concatenate(residuals)
        assert abs(z.mean()) < 0.05 and abs(z.std() - 1) < 0.05  # 2,000+ draws: N(0, 1) in normalised units
        lag1 = np.mean([np.corrcoef(r[:-1, 0], r[1:, 0])[0, 1] for r in residuals])
        assert abs(lag1) < 0.1  # white in time
        assert np.std(levels) > 0.05  # s varies per episode


def test_label_noise_is_deterministic_resumes_and_refuses_other_units(tmp_path):
    make_store(tmp_path / "base.zarr", episodes=6, steps=15, image_size=8)
    corruption = Corruption(kind="label_noise", seed=2)
    low, high = np.array([0.3, 0.3]), np.array([0.8, 0.8])
    whole = _label_noise_store(tmp_path, "whole.zarr", corruption, low, high)
    # An interrupted copy: the first 2 episodes written, then the same call again.
    partial = tmp_path / "partial.zarr"
    with EpisodeStore.open(whole) as done, EpisodeStore.create(
        partial, cameras={"overhead": (8, 8)}, domain_config=done.domain_config, run=done.run
    ) as started:
        for i in range(2):
            started.append_episode(done.episode(i), done.episode_meta(i))
    write_label_noise(tmp_path / "base.zarr", partial, corruption, low, high, progress=False)
    with EpisodeStore.open(whole) as a, EpisodeStore.open(partial) as b:
        np.testing.assert_array_equal(a.array("action"), b.array("action"))
        np.testing.assert_array_equal(a.annotation(TRUE_ANNOTATION).sigma_min, b.annotation(TRUE_ANNOTATION).sigma_min)
    with pytest.raises(StoreError, match="another base, corruption or normaliser"):
        write_label_noise(tmp_path / "base.zarr", whole, corruption, low, high + 0.1, progress=False)


def test_jitter_is_executed_in_the_physics_and_recorded(tmp_path):
    """Real Drake: the same start and seed with and without jitter; the recorded commands carry its band."""
    domain = load_domain("target", ["render.image_size=16"])
    common = dict(n=1, seed=5, domain=domain, replay="physics", replan_every=20, keep="all")
    plain, shaky = tmp_path / "plain.zarr", tmp_path / "shaky.zarr"
    jitter = Corruption(kind="jitter", rms_m=0.004)
    generate(GenerationConfig(**common), plain, progress=False)
    generate(GenerationConfig(**common, corruption=jitter), shaky, progress=False)
    with EpisodeStore.open(plain) as a, EpisodeStore.open(shaky) as b:
        assert b.run["corruption"]["kind"] == "jitter" and "corruption" not in a.run
        assert b.episode_meta(0).extra["corruption"] == "jitter"
        clean, noisy = a.episode(0)["action"], b.episode(0)["action"]
        attempt = b.episode_meta(0).extra["attempt"]
    offsets = command_offsets(jitter, attempt, 750, 10.0)
    # The first command is the plan's plus the offset exactly (same start, same plan); later ones re-plan.
    np.testing.assert_allclose(noisy[0], clean[0] + offsets[0], atol=1e-6)
    # The plan's commands are piecewise linear (second differences ~0 but at corners); the recorded
    # shaky ones carry the jitter's high-frequency power (second differences of its order).
    roughness = [float(np.median(np.abs(np.diff(a.astype(np.float64), 2, axis=0)))) for a in (clean, noisy)]
    assert roughness[0] < 0.1 * jitter.rms_m < 0.5 * jitter.rms_m < roughness[1]


def test_generation_refuses_label_noise_and_kinematic_replay():
    domain = load_domain("sim")
    with pytest.raises(ValidationError, match="executed"):
        GenerationConfig(n=1, domain=domain, replay="physics", corruption=Corruption(kind="label_noise"))
    with pytest.raises(ValidationError, match="physics replay"):
        GenerationConfig(n=1, domain=domain, corruption=Corruption(kind="bias"))

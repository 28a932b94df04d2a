"""Controlled corruptions of expert demonstrations: controls where the comparison's answer is known.

- ``label_noise`` (positive control, the method's exact assumption): the recorded actions are replaced,
  in normalised action units, by y = sqrt(1 - s^2) a + s z (white z, s uniform per episode), which is
  exactly the x_s that ambient training assumes a corrupt chunk to be; the executed motion is the
  expert's. The true s goes into the store as an annotation set, so a run can train with it.
- ``jitter`` (a shaky operator): zero-mean command noise above a cutoff frequency, added to the
  expert's commands, executed in the physics and recorded as executed. Noise at moderate sigma hides it.
- ``bias`` (negative control): a slowly drifting command offset below a cutoff frequency, executed and
  recorded. Only very high noise hides it, so ambient training should not gain over cotraining.

Everything is deterministic from the corruption's seed and the episode's key (its generation attempt
for the executed kinds, its index in the base store for label noise).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from tqdm import tqdm

from data_gen.episode_store import EpisodeStore, StoreError, meta_from_columns, open_derived

# Random streams of their own, apart from the start poses' and the evaluation's.
OFFSET_STREAM = 11
LABEL_STREAM = 12
TRUE_ANNOTATION = "true"  # the label-noise store's annotation set of the true per-episode s

DEFAULTS = {
    "label_noise": {"s_range": (0.1, 0.6)},
    "jitter": {"rms_m": 0.005, "cutoff_hz": 2.0},
    "bias": {"rms_m": 0.02, "cutoff_hz": 0.2},
}


class Corruption(BaseModel):
    """One controlled corruption; fields another kind uses are refused, missing ones take the kind's default.

    label_noise: ``s_range`` (s uniform in it, per episode; normalised action units).
    jitter: ``rms_m`` per axis of noise with power only at or above ``cutoff_hz``.
    bias: ``rms_m`` per axis of an offset with power only at or below ``cutoff_hz`` (its mean included).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    kind: Literal["label_noise", "jitter", "bias"]
    seed: int = Field(0, ge=0)
    s_range: tuple[float, float] | None = None
    rms_m: float | None = Field(None, gt=0, le=0.2)
    cutoff_hz: float | None = Field(None, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _kind_defaults(cls, values):
        if isinstance(values, dict) and values.get("kind") in DEFAULTS:
            defaults = DEFAULTS[values["kind"]]
            foreign = [k for k in ("s_range", "rms_m", "cutoff_hz") if k not in defaults and values.get(k) is not None]
            if foreign:
                raise ValueError(f"corruption {values['kind']}: {', '.join(foreign)} belong to another kind")
            values = {**defaults, **{k: v for k, v in values.items() if v is not None}}
        return values

    @model_validator(mode="after")
    def _check_range(self) -> Corruption:
        if self.s_range is not None and not 0 <= self.s_range[0] <= self.s_range[1] < 1:
            raise ValueError(f"s_range must satisfy 0 <= low <= high < 1, got {list(self.s_range)}")
        return self

    @property
    def executed(self) -> bool:
        """Whether the corruption changes the commands the physics executes (jitter, bias)."""
        return self.kind != "label_noise"

    def describe(self) -> str:
        if self.kind == "label_noise":
            return f"label noise, s uniform in [{self.s_range[0]}, {self.s_range[1]}] (normalised action units)"
        band = "above" if self.kind == "jitter" else "below"
        return f"{self.kind}: {self.rms_m * 100:.2f} cm rms per axis, power {band} {self.cutoff_hz} Hz"


# --------------------------------------------------------------------------------------------------
# Executed corruptions: command offsets


def command_offsets(corruption: Corruption, episode_key: int, n_steps: int, control_hz: float) -> np.ndarray:
    """(n_steps, 2) offsets in metres added to the expert's commands of episode ``episode_key``.

    White noise filtered in the frequency domain to the corruption's band (jitter: f >= cutoff;
    bias: f <= cutoff, the mean included), then scaled to the rms per axis over the whole series.
    """
    if not corruption.executed:
        raise ValueError(f"corruption {corruption.kind} changes labels, not commands")
    if n_steps < 2:
        raise ValueError(f"need at least 2 steps, got {n_steps}")
    rng = np.random.default_rng([corruption.seed, episode_key, OFFSET_STREAM])
    spectrum = np.fft.rfft(rng.standard_normal((n_steps, 2)), axis=0)
    frequencies = np.fft.rfftfreq(n_steps, d=1.0 / control_hz)
    band = frequencies >= corruption.cutoff_hz if corruption.kind == "jitter" else frequencies <= corruption.cutoff_hz
    if not band.any():
        raise ValueError(f"no frequency of {n_steps} steps at {control_hz} Hz lies in the {corruption.kind} band")
    spectrum[~band] = 0
    offsets = np.fft.irfft(spectrum, n=n_steps, axis=0)
    rms = np.sqrt(np.mean(offsets**2, axis=0))
    return offsets * (corruption.rms_m / np.maximum(rms, 1e-12))


# --------------------------------------------------------------------------------------------------
# Label noise


def normalised_units(action_min: np.ndarray, action_max: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(centre, scale) of the min-max map onto [-1, 1] that policy training fits (policies.normalizer)."""
    action_min, action_max = np.asarray(action_min, np.float64), np.asarray(action_max, np.float64)
    span = action_max - action_min
    if np.any(span < 1e-6):
        raise ValueError("the action range is empty in some dimension; label noise needs a range to scale by")
    return (action_max + action_min) / 2, 2 / span


def noisy_labels(actions: np.ndarray, s: float, z: np.ndarray, centre: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Actions whose normalised values a become sqrt(1 - s^2) a + s z, back in data units."""
    normalised = (np.asarray(actions, np.float64) - centre) * scale
    return (math.sqrt(1 - s * s) * normalised + s * z) / scale + centre


def episode_noise(corruption: Corruption, index: int, n_steps: int, action_dim: int) -> tuple[float, np.ndarray]:
    """The level s and the white noise z (n_steps, action_dim) of base episode ``index``."""
    rng = np.random.default_rng([corruption.seed, index, LABEL_STREAM])
    low, high = corruption.s_range
    return float(rng.uniform(low, high)), rng.standard_normal((n_steps, action_dim))


def write_label_noise(
    base: Path, out: Path, corruption: Corruption, action_min: np.ndarray, action_max: np.ndarray, progress: bool = True
) -> dict:
    """Copy the episode store ``base`` to ``out`` with noisy action labels and the annotation set ``true``.

    action_min, action_max: the normaliser whose units s is measured in (the clean pool's, for a run
    that fits its action normaliser on the clean data); recorded in the annotation set, where training
    checks it against its own. Resumes an interrupted copy; the same inputs give the same store.
    """
    if corruption.kind != "label_noise":
        raise ValueError(f"write_label_noise needs a label_noise corruption, not {corruption.kind}")
    centre, scale = normalised_units(action_min, action_max)
    units = {"action_min": np.asarray(action_min, np.float64).tolist(), "action_max": np.asarray(action_max, np.float64).tolist()}
    with EpisodeStore.open(base) as source:
        run = {**source.run, "corruption": corruption.model_dump(mode="json"), "normalizer": units}
        with open_derived(source, out, run, "a label-noise store of another base, corruption or normaliser") as target:
            if target.n_episodes > source.n_episodes:
                raise StoreError(f"{out}: holds more episodes ({target.n_episodes}) than its base {base} ({source.n_episodes})")
            columns = source.meta_columns()
            levels = np.empty(source.n_episodes)
            bar = tqdm(total=source.n_episodes, initial=target.n_episodes, unit="episode", desc="label noise", disable=not progress)
            for index in range(source.n_episodes):
                steps = source.episode_slice(index)
                levels[index], z = episode_noise(corruption, index, steps.stop - steps.start, source.action_dim)
                if index < target.n_episodes:
                    continue
                episode = source.episode(index)
                episode["action"] = noisy_labels(episode["action"], levels[index], z, centre, scale).astype(np.float32)
                meta = meta_from_columns(columns, index)
                extra = {**meta.extra, "label_noise_s": levels[index], "base_episode": index}
                target.append_episode(episode, meta.model_copy(update={"extra": extra}))
                bar.update(1)
            bar.close()
            per_step = np.repeat(levels, np.diff(np.concatenate([[0], target.episode_ends])))
            target.write_annotation(
                TRUE_ANNOTATION, per_step.astype(np.float32), overwrite=True,
                attrs={"producer": "data_gen.corruption", "corruption": corruption.model_dump(mode="json"), "normalizer": units},
            )  # fmt: skip
    return {"episodes": int(len(levels)), "mean_s": float(levels.mean()) if len(levels) else math.nan}

"""Typed configs of a policy run: the model, the training method and optimiser, and the data.

A ``RunConfig`` is saved as ``runs/NAME/config.json`` and inside the checkpoint; it round-trips
through JSON and YAML. ``PolicyConfig(preset="tiny")`` fills every size field the caller left out
from the preset, so a saved config always lists the sizes it was built with.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, ValidationError, model_serializer, model_validator

from policies.ambient import buffer_factor
from data_gen import strict_yaml

PRESETS: dict[str, dict[str, Any]] = {
    # The pushing papers' sizes (science.md §2): ResNet-18 with 64 channels in its first stage.
    "default": {
        "down_dims": (256, 512, 1024),
        "diffusion_step_embed_dim": 128,
        "resnet_width": 64,
        "spatial_softmax_keypoints": 32,
        "image_feature_dim": 64,
    },
    # An image policy a CPU core trains in hours (benchmarks/image_policy_cost.py): experiments/cpu.yaml's
    # U-Net, and a ResNet-18 trunk a quarter as wide with its first 3 stages (a 6x6 map at 84 px).
    "cpu": {
        "down_dims": (64, 128, 256),
        "diffusion_step_embed_dim": 64,
        "resnet_width": 16,
        "resnet_stages": 3,
        "spatial_softmax_keypoints": 32,
        "image_feature_dim": 64,
    },
    # Small enough to train a few steps on a CPU in a test.
    "tiny": {
        "down_dims": (32, 64),
        "diffusion_step_embed_dim": 32,
        "resnet_width": 8,
        "spatial_softmax_keypoints": 8,
        "image_feature_dim": 16,
    },
}
METHODS = ("clean", "cotrain", "ambient")
# The clean weight per batch element when none is given. Not the episode ratio: with 50 clean and
# 2000 corrupt episodes that is 0.024, so both cotraining and ambient would train on ~98% corrupt
# data. Cotraining practice treats the weight as a tuned knob and puts the scarce clean data well
# above its natural share; 0.5 (equal shares) is the neutral middle of such sweeps. Sweep it.
DEFAULT_ALPHA = 0.5
# s_t^2 / (s_t^2 - s_m^2) cap of Ambient-Omni's buffer, used with the ambient loss (science.md §3).
AMBIENT_LOSS_S_MAX_FACTOR = 4.0
# Training fields that may change when a run is resumed.
RESUMABLE_TRAINING_FIELDS = {"steps", "epochs", "device", "checkpoint_every", "log_every", "keep_checkpoints"}
# Data fields that name episode stores; a resume may compare the stores' contents instead of these paths.
STORE_FIELDS = ("clean", "corrupt")


class Recorded(BaseModel):
    """A config whose dumps are records (saved configs, an experiment's ledger sections).

    Fields added after runs were recorded are listed in ``omit_at_default``: a dump leaves them out
    while they hold their default, so the records of those runs still compare equal and resume.
    """

    omit_at_default: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _omit_new_defaults(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict):
            for name in self.omit_at_default:
                if name in data and getattr(self, name) == type(self).model_fields[name].default:
                    del data[name]
            data = self._recorded(data)
        return data

    def _recorded(self, data: dict[str, Any]) -> dict[str, Any]:
        """The dump as recorded; a config whose fields do not all apply in some form leaves the rest out here."""
        return data


class ConfigError(Exception):
    """An invalid or inconsistent config; the message is one line."""


class PolicyConfig(Recorded):
    """The model and its diffusion process: everything evaluation needs besides the weights."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    omit_at_default: ClassVar[tuple[str, ...]] = ("resnet_stages", "cameras")

    preset: Literal["tiny", "cpu", "default"] = "default"
    obs_mode: Literal["image", "state"] = "image"
    # State mode: the slider angle as given (it wraps at +-pi), or as its cosine and sine.
    state_angle: Literal["raw", "cos_sin"] = "raw"
    horizon: int = Field(16, ge=4)
    n_obs_steps: int = Field(2, ge=1)
    n_action_steps: int = Field(8, ge=1)
    # 1-D temporal U-Net
    down_dims: tuple[int, ...]
    kernel_size: int = Field(5, ge=1)
    n_groups: int = Field(8, ge=1)
    diffusion_step_embed_dim: int = Field(ge=2)
    # vision encoder, one per camera
    resnet_width: int = Field(ge=1)
    resnet_stages: int = Field(4, ge=1, le=4)  # of ResNet-18's 4; fewer keep a finer map on small images
    spatial_softmax_keypoints: int = Field(ge=1)
    image_feature_dim: int = Field(ge=1)
    crop_ratio: float = Field(0.875, gt=0, le=1)  # 96 -> 84 as in Diffusion Policy
    # Image mode: the cameras the policy reads, of those the stores hold (None: all of them); an env
    # may render more, the policy takes these.
    cameras: tuple[str, ...] | None = Field(None, min_length=1)
    # diffusion
    num_train_timesteps: int = Field(100, ge=2)
    prediction_type: Literal["epsilon", "sample"] = "epsilon"
    num_inference_steps: int = Field(10, ge=1)
    clip_sample: bool = True

    @model_validator(mode="before")
    @classmethod
    def _fill_from_preset(cls, values: Any) -> Any:
        if isinstance(values, dict):
            preset = values.get("preset", "default")
            values = {**PRESETS.get(preset, {}), **values}
        return values

    @model_validator(mode="after")
    def _check_sizes(self) -> PolicyConfig:
        if self.n_obs_steps + self.n_action_steps - 1 > self.horizon:
            raise ValueError("n_obs_steps + n_action_steps - 1 must not exceed horizon")
        if self.horizon % 2 ** (len(self.down_dims) - 1):
            raise ValueError(f"horizon must be divisible by {2 ** (len(self.down_dims) - 1)} with {len(self.down_dims)} down_dims")
        if any(d % self.n_groups for d in self.down_dims):
            raise ValueError(f"down_dims {self.down_dims} must be multiples of n_groups {self.n_groups}")
        if self.num_inference_steps > self.num_train_timesteps:
            raise ValueError("num_inference_steps must not exceed num_train_timesteps")
        if self.cameras is not None and len(set(self.cameras)) != len(self.cameras):
            raise ValueError(f"cameras {list(self.cameras)} name a camera twice")
        return self


class TrainingConfig(Recorded):
    """The training method (science.md §3) and the optimiser (science.md §2)."""

    # No inf or NaN in any float: an infinite lr or image cache passes a bound check and fails mid-run.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    omit_at_default: ClassVar[tuple[str, ...]] = ("contraction", "keep_checkpoints")

    method: Literal["clean", "cotrain", "ambient"] = "clean"
    # Clean weight per batch element (cotrain, ambient); DEFAULT_ALPHA when neither it nor a schedule is given.
    alpha: float | None = Field(None, ge=0, le=1)
    # Clean weight linear in sigma: (at sigma = 0, at sigma = 1); replaces alpha.
    alpha_schedule: tuple[float, float] | None = None
    # Order of the draws: the sample, then an admissible step (the method), or the fixed-weight step-first form.
    admission: Literal["sample_first", "step_first"] = "sample_first"
    # Ambient: one source of sigma_min, a dataset-level value or a named annotation set of the corrupt stores.
    sigma_min: float | None = Field(None, ge=0, lt=1)
    sigma_min_from: str | None = Field(None, min_length=1)
    # The low-noise branch, off unless one of these is given: a value, or an annotation set's sigma_max.
    sigma_max: float | None = Field(None, gt=0, le=1)
    sigma_max_from: str | None = Field(None, min_length=1)
    corrupt_loss: Literal["denoise", "ambient"] = "denoise"
    # The ambient loss first contracts a corrupt chunk to its sigma_min (right for data that are not noisy
    # copies: sim, other robots); False takes it as x_{sigma_min} as it is, right for data that already
    # are noisy copies at that level (a label-noise control), which a contraction would noise twice.
    contraction: bool = True
    # The buffer b = sqrt(1 + 1/(s_max_factor - 1)) on sigma_min. None: AMBIENT_LOSS_S_MAX_FACTOR with
    # the ambient loss (its division needs it), no buffer with the denoising loss.
    s_max_factor: float | None = Field(None, gt=1)
    lr: float = Field(1e-4, gt=0)
    betas: tuple[float, float] = (0.95, 0.999)
    weight_decay: float = Field(1e-6, ge=0)
    warmup_steps: int = Field(500, ge=0)
    ema_power: float = Field(0.75, gt=0)
    ema_max_decay: float = Field(0.9999, ge=0, le=1)
    batch_size: int = Field(64, ge=1)
    steps: int | None = Field(None, ge=1)
    # Passes over the clean windows (the pool every method has), so equal epochs are equal steps.
    epochs: int | None = Field(None, ge=1)
    seed: int = Field(0, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    checkpoint_every: int = Field(1000, ge=1)
    # Steps whose checkpoint is also kept as ckpt_STEP.pt beside the run's ckpt.pt (which each save
    # replaces): the snapshots a learning curve evaluates.
    keep_checkpoints: tuple[int, ...] = ()
    log_every: int = Field(10, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _default_alpha(cls, values: Any) -> Any:
        if isinstance(values, dict) and values.get("method", "clean") != "clean":
            if values.get("alpha") is None and values.get("alpha_schedule") is None:
                values = {**values, "alpha": DEFAULT_ALPHA}
        return values

    @model_validator(mode="after")
    def _check_method(self) -> TrainingConfig:
        if self.steps is not None and self.epochs is not None:
            raise ValueError("give steps or epochs, not both")
        if self.alpha is not None and self.alpha_schedule is not None:
            raise ValueError("give alpha or alpha_schedule, not both")
        if self.alpha_schedule is not None and not all(0 <= a <= 1 for a in self.alpha_schedule):
            raise ValueError(f"alpha_schedule values must lie in [0, 1], got {self.alpha_schedule}")
        noise_levels = (self.sigma_min, self.sigma_min_from, self.sigma_max, self.sigma_max_from, self.s_max_factor)
        if self.method != "ambient" and any(v is not None for v in noise_levels):
            raise ValueError("sigma_min, sigma_min_from, sigma_max, sigma_max_from and s_max_factor apply to method 'ambient' only")
        if self.method == "ambient" and (self.sigma_min is None) == (self.sigma_min_from is None):
            raise ValueError("method 'ambient' needs exactly one of sigma_min (dataset-level) or sigma_min_from (an annotation set)")
        if self.sigma_max is not None and self.sigma_max_from is not None:
            raise ValueError("give sigma_max or sigma_max_from, not both")
        if self.method == "clean" and (self.alpha is not None or self.alpha_schedule is not None):
            raise ValueError("alpha applies to methods 'cotrain' and 'ambient' only")
        if self.corrupt_loss == "ambient" and self.method != "ambient":
            raise ValueError("corrupt_loss 'ambient' applies to method 'ambient' only")
        if any(step < 1 for step in self.keep_checkpoints) or list(self.keep_checkpoints) != sorted(set(self.keep_checkpoints)):
            raise ValueError(f"keep_checkpoints must be increasing step numbers from 1, got {list(self.keep_checkpoints)}")
        if not self.contraction and self.corrupt_loss != "ambient":
            raise ValueError("contraction=False applies to method 'ambient' with corrupt_loss 'ambient' only")
        return self

    @property
    def buffer(self) -> float:
        """The factor b on sigma_min: 1 (none) unless the ambient loss or an explicit s_max_factor asks for one."""
        factor = self.s_max_factor
        if factor is None and self.corrupt_loss == "ambient":
            factor = AMBIENT_LOSS_S_MAX_FACTOR
        return 1.0 if factor is None else buffer_factor(factor)

    @property
    def total_steps_given(self) -> bool:
        return self.steps is not None or self.epochs is not None


class DataConfig(Recorded):
    """The episode stores a run trains on, and how much memory decoded images may take."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    omit_at_default: ClassVar[tuple[str, ...]] = ("action_normalizer",)

    clean: tuple[str, ...] = Field(min_length=1)
    corrupt: tuple[str, ...] = ()
    image_cache_gb: float | None = Field(None, ge=0)  # None: up to half the available memory
    # The steps the action normaliser is fitted on: every store's, or the clean stores' alone. With
    # corrupt data that are noisy copies (a label-noise control), "clean" keeps the action units the
    # noise was drawn in; a fit that includes the noisy actions would stretch them.
    action_normalizer: Literal["all", "clean"] = "all"


class RunConfig(BaseModel):
    """Everything a training run was started with."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    data: DataConfig

    @model_validator(mode="after")
    def _check_method_has_its_data(self) -> RunConfig:
        if self.training.method == "clean" and self.data.corrupt:
            raise ValueError("method 'clean' trains on clean stores only; drop the corrupt stores")
        if self.training.method != "clean" and not self.data.corrupt:
            raise ValueError(f"method {self.training.method!r} needs at least one corrupt store")
        return self

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        try:
            values = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigError(f"run config is not valid JSON: {error}") from None
        return _validated(cls, values, "JSON")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str) -> RunConfig:
        try:
            values = strict_yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ConfigError(f"run config is not valid YAML: {strict_yaml.describe(error)}") from None
        return _validated(cls, values, "YAML")

    def save(self, path: str | Path) -> None:
        """Write as JSON, or YAML when the name ends in .yaml/.yml."""
        path = Path(path)
        text = self.to_yaml() if path.suffix in (".yaml", ".yml") else self.to_json()
        path.write_text(text)

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: no such config file")
        text = path.read_text()
        return cls.from_yaml(text) if path.suffix in (".yaml", ".yml") else cls.from_json(text)

    def resume_differences(self, other: RunConfig, stores: bool = True) -> list[str]:
        """Fields that differ from ``other`` and forbid resuming its run (steps, device... may differ).

        stores: compare the store paths too; False leaves them to a caller that compares the stores' contents.
        """
        # Every field, also those a dump leaves out at their default (Recorded), so none reads as None.
        mine, theirs = ({section: dict(getattr(config, section)) for section in ("policy", "training", "data")} for config in (self, other))
        differences = []
        for section in ("policy", "training", "data"):
            for key in sorted(set(mine[section]) | set(theirs[section])):
                if section == "training" and key in RESUMABLE_TRAINING_FIELDS:
                    continue
                if section == "data" and key in STORE_FIELDS and not stores:
                    continue
                if mine[section].get(key) != theirs[section].get(key):
                    differences.append(f"{section}.{key} {theirs[section].get(key)!r} -> {mine[section].get(key)!r}")
        return differences


def _validated(cls: type[RunConfig], values: Any, what: str) -> RunConfig:
    try:
        return cls.model_validate(values)
    except ValidationError as error:
        raise ConfigError(f"invalid {what} run config: {one_line(error)}") from None


def one_line(error: ValidationError) -> str:
    """A pydantic validation error as one line: 'field: message; field: message'."""
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"])
        parts.append(f"{where}: {item['msg']}" if where else item["msg"])
    return "; ".join(parts)

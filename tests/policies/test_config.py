"""Run configs: presets, validation as one-line errors, JSON/YAML round trips, resume compatibility."""

import json

import pytest
from pydantic import ValidationError

from policies.ambient import buffer_factor
from policies.config import DEFAULT_ALPHA, ConfigError, DataConfig, PolicyConfig, RunConfig, TrainingConfig


def run_config(**training) -> RunConfig:
    return RunConfig(
        policy=PolicyConfig(preset="tiny", obs_mode="state", prediction_type="sample"),
        training=TrainingConfig(method="ambient", sigma_min=0.3, alpha_schedule=(0.9, 0.1), steps=10, **training),
        data=DataConfig(clean=("a.zarr",), corrupt=("b.zarr", "c.zarr")),
    )


def test_presets_fill_the_sizes_not_given():
    default, tiny = PolicyConfig(), PolicyConfig(preset="tiny", down_dims=(16, 32))
    assert default.down_dims == (256, 512, 1024) and default.resnet_width == 64
    assert default.horizon == 16 and default.n_obs_steps == 2 and default.n_action_steps == 8
    assert default.num_train_timesteps == 100 and default.num_inference_steps == 10
    assert tiny.down_dims == (16, 32) and tiny.resnet_width == 8
    training = TrainingConfig()
    assert (training.lr, training.betas, training.weight_decay, training.warmup_steps) == (1e-4, (0.95, 0.999), 1e-6, 500)
    assert (training.ema_power, training.ema_max_decay, training.s_max_factor) == (0.75, 0.9999, None)


def test_alpha_defaults_to_equal_shares_not_the_episode_ratio():
    assert TrainingConfig(method="cotrain").alpha == DEFAULT_ALPHA == 0.5
    assert TrainingConfig(method="ambient", sigma_min=0.2).alpha == 0.5
    assert TrainingConfig(method="cotrain", alpha=0.1).alpha == 0.1
    assert TrainingConfig(method="cotrain", alpha_schedule=(0.9, 0.1)).alpha is None
    assert TrainingConfig(method="clean").alpha is None


def test_the_buffer_belongs_to_the_ambient_loss():
    assert TrainingConfig(method="ambient", sigma_min=0.2).buffer == 1.0  # denoising loss: none
    assert TrainingConfig(method="ambient", sigma_min=0.2, corrupt_loss="ambient").buffer == pytest.approx(buffer_factor(4.0))
    assert TrainingConfig(method="ambient", sigma_min=0.2, s_max_factor=2.0).buffer == pytest.approx(buffer_factor(2.0))
    assert TrainingConfig(method="cotrain").buffer == 1.0


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_round_trip_through_json_and_yaml(tmp_path, suffix):
    config = run_config()
    config.save(tmp_path / f"config{suffix}")
    assert RunConfig.load(tmp_path / f"config{suffix}") == config
    assert RunConfig.from_json(config.to_json()) == RunConfig.from_yaml(config.to_yaml()) == config


def test_contraction_is_left_out_of_records_at_its_default():
    """Runs recorded before the field existed dump and compare as before; turned off, it is recorded."""
    ambient_loss = {"method": "ambient", "sigma_min": 0.3, "corrupt_loss": "ambient"}
    default, off = TrainingConfig(**ambient_loss), TrainingConfig(**ambient_loss, contraction=False)
    assert default.contraction is True and "contraction" not in default.model_dump()
    assert "contraction" not in json.loads(default.model_dump_json())
    assert json.loads(off.model_dump_json())["contraction"] is False and off.model_dump()["contraction"] is False
    for config in (default, off):
        assert TrainingConfig.model_validate_json(config.model_dump_json()) == config
    run = run_config(corrupt_loss="ambient", contraction=False)
    assert RunConfig.from_json(run.to_json()) == run and RunConfig.from_yaml(run.to_yaml()) == run
    differences = run_config(corrupt_loss="ambient").resume_differences(run)
    assert len(differences) == 1 and differences[0].startswith("training.contraction False")


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: TrainingConfig(steps=1, epochs=1), "steps or epochs"),
        (lambda: TrainingConfig(method="clean", alpha=0.5), "alpha applies"),
        (lambda: TrainingConfig(method="cotrain", sigma_min=0.2), "apply to method 'ambient' only"),
        (lambda: TrainingConfig(method="cotrain", s_max_factor=3.0), "apply to method 'ambient' only"),
        (lambda: TrainingConfig(method="ambient"), "needs exactly one of sigma_min"),
        (lambda: TrainingConfig(method="ambient", sigma_min=0.2, sigma_min_from="classifier"), "needs exactly one of sigma_min"),
        (lambda: TrainingConfig(method="ambient", sigma_min=0.2, sigma_max=0.1, sigma_max_from="c"), "sigma_max or sigma_max_from"),
        (lambda: TrainingConfig(method="ambient", sigma_min=0.2, admission="random"), "admission"),
        (lambda: TrainingConfig(seed=-1), "seed"),
        (lambda: TrainingConfig(lr=float("inf")), "(?s)lr.*finite number"),  # passes gt=0, then every loss is NaN
        (lambda: DataConfig(clean=("a",), image_cache_gb=float("inf")), "(?s)image_cache_gb.*finite number"),
        (lambda: TrainingConfig(method="cotrain", corrupt_loss="ambient"), "corrupt_loss"),
        (lambda: TrainingConfig(method="cotrain", contraction=False), "contraction=False applies"),
        (lambda: TrainingConfig(method="ambient", sigma_min=0.2, contraction=False), "contraction=False applies"),
        (lambda: TrainingConfig(method="ambient", alpha=0.5, alpha_schedule=(0.1, 0.2)), "not both"),
        (lambda: TrainingConfig(method="bogus"), "method"),
        (lambda: PolicyConfig(down_dims=(30, 60)), "multiples of n_groups"),
        (lambda: PolicyConfig(n_action_steps=16), "must not exceed horizon"),
        (lambda: RunConfig(data=DataConfig(clean=("a",), corrupt=("b",))), "drop the corrupt stores"),
    ],
)
def test_inconsistent_configs_are_rejected(build, message):
    with pytest.raises(ValidationError, match=message):
        build()


def test_bad_files_are_one_line_config_errors(tmp_path):
    (tmp_path / "bad.json").write_text('{"data": {"clean": []}}')
    with pytest.raises(ConfigError) as error:
        RunConfig.load(tmp_path / "bad.json")
    assert "data.clean" in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(ConfigError, match="no such config"):
        RunConfig.load(tmp_path / "missing.yaml")


def test_resume_may_change_the_run_length_and_device_only():
    config = run_config()
    longer = run_config().model_copy(update={"training": config.training.model_copy(update={"steps": 99, "device": "cpu"})})
    assert config.resume_differences(longer) == []
    other = run_config(s_max_factor=2.0)
    assert other.resume_differences(config) == ["training.s_max_factor None -> 2.0"]


def test_resume_differences_name_fields_left_out_of_dumps_by_their_default():
    """contraction and action_normalizer are left out of a dump at their default; a change still reads old -> new."""
    from policies.config import DataConfig, RunConfig, TrainingConfig

    ambient = {"method": "ambient", "sigma_min": 0.2, "corrupt_loss": "ambient"}
    old = RunConfig(data=DataConfig(clean=("c",), corrupt=("x",)), training=TrainingConfig(**ambient))
    new = RunConfig(data=DataConfig(clean=("c",), corrupt=("x",), action_normalizer="clean"),
                    training=TrainingConfig(**ambient, contraction=False))
    assert "action_normalizer" not in old.model_dump()["data"] and "contraction" not in old.model_dump()["training"]
    assert new.resume_differences(old) == ["training.contraction True -> False", "data.action_normalizer 'all' -> 'clean'"]
    assert old.resume_differences(RunConfig.from_json(old.to_json())) == []

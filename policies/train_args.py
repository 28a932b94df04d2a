"""The command line of ``python -m policies.train``: its flags, and the recorded run config they override.

``--config PATH`` takes the config a run recorded (``config.json`` in its directory, or a YAML of the
same fields: an experiment arm's is ``arms/ARM/train/config.json``), so any published run can be
trained again exactly from the command line, every field included that no flag sets. Each flag given
beside it replaces its one field (of a pair such as --steps/--epochs, the other is cleared); the rest
stay as recorded. Without --config the flags alone make the config, and what they leave out takes the
configs' defaults (policies/config.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from data_gen.cli import ArgumentParser, flag_message
from policies.config import DEFAULT_ALPHA, METHODS, PRESETS, STORE_FIELDS, ConfigError, DataConfig, PolicyConfig, RunConfig, TrainingConfig
from policies.noise import PREDICTION_TYPES

CONFIG_NAME = "config.json"  # what a run directory records (policies.train)
# The config field each flag sets, by section; a flag not listed sets the field of its own name.
SECTIONS = {
    "policy": ("preset", "obs", "state_angle", "prediction_type", "down_dims", "cameras"),
    "training": ("method", "alpha", "alpha_schedule", "admission", "sigma_min", "sigma_min_from", "sigma_max", "sigma_max_from",
                 "corrupt_loss", "no_contraction", "s_max_factor", "lr", "warmup_steps", "batch_size", "steps", "epochs", "seed",
                 "device", "checkpoint_every", "keep_checkpoints", "log_every"),
    "data": ("clean", "corrupt", "image_cache_gb", "action_normalizer"),
}  # fmt: skip
FIELD_OF_FLAG = {"obs": "obs_mode", "no_contraction": "contraction"}
# Fields of which a config holds at most one: the flag that sets one clears the other.
EITHER = {"steps": "epochs", "alpha": "alpha_schedule", "sigma_min": "sigma_min_from", "sigma_max": "sigma_max_from"}
EITHER |= {b: a for a, b in EITHER.items()}
# Words of the configs' own messages that a flag of another name sets (policies/config.py).
RENAMED_FLAGS = {"obs_mode": "--obs", "contraction=False": "--no-contraction", "contraction": "--no-contraction"}


def build_parser() -> ArgumentParser:
    training = TrainingConfig.model_fields
    parser = ArgumentParser(
        prog="python -m policies.train",
        description="Train a diffusion policy on clean and corrupt episode stores. With --config, the flags given beside it "
                    "replace their fields of the recorded config; without, --clean, --method and --steps or --epochs are needed.",
    )  # fmt: skip
    parser.add_argument("--config", type=Path, metavar="PATH",
                        help=f"train exactly as a recorded run: its {CONFIG_NAME} (or YAML, or its directory), e.g. "
                             "runs/experiments/NAME/arms/ARM/train/config.json; store paths are read from here, else from "
                             "the config's directory; other flags override single fields")  # fmt: skip
    parser.add_argument("--clean", nargs="+", metavar="STORE", help="clean episode store(s)")
    parser.add_argument("--corrupt", nargs="+", metavar="STORE", help="corrupt episode store(s)")
    parser.add_argument("--method", choices=METHODS)
    parser.add_argument("--alpha", type=float, help=f"clean weight per batch element (default {DEFAULT_ALPHA})")
    parser.add_argument("--alpha-schedule", metavar="LO,HI", help="clean weight linear in sigma: LO at sigma 0, HI at sigma 1")
    parser.add_argument("--admission", choices=("sample_first", "step_first"),
                        help="draw the sample then an admissible step (the method; default), or the fixed-weight step-first form")  # fmt: skip
    sigma_min = parser.add_mutually_exclusive_group()
    sigma_min.add_argument("--sigma-min", type=float, help="ambient: one dataset-level sigma_min for every corrupt window")
    sigma_min.add_argument("--sigma-min-from", metavar="NAME", help="ambient: per-sample sigma_min from this annotation set (policies.classify --name)")
    sigma_max = parser.add_mutually_exclusive_group()
    sigma_max.add_argument("--sigma-max", type=float, help="ambient: also admit corrupt windows below this sigma (locality branch)")
    sigma_max.add_argument("--sigma-max-from", metavar="NAME", help="ambient: per-sample sigma_max from this annotation set")
    parser.add_argument("--corrupt-loss", choices=("denoise", "ambient"), help="loss on admitted corrupt chunks (default denoise)")
    parser.add_argument("--action-normalizer", choices=("all", "clean"),
                        help="fit the action normaliser on every store's steps (default) or on the clean stores' alone (label-noise data)")
    parser.add_argument("--no-contraction", action="store_true",
                        help="ambient loss: take each corrupt chunk as x_{sigma_min} as it is, not contracted to it "
                             "(for corrupt data that already are noisy copies at sigma_min)")  # fmt: skip
    parser.add_argument("--s-max-factor", type=float,
                        help="buffer b = sqrt(1 + 1/(F - 1)) on sigma_min (default: 4 with the ambient loss, none with denoise)")  # fmt: skip
    parser.add_argument("--out", required=True, help="run directory (resumed if it holds a checkpoint)")
    parser.add_argument("--preset", choices=tuple(PRESETS), help="model sizes (default: default); with --config it replaces the recorded sizes")
    parser.add_argument("--obs", choices=("image", "state"), help="observations (default image)")
    parser.add_argument("--state-angle", choices=("raw", "cos_sin"), help="state mode: the slider angle as given (default) or as cos, sin")
    parser.add_argument("--down-dims", type=int, nargs="+", metavar="N", help="U-Net channels per level (default: the preset's)")
    parser.add_argument("--cameras", nargs="+", metavar="NAME",
                        help="image mode: the cameras the policy reads (default: every camera the stores hold)")
    parser.add_argument("--prediction-type", choices=PREDICTION_TYPES, help="what the network predicts (default epsilon)")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int)
    length.add_argument("--epochs", type=int, help="passes over the clean windows (the same number of steps for every method)")
    parser.add_argument("--batch-size", type=int, help=f"(default {training['batch_size'].default})")
    parser.add_argument("--lr", type=float, help=f"(default {training['lr'].default})")
    parser.add_argument("--warmup-steps", type=int, help=f"(default {training['warmup_steps'].default})")
    parser.add_argument("--checkpoint-every", type=int, help=f"(default {training['checkpoint_every'].default})")
    parser.add_argument("--keep-checkpoints", metavar="STEP,...",
                        help="also keep the checkpoints of these steps as ckpt_STEP.pt (a learning curve's snapshots)")
    parser.add_argument("--log-every", type=int, help=f"steps per metrics.jsonl record (default {training['log_every'].default})")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="(default auto)")
    parser.add_argument("--seed", type=int, help=f"(default {training['seed'].default})")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="torch CPU threads (default: torch's, one per core); the thread count changes the order of float sums, "
                             "so retraining an experiment arm bit for bit needs its count (its ledger's, usually 1)")
    parser.add_argument("--wandb", action="store_true",
                        help="also log to Weights & Biases (the wandb extra; offline unless WANDB_MODE is set)")
    parser.add_argument("--wandb-project", default="ambient-push", metavar="NAME", help="wandb project (with --wandb)")
    parser.add_argument("--image-cache-gb", type=float, help="memory for decoded images (default: half the free memory)")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.config is None:  # the flags alone make the config
        missing = [flag for flag, value in (("--clean", args.clean), ("--method", args.method)) if value is None]
        if missing:
            parser.error(f"the following arguments are required: {', '.join(missing)} (or --config PATH)")
        if args.steps is None and args.epochs is None:
            parser.error("one of the arguments --steps --epochs is required (or --config PATH)")
    return args


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The RunConfig the command line asks for: the recorded one (--config) with the flags given over it; or ConfigError (one line)."""
    sections: dict[str, dict[str, Any]] = {"policy": {}, "training": {}, "data": {}}
    if args.config is not None:
        sections = load_recorded(args.config).model_dump(mode="json")
    given = given_fields(args)
    if "preset" in given["policy"]:  # the new preset's sizes, not the recorded ones
        sections["policy"] = {key: value for key, value in sections["policy"].items() if key not in PRESETS[args.preset]}
    for section, fields in given.items():
        for name, value in fields.items():
            sections[section].pop(EITHER.get(name, ""), None)
            sections[section][name] = value
    if args.config is not None:
        for role in STORE_FIELDS:
            if role not in given["data"]:
                sections["data"][role] = [recorded_store(path, role, args.config) for path in sections["data"].get(role, ())]
    try:
        return RunConfig(policy=PolicyConfig(**sections["policy"]), training=TrainingConfig(**sections["training"]),
                         data=DataConfig(**sections["data"]))  # fmt: skip
    except ValidationError as error:
        message = flag_message(error, build_parser().flags() | RENAMED_FLAGS)
        # A field's own error comes from a flag (the recorded config passed alone); a check across fields may involve both.
        if args.config is not None and any(not item["loc"] for item in error.errors()):
            message += f" (the other fields as {args.config} records them)"
        raise ConfigError(message) from None


def given_fields(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The config fields the flags on the command line set, by section."""
    given: dict[str, dict[str, Any]] = {}
    for section, dests in SECTIONS.items():
        given[section] = {}
        for dest in dests:
            value = getattr(args, dest)
            if value is None or (dest == "no_contraction" and not value):
                continue
            if dest == "no_contraction":
                value = False
            elif dest == "alpha_schedule":
                value = parse_pair(value)
            elif dest == "keep_checkpoints":
                value = parse_steps(value)
            elif isinstance(value, list):
                value = tuple(value)
            given[section][FIELD_OF_FLAG.get(dest, dest)] = value
    return given


def parse_pair(text: str) -> tuple[float, float]:
    try:
        pair = tuple(float(v) for v in text.split(","))
    except ValueError:
        pair = ()
    if len(pair) != 2:
        raise ConfigError(f"--alpha-schedule must be LO,HI, got {text!r}")
    return pair  # type: ignore[return-value]


def parse_steps(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--keep-checkpoints must be whole steps separated by commas, e.g. 10000,20000, got {text!r}") from None


def load_recorded(path: Path) -> RunConfig:
    """The run config at ``path``: a config.json or YAML file, or a run directory holding config.json."""
    file = path / CONFIG_NAME if path.is_dir() else path
    if not file.is_file():
        raise ConfigError(f"--config {path}: no such file (give a run's {CONFIG_NAME}, its YAML, or the run directory)")
    try:
        return RunConfig.load(file)
    except ConfigError as error:
        raise ConfigError(f"--config {file}: {error}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"--config {file}: cannot read it ({getattr(error, 'strerror', None) or error})") from None


def recorded_store(path: str, role: str, config: Path) -> str:
    """A store the recorded config names: as written (from here), else relative to the config's directory."""
    if Path(path).exists():
        return path
    directory = config if config.is_dir() else config.parent
    beside = directory / path
    if not Path(path).is_absolute() and beside.exists():
        return str(beside)
    raise ConfigError(f"{path}: no such {role} store (named by --config {config}); pass --{role} STORE to train on it from where it is now")

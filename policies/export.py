"""Policy weights to share: the EMA weights alone as safetensors plus the config, no optimiser state.

A training checkpoint carries the raw weights, the EMA weights and the optimiser's moments (about four
times the model); what one shares is the EMA model. ``python -m policies.export RUN_DIR --out DIR``
writes::

    DIR/model.safetensors   the EMA state dict (the normaliser included), safetensors: no code, no pickle
    DIR/policy.json         {"format", "format_version", "config" (RunConfig JSON), "cameras", "action_dim", "step",
                             "checkpoint_sha256" (the checkpoint's, as its evaluations' trials.jsonl record it)}

``load_policy(DIR)`` reads it back. The directory is written whole (a temporary one renamed). Reading,
the sizes policy.json declares are checked against the safetensors header before any weight is read
or any model built: an edited file must not make the loader allocate what the weights do not hold.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from data_gen.cli import ArgumentParser, fail
from policies.checkpoint import CheckpointError, check_finite_weights, checkpoint_path, load_checkpoint
from policies.config import ConfigError, RunConfig
from policies.model import DiffusionModel

EXPORT_FORMAT = "ambient-push-policy-export"
EXPORT_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
META_NAME = "policy.json"
# Sizes no weight fixes, which an edited policy.json could set to anything: every action chunk runs
# (horizon, action_dim) through the U-Net, and the noise schedule holds num_train_timesteps entries.
MAX_HORIZON = 1024  # steps; an episode ends after 750
MAX_TRAIN_TIMESTEPS = 10_000


def is_export(path: str | Path) -> bool:
    path = Path(path)
    return path.is_dir() and (path / WEIGHTS_NAME).is_file()


def export_policy(run: str | Path, out: str | Path, overwrite: bool = False) -> Path:
    """Write the run's EMA weights and config into ``out``; returns ``out``."""
    payload = load_checkpoint(run)
    out = Path(out)
    if out.exists() and not (overwrite and is_export(out)):
        raise CheckpointError(f"{out}: exists (choose a new directory{', or pass --overwrite' if is_export(out) else ''})")
    # The checkpoint's digest is what an evaluation of it records (its trials.jsonl header), so a shipped
    # export says which evaluation measured exactly its weights.
    meta = {"format": EXPORT_FORMAT, "format_version": EXPORT_VERSION, "config": payload["config"],
            "cameras": payload["cameras"], "action_dim": int(payload["action_dim"]), "step": int(payload["step"]),
            "checkpoint_sha256": file_sha256(checkpoint_path(run))}
    # safetensors refuses tensors that share memory or are not contiguous: give it plain copies.
    weights = {name: tensor.detach().contiguous().clone() for name, tensor in payload["ema_model"].items()}
    temporary = out.with_name(f".{out.name}.partial")
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        temporary.mkdir(parents=True)
        save_file(weights, temporary / WEIGHTS_NAME)
        (temporary / META_NAME).write_text(json.dumps(meta, indent=1))
        if out.exists():
            shutil.rmtree(out)
        temporary.rename(out)
    except OSError as error:
        shutil.rmtree(temporary, ignore_errors=True)
        raise CheckpointError(f"{out}: cannot write the export ({error.strerror or error})") from None
    return out


def file_sha256(*paths: str | Path) -> str:
    """The SHA-256 of the files' bytes one after the other, read in 1 MB blocks."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def load_export(path: str | Path) -> dict[str, Any]:
    """An exported policy as a checkpoint-like payload: config, run_config, cameras, action_dim, ema_model."""
    path = Path(path)
    try:
        meta = json.loads((path / META_NAME).read_text())
        with safe_open(path / WEIGHTS_NAME, framework="pt") as header:  # the header alone: names and shapes
            shapes = {name: tuple(header.get_slice(name).get_shape()) for name in header.keys()}
    except (OSError, json.JSONDecodeError, SafetensorError) as error:
        raise CheckpointError(f"{path}: damaged or not an exported policy ({type(error).__name__})") from None
    if not isinstance(meta, dict) or meta.get("format") != EXPORT_FORMAT:
        raise CheckpointError(f"{path}: {META_NAME} is not an {EXPORT_FORMAT} file")
    if meta.get("format_version") != EXPORT_VERSION:
        raise CheckpointError(f"{path}: export format version {meta.get('format_version')!r}; this code reads {EXPORT_VERSION}")
    try:
        run_config = RunConfig.from_json(meta["config"])
        payload = {**meta, "run_config": run_config, "action_dim": meta["action_dim"], "cameras": dict(meta["cameras"])}
    except (ConfigError, KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: {META_NAME} is incomplete ({error})") from None
    check_declared_sizes(path / META_NAME, payload, shapes)
    try:
        payload["ema_model"] = load_file(path / WEIGHTS_NAME)
    except (OSError, SafetensorError) as error:
        raise CheckpointError(f"{path}: damaged or not an exported policy ({type(error).__name__})") from None
    check_finite_weights(path, payload, ("ema_model",))
    return payload


def check_declared_sizes(path: str | Path, payload: dict[str, Any], shapes: dict[str, tuple[int, ...]]) -> None:
    """CheckpointError unless the payload's sizes (action_dim, cameras, the policy config) are whole
    positive numbers within bounds that build exactly the weights' ``shapes`` ({name: shape}).

    The model is built on torch's meta device, which records shapes and allocates nothing, so a
    declared size of any magnitude costs nothing to check.
    """
    action_dim, cameras, policy = payload["action_dim"], payload["cameras"], payload["run_config"].policy
    if not _whole_positive(action_dim):
        raise CheckpointError(f"{path}: action_dim must be a whole number above 0, got {action_dim!r}")
    for name, size in cameras.items():
        if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(_whole_positive(n) for n in size)):
            raise CheckpointError(f"{path}: camera {name!r} must have a (height, width) of whole numbers above 0, got {size!r}")
    if policy.obs_mode == "image" and policy.cameras is not None and sorted(cameras) != sorted(policy.cameras):
        raise CheckpointError(f"{path}: the weights are for cameras {list(cameras)}, the config names {list(policy.cameras)}")
    if not all(_whole_positive(d) for d in policy.down_dims):
        raise CheckpointError(f"{path}: down_dims must be whole numbers above 0, got {list(policy.down_dims)}")
    for name, value, most in (("horizon", policy.horizon, MAX_HORIZON), ("num_train_timesteps", policy.num_train_timesteps, MAX_TRAIN_TIMESTEPS)):
        if value > most:
            raise CheckpointError(f"{path}: {name} {value} is more than any policy uses (at most {most})")
    try:
        with torch.device("meta"):
            model = DiffusionModel(policy, {name: tuple(hw) for name, hw in cameras.items()}, action_dim)
    except (RuntimeError, ValueError, OverflowError) as error:
        raise CheckpointError(f"{path}: declares sizes no model can have ({' '.join(str(error).split())[:200]})") from None
    expected = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    action_shape = shapes.get("normalizer.action_min")
    if action_shape is not None and action_shape != (action_dim,):
        raise CheckpointError(f"{path}: action_dim {action_dim} but the weights' actions have {list(action_shape)} dimensions")
    if expected != shapes:
        sizes = (f"cameras {dict(cameras)}, n_obs_steps {policy.n_obs_steps}, down_dims {list(policy.down_dims)}, "
                 f"kernel_size {policy.kernel_size}, diffusion_step_embed_dim {policy.diffusion_step_embed_dim}, "
                 f"resnet_width {policy.resnet_width}, resnet_stages {policy.resnet_stages}, spatial_softmax_keypoints {policy.spatial_softmax_keypoints}, "
                 f"image_feature_dim {policy.image_feature_dim}")
        missing, extra = sorted(set(expected) - set(shapes)), sorted(set(shapes) - set(expected))
        if missing or extra:
            detail = f"{(missing or extra)[0]} is {'missing from' if missing else 'extra in'} the weights"
        else:
            name = next(n for n in expected if expected[n] != shapes[n])
            detail = f"{name} is {list(shapes[name])} in the weights, {list(expected[name])} by the config"
        raise CheckpointError(f"{path}: the declared sizes ({sizes}) do not match the weights: {detail}")


def _whole_positive(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m policies.export", description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="run directory or checkpoint file (runs/NAME or runs/NAME/ckpt.pt)")
    parser.add_argument("--out", type=Path, required=True, help="directory to write (must not exist)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier export in --out")
    args = parser.parse_args(argv)
    try:
        out = export_policy(args.run, args.out, args.overwrite)
    except CheckpointError as error:
        fail(parser.prog, error)
    size = sum(f.stat().st_size for f in out.iterdir())
    print(f"exported the EMA weights of {args.run} to {out} ({size / 1e6:.1f} MB; load it with load_policy({str(out)!r}))")
    return 0


if __name__ == "__main__":
    sys.exit(main())


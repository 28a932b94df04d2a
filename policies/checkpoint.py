"""The checkpoint file ``runs/NAME/ckpt.pt``: weights, config, normaliser and training state.

It holds only tensors and primitive containers (the config as a JSON string), so it loads with
``torch.load(path, weights_only=True)``, which executes no code from the file. Layout::

    format, format_version   "ambient-push-policy", 2
    config                   RunConfig as JSON
    cameras                  {name: [H, W]} of the full training images ({} in state mode)
    action_dim               int
    model, ema_model         state dicts of the unwrapped model (no DDP "module." prefix; the normaliser is a buffer of both)
    optimizer, lr_scheduler  state dicts; step: optimiser steps taken
    world_size               processes of the run that saved it (1, or torchrun's N; any number may resume it)
    data                     {"sigma_min_source" (JSON), "windows_clean", "windows_corrupt", "episodes_clean", "episodes_corrupt",
                              "store_digests" ({"clean": [...], "corrupt": [...]}, each store's EpisodeStore.digest;
                              absent before it was recorded)}

Writes go to a temporary file first and are renamed over the old checkpoint.
"""

from __future__ import annotations

import errno
import os
import pickle
import shutil
import zipfile
from pathlib import Path
from typing import Any

import torch

from policies.config import ConfigError, RunConfig
from policies.model import DiffusionModel

FORMAT_NAME = "ambient-push-policy"
# 2: images in [-1, 1] and no ReLU on the image features; a version-1 network would compute otherwise.
FORMAT_VERSION = 2
CHECKPOINT_NAME = "ckpt.pt"
REQUIRED_KEYS = ("config", "cameras", "action_dim", "model", "ema_model", "step")
FULL_DISK_BYTES = 1 << 20  # free space below which a failed save is reported as a full disk


class CheckpointError(Exception):
    """A missing, damaged or incompatible checkpoint; the message is one line naming the path."""


def checkpoint_path(path: str | os.PathLike) -> Path:
    """A run directory or a checkpoint file -> the checkpoint file."""
    path = Path(path)
    return path / CHECKPOINT_NAME if path.is_dir() else path


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Write ``payload`` (the layout above, less format keys) atomically."""
    path = Path(path)
    payload = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **payload}
    temporary = path.with_name(path.name + ".partial")
    try:
        torch.save(payload, temporary)
        os.replace(temporary, path)
    except (OSError, RuntimeError) as error:
        # torch reports a failed write as a RuntimeError without the errno ("unexpected pos"): a disk
        # with (almost) nothing free at that moment is the likely cause, and the one to name.
        full = getattr(error, "errno", None) == errno.ENOSPC or _free_bytes(path.parent) < FULL_DISK_BYTES
        temporary.unlink(missing_ok=True)  # the previous checkpoint, if any, is untouched
        reason = error.strerror if isinstance(error, OSError) and error.strerror else " ".join(str(error).split())[:200]
        if full:
            reason = "no space left on device"
        kept = "the previous one is kept" if path.exists() else "none saved yet"
        raise CheckpointError(f"{path}: cannot save the checkpoint ({reason}); {kept}") from None


def _free_bytes(directory: Path) -> int:
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return 1 << 62


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, Any]:
    """The checkpoint's contents with tensors on ``device``, and its config parsed into ``run_config``."""
    path = checkpoint_path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError, OSError) as error:
        # Only the error's kind: torch's message for a refused pickle suggests weights_only=False, which
        # would run the file's code, the very thing a safe loader must not do.
        raise CheckpointError(f"{path}: damaged or not a policy checkpoint ({type(error).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path}: not an {FORMAT_NAME} checkpoint")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {payload.get('format_version')!r}; this code reads {FORMAT_VERSION}")
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {missing}")
    try:
        payload["run_config"] = RunConfig.from_json(payload["config"])
    except ConfigError as error:
        raise CheckpointError(f"{path}: {error}") from None
    check_finite_weights(path, payload, ("model", "ema_model"))
    return payload


def check_finite_weights(path: str | os.PathLike, payload: dict[str, Any], keys: tuple[str, ...]) -> None:
    """CheckpointError naming the first weight that holds NaN or inf: such a policy would only fail
    mid-rollout (or keep training on garbage)."""
    for weights in keys:
        for name, tensor in payload[weights].items():
            if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise CheckpointError(f"{path}: {weights} weight {name!r} holds NaN or infinite values")


def model_from_checkpoint(payload: dict[str, Any], weights: str = "ema_model", path: str = "checkpoint") -> DiffusionModel:
    """A DiffusionModel built from a loaded checkpoint's config, with its EMA (or raw) weights."""
    config: RunConfig = payload["run_config"]
    cameras = {name: tuple(int(n) for n in hw) for name, hw in payload["cameras"].items()}
    model = DiffusionModel(config.policy, cameras, int(payload["action_dim"]))
    try:
        model.load_state_dict(payload[weights])
    except RuntimeError as error:
        detail = " ".join(str(error).split())[:200]
        raise CheckpointError(f"{path}: weights do not match the saved config ({detail})") from None
    return model

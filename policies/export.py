"""Policy weights to share: the EMA weights alone as safetensors plus the config, no optimiser state.

A training checkpoint carries the raw weights, the EMA weights and the optimiser's moments (about four
times the model); what one shares is the EMA model. ``python -m policies.export RUN_DIR --out DIR``
writes::

    DIR/model.safetensors   the EMA state dict (the normaliser included), safetensors: no code, no pickle
    DIR/policy.json         {"format", "format_version", "config" (RunConfig JSON), "cameras", "action_dim", "step"}

``load_policy(DIR)`` reads it back. The directory is written whole (a temporary one renamed).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from data_gen.cli import ArgumentParser, fail
from policies.checkpoint import CheckpointError, check_finite_weights, load_checkpoint
from policies.config import ConfigError, RunConfig

EXPORT_FORMAT = "ambient-push-policy-export"
EXPORT_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
META_NAME = "policy.json"


def is_export(path: str | Path) -> bool:
    path = Path(path)
    return path.is_dir() and (path / WEIGHTS_NAME).is_file()


def export_policy(run: str | Path, out: str | Path, overwrite: bool = False) -> Path:
    """Write the run's EMA weights and config into ``out``; returns ``out``."""
    payload = load_checkpoint(run)
    out = Path(out)
    if out.exists() and not (overwrite and is_export(out)):
        raise CheckpointError(f"{out}: exists (choose a new directory{', or pass --overwrite' if is_export(out) else ''})")
    meta = {"format": EXPORT_FORMAT, "format_version": EXPORT_VERSION, "config": payload["config"],
            "cameras": payload["cameras"], "action_dim": int(payload["action_dim"]), "step": int(payload["step"])}
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


def load_export(path: str | Path) -> dict[str, Any]:
    """An exported policy as a checkpoint-like payload: config, run_config, cameras, action_dim, ema_model."""
    path = Path(path)
    try:
        meta = json.loads((path / META_NAME).read_text())
        weights = load_file(path / WEIGHTS_NAME)
    except (OSError, json.JSONDecodeError, SafetensorError) as error:
        raise CheckpointError(f"{path}: damaged or not an exported policy ({type(error).__name__})") from None
    if not isinstance(meta, dict) or meta.get("format") != EXPORT_FORMAT:
        raise CheckpointError(f"{path}: {META_NAME} is not an {EXPORT_FORMAT} file")
    if meta.get("format_version") != EXPORT_VERSION:
        raise CheckpointError(f"{path}: export format version {meta.get('format_version')!r}; this code reads {EXPORT_VERSION}")
    try:
        run_config = RunConfig.from_json(meta["config"])
        payload = {**meta, "run_config": run_config, "ema_model": weights, "action_dim": int(meta["action_dim"])}
        payload["cameras"] = dict(meta["cameras"])
    except (ConfigError, KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: {META_NAME} is incomplete ({error})") from None
    check_finite_weights(path, payload, ("ema_model",))
    return payload


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


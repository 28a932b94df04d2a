"""Optional Weights & Biases tracking for a training run (``python -m policies.train --wandb``).

metrics.jsonl stays the record of a run; wandb receives the same records so that a user who keeps
their runs there sees ours beside them. It runs offline unless WANDB_MODE says otherwise (these
machines have no internet): ``wandb sync RUN_DIR/wandb/offline-run-*`` uploads a run later. The run
id is derived from the run directory, so a resumed training continues the same wandb run.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

INSTALL_HINT = "pip install -e '.[wandb]'"


class TrackingError(Exception):
    """wandb was asked for but cannot run (not installed, or it failed to start)."""


def check_available() -> None:
    """Raise TrackingError, with the install command, when wandb is not installed."""
    try:
        import wandb  # noqa: F401
    except ImportError:
        raise TrackingError(f"--wandb needs the wandb package: {INSTALL_HINT}") from None


def run_id(out: Path) -> str:
    """A stable wandb run id for the run directory: resuming the training resumes the wandb run."""
    return hashlib.sha1(str(out.resolve()).encode()).hexdigest()[:16]


class WandbTracker:
    """Forwards each metrics.jsonl record to one wandb run; ``close`` finishes it."""

    def __init__(self, out: Path, config: dict[str, Any], project: str = "ambient-push"):
        check_available()
        import wandb

        os.environ.setdefault("WANDB_MODE", "offline")
        os.environ.setdefault("WANDB_SILENT", "true")
        try:
            self._run = wandb.init(
                project=project, dir=str(out), id=run_id(out), name=out.name, config=config, resume="allow",
                settings=wandb.Settings(console="off", x_disable_stats=True),
            )
        except Exception as error:  # wandb reports a bad mode, project or a login problem in many types
            raise TrackingError(f"wandb could not start: {' '.join(str(error).split())[:200]}") from None

    @property
    def directory(self) -> Path:
        """Where wandb keeps this run's files (the thing to ``wandb sync``)."""
        return Path(self._run.dir).parent

    def log(self, record: dict[str, Any]) -> None:
        self._run.log({key: value for key, value in record.items() if key not in ("step", "time")}, step=int(record["step"]))

    def close(self) -> None:
        self._run.finish()

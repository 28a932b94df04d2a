"""Diffusion policies trained on clean and corrupt episode stores (Ambient Diffusion), and their loading.

    from policies import load_policy, RunConfig, train_policy, export_policy

The public names load on first use (PEP 562), so ``import policies`` stays light and never imports
Drake: training on a cluster must not need it. ``train_policy`` is ``policies.train.train`` (the name
``policies.train`` is the module behind ``python -m policies.train``).
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> (module, its name there)
_EXPORTS = {
    "load_policy": ("policies.policy", "load_policy"),
    "DiffusionPolicy": ("policies.policy", "DiffusionPolicy"),
    "PolicyError": ("policies.policy", "PolicyError"),
    "act_batch": ("policies.policy", "act_batch"),
    "RunConfig": ("policies.config", "RunConfig"),
    "PolicyConfig": ("policies.config", "PolicyConfig"),
    "TrainingConfig": ("policies.config", "TrainingConfig"),
    "DataConfig": ("policies.config", "DataConfig"),
    "ConfigError": ("policies.config", "ConfigError"),
    "train_policy": ("policies.train", "train"),
    "TrainResult": ("policies.train", "TrainResult"),
    "TrainingError": ("policies.train", "TrainingError"),
    "export_policy": ("policies.export", "export_policy"),
    "CheckpointError": ("policies.checkpoint", "CheckpointError"),
    "ClassifierConfig": ("policies.classify", "ClassifierConfig"),
    "annotate": ("policies.classify", "annotate"),
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attribute = _EXPORTS[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

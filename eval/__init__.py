"""Evaluation: closed-loop rollouts of a policy, and the experiment runner that trains and evaluates arms.

    from eval import RolloutSpec, evaluate, Experiment, ExperimentConfig

The public names load on first use (PEP 562), so ``import eval`` starts neither Drake nor torch.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> (module, its name there)
_EXPORTS = {
    "RolloutSpec": ("eval.rollout", "RolloutSpec"),
    "evaluate": ("eval.rollout", "evaluate"),
    "Experiment": ("eval.experiment", "Experiment"),
    "ExperimentConfig": ("eval.experiment_config", "ExperimentConfig"),
    "ExperimentError": ("eval.experiment_config", "ExperimentError"),
    "wilson_interval": ("eval.metrics", "wilson_interval"),
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

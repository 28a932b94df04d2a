"""Evaluation: closed-loop rollouts of a policy, and the experiment runner that trains and evaluates arms.

    from eval import RolloutSpec, evaluate, Experiment, ExperimentConfig

The public names load on first use (PEP 562), so ``import eval`` starts neither Drake nor torch.
"""

from __future__ import annotations

from data_gen.public_names import lazy_exports

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

__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)

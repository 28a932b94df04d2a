"""Diffusion policies trained on clean and corrupt episode stores (Ambient Diffusion), and their loading.

    from policies import load_policy, RunConfig, train_policy, export_policy

The public names load on first use (PEP 562), so ``import policies`` stays light and never imports
Drake: training on a cluster must not need it. ``train_policy`` is ``policies.train.train`` (the name
``policies.train`` is the module behind ``python -m policies.train``).
"""

from __future__ import annotations

from data_gen.public_names import lazy_exports

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
    "ClassifierConfig": ("policies.classifier", "ClassifierConfig"),
    "annotate": ("policies.classify", "annotate"),
}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)

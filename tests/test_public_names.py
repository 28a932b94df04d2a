"""Each package's public names: listed in __all__, importable from the package, and the very objects of their modules."""

from __future__ import annotations

import importlib

import pytest

PACKAGES = ("pushing_sim", "data_gen", "policies", "eval")


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_imports_from_its_package(package):
    module = importlib.import_module(package)
    assert module.__all__ and len(set(module.__all__)) == len(module.__all__)
    for name in module.__all__:
        value = getattr(module, name)
        assert value is not None and name in dir(module), name
        if name in getattr(module, "_EXPORTS", {}):
            where, attribute = module._EXPORTS[name]
            assert value is getattr(importlib.import_module(where), attribute), name
    with pytest.raises(AttributeError, match="no attribute 'nonesuch'"):
        module.nonesuch  # noqa: B018


def test_the_names_a_researcher_reaches_for():
    from policies import (ConfigError, DataConfig, PolicyConfig, RunConfig, TrainingConfig, export_policy, load_policy,  # noqa: F401
                          train_policy)
    from policies.export import export_policy as exporter
    from policies.policy import load_policy as loader
    from policies.train import train

    assert (load_policy, export_policy, train_policy) == (loader, exporter, train)
    import policies.train as module

    assert module.train is train_policy  # the module behind python -m policies.train keeps its name

"""Episode data: the zarr episode store, GCS demonstrations, corruptions, and other formats' datasets.

    from data_gen import EpisodeStore, GenerationConfig, generate

The public names load on first use (PEP 562): ``import data_gen`` imports no Drake, since policies
read the episode store on machines without it; only ``generate`` (the GCS planner) needs it.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> (module, its name there)
_EXPORTS = {
    "EpisodeStore": ("data_gen.episode_store", "EpisodeStore"),
    "EpisodeMeta": ("data_gen.episode_store", "EpisodeMeta"),
    "StoreError": ("data_gen.episode_store", "StoreError"),
    "GenerationConfig": ("data_gen.gcs", "GenerationConfig"),
    "generate": ("data_gen.gcs", "generate"),
    "Corruption": ("data_gen.corruption", "Corruption"),
    "export_store": ("data_gen.interop", "export_store"),
    "import_dataset": ("data_gen.interop", "import_dataset"),
    "InteropError": ("data_gen.interop", "InteropError"),
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

"""Episode data: the zarr episode store, GCS demonstrations, corruptions, and other formats' datasets.

    from data_gen import EpisodeStore, GenerationConfig, generate

The public names load on first use (PEP 562): ``import data_gen`` imports no Drake, since policies
read the episode store on machines without it; only ``generate`` (the GCS planner) needs it.
"""

from __future__ import annotations

from data_gen.public_names import lazy_exports

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

__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)

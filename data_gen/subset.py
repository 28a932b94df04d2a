"""The first n episodes of an episode store, as a store of their own.

Nested data sets (a scaling curve's 500 in 2000 in 8000 demos) are prefixes of one generated store:
the large set is generated once, and the curve over the data's size is not confounded by which demos
were drawn. The copy keeps each episode's arrays and metadata and the annotation sets the base holds
(their first steps), and resumes where an interrupted copy stopped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from data_gen.episode_store import EpisodeStore, StoreError, meta_from_columns, open_derived


def write_prefix(base: Path, out: Path, n: int, progress: bool = True, annotations: tuple[str, ...] | None = None) -> dict:
    """Copy episodes 0 .. n-1 of the store ``base`` (and its annotation sets over their steps) to ``out``.

    annotations: the sets to copy, those of them the base holds (default: all). A set estimated from
    the whole base (a cross-fitted classifier's) is not the prefix's own: leave it out.

    Returns {"episodes", "steps", "annotations"}. StoreError (one line) for a base with fewer than n
    episodes, or an ``out`` that holds another base's episodes or more than n.
    """
    if n < 1:
        raise ValueError(f"a prefix needs at least 1 episode, got {n}")
    with EpisodeStore.open(base) as source:
        if source.n_episodes < n:
            raise StoreError(f"{base}: holds {source.n_episodes} episodes, fewer than the {n} of its prefix {out}")
        run = {**source.run, "prefix_episodes": int(n)}
        with open_derived(source, out, run, "a prefix of another store, or of another length") as target:
            if target.n_episodes > n:
                raise StoreError(f"{out}: holds {target.n_episodes} episodes, more than its prefix's {n}")
            columns = source.meta_columns()
            bar = tqdm(total=n, initial=target.n_episodes, unit="episode", desc=f"first {n} of {base.name}", disable=not progress)
            for index in range(target.n_episodes, n):
                target.append_episode(source.episode(index), meta_from_columns(columns, index))
                bar.update(1)
            bar.close()
            steps = int(target.n_steps)
            if not np.array_equal(target.episode_ends, source.episode_ends[:n]):
                raise StoreError(f"{out}: its episodes are not the first {n} of {base}")
            names = tuple(name for name in source.annotation_names if annotations is None or name in annotations)
            for name in names:
                annotation = source.annotation(name)
                sigma_max = None if annotation.sigma_max is None else annotation.sigma_max[:steps]
                attrs = {k: v for k, v in annotation.attrs.items() if k != "n_steps"}
                target.write_annotation(name, annotation.sigma_min[:steps], sigma_max, attrs=attrs, overwrite=True)
    return {"episodes": int(n), "steps": steps, "annotations": list(names)}

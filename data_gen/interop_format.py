"""What every exchange layout shares: the error type, an import's contents, a foreign episode's defaults.

The layout modules (`interop_lerobot`, `interop_diffusion_policy`, `interop_video`) take these from here
and `interop` (the front: export, import, the output written whole) dispatches to them, so no module
of the exchange imports one that imports it back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from data_gen.episode_store import RESERVED_NAMES, Annotation, EpisodeMeta

# The env and every generator step at the task's control rate (pushing_sim.task.TaskConfig.control_hz,
# 10 Hz); a store does not record it, so an export says it used this default.
DEFAULT_FPS = 10
IMPORT_SOURCE = "import"


class InteropError(Exception):
    """A problem with an export or import; the message is one line and names the path."""


@dataclass
class Contents:
    """What an import writes into a new store: its root attributes, episodes (read lazily) and annotation sets."""

    source: Path
    cameras: dict[str, tuple[int, int]]
    action_dim: int
    domain_config: dict[str, Any]
    run: dict[str, Any]
    n_episodes: int
    episodes: Iterable[tuple[dict[str, np.ndarray], EpisodeMeta]]
    annotations: list[Annotation] = field(default_factory=list)
    foreign: bool = False  # not an export of ours: the metadata are defaults
    slider_pose_found: bool = True  # False: the dataset has no slider pose, and slider_pose is zeros
    not_imported: list[str] = field(default_factory=list)  # the dataset's keys the store has no place for


def foreign_meta(index: int, slider_pose: np.ndarray, success: bool, extra: dict[str, Any]) -> EpisodeMeta:
    """The metadata a foreign episode gets (see the module docstring)."""
    return EpisodeMeta(
        source=IMPORT_SOURCE, domain=IMPORT_SOURCE, seed=index,
        initial_pose=tuple(float(x) for x in slider_pose[0]), success=bool(success), extra=extra,
    )


def foreign_run(fmt: str, source: Path, **details: Any) -> dict[str, Any]:
    """The run identity of an imported foreign dataset."""
    return {"generator": IMPORT_SOURCE, "format": fmt, "source": str(source), **details}


def camera_name(key: str, taken: Iterable[str]) -> str:
    """A store camera name for a foreign image key: an identifier, unique, not a reserved step key."""
    taken = set(taken)
    name = "".join(c if c.isalnum() or c == "_" else "_" for c in key) or "camera"
    if name[0].isdigit():
        name = f"camera_{name}"
    base, n = name, 1
    while name in RESERVED_NAMES or name in taken:
        name, n = f"{base}_{n}", n + 1
    return name


def to_uint8_images(path: Path, key: str, images: np.ndarray) -> np.ndarray:
    """Images as uint8: Diffusion Policy's push-T keeps float 0-255 values; anything else is refused."""
    if images.dtype == np.uint8:
        return images
    if np.issubdtype(images.dtype, np.floating) and images.size and images.min() >= 0 and images.max() <= 255 \
            and np.array_equal(images, np.round(images)):
        return images.astype(np.uint8)
    raise InteropError(f"{path}: {key} holds {images.dtype} images that are not whole values in 0-255")

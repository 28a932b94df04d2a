"""Exchange with LeRobot and Diffusion Policy: what `data_gen.export` and `data_gen.import` share.

Most imitation-learning code reads one of two layouts: a LeRobot dataset (v3.0: parquet tables plus
one mp4 per camera) or Diffusion Policy's zarr ReplayBuffer. Exporting a store to either lets that
code train on our demonstrations; importing a push-T dataset in either lets ours use it as clean
data. Each layout lives in its own module (`interop_lerobot`, `interop_diffusion_policy`), the types and
foreign defaults they share in `interop_format`; this one is the front that dispatches to them and
holds what both directions need: the output written whole (into a hidden sibling directory renamed at
the end, so a failed or interrupted run leaves nothing behind, and one killed with -9 leaves a sibling
that the next run removes), the store writer of an import, the metadata columns and the one-line
summary.

A round trip store -> export -> import is lossless: the same step arrays bit for bit, the same
episode ends, per-episode metadata, annotation sets and root attributes (cameras, action_dim,
domain_config, run). A foreign dataset has none of our metadata; it imports with ``source``
"import", ``domain`` "import", ``seed`` its episode index, ``initial_pose`` its first slider pose,
``success`` from its own success flag where it has one (True otherwise: demonstrations), NaN
planning time and cost, and ``extra`` naming where it came from. Without a slider pose it gets
zeros (the store refuses NaN steps) and the import warns; see each layout's module for where it finds
one. A foreign dataset's keys the store has no place for (Diffusion Policy push-T's ``keypoint`` and
``n_contacts``) are named in one warning.

Both directions rename cameras (``--camera OLD=NEW``): an export for code that hard-codes its image key
(Diffusion Policy's push-T reads ``data/img``), an import to sit beside a store whose cameras are named
otherwise. An import from push-T's pixels maps them to our metres (``--push-t-pixels``,
``data_gen.interop_pusht``); its episodes record the domain ``push-t``, which is not ours.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import glob
import os
import shutil
import sys
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from data_gen.cli import no_empty_dirs_on_failure
from data_gen.episode_store import RESERVED_NAMES, EpisodeMeta, EpisodeStore, StoreError, settle_zarr_io
from data_gen.interop_format import Contents, InteropError

FORMATS = ("lerobot", "diffusion-policy")
# Our task's positions lie within a metre of the origin; a foreign dataset's beyond this are another unit.
PIXELS_HINT_M = 5.0
INSTALL_HINT = "pip install -e '.[interop]'"


@dataclass(frozen=True)
class Summary:
    """What a run wrote, for its one-line report; notes (for stdout) and warnings (for stderr) follow it."""

    episodes: int
    frames: int
    bytes: int
    seconds: float
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    def describe(self) -> str:
        return f"{self.episodes} episodes, {self.frames} frames, {self.bytes / 1e6:.1f} MB on disk, {self.seconds:.1f} s"


# --------------------------------------------------------------------------------------------------
# The two directions


def export_store(store: str | os.PathLike, out: str | os.PathLike, fmt: str, progress: bool = False, *,
                 cameras: Mapping[str, str] | None = None, environment_state: bool | None = None,
                 video_codec: str | None = None) -> Summary:
    """Write the committed episodes of ``store`` into the new directory ``out`` in format ``fmt``.

    cameras: {store camera: name in the export}; the others keep theirs. environment_state and
    video_codec are LeRobot's (see data_gen.interop_lerobot.write; None: its defaults).
    """
    lerobot_only = {"--environment-state": environment_state, "--video-codec": video_codec}
    given = [flag for flag, value in lerobot_only.items() if value is not None]
    if fmt != "lerobot" and given:
        raise InteropError(f"{' and '.join(given)} {'apply' if len(given) > 1 else 'applies'} only to --format lerobot")
    writer = _module(fmt).write
    start = time.perf_counter()
    opened = EpisodeStore.open(store)
    if opened.n_episodes == 0:
        raise InteropError(f"{store}: the store holds no episodes; nothing to export")
    names = camera_names(opened.cameras, cameras or {}, f"{store}: store")
    options = {key: value for key, value in (("environment_state", environment_state), ("video_codec", video_codec))
               if value is not None}
    out = Path(out)
    with staged_output(out) as staging:
        notes = writer(opened, staging, progress, names, **options) or []
    return Summary(opened.n_episodes, opened.n_steps, tree_bytes(out), time.perf_counter() - start, tuple(notes))


def import_dataset(source: str | os.PathLike, out: str | os.PathLike, fmt: str, progress: bool = False, *,
                   cameras: Mapping[str, str] | None = None, push_t_pixels: bool = False) -> Summary:
    """Write the dataset in directory ``source`` (format ``fmt``) into the new episode store ``out``.

    cameras: {dataset camera: store camera}; the others keep theirs. push_t_pixels: the dataset's
    positions are push-T pixels, mapped to our metres (data_gen.interop_pusht).
    """
    reader = _module(fmt).read
    start = time.perf_counter()
    source, out = Path(source), Path(out)
    if not source.is_dir():
        raise InteropError(f"{source}: no such dataset directory")
    with staged_output(out) as staging:
        contents = reader(source)
        contents = renamed(contents, camera_names(contents.cameras, cameras or {}, f"{source}: dataset"))
        if push_t_pixels:
            contents = from_push_t_pixels(contents)
        write_store(contents, staging, progress)
    store = EpisodeStore.open(out)
    return Summary(store.n_episodes, store.n_steps, store.disk_bytes(), time.perf_counter() - start,
                   warnings=tuple(import_warnings(contents, store, push_t_pixels)))


def _module(fmt: str):
    if fmt == "lerobot":
        require_pyarrow()
        from data_gen import interop_lerobot

        return interop_lerobot
    if fmt == "diffusion-policy":
        from data_gen import interop_diffusion_policy

        return interop_diffusion_policy
    raise InteropError(f"unknown format {fmt!r}; formats are {', '.join(FORMATS)}")


def require_pyarrow() -> None:
    """LeRobot's tables are parquet; pyarrow is an optional dependency, so say how to get it."""
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise InteropError(f"--format lerobot needs pyarrow, which is not installed: {INSTALL_HINT}") from None


# --------------------------------------------------------------------------------------------------
# Writing whole or not at all


@contextlib.contextmanager
def staged_output(out: Path) -> Iterator[Path]:
    """A fresh hidden sibling of ``out`` to write into, renamed to ``out`` if the body succeeds.

    ``out`` must not exist or be an empty directory. On any failure (Ctrl-C included) the sibling is
    removed, and so are the parents this created: nothing is left behind. kill -9 leaves the sibling;
    the next run to ``out`` removes it (see remove_stale_partials).
    """
    out = Path(out)
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        raise InteropError(f"{out}: exists and is not an empty directory (choose a new --out)")
    staging = out.parent / f"{_partial_prefix(out)}{os.getpid()}"
    remove_stale_partials(out)
    with no_empty_dirs_on_failure(out.parent):
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir()
            yield staging
            if out.exists():
                out.rmdir()
            os.replace(staging, out)
        except OSError as error:
            _discard(staging)
            # The user never sees the hidden sibling (it is gone now): name what they asked for.
            where = out if error.filename is None or str(error.filename).startswith(str(staging)) else error.filename
            raise InteropError(f"{where}: {error.strerror or error}") from None
        except BaseException:
            _discard(staging)
            raise


def interrupted(prog: str, out: str | os.PathLike) -> int:
    """Say in one line that Ctrl-C or SIGTERM stopped a run (its partial output is gone); returns exit status 130."""
    settle_zarr_io()
    # A zarr call cut short before its coroutine reached zarr's IO thread leaves that coroutine unawaited;
    # Python would print a RuntimeWarning about it under our line when the interrupt's traceback is freed.
    warnings.filterwarnings("ignore", message="coroutine .* was never awaited", category=RuntimeWarning)
    print(f"{prog}: interrupted; nothing written to {out}", file=sys.stderr)
    return 130


def _discard(staging: Path) -> None:
    """Remove a failed run's staging directory, once zarr's writes into it have ended.

    A Ctrl-C or a failure stops zarr's call but not the chunk writes it started on its own IO thread:
    removed before they end, the directory would be made again by them (and asyncio would print
    "Task was destroyed but it is pending!" at exit).
    """
    settle_zarr_io()
    shutil.rmtree(staging, ignore_errors=True)


def _partial_prefix(out: Path) -> str:
    return f".{out.name}.partial-"


def remove_stale_partials(out: Path) -> list[Path]:
    """Remove the partial outputs to ``out`` of processes no longer running (killed with -9), saying so.

    A partial whose process is alive, or whose pid this machine cannot check, is another run's work
    in progress and is kept. (A pid is only meaningful on this machine: do not share an --out
    directory between machines that write to it at the same time.)
    """
    removed = []
    prefix = _partial_prefix(out)
    for partial in sorted(out.parent.glob(f"{glob.escape(prefix)}*")) if out.parent.is_dir() else []:
        pid = partial.name[len(prefix):]
        if not pid.isdigit() or not partial.is_dir() or partial.is_symlink() or _process_alive(int(pid)):
            continue
        shutil.rmtree(partial, ignore_errors=True)
        if not partial.exists():
            print(f"removed {partial}: the partial output of process {pid}, which is no longer running",
                  file=sys.stderr)
            removed.append(partial)
    return removed


def _process_alive(pid: int) -> bool:
    """False only when this machine has no process ``pid`` (so a partial of it can never be finished)."""
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # another user's process, or not a pid: not ours to remove
        return True
    return True


def write_store(contents: Contents, path: Path, progress: bool = False) -> None:
    """Create a store at ``path`` holding ``contents``: every episode appended in order, then the sets."""
    with EpisodeStore.create(
        path, cameras=contents.cameras, domain_config=contents.domain_config, run=contents.run,
        action_dim=contents.action_dim,
    ) as store:
        with tqdm(total=contents.n_episodes, unit="episode", desc="importing", disable=not progress,
                  dynamic_ncols=True) as bar:
            for steps, meta in _read_all(contents):
                store.append_episode(steps, meta)
                bar.update()
        for annotation in contents.annotations:
            store.write_annotation(annotation.name, annotation.sigma_min, annotation.sigma_max, annotation.attrs)


def _read_all(contents: Contents) -> Iterator[tuple[dict[str, np.ndarray], EpisodeMeta]]:
    """The episodes, with any failure of the foreign reader (a damaged file) as one InteropError line."""
    episodes = iter(contents.episodes)
    while True:
        try:
            yield next(episodes)
        except StopIteration:
            return
        except (InteropError, StoreError):
            raise
        except Exception as error:
            detail = " ".join(f"{type(error).__name__}: {error}".split())[:300]
            raise InteropError(f"{contents.source}: damaged or unreadable dataset ({detail})") from None


def tree_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def camera_option(text: str) -> tuple[str, str]:
    """One ``--camera OLD=NEW`` value as (old, new), for argparse."""
    old, sep, new = text.partition("=")
    if not sep or not old or not new:
        raise argparse.ArgumentTypeError(f"{text!r} is not OLD=NEW (a camera and its new name)")
    return old, new


def camera_names(cameras: Iterable[str], renames: Mapping[str, str], where: str) -> dict[str, str]:
    """Every camera's new name ({old: new}, the cameras not renamed keeping theirs), the renames checked.

    Each old name must be a camera; the new names must be identifiers (the store's rule), not a step key
    such as ``action``, and all different. ``where`` starts the one-line error ("PATH: store").
    """
    cameras = list(cameras)
    unknown = [old for old in renames if old not in cameras]
    if unknown:
        have = ", ".join(cameras) if cameras else "none"
        raise InteropError(f"{where} has no camera {unknown[0]!r} to rename (its cameras: {have})")
    names = {camera: renames.get(camera, camera) for camera in cameras}
    for new in renames.values():
        if not new.isidentifier() or new in RESERVED_NAMES:
            raise InteropError(f"--camera: {new!r} is not a camera name (an identifier other than "
                               f"{', '.join(sorted(RESERVED_NAMES))})")
    taken = [new for new in names.values() if list(names.values()).count(new) > 1]
    if taken:
        raise InteropError(f"--camera: two cameras would both be named {taken[0]!r}")
    return names


def renamed(contents: Contents, names: Mapping[str, str]) -> Contents:
    """The contents with each camera ``old`` called ``names[old]``, in its steps as in its root attributes."""
    if all(old == new for old, new in names.items()):
        return contents

    def episodes():
        for steps, meta in contents.episodes:
            yield {names.get(key, key): values for key, values in steps.items()}, meta

    return dataclasses.replace(contents, cameras={names[old]: size for old, size in contents.cameras.items()},
                               episodes=episodes())


def from_push_t_pixels(contents: Contents) -> Contents:
    """The contents of a foreign push-T dataset with positions in pixels, in our frame and metres."""
    from data_gen import interop_pusht

    if not contents.foreign:
        raise InteropError(f"{contents.source}: an ambient-push export is in metres already; drop --push-t-pixels")
    if contents.action_dim != 2:
        raise InteropError(f"{contents.source}: --push-t-pixels maps 2-D actions (a pusher target), "
                           f"not {contents.action_dim}-D ones")

    def episodes():
        for steps, meta in contents.episodes:
            steps = {**steps, "agent_pos": interop_pusht.points_to_metres(steps["agent_pos"]),
                     "action": interop_pusht.points_to_metres(steps["action"])}
            meta = meta.model_copy(update={"domain": interop_pusht.DOMAIN})
            if contents.slider_pose_found:
                steps["slider_pose"] = interop_pusht.pose_to_metres(steps["slider_pose"])
                meta = meta.model_copy(update={"initial_pose": tuple(float(x) for x in steps["slider_pose"][0])})
            yield steps, meta

    run = {**contents.run, "units": "push-T pixels mapped to metres (data_gen.interop_pusht)"}
    return dataclasses.replace(contents, run=run, episodes=episodes())


def import_warnings(contents: Contents, store: EpisodeStore, push_t_pixels: bool) -> list[str]:
    """What a user of an imported foreign dataset must know: keys left out, poses missing, units."""
    if not contents.foreign:
        return []
    found = []
    if contents.not_imported:
        found.append(f"{contents.source}: not imported (the store has no place for them): "
                     f"{', '.join(contents.not_imported)}")
    if not contents.slider_pose_found:
        found.append(f"{contents.source}: holds no slider pose; slider_pose and initial_pose are zeros")
    if push_t_pixels:
        found.append(f"{contents.source}: push-T is another domain than ours (pymunk physics, a 20.6 mm pusher, "
                     "2-D drawings with the goal drawn in): its episodes have domain 'push-t'; train on them as "
                     "corrupt data, not as clean data of the target domain")
    reach = float(np.abs(store.array("agent_pos")).max())
    if not push_t_pixels and reach > PIXELS_HINT_M:
        found.append(f"{contents.source}: agent_pos reaches {reach:.4g}, which is not metres (push-T's pixels run "
                     "0-512): import again with --push-t-pixels to map push-T to our frame")
    return found


def store_differences(a: EpisodeStore, b: EpisodeStore) -> list[str]:
    """What differs between two stores, bit for bit (empty when a round trip was lossless)."""
    found = [
        f"{what} {x!r} != {y!r}"
        for what, x, y in [("cameras", a.cameras, b.cameras), ("action_dim", a.action_dim, b.action_dim),
                           ("domain_config", a.domain_config, b.domain_config), ("run", a.run, b.run),
                           ("annotation sets", a.annotation_names, b.annotation_names)]
        if x != y
    ]
    if found:
        return found
    if not np.array_equal(a.episode_ends, b.episode_ends):
        return ["episode_ends"]
    for key in a.step_keys:
        x, y = a.array(key), b.array(key)
        if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
            found.append(f"data/{key}")
    for index in range(a.n_episodes):
        if a.episode_meta(index).model_dump_json() != b.episode_meta(index).model_dump_json():
            found.append(f"metadata of episode {index}")
    for name in a.annotation_names:
        x, y = a.annotation(name), b.annotation(name)
        same = x.attrs == y.attrs and x.sigma_min.tobytes() == y.sigma_min.tobytes() and \
            (x.sigma_max is None) == (y.sigma_max is None) and (x.sigma_max is None or x.sigma_max.tobytes() == y.sigma_max.tobytes())
        if not same:
            found.append(f"annotation set {name}")
    return found

"""Carry an experiment's record to another machine: ``python -m eval.carry RUN_DIR DEST [--states]``.

A run of ``eval.experiment`` outlives the machine it started on only through its record: the ledger,
the config, each arm's training config, metrics and admission, each evaluation's results and trials,
and the report (a few MB). The data (generated again, checked against the ledger's digests),
checkpoints and videos (hundreds of MB) stay behind. On the new machine, copy ``DEST`` back to a run
directory and run the same ``python -m eval.experiment`` command: finished arms are not redone.

``--states`` also carries the episode stores without their images (``DEST/data/``: every episode's
actions, states and metadata, and the stores' annotation sets such as the classifier's sigma_min;
a few MB instead of ~100). A state policy trains from them as from the originals, so the next machine
skips generating the data (37 minutes of the CPU run) and the classifier; the runner checks them
against the ledger's digests. An image policy refuses them in one line (its stores record no cameras).

``DEST`` is replaced as a whole, so a file the run no longer has does not linger there, and only when
it holds nothing but a record (a live run directory is refused). The new record is written beside it
under a hidden name and swapped in; a carry interrupted at any point leaves the old record in place
or, between the two renames, beside it, where the next carry puts it back first. The ledger is copied
first, so a record taken while the run goes on never says work is done whose files it lacks (work
the ledger does not yet count as done is resumed).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from data_gen.cli import ArgumentParser, fail, no_empty_dirs_on_failure
from data_gen.episode_store import STATE_WIDTHS, EpisodeStore, StoreError
from eval.experiment import LEDGER_NAME

RECORD_SUFFIXES = (".json", ".jsonl", ".yaml", ".md", ".png")  # configs, metrics, trials, reports, plots
PROG = "python -m eval.carry"


def _left_behind(parts: tuple[str, ...]) -> bool:
    """The stores (``data/``) and the evaluations' videos (``arms/NAME/eval_DOMAIN/videos/``), where the runner writes them."""
    return parts[0] == "data" or (len(parts) > 4 and parts[0] == "arms" and parts[3] == "videos")


def record_files(run: Path) -> list[Path]:
    """The files of ``run`` that make up its record, relative to it, the ledger first."""
    run = Path(run)
    if not run.is_dir():
        raise ValueError(f"{run}: no such directory")
    if not (run / LEDGER_NAME).is_file():
        raise ValueError(f"{run}: not an experiment run directory (no {LEDGER_NAME})")
    files = []
    for directory, _, names in os.walk(run, followlinks=True):  # a linked arms/ on a bigger disk is still the run's
        for name in names:
            relative = (Path(directory) / name).relative_to(run)
            if relative.suffix in RECORD_SUFFIXES and not _left_behind(relative.parts) and (run / relative).is_file():
                files.append(relative)
    return sorted(files, key=lambda f: (f != Path(LEDGER_NAME), f))


def states_copy(source: Path, dest: Path) -> None:
    """``dest``: the episode store ``source`` without its camera arrays, with its annotation sets."""
    with EpisodeStore.open(source) as store:
        arrays = {key: store.array(key) for key in ("action", *STATE_WIDTHS)}
        annotations = [store.annotation(name) for name in store.annotation_names]
        with EpisodeStore.create(dest, cameras={}, domain_config=store.domain_config, run=store.run,
                                 action_dim=store.action_dim) as copy:  # fmt: skip
            for meta, start, end in zip(store.episode_metas(), (0, *store.episode_ends[:-1]), store.episode_ends):
                copy.append_episode({key: values[start:end] for key, values in arrays.items()}, meta)
            for annotation in annotations:
                copy.write_annotation(annotation.name, annotation.sigma_min, annotation.sigma_max, annotation.attrs)


def _states_only_stores(data: Path) -> bool:
    """Whether ``data`` holds nothing but episode stores without cameras (what ``--states`` carries)."""
    for path in data.iterdir():
        try:
            with EpisodeStore.open(path) as store:
                if store.cameras:
                    return False
        except (StoreError, OSError):
            return False
    return True


def _all_files(root: Path) -> set[Path]:
    return {Path(d, n).relative_to(root) for d, _, names in os.walk(root) for n in names}


def _restore_interrupted(dest: Path) -> None:
    """Put back a record moved aside by a carry that stopped between its two renames; clear its staging."""
    for staging in dest.parent.glob(f".{dest.name}.carrying-*"):
        shutil.rmtree(staging, ignore_errors=True)
    moved = sorted(dest.parent.glob(f".{dest.name}.old-*/record"), key=lambda p: p.stat().st_mtime)
    if moved and not dest.exists():
        moved[-1].rename(dest)
    for old in dest.parent.glob(f".{dest.name}.old-*"):
        shutil.rmtree(old, ignore_errors=True)


def carry(run: Path, dest: Path, states: bool = False) -> list[Path]:
    """Replace ``dest`` with the record of ``run`` (and, with ``states``, its stores without images);
    return the record's files written (relative paths)."""
    shown_run, shown_dest = Path(run), Path(dest)  # errors name the paths as the user gave them
    run, dest = shown_run.resolve(), shown_dest.resolve()
    if dest == run or run in dest.parents or dest in run.parents:
        raise ValueError(f"{shown_dest}: must lie outside {shown_run} (and not contain it)")
    files = record_files(shown_run)
    if dest.parent.is_dir():
        _restore_interrupted(dest)
    if dest.exists() and not dest.is_dir():
        raise ValueError(f"{shown_dest}: exists and is not a directory")
    if dest.is_dir() and any(dest.iterdir()):
        foreign = _all_files(dest) - set(record_files(dest) if (dest / LEDGER_NAME).is_file() else [])
        if (dest / "data").is_dir() and _states_only_stores(dest / "data"):
            foreign = {f for f in foreign if f.parts[0] != "data"}  # stores an earlier --states carried
        foreign = sorted(foreign)
        if foreign:
            raise ValueError(f"{shown_dest}: holds {foreign[0]} ({len(foreign)} files in all), not only a carried record; refusing to replace it")
    with no_empty_dirs_on_failure(dest.parent):
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.carrying-"))
        try:
            for relative in files:
                (staging / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(run / relative, staging / relative)
            for store in sorted((run / "data").glob("*.zarr")) if states else []:
                try:
                    states_copy(store, staging / "data" / store.name)
                except StoreError as error:  # damaged or not a store: one line, and the old record stays
                    raise ValueError(str(error)) from None
            if dest.exists():
                dest.rename(Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.old-")) / "record")
            staging.rename(dest)
        finally:
            _restore_interrupted(dest)  # success: clears the old record; failure: clears the staging, puts the old one back
    return files


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the experiment's run directory (its --out)")
    parser.add_argument("dest", type=Path, help="where the record goes (replaced as a whole), e.g. docs/results/cpu/run")
    parser.add_argument("--states", action="store_true", help="also the episode stores without their images (state policies)")
    args = parser.parse_args(argv)
    try:
        files = carry(args.run, args.dest, states=args.states)
    except ValueError as error:
        fail(PROG, error)
    except OSError as error:
        fail(PROG, f"{error.filename or args.dest}: {error.strerror or error}")
    size = sum((args.dest / f).stat().st_size for f in files)
    stores = sorted(p.name for p in (args.dest / "data").glob("*.zarr")) if args.states else []
    data = sum(p.stat().st_size for p in (args.dest / "data").rglob("*") if p.is_file()) if stores else 0
    also = f", and {', '.join(stores)} without images ({data / 1e6:.1f} MB)" if stores else ""
    print(f"carried {len(files)} files ({size / 1e6:.1f} MB) of {args.run} to {args.dest}{also}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

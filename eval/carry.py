"""Carry an experiment's record to another machine: ``python -m eval.carry RUN_DIR DEST``.

A run of ``eval.experiment`` outlives the machine it started on only through its record: the ledger,
the config, each arm's training config, metrics and admission, each evaluation's results and trials,
and the report (a few MB). The data (generated again, checked against the ledger's digests),
checkpoints and videos (hundreds of MB) stay behind. ``DEST`` is replaced as a whole, so a file the
run no longer has does not linger there; the new record is written beside it first and swapped in,
so an interrupted carry leaves the old one intact. On the new machine, copy ``DEST`` back to a run
directory and run the same ``python -m eval.experiment`` command: finished arms are not redone.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from data_gen.cli import ArgumentParser, fail
from eval.experiment import LEDGER_NAME, LOCK_NAME

RECORD_SUFFIXES = (".json", ".jsonl", ".yaml", ".md", ".png")  # configs, metrics, trials, reports, plots
LEFT_BEHIND_DIRS = ("data", "videos")  # regenerated / too large to carry
PROG = "python -m eval.carry"


def record_files(run: Path) -> list[Path]:
    """The files of ``run`` that make up its record, relative to it, sorted."""
    run = Path(run)
    if not (run / LEDGER_NAME).is_file():
        raise ValueError(f"{run}: not an experiment run directory (no {LEDGER_NAME})")
    files = []
    for path in run.rglob("*"):
        relative = path.relative_to(run)
        parts = relative.parts
        if (
            not path.is_file()
            or path.is_symlink()
            or parts[0] in LEFT_BEHIND_DIRS
            or any(p in LEFT_BEHIND_DIRS or p.endswith(".zarr") for p in parts[:-1])
            or relative.name == LOCK_NAME
            or path.suffix not in RECORD_SUFFIXES
        ):
            continue
        files.append(relative)
    return sorted(files)


def carry(run: Path, dest: Path) -> list[Path]:
    """Replace ``dest`` with the record of ``run``; return the files written (relative paths)."""
    run, dest = Path(run).resolve(), Path(dest).resolve()
    if dest == run or run in dest.parents or dest in run.parents:
        raise ValueError(f"{dest}: must lie outside {run} (and not contain it)")
    if dest.exists() and not dest.is_dir():
        raise ValueError(f"{dest}: exists and is not a directory")
    if dest.is_dir() and any(dest.iterdir()) and not (dest / LEDGER_NAME).is_file():
        raise ValueError(f"{dest}: not empty and not a carried record (no {LEDGER_NAME}); refusing to replace it")
    files = record_files(run)
    staging, old = dest.with_name(dest.name + ".carrying"), dest.with_name(dest.name + ".old")
    for leftover in (staging, old):
        shutil.rmtree(leftover, ignore_errors=True)
    for relative in files:
        target = staging / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(run / relative, target)
    if dest.exists():
        dest.rename(old)
    staging.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
    return files


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the experiment's run directory (its --out)")
    parser.add_argument("dest", type=Path, help="where the record goes (replaced as a whole), e.g. docs/results/cpu/run")
    args = parser.parse_args(argv)
    try:
        files = carry(args.run, args.dest)
    except (ValueError, OSError) as error:
        fail(PROG, error)
    size = sum((args.dest / f).stat().st_size for f in files)
    print(f"carried {len(files)} files ({size / 1e6:.1f} MB) of {args.run} to {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

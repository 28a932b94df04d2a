"""`python -m data_gen.import DIR --format lerobot|diffusion-policy --out STORE`: a dataset as a store.

Reads a LeRobot v3.0 dataset (needs pyarrow: pip install 'ambient-push[interop]') or a Diffusion
Policy zarr ReplayBuffer into a new episode store: an export of ours comes back exactly; a foreign
push-T dataset gets the defaults documented in data_gen.interop, ready to serve as clean data.
(`import` is a keyword, so this module is run with -m, never imported by name.)
"""

from __future__ import annotations

import sys
from pathlib import Path

from data_gen.cli import ArgumentParser, fail
from data_gen.episode_store import StoreError
from data_gen.interop import FORMATS, InteropError, import_dataset


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m data_gen.import", description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path, help="LeRobot dataset or Diffusion Policy zarr directory")
    parser.add_argument("--format", choices=FORMATS, required=True)
    parser.add_argument("--out", type=Path, required=True, help="episode store to create (must not exist, or be empty)")
    args = parser.parse_args(argv)
    try:
        summary = import_dataset(args.dataset, args.out, args.format, progress=sys.stderr.isatty())
    except (InteropError, StoreError) as error:
        fail(parser.prog, error)
    print(f"imported {summary.describe()}: {args.dataset} -> {args.out} ({args.format})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m data_gen.import DIR --format lerobot|diffusion-policy --out STORE`: a dataset as a store.

Reads a LeRobot v3.0 dataset (needs pyarrow: pip install 'ambient-push[interop]') or a Diffusion
Policy zarr ReplayBuffer into a new episode store: an export of ours comes back exactly; a foreign
push-T dataset gets the defaults documented in data_gen.interop, ready to serve as clean data.
(`import` is a keyword, so this module is run with -m, never imported by name.)

Ctrl-C or SIGTERM stops a run with nothing written (exit 130); one killed with -9 leaves a hidden
.OUT.partial-PID, which the next run to the same --out removes.
"""

from __future__ import annotations

import sys
from pathlib import Path

from data_gen.cli import ArgumentParser, fail, stops_on_sigterm
from data_gen.episode_store import StoreError
from data_gen.interop import FORMATS, InteropError, import_dataset, interrupted


@stops_on_sigterm
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
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the partial output is already removed
        return interrupted(parser.prog, args.out)
    print(f"imported {summary.describe()}: {args.dataset} -> {args.out} ({args.format})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

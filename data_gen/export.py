"""`python -m data_gen.export STORE --format lerobot|diffusion-policy --out DIR`: a store for other code.

Writes the store's committed episodes as a LeRobot v3.0 dataset (parquet and lossless mp4; needs
pyarrow: pip install 'ambient-push[interop]') or as a Diffusion Policy zarr ReplayBuffer. The layouts
are documented in data_gen.interop_lerobot and data_gen.interop_diffusion_policy; `python -m
data_gen.import` reads either back into a store, losslessly.

Ctrl-C or SIGTERM stops a run with nothing written (exit 130); one killed with -9 leaves a hidden
.OUT.partial-PID, which the next run to the same --out removes.
"""

from __future__ import annotations

import sys
from pathlib import Path

from data_gen.cli import ArgumentParser, fail, stops_on_sigterm
from data_gen.episode_store import StoreError
from data_gen.interop import FORMATS, InteropError, export_store, interrupted


@stops_on_sigterm
def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m data_gen.export", description=__doc__.splitlines()[0])
    parser.add_argument("store", type=Path, help="episode store to export")
    parser.add_argument("--format", choices=FORMATS, required=True)
    parser.add_argument("--out", type=Path, required=True, help="directory to write (must not exist, or be empty)")
    args = parser.parse_args(argv)
    try:
        summary = export_store(args.store, args.out, args.format, progress=sys.stderr.isatty())
    except (InteropError, StoreError) as error:
        fail(parser.prog, error)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the partial output is already removed
        return interrupted(parser.prog, args.out)
    print(f"exported {summary.describe()}: {args.store} -> {args.out} ({args.format})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m data_gen.import DIR --format lerobot|diffusion-policy --out STORE`: a dataset as a store.

Reads a LeRobot v3.0 dataset (needs pyarrow: pip install -e '.[interop]') or a Diffusion
Policy zarr ReplayBuffer into a new episode store: an export of ours comes back exactly; a foreign
dataset gets the defaults documented in data_gen.interop, and a warning naming what it left out.
A push-T dataset (Diffusion Policy's, gym-pusht's) is in pixels: --push-t-pixels maps it to our
frame and metres (data_gen.interop_pusht), and --camera img=overhead names its camera as ours. It is
then another domain's data (pymunk physics, 2-D drawings; its episodes record domain "push-t"): corrupt
data for our task, not clean data.
(`import` is a keyword, so this module is run with -m, never imported by name.)

Ctrl-C or SIGTERM stops a run with nothing written (exit 130); one killed with -9 leaves a hidden
.OUT.partial-PID, which the next run to the same --out removes.
"""

from __future__ import annotations

import sys
from pathlib import Path

from data_gen.cli import ArgumentParser, fail, stops_on_sigterm
from data_gen.episode_store import StoreError
from data_gen.interop import FORMATS, InteropError, camera_option, import_dataset, interrupted


@stops_on_sigterm
def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m data_gen.import", description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path, help="LeRobot dataset or Diffusion Policy zarr directory")
    parser.add_argument("--format", choices=FORMATS, required=True)
    parser.add_argument("--out", type=Path, required=True, help="episode store to create (must not exist, or be empty)")
    parser.add_argument("--camera", type=camera_option, action="append", default=[], metavar="NAME=STORE_NAME",
                        help="store the dataset's camera NAME as STORE_NAME (repeatable); e.g. img=overhead for "
                             "Diffusion Policy's push-T")
    parser.add_argument("--push-t-pixels", action="store_true",
                        help="the dataset's positions are push-T pixels (0-512): map pusher, action and block pose "
                             "to our frame in metres, push-T's goal onto ours (see data_gen.interop_pusht); its "
                             "episodes record domain 'push-t', another domain than ours (corrupt data, not clean)")
    args = parser.parse_args(argv)
    renames = dict(args.camera)
    if len(renames) != len(args.camera):
        parser.error("--camera: a camera is renamed twice")
    try:
        summary = import_dataset(args.dataset, args.out, args.format, progress=sys.stderr.isatty(), cameras=renames,
                                 push_t_pixels=args.push_t_pixels)
    except (InteropError, StoreError) as error:
        fail(parser.prog, error)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the partial output is already removed
        return interrupted(parser.prog, args.out)
    print(f"imported {summary.describe()}: {args.dataset} -> {args.out} ({args.format})")
    for warning in summary.warnings:
        print(f"{parser.prog}: warning: {warning}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

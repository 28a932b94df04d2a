"""`python -m data_gen.export STORE --format lerobot|diffusion-policy --out DIR`: a store for other code.

Writes the store's committed episodes as a LeRobot v3.0 dataset (parquet and mp4; needs pyarrow: pip
install -e '.[interop]') or as a Diffusion Policy zarr ReplayBuffer. The layouts are documented
in data_gen.interop_lerobot and data_gen.interop_diffusion_policy; `python -m data_gen.import` reads
either back into a store, losslessly (with the default lossless videos).

A LeRobot export ends with a second line naming the obs_type of pushing_sim/PlanarPushing-v0 that
returns its observation features (recorded in meta/ambient_push.json): with cameras
`pixels_agent_pos`, without `environment_state_agent_pos`.

Ctrl-C or SIGTERM stops a run with nothing written (exit 130); one killed with -9 leaves a hidden
.OUT.partial-PID, which the next run to the same --out removes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from data_gen.cli import ArgumentParser, fail, stops_on_sigterm
from data_gen.episode_store import StoreError
from data_gen.interop import FORMATS, InteropError, camera_option, export_store, interrupted
from data_gen.interop_video import VIDEO_CODECS

CODEC_HELP = (
    "LeRobot videos: 'lossless' (default: H.264 of the RGB planes at qp 0; bit-exact, an import gives the store "
    "back) or 'h264' (standard H.264, yuv420p, crf 23: lossy by a level or two per pixel with half the colour "
    "resolution, but on the env's renders about a quarter of the size and several times faster to decode whole; "
    "needs even image sizes). Both put a keyframe every 2 frames, as LeRobot does, for its random reads"
)


@stops_on_sigterm
def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m data_gen.export", description=__doc__.splitlines()[0])
    parser.add_argument("store", type=Path, help="episode store to export")
    parser.add_argument("--format", choices=FORMATS, required=True)
    parser.add_argument("--out", type=Path, required=True, help="directory to write (must not exist, or be empty)")
    parser.add_argument("--camera", type=camera_option, action="append", default=[], metavar="STORE_NAME=NAME",
                        help="export the store's camera STORE_NAME as NAME (repeatable); e.g. overhead=img for "
                             "Diffusion Policy's push-T image config, which reads data/img")
    parser.add_argument("--environment-state", action=argparse.BooleanOptionalAction, default=None,
                        help="LeRobot: the slider pose as the feature observation.environment_state (default: only "
                             "for a store without cameras, whose state policies need it; no obs_type of the env "
                             "returns it beside images)")
    parser.add_argument("--video-codec", choices=tuple(VIDEO_CODECS), default=None, help=CODEC_HELP)
    args = parser.parse_args(argv)
    renames = dict(args.camera)
    if len(renames) != len(args.camera):
        parser.error("--camera: a camera is renamed twice")
    try:
        summary = export_store(args.store, args.out, args.format, progress=sys.stderr.isatty(), cameras=renames,
                               environment_state=args.environment_state, video_codec=args.video_codec)
    except (InteropError, StoreError) as error:
        fail(parser.prog, error)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the partial output is already removed
        return interrupted(parser.prog, args.out)
    print(f"exported {summary.describe()}: {args.store} -> {args.out} ({args.format})")
    for note in summary.notes:
        print(note)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m data_gen.teleop`: record clean demonstrations by driving the pusher in the target domain.

A desktop window (pygame) shows the scene from above with the goal drawn, the policy's camera images
and a status line; the pusher follows the mouse (or a gamepad's left stick). Keys: SPACE starts
recording, S saves, D discards, R resets to a new random start, Q or Esc quits. Recording stops by
itself when the task's success check holds. Physics runs at real-time pace; steps are recorded at the
control rate (10 Hz) into the same episode store and keys as the GCS demos, with `source = teleop`.

An episode reaches the store only when saved, through the store's atomic commit, so a crash or Ctrl-C
never damages the episodes already there. The session logic (`data_gen.teleop_session`) takes its input
from any `InputDevice`, so tests drive it with a scripted stream instead of a person.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from data_gen.cli import ArgumentParser
from data_gen.episode_store import StoreError
from data_gen.teleop_session import TeleopSession, open_store, run
from pushing_sim.domains import DomainError


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m data_gen.teleop", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/target.zarr"))
    parser.add_argument("--domain", default="target")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=int, default=2, help="window zoom of the camera images")
    args = parser.parse_args(argv)

    def fail(message: str) -> int:
        print(f"error: {message}", file=sys.stderr)
        return 2

    if args.seed < 0:
        return fail(f"--seed must be >= 0, got {args.seed}")
    if args.scale < 1:
        return fail(f"--scale must be a positive whole zoom factor, got {args.scale}")
    if args.out.exists() and not args.out.is_dir():
        return fail(f"{args.out} exists and is not a directory")
    created = not args.out.exists()
    import gymnasium

    import pushing_sim
    from data_gen.teleop_window import PygameDevice, PygameView, WindowError

    try:
        env = gymnasium.make(pushing_sim.ENV_ID, domain=args.domain, domain_overrides=args.overrides,
                             render_mode="rgb_array", render_size=480)
        store = open_store(args.out, env)
    except (DomainError, StoreError) as error:
        return fail(str(error))
    session = TeleopSession(env, store, seed=args.seed)
    try:
        view = PygameView(env, scale=args.scale)
        run(session, PygameDevice(view), view)
    except WindowError as error:
        if created and store.n_episodes == 0:  # the store this run created holds nothing: leave no trace
            store.close()
            shutil.rmtree(args.out, ignore_errors=True)
        return fail(str(error))
    except KeyboardInterrupt:
        print("interrupted: saved episodes are safe; the unsaved one was dropped", file=sys.stderr)
    finally:
        total = store.n_episodes
        store.close()
    print(f"{session.saved} episodes saved this session; {args.out} holds {total}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

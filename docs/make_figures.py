"""Regenerates docs/domains.png, the picture of both domains' camera views in docs/env.md.

    python docs/make_figures.py
"""

from pathlib import Path

import gymnasium
import imageio.v3 as iio
import numpy as np

import pushing_sim  # noqa: F401


def domains_figure(path: Path) -> None:
    rows = []
    for domain in ("target", "sim"):
        env = gymnasium.make(pushing_sim.ENV_ID, domain=domain, render_mode="rgb_array", render_size=288)
        goal = np.array(env.unwrapped.task.goal_pose)
        obs, _ = env.reset(options={"slider_pose": goal + [0.06, 0.05, 0.6], "pusher_xy": [0.56, 0.08]})
        gap = np.full((288, 6, 3), 255, np.uint8)
        big = [np.repeat(np.repeat(obs["pixels"][name], 3, 0), 3, 1) for name in ("overhead", "wrist")]
        rows.append(np.concatenate([big[0], gap, big[1], gap, env.render()], axis=1))
    separator = np.full((6, rows[0].shape[1], 3), 255, np.uint8)
    iio.imwrite(path, np.concatenate([rows[0], separator, rows[1]], axis=0))


def teleop_figure(path: Path) -> None:
    """The teleop window mid-recording, drawn headless by SDL's dummy driver."""
    import os
    import tempfile

    os.environ["SDL_VIDEODRIVER"] = "dummy"
    from data_gen.teleop_session import TeleopInput, TeleopSession, open_store
    from data_gen.teleop_window import PygameView
    from pushing_sim.demo import straight_push_targets

    env = gymnasium.make(pushing_sim.ENV_ID, render_mode="rgb_array", render_size=480)
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(Path(tmp) / "t.zarr", env)
        session = TeleopSession(env, store)
        goal = np.array(env.unwrapped.task.goal_pose)
        session.reset(slider_pose=goal + [0.0, 0.06, 0.0])
        session.tick(TeleopInput(commands={"record"}))
        for target in straight_push_targets(goal, 0.06)[:25]:
            session.tick(TeleopInput(target=target))
        view = PygameView(env, scale=2)
        view.draw(session)
        view.screenshot(path)
        store.close()


if __name__ == "__main__":
    domains_figure(Path(__file__).parent / "domains.png")
    teleop_figure(Path(__file__).parent / "teleop.png")

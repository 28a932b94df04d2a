"""Env speed on one core: our env with pixel and with state observations, beside gym-pusht when installed.

    python benchmarks/env_speed.py [--steps 300] [--domain target sim] [--image-size 96] [--blocks 6]

Pins itself to one CPU core and asks Mesa's CPU rasteriser (llvmpipe) for one thread, so the figures
are "per core". Actions come from a fixed-seed random walk that keeps the pusher in contact-rich motion.
Every env is built and warmed up first; then the timed steps run in `--blocks` rounds that visit each
env in turn, so a load that comes and goes on a shared machine slows them alike and the ratios hold.
`steps/s` is wall-clock; `steps/CPU-s` counts the process's CPU time alone, which another job on the
machine disturbs far less (on an idle machine the two agree, as the process uses one core).

gym-pusht (`pip install -e '.[bench]'`) runs its PushT, pymunk physics drawn with pygame at
512 x 512 and resized to one 96 x 96 image, with the same walk scaled to its 0..512 pixel actions.
Our pixel observation holds two camera images (`overhead`, `wrist`) rendered by Drake's VTK.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass

os.environ.setdefault("LP_NUM_THREADS", "1")  # before Drake loads Mesa

PUSHT_ID = "gym_pusht/PushT-v0"
PUSHT_WIDTH = 512.0  # gym-pusht's actions and positions are pixels of its 512 x 512 window
WALK_NOISE_M = 0.012  # per-step jitter of our walk (m); gym-pusht's is scaled to its units


def _random_walk(start, centre, lo, hi, noise: float, steps: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    target, centre, actions = np.array(start, dtype=float), np.asarray(centre, dtype=float), []
    for _ in range(steps):
        # Drift towards the box centre so the pusher keeps meeting the T.
        target = np.clip(target + rng.normal(0, noise, 2) + 0.05 * (centre - target), lo, hi)
        actions.append(target.astype(np.float32))
    return actions


@dataclass
class Runner:
    """One env stepping through its actions; timed in blocks."""

    label: str
    obs: str
    env: object
    actions: list
    seed: int
    control_hz: float
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    done: int = 0

    def warm_up(self) -> None:
        self.env.reset(seed=self.seed)
        self.env.step(self.actions[0])  # the first render compiles shaders
        self.env.reset(seed=self.seed)

    def run(self, count: int) -> None:
        start, cpu_start = time.perf_counter(), time.process_time()
        for action in self.actions[self.done : self.done + count]:
            _, _, terminated, truncated, _ = self.env.step(action)
            if terminated or truncated:
                self.env.reset(seed=self.seed)
        self.seconds += time.perf_counter() - start
        self.cpu_seconds += time.process_time() - cpu_start
        self.done += count

    @property
    def steps_per_s(self) -> float:
        return self.done / self.seconds

    @property
    def steps_per_cpu_s(self) -> float:
        return self.done / self.cpu_seconds


def our_runner(domain: str, obs_type: str, steps: int, image_size: int, seed: int) -> Runner:
    env = gymnasium.make(ENV_ID, domain=domain, image_size=image_size, obs_type=obs_type)
    task = env.unwrapped.task
    lo, hi = env.action_space.low, env.action_space.high
    actions = _random_walk(task.pusher_start, task.goal_pose[:2], lo, hi, WALK_NOISE_M, steps, seed)
    obs = "pixels" if obs_type.startswith("pixels") else "state"
    return Runner(f"ours {domain}", obs, env, actions, seed, task.control_hz)


def pusht_runner(obs_type: str, steps: int, image_size: int, seed: int) -> Runner:
    env = gymnasium.make(PUSHT_ID, obs_type=obs_type, render_mode="rgb_array",
                         observation_width=image_size, observation_height=image_size)
    _, info = env.reset(seed=seed)
    lo, hi = env.action_space.low, env.action_space.high
    noise = WALK_NOISE_M * PUSHT_WIDTH / TaskConfig().workspace_size[0]
    actions = _random_walk(info["pos_agent"], (hi + lo) / 2, lo, hi, noise, steps, seed)
    obs = "pixels" if obs_type.startswith("pixels") else "state"
    return Runner("gym-pusht", obs, env, actions, seed, env.unwrapped.metadata["render_fps"])


def physics_and_render_ms(env, actions) -> tuple[float, float]:
    """Our env's physics CPU ms per step and render CPU ms per camera image, timed apart."""
    sim = env.unwrapped.sim
    sim.reset(sim.slider_pose(), sim.pusher_xy())
    start = time.process_time()
    for action in actions:
        sim.step(action)
    physics = (time.process_time() - start) / len(actions)
    start = time.process_time()
    for _ in actions:
        sim.set_state(sim.slider_pose() + [0, 0, 0.001], sim.pusher_xy())  # a new pose each frame
        sim.render()
    render = (time.process_time() - start) / len(actions) / len(sim.camera_names)
    return 1e3 * physics, 1e3 * render


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--domain", nargs="+", default=["target", "sim"])
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--blocks", type=int, default=6, help="timed rounds over all envs (interleaved)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    size = args.image_size

    runners = []
    for domain in args.domain:
        runners.append(our_runner(domain, "pixels_agent_pos", args.steps, size, args.seed))
        runners.append(our_runner(domain, "state", args.steps, size, args.seed))
    try:
        import gym_pusht  # noqa: F401  (registers gym_pusht/PushT-v0)
    except ImportError:
        print("gym-pusht is not installed, so it is skipped: pip install -e '.[bench]' (or gym-pusht)")
    else:
        runners.append(pusht_runner("pixels_agent_pos", args.steps, size, args.seed))
        runners.append(pusht_runner("state", args.steps, size, args.seed))

    for runner in runners:
        runner.warm_up()
    bounds = np.linspace(0, args.steps, args.blocks + 1).astype(int)
    for count in np.diff(bounds):
        for runner in runners:
            runner.run(int(count))

    print(f"env speed, one core, {size}x{size} pixels, {args.steps} steps each in {args.blocks} interleaved blocks")
    print(f"{'env':12} {'obs':7} {'steps/s':>8} {'RTF':>6} {'steps/CPU-s':>12} {'physics CPU ms/step':>20} "
          f"{'render CPU ms/image':>20} {'images':>7}")
    for runner in runners:
        breakdown, images = f"{'-':>20} {'-':>20}", "-" if runner.obs == "state" else "1"
        if runner.label.startswith("ours") and runner.obs == "pixels":
            physics, render = physics_and_render_ms(runner.env, runner.actions)
            breakdown, images = f"{physics:20.2f} {render:20.2f}", str(len(runner.env.unwrapped.sim.camera_names))
        rtf = runner.steps_per_s / runner.control_hz
        print(f"{runner.label:12} {runner.obs:7} {runner.steps_per_s:8.1f} {rtf:6.1f} {runner.steps_per_cpu_s:12.1f} "
              f"{breakdown} {images:>7}")
        runner.env.close()

    pusht = {r.obs: r for r in runners if r.label == "gym-pusht"}
    for runner in runners:
        if runner.label.startswith("ours") and runner.obs in pusht:
            wall = runner.steps_per_s / pusht[runner.obs].steps_per_s
            cpu = runner.steps_per_cpu_s / pusht[runner.obs].steps_per_cpu_s
            print(f"ratio {runner.label} / gym-pusht, {runner.obs}: {wall:.2f} (steps/s), {cpu:.2f} (steps/CPU-s)")


if __name__ == "__main__":
    import gymnasium
    import numpy as np

    from pushing_sim import ENV_ID
    from pushing_sim.task import TaskConfig

    main()

"""Env speed on one core: env steps/s with pixel observations, real-time factor, render and physics time.

    python benchmarks/env_speed.py [--steps 300] [--domain target sim] [--image-size 96]

Pins itself to one CPU core and asks Mesa's CPU rasteriser (llvmpipe) for one thread, so the figure
is "per core". Actions come from a fixed-seed random walk that keeps the pusher in contact-rich motion.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("LP_NUM_THREADS", "1")  # before Drake loads Mesa


def _random_walk(env, steps: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    lo, hi = env.action_space.low, env.action_space.high
    goal = np.array(env.unwrapped.task.goal_pose[:2])
    target, actions = np.array(env.unwrapped.task.pusher_start), []
    for _ in range(steps):
        # Drift towards the box centre so the pusher keeps meeting the T.
        target = np.clip(target + rng.normal(0, 0.012, 2) + 0.05 * (goal - target), lo, hi)
        actions.append(target.astype(np.float32))
    return actions


def measure(domain: str, steps: int, image_size: int, seed: int = 0) -> dict:
    env = gymnasium.make(ENV_ID, domain=domain, image_size=image_size, obs_type="pixels_agent_pos")
    actions = _random_walk(env, steps, seed)
    env.reset(seed=seed)
    env.step(actions[0])  # warm-up: first render compiles shaders
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset(seed=seed)
    env_time = time.perf_counter() - start

    sim = env.unwrapped.sim
    sim.reset(sim.slider_pose(), sim.pusher_xy())
    start = time.perf_counter()
    for action in actions:
        sim.step(action)
    physics_time = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(steps):
        sim.set_state(sim.slider_pose() + [0, 0, 0.001], sim.pusher_xy())  # a new pose each frame
        sim.render()
    render_time = time.perf_counter() - start
    env.close()
    period = 1.0 / env.unwrapped.task.control_hz
    return {
        "domain": domain,
        "steps_per_s": steps / env_time,
        "real_time_factor": steps * period / env_time,
        "physics_ms_per_step": 1e3 * physics_time / steps,
        "render_ms_per_frame": 1e3 * render_time / steps / len(sim.camera_names),
        "cameras": len(sim.camera_names),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--domain", nargs="+", default=["target", "sim"])
    parser.add_argument("--image-size", type=int, default=96)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    print(f"env speed, one core, {args.image_size}x{args.image_size} pixels_agent_pos, {args.steps} steps")
    print(f"{'domain':8} {'steps/s':>8} {'RTF':>6} {'physics ms/step':>16} {'render ms/frame':>16} {'cams':>5}")
    for domain in args.domain:
        r = measure(domain, args.steps, args.image_size)
        print(f"{r['domain']:8} {r['steps_per_s']:8.1f} {r['real_time_factor']:6.1f} "
              f"{r['physics_ms_per_step']:16.2f} {r['render_ms_per_frame']:16.2f} {r['cameras']:5d}")


if __name__ == "__main__":
    import gymnasium
    import numpy as np

    from pushing_sim import ENV_ID

    main()

"""Closed-loop evaluation speed: where a trial's time goes (env physics, rendering, policy inference)
for the `tiny` and `default` policies, and the time 200 trials would take on this machine.

    python benchmarks/eval_speed.py [--steps 160] [--workers 2]

The policies are real checkpoints (trained a few steps on a small real GCS store, so their weights
are untrained: speed, not skill). One core per worker, as `eval.rollout` runs them.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("LP_NUM_THREADS", "1")


def _checkpoint(root: Path, preset: str) -> Path:
    from policies.train import main as train_main

    out = root / preset
    code = train_main(["--clean", str(root / "sim.zarr"), "--method", "clean", "--preset", preset, "--steps", "1",
                       "--batch-size", "4", "--out", str(out)])
    if code != 0:
        raise SystemExit(f"training the {preset} checkpoint failed ({code})")
    return out / "ckpt.pt"


def measure(ckpt: Path, steps: int) -> dict:
    import gymnasium
    import numpy as np

    import pushing_sim
    from policies.policy import load_policy

    env = gymnasium.make(pushing_sim.ENV_ID, domain="target")
    policy = load_policy(ckpt, device="cpu")
    obs, _ = env.reset(seed=0)
    policy.reset(seed=0)
    sim = env.unwrapped.sim
    policy_time = physics_time = render_time = 0.0
    for _ in range(steps):
        start = time.perf_counter()
        action = policy.act(obs)
        policy_time += time.perf_counter() - start
        start = time.perf_counter()
        sim.step(np.clip(action, env.action_space.low, env.action_space.high))
        physics_time += time.perf_counter() - start
        start = time.perf_counter()
        images = sim.render()
        render_time += time.perf_counter() - start
        obs = {"pixels": images, "agent_pos": sim.pusher_xy().astype(np.float32)}
    total = policy_time + physics_time + render_time
    return {"ms_per_step": 1e3 * total / steps, "policy": policy_time / total, "physics": physics_time / total,
            "render": render_time / total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=160, help="env steps measured per policy (20 chunks of 8)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    import torch

    from data_gen.gcs import main as gcs_main

    torch.set_num_threads(1)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        gcs_main(["--n", "2", "--workers", "1", "--out", str(root / "sim.zarr")])
        print(f"\neval speed, one core per worker, {args.steps} steps per policy")
        print(f"{'preset':8} {'ms/step':>8} {'policy':>7} {'physics':>8} {'render':>7} "
              f"{'200 trials of 200 steps':>24} {'of 750 steps':>13}")
        for preset in ("tiny", "default"):
            r = measure(_checkpoint(root, preset), args.steps)
            minutes = [200 * n * r["ms_per_step"] / 1e3 / 60 / args.workers for n in (200, 750)]
            print(f"{preset:8} {r['ms_per_step']:8.1f} {100 * r['policy']:6.0f}% {100 * r['physics']:7.0f}% "
                  f"{100 * r['render']:6.0f}% {minutes[0]:20.1f} min {minutes[1]:9.1f} min")
        print(f"(minutes with {args.workers} workers; a successful trial of the GCS expert takes about 150-200 steps,"
              " a failed one 750)")


if __name__ == "__main__":
    main()

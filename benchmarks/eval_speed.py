"""Closed-loop evaluation speed: where a trial's time goes (env physics, rendering, policy inference)
for the `tiny` and `default` policies, and the time 200 trials would take on this machine; then
trials per minute of `eval.rollout` with 1 env per worker in float32 (how it ran before batching)
against K envs per worker stepped in lockstep with one batched policy call (float64 sampling, the
default: per-trial results independent of K), for a tiny image policy and the CPU experiment's
state policy (down dims 64/128/256).

    python benchmarks/eval_speed.py [--steps 160] [--workers 2] [--trials 64] [--trial-steps 100] [--envs 1 4 8]

The policies are real checkpoints (trained a few steps on a small real GCS store, so their weights
are untrained: speed, not skill; no trial succeeds, so every trial runs --trial-steps steps). One
core per worker, as `eval.rollout` runs them.
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


def _state_checkpoint(root: Path) -> Path:
    """The CPU experiment's state policy (experiments/cpu.yaml), one training step."""
    from policies.config import DataConfig, PolicyConfig, RunConfig, TrainingConfig
    from policies.train import train

    config = RunConfig(
        policy=PolicyConfig(preset="tiny", obs_mode="state", state_angle="cos_sin", down_dims=(64, 128, 256),
                            diffusion_step_embed_dim=64),
        training=TrainingConfig(method="clean", steps=1, batch_size=4, device="cpu"),
        data=DataConfig(clean=(str(root / "sim.zarr"),)),
    )
    train(config, root / "state", progress=False)
    return root / "state" / "ckpt.pt"


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


def trials_per_minute(ckpt: Path, trials: int, trial_steps: int, workers: int, envs: int, precision: str) -> tuple[float, float]:
    """Trials per minute and env steps per second of eval.rollout's run_trials, wall clock, workers
    processes of one core each (a trial that ends early, off the table, say, has fewer steps)."""
    from eval.rollout import RolloutSpec, run_trials

    spec = RolloutSpec(policy="ckpt", ckpt=str(ckpt), domain="target", domain_overrides=(), seed=0, videos=0,
                       video_dir=None, device="cpu", max_steps=trial_steps, envs=envs, precision=precision)  # fmt: skip
    started = time.perf_counter()
    results = run_trials(spec, trials, workers=workers, progress=False)
    seconds = time.perf_counter() - started
    return 60 * trials / seconds, sum(r["steps"] for r in results) / seconds


def batching(root: Path, args) -> None:
    """Trials per minute before (1 env per worker, float32) and with K envs per worker (float64)."""
    policies = {"tiny image": _checkpoint(root, "tiny"), "state 64/128/256": _state_checkpoint(root)}
    print(f"\neval.rollout trials/min, {args.workers} workers, {args.trials} trials of {args.trial_steps} steps")
    settings = [(1, "float32"), *((k, "float64") for k in args.envs), (max(args.envs), "float32")]
    print(f"{'policy':18} " + " ".join(f"{f'{k} env {p}':>15}" for k, p in settings) + f" {'best/before':>12}")
    for name, ckpt in policies.items():
        measured = [trials_per_minute(ckpt, args.trials, args.trial_steps, args.workers, k, p) for k, p in settings]
        rates = [m[0] for m in measured]
        print(f"{name:18} " + " ".join(f"{r:15.1f}" for r in rates) + f" {max(rates[1:-1]) / rates[0]:11.2f}x")
        print(f"{'  env steps/s':18} " + " ".join(f"{m[1]:15.0f}" for m in measured))
    print("(before: 1 env per worker, float32 sampling, as eval.rollout ran until batching; after: K envs per worker"
          " in lockstep, one batched policy call, float64 sampling so that the per-trial results do not depend on K;"
          " best/before compares the float64 settings; the last column is batched float32, whose results depend on K)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=160, help="env steps measured per policy (20 chunks of 8)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--trials", type=int, default=64, help="trials per batching setting")
    parser.add_argument("--trial-steps", type=int, default=100, help="steps per trial in the batching comparison")
    parser.add_argument("--envs", type=int, nargs="+", default=[1, 4, 8], help="envs per worker to compare (float64)")
    parser.add_argument("--skip-breakdown", action="store_true", help="only the batching comparison")
    args = parser.parse_args()

    import torch

    from data_gen.gcs import main as gcs_main

    torch.set_num_threads(1)
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_setaffinity") else None
    if cores:
        os.sched_setaffinity(0, {sorted(cores)[0]})
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        gcs_main(["--n", "2", "--workers", "1", "--out", str(root / "sim.zarr")])
        if args.skip_breakdown:
            if cores:
                os.sched_setaffinity(0, cores)  # the workers spread over the cores again
            batching(root, args)
            return
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
        if cores:
            os.sched_setaffinity(0, cores)  # the workers spread over the cores again
        batching(root, args)


if __name__ == "__main__":
    main()

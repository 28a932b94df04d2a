"""GCS data generation speed: demos per minute with kinematic replay, bytes per frame, 8000-demo estimate.

    python benchmarks/datagen_speed.py [--n 40] [--workers 1 2] [--backend local ray] [--domain sim]

Runs the real generator (planner, Drake rendering, zarr store) into a temporary store for each
backend and worker count, and prints the figures docs/scaling.md quotes. Ray runs on a local instance
with as many CPUs as the most workers asked for, started once before the timings (its start-up
time is printed apart); every run writes the same episodes.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from data_gen.backends import check_backend
from data_gen.gcs import GenerationConfig, generate
from pushing_sim.domains import load_domain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--workers", type=int, nargs="+", default=[os.cpu_count() or 1])
    parser.add_argument("--backend", nargs="+", default=["local"], choices=["local", "ray"])
    parser.add_argument("--domain", default="sim")
    parser.add_argument("--replay", default="kinematic", choices=["kinematic", "physics"])
    args = parser.parse_args()
    config = GenerationConfig(n=args.n, domain=load_domain(args.domain), replay=args.replay)
    print(f"gcs datagen: {args.n} demos, {args.domain} domain, {args.replay} replay")
    if "ray" in args.backend:
        check_backend("ray")
        import ray

        started = time.perf_counter()
        ray.init(num_cpus=max(args.workers), include_dashboard=False, logging_level="WARNING", log_to_driver=False)
        print(f"  local Ray instance with {max(args.workers)} CPUs started in {time.perf_counter() - started:.1f} s")
    print(f"  {'backend':8} {'workers':>7} {'demos/min':>10} {'tried/ok':>9} {'plan s med':>10} {'p90':>6} {'KB/frame':>8} {'8000 demos h':>12}")
    for backend in args.backend:
        for workers in args.workers:
            with tempfile.TemporaryDirectory() as tmp:
                summary = generate(config, Path(tmp) / "bench.zarr", workers=workers, progress=False, backend=backend)
            per_minute = summary.added / (summary.wall_time / 60)
            times = np.array(summary.planning_times)
            print(f"  {backend:8} {workers:7d} {per_minute:10.1f} {summary.attempts:4d}/{summary.added:<4d} "
                  f"{np.median(times):10.2f} {np.percentile(times, 90):6.2f} {summary.bytes_per_frame / 1e3:8.2f} "
                  f"{8000 / per_minute / 60:12.2f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()

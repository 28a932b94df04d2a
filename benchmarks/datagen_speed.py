"""GCS data generation speed: demos per minute with kinematic replay, bytes per frame, 8000-demo estimate.

    python benchmarks/datagen_speed.py [--n 40] [--workers 2] [--domain sim]

Runs the real generator (planner, Drake rendering, zarr store) into a temporary store and prints the
figures the README quotes.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

from data_gen.gcs import GenerationConfig, generate
from pushing_sim.domains import load_domain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--domain", default="sim")
    parser.add_argument("--replay", default="kinematic", choices=["kinematic", "physics"])
    args = parser.parse_args()
    config = GenerationConfig(n=args.n, domain=load_domain(args.domain), replay=args.replay)
    with tempfile.TemporaryDirectory() as tmp:
        summary = generate(config, Path(tmp) / "bench.zarr", workers=args.workers, progress=False)
    per_minute = summary.added / (summary.wall_time / 60)
    times = np.array(summary.planning_times)
    print(f"gcs datagen: {args.n} demos, {args.workers} workers, {args.domain} domain, {args.replay} replay")
    print(f"  demos per minute          {per_minute:8.1f}")
    print(f"  plans tried / succeeded   {summary.attempts:4d} / {summary.added}")
    print(f"  planning s: median, p90   {np.median(times):8.2f} {np.percentile(times, 90):8.2f}")
    print(f"  frames per demo           {summary.frames / max(1, summary.added):8.1f}")
    print(f"  KB per camera frame       {summary.bytes_per_frame / 1e3:8.2f}")
    print(f"  8000 demos would take     {8000 / per_minute / 60:8.2f} h")


if __name__ == "__main__":
    main()

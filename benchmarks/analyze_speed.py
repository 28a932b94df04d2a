"""Data-diagnostics speed on stores of 8000 episodes (~2.4M steps): end to end on disk, and its pieces in memory.

    python benchmarks/analyze_speed.py [--episodes 8000] [--steps 300] [--pairs 10000] [--chunk 32]
                                       [--episodes-per-append 100] [--keep DIR]

Builds a clean and a corrupt synthetic store of that size (random-walk pushes, 8x8 images to keep
them small, a uniform sigma_min annotation set named "classifier") with EpisodeStore.create /
append_episode / write_annotation, runs ``eval.analyze.analyze`` on them (baselines included) and
prints its timings. An append costs ~20 ms whatever its length, so episodes are appended
``--episodes-per-append`` at a time (concatenated: the stores then record fewer, longer episodes;
pass 1 for the exact layout, ~3 min per store). The in-memory part times the same pieces with the
exact 8000-episode boundaries.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from data_gen.episode_store import EpisodeMeta, EpisodeStore
from eval.analyze import AnalysisConfig, analyze
from eval.spectra import Demonstrations, chunk_psd, chunk_starts, corruption_comparison, corruption_spectrum


def synthetic_demos(episodes: int, steps: int, seed: int, action_noise: float) -> Demonstrations:
    """Random-walk pusher targets in the workspace, the pusher one step behind, a drifting T."""
    rng = np.random.default_rng(seed)
    n = episodes * steps
    walk = np.cumsum(rng.normal(scale=0.004, size=(episodes, steps, 2)), axis=1)
    start = rng.uniform([0.4, -0.2], [0.8, 0.1], size=(episodes, 1, 2))
    action = (start + walk).reshape(n, 2)
    agent_pos = np.concatenate([action[:1], action[:-1]])
    theta = rng.uniform(-np.pi, np.pi, (episodes, 1))
    theta = theta + np.cumsum(rng.normal(scale=0.02, size=(episodes, steps)), axis=1)
    slider = np.column_stack([action + rng.normal(scale=0.03, size=(n, 2)), np.angle(np.exp(1j * theta.reshape(n)))])
    action = action + rng.normal(scale=action_noise, size=action.shape)
    return Demonstrations(action, agent_pos, slider, np.arange(1, episodes + 1, dtype=np.int64) * steps)


def write_store(path: Path, demos: Demonstrations, per_append: int, steps: int) -> float:
    """Write the demos in appends of ``per_append`` episodes; return the seconds it took."""
    started = time.perf_counter()
    n = len(demos.action)
    block = per_append * steps
    meta = EpisodeMeta(source="gcs", domain="sim", seed=0, initial_pose=(0.5, 0.0, 0.0), success=True)
    with EpisodeStore.create(path, cameras={"overhead": (8, 8)}, domain_config={}, run={"bench": path.name}) as store:
        for begin in range(0, n, block):
            end = min(n, begin + block)
            store.append_episode(
                {
                    "action": demos.action[begin:end],
                    "agent_pos": demos.agent_pos[begin:end],
                    "slider_pose": demos.slider_pose[begin:end],
                    "overhead": np.zeros((end - begin, 8, 8, 3), np.uint8),
                },
                meta,
            )
        sigma_min = np.random.default_rng(0).uniform(0.05, 0.4, n).astype(np.float32)
        store.write_annotation("classifier", sigma_min, attrs={"synthetic": "uniform(0.05, 0.4)"})
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=8000)
    parser.add_argument("--steps", type=int, default=300, help="steps per episode")
    parser.add_argument("--pairs", type=int, default=10_000)
    parser.add_argument("--chunk", type=int, default=32)
    parser.add_argument("--episodes-per-append", type=int, default=100)
    parser.add_argument("--keep", type=Path, help="build the stores here and keep them (default: a temp dir)")
    args = parser.parse_args()

    clean = synthetic_demos(args.episodes, args.steps, seed=0, action_noise=0.0)
    corrupt = synthetic_demos(args.episodes, args.steps, seed=1, action_noise=0.002)
    n = len(clean.action)
    print(f"analyze speed: 2 stores of {args.episodes} episodes x {args.steps} steps = {n:,} steps each, "
          f"chunk {args.chunk}, {args.pairs:,} pairs")

    # In memory, exact episode boundaries.
    tick = time.perf_counter()
    starts = chunk_starts(clean.episode_ends, args.chunk, args.chunk // 2)
    spectrum = chunk_psd(clean.action, starts, args.chunk)
    psd_s = time.perf_counter() - tick
    tick = time.perf_counter()
    corruption_spectrum(clean, corrupt, args.chunk, n_pairs=args.pairs)
    corruption_s = time.perf_counter() - tick
    tick = time.perf_counter()
    corruption_comparison(clean, corrupt, args.chunk, n_pairs=args.pairs)
    baselines_s = time.perf_counter() - tick
    print(f"  in memory: PSD of {spectrum.n_chunks:,} chunks {psd_s:6.2f} s; "
          f"corruption spectrum (KD-tree on {n:,} states, {args.pairs:,} queries) {corruption_s:6.2f} s; "
          f"with both baselines (a KD-tree on each set, other episodes only), 3 distance bins and 1000 "
          f"bootstrap draws "
          f"{baselines_s:6.2f} s")

    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep if args.keep is not None else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        paths = [root / "bench_clean.zarr", root / "bench_corrupt.zarr"]
        build_s = [
            write_store(path, demos, args.episodes_per_append, args.steps)
            for path, demos in zip(paths, (clean, corrupt))
        ]
        with EpisodeStore.open(paths[0]) as store:
            layout = f"{store.n_episodes} appended episodes, {store.disk_bytes() / 1e6:.0f} MB"
        print(f"  built stores in {sum(build_s):.1f} s ({layout} each)")
        config = AnalysisConfig(stores=paths, out=root / "analysis", chunk=args.chunk, pairs=args.pairs)
        timing = analyze(config, progress=False)["timing_s"]
    print(f"  on disk, eval.analyze end to end: {timing['total']:.2f} s = load {timing['load']:.2f} + "
          f"PSD {timing['psd']:.2f} + corruption {timing['corruption']:.2f} + plots {timing['plots']:.2f}")


if __name__ == "__main__":
    main()

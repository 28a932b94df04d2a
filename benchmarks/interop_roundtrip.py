"""Interop round trip: a store exported to LeRobot v3.0 and Diffusion Policy, then imported back.

    python benchmarks/interop_roundtrip.py [--store STORE] [--episodes 100] [--steps 100]

Builds (or takes with --store) a store shaped like the env's data: two 96x96 cameras and episodes of
about 100 steps at 10 Hz, frames of a moving square on a textured background as in train_speed's
synthetic store, plus one annotation set. Exports it to both formats, imports each back, and prints
the sizes on disk, the seconds of each export and import, and whether the round trip is bit-exact.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's packages, not an installed copy

from data_gen.episode_store import EpisodeMeta, EpisodeStore  # noqa: E402
from data_gen.interop import FORMATS, export_store, import_dataset, store_differences, tree_bytes  # noqa: E402

CAMERAS = ("overhead", "wrist")


def synthetic_store(path: Path, episodes: int, steps: int, size: int = 96, seed: int = 0) -> Path:
    """Smooth pusher paths; each camera sees the square on its own background; lengths vary by +-20%."""
    rng = np.random.default_rng(seed)
    backgrounds = {camera: rng.integers(60, 120, (size, size, 3), dtype=np.uint8) for camera in CAMERAS}
    with EpisodeStore.create(path, cameras={c: (size, size) for c in CAMERAS}, domain_config={}, run={"seed": seed}) as store:
        for episode in range(episodes):
            length = int(rng.integers(int(steps * 0.8), int(steps * 1.2) + 1))
            t = np.linspace(0, 1, length)[:, None]
            action = rng.uniform(0.45, 0.65, 2) + 0.1 * np.sin(3 * t + rng.uniform(0, 6, 2))
            data = {"action": action, "agent_pos": action, "slider_pose": np.concatenate([action, t], axis=1)}
            for shift, camera in enumerate(CAMERAS):
                frames = np.repeat(backgrounds[camera][None], length, axis=0)
                for i, (x, y) in enumerate(((action - 0.3) / 0.5 * (size - 12 - 8 * shift)).astype(int)):
                    frames[i, y : y + 12, x : x + 12] = (230, 120, 40)
                data[camera] = frames
            meta = EpisodeMeta(source="gcs", domain="sim", seed=episode, initial_pose=(0.5, 0.0, 0.1 * episode),
                               success=bool(episode % 3), planning_time=0.5 + episode / 100)
            store.append_episode(data, meta)
        store.write_annotation("synthetic", rng.uniform(0, 1, store.n_steps), attrs={"note": "benchmark"})
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=None, help="an existing store (default: a synthetic one)")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--steps", type=int, default=100, help="mean steps per synthetic episode")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        source = args.store or synthetic_store(tmp / "store.zarr", args.episodes, args.steps)
        original = EpisodeStore.open(source)
        built = "given" if args.store else f"built in {time.perf_counter() - start:.1f} s"
        print(f"{original.describe()} ({built})")
        print(f"{'format':17} {'export s':>9} {'import s':>9} {'export MB':>10} {'vs store':>9} {'reimport MB':>12}  round trip")
        for fmt in FORMATS:
            exported = export_store(source, tmp / fmt, fmt)
            imported = import_dataset(tmp / fmt, tmp / f"{fmt}.zarr", fmt)
            differences = store_differences(original, EpisodeStore.open(tmp / f"{fmt}.zarr"))
            verdict = "bit-exact" if not differences else "DIFFERS: " + ", ".join(differences)
            print(f"{fmt:17} {exported.seconds:9.1f} {imported.seconds:9.1f} {exported.bytes / 1e6:10.2f} "
                  f"{exported.bytes / original.disk_bytes():8.2f}x {tree_bytes(tmp / f'{fmt}.zarr') / 1e6:12.2f}  {verdict}")


if __name__ == "__main__":
    main()

"""Training and inference speed of the diffusion policy on CPU (or a GPU), per model preset.

    python benchmarks/train_speed.py [--presets tiny default] [--batch-size 64] [--threads 1] [--device cpu]

On a synthetic episode store shaped like the env's data (two 96x96 cameras, 10 Hz episodes) it
reports, per preset: training samples/s; the split of a step between data loading (the background
thread's work: admission draw, windows, random crops, noise) and compute (forward, backward, AdamW,
EMA); the ratio of the loader's rate to the model's consumption (must be >= 2 so loading never
limits training); and the latency of one action chunk at inference (DDIM, 10 steps, batch 1).
CPU figures are per core by default (--threads 1): OpenMP threads that spin-wait make multi-thread
figures swing by 10x on a machine other processes share.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from data_gen.episode_store import EpisodeMeta, EpisodeStore
from policies.config import DataConfig, PolicyConfig, RunConfig, TrainingConfig
from policies.ema import EMA
from policies.model import DiffusionModel, resolve_device
from policies.policy import DiffusionPolicy
from policies.train import BatchStream, admission_sampler, cosine_with_warmup, make_optimizer, open_dataset, training_step

CAMERAS = ("overhead", "wrist")


def synthetic_store(path: Path, episodes: int, steps: int, size: int = 96, seed: int = 0) -> Path:
    """Smooth pusher paths and frames of a moving square on a textured background."""
    rng = np.random.default_rng(seed)
    background = rng.integers(60, 120, (size, size, 3), dtype=np.uint8)
    with EpisodeStore.create(path, cameras={c: (size, size) for c in CAMERAS}, domain_config={}, run={"seed": seed}) as store:
        for episode in range(episodes):
            t = np.linspace(0, 1, steps)[:, None]
            action = rng.uniform(0.45, 0.65, 2) + 0.1 * np.sin(3 * t + rng.uniform(0, 6, 2))
            frames = np.repeat(background[None], steps, axis=0)
            for i, (x, y) in enumerate(((action - 0.3) / 0.5 * (size - 12)).astype(int)):
                frames[i, y : y + 12, x : x + 12] = (230, 120, 40)
            data = {"action": action, "agent_pos": action, "slider_pose": np.zeros((steps, 3)), **{c: frames for c in CAMERAS}}
            store.append_episode(data, EpisodeMeta(source="gcs", domain="sim", seed=episode, initial_pose=(0, 0, 0), success=True))
    return path


def measure(preset: str, store: Path, batch_size: int, steps: int, device: torch.device) -> dict:
    config = RunConfig(
        policy=PolicyConfig(preset=preset),
        training=TrainingConfig(method="clean", batch_size=batch_size, steps=1000, device=device.type),
        data=DataConfig(clean=(str(store),)),
    )
    dataset = open_dataset(config)
    model = DiffusionModel(config.policy, dataset.cameras, dataset.action_dim)
    model.normalizer.load_state_dict(dataset.fit_normalizer().state_dict())
    model.to(device).train()
    sampler, _ = admission_sampler(config.training, dataset, model.schedule.sigmas, model.normalizer)
    stream = BatchStream(dataset, sampler, model.crops, batch_size, seed=0, start=0)
    stream.close()  # only its make() is timed here, on this thread
    ema = EMA(model)
    optimizer = make_optimizer(model, config.training)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_with_warmup(10, 1000))
    autocast = torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    batches = [stream.make(i) for i in range(2)]  # warm-up
    data_start = time.perf_counter()
    batches = [stream.make(i) for i in range(max(steps, 10))]
    data_seconds = (time.perf_counter() - data_start) / len(batches)

    for i in range(2):  # warm-up: kernel selection, allocator
        training_step(model, ema, optimizer, scheduler, {k: v.to(device) for k, v in batches[i].items()}, i + 1, autocast)
    sync()
    compute_start = time.perf_counter()
    for i in range(steps):
        batch = {k: v.to(device) for k, v in batches[i].items()}
        training_step(model, ema, optimizer, scheduler, batch, i + 3, autocast)
    sync()
    compute_seconds = (time.perf_counter() - compute_start) / steps

    policy = DiffusionPolicy(ema.model, device, precision="float32")  # the model as trained
    with EpisodeStore.open(store) as reader:
        episode = reader.episode(0)
    observation = {"pixels": {c: episode[c][0] for c in CAMERAS}, "agent_pos": episode["agent_pos"][0]}
    repeats = 3 if preset == "default" and device.type == "cpu" else 10
    for repeat in range(repeats + 1):  # the first is a warm-up
        if repeat == 1:
            sync()
            infer_start = time.perf_counter()
        policy.reset(seed=repeat)
        policy.act(observation)  # an empty action queue: one chunk by DDIM
    sync()
    return {
        "preset": preset,
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "samples_per_s": batch_size / compute_seconds,
        "compute_ms": 1e3 * compute_seconds,
        "data_ms": 1e3 * data_seconds,
        "data_over_compute": compute_seconds / data_seconds,
        "inference_ms": 1e3 * (time.perf_counter() - infer_start) / repeats,
        "cache": dataset.describe().split("; ")[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "default"])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: 10 tiny, 3 default on CPU)")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--episode-steps", type=int, default=100)
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    torch.manual_seed(0)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        store = synthetic_store(Path(tmp) / "bench.zarr", args.episodes, args.episode_steps)
        print(f"synthetic store: {args.episodes} x {args.episode_steps} steps, 2 cameras 96x96 ({time.perf_counter() - start:.1f} s)")
        header = f"{'preset':8} {'params M':>8} {'samples/s':>10} {'compute ms':>10} {'data ms':>8} {'data/model':>10} {'chunk ms':>9}"
        print(header)
        for preset in args.presets:
            steps = args.steps or (3 if preset == "default" and device.type == "cpu" else 10)
            r = measure(preset, store, args.batch_size, steps, device)
            print(
                f"{r['preset']:8} {r['params_m']:8.2f} {r['samples_per_s']:10.1f} {r['compute_ms']:10.1f} "
                f"{r['data_ms']:8.2f} {r['data_over_compute']:9.0f}x {r['inference_ms']:9.1f}"
            )
        print(f"images: {r['cache']}")
        print("data/model: batches the loader makes per batch the model consumes (>= 2 needed)")


if __name__ == "__main__":
    main()

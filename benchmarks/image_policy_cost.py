"""What an image policy costs to train on a CPU core, and where the time goes (issue: image policies on CPU).

    python benchmarks/image_policy_cost.py [--configs NAME ...] [--threads 1] [--steps 8]

For each candidate configuration (a preset plus the sizes that matter on a CPU: image size, cameras,
ResNet width and stages) it prints the parameters, the floating-point operations of one training
step (``torch.utils.flop_counter``: forward and backward, batch 64), their split between the image
encoders and the U-Net, the measured training samples/s on one core and the split of a step's time:
encoders (forward + backward), U-Net (forward + backward), the rest (loss, AdamW, EMA), and making the
batch (the loader's work, done on a background thread in training). The batches come from a synthetic
store of the configuration's image size (a moving square on a textured background): compute does not
depend on what the pixels show.

Measure on idle cores: a core another process also uses halves every rate.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from policies.config import DataConfig, PolicyConfig, RunConfig, TrainingConfig
from policies.ema import EMA
from policies.model import DiffusionModel
from policies.train import BatchStream, admission_sampler, cosine_with_warmup, make_optimizer, open_dataset, training_step
from train_speed import synthetic_store  # benchmarks/ is the script's directory

# name: (PolicyConfig fields, image size, cameras)
CONFIGS: dict[str, tuple[dict, int, tuple[str, ...]]] = {
    "default-96-2cam": ({"preset": "default"}, 96, ("overhead", "wrist")),
    "tiny-96-2cam": ({"preset": "tiny"}, 96, ("overhead", "wrist")),
    "cpu-96-2cam": ({"preset": "cpu"}, 96, ("overhead", "wrist")),
    "cpu-96-1cam": ({"preset": "cpu"}, 96, ("overhead",)),
    "cpu-64-2cam": ({"preset": "cpu"}, 64, ("overhead", "wrist")),
    "cpu-64-1cam": ({"preset": "cpu"}, 64, ("overhead",)),
    "cpu-w8-96-2cam": ({"preset": "cpu", "resnet_width": 8}, 96, ("overhead", "wrist")),
    "cpu-s4-96-2cam": ({"preset": "cpu", "resnet_stages": 4}, 96, ("overhead", "wrist")),
    "state-cpu.yaml": ({"preset": "tiny", "obs_mode": "state", "state_angle": "cos_sin", "down_dims": (64, 128, 256),
                        "diffusion_step_embed_dim": 64}, 32, ("overhead",)),
}


def flops(fn) -> float:
    """Floating-point operations of ``fn()`` (a forward and backward pass), by torch's flop counter.

    Counted per call, not read from the counter's per-module split: with two encoders, that split
    credits the backward pass of one to the other too.
    """
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return float(counter.get_total_flops())


def seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def measure(name: str, fields: dict, store: Path, cameras: tuple[str, ...], batch_size: int, steps: int) -> dict:
    policy = PolicyConfig(**fields, cameras=cameras if fields.get("obs_mode", "image") == "image" else None)
    config = RunConfig(policy=policy, training=TrainingConfig(method="clean", batch_size=batch_size, steps=1000, device="cpu"),
                       data=DataConfig(clean=(str(store),)))  # fmt: skip
    dataset = open_dataset(config)
    model = DiffusionModel(config.policy, dataset.cameras, dataset.action_dim)
    model.normalizer.load_state_dict(dataset.fit_normalizer().state_dict())
    model.train()
    sampler, _ = admission_sampler(config.training, dataset, model.schedule.sigmas, model.normalizer)
    stream = BatchStream(dataset, sampler, model.crops, batch_size, seed=0, start=0)
    stream.close()  # only its make() is timed, on this thread
    data_s = seconds(lambda: stream.make(0), steps)
    batch = stream.make(1)

    ema, optimizer = EMA(model), make_optimizer(model, config.training)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_with_warmup(10, 1000))
    autocast = torch.autocast(device_type="cpu", enabled=False)
    step_s = seconds(lambda: training_step(model, ema, optimizer, scheduler, batch, 1, autocast), steps)

    def encoders() -> None:
        features = [encoder(batch[camera].flatten(0, 1)) for camera, encoder in model.encoders.items()]
        torch.cat(features, -1).sum().backward()

    with torch.no_grad():
        cond = model.encode_obs(batch)
    x = torch.randn(batch_size, config.policy.horizon, dataset.action_dim)

    def unet() -> None:
        model.unet(x, batch["t"], cond).sum().backward()

    def loss() -> None:
        model(batch, batch["t"], batch["ambient_sigma_min"], batch["noise"], batch["contraction_noise"]).mean().backward()

    total_flops, encoder_flops = flops(loss), flops(encoders) if model.encoders else 0.0
    encoder_s = seconds(encoders, steps) if model.encoders else 0.0
    unet_s = seconds(unet, steps)
    model.zero_grad(set_to_none=True)
    return {"name": name, "params_m": sum(p.numel() for p in model.parameters()) / 1e6, "gflops": total_flops / 1e9,
            "encoder_share": encoder_flops / total_flops, "samples_per_s": batch_size / step_s, "step_ms": 1e3 * step_s,
            "encoder_ms": 1e3 * encoder_s, "unet_ms": 1e3 * unet_s, "rest_ms": 1e3 * (step_s - encoder_s - unet_s),
            "data_ms": 1e3 * data_s, "gflops_per_s": total_flops / step_s / 1e9}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS), metavar="NAME")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=8, help="timed repeats of each part")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), batch {args.batch_size}, float32")
    print(f"{'config':16} {'params M':>8} {'GFLOP/step':>10} {'enc %':>6} {'samples/s':>9} {'step ms':>8} "
          f"{'enc ms':>7} {'unet ms':>7} {'rest ms':>7} {'data ms':>7} {'GFLOP/s':>7}")  # fmt: skip
    stores: dict[int, Path] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.configs:
            fields, size, cameras = CONFIGS[name]
            if size not in stores:
                stores[size] = synthetic_store(Path(tmp) / f"bench{size}.zarr", episodes=8, steps=100, size=size)
            r = measure(name, fields, stores[size], cameras, args.batch_size, args.steps)
            print(f"{r['name']:16} {r['params_m']:8.2f} {r['gflops']:10.1f} {100 * r['encoder_share']:6.0f} {r['samples_per_s']:9.1f} "
                  f"{r['step_ms']:8.0f} {r['encoder_ms']:7.0f} {r['unet_ms']:7.0f} {r['rest_ms']:7.0f} {r['data_ms']:7.1f} "
                  f"{r['gflops_per_s']:7.1f}", flush=True)  # fmt: skip
    print("enc %: the image encoders' share of the step's FLOPs; rest: loss, AdamW and EMA; data: making one batch")


if __name__ == "__main__":
    main()

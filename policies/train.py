"""Train a diffusion policy on clean and corrupt episode stores: ``python -m policies.train``.

One code path for every method: each step the AdmissionSampler draws each batch element's window
and DDPM step (by default the sample first, clean with weight alpha, then a step admissible for it:
clean windows at every step; cotrain: corrupt windows at every step; ambient: corrupt windows only
where sigma_t > b sigma_min, or sigma_t < sigma_max). The loss on admitted corrupt windows is plain
denoising, or with ``corrupt_loss="ambient"`` the ambient targets of science.md §3 after the
contraction of the chunk to its own sigma_min (``contraction=False``: the chunk taken as it is, for
corrupt data that already are noisy copies at sigma_min).

A run directory holds config.json, admission.json (the resolved clean weights, sigma_min source
and the induced P(clean | t)), ckpt.pt (the last checkpoint) and metrics.jsonl, and train.lock while a
run uses it (a second run on the directory stops at once). Starting a run in a directory that has a
checkpoint resumes it, if the config matches (steps and device may change) and the stores hold the
data it began with: the checkpoint records each store's digest, so the stores may be named by another
path (relative for absolute, or moved together with the run directory), but new data at the old path
is refused.
Batch b of a run depends only on (seed, b), and the initial weights on the seed, so a resumed run
draws the batches it would have drawn.
``python -m policies.train --config RUN/config.json --out NEW`` trains again exactly as a recorded run
did (an experiment arm's ``arms/ARM/train/config.json`` too); flags beside it override single fields.

``torchrun --nproc-per-node N -m policies.train ...`` trains on N processes (policies/distributed.py):
each keeps its share of every global batch of ``batch_size`` rows, DistributedDataParallel averages
the gradients, and only rank 0 writes the run's files.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import queue
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from data_gen.cli import StopOnInterrupt, no_empty_dirs_on_failure, stops_on_sigterm
from data_gen.dir_lock import FileLock, Locked
from data_gen.episode_store import EpisodeStore, StoreError
from policies.ambient import AdmissionSampler, linear_alpha_schedule
from policies.checkpoint import CHECKPOINT_NAME, CheckpointError, load_checkpoint, save_checkpoint
from policies.config import STORE_FIELDS, ConfigError, DataConfig, RunConfig, TrainingConfig
from policies.dataset import CorruptAnnotation, DataError, WindowDataset
from policies.distributed import DistributedError, Ranks
from policies.ema import EMA
from policies.model import DiffusionModel, resolve_device
from policies.normalizer import MinMaxNormalizer
from policies.tracking import TrackingError, WandbTracker, check_available
from policies.train_args import CONFIG_NAME, config_from_args, parse_args
ADMISSION_NAME = "admission.json"
METRICS_NAME = "metrics.jsonl"
LOCK_NAME = "train.lock"  # held by the run using the directory (rank 0 under torchrun)
PREFETCH_BATCHES = 4


class TrainingError(Exception):
    """A run that cannot start (bad data, config mismatch); one line."""


class NonFiniteLossError(TrainingError):
    """The loss became NaN or infinite; the run stops without saving the broken state."""


@dataclass
class TrainResult:
    step: int  # optimiser steps taken in total, including earlier runs resumed
    losses: list[float] = field(default_factory=list)  # one per step of this call
    interrupted: bool = False
    model: DiffusionModel | None = None  # the raw weights, as saved
    ema_model: DiffusionModel | None = None  # the EMA weights, as saved


# --------------------------------------------------------------------------------------------------
# The pieces a run is built from


def open_dataset(config: RunConfig) -> WindowDataset:
    """The windows of the run's stores (images cached in memory when they fit)."""
    budget = None if config.data.image_cache_gb is None else int(config.data.image_cache_gb * 1e9)
    return WindowDataset(
        config.data.clean,
        config.data.corrupt,
        horizon=config.policy.horizon,
        n_obs_steps=config.policy.n_obs_steps,
        n_action_steps=config.policy.n_action_steps,
        obs_mode=config.policy.obs_mode,
        cameras=config.policy.cameras,
        image_cache_bytes=budget,
    )


def store_digests(data: DataConfig) -> dict[str, list[str]]:
    """Each store's digest (``EpisodeStore.digest``) by role, {"clean": [...], "corrupt": [...]}: the data's identity."""
    digests: dict[str, list[str]] = {}
    for role in STORE_FIELDS:
        digests[role] = []
        for path in getattr(data, role):
            with EpisodeStore.open(path) as store:
                digests[role].append(store.digest())
    return digests


def check_same_config(config: RunConfig, resumed: dict[str, Any], out: Path) -> None:
    """TrainingError unless ``config`` equals the checkpoint's in every field a resume keeps.

    The store paths are left to check_same_data where the checkpoint records the stores' digests. An
    older checkpoint compares the paths: equal, or naming the same stores from here (another spelling).
    """
    saved: RunConfig = resumed["run_config"]
    compare_paths = _recorded_digests(resumed) is None
    differences = config.resume_differences(saved, stores=False)
    if compare_paths:
        for role in STORE_FIELDS:
            mine, theirs = getattr(config.data, role), getattr(saved.data, role)
            if not _same_paths(mine, theirs):
                differences.append(f"data.{role} {theirs!r} -> {mine!r}")
    if differences:
        raise TrainingError(f"{out}: holds a run with another config ({'; '.join(differences)}); use a new --out")


def check_same_data(data: DataConfig, resumed: dict[str, Any], digests: dict[str, list[str]], out: Path) -> None:
    """TrainingError unless the stores hold the data the checkpoint's run trained on (by digest, whatever their paths)."""
    recorded = _recorded_digests(resumed)
    if recorded is None:  # a checkpoint from before digests were recorded: check_same_config compared the paths
        return
    problems = []
    for role in STORE_FIELDS:
        paths, now, then = getattr(data, role), digests[role], recorded.get(role, [])
        if len(now) != len(then):
            problems.append(f"{len(now)} {role} stores given, the run trained on {len(then)}")
            continue
        problems += [f"{path} holds other episodes (digest {mine[:12]}, the run's {theirs[:12]})"
                     for path, mine, theirs in zip(paths, now, then) if mine != theirs]  # fmt: skip
    if problems:
        raise TrainingError(f"{out}: holds a run trained on other data ({'; '.join(problems)}); use a new --out")


def _recorded_digests(resumed: dict[str, Any]) -> dict[str, list[str]] | None:
    data = resumed.get("data")
    return data.get("store_digests") if isinstance(data, dict) else None


def _same_paths(mine: tuple[str, ...], theirs: tuple[str, ...]) -> bool:
    """Equal paths, or paths that name the same stores from the current directory."""
    if mine == theirs:
        return True
    try:
        return len(mine) == len(theirs) and all(os.path.samefile(a, b) for a, b in zip(mine, theirs))
    except OSError:  # one of them names nothing
        return False


def admission_sampler(
    training: TrainingConfig, dataset: WindowDataset, sigmas: torch.Tensor, normalizer: MinMaxNormalizer
) -> tuple[AdmissionSampler, dict[str, Any]]:
    """The sampler of (window, noise level) pairs for the run's method, and a record of what it uses.

    normalizer: the run's, fitted on its data; an annotation set measured in other units is refused.
    """
    alpha = linear_alpha_schedule(*training.alpha_schedule) if training.alpha_schedule is not None else training.alpha
    sources: dict[str, Any] = {}
    per_sample: dict[str, np.ndarray | None] = {"sigma_min": None, "sigma_max": None}
    if training.method == "ambient":
        annotations: dict[str, CorruptAnnotation] = {}  # one read and one check per set, even if both keys name it
        for key in ("sigma_min", "sigma_max"):
            name = getattr(training, f"{key}_from")
            if name is None:
                value = getattr(training, key)
                sources[key] = None if value is None else {"dataset_level": value}
                continue
            if name not in annotations:
                annotations[name] = dataset.corrupt_annotation(name)
                for path, attrs in annotations[name].attrs.items():
                    _check_annotation_normalizer(name, path, attrs, normalizer)
            annotation = annotations[name]
            values = annotation.sigma_min if key == "sigma_min" else annotation.sigma_max
            if values is None:
                raise TrainingError(f"annotation set {name!r} holds no sigma_max in every corrupt store")
            per_sample[key] = values
            sources[key] = {
                "annotation": name,
                "stores": {path: {k: v for k, v in attrs.items() if k != "heldout_accuracy"} for path, attrs in annotation.attrs.items()},
            }
    sampler = AdmissionSampler(
        sigmas,
        num_clean=dataset.num_clean,
        num_corrupt=dataset.num_corrupt if training.method != "clean" else 0,
        alpha=alpha,
        mode=training.method,
        corrupt_sigma_min=per_sample["sigma_min"],
        sigma_min=training.sigma_min,
        buffer=training.buffer,
        corrupt_sigma_max=per_sample["sigma_max"],
        sigma_max=training.sigma_max,
        order=training.admission,
    )
    record = {
        "method": training.method,
        "order": training.admission,
        "alpha_per_step": sampler.alpha_per_step.tolist(),
        "buffer": training.buffer,
        "corrupt_loss": training.corrupt_loss,
        "contraction": training.contraction,
        "sources": sources,
        "corrupt_windows_admissible_somewhere": sampler.num_corrupt_admissible_somewhere,
        "corrupt_windows": int(sampler.num_corrupt),
        "num_admissible_corrupt_per_step": sampler.num_admissible_corrupt.tolist(),
        "clean_probability_per_step": sampler.clean_probability().tolist(),
    }
    return sampler, record


def _check_annotation_normalizer(name: str, path: str, attrs: dict[str, Any], normalizer: MinMaxNormalizer) -> None:
    """sigma_min is measured in normalised action units: the set's normaliser must be the run's."""
    saved = attrs.get("normalizer") or {}
    ours = {"action_min": normalizer.action_min.double().numpy(), "action_max": normalizer.action_max.double().numpy()}
    if not set(ours) <= set(saved):
        raise TrainingError(f"{path}: annotation set {name!r} records no action normaliser; write it again with policies.classify")
    for key, value in ours.items():
        theirs = np.asarray(saved[key], dtype=np.float64)
        if theirs.shape != value.shape or not np.allclose(theirs, value, rtol=0, atol=1e-6):
            raise TrainingError(
                f"{path}: annotation set {name!r} was measured with another action normaliser ({key} {np.round(theirs, 4).tolist()} "
                f"vs this run's {np.round(value, 4).tolist()}); classify the stores this run trains on"
            )


def total_steps(training: TrainingConfig, dataset: WindowDataset) -> int:
    """steps, or epochs times the batches in one pass over the clean windows (equal for every method)."""
    if training.steps is not None:
        return training.steps
    if training.epochs is None:
        raise TrainingError("give the run length: steps or epochs")
    return training.epochs * math.ceil(dataset.num_clean / training.batch_size)


def cosine_with_warmup(warmup_steps: int, total: int):
    """LR factor: linear warm-up from 0, then a half cosine down to 0 at ``total`` (diffusers' schedule)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        progress = (step - warmup_steps) / max(1, total - warmup_steps)
        return max(0.0, 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))

    return factor


class BatchStream:
    """Training batches for steps start, start + 1, ... built by a background thread.

    Batch b uses only numpy's Generator seeded by (seed, b): the admission draw, the random crops
    and the diffusion noise, so a run is reproducible and resumable whatever the device.
    share: the rows of each batch this process keeps (``Ranks.share``). Every process draws the whole
    batch and keeps its rows, so the shares together are exactly the batch one process trains on.
    """

    def __init__(
        self,
        dataset: WindowDataset,
        sampler: AdmissionSampler,
        crops: dict[str, tuple[int, int]],
        batch_size: int,
        seed: int,
        start: int,
        ambient_loss: bool = False,
        pin: bool = False,
        share: slice | None = None,
    ):
        self.dataset, self.sampler, self.crops = dataset, sampler, crops
        self.batch_size, self.seed, self.ambient_loss, self.pin = batch_size, seed, ambient_loss, pin
        self.share = share
        self._queue: queue.Queue = queue.Queue(maxsize=PREFETCH_BATCHES)
        self._next = start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, daemon=True)
        self._thread.start()

    def make(self, step: int) -> dict[str, Any]:
        """The batch of one step: data arrays as tensors, plus t, is_clean, ambient_sigma_min and the noises."""
        rng = np.random.default_rng([self.seed, step])
        draw = self.sampler.sample(self.batch_size, rng)
        arrays = self.dataset.batch(draw.index, self.crops or None, rng)
        arrays["noise"] = rng.standard_normal(arrays["action"].shape, dtype=np.float32)
        arrays["contraction_noise"] = rng.standard_normal(arrays["action"].shape, dtype=np.float32)
        arrays["t"] = draw.t.astype(np.int64)
        # corrupt_loss "denoise" treats admitted corrupt chunks as clean: sigma_min 0 in the targets.
        ambient_sigma_min = draw.ambient_sigma_min if self.ambient_loss else np.zeros(self.batch_size)
        arrays["ambient_sigma_min"] = ambient_sigma_min.astype(np.float32)
        arrays["is_clean"] = draw.is_clean
        if self.share is not None:
            arrays = {key: value[self.share] for key, value in arrays.items()}
        tensors = {key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in arrays.items()}
        if self.pin:
            tensors = {key: value.pin_memory() for key, value in tensors.items()}
        return tensors

    def _fill(self) -> None:
        step = self._next
        while not self._stop.is_set():
            try:
                item = self.make(step)
            except Exception as error:  # handed to the consumer, which raises it
                item = error
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if isinstance(item, Exception):
                return
            step += 1

    def next(self) -> dict[str, Any]:
        item = self._queue.get()
        if isinstance(item, Exception):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def make_optimizer(model: torch.nn.Module, training: TrainingConfig) -> torch.optim.AdamW:
    """AdamW, fused: one kernel for all parameters instead of a loop over them (on one CPU core the
    loop took 27 ms of a 4M-parameter state policy's 207 ms step, the fused update 4.5 ms)."""
    return torch.optim.AdamW(model.parameters(), lr=training.lr, betas=training.betas,
                             weight_decay=training.weight_decay, fused=True)


def training_step(model, ema, optimizer, scheduler, batch: dict[str, torch.Tensor], step: int, autocast,
                  grad_norms: list[float] | None = None, *, net: torch.nn.Module | None = None,
                  ranks: Ranks | None = None, contract: bool = True) -> float:
    """One optimiser step (the ``step``-th) on a batch already on the model's device; returns the loss
    and, given a list, appends the gradients' global L2 norm to it (measured, never clipped).
    contract: the ambient loss's contraction (TrainingConfig.contraction).

    Under torchrun: net is the model wrapped in DistributedDataParallel (which averages the gradients
    over the processes), and the loss returned is the mean over ranks, checked before any of them steps.
    """
    with autocast:
        loss = (model if net is None else net)(batch, batch["t"], batch["ambient_sigma_min"], batch["noise"], batch["contraction_noise"],
                                               contract=contract).mean()
    value = loss.item() if ranks is None else ranks.mean([loss.item()])[0]
    if not math.isfinite(value):
        raise NonFiniteLossError(f"non-finite loss ({value}) at step {step}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_norms is not None:
        grad_norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf"))))
    optimizer.step()
    scheduler.step()
    ema.update(model, step)
    return value


# --------------------------------------------------------------------------------------------------
# The run


def train(config: RunConfig, out: str | Path, *, progress: bool = True, on_log: Callable[[int, int], None] | None = None,
          wandb_project: str | None = None, should_stop: Callable[[], bool] | None = None) -> TrainResult:
    """Train (or resume) the run in ``out``; returns the final step and this call's losses.

    Ctrl-C saves a checkpoint and returns with ``interrupted`` set; so does should_stop() turning
    true (asked after every step: a caller's own stop request, which never forces). on_log(step, total) is called
    at every metrics record (e.g. to drive a caller's progress display). wandb_project also sends
    every metrics record to that Weights & Biases project (policies/tracking.py; offline by default).

    In a process torchrun started (policies/distributed.py) this trains the process's share of every
    batch; only rank 0 writes files, shows progress, calls on_log and sends to wandb, and a Ctrl-C or
    SIGTERM that reaches any process stops all of them after the same step.
    """
    try:
        ranks = Ranks.from_env()
        share = ranks.share(config.training.batch_size)
        device = ranks.device(resolve_device(config.training.device))
    except (DistributedError, ValueError) as error:
        raise TrainingError(str(error)) from None
    if wandb_project is not None:
        check_available()  # before anything is created
    out = Path(out)
    with no_empty_dirs_on_failure(out):  # a run that fails before writing anything leaves no directory
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise TrainingError(f"{out}: cannot create the run directory ({error.strerror or error})") from None
        with ranks.joined(device), _run_lock(out, ranks):
            main_only = ranks.is_main
            return _train(config, out, device, ranks, share, progress and main_only, on_log if main_only else None,
                          wandb_project if main_only else None, should_stop)  # fmt: skip


@contextlib.contextmanager
def _run_lock(out: Path, ranks: Ranks) -> Iterator[None]:
    """Rank 0 holds the run directory's lock throughout; a second run on it stops with one line naming the first.

    Two runs on one directory would append to one metrics.jsonl and race on one checkpoint. Every
    process learns whether rank 0 got the lock, so none of them trains without it.
    """
    lock, problem = None, None
    if ranks.is_main:
        try:
            lock = FileLock.acquire(out / LOCK_NAME)
        except Locked as error:
            problem = f"another training run is using it ({error.holder}); wait for it to end, or use another --out"
        except OSError as error:
            problem = f"cannot write in the run directory ({error.strerror or error})"
    if not ranks.all(problem is None):
        raise TrainingError(f"{out}: {problem or 'rank 0 could not lock it'}")
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


def _train(config: RunConfig, out: Path, device: torch.device, ranks: Ranks, share: slice, progress: bool,
           on_log: Callable[[int, int], None] | None, wandb_project: str | None,
           should_stop: Callable[[], bool] | None = None) -> TrainResult:
    checkpoint_file = out / CHECKPOINT_NAME
    resumed = load_checkpoint(checkpoint_file) if checkpoint_file.exists() else None
    if resumed is not None:
        check_same_config(config, resumed, out)
    digests = store_digests(config.data)  # before the images load: a refusal comes at once
    if resumed is not None:
        check_same_data(config.data, resumed, digests, out)

    dataset = open_dataset(config)
    training = config.training
    with torch.random.fork_rng(devices=[]):  # the initial weights from the run's seed, the caller's RNG untouched
        torch.manual_seed(training.seed)
        model = DiffusionModel(config.policy, dataset.cameras, dataset.action_dim)
    model.normalizer.load_state_dict(dataset.fit_normalizer(config.data.action_normalizer).state_dict())
    sampler, admission = admission_sampler(training, dataset, model.schedule.sigmas, model.normalizer)
    total = total_steps(training, dataset)
    model.to(device)
    ema = EMA(model, training.ema_power, training.ema_max_decay)
    optimizer = make_optimizer(model, training)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_with_warmup(training.warmup_steps, total))
    step = 0
    if resumed is not None:
        model.load_state_dict(resumed["model"])
        ema.model.load_state_dict(resumed["ema_model"])
        optimizer.load_state_dict(resumed["optimizer"])
        scheduler.load_state_dict(resumed["lr_scheduler"])
        step = int(resumed["step"])
    saved_step = step if resumed is not None else None  # the step the checkpoint file holds
    # Averages the gradients over the processes (and re-sends rank 0's few normaliser buffers, equal anyway).
    net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) if ranks.distributed else None
    if ranks.is_main:
        config.save(out / CONFIG_NAME)
        (out / ADMISSION_NAME).write_text(json.dumps(admission, indent=1))

    def save(together: bool = True) -> None:
        """Rank 0 writes the checkpoint (from the unwrapped model); with ``together`` every process
        waits for it and fails with it."""
        nonlocal saved_step
        failure = None
        if ranks.is_main:
            try:
                save_checkpoint(checkpoint_file, checkpoint())
            except CheckpointError as error:
                failure = error
        saved = ranks.all(failure is None) if together else failure is None  # every process learns whether rank 0 saved
        if not saved:
            raise failure or CheckpointError(f"{checkpoint_file}: rank 0 could not save the checkpoint")
        saved_step = step
        if ranks.is_main and step in training.keep_checkpoints:
            keep_snapshot(checkpoint_file, step)

    def checkpoint() -> dict[str, Any]:
        return {
            "config": config.to_json(),
            "cameras": {name: list(hw) for name, hw in model.cameras.items()},
            "action_dim": dataset.action_dim,
            "model": model.state_dict(),
            "ema_model": ema.model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "lr_scheduler": scheduler.state_dict(),
            "step": step,
            "world_size": ranks.world_size,
            "data": {
                "sigma_min_source": json.dumps(admission["sources"].get("sigma_min")),
                "windows_clean": dataset.num_clean,
                "windows_corrupt": dataset.num_corrupt,
                "episodes_clean": dataset.episode_counts["clean"],
                "episodes_corrupt": dataset.episode_counts["corrupt"],
                "store_digests": digests,
            },
        }

    result = TrainResult(step=step, model=model, ema_model=ema.model)
    if step >= total:
        if progress:
            print(f"{out}: already trained for {step} of {total} steps; nothing to do")
        return result
    if progress:
        print(dataset.describe())
        where = str(device)
        if ranks.distributed:
            where = f"{ranks.world_size} processes ({device.type}; {share.stop - share.start} rows of each batch of {training.batch_size} on each)"
        print(f"method {training.method}: {_admission_summary(sampler, admission)}; {total} steps on {where}")

    stream = BatchStream(
        dataset, sampler, model.crops, training.batch_size, training.seed, step,
        ambient_loss=training.corrupt_loss == "ambient", pin=device.type == "cuda",
        share=share if ranks.distributed else None,
    )  # fmt: skip
    autocast = torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    bar = tqdm(total=total, initial=step, disable=not progress, dynamic_ncols=True, desc=out.name)
    tracker = WandbTracker(out, json.loads(config.to_json()), wandb_project) if wandb_project is not None else None
    window_losses, window_clean, window_norms, window_start = [], [], [], time.perf_counter()
    model.train()
    # Ctrl-C, or SIGTERM (kill, a scheduler; torchrun passes a Ctrl-C on as SIGINT and stops its processes with SIGTERM).
    stop = StopOnInterrupt()
    stopping, forced = False, False
    try:
        with stop, (open(out / METRICS_NAME, "a") if ranks.is_main else contextlib.nullcontext()) as metrics:
            while step < total and not stopping:
                host_batch = stream.next()
                batch = {key: value.to(device, non_blocking=True) for key, value in host_batch.items()}
                try:
                    value = training_step(model, ema, optimizer, scheduler, batch, step + 1, autocast, window_norms,
                                          net=net, ranks=ranks if ranks.distributed else None,
                                          contract=training.contraction)  # fmt: skip
                except NonFiniteLossError as error:
                    kept = f"{checkpoint_file} keeps the last good state" if saved_step is not None else "nothing saved"
                    raise NonFiniteLossError(f"{error}: stopped; {kept}") from None
                step += 1
                # One collective: the batch's clean fraction, and whether any process was asked to stop.
                asked = stop.requested or (should_stop is not None and should_stop())
                clean_fraction, stop_votes = ranks.mean([float(host_batch["is_clean"].float().mean()), float(asked)])
                stopping = stop_votes > 0
                result.losses.append(value)
                window_losses.append(value)
                window_clean.append(clean_fraction)
                bar.update(1)
                if step % training.log_every == 0 or step == total:
                    elapsed = time.perf_counter() - window_start
                    record = {
                        "step": step,
                        "loss": float(np.mean(window_losses)),
                        "lr": scheduler.get_last_lr()[0],
                        "samples_per_s": len(window_losses) * training.batch_size / max(elapsed, 1e-9),
                        "clean_fraction": float(np.mean(window_clean)),
                        "world_size": ranks.world_size,
                        "time": time.time(),
                    }
                    # The same figures under LeRobot's training-log names (README, "Training").
                    record |= {"train/loss": record["loss"], "train/lr": record["lr"],
                               "train/grad_norm": float(np.mean(window_norms)),
                               "train/update_s": elapsed / len(window_losses)}
                    if metrics is not None:
                        metrics.write(json.dumps(record) + "\n")
                        metrics.flush()
                    if tracker is not None:
                        tracker.log(record)
                    bar.set_postfix(loss=f"{record['loss']:.4f}", samples_s=f"{record['samples_per_s']:.0f}")
                    if on_log is not None:
                        on_log(step, total)
                    window_losses, window_clean, window_norms, window_start = [], [], [], time.perf_counter()
                if step % training.checkpoint_every == 0 or step in training.keep_checkpoints:
                    save()
    except KeyboardInterrupt:  # a second Ctrl-C, or train() called off the main thread
        result.interrupted = forced = True
    finally:
        result.interrupted |= stopping  # agreed by every process (in one process: it was asked to stop)
        stream.close()
        bar.close()
        if tracker is not None:
            tracker.close()
    result.step = step
    if saved_step != step:  # else the loop has just saved this very step
        save(together=not forced)  # after a forced stop the other processes may be anywhere: no collective
    if result.interrupted and progress:
        print(f"interrupted at step {step}; checkpoint saved to {checkpoint_file}")
    return result


def keep_snapshot(checkpoint_file: Path, step: int) -> Path:
    """ckpt_STEP.pt beside ``checkpoint_file``: a hard link to the checkpoint just saved (the next save
    replaces ckpt.pt by a new file and leaves the link as it is), or a copy where links are not allowed."""
    snapshot = checkpoint_file.with_name(f"{checkpoint_file.stem}_{step}{checkpoint_file.suffix}")
    partial = snapshot.with_name(snapshot.name + ".partial")
    try:
        partial.unlink(missing_ok=True)
        try:
            os.link(checkpoint_file, partial)
        except OSError:
            shutil.copyfile(checkpoint_file, partial)
        os.replace(partial, snapshot)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise CheckpointError(f"{snapshot}: cannot keep the step-{step} snapshot ({error.strerror or error}); {checkpoint_file} is saved") from None
    return snapshot


def _admission_summary(sampler: AdmissionSampler, admission: dict[str, Any]) -> str:
    p = sampler.clean_probability()
    T = len(p)
    text = f"P(clean | t) {p[0]:.3f} at t=0, {p[T // 4]:.3f} at t={T // 4}, {p[T // 2]:.3f} at t={T // 2}, {p[-1]:.3f} at t={T - 1}"
    if sampler.mode == "ambient":
        source = admission["sources"]["sigma_min"]
        where = f"annotation set {source['annotation']!r}" if "annotation" in source else f"dataset-level {source['dataset_level']}"
        text += (f" ({sampler.order}); sigma_min from {where}, buffer {sampler.buffer:.3f}; "
                 f"{admission['corrupt_windows_admissible_somewhere']} of {sampler.num_corrupt} corrupt windows admissible somewhere")  # fmt: skip
    return text


# --------------------------------------------------------------------------------------------------
# Command line (its flags, and --config with a recorded run's config.json: policies/train_args.py)


@stops_on_sigterm
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rank = os.environ.get("RANK", "0")  # under torchrun every process reports its own errors
    prog = "python -m policies.train" + (f" (rank {rank})" if rank != "0" else "")
    if args.threads is not None:
        if args.threads < 1:
            print(f"{prog}: error: --threads must be at least 1, got {args.threads}", file=sys.stderr)
            return 2
        torch.set_num_threads(args.threads)
    try:
        config = config_from_args(args)
        result = train(config, args.out, wandb_project=args.wandb_project if args.wandb else None)
    except KeyboardInterrupt:  # before training began (loading data, building the model): nothing to save yet
        print(f"{prog}: interrupted; run the same command to resume", file=sys.stderr)
        return 130
    except NonFiniteLossError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 1
    except (ConfigError, DataError, StoreError, CheckpointError, TrainingError, TrackingError) as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # e.g. a read-only run directory
        print(f"{prog}: error: {error.filename or args.out}: {error.strerror or error}", file=sys.stderr)
        return 2
    if result.interrupted:
        return 130
    if rank != "0":
        return 0
    print(f"trained to step {result.step}; checkpoint {Path(args.out) / CHECKPOINT_NAME}")
    if args.wandb and os.environ.get("WANDB_MODE", "offline") == "offline":
        print(f"wandb: offline run in {Path(args.out) / 'wandb'}; upload it with: wandb sync {Path(args.out) / 'wandb'}/offline-run-*")
    return 0


if __name__ == "__main__":
    sys.exit(main())

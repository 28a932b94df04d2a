"""Per-sample sigma_min for corrupt data from a noise-conditioned classifier: ``python -m policies.classify``.

The classifier (``policies.classifier``) tells clean from corrupt action chunks noised to sigma; a
corrupt chunk's sigma_min is the smallest sigma at which it can no longer tell them apart.

Cross-fitting: a classifier that reads sigma_min off the chunks it trained on memorises the few
clean demos and overstates it. So the episodes of each pool (clean, corrupt) are dealt into k folds;
classifier f trains on every fold but f and f + 1 (mod k) and gives sigma_min to fold f's corrupt
episodes, so every corrupt value comes from a classifier that never saw its episode. Early
stopping: the k classifiers train in lockstep, and each keeps the earliest state whose validation
loss, summed over every episode outside its test fold (the other classifiers' validation folds),
is within one standard error of the lowest; the untrained classifier (last layer zero, c = 0.5,
sigma_min 0) competes as step 0, so data with nothing to tell apart gets sigma_min ~ 0. The test
folds also give the classifier's held-out accuracy per sigma.

The values go into each corrupt store as the annotation set ``--name`` (default "classifier"), with
the config, the stores, the action normaliser, the held-out accuracy and the folds in its attributes;
``python -m policies.train --method ambient --sigma-min-from NAME`` trains with them.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pydantic import ValidationError
from tqdm import tqdm

from data_gen.cli import ArgumentParser, flag_message
from data_gen.episode_store import EpisodeStore, StoreError
from policies.classifier import (
    Chunks,
    ClassifierConfig,
    Pool,
    TrainingLog,
    accuracy_levels,
    accuracy_table,
    count_correct,
    estimate_sigma_min,
    mean_t_min,
    read_pools,
    sigma_grid,
    train_folds,
)
from policies.dataset import DataError
from policies.model import resolve_device
from policies.normalizer import MinMaxNormalizer

PRODUCER = "policies.classify"
# What a fold does with each episode: train on it, early-stop on it, or read sigma_min off it.
ROLES = ("train", "validation", "test")


# --------------------------------------------------------------------------------------------------
# Cross-fitting and the annotation


def assign_folds(n_episodes: int, k: int, seed: np.random.SeedSequence | int) -> np.ndarray:
    """(n_episodes,) fold of each episode: a seeded shuffle dealt round-robin, so fold sizes differ by at most one."""
    folds = np.empty(n_episodes, np.int64)
    folds[np.random.default_rng(seed).permutation(n_episodes)] = np.arange(n_episodes) % k
    return folds


@dataclass(frozen=True)
class FoldReport:
    """One fold's classifier: the (store, episode) pairs it trained, early-stopped and was read on."""

    fold: int
    train: list[tuple[str, int]]
    validation: list[tuple[str, int]]
    test: list[tuple[str, int]]
    log: TrainingLog


@dataclass(frozen=True)
class Classification:
    """What ``annotate`` measured."""

    sigma_min: dict[str, np.ndarray]  # corrupt store -> (n_steps,) sigma_min of each step
    step_fold: dict[str, np.ndarray]  # corrupt store -> (n_steps,) fold whose classifier gave each value
    episode_folds: dict[str, np.ndarray]  # every store -> (n_episodes,) fold of each episode
    folds: list[FoldReport]
    accuracy: list[dict[str, float]]  # held-out accuracy per sigma, see ``accuracy_table``


def cross_fit(
    clean: Pool, corrupt: Pool, config: ClassifierConfig, device: torch.device, progress: bool = True
) -> Classification:
    """sigma_min of every corrupt step from the fold classifier that held its episode out, and the held-out accuracy."""
    pools = {"clean": clean, "corrupt": corrupt}
    k = min(config.folds, len(clean.episodes), len(corrupt.episodes))
    if k < 3:
        raise DataError(
            "cross-fitting needs at least 3 episodes in each pool "
            f"(clean: {len(clean.episodes)}, corrupt: {len(corrupt.episodes)})"
        )
    split_seed, *fold_seeds = np.random.SeedSequence(config.seed).spawn(1 + k)
    # Each pool is split on its own, but with the same shuffle: paired stores (corrupt episode i a
    # degraded copy of clean episode i) keep each pair in one fold, where a pair split between
    # train and test would leak the pair's path into the test.
    episode_fold = {kind: assign_folds(len(pool.episodes), k, split_seed) for kind, pool in pools.items()}
    step_fold = {kind: episode_fold[kind][pool.chunks.episode] for kind, pool in pools.items()}
    splits = [{kind: _split(pools[kind].chunks, step_fold[kind], fold, k) for kind in pools} for fold in range(k)]
    train_seeds, read_seeds = zip(*(seed.spawn(2) for seed in fold_seeds), strict=True)
    with tqdm(total=k * config.steps, disable=not progress, desc=f"classifier, {k} folds x steps", dynamic_ncols=True) as bar:
        models, logs = train_folds(
            [(split["clean"]["train"], split["corrupt"]["train"]) for split in splits],
            [(split["clean"]["validation"], split["corrupt"]["validation"]) for split in splits],
            config, device, train_seeds, bar,
        )  # fmt: skip
    grid = sigma_grid(config.num_train_timesteps)
    levels = accuracy_levels(grid)
    sigma_min = np.full(len(corrupt.chunks), np.nan)
    correct = {kind: np.zeros(len(levels), np.int64) for kind in pools}
    totals = dict.fromkeys(pools, 0)
    reports = []
    estimate_bar = tqdm(total=len(corrupt.chunks) * config.draws, disable=not progress, unit="chunk",
                        desc="sigma_min of corrupt chunks x draws", dynamic_ncols=True)  # fmt: skip
    for fold, (model, split) in enumerate(zip(models, splits, strict=True)):
        estimate_seed, *accuracy_seeds = (int(seed) for seed in read_seeds[fold].generate_state(3))
        test = split["corrupt"]["test"]
        sigma_min[step_fold["corrupt"] == fold] = estimate_sigma_min(
            model, test, grid, config.eps, config.draws, estimate_seed, bar=estimate_bar
        )
        for kind, seed in zip(pools, accuracy_seeds, strict=True):
            correct[kind] += count_correct(model, split[kind]["test"], kind == "clean", levels, config.draws, seed)
            totals[kind] += len(split[kind]["test"]) * config.draws
        # The episodes of the chunks each role used, so the report shows what the fit actually saw.
        episodes = {
            role: sorted({pools[kind].episodes[e] for kind in pools for e in np.unique(split[kind][role].episode)})
            for role in ROLES
        }
        reports.append(FoldReport(fold, **episodes, log=logs[fold]))
    estimate_bar.close()
    assert not np.isnan(sigma_min).any(), "every corrupt episode lies in exactly one test fold"
    episode_folds: dict[str, list[int]] = {}
    for kind, pool in pools.items():
        for (path, _), fold in zip(pool.episodes, episode_fold[kind], strict=True):
            episode_folds.setdefault(path, []).append(int(fold))
    return Classification(
        sigma_min={path: sigma_min[steps] for path, steps in corrupt.store_steps.items()},
        step_fold={path: step_fold["corrupt"][steps] for path, steps in corrupt.store_steps.items()},
        episode_folds={path: np.array(folds) for path, folds in episode_folds.items()},
        folds=reports,
        accuracy=accuracy_table(levels, correct, totals),
    )


def _split(chunks: Chunks, step_fold: np.ndarray, fold: int, k: int) -> dict[str, Chunks]:
    """A pool's chunks by role for fold ``fold``: test (in the fold), validation (in the next one) or train."""
    test, validation = step_fold == fold, step_fold == (fold + 1) % k
    masks = {"train": ~(test | validation), "validation": validation, "test": test}
    return {role: chunks.take(np.flatnonzero(mask)) for role, mask in masks.items()}


def annotate(
    clean: Sequence[str | Path],
    corrupt: Sequence[str | Path],
    config: ClassifierConfig,
    name: str = "classifier",
    overwrite: bool = False,
    progress: bool = True,
    write: bool = True,
) -> Classification:
    """Cross-fit the classifier and write each corrupt store's sigma_min as annotation set ``name``.

    Fails before training if a store is given twice, a corrupt store is locked, or (without
    ``overwrite``) already holds a set ``name``.
    """
    clean, corrupt = [str(path) for path in clean], [str(path) for path in corrupt]
    _check_distinct(clean, corrupt)
    device = resolve_device(config.device)
    with contextlib.ExitStack() as stack:
        # The writer locks first, so that a store another process writes fails now, not after training.
        corrupt_stores = {path: stack.enter_context(EpisodeStore.open(path, mode="a" if write else "r")) for path in corrupt}
        for path, store in corrupt_stores.items():
            if write and not overwrite and name in store.annotation_names:
                raise StoreError(f"{path}: annotation set {name!r} exists; choose another --name or give --overwrite")
        clean_stores = {path: stack.enter_context(EpisodeStore.open(path)) for path in clean}
        clean_pool, corrupt_pool, normalizer = read_pools(clean_stores, corrupt_stores, config)
        result = cross_fit(clean_pool, corrupt_pool, config, device, progress)
        if write:
            for path, store in corrupt_stores.items():
                attrs = annotation_attrs(result, path, normalizer, clean, corrupt, config)
                store.write_annotation(name, result.sigma_min[path].astype(np.float32), attrs=attrs, overwrite=overwrite)
    return result


def annotation_attrs(
    result: Classification,
    path: str,
    normalizer: MinMaxNormalizer,
    clean: list[str],
    corrupt: list[str],
    config: ClassifierConfig,
) -> dict:
    """The attributes stored with one corrupt store's set: what made it, and how well it tells the pools apart."""
    values = result.sigma_min[path]
    keys = ("action", "agent_pos") if config.with_agent_pos else ("action",)
    return {
        "producer": PRODUCER,
        "config": config.model_dump(),
        "clean": [str(Path(p).resolve()) for p in clean],
        "corrupt": [str(Path(p).resolve()) for p in corrupt],
        # sigma_min is measured in these normalised units; training refuses a set made with others.
        "normalizer": {
            f"{key}_{end}": getattr(normalizer, f"{key}_{end}").double().tolist() for key in keys for end in ("min", "max")
        },
        "heldout_accuracy": result.accuracy,
        "mean_sigma_min": float(values.mean()),
        "mean_t_min": mean_t_min(values, config.num_train_timesteps),
        "folds": len(result.folds),
        "best_steps": [report.log.best_step for report in result.folds],
        "stopped_steps": [report.log.stopped_step for report in result.folds],
        "episode_folds": result.episode_folds[path].tolist(),
    }


def _check_distinct(clean: list[str], corrupt: list[str]) -> None:
    seen: dict[Path, str] = {}
    for kind, paths in (("clean", clean), ("corrupt", corrupt)):
        for path in paths:
            resolved = Path(path).resolve()
            if resolved in seen:
                raise DataError(f"{path}: given twice (as {seen[resolved]} and as {kind}); a store belongs to one pool, once")
            seen[resolved] = kind


# --------------------------------------------------------------------------------------------------
# Report and command line


def text_histogram(values: np.ndarray, bins: int = 10, width: int = 40) -> str:
    """Lines 'lo-hi | ##### count' over [0, 1]."""
    counts, edges = np.histogram(values, bins=bins, range=(0.0, 1.0))
    scale = width / max(1, counts.max())
    return "\n".join(
        f"{lo:4.2f}-{hi:4.2f} | {'#' * int(round(c * scale)):<{width}} {c}"
        for lo, hi, c in zip(edges[:-1], edges[1:], counts, strict=True)
    )


def accuracy_text(rows: list[dict[str, float]]) -> str:
    """The held-out accuracy table as aligned text."""
    lines = ["sigma   clean  corrupt  balanced"]
    lines += [f"{r['sigma']:5.3f}  {r['clean']:6.3f}  {r['corrupt']:7.3f}  {r['balanced']:8.3f}" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m policies.classify", description=__doc__.split("\n\n")[0])
    parser.error = lambda message: parser.exit(2, f"{parser.prog}: error: {message}\n")  # one line, exit 2
    parser.add_argument("--clean", nargs="+", required=True, metavar="STORE")
    parser.add_argument("--corrupt", nargs="+", required=True, metavar="STORE", help="annotated in place")
    parser.add_argument("--name", default="classifier", help="annotation set to write (default: classifier)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing annotation set of that name")
    parser.add_argument("--folds", type=int, default=5, help="cross-fitting folds per pool (default: 5, at least 3)")
    parser.add_argument("--steps", type=int, default=2000, help="most training steps per fold")
    parser.add_argument("--eval-every", type=int, default=50, help="steps between validation losses")
    parser.add_argument("--patience", type=int, default=10, help="evaluations without a lower validation loss before a fold stops")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--eps", type=float, default=0.05)
    parser.add_argument("--draws", type=int, default=8)
    parser.add_argument("--with-agent-pos", action="store_true", help="condition the classifier on agent_pos too")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--action-normalizer", default="all", choices=("all", "clean"),
                        help="fit the action normaliser as the policy run will (policies.train --action-normalizer)")
    args = parser.parse_args(argv)
    prog = parser.prog
    start = time.perf_counter()
    try:
        config = ClassifierConfig(
            folds=args.folds, steps=args.steps, eval_every=args.eval_every, patience=args.patience,
            batch_size=args.batch_size, eps=args.eps, draws=args.draws, with_agent_pos=args.with_agent_pos,
            device=args.device, seed=args.seed, action_normalizer=args.action_normalizer,
        )  # fmt: skip
        result = annotate(args.clean, args.corrupt, config, name=args.name, overwrite=args.overwrite)
    except ValidationError as error:
        print(f"{prog}: error: {flag_message(error, parser.flags())}", file=sys.stderr)
        return 2
    except (StoreError, DataError, ValueError) as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    steps = config.num_train_timesteps
    for path, values in result.sigma_min.items():
        print(f"\n{Path(path)}: annotation set {args.name!r}, sigma_min of {len(values)} steps, mean {values.mean():.3f}, "
              f"mean t_min {mean_t_min(values, steps):.1f} of {steps} DDPM steps")  # fmt: skip
        print(text_histogram(values))
    best = ", ".join(str(report.log.best_step) for report in result.folds)
    print(f"\nheld-out accuracy over {len(result.folds)} folds (best steps {best}):")
    print(accuracy_text(result.accuracy))
    print(f"\nwall time {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

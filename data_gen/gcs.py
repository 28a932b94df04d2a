"""`python -m data_gen.gcs --n 8000`: mass-produce demonstrations with the GCS planner.

Each attempt i draws a start pose from the task sampler (a stream seeded by (seed, i), apart from the
evaluation starts), plans with the GCS planner, replays the plan in a domain (kinematic by default, as
published) and appends the episode to a zarr episode store. Worker processes plan and render; the
parent alone writes, in attempt order, so a re-run of the same command after Ctrl-C or kill -9 resumes
after the last committed episode with no loss and no duplicates.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from tqdm import tqdm

from data_gen.backends import BackendError, add_backend_arguments, available_cores, check_backend, check_backend_arguments, ordered_map
from data_gen.cli import ArgumentParser, stops_on_sigterm
from data_gen.corruption import Corruption, command_offsets
from data_gen.episode_store import EpisodeMeta, EpisodeStore, StoreError
from data_gen.planner import PlannerConfig, PlanningError, plan_push
from data_gen.replay import kinematic_episode, physics_episode
from pushing_sim.domains import DomainConfig, DomainError, load_domain
from pushing_sim.task import TaskConfig, sample_initial_pose

# Generation draws its start poses from a stream of its own, so they never coincide with the
# evaluation starts of `task.evaluation_initial_poses` (seeded by (seed, i)).
START_POSE_STREAM = 1


class GenerationConfig(BaseModel):
    """What a generation run does; everything but `n` identifies the run for resuming."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n: int = Field(gt=0, description="episodes to have in the store from this run")
    seed: int = Field(0, ge=0, description="seeds the start poses (and planner); numpy needs it >= 0")
    domain: DomainConfig
    replay: Literal["kinematic", "physics"] = "kinematic"
    replan_every: int | None = Field(None, gt=0, description="physics replay: re-plan every K steps")
    keep: Literal["all", "successful"] = "all"
    planner: PlannerConfig = PlannerConfig()
    task: TaskConfig = TaskConfig()
    max_attempts_factor: float = Field(2.0, ge=1.0, description="give up after this many attempts per episode")
    # A controlled corruption executed with the commands (jitter, bias; data_gen.corruption): physics replay only.
    corruption: Corruption | None = None

    @model_validator(mode="after")
    def _executed_corruption(self) -> GenerationConfig:
        if self.corruption is not None and (not self.corruption.executed or self.replay != "physics"):
            raise ValueError("a corruption in generation must be executed (jitter, bias) with physics replay; "
                             "label noise is applied to a finished store (data_gen.corruption.write_label_noise)")
        return self

    def run_identity(self) -> dict:
        """The store's record of the run: a resume with anything else different is refused."""
        identity = {
            "generator": "gcs",
            "seed": self.seed,
            "domain": self.domain.name,
            "replay": self.replay,
            "replan_every": self.replan_every,
            "keep": self.keep,
        }
        if self.corruption is not None:  # absent otherwise, so stores made before corruptions existed still resume
            identity["corruption"] = self.corruption.model_dump(mode="json")
        return identity


def start_pose(task: TaskConfig, seed: int, attempt: int) -> np.ndarray:
    """The start pose of attempt `attempt`: depends only on (seed, attempt)."""
    return sample_initial_pose(task, np.random.default_rng([seed, attempt, START_POSE_STREAM]))


@dataclass
class AttemptResult:
    attempt: int
    start_pose: np.ndarray
    episode: dict[str, np.ndarray] | None
    success: bool
    planning_time: float
    plan_cost: float
    failure: str | None = None


class Attempter:
    """Plans and replays attempts; one per worker process, with its simulation built once."""

    def __init__(self, config: GenerationConfig):
        from pushing_sim.simulation import PushingSim  # Drake loads in the workers only

        self.config = config
        self.sim = PushingSim(config.domain, config.task, viewer_size=None)
        self.hz = config.task.control_hz

    def plan_targets(self, slider_pose: np.ndarray, pusher_xy: np.ndarray) -> np.ndarray:
        """Re-plan from a measured state (the closed-loop expert)."""
        return plan_push(slider_pose, self.config.task, self.config.planner, pusher_xy=pusher_xy).pusher_targets(self.hz)

    def __call__(self, attempt: int) -> AttemptResult:
        config = self.config
        pose = start_pose(config.task, config.seed, attempt)
        started = time.perf_counter()
        try:
            plan = plan_push(pose, config.task, config.planner)
        except PlanningError as error:
            return AttemptResult(attempt, pose, None, False, time.perf_counter() - started, np.nan, str(error))
        planning_time = time.perf_counter() - started
        sampled = plan.resample(self.hz)
        if config.replay == "kinematic":
            episode = kinematic_episode(self.sim, sampled.slider_poses, sampled.pusher_xy)
            success = True  # by construction: the planner's model ends within tolerance
        else:
            offsets = None
            if config.corruption is not None:
                offsets = command_offsets(config.corruption, attempt, config.task.max_episode_steps, self.hz)
            episode, success = physics_episode(
                self.sim, pose, sampled.pusher_xy, self.plan_targets, config.replan_every, command_offsets=offsets
            )
        if config.keep == "successful" and not success:
            return AttemptResult(attempt, pose, None, False, planning_time, plan.cost, "physics replay missed the goal")
        return AttemptResult(attempt, pose, episode, success, planning_time, plan.cost)


_ATTEMPTER: Attempter | None = None


def _quiet_drake() -> None:
    """Drake logs every GCS solve at INFO; keep the progress bar readable."""
    logging.getLogger("drake").setLevel(logging.WARNING)


def _init_worker(config_json: str) -> None:
    global _ATTEMPTER
    if multiprocessing.parent_process() is not None:  # a pool worker: Ctrl-C is the parent's to handle
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.setdefault("LP_NUM_THREADS", "1")
    _quiet_drake()
    _ATTEMPTER = Attempter(GenerationConfig.model_validate_json(config_json))


def _run_in_worker(attempt: int) -> AttemptResult:
    return _ATTEMPTER(attempt)


@dataclass
class Summary:
    stored: int
    added: int
    attempts: int
    failures: Counter
    planning_times: list[float]
    frames: int
    wall_time: float
    bytes_per_frame: float
    task_successes: int = 0  # episodes added that met the task's success check
    interrupted: bool = False


def _open_store(path: Path, config: GenerationConfig, append: bool, overwrite: bool) -> EpisodeStore:
    size = config.domain.render.image_size
    try:
        return EpisodeStore.open_for_writing(
            path, cameras={name: (size, size) for name in config.domain.render.cameras},
            domain_config=config.domain.model_dump(mode="json"), run=config.run_identity(),
            check_run=not append, overwrite=overwrite,
        )
    except StoreError as error:
        if "different run" not in str(error):
            raise
        raise StoreError(f"{error}; pass --append to add to it or --overwrite to replace it") from None


def _done_attempts(store: EpisodeStore, config: GenerationConfig) -> tuple[int, int]:
    """Episodes this run already committed, and the next attempt index (one read per column)."""
    if store.n_episodes == 0:
        return 0, 0
    mine = (store.meta_column("seed") == config.seed) & (store.meta_column("domain") == config.domain.name)
    attempts = [json.loads(extra).get("attempt", -1) for extra in store.meta_column("extra")[mine]]
    return len(attempts), (max(attempts) + 1 if attempts else 0)


def generate(config: GenerationConfig, out: Path, workers: int = 1, append: bool = False,
             overwrite: bool = False, progress: bool = True, backend: str = "local", address: str | None = None) -> Summary:
    """Fill `out` with `config.n` episodes from this run (resuming a previous one); see the module doc.

    backend "local" (a process pool of ``workers``, or this process for one) or "ray" (``workers``
    actors, on the cluster at ``address`` or a local Ray instance): the same episodes either way.
    """
    check_backend(backend)
    started = time.perf_counter()
    store = _open_store(out, config, append, overwrite)
    summary = Summary(0, 0, 0, Counter(), [], 0, 0.0, float("nan"))
    results, bar = None, None
    try:
        done, next_attempt = _done_attempts(store, config)
        max_attempt = next_attempt + int(np.ceil((config.n - done) * config.max_attempts_factor)) + 2
        attempts = range(next_attempt, max_attempt)
        if done < config.n:  # else a finished run resumed: nothing to add, and no worker started for it
            results = ordered_map(_init_worker, (config.model_dump_json(),), _run_in_worker, attempts, workers, backend, address)
        stored = done
        bar = tqdm(total=config.n, initial=done, unit="demo", desc="demos", disable=not progress or done >= config.n)
        for result in results if results is not None else ():
            if stored >= config.n:
                break
            summary.attempts += 1
            if not np.isnan(result.planning_time):
                summary.planning_times.append(result.planning_time)
            if result.episode is None:
                summary.failures[result.failure.split(":")[0][:80]] += 1
            else:
                meta = EpisodeMeta(
                    source="expert" if config.replan_every else "gcs",
                    domain=config.domain.name,
                    seed=config.seed,
                    initial_pose=tuple(float(v) for v in result.start_pose),
                    success=result.success,
                    planning_time=result.planning_time,
                    plan_cost=result.plan_cost,
                    extra={"attempt": result.attempt, "replay": config.replay}
                    | ({"corruption": config.corruption.kind} if config.corruption else {}),
                )
                store.append_episode(result.episode, meta)
                stored += 1
                summary.added += 1
                summary.task_successes += int(result.success)
                summary.frames += len(result.episode["action"])
                bar.update(1)
            bar.set_postfix(ok=summary.added, failed=sum(summary.failures.values()), refresh=False)
            if stored >= config.n:
                break
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        if bar is not None:
            bar.close()  # ends the bar's line, so an error message starts on its own
        if results is not None:
            results.close()  # stops the workers (pool terminated, Ray actors killed)
        summary.stored = store.n_episodes
        cameras = len(store.cameras)
        summary.bytes_per_frame = store.disk_bytes() / max(1, store.n_steps * cameras)
        store.close()
    summary.wall_time = time.perf_counter() - started
    return summary


def _print_summary(summary: Summary, out: Path, wanted: int) -> None:
    """What the run added; a finished run resumed says so in one line, with no rates of nothing (nan, 0.0 per minute)."""
    if summary.attempts == 0 and not summary.interrupted:
        in_all = f" ({summary.stored} in all)" if summary.stored != wanted else ""
        print(f"nothing to add: {wanted}/{wanted} episodes of this run already in {out}{in_all}")
        return
    failed = sum(summary.failures.values())
    minutes = summary.wall_time / 60
    print(f"{'interrupted' if summary.interrupted else 'done'}: {summary.added} episodes added, "
          f"{summary.stored} in {out}")
    print(f"  plans tried {summary.attempts}, succeeded {summary.attempts - failed}, failed {failed}; "
          f"episodes meeting the success check {summary.task_successes} of {summary.added}")
    for reason, count in summary.failures.most_common(3):
        print(f"    {count} x {reason}")
    if summary.planning_times:
        times = np.array(summary.planning_times)
        print(f"  planning time per plan: median {np.median(times):.2f} s, p90 {np.percentile(times, 90):.2f} s")
    print(f"  frames {summary.frames}, {summary.bytes_per_frame / 1e3:.2f} KB per camera frame on disk")
    rate = f", {summary.added / max(minutes, 1e-9):.1f} demos per minute" if summary.attempts else ""
    print(f"  wall time {summary.wall_time:.1f} s{rate}")
    if summary.interrupted:
        print("  re-run the same command to resume")


@stops_on_sigterm
def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m data_gen.gcs", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, required=True, help="episodes wanted from this run")
    parser.add_argument("--out", type=Path, default=Path("data/sim.zarr"))
    parser.add_argument("--domain", default="sim", help="target, sim, or a domain YAML file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a domain field, e.g. physics.com_offset_y=-0.05 (repeatable)")
    parser.add_argument("--replay", choices=["kinematic", "physics"], default="kinematic")
    parser.add_argument("--replan-every", type=int, default=None, metavar="K")
    parser.add_argument("--keep", choices=["all", "successful"], default="all")
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--workers", type=int, default=available_cores(), help="processes (default and most: the cores available)")
    parser.add_argument("--seed", type=int, default=0)
    add_backend_arguments(parser)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--append", action="store_true", help="add to a store made by another run")
    mode.add_argument("--overwrite", action="store_true", help="replace an existing store")
    args = parser.parse_args(argv)

    def fail(message: str) -> int:
        print(f"error: {message}", file=sys.stderr)
        return 2

    if args.n <= 0:
        return fail(f"--n must be positive, got {args.n}")
    if args.workers <= 0:
        return fail(f"--workers must be positive, got {args.workers}")
    if args.seed < 0:
        return fail(f"--seed must be >= 0, got {args.seed}")
    if args.image_size is not None and args.image_size <= 0:
        return fail(f"--image-size must be positive, got {args.image_size}")
    if args.replan_every is not None and (args.replan_every <= 0 or args.replay != "physics"):
        return fail("--replan-every needs a positive K and --replay physics")
    if args.out.exists() and not args.out.is_dir():
        return fail(f"{args.out} exists and is not a directory")
    try:
        check_backend_arguments(args.backend, args.address)
    except BackendError as error:
        return fail(str(error))
    try:
        overrides = args.overrides + ([f"render.image_size={args.image_size}"] if args.image_size is not None else [])
        domain = load_domain(args.domain, overrides)
        config = GenerationConfig(n=args.n, seed=args.seed, domain=domain, replay=args.replay,
                                  replan_every=args.replan_every, keep=args.keep)
        summary = generate(config, args.out, args.workers, args.append, args.overwrite, backend=args.backend, address=args.address)
    except (DomainError, StoreError, BackendError) as error:
        return fail(str(error))
    except OSError as error:
        return fail(f"{args.out}: {error.strerror or error}")
    _print_summary(summary, args.out, config.n)
    config_path = args.out.parent / f"{args.out.stem}.generation.json"
    config_path.write_text(config.model_dump_json(indent=2))
    print(f"  config saved to {config_path}")
    return 130 if summary.interrupted else 0


if __name__ == "__main__":
    sys.exit(main())

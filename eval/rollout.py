"""`python -m eval.rollout --ckpt ckpt.pt --trials 200`: closed-loop success over randomized trials.

Trial i starts from the task's i-th evaluation pose for the seed, and the agent is seeded from the
trial index, so the same command on the same machine gives the same per-trial outcomes whatever the
number of workers and of envs per worker. Each worker process steps ``--envs-per-worker`` envs in
lockstep (with the observations the checkpoint was trained on: images or the state vector) and one
policy model serves them all: the envs whose action queues ran out get their chunks from one batched
call, sampled in float64 (``--precision``) so that a trial's chunk does not depend on what else is in
the batch. A worker takes trials in groups and starts the next trial of its group in an env as soon
as that env's trial ends. The parent shows the running success rate, then writes `results.json` (and
videos of the first K trials) and prints a summary.

Each finished trial is appended to `trials.jsonl` in the output directory at once, under a header
naming the evaluation (policy, checkpoint contents, domain, seed, step limit). Run the same command
again after Ctrl-C or kill -9 and only the missing trials run; an evaluation of anything else in the
same directory starts afresh.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import signal
import sys
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from data_gen.backends import (BackendError, add_backend_arguments, available_cores, cap_workers, check_backend,
                               check_backend_arguments, ordered_map, worker_start_error)
from data_gen.cli import ArgumentParser, no_empty_dirs_on_failure, stops_on_sigterm
from eval.metrics import aggregate

TRIAL_SEED_STREAM = 2  # agents' randomness: a stream apart from the start poses and data generation
GROUP_ROUNDS = 4  # a worker with K envs takes up to 4K trials at a time: few envs idle at a group's end
VIDEO_BYTES = "_video_bytes"  # a worker's encoded video, written to disk by the driver


@dataclass(frozen=True)
class RolloutSpec:
    """Everything a worker needs to run trials."""

    policy: str
    ckpt: str | None
    domain: str
    domain_overrides: tuple[str, ...]
    seed: int
    videos: int
    video_dir: str | None
    device: str
    max_steps: int | None
    envs: int = 1  # envs per worker, stepped in lockstep; the per-trial results do not depend on it
    precision: str = "float64"  # the policy's sampling: float64 rounds alike in practice in any batch; float32 is faster
    # Torch threads in each process that runs a policy; None: the cores / the workers (at least 1). A
    # process beside other work (a training run) takes 1: two processes' threads on the same cores thrash.
    threads: int | None = None


class _Trial:
    """One trial in progress in one env: its counters, and its frames if it is recorded."""

    def __init__(self, runner: TrialRunner, slot: int, job: tuple[int, list[float]]):
        self.index, self.start_pose = job
        self.env, self.agent = runner.envs[slot], runner.agents[slot]
        spec = runner.spec
        seed = int(np.random.SeedSequence([spec.seed, self.index, TRIAL_SEED_STREAM]).generate_state(1)[0])
        _seed_everything(seed)
        self.agent.reset(seed)
        self.obs, self.info = self.env.reset(seed=seed, options={"slider_pose": self.start_pose})
        self.record = self.index < spec.videos
        self.frames = [self.env.render()] if self.record else []
        self.max_coverage, self.time_to_success, self.steps = self.info["coverage"], None, 0
        self.rewards: list[float] = []
        self.limit = spec.max_steps or runner.task.max_episode_steps
        self.control_hz = runner.task.control_hz
        self.wall_time = 0.0

    def step(self, action) -> bool:
        """Apply one action; True when the trial is over (success, the env's truncation or the step limit)."""
        started = time.perf_counter()
        self.obs, reward, terminated, truncated, self.info = self.env.step(action)
        self.rewards.append(float(reward))
        self.steps += 1
        self.max_coverage = max(self.max_coverage, self.info["coverage"])
        if self.record:
            self.frames.append(self.env.render())
        if terminated:
            self.time_to_success = self.steps / self.control_hz
        self.wall_time += time.perf_counter() - started
        return terminated or truncated or self.steps >= self.limit

    def result(self, video_dir: str | None) -> dict:
        video, video_bytes = None, None
        if self.record:  # encoded here, written by the driver (a Ray worker may run on another machine)
            video = str(Path(video_dir) / f"trial_{self.index:03d}.mp4")
            import imageio.v3 as iio

            video_bytes = iio.imwrite("<bytes>", np.stack(self.frames), extension=".mp4", fps=int(self.control_hz))
        return {
            "index": self.index,
            "initial_pose": [float(v) for v in self.start_pose],
            "success": bool(self.info["is_success"]),
            "time_to_success": self.time_to_success,
            "steps": self.steps,
            "final_position_error": float(self.info["goal_pos_error"]),
            "final_angle_error_deg": float(np.degrees(self.info["goal_angle_error"])),
            "max_coverage": float(self.max_coverage),
            "sum_reward": float(sum(self.rewards)),
            "max_reward": max(self.rewards, default=0.0),
            # With several envs: this trial's env steps plus its share of the batched policy calls.
            "wall_time": self.wall_time,
            "video": video,
            VIDEO_BYTES: video_bytes,
        }


class TrialRunner:
    """``spec.envs`` envs and their agents, built once per worker; one policy model serves them all."""

    def __init__(self, spec: RolloutSpec):
        from eval.agents import make_env, make_env_and_agent

        self.spec = spec
        env_kwargs = {"domain": spec.domain, "domain_overrides": list(spec.domain_overrides),
                      "render_mode": "rgb_array" if spec.videos > 0 else None}  # fmt: skip
        env, agent = make_env_and_agent(spec.policy, env_kwargs, Path(spec.ckpt) if spec.ckpt else None, spec.device, spec.precision)
        self.envs, self.agents = [env], [agent]
        for _ in range(spec.envs - 1):
            self.agents.append(agent.sibling())
            self.envs.append(make_env(self.agents[-1], env_kwargs))
        self.task = env.unwrapped.task
        # After Drake has loaded (its import sets the level): the GCS expert would log every solve.
        logging.getLogger("drake").setLevel(logging.WARNING)

    @property
    def env(self):
        return self.envs[0]

    @property
    def agent(self):
        return self.agents[0]

    def __call__(self, job: tuple[int, list[float]]) -> dict:
        """One trial, in the first env."""
        return self.run_group([job])[0]

    def run_group(self, jobs: list[tuple[int, list[float]]], on_result=None) -> list[dict]:
        """Run trials in the envs in lockstep, each env taking the group's next trial when its own ends;
        the results in the jobs' order. on_result: called with each result as its trial ends."""
        pending, running, results = deque(jobs), [None] * len(self.envs), {}
        while pending or any(running):
            for slot, trial in enumerate(running):
                if trial is None and pending:
                    running[slot] = _Trial(self, slot, pending.popleft())
            active = [(slot, trial) for slot, trial in enumerate(running) if trial is not None]
            started = time.perf_counter()
            actions = self._act([trial for _, trial in active])
            share = (time.perf_counter() - started) / len(active)
            for (slot, trial), action in zip(active, actions, strict=True):
                trial.wall_time += share
                if trial.step(action):
                    results[trial.index] = trial.result(self.spec.video_dir)
                    running[slot] = None
                    if on_result is not None:
                        on_result(results[trial.index])
        return [results[index] for index, _ in jobs]

    def _act(self, trials: list[_Trial]) -> list:
        """Each trial's next action; a checkpoint's chunks come from one batched call."""
        from eval.agents import CheckpointAgent

        if all(isinstance(trial.agent, CheckpointAgent) for trial in trials):
            from policies.policy import act_batch

            return act_batch([trial.agent.policy for trial in trials], [trial.obs for trial in trials])
        return [trial.agent.act(trial.obs, trial.info) for trial in trials]


def _seed_everything(seed: int) -> None:
    np.random.seed(seed % 2**32)
    try:
        import torch
    except ImportError:
        return
    torch.manual_seed(seed)


_RUNNER: TrialRunner | None = None


def start_runner(spec: RolloutSpec) -> TrialRunner:
    """A TrialRunner built in this process; one that cannot be built is a one-line WorkerStartError, as in a worker.

    AgentError (a checkpoint that does not fit the env) keeps its own message.
    """
    from eval.agents import AgentError

    try:
        return TrialRunner(spec)
    except AgentError:
        raise
    except Exception as error:  # noqa: BLE001 - a domain whose scene Drake cannot build, say
        raise worker_start_error(error) from error


def _init_worker(spec: RolloutSpec) -> None:
    global _RUNNER
    if multiprocessing.parent_process() is not None:  # a pool worker: Ctrl-C is the parent's to handle
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.setdefault("LP_NUM_THREADS", "1")
    try:
        import torch

        torch.set_num_threads(spec.threads or 1)
    except ImportError:
        pass
    _RUNNER = TrialRunner(spec)


def _run_group(jobs):
    return _RUNNER.run_group(jobs)


def group_size(envs: int, trials: int, workers: int) -> int:
    """Trials per task: 1 for one env; else envs x up to GROUP_ROUNDS, fewer if that would leave a worker
    without two groups."""
    if envs == 1:
        return 1  # nothing to share: each trial is saved as soon as it ends
    rounds = max(1, min(GROUP_ROUNDS, trials // (2 * envs * workers)))
    return envs * rounds


def policy_threads(spec: RolloutSpec, workers: int, backend: str = "local") -> int:
    """The torch threads of each process that runs trials: spec.threads, else this machine's cores shared
    among the workers (a Ray actor: 1, its cluster's cores are not known here)."""
    if spec.threads is not None:
        return spec.threads
    return 1 if backend == "ray" else max(1, available_cores() // workers)


@contextmanager
def torch_threads(threads: int):
    """torch's intra-op threads set to ``threads`` for the block, then set back (no-op without torch)."""
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_trials(spec: RolloutSpec, trials: int, workers: int = 1, progress: bool = True,
               runner: TrialRunner | None = None, done: dict[int, dict] | None = None,
               on_result=None, backend: str = "local", address: str | None = None) -> list[dict]:
    """Run trials 0 .. trials-1 (in index order) and return their per-trial results.

    backend "local" (``workers`` processes, or this one) or "ray" (``workers`` Ray actors on the
    cluster at ``address``, else a local instance): the same per-trial results either way.

    runner: an already built runner for `spec`, used when the trials run in this process.
    done: results already at hand by index (a resumed evaluation): those trials are not run again.
    on_result: called with each new result as it arrives (to save it at once).
    """
    from pushing_sim.task import TaskConfig, evaluation_initial_poses

    done = dict(done or {})
    poses = evaluation_initial_poses(TaskConfig(), trials, spec.seed)
    jobs = [(i, poses[i].tolist()) for i in range(trials) if i not in done]
    results: list[dict] = [done[i] for i in sorted(done) if i < trials]
    bar = tqdm(total=trials, initial=len(results), unit="trial", desc="trials", disable=not progress or not jobs)

    def collect(result: dict) -> None:
        video_bytes = result.pop(VIDEO_BYTES, None)
        if video_bytes is not None:
            Path(result["video"]).write_bytes(video_bytes)
        results.append(result)
        if on_result is not None:
            on_result(result)
        _update(bar, results)

    spec = replace(spec, threads=policy_threads(spec, workers, backend))
    size = group_size(spec.envs, len(jobs), workers)
    groups = [jobs[i : i + size] for i in range(0, len(jobs), size)]
    try:
        if groups and (workers > 1 or backend == "ray"):
            results_in_order = ordered_map(_init_worker, (spec,), _run_group, groups, workers, backend, address)
            try:
                for group in results_in_order:
                    for result in group:
                        collect(result)
            finally:
                results_in_order.close()  # stops the workers at once on Ctrl-C
        elif jobs:  # in this process: one group, each result saved as its trial ends
            with torch_threads(spec.threads):
                runner = runner or start_runner(spec)
                runner.run_group(jobs, on_result=collect)
    finally:
        bar.close()  # on Ctrl-C too: the caller's message starts on its own line, after the bar's last
    return sorted(results, key=lambda r: r["index"])


TRIALS_NAME = "trials.jsonl"


def evaluation_identity(spec: RolloutSpec) -> dict:
    """What makes two evaluations the same trials: the policy (by checkpoint contents), domain, seed, limit."""
    identity = {"policy": spec.policy, "domain": spec.domain, "domain_overrides": list(spec.domain_overrides),
                "seed": spec.seed, "max_steps": spec.max_steps}  # fmt: skip
    if spec.policy == "ckpt":  # its sampling precision changes its actions; the number of envs does not
        identity["precision"] = spec.precision
    if spec.ckpt is not None:
        from policies.export import file_sha256

        identity["checkpoint_sha256"] = file_sha256(*policy_files(Path(spec.ckpt)))
    return identity


def policy_files(ckpt: Path) -> list[Path]:
    """The files that hold the policy ``--ckpt`` names: a checkpoint file, a run directory's checkpoint,
    or an export directory's config and weights (``python -m policies.export``)."""
    from policies.checkpoint import checkpoint_path
    from policies.export import META_NAME, WEIGHTS_NAME, is_export

    if is_export(ckpt):
        return [ckpt / META_NAME, ckpt / WEIGHTS_NAME]
    return [checkpoint_path(ckpt)]


def default_out(policy: str, ckpt: Path | None) -> Path:
    """Where an evaluation goes without --out: beside a checkpoint file, inside a run directory,
    ``eval_runs/NAME`` for an export (a shipped policy's directory stays as shipped)."""
    from policies.export import is_export

    if policy != "ckpt":
        return Path("eval_runs") / policy
    if is_export(ckpt):
        return Path("eval_runs") / ckpt.resolve().name
    return (ckpt if ckpt.is_dir() else ckpt.parent) / "eval"


def load_finished_trials(path: Path, identity: dict) -> dict[int, dict]:
    """Trials already saved in ``path`` for the same evaluation (none if it is another's or absent)."""
    if not path.is_file():
        return {}
    lines = path.read_text().splitlines()
    try:
        header = json.loads(lines[0]).get("evaluation") if lines else None
    except json.JSONDecodeError:
        return {}
    if isinstance(header, dict) and header.get("policy") == "ckpt":
        header.setdefault("precision", "float32")  # written before --precision existed: float32 was the only sampler
    if header != identity:
        return {}
    done = {}
    for line in lines[1:]:
        try:
            result = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by kill -9: that trial runs again
            continue
        done[int(result["index"])] = result
    return done


def evaluate(spec: RolloutSpec, trials: int, out: Path, workers: int = 1, progress: bool = True,
             command: str | None = None, on_result=None, domain_config: dict | None = None,
             backend: str = "local", address: str | None = None, on_resumed=None) -> dict:
    """Run (or resume) an evaluation into ``out`` and write ``out/results.json``; returns the report.

    on_result: called with each newly finished trial's result, after it is saved.
    on_resumed: called once, before any new trial, with the finished trials resumed from ``out``
    (so that a caller's progress starts where the evaluation stands).
    domain_config: the domain's full settings to record (default: its name).
    Raises AgentError for an agent that cannot run here (before any trial), WorkerStartError (a
    BackendError, one line) for a runner that cannot be built here or in a worker, KeyboardInterrupt
    with the finished trials kept in ``out/trials.jsonl``.
    """
    identity = evaluation_identity(spec)
    trials_path = out / TRIALS_NAME
    done = {i: r for i, r in load_finished_trials(trials_path, identity).items() if i < trials}
    if on_resumed is not None and done:
        on_resumed([done[i] for i in sorted(done)])
    started = time.perf_counter()
    # Built first: a checkpoint that does not fit the env fails before anything is written (an earlier
    # evaluation's trials in ``out`` included) or any worker starts, and one worker reuses it.
    check_backend(backend)
    local = workers == 1 and backend == "local"  # the runner built here runs the trials; else it only checks
    runner = start_runner(spec if local else replace(spec, envs=1)) if len(done) < trials and (spec.policy == "ckpt" or local) else None
    out.mkdir(parents=True, exist_ok=True)
    if not done:
        trials_path.write_text(json.dumps({"evaluation": identity}) + "\n")
    with open(trials_path, "a") as log:

        def save(result: dict) -> None:
            log.write(json.dumps(result) + "\n")
            log.flush()
            if on_result is not None:
                on_result(result)

        results = run_trials(spec, trials, workers, progress, runner=runner if local else None, done=done, on_result=save,
                             backend=backend, address=address)
    new = [r for r in results if r["index"] not in done]
    # wall_time: this call's; trial_seconds: all trials' own times, resumed ones included.
    wall_time = time.perf_counter() - started
    summary = {**aggregate(results), "wall_time": wall_time, "eval_s": wall_time,  # eval_s: LeRobot's name
               "trial_seconds": float(sum(r["wall_time"] for r in results))}  # fmt: skip
    report = {
        "command": command,
        "config": {"policy": spec.policy, "ckpt": spec.ckpt, "domain": domain_config or spec.domain, "domain_overrides": list(spec.domain_overrides),
                   "seed": spec.seed, "trials": trials, "workers": workers, "envs_per_worker": spec.envs,
                   "precision": spec.precision, "max_steps": spec.max_steps},
        "evaluation": identity,
        "resumed_trials": len(results) - len(new),
        **summary,
        "per_trial": results,
    }
    (out / "results.json").write_text(json.dumps(report, indent=2))
    return report


def _update(bar, results) -> None:
    successes = sum(r["success"] for r in results)
    bar.set_postfix(success=f"{successes}/{len(results)} ({100 * successes / len(results):.1f}%)", refresh=False)
    bar.update(1)


def _print_summary(summary: dict, out: Path) -> None:
    lo, hi = summary["ci95"]
    print(f"{'trials':>8} {'success':>8} {'rate':>7} {'95% CI':>15} {'pos err mm':>10} {'angle deg':>9} {'coverage':>8}")
    print(f"{summary['trials']:8d} {summary['successes']:8d} {100 * summary['success_rate']:6.1f}% "
          f"[{100 * lo:5.1f}, {100 * hi:5.1f}] {1e3 * summary['mean_final_position_error']:10.1f} "
          f"{summary['mean_final_angle_error_deg']:9.2f} {summary['mean_max_coverage']:8.3f}")
    if summary.get("resumed_trials") == summary["trials"]:
        print(f"nothing to add: {summary['trials']}/{summary['trials']} trials already in {out / TRIALS_NAME}; results in {out / 'results.json'}")
    else:
        print(f"wall time {summary['wall_time']:.1f} s; results in {out / 'results.json'}")


@stops_on_sigterm
def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m eval.rollout", description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, help="a trained policy: a checkpoint (runs/NAME/ckpt.pt), its run directory, or an exported policy's directory")
    parser.add_argument("--policy", choices=["ckpt", "gcs", "random"], default=None,
                        help="what to run (default: ckpt when --ckpt is given)")
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--domain", default="target")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--workers", type=int, default=available_cores(), help="processes (default and most: the cores available)")
    parser.add_argument("--envs-per-worker", type=int, default=1,
                        help="envs each worker steps in lockstep, one batched policy call for all (the results do not change)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per process (default: the cores / --workers); 1 beside a training run, whose core it would otherwise contend for")
    parser.add_argument("--precision", choices=["float64", "float32"], default="float64",
                        help="policy sampling: float64 gives the same chunk in any batch; float32 is faster, its results depend on the batching")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--videos", type=int, default=4, help="record the first K trials")
    parser.add_argument("--out", type=Path, default=None, help="default: next to the checkpoint, or eval_runs/POLICY")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-steps", type=int, default=None, help="cut trials short (default: the task's 750)")
    add_backend_arguments(parser)
    args = parser.parse_args(argv)

    def fail(message: str) -> int:
        print(f"error: {message}", file=sys.stderr)
        return 2

    policy = args.policy or ("ckpt" if args.ckpt else None)
    if policy is None:
        return fail("give --ckpt PATH, or --policy gcs|random")
    if policy == "ckpt":
        if args.ckpt is None:
            return fail("--policy ckpt needs --ckpt PATH")
        if not all(path.is_file() for path in policy_files(args.ckpt)):
            what = "a run directory without ckpt.pt, nor an exported policy" if args.ckpt.is_dir() else "does not exist"
            return fail(f"checkpoint {args.ckpt}: {what}")
    for flag, value, least in (("--trials", args.trials, 1), ("--workers", args.workers, 1),
                               ("--envs-per-worker", args.envs_per_worker, 1), ("--videos", args.videos, 0),
                               ("--threads", args.threads if args.threads is not None else 1, 1)):
        if value < least:
            return fail(f"{flag} must be at least {least}, got {value}")
    if args.seed < 0:
        return fail(f"--seed must be >= 0, got {args.seed}")
    if args.precision == "float32" and args.envs_per_worker > 1:
        return fail("--precision float32 with --envs-per-worker > 1 would make the per-trial results depend on the batching; use float64")
    if args.max_steps is not None and args.max_steps < 1:
        return fail(f"--max-steps must be >= 1, got {args.max_steps}")
    try:
        check_backend_arguments(args.backend, args.address)
    except BackendError as error:
        return fail(str(error))
    from policies.model import resolve_device

    try:
        resolve_device(args.device)
    except ValueError as error:
        return fail(f"--device: {error}")
    out = args.out or default_out(policy, args.ckpt)
    video_dir = out / "videos"

    from eval.agents import AgentError, CheckpointAgent
    from pushing_sim.domains import DomainError, load_domain

    try:  # everything that can be checked before anything is created
        domain = load_domain(args.domain, args.overrides)
        if policy == "ckpt":
            CheckpointAgent(args.ckpt, args.device, args.precision)
    except (DomainError, AgentError) as error:
        return fail(str(error))
    workers = cap_workers(args.workers, args.backend, args.address)  # after the checks: a refusal stays one line
    spec = RolloutSpec(policy, str(args.ckpt) if args.ckpt else None, args.domain, tuple(args.overrides), args.seed,
                       min(args.videos, args.trials), str(video_dir), args.device, args.max_steps, args.envs_per_worker,
                       args.precision, args.threads)
    command = " ".join([Path(sys.executable).name, "-m", "eval.rollout", *(argv if argv is not None else sys.argv[1:])])
    try:
        with no_empty_dirs_on_failure(video_dir):  # an evaluation refused before its first trial leaves no directory
            video_dir.mkdir(parents=True, exist_ok=True)
            report = evaluate(spec, args.trials, out, workers, command=command, domain_config=domain.model_dump(mode="json"),
                              backend=args.backend, address=args.address)
    except (AgentError, BackendError) as error:
        return fail(str(error))
    except OSError as error:  # a file where a directory belongs, a read-only place
        return fail(f"cannot write {error.filename or out}: {error.strerror or error}")
    except KeyboardInterrupt:
        print(f"interrupted: finished trials kept in {out / TRIALS_NAME}; run the same command to resume", file=sys.stderr)
        return 130
    _print_summary(report, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

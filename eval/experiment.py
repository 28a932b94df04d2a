"""The sim-and-sim experiment in one command: ``python -m eval.experiment CONFIG.yaml``.

    python -m eval.experiment experiments/cpu.yaml [--out DIR] [--arms NAME,...] [--stage STAGE]

Stages, in order: ``data`` (the clean store and the corrupt pools' stores, generated, given or with a
controlled corruption; ``eval.experiment_data``) -> ``sigma_min`` (the cross-fitted classifier's
per-sample sigma_min, written as an annotation set of a corrupt store; only when an arm asks for it)
-> ``train`` (every arm the same model and optimiser steps) -> ``eval`` (every arm on the same start
poses; with ``evaluation.heldout_seed`` on the tuning and the held-out starts; ``eval.experiment_eval``) -> ``report``
(``results.json/.md/.png``; under a ``protocol``, ``eval.protocol``'s). With a protocol, the primary
arms chosen on the tuning starts (``eval.experiment_protocol``) are trained again under its replicate seeds. It is a thin
sequence over the package's own functions: ``data_gen.gcs.generate``, ``policies.classify.annotate``,
``policies.train.train`` and ``eval.rollout.evaluate``, each of which resumes by itself.

``DIR/ledger.json`` records, per stage and arm, the config section its outputs were made with and
whether it finished. A finished stage with the same section is skipped; an unfinished one resumes
(after Ctrl-C or kill -9, run the same command again); a changed section is refused with a one-line
error naming what changed, so stale outputs are never reused. Arms with ``sigma_min: best`` are
trained after the dataset-level sigma_min sweep has been evaluated; a classifier arm that would
otherwise train alone waits to train beside them.

Arms are trained ``training.parallel`` at a time and each batch is evaluated as soon as it is
trained, so whole arms finish early. A run directory can be carried to another machine without its
data, checkpoints and videos (``python -m eval.carry``: the ledger, configs, metrics and trials are a
few MB): the data are generated again, or carried without their images (``--states``), and must
match the digest recorded in the ledger; the classifier runs again if an arm still needs it and its
annotation set was not carried, and an arm whose checkpoint is gone is trained again only if it
still has evaluations to run.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from data_gen.cli import ArgumentParser, StopOnInterrupt, ignoring_interrupts, stops_on_sigterm
from data_gen.corruption import TRUE_ANNOTATION
from data_gen.dir_lock import FileLock, Locked
from eval.arm_training import LocalArms, checkpoint_step, train_seconds, training_summary
from eval.experiment_config import Arm, ExperimentConfig, ExperimentError
from eval.experiment_data import ExperimentData
from eval.experiment_eval import ExperimentEval
from eval.experiment_protocol import ExperimentProtocol
from eval.ledger import Ledger

STAGES = ("data", "sigma_min", "train", "eval", "report")
LEDGER_NAME = "ledger.json"
LOCK_NAME = "experiment.lock"  # held while a run uses the directory
BOOK_EVERY_S = 10.0  # a training arm's seconds go into the ledger this often, so a kill -9 keeps them


# --------------------------------------------------------------------------------------------------
# The experiment


class Experiment(ExperimentData, ExperimentEval, ExperimentProtocol):
    """One experiment config run into one output directory."""

    def __init__(self, config: ExperimentConfig, out: Path, arms: list[str] | None = None, progress: bool = True):
        self.config, self.out, self.progress = config, out, progress
        duplicated = sorted({name for name in arms or [] if arms.count(name) > 1})
        if duplicated:  # two processes would train into one run directory
            raise ExperimentError(f"--arms names {duplicated} more than once")
        self.ledger = Ledger(out / LEDGER_NAME)  # (reads it, if there is one; creates nothing)
        self.cores = len(os.sched_getaffinity(0))  # the CPUs this run may use (taskset confines it)
        self._replicate_of: dict[str, Arm] = {}  # protocol replicate name -> the arm it repeats
        self.arms = [self.named_arm(name) for name in arms] if arms else list(config.arms)
        self.check_arms()
        out.mkdir(parents=True, exist_ok=True)

    def named_arm(self, name: str) -> Arm:
        """An arm of the config, or a protocol replicate of a primary arm chosen so far (``clean_seed1``)."""
        try:
            return self.config.arm(name)
        except ExperimentError as error:
            if self.config.protocol is None:
                raise
            replicates = {arm.name: arm for arm in self.replicate_arms()}
            if name in replicates:
                return replicates[name]
            raise ExperimentError(f"{error}; the protocol's replicates so far: {sorted(replicates)} (a replicate exists "
                                  f"once its primary arm is chosen on the tuning starts)") from None  # fmt: skip

    def check_arms(self) -> None:
        """Build every trained arm's policies.train config now, so a bad one fails before any stage runs."""
        for arm in self.config.arms:
            if arm.trained:
                self.run_config(arm.model_copy(update={"sigma_min": 0.5}) if arm.sigma_min == "best" else arm)

    # paths -----------------------------------------------------------------------------------------

    def arm_dir(self, arm: Arm) -> Path:
        return self.out / "arms" / arm.name

    # stages ----------------------------------------------------------------------------------------

    def run(self, stages: tuple[str, ...] = STAGES) -> dict | None:
        """Run ``stages`` for this experiment's arms, holding the output directory's lock throughout.

        A second run on the same directory would book into the same ledger and train into the same
        checkpoints; it stops with a one-line error instead. kill -9 frees the lock (flock). The report
        alone takes no lock: it only reads the ledger and the evaluations, so it can be made while a run goes on.
        """
        if tuple(stages) == ("report",):
            return self._run(stages)
        try:
            lock = FileLock.acquire(self.out / LOCK_NAME)
        except Locked as error:
            raise ExperimentError(f"{self.out}: another run is using it ({error.holder}); wait for it to end, or use another --out") from None
        with lock:
            self.ledger = Ledger(self.out / LEDGER_NAME)  # as the last run left it
            (self.out / "experiment.yaml").write_text(self.config.to_yaml())
            return self._run(stages)

    def _run(self, stages: tuple[str, ...]) -> dict | None:
        started = time.perf_counter()
        if "data" in stages:
            self.data()
        if "sigma_min" in stages and "train" not in stages:
            # With training, each runs just before the first arm that needs it.
            for pool in dict.fromkeys(self.config.pool(a) for a in self.arms if a.sigma_min == "classifier"):
                self.sigma_min(pool)
        ready, later = self.arm_groups()
        self.run_arms(ready, stages)
        if later:
            waiting = [a for a in later if a.sigma_min == "best" and self.best_sigma_min(a) is None]
            self.run_arms([a for a in later if a not in waiting], stages)
            if waiting and ("train" in stages or "eval" in stages):
                print(f"skipping {[a.name for a in waiting]}: sigma_min 'best' needs the evaluated sigma_min sweep")
        if self.config.protocol is not None and ("train" in stages or "eval" in stages):
            chosen = [a for a in self.replicate_arms() if self.base_arm(a) in self.arms]
            self.run_arms(chosen, stages)
            if len(self.primary_arms()) < self.expected_primary_arms():
                print("replicates: some primary arms are not chosen yet (their candidates are not all evaluated on the tuning starts)")
        report = self.report() if "report" in stages else None
        print(f"experiment {self.config.name}: stages {', '.join(stages)} done in {(time.perf_counter() - started) / 60:.1f} min; "
              f"compute recorded in {self.out / LEDGER_NAME}: {self.total_seconds() / 3600:.2f} h")  # fmt: skip
        return report

    def arm_groups(self) -> tuple[list[Arm], list[Arm]]:
        """The arms to run first, and those to run once the dataset-level sigma_min sweep is evaluated.

        The ``sigma_min: best`` arms must wait for their sweep, unless it is evaluated already (a
        resumed run): then they train beside the other arms left. The classifier arms may run in either
        group; they fill the first group's last round of ``training.parallel`` arms, and what is left
        of them waits to train beside the ``best`` arms rather than alone.
        """
        best = [a for a in self.arms if a.sigma_min == "best" and self.best_sigma_min(a) is None]
        classifier = [a for a in self.arms if a.sigma_min == "classifier"]
        plain = [a for a in self.arms if a not in best and a not in classifier]
        if not best:
            return list(self.arms), []
        untrained = sum(1 for a in plain if a.trained and not self.train_done(a))
        first = min(len(classifier), -untrained % self.config.training.parallel)
        return plain + classifier[:first], classifier[first:] + best

    def run_arms(self, arms: list[Arm], stages: tuple[str, ...]) -> None:
        """Train ``training.parallel`` arms at a time and evaluate them as soon as they are trained.

        So a run stopped for good (a machine that is gone) keeps whole arms, trained and evaluated,
        rather than many half-trained ones; the small files of finished arms are all a later run needs.
        """
        if "train" in stages and "eval" in stages:  # arms trained by an earlier invocation: whole arms first
            self.evaluate([arm for arm in arms if arm.trained and self.train_done(arm)])
        if "train" in stages:
            todo = [arm for arm in arms if arm.trained and not self.train_done(arm)]
            parallel = self.config.training.parallel
            for chunk in [todo[i : i + parallel] for i in range(0, len(todo), parallel)]:
                if "sigma_min" in stages:
                    for pool in dict.fromkeys(self.config.pool(arm) for arm in chunk if arm.sigma_min == "classifier"):
                        self.sigma_min(pool)
                self.train(chunk)
                if "eval" in stages:
                    self.evaluate(chunk)
        if "eval" in stages:
            self.evaluate(arms)

    # training ----------------------------------------------------------------------------------------

    def run_config(self, arm: Arm):
        """The policies.train RunConfig of a trained arm."""
        from pydantic import ValidationError

        from policies.config import DataConfig, RunConfig, TrainingConfig, one_line

        budget = self.config.training
        training: dict[str, Any] = {
            "steps": budget.steps, "batch_size": budget.batch_size, "lr": budget.lr, "warmup_steps": budget.warmup_steps,
            "checkpoint_every": budget.checkpoint_every, "device": budget.device,
            "seed": self.config.training_seed(arm), "keep_checkpoints": budget.keep_checkpoints,
        }  # fmt: skip
        pool = self.config.pool(arm)
        clean, corrupt = str(self.store("clean")), str(self.store(pool)) if pool else None
        units = {"action_normalizer": self.config.action_normalizer}
        if arm.method in ("clean", "sim_only"):  # sim_only: the corrupt data alone, taken as clean
            data = DataConfig(clean=(clean if arm.method == "clean" else corrupt,), **units)
            training["method"] = "clean"
        else:
            data = DataConfig(clean=(clean,), corrupt=(corrupt,), **units)
            training.update(method=arm.method, alpha=arm.alpha, alpha_schedule=arm.alpha_schedule, admission=arm.admission)
        if arm.method == "ambient":
            sigma_min = self.best_sigma_min(arm) if arm.sigma_min == "best" else arm.sigma_min
            if sigma_min is None:
                raise ExperimentError(f"arm {arm.name}: sigma_min 'best' needs the evaluated sigma_min sweep first")
            if sigma_min == "classifier":
                training["sigma_min_from"] = self.annotation_name()
            elif sigma_min == "true":
                training["sigma_min_from"] = TRUE_ANNOTATION
            else:
                training["sigma_min"] = float(sigma_min)
            training.update(sigma_max=arm.sigma_max, corrupt_loss=arm.corrupt_loss, s_max_factor=arm.s_max_factor)
            if not arm.contraction:
                training["contraction"] = False
        try:
            return RunConfig(policy=self.config.policy, training=TrainingConfig(**training), data=data)
        except ValidationError as error:
            raise ExperimentError(f"arm {arm.name}: {one_line(error)}") from None

    def train_section(self, arm: Arm) -> dict:
        """The arm's training config, with the output directory written as ``<out>`` so a run may move."""
        pool = self.config.pool(arm)
        run = self.run_config(arm).model_dump(mode="json", exclude={"training": {"keep_checkpoints"}})  # snapshots change no weight
        section = {"run": run, "data": self.data_sections(pool)}
        if arm.sigma_min == "classifier":
            section["sigma_min"] = self.ledger.entries.get(self.classifier_key(pool), {}).get("section")
        return json.loads(json.dumps(section).replace(json.dumps(str(self.out))[1:-1], "<out>"))

    def train_done(self, arm: Arm) -> bool:
        """Trained with this config, and its checkpoint is here or no longer needed (every evaluation done).

        A finished arm whose checkpoint is gone (a run carried to another machine without its
        checkpoints) and still has evaluations to run is trained again from the start.
        """
        key = f"train/{arm.name}"
        if not self.ledger.is_done(key, self.train_section(arm)):
            return False
        run = self.arm_dir(arm) / "train"
        if (run / "ckpt.pt").is_file() or all(self.ledger.finished(job.key) for job in self.eval_jobs([arm])):
            return True
        print(f"{arm.name}: trained, but its checkpoint is gone and it still has evaluations to run; training it again")
        del self.ledger.entries[key]  # train() then clears the run directory, which has no checkpoint
        return False

    def train(self, arms: list[Arm]) -> None:
        """Train the arms side by side, booking each one's seconds as it goes.

        They train in this machine's processes, or with ``backend: ray`` as Ray tasks wherever the cluster
        has room for ``training.resources`` (``eval.arm_training_ray``); each keeps the thread count it
        started with, so its weights are the same either way. A Ctrl-C (of the terminal, or sent to this
        process alone) or an arm that fails asks every arm still training to stop: each stops after its
        step, saves, and its seconds are booked; then KeyboardInterrupt (or the failure) is raised. More
        Ctrl-Cs change nothing (kill -9 stops at once, and the arms lose their steps since their last checkpoint).
        """
        todo = [arm for arm in arms if arm.trained and not self.train_done(arm)]
        if not todo:
            return
        budget = self.config.training
        parallel = min(budget.parallel, len(todo))
        default = budget.threads or max(1, self.cores // budget.parallel)
        threads = {}
        for arm in todo:
            run, key = self.arm_dir(arm) / "train", f"train/{arm.name}"
            if run.is_dir() and not (run / "ckpt.pt").is_file():  # a start whose checkpoint is gone: its metrics describe nothing
                shutil.rmtree(run)
                self.ledger.entries.get(key, {}).pop("threads", None)
            self.ledger.start(key, self.train_section(arm))
            # The count it started with, whatever is left to train now: fewer threads would change its weights.
            threads[arm.name] = self.ledger.entries[key].get("threads") or default
            self.ledger.note(key, threads=threads[arm.name])
        counts = ", ".join(sorted({str(n) for n in threads.values()}))
        where = "as Ray tasks" if self.config.backend == "ray" else f"{parallel} at a time"
        self._stage_header("train", f"{len(todo)} arms, {where} with {counts} threads each, {budget.steps} steps each")
        if self.config.backend != "ray" and sum(sorted(threads.values())[-parallel:]) > self.cores:
            print(f"note: these arms started with {counts} threads each, more than this machine's {self.cores} cores "
                  f"for {parallel} at a time; they keep them, so their weights match an uninterrupted run")  # fmt: skip
        steps = {arm.name: checkpoint_step(self.arm_dir(arm) / "train") for arm in todo}
        booked = {arm.name: 0.0 for arm in todo}

        def book(name: str, seconds: float, at_least: float = 0.0) -> None:
            """Add the worker's training seconds not yet in the ledger, so a kill -9 loses at most a few."""
            if seconds - booked[name] > at_least:
                self.ledger.add_seconds(f"train/{name}", seconds - booked[name])
                booked[name] = seconds

        stop, failure, arms_pool, bar = StopOnInterrupt(force=False), None, None, None
        try:
            # Ray (which replaces this process's SIGTERM handler) is joined before the stop request is armed.
            arms_pool = self.arms_pool(parallel, default, max(threads.values()))
            with stop:
                # Local workers start with Ctrl-C ignored (inherited until they block it): one that died of it
                # while starting would break the pool, which would then kill the others unsaved.
                with ignoring_interrupts():
                    for arm in todo:
                        arms_pool.submit(arm.name, self.run_config(arm).to_json(), str(self.arm_dir(arm) / "train"), threads[arm.name])
                bar = tqdm(total=budget.steps * len(todo), initial=sum(steps.values()), unit="step", disable=not self.progress,
                           dynamic_ncols=True, desc="train")  # fmt: skip
                while arms_pool.pending:
                    ended = arms_pool.wait(timeout=1.0)
                    for name, step, seconds in arms_pool.reports():
                        if step > steps[name]:  # (a report may come after its arm's result)
                            bar.update(step - steps[name])
                            steps[name] = step
                        book(name, seconds, at_least=BOOK_EVERY_S)
                    if stop.requested:
                        arms_pool.stop()  # every arm stops after its step and saves; one not started yet does not start
                    running = arms_pool.running()
                    bar.set_description(f"train {', '.join(running)[:60]}" if running else "train")
                    for name, outcome in ended:
                        if outcome is None:  # stopped before it began
                            continue
                        if isinstance(outcome, BaseException):  # this arm failed: the others stop and save rather than train on
                            failure = failure or outcome
                            stop.request()
                            continue
                        step, interrupted, seconds = outcome
                        bar.update(max(0, step - steps[name]))
                        steps[name] = step
                        book(name, seconds)
                        if interrupted:
                            stop.request()
                        else:
                            self.ledger.finish(f"train/{name}", 0.0, {"step": step})
            if failure is not None:
                raise failure
            if stop.requested:
                raise KeyboardInterrupt
        finally:
            if bar is not None:
                bar.close()
            if arms_pool is not None:
                arms_pool.close()

    def arms_pool(self, parallel: int, threads: int, most_threads: int):
        """Where the arms train: this machine's processes, ``parallel`` at a time, or Ray tasks (``backend: ray``)."""
        if self.config.backend != "ray":
            return LocalArms(parallel, threads)
        from eval.arm_training_ray import RayArms

        # A local Ray instance (no address) gets this machine's cores, as the local backend would use them.
        return RayArms(self.config.ray_address, self.out / LEDGER_NAME, self.config.training, max(self.cores, most_threads))

    # report ----------------------------------------------------------------------------------------

    def report(self) -> dict | None:
        from eval.report import arm_row, build_report, write_report

        self.check_unchanged()
        rows = []
        for job in self.eval_jobs(self.all_arms()):
            arm = job.arm
            if not self.ledger.finished(job.key):
                continue
            results = json.loads((self.arm_dir(arm) / job.dirname / "results.json").read_text())
            trained_for = train_seconds(self.arm_dir(arm) / "train") if arm.trained else None
            role = {"expert": "expert", "sim_only": "sim_only"}.get(arm.method, arm.method)
            eval_seconds = self.ledger.entries[job.key]["seconds"]
            row = arm_row(arm.name, job.domain, results, trained_for, role, eval_seconds) | {"replicate": self.config.replicate(arm)}
            if arm.trained:
                row["training"] = training_summary(self.arm_dir(arm) / "train", all_corrupt=arm.method == "sim_only")
            if self.config.evaluation.heldout_seed is not None:  # the protocol's columns (eval.protocol.build_protocol_report)
                row |= {"starts": job.starts, "eval_seed": job.seed, "training_seed": self.config.training_seed(arm) if arm.trained else None,
                        "pool": self.config.pool(arm), "method": arm.method, "base_arm": self.base_arm(arm).name,
                        "corruption": self._corruption_kind(self.config.pool(arm))}  # fmt: skip
            rows.append(row)
        if not rows:
            print("report: no arm has been evaluated yet")
            return None
        single = not isinstance(self.config.corrupt, dict)
        meta = {
            "name": self.config.name,
            "command": f"python -m eval.experiment {self.out / 'experiment.yaml'} --out {self.out}",
            "config": self.config.model_dump(mode="json"),
            "sigma_min": self.ledger.result("sigma_min") if single else {p: self.ledger.result(self.classifier_key(p)) for p in self.config.pools},
            "best_sigma_min": {arm.name: self.best_sigma_min(arm) for arm in self.config.arms if arm.sigma_min == "best"},
            "compute_hours": self.compute_seconds() / 3600,
        }  # fmt: skip
        if self.config.protocol is not None:
            from eval.protocol import build_protocol_report, write_protocol_report

            protocol = self.config.protocol
            meta["primary_choices"] = {
                pool: {role: best.name for role, method in (("treatment", protocol.treatment), ("control", protocol.control))
                       if (best := self.best_of(pool, method)) is not None}
                for pool in self.config.pools
            }  # fmt: skip
            if protocol.primary:
                meta["stated_primary"] = [c.model_dump(mode="json") for c in protocol.primary]
            if any(source.prefix_of for source in self.config.pools.values()):  # nested pools: a curve over their sizes
                meta["pool_sizes"] = {pool: source.n for pool, source in self.config.pools.items()}
                meta["arm_kinds"] = {arm.name: arm.kind for arm in self.config.arms}
            report = build_protocol_report(rows, self.config.evaluation.domain, meta)
            write_protocol_report(report, self.out)
        else:
            report = build_report(rows, self.config.evaluation.domain, meta)
            write_report(report, self.out)
        print((self.out / "results.md").read_text())
        return report

    def check_unchanged(self) -> None:
        """Refuse to report a finished run under a config edited since (``steps``, ``trials``): the report
        would claim the new config for results made with the old one."""
        for arm in self.all_arms():
            jobs = [(job.key, lambda job=job: self.eval_section(job)) for job in self.eval_jobs([arm])]
            if arm.trained:
                jobs.insert(0, (f"train/{arm.name}", lambda arm=arm: self.train_section(arm)))
            for key, section in jobs:
                if self.ledger.finished(key) and self.ledger.entries[key]["section"] != section():
                    raise ExperimentError(f"{self.out}: {key} was made with another config ({self.ledger.changes(key, section())}); "
                                          f"report it with the config it ran with ({self.out / 'experiment.yaml'})")  # fmt: skip

    def total_seconds(self) -> float:
        return float(sum(entry["seconds"] for entry in self.ledger.entries.values()))

    def compute_seconds(self) -> float:
        """Process time of the whole experiment: the ledger's stages, training measured from metrics.jsonl."""
        seconds = sum(entry["seconds"] for key, entry in self.ledger.entries.items() if not key.startswith("train/"))
        for arm in self.all_arms():
            run = self.arm_dir(arm) / "train"
            if arm.trained and (run / "metrics.jsonl").is_file() and (run / "config.json").is_file():
                seconds += train_seconds(run)
        return float(seconds)

    def _stage_header(self, stage: str, what: str) -> None:
        if self.progress:
            print(f"== {stage}: {what}", flush=True)


# --------------------------------------------------------------------------------------------------
# Command line


@stops_on_sigterm
def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m eval.experiment", description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path, help="experiment YAML (experiments/smoke.yaml, cpu.yaml, paper.yaml)")
    parser.add_argument("--out", type=Path, help="output directory (default: runs/experiments/NAME)")
    parser.add_argument("--arms", help="comma-separated arm names to run (default: all)")
    parser.add_argument("--stage", choices=STAGES, help="run only this stage (default: all, in order)")
    parser.add_argument("--backend", choices=("local", "ray"),
                        help="where the stages run, overriding the YAML's backend (ray: docs/cluster.md)")
    args = parser.parse_args(argv)
    prog = parser.prog
    try:
        config = ExperimentConfig.load(args.config, backend=args.backend)
        arms = [name.strip() for name in args.arms.split(",") if name.strip()] if args.arms else None
        out = args.out or Path("runs") / "experiments" / config.name
        experiment = Experiment(config, out, arms)
        experiment.run((args.stage,) if args.stage else STAGES)
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted; run the same command to resume", file=sys.stderr)
        return 130
    except ExperimentError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # the stages' own one-line errors (store, data, training, checkpoint)
        from data_gen.backends import BackendError
        from data_gen.episode_store import StoreError
        from policies.checkpoint import CheckpointError
        from policies.config import ConfigError
        from policies.dataset import DataError
        from policies.train import TrainingError

        if isinstance(error, (StoreError, DataError, TrainingError, CheckpointError, ConfigError, BackendError, OSError)):
            print(f"{prog}: error: {' '.join(str(error).split())}", file=sys.stderr)
            return 2
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())

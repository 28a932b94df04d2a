"""The sim-and-sim experiment in one command: ``python -m eval.experiment CONFIG.yaml``.

    python -m eval.experiment experiments/cpu.yaml [--out DIR] [--arms NAME,...] [--stage STAGE]

Stages, in order: ``data`` (clean and corrupt episode stores, generated or given) -> ``sigma_min``
(the cross-fitted classifier's per-sample sigma_min, written as an annotation set of the corrupt
store; only when an arm asks for it) -> ``train`` (every arm the same model and optimiser steps) ->
``eval`` (every arm on the same start poses) -> ``report`` (``results.json/.md/.png``). It is a thin
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

import ctypes
import json
import hashlib
import multiprocessing
import os
import shutil
import signal
import sys
import time
from concurrent.futures import FIRST_COMPLETED, CancelledError, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from queue import Empty
from typing import Any

import numpy as np
from tqdm import tqdm

from data_gen.cli import ArgumentParser, StopOnInterrupt, ignoring_interrupts, stops_on_sigterm
from data_gen.dir_lock import FileLock, Locked
from eval.experiment_config import Arm, ExperimentConfig, ExperimentError

STAGES = ("data", "sigma_min", "train", "eval", "report")
LEDGER_NAME = "ledger.json"
LOCK_NAME = "experiment.lock"  # held while a run uses the directory
BOOK_EVERY_S = 10.0  # a training arm's seconds go into the ledger this often, so a kill -9 keeps them


# --------------------------------------------------------------------------------------------------
# The ledger of finished work


class Ledger:
    """``ledger.json``: each stage key's config section, whether it finished, and what it measured."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.entries: dict[str, dict] = json.loads(path.read_text()) if path.is_file() else {}
        except json.JSONDecodeError:
            raise ExperimentError(f"{path}: damaged ledger (not JSON); move it away to start the experiment afresh") from None

    def is_done(self, key: str, section: dict) -> bool:
        """True if ``key`` finished with this section; ExperimentError if it was made with another."""
        entry = self.entries.get(key)
        if entry is None:
            return False
        if entry["section"] != section:
            changed = ", ".join(_differences(entry["section"], section)[:4])
            raise ExperimentError(
                f"{self.path.parent}: {key} was made with another config ({changed}); use another --out or remove its outputs"
            )
        return bool(entry["done"])

    def finished(self, key: str) -> bool:
        """True if ``key`` finished (with whatever section)."""
        return bool(self.entries.get(key, {}).get("done"))

    def reopen(self, key: str) -> None:
        """Mark a finished entry unfinished (its outputs are gone and will be made again)."""
        self.entries[key]["done"] = False

    def start(self, key: str, section: dict) -> None:
        self.entries.setdefault(key, {"section": section, "done": False, "seconds": 0.0, "result": {}})
        self._save()

    def finish(self, key: str, seconds: float, result: dict | None = None) -> None:
        entry = self.entries[key]
        entry.update(done=True, seconds=entry["seconds"] + seconds, result=result or {})
        self._save()

    def add_seconds(self, key: str, seconds: float) -> None:
        self.entries[key]["seconds"] += seconds
        self._save()

    def result(self, key: str) -> dict:
        return self.entries.get(key, {}).get("result", {})

    def _save(self) -> None:
        temporary = self.path.with_suffix(".partial")
        temporary.write_text(json.dumps(self.entries, indent=1))
        os.replace(temporary, self.path)


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in sorted(set(old) | set(new), key=str):
            found += _differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return found
    return [] if old == new else [f"{prefix[:-1] or 'value'} {old!r} -> {new!r}"]


# --------------------------------------------------------------------------------------------------
# The experiment


class Experiment:
    """One experiment config run into one output directory."""

    def __init__(self, config: ExperimentConfig, out: Path, arms: list[str] | None = None, progress: bool = True):
        self.config, self.out, self.progress = config, out, progress
        self.arms = [config.arm(name) for name in arms] if arms else list(config.arms)
        out.mkdir(parents=True, exist_ok=True)
        self.ledger = Ledger(out / LEDGER_NAME)
        self.cores = len(os.sched_getaffinity(0))  # the CPUs this run may use (taskset confines it)

    # paths -----------------------------------------------------------------------------------------

    def store(self, pool: str) -> Path:
        source = getattr(self.config, pool)
        return Path(source.store) if source.store else self.out / "data" / f"{pool}.zarr"

    def arm_dir(self, arm: Arm) -> Path:
        return self.out / "arms" / arm.name

    def annotation_name(self) -> str:
        return f"{self.config.name}-classifier"

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
        if "sigma_min" in stages and "train" not in stages and self.config.needs_classifier:
            self.sigma_min()  # with training, it runs just before the first arm that needs it
        ready, later = self.arm_groups()
        self.run_arms(ready, stages)
        if later:
            waiting = [a for a in later if a.sigma_min == "best" and self.best_sigma_min(a) is None]
            self.run_arms([a for a in later if a not in waiting], stages)
            if waiting and ("train" in stages or "eval" in stages):
                print(f"skipping {[a.name for a in waiting]}: sigma_min 'best' needs the evaluated sigma_min sweep")
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
                if "sigma_min" in stages and any(arm.sigma_min == "classifier" for arm in chunk):
                    self.sigma_min()
                self.train(chunk)
                if "eval" in stages:
                    self.evaluate(chunk)
        if "eval" in stages:
            self.evaluate(arms)

    def data(self) -> None:
        from data_gen.gcs import GenerationConfig, generate
        from pushing_sim.domains import DomainError, load_domain

        for index, pool in enumerate(("clean", "corrupt")):
            source = getattr(self.config, pool)
            key, path = f"data/{pool}", self.store(pool)
            if source.store:
                self._check_existing_store(key, path)
                continue
            section = source.model_dump(mode="json")
            if self.ledger.is_done(key, section):
                if path.is_dir():  # kept, or carried in without images (eval.carry --states): it must be the same data
                    self._record_digest(key, path, expected=self.ledger.result(key).get("digest"))
                    continue
                print(f"{path}: gone; generating it again (it must come out the same as before)")
                self.ledger.reopen(key)
            try:
                domain = load_domain(source.domain, list(source.overrides))
            except DomainError as error:
                raise ExperimentError(f"{pool}: {error}") from None
            generation = GenerationConfig(n=source.n, seed=source.seed, domain=domain, replay=source.replay,
                                          replan_every=source.replan_every, keep=source.keep)  # fmt: skip
            self.ledger.start(key, section)
            self._stage_header(f"data {pool}", f"{source.n} episodes in {source.domain} -> {path}")
            summary = generate(generation, path, workers=self.config.data_workers, progress=self.progress,
                               backend=self.config.backend, address=self.config.ray_address)
            self.ledger.add_seconds(key, summary.wall_time)
            if summary.interrupted:
                raise KeyboardInterrupt
            if summary.stored < source.n:
                raise ExperimentError(f"{path}: only {summary.stored} of {source.n} episodes could be generated")
            digest = self.ledger.result(key).get("digest")
            self.ledger.finish(key, 0.0, {"episodes": summary.stored, "attempts": summary.attempts})
            self._record_digest(key, path, expected=digest)

    def _record_digest(self, key: str, path: Path, expected: str | None = None) -> None:
        """Record the store's digest; a regenerated store must match the one the finished arms used."""
        result = self.ledger.result(key)
        if "digest" in result and expected is None:
            return
        digest = store_digest(path)
        if expected is not None and digest != expected:
            raise ExperimentError(
                f"{path}: differs from the data the finished arms used (digest {digest[:12]} != "
                f"{expected[:12]}); remove {self.out / 'arms'} to train every arm on the new data"
            )
        self.ledger.finish(key, 0.0, {**result, "digest": digest})

    def _check_existing_store(self, key: str, path: Path) -> None:
        from data_gen.episode_store import EpisodeStore

        with EpisodeStore.open(path) as store:
            section = {"store": str(path.resolve()), "episodes": store.n_episodes, "steps": store.n_steps}
        if not self.ledger.is_done(key, section):
            self.ledger.start(key, section)
            self.ledger.finish(key, 0.0)

    def data_sections(self) -> dict:
        return {key: self.ledger.entries[key]["section"] for key in ("data/clean", "data/corrupt") if key in self.ledger.entries}

    def sigma_min(self) -> None:
        from data_gen.episode_store import EpisodeStore
        from policies.classify import annotate, mean_t_min

        key = "sigma_min"
        section = {"classifier": self.config.classifier.model_dump(mode="json"), "data": self.data_sections(),
                   "annotation": self.annotation_name()}  # fmt: skip
        corrupt = self.store("corrupt")
        if self.ledger.is_done(key, section):
            with EpisodeStore.open(corrupt) as store:
                if self.annotation_name() in store.annotation_names:
                    return
            print(f"{corrupt}: annotation set {self.annotation_name()!r} gone with the store; running the classifier again")
            self.ledger.reopen(key)
        ours = key in self.ledger.entries  # an unfinished run of ours may have written the set
        with EpisodeStore.open(corrupt) as store:
            if self.annotation_name() in store.annotation_names and not ours:
                raise ExperimentError(f"{corrupt}: holds an annotation set {self.annotation_name()!r} this directory did not make")
        self.ledger.start(key, section)
        self._stage_header("sigma_min", f"cross-fitted classifier -> annotation set {self.annotation_name()!r} of {corrupt}")
        import torch

        torch.set_num_threads(self.cores)  # the only process at work in this stage
        started = time.perf_counter()
        result = annotate([self.store("clean")], [corrupt], self.config.classifier, name=self.annotation_name(),
                          overwrite=True, progress=self.progress)  # fmt: skip
        values = result.sigma_min[str(corrupt)]
        self.ledger.finish(key, time.perf_counter() - started, {
            "mean_sigma_min": float(values.mean()), "mean_t_min": mean_t_min(values), "heldout_accuracy": result.accuracy,
        })  # fmt: skip

    # training ----------------------------------------------------------------------------------------

    def run_config(self, arm: Arm):
        """The policies.train RunConfig of a trained arm."""
        from policies.config import DataConfig, RunConfig, TrainingConfig

        budget = self.config.training
        training: dict[str, Any] = {
            "steps": budget.steps, "batch_size": budget.batch_size, "lr": budget.lr, "warmup_steps": budget.warmup_steps,
            "checkpoint_every": budget.checkpoint_every, "device": budget.device,
            "seed": self.config.training_seed(arm),
        }  # fmt: skip
        clean, corrupt = str(self.store("clean")), str(self.store("corrupt"))
        if arm.method in ("clean", "sim_only"):
            data = DataConfig(clean=(clean if arm.method == "clean" else corrupt,))
            training["method"] = "clean"
        else:
            data = DataConfig(clean=(clean,), corrupt=(corrupt,))
            training.update(method=arm.method, alpha=arm.alpha, alpha_schedule=arm.alpha_schedule, admission=arm.admission)
        if arm.method == "ambient":
            sigma_min = self.best_sigma_min(arm) if arm.sigma_min == "best" else arm.sigma_min
            if sigma_min is None:
                raise ExperimentError(f"arm {arm.name}: sigma_min 'best' needs the evaluated sigma_min sweep first")
            if sigma_min == "classifier":
                training["sigma_min_from"] = self.annotation_name()
            else:
                training["sigma_min"] = float(sigma_min)
            training.update(sigma_max=arm.sigma_max, corrupt_loss=arm.corrupt_loss, s_max_factor=arm.s_max_factor)
        return RunConfig(policy=self.config.policy, training=TrainingConfig(**training), data=data)

    def train_section(self, arm: Arm) -> dict:
        """The arm's training config, with the output directory written as ``<out>`` so a run may move."""
        section = {"run": self.run_config(arm).model_dump(mode="json"), "data": self.data_sections()}
        if arm.sigma_min == "classifier":
            section["sigma_min"] = self.ledger.entries.get("sigma_min", {}).get("section")
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
        domains = arm.domains(self.config.evaluation.domain)
        if (run / "ckpt.pt").is_file() or all(self.ledger.finished(f"eval/{arm.name}/{d}") for d in domains):
            return True
        print(f"{arm.name}: trained, but its checkpoint is gone and it still has evaluations to run; training it again")
        del self.ledger.entries[key]  # train() then clears the run directory, which has no checkpoint
        return False

    def train(self, arms: list[Arm]) -> None:
        """Train the arms side by side, booking each one's seconds as it goes.

        A Ctrl-C (of the terminal, or sent to this process alone) or an arm that fails asks every arm
        still training to stop: each stops after its step, saves, and its seconds are booked; then
        KeyboardInterrupt (or the failure) is raised. More Ctrl-Cs change nothing (kill -9 stops at once,
        and the arms lose their steps since their last checkpoint).
        """
        todo = [arm for arm in arms if arm.trained and not self.train_done(arm)]
        if not todo:
            return
        budget = self.config.training
        parallel = min(budget.parallel, len(todo))
        threads = max(1, self.cores // parallel)
        self._stage_header("train", f"{len(todo)} arms, {parallel} at a time with {threads} threads each, {budget.steps} steps each")
        for arm in todo:
            run = self.arm_dir(arm) / "train"
            if run.is_dir() and not (run / "ckpt.pt").is_file():  # a start whose checkpoint is gone: its metrics describe nothing
                shutil.rmtree(run)
            self.ledger.start(f"train/{arm.name}", self.train_section(arm))
        steps = {arm.name: _checkpoint_step(self.arm_dir(arm) / "train") for arm in todo}
        booked = {arm.name: 0.0 for arm in todo}

        def book(name: str, seconds: float, at_least: float = 0.0) -> None:
            """Add the worker's training seconds not yet in the ledger, so a kill -9 loses at most a few."""
            if seconds - booked[name] > at_least:
                self.ledger.add_seconds(f"train/{name}", seconds - booked[name])
                booked[name] = seconds

        stop, pending, failure = StopOnInterrupt(force=False), {}, None
        context = multiprocessing.get_context("spawn")
        # Handed to the workers as they start: their progress reports, and the runner's stop request.
        queue, stop_event = context.Queue(), context.Event()
        pool = ProcessPoolExecutor(parallel, context, _init_train_worker, (threads, queue, stop_event))
        bar = None
        try:
            with stop:
                # The workers start with Ctrl-C ignored (inherited until they block it): one that died of it
                # while starting would break the pool, which would then kill the others unsaved.
                with ignoring_interrupts():
                    for arm in todo:
                        job = (arm.name, self.run_config(arm).to_json(), str(self.arm_dir(arm) / "train"))
                        pending[pool.submit(_train_arm, *job)] = arm
                bar = tqdm(total=budget.steps * len(todo), initial=sum(steps.values()), unit="step", disable=not self.progress,
                           dynamic_ncols=True, desc="train")  # fmt: skip
                while pending:
                    done, _ = wait(list(pending), timeout=1.0, return_when=FIRST_COMPLETED)
                    for name, step, seconds in _drain(queue):
                        if step > steps[name]:  # (a report may come after its arm's result)
                            bar.update(step - steps[name])
                            steps[name] = step
                        book(name, seconds, at_least=BOOK_EVERY_S)
                    if stop.requested and not stop_event.is_set():
                        stop_event.set()  # every arm stops after its step and saves; one not started yet does not start
                        for future in pending:
                            future.cancel()
                    running = sorted(pending[f].name for f in pending if f.running())
                    bar.set_description(f"train {', '.join(running)[:60]}" if running else "train")
                    for future in done:
                        arm = pending.pop(future)
                        try:
                            name, step, interrupted, seconds = future.result()
                        except CancelledError:
                            continue
                        except BrokenProcessPool:  # every arm's future says so: it is not this arm's fault
                            failure = failure or ExperimentError(
                                f"a training process died (out of memory?), and the pool stopped the arms {sorted(steps)} "
                                "without saving their last steps; run the same command to resume from their checkpoints"
                            )
                            stop.request()
                            continue
                        except Exception as error:  # this arm failed: the others stop and save rather than train on
                            failure = failure or error
                            stop.request()
                            continue
                        bar.update(max(0, step - steps[name]))
                        steps[name] = step
                        book(name, seconds)
                        if interrupted:
                            stop.request()
                        else:
                            self.ledger.finish(f"train/{arm.name}", 0.0, {"step": step})
            if failure is not None:
                raise failure
            if stop.requested:
                raise KeyboardInterrupt
        finally:
            if bar is not None:
                bar.close()
            stop_event.set()  # after an error in this loop, too: the arms save and end, rather than train on
            pool.shutdown(wait=True, cancel_futures=True)
            queue.close()

    # evaluation --------------------------------------------------------------------------------------

    def eval_jobs(self, arms: list[Arm]) -> list[tuple[Arm, str]]:
        return [(arm, domain) for arm in arms for domain in arm.domains(self.config.evaluation.domain)]

    def eval_section(self, arm: Arm, domain: str) -> dict:
        # Neither workers nor envs change a trial; precision and device change a policy's, not the expert's.
        exclude = {"workers", "envs_per_worker"} | (set() if arm.trained else {"precision", "device"})
        evaluation = self.config.evaluation.model_dump(mode="json", exclude=exclude)
        section = {"evaluation": evaluation, "domain": domain, "seed": self.config.seed}
        if arm.trained:
            section["train"] = self.ledger.entries.get(f"train/{arm.name}", {}).get("section")
        return section

    def evaluate(self, arms: list[Arm]) -> None:
        from eval.agents import AgentError
        from eval.rollout import RolloutSpec, evaluate

        evaluation = self.config.evaluation
        todo = []
        for arm, domain in self.eval_jobs(arms):
            if arm.trained and not self.ledger.finished(f"train/{arm.name}"):
                print(f"skipping evaluation of {arm.name} in {domain}: not trained yet")
                continue
            if not self.ledger.is_done(f"eval/{arm.name}/{domain}", self.eval_section(arm, domain)):
                todo.append((arm, domain))
        if not todo:
            return
        self._stage_header("eval", f"{len(todo)} evaluations of {evaluation.trials} trials, {evaluation.workers} workers "
                                   f"x {evaluation.envs_per_worker} envs")
        bar = tqdm(total=evaluation.trials * len(todo), unit="trial", disable=not self.progress, dynamic_ncols=True)
        try:
            for arm, domain in todo:
                key, out = f"eval/{arm.name}/{domain}", self.arm_dir(arm) / f"eval_{domain}"
                self.ledger.start(key, self.eval_section(arm, domain))
                bar.set_description(f"eval {arm.name} in {domain}")
                successes, clock = [], [time.perf_counter()]

                def tick(result: dict, successes=successes, clock=clock, key=key) -> None:
                    successes.append(result["success"])
                    bar.set_postfix(success=f"{sum(successes)}/{len(successes)}", refresh=False)
                    bar.update(1)
                    # Booked as it goes, so that an evaluation killed with -9 still counts its time.
                    now = time.perf_counter()
                    self.ledger.add_seconds(key, now - clock[0])
                    clock[0] = now

                def resumed(results: list[dict], successes=successes) -> None:
                    successes.extend(r["success"] for r in results)
                    bar.set_postfix(success=f"{sum(successes)}/{len(successes)}", refresh=False)
                    bar.update(len(results))

                spec = RolloutSpec(
                    policy="ckpt" if arm.trained else "gcs",
                    ckpt=str(self.arm_dir(arm) / "train" / "ckpt.pt") if arm.trained else None,
                    domain=domain, domain_overrides=tuple(evaluation.overrides), seed=self.config.seed,
                    videos=min(evaluation.videos, evaluation.trials), video_dir=str(out / "videos"), device=evaluation.device,
                    max_steps=evaluation.max_steps, envs=evaluation.envs_per_worker, precision=evaluation.precision,
                )  # fmt: skip
                (out / "videos").mkdir(parents=True, exist_ok=True)
                try:
                    report = evaluate(spec, evaluation.trials, out, evaluation.workers, progress=False,
                                      backend=self.config.backend, address=self.config.ray_address,
                                      command=f"python -m eval.experiment ({arm.name} in {domain})", on_result=tick,
                                      on_resumed=resumed)  # fmt: skip
                except AgentError as error:
                    raise ExperimentError(f"arm {arm.name}: {error}") from None
                except KeyboardInterrupt:
                    self.ledger.add_seconds(key, time.perf_counter() - clock[0])
                    raise
                bar.update(evaluation.trials - len(successes))  # none, unless trials are missing from the report
                self.ledger.finish(key, time.perf_counter() - clock[0], {"success_rate": report["success_rate"]})
        finally:
            bar.close()

    def best_sigma_min(self, best: Arm) -> float | None:
        """The sigma_min of the best-scoring arm of ``best``'s sweep (``ExperimentConfig.sweep``); None until it is all evaluated."""
        domain = self.config.evaluation.domain
        scored = []
        for arm in self.config.sweep(best):
            if not self.ledger.finished(f"eval/{arm.name}/{domain}"):
                return None
            results = json.loads((self.arm_dir(arm) / f"eval_{domain}" / "results.json").read_text())
            scored.append((results["success_rate"], results["mean_max_coverage"], -arm.sigma_min, arm.sigma_min))
        return max(scored)[-1] if scored else None

    # report ----------------------------------------------------------------------------------------

    def report(self) -> dict | None:
        from eval.report import arm_row, build_report, write_report

        rows = []
        for arm, domain in self.eval_jobs(list(self.config.arms)):
            if not self.ledger.finished(f"eval/{arm.name}/{domain}"):
                continue
            results = json.loads((self.arm_dir(arm) / f"eval_{domain}" / "results.json").read_text())
            train_seconds = _train_seconds(self.arm_dir(arm) / "train") if arm.trained else None
            role = {"expert": "expert", "sim_only": "sim_only"}.get(arm.method, arm.method)
            eval_seconds = self.ledger.entries[f"eval/{arm.name}/{domain}"]["seconds"]
            rows.append(arm_row(arm.name, domain, results, train_seconds, role, eval_seconds) | {"replicate": self.config.replicate(arm)})
        if not rows:
            print("report: no arm has been evaluated yet")
            return None
        meta = {
            "name": self.config.name,
            "command": f"python -m eval.experiment {self.out / 'experiment.yaml'} --out {self.out}",
            "config": self.config.model_dump(mode="json"),
            "sigma_min": self.ledger.result("sigma_min"),
            "best_sigma_min": {arm.name: self.best_sigma_min(arm) for arm in self.config.arms if arm.sigma_min == "best"},
            "compute_hours": self.compute_seconds() / 3600,
        }
        report = build_report(rows, self.config.evaluation.domain, meta)
        write_report(report, self.out)
        print((self.out / "results.md").read_text())
        return report

    def total_seconds(self) -> float:
        return float(sum(entry["seconds"] for entry in self.ledger.entries.values()))

    def compute_seconds(self) -> float:
        """Process time of the whole experiment: the ledger's stages, training measured from metrics.jsonl."""
        seconds = sum(entry["seconds"] for key, entry in self.ledger.entries.items() if not key.startswith("train/"))
        for arm in self.config.arms:
            run = self.arm_dir(arm) / "train"
            if arm.trained and (run / "metrics.jsonl").is_file() and (run / "config.json").is_file():
                seconds += _train_seconds(run)
        return float(seconds)

    def _stage_header(self, stage: str, what: str) -> None:
        if self.progress:
            print(f"== {stage}: {what}", flush=True)


# --------------------------------------------------------------------------------------------------
# Training workers (spawned processes: torch threads set before anything runs)


_WORKER: dict[str, Any] = {}  # a training worker's progress queue and the runner's stop event


def _init_train_worker(threads: int, progress, stop) -> None:
    # A worker never takes a Ctrl-C itself: the runner passes it on as the stop event, which train() asks
    # after every step. So a second Ctrl-C never forces a stop mid-step (a checkpoint of half a step).
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    # A SIGTERM to the whole run (timeout, a scheduler) reaches the workers too: each saves and stops, as
    # train() does with one while it trains; noted here, it also stops an arm still loading its data.
    signal.signal(signal.SIGTERM, _note_terminate)
    progress.cancel_join_thread()  # an exit never waits on reports nobody reads: the result has the final figures
    _WORKER.update(progress=progress, stop=stop)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    try:  # die with the parent (kill -9 of the runner), so no orphan keeps writing a run directory
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    import torch

    torch.set_num_threads(threads)


def _note_terminate(signum, frame) -> None:
    _WORKER["terminated"] = True


def _train_arm(name: str, config_json: str, out: str) -> tuple[str, int, bool, float]:
    from policies.config import RunConfig
    from policies.train import train

    started = time.perf_counter()

    def report(step: int, total: int) -> None:
        try:
            _WORKER["progress"].put((name, step, time.perf_counter() - started))
        except (OSError, ValueError):  # the queue is gone; training goes on and saves
            pass

    def should_stop() -> bool:
        return _WORKER.get("terminated", False) or _WORKER["stop"].is_set()

    if should_stop():  # asked before this arm began: it does not begin
        return name, _checkpoint_step(Path(out)), True, 0.0
    result = train(RunConfig.from_json(config_json), out, progress=False, on_log=report, should_stop=should_stop)
    return name, result.step, result.interrupted, time.perf_counter() - started


def _drain(queue) -> list:
    found = []
    while True:
        try:
            found.append(queue.get_nowait())
        except Empty:
            return found


def store_digest(path: Path) -> str:
    """SHA-256 of a store's episodes: ends, seeds, actions and states (images follow from the states)."""
    from data_gen.episode_store import EpisodeStore

    digest = hashlib.sha256()
    with EpisodeStore.open(path) as store:
        digest.update(np.ascontiguousarray(store.episode_ends, dtype=np.int64).tobytes())
        digest.update(np.ascontiguousarray(store.meta_column("seed"), dtype=np.int64).tobytes())
        for key in store.step_keys:
            if key not in store.cameras:
                digest.update(key.encode() + np.ascontiguousarray(store.array(key), dtype=np.float64).tobytes())
    return digest.hexdigest()


def _checkpoint_step(run: Path) -> int:
    metrics = run / "metrics.jsonl"
    if not metrics.is_file():
        return 0
    lines = [line for line in metrics.read_text().splitlines() if line.strip()]
    try:
        return int(json.loads(lines[-1])["step"]) if lines else 0
    except (json.JSONDecodeError, KeyError):
        return 0


def _train_seconds(run: Path) -> float:
    """Training time of a run from metrics.jsonl: its steps at the median of its windows' measured rates.

    It counts resumed and killed runs too (the ledger sees only calls that returned), and a window
    in which the process was paused (or shared its cores) does not inflate it.
    """
    config = json.loads((run / "config.json").read_text())
    batch = config["training"]["batch_size"]
    steps, rates = 0, []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        steps = max(steps, int(record["step"]))
        rates.append(float(record["samples_per_s"]))
    return steps * batch / max(float(np.median(rates)), 1e-9) if rates else 0.0


# --------------------------------------------------------------------------------------------------
# Command line


@stops_on_sigterm
def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m eval.experiment", description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path, help="experiment YAML (experiments/smoke.yaml, cpu.yaml, paper.yaml)")
    parser.add_argument("--out", type=Path, help="output directory (default: runs/experiments/NAME)")
    parser.add_argument("--arms", help="comma-separated arm names to run (default: all)")
    parser.add_argument("--stage", choices=STAGES, help="run only this stage (default: all, in order)")
    args = parser.parse_args(argv)
    prog = parser.prog
    try:
        config = ExperimentConfig.load(args.config)
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

"""The experiment's evaluation stage: each arm in each of its domains, on the tuning and the held-out starts.

An ``EvalJob`` is one evaluation and its ledger key; ``ExperimentEval`` is the part of
``eval.experiment.Experiment`` that runs them through ``eval.rollout.evaluate``, booking each trial's
time as it ends so that a killed evaluation resumes with its trials and its seconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from tqdm import tqdm

from eval.experiment_config import Arm, ExperimentError


@dataclass(frozen=True)
class EvalJob:
    """One evaluation: an arm in a domain on the tuning starts (the experiment's seed) or the held-out ones."""

    arm: Arm
    domain: str
    heldout: bool
    seed: int

    @property
    def key(self) -> str:
        return f"eval/{self.arm.name}/{self.domain}" + ("/heldout" if self.heldout else "")

    @property
    def dirname(self) -> str:
        return f"eval_{self.domain}" + ("_heldout" if self.heldout else "")

    @property
    def starts(self) -> str:
        return "heldout" if self.heldout else "tuning"

    def __str__(self) -> str:
        return f"{self.arm.name} in {self.domain}" + (" (held-out starts)" if self.heldout else "")


class ExperimentEval:
    """The eval stage of an experiment (a base of ``Experiment``): it uses ``config``, ``ledger``,
    ``progress``, ``arm_dir`` and ``_stage_header``."""

    def eval_jobs(self, arms: list[Arm]) -> list[EvalJob]:
        """Each arm in each of its domains on the tuning starts and, with ``heldout_seed``, the held-out ones."""
        heldout = self.config.evaluation.heldout_seed
        jobs = []
        for arm in arms:
            # A replicate (another training seed) chooses nothing: with held-out starts it is measured there alone.
            sets = [(False, self.config.seed)] if heldout is None or not self.config.replicate(arm) else []
            sets += [(True, heldout)] if heldout is not None else []
            jobs += [EvalJob(arm, domain, held, seed) for domain in arm.domains(self.config.evaluation.domain) for held, seed in sets]
        return jobs

    def eval_section(self, job: EvalJob) -> dict:
        arm = job.arm
        # Neither workers nor envs change a trial; precision and device change a policy's, not the expert's.
        exclude = {"workers", "envs_per_worker", "threads", "heldout_seed"} | (set() if arm.trained else {"precision", "device"})
        evaluation = self.config.evaluation.model_dump(mode="json", exclude=exclude)
        section = {"evaluation": evaluation, "domain": job.domain, "seed": job.seed}
        if arm.trained:
            section["train"] = self.ledger.entries.get(f"train/{arm.name}", {}).get("section")
        return section

    def evaluate(self, arms: list[Arm]) -> None:
        from eval.agents import AgentError
        from eval.rollout import RolloutSpec, evaluate

        evaluation = self.config.evaluation
        todo = []
        for job in self.eval_jobs(arms):
            if job.arm.trained and not self.ledger.finished(f"train/{job.arm.name}"):
                print(f"skipping evaluation of {job.arm.name} in {job.domain}: not trained yet")
                continue
            if not self.ledger.is_done(job.key, self.eval_section(job)):
                todo.append(job)
        if not todo:
            return
        self._stage_header("eval", f"{len(todo)} evaluations of {evaluation.trials} trials, {evaluation.workers} workers "
                                   f"x {evaluation.envs_per_worker} envs")
        bar = tqdm(total=evaluation.trials * len(todo), unit="trial", disable=not self.progress, dynamic_ncols=True)
        try:
            for job in todo:
                arm, domain, key, out = job.arm, job.domain, job.key, self.arm_dir(job.arm) / job.dirname
                self.ledger.start(key, self.eval_section(job))
                bar.set_description(f"eval {job}")
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
                    domain=domain, domain_overrides=tuple(evaluation.overrides), seed=job.seed,
                    videos=min(evaluation.videos, evaluation.trials), video_dir=str(out / "videos"), device=evaluation.device,
                    max_steps=evaluation.max_steps, envs=evaluation.envs_per_worker, precision=evaluation.precision,
                    threads=evaluation.threads,
                )  # fmt: skip
                (out / "videos").mkdir(parents=True, exist_ok=True)
                try:
                    report = evaluate(spec, evaluation.trials, out, evaluation.workers, progress=False,
                                      backend=self.config.backend, address=self.config.ray_address,
                                      command=f"python -m eval.experiment ({job})", on_result=tick,
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

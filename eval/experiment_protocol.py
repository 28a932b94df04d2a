"""The protocol's choices: the best arms on the tuning starts, the primary arms, their replicates.

Every choice (a sweep's best sigma_min, each pool's best treatment and control arm) is made on the
tuning starts alone, from the arms' results there; the primary arms chosen so far are trained again
under the protocol's replicate seeds. ``ExperimentProtocol`` is that part of ``eval.experiment.Experiment``.
"""

from __future__ import annotations

import json
from typing import Any

from eval.experiment_config import Arm, ExperimentError


class ExperimentProtocol:
    """Choices on the tuning starts (a base of ``Experiment``): it uses ``config``, ``ledger`` and ``arm_dir``."""

    _replicate_of: dict[str, Arm]  # protocol replicate name -> the arm it repeats (set by Experiment)

    def tuning_results(self, arm: Arm) -> dict | None:
        """An arm's results.json on the tuning starts in the evaluation's domain, where every choice is made; None
        until it is evaluated there."""
        domain = self.config.evaluation.domain
        if not self.ledger.finished(f"eval/{arm.name}/{domain}"):
            return None
        return json.loads((self.arm_dir(arm) / f"eval_{domain}" / "results.json").read_text())

    def best_sigma_min(self, best: Arm) -> float | None:
        """The sigma_min of the best-scoring arm of ``best``'s sweep (``ExperimentConfig.sweep``); None until it is all evaluated."""
        scored = [(self.tuning_results(arm), arm.sigma_min) for arm in self.config.sweep(best)]
        if not scored or any(results is None for results, _ in scored):
            return None
        return max((r["success_rate"], r["mean_max_coverage"], -sigma, sigma) for r, sigma in scored)[-1]

    def candidates(self, pool: str, method: str) -> list[Arm]:
        """A pool's arms of one method, trained under the experiment's seed and scored in the evaluation's domain."""
        domain = self.config.evaluation.domain
        return [a for a in self.config.arms if a.method == method and self.config.pool(a) == pool
                and not self.config.replicate(a) and domain in a.domains(domain)]  # fmt: skip

    def best_of(self, pool: str, method: str) -> Arm | None:
        """The candidate with the best success on the tuning starts (then coverage, then config order); None
        until every candidate is evaluated there."""
        scored = [(self.tuning_results(arm), -index, arm) for index, arm in enumerate(self.candidates(pool, method))]
        if not scored or any(results is None for results, _, _ in scored):
            return None
        return max(scored, key=lambda item: (item[0]["success_rate"], item[0]["mean_max_coverage"], item[1]))[-1]

    def primary_arms(self) -> list[Arm]:
        """The clean arms and, per pool, the best treatment and control arms chosen so far (protocol)."""
        protocol = self.config.protocol
        if protocol is None:
            return []
        arms = [a for a in self.config.arms if a.method == "clean" and not self.config.replicate(a)]
        if protocol.primary:  # the arms of the stated comparisons, whatever the tuning starts say
            named = dict.fromkeys(name for c in protocol.primary for name in (c.arm, c.reference))
            return arms + [self.config.arm(name) for name in named if self.config.arm(name) not in arms]
        for pool in self.config.pools:
            arms += [best for method in (protocol.treatment, protocol.control) if (best := self.best_of(pool, method))]
        return arms

    def expected_primary_arms(self) -> int:
        protocol = self.config.protocol
        clean = sum(1 for a in self.config.arms if a.method == "clean" and not self.config.replicate(a))
        if protocol.primary:  # named, so all known now (a clean arm named in a comparison counted once)
            return len(self.primary_arms())
        return clean + sum(1 for pool in self.config.pools for m in (protocol.treatment, protocol.control) if self.candidates(pool, m))

    def replicate_arms(self) -> list[Arm]:
        """Each primary arm chosen so far again under each replicate seed (a 'best' sigma_min resolved)."""
        names = {a.name for a in self.config.arms}
        replicates = []
        for arm in self.primary_arms():
            for seed in self.config.protocol.replicate_seeds:
                name = f"{arm.name}_seed{seed}"
                if name in names:
                    raise ExperimentError(f"arm {name}: the config names an arm as the protocol's replicate of {arm.name} would be")
                update: dict[str, Any] = {"name": name, "seed": seed}
                if arm.sigma_min == "best":
                    update["sigma_min"] = self.best_sigma_min(arm)
                replicates.append(arm.model_copy(update=update))
                self._replicate_of[name] = arm
        return replicates

    def base_arm(self, arm: Arm) -> Arm:
        """The config arm a protocol replicate was made from (the arm itself otherwise)."""
        return self._replicate_of.get(arm.name, arm)

    def _corruption_kind(self, pool: str | None) -> str | None:
        corruption = self.config.root(pool).corruption if pool else None
        return corruption.kind if corruption else None

    def all_arms(self) -> list[Arm]:
        return list(self.config.arms) + self.replicate_arms()

"""The experiment's typed config (``experiments/*.yaml``): data, model, budget, arms, evaluation.

One YAML file names everything ``python -m eval.experiment`` runs; unknown keys are errors. Every
training arm gets the same model, the same optimiser settings and the same number of optimiser
steps, so arms differ only in their data and method.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from data_gen import strict_yaml
from data_gen.corruption import Corruption
from policies.classifier import ClassifierConfig
from policies.config import DEFAULT_ALPHA, PolicyConfig, Recorded, one_line

ARM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
ANNOTATION_NAME = "classifier"  # the corrupt store's annotation set the experiment writes and reads
SINGLE_POOL = "corrupt"  # the name of the corrupt pool when the config gives one (``corrupt: {n: ...}``)


class ExperimentError(Exception):
    """A bad config, or outputs of another config in the output directory; one line."""


class _Strict(Recorded):
    # Recorded: fields added later are left out of the ledger's sections while at their default.
    # allow_inf_nan: `lr: .inf` would pass `gt=0` and fail only when an arm starts training.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class DataSource(_Strict):
    """Where one pool's episodes come from: an existing store, or ``n`` generated with the GCS planner.

    Generated clean data is the closed-loop expert in ``target`` (physics replay, re-planning, only
    successful episodes kept); generated corrupt data is GCS plans replayed kinematically in ``sim``.
    """

    store: str | None = None  # an existing episode store (e.g. teleop); nothing is generated
    n: int = Field(0, ge=0)
    domain: str = "target"
    replay: Literal["kinematic", "physics"] = "kinematic"
    replan_every: int | None = Field(None, ge=1)
    keep: Literal["all", "successful"] = "all"
    overrides: tuple[str, ...] = ()  # domain overrides, e.g. "render.image_size=32"
    seed: int = Field(0, ge=0)
    # A controlled corruption (data_gen.corruption): jitter and bias are executed as the episodes are
    # generated (physics replay); label noise is applied to the finished store (given or generated).
    corruption: Corruption | None = None
    # Attempts per wanted episode before generation gives up: a corruption that makes the expert miss
    # more often (bias) needs more than the default's 2 when only successful episodes are kept.
    max_attempts_factor: float = Field(2.0, ge=1.0)
    # The SHA-256 (EpisodeStore.digest: ends, seeds, actions, states) the pool's store must have: data
    # made again (e.g. with images, for a store carried without them) are checked to be the episodes an
    # earlier run trained on. A check, not part of the data's identity (left out of the ledger's section).
    digest: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    # The first n episodes of another corrupt pool (by name), copied into a store of their own: nested
    # sets (500 in 2000 in 8000) for a curve over the data's size, the large set generated once.
    prefix_of: str | None = None

    omit_at_default = ("corruption", "max_attempts_factor", "digest", "prefix_of")

    @model_validator(mode="after")
    def _store_or_n(self) -> DataSource:
        if self.prefix_of is not None:
            others = sorted(self.model_fields_set - {"prefix_of", "n", "digest"})
            if self.n == 0 or others:
                raise ValueError(f"prefix_of {self.prefix_of}: give n (its first n episodes) and nothing of how to make them"
                                 + (f", not {others}" if others else ""))
            return self
        if (self.store is None) == (self.n == 0):
            raise ValueError("give either store (an existing episode store) or n > 0 episodes to generate")
        if self.corruption is not None and self.corruption.executed and (self.store is not None or self.replay != "physics"):
            raise ValueError(f"corruption {self.corruption.kind} is executed while generating: needs n and replay physics")
        return self

    def _recorded(self, data: dict) -> dict:
        # A prefix pool is its base's first n episodes: the generation fields (at their defaults, which
        # its validator insists on) do not apply, so its record is what it is, and it reads back.
        if self.prefix_of is not None:
            return {key: value for key, value in data.items() if key in ("prefix_of", "n", "digest")}
        return data

    @property
    def label_noise(self) -> bool:
        return self.corruption is not None and self.corruption.kind == "label_noise"


class ArmResources(_Strict):
    """What Ray reserves for each training arm (``backend: ray``); it starts an arm on any node with that much room."""

    cpus: int | None = Field(None, ge=1)  # default: the arm's torch threads
    # Default: one with device cuda, and with auto when the cluster has GPUs; none otherwise. A fraction
    # (0.5) lets two arms share one GPU.
    gpus: float | None = Field(None, ge=0)


class TrainingBudget(_Strict):
    """What every training arm shares: optimiser steps and settings, and how many train at once."""

    steps: int = Field(ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-4, gt=0)
    warmup_steps: int = Field(500, ge=0)
    checkpoint_every: int = Field(1000, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    parallel: int = Field(1, ge=1)  # arms trained at once
    # Torch threads per arm; default the machine's cores / parallel when the arm starts. Either way the
    # ledger records it and a resumed arm keeps it (the thread count changes a CPU run's weights).
    threads: int | None = Field(None, ge=1)
    # With backend ray, what each arm's task reserves; the local backend ignores it (its arms share this
    # machine's cores, ``parallel`` at a time). Where an arm runs does not change its weights.
    resources: ArmResources = ArmResources()
    # Steps whose checkpoints each arm also keeps (ckpt_STEP.pt, policies.train --keep-checkpoints): a
    # pilot's learning curve. Not part of an arm's identity: the weights are the same either way.
    keep_checkpoints: tuple[int, ...] = ()

    omit_at_default = ("threads", "resources", "keep_checkpoints")


class Evaluation(_Strict):
    """Closed-loop trials: every arm on the same start poses."""

    trials: int = Field(200, ge=1)
    domain: str = "target"
    max_steps: int | None = Field(None, ge=1)  # None: the task's 750
    workers: int = Field(2, ge=1)
    # Envs each worker steps in lockstep, one batched policy call for all; like workers, the per-trial
    # results do not depend on it (so neither is part of an evaluation's fingerprint).
    envs_per_worker: int = Field(1, ge=1)
    precision: Literal["float64", "float32"] = "float64"  # the policy's sampling (eval.rollout --precision)
    # Torch threads per worker (eval.rollout --threads); None: the cores / workers. 1 for an evaluation
    # that runs beside a training run. Like workers, not part of an evaluation's fingerprint.
    threads: int | None = Field(None, ge=1)
    device: Literal["cpu", "cuda"] = "cpu"  # where each worker's policy runs (its envs always simulate on CPU)
    videos: int = Field(2, ge=0)
    overrides: tuple[str, ...] = ()
    # The held-out start poses (evaluation seed): with it every arm is evaluated twice, on the tuning
    # starts (the experiment's seed), where every choice is made, and on these, where results are reported.
    heldout_seed: int | None = Field(None, ge=0)

    omit_at_default = ("heldout_seed", "threads")

    @model_validator(mode="after")
    def _batch_independent(self) -> Evaluation:
        if self.precision == "float32" and self.envs_per_worker > 1:
            raise ValueError("precision float32 with envs_per_worker > 1 would make the per-trial results depend on the batching")
        return self


class Arm(_Strict):
    """One line of the comparison.

    method: clean (clean data only), sim_only (corrupt data only, as if clean), cotrain, ambient, or
    expert (the closed-loop GCS planner, privileged, not trained). sigma_min (ambient): a number
    (dataset level), "classifier" (per sample, the experiment's annotation set), "best" (the
    dataset-level value of the best-scoring arm of its sweep, see ``ExperimentConfig.sweep``) or
    "true" (a label-noise pool's known per-episode level, its annotation set ``true``).
    """

    name: str
    method: Literal["clean", "sim_only", "cotrain", "ambient", "expert"]
    # The corrupt pool it trains on (sim_only, cotrain, ambient); needed when the config names several.
    corrupt: str | None = None
    alpha: float | None = Field(None, ge=0, le=1)
    alpha_schedule: tuple[float, float] | None = None  # clean weights at sigma 0 and 1, each in [0, 1]
    sigma_min: float | Literal["classifier", "best", "true"] | None = None
    sigma_max: float | None = Field(None, gt=0, le=1)
    corrupt_loss: Literal["denoise", "ambient"] = "denoise"
    # The ambient loss without contraction: the corrupt chunk is x_{sigma_min} as it is (label noise).
    contraction: bool = True
    s_max_factor: float | None = Field(None, gt=1)
    admission: Literal["sample_first", "step_first"] = "sample_first"
    eval_domains: tuple[str, ...] | None = None  # default: the evaluation's domain (sim_only: also "sim")
    # The training seed, default the experiment's: a replicate under another seed shows how far training
    # noise alone moves an arm. Its evaluation keeps the experiment's seed (the same start poses).
    seed: int | None = Field(None, ge=0)

    omit_at_default = ("corrupt", "contraction")

    @field_validator("sigma_min", mode="before")
    @classmethod
    def _yaml_true(cls, value):
        # YAML reads a bare `sigma_min: true` as a boolean; it means the known level, never 1.0.
        if isinstance(value, bool):
            if not value:
                raise ValueError("sigma_min: false means nothing; give a number, 'classifier', 'best' or 'true'")
            return "true"
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Arm:
        if not ARM_NAME.fullmatch(self.name):
            raise ValueError(f"arm name {self.name!r} must be letters, digits, '_', '-' or '.'")
        mixes = self.method in ("cotrain", "ambient")
        if self.alpha_schedule is not None and not all(0 <= a <= 1 for a in self.alpha_schedule):
            raise ValueError(f"arm {self.name}: alpha_schedule's clean weights must lie in [0, 1]")
        if not mixes and (self.alpha is not None or self.alpha_schedule is not None):
            raise ValueError(f"arm {self.name}: alpha applies to cotrain and ambient arms")
        ambient_only = (self.sigma_max, self.s_max_factor, None if self.corrupt_loss == "denoise" else self.corrupt_loss)
        if self.method != "ambient" and (self.sigma_min is not None or any(v is not None for v in ambient_only)):
            raise ValueError(f"arm {self.name}: sigma_min, sigma_max, corrupt_loss and s_max_factor apply to ambient arms")
        if self.method == "expert" and self.seed is not None:
            raise ValueError(f"arm {self.name}: seed (the training seed) applies to trained arms")
        if self.method == "ambient" and self.sigma_min is None:
            raise ValueError(f"arm {self.name}: an ambient arm needs sigma_min (a number, 'classifier', 'best' or 'true')")
        if isinstance(self.sigma_min, float) and not 0 <= self.sigma_min < 1:
            raise ValueError(f"arm {self.name}: sigma_min must lie in [0, 1)")
        if not self.contraction and self.corrupt_loss != "ambient":
            raise ValueError(f"arm {self.name}: contraction: false applies to corrupt_loss ambient")
        if self.corrupt is not None and self.method in ("clean", "expert"):
            raise ValueError(f"arm {self.name}: corrupt (the corrupt pool) applies to arms that train on corrupt data")
        return self

    @property
    def trained(self) -> bool:
        return self.method != "expert"

    @property
    def kind(self) -> str:
        """The arm without its pool and seed ("cotrain a0.25", "ambient s0.15 ambient-loss"): one line of a
        curve over the corrupt data's size."""
        if self.method == "cotrain":
            return f"cotrain a{DEFAULT_ALPHA if self.alpha is None else self.alpha}" if self.alpha_schedule is None else \
                f"cotrain a{self.alpha_schedule[0]}-{self.alpha_schedule[1]}"
        if self.method != "ambient":
            return self.method
        words = [f"ambient s{self.sigma_min}"]
        if self.corrupt_loss == "ambient":
            words.append("ambient-loss" if self.contraction else "ambient-loss no-contraction")
        if self.sigma_max is not None:
            words.append(f"smax{self.sigma_max}")
        if self.alpha is not None or self.alpha_schedule is not None:
            words.append(f"a{self.alpha}" if self.alpha_schedule is None else f"a{self.alpha_schedule[0]}-{self.alpha_schedule[1]}")
        if self.s_max_factor is not None:
            words.append(f"b{self.s_max_factor}")
        if self.admission != "sample_first":
            words.append(self.admission)
        return " ".join(words)

    @property
    def mixing(self) -> tuple:
        """How an ambient arm mixes in the corrupt data besides sigma_min: clean weight, sigma_max, admission order."""
        alpha = DEFAULT_ALPHA if self.alpha is None and self.alpha_schedule is None else self.alpha
        return alpha, self.alpha_schedule, self.sigma_max, self.admission, self.corrupt

    def domains(self, default: str) -> tuple[str, ...]:
        if self.eval_domains is not None:
            return self.eval_domains
        return (default, "sim") if self.method == "sim_only" and default != "sim" else (default,)


class Comparison(_Strict):
    """One comparison stated before the run: ``arm`` minus ``reference``, paired on the held-out starts."""

    arm: str
    reference: str


class Protocol(_Strict):
    """The comparison stated before the run (science.md §7), needing held-out starts.

    Per corrupt pool, the primary comparison is the best ``treatment`` arm against the best ``control``
    arm, each chosen by success on the tuning starts among that pool's arms of the method trained
    under the experiment's seed, and measured on the held-out starts. Every other comparison gets a
    Holm-adjusted p-value. The primary arms (the clean arms and each pool's two best) are trained
    again under ``replicate_seeds``, so the report gives each its mean and spread over seeds.
    """

    treatment: Literal["ambient"] = "ambient"
    control: Literal["cotrain"] = "cotrain"
    replicate_seeds: tuple[int, ...] = (1, 2)
    # Named comparisons in place of each pool's best treatment vs best control, when the question is
    # about given arms (a scaling study: the ambient loss vs the denoising loss at the largest size).
    # Their arms and the clean arms are then the primary arms; every other arm is still compared with
    # its pool's best control, chosen on the tuning starts.
    primary: tuple[Comparison, ...] = ()

    omit_at_default = ("primary",)


class ExperimentConfig(_Strict):
    """Everything ``python -m eval.experiment CONFIG.yaml`` runs."""

    name: str
    seed: int = Field(0, ge=0)
    clean: DataSource
    # One corrupt pool, or several by name (a controls experiment: one pool per corruption).
    corrupt: DataSource | dict[str, DataSource]
    # Whether the policies' and the classifier's action normaliser is fitted on every store or the
    # clean stores alone; label noise is drawn in the clean data's normalised units and needs "clean".
    action_normalizer: Literal["all", "clean"] = "all"
    protocol: Protocol | None = None
    policy: PolicyConfig
    training: TrainingBudget
    classifier: ClassifierConfig = ClassifierConfig()
    evaluation: Evaluation = Evaluation()
    data_workers: int = Field(2, ge=1)
    # Where data generation and evaluation run: local processes, or Ray actors (on the cluster at
    # ray_address, else RAY_ADDRESS, else a local instance). Same results either way, so no fingerprint holds it.
    backend: Literal["local", "ray"] = "local"
    ray_address: str | None = None
    arms: tuple[Arm, ...] = Field(min_length=1)

    omit_at_default = ("action_normalizer", "protocol")

    @model_validator(mode="after")
    def _unique_arms(self) -> ExperimentConfig:
        # The name is the default output directory (runs/experiments/NAME): one plain path component.
        if not ARM_NAME.fullmatch(self.name):
            raise ValueError(f"name {self.name!r} must be letters, digits, '_', '-' or '.' (it names the output directory)")
        self._check_pools()
        names = [arm.name for arm in self.arms]
        if self.ray_address is not None and self.backend != "ray":
            raise ValueError("ray_address needs backend: ray")
        if self.training.resources != ArmResources() and self.backend != "ray":  # the local backend would ignore it
            raise ValueError("training.resources needs backend: ray (local arms share this machine's cores, training.parallel at a time)")
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"arm names must be unique: {duplicated}")
        for arm in self.arms:
            if arm.sigma_min == "best" and not self.sweep(arm):
                raise ValueError(
                    f"arm {arm.name}: sigma_min 'best' needs a sweep to pick from: ambient arms with a numeric sigma_min, the "
                    "denoising loss, no s_max_factor, evaluated in the evaluation's domain, with its alpha, alpha_schedule, "
                    "sigma_max, admission and seed"
                )
        return self

    def _check_pools(self) -> None:
        for pool, source in self.pools.items():
            if isinstance(self.corrupt, dict) and (not ARM_NAME.fullmatch(pool) or pool == "clean"):
                raise ValueError(f"corrupt pool name {pool!r} must be letters, digits, '_', '-' or '.', and not 'clean'")
            if source.prefix_of is not None:
                base = self.pools.get(source.prefix_of) if isinstance(self.corrupt, dict) else None
                if base is None or base.prefix_of is not None:
                    raise ValueError(f"corrupt pool {pool}: prefix_of {source.prefix_of!r} must name another corrupt pool, "
                                     f"one that is not itself a prefix (pools: {sorted(self.pools)})")
                if base.store is None and base.n < source.n:
                    raise ValueError(f"corrupt pool {pool}: its first {source.n} episodes of {source.prefix_of}, which has {base.n}")
            if source.label_noise and self.action_normalizer != "clean":
                raise ValueError(f"corrupt pool {pool}: label noise is drawn in the clean data's units: set action_normalizer: clean")
        if self.clean.corruption is not None:
            raise ValueError("the clean pool takes no corruption")
        if self.clean.prefix_of is not None:
            raise ValueError("the clean pool cannot be a prefix of a corrupt pool (prefix_of applies to corrupt pools)")
        for arm in self.arms:
            if arm.method in ("sim_only", "cotrain", "ambient"):
                if arm.corrupt is None and len(self.pools) > 1:
                    raise ValueError(f"arm {arm.name}: name its corrupt pool (corrupt: one of {sorted(self.pools)})")
                if arm.corrupt is not None and arm.corrupt not in self.pools:
                    raise ValueError(f"arm {arm.name}: no corrupt pool {arm.corrupt!r}; pools are {sorted(self.pools)}")
            if arm.sigma_min == "true" and not self.root(self.pool(arm)).label_noise:
                raise ValueError(f"arm {arm.name}: sigma_min 'true' needs a label_noise pool, whose true noise level is known")
        heldout = self.evaluation.heldout_seed
        if (self.protocol is None) != (heldout is None) or heldout == self.seed:
            raise ValueError("a protocol and evaluation.heldout_seed go together, the held-out seed other than the experiment's "
                             "(the tuning starts): the held-out report is the protocol's")
        if self.protocol is not None:
            seeds = self.protocol.replicate_seeds
            if self.seed in seeds or len(set(seeds)) < len(seeds):
                raise ValueError("protocol.replicate_seeds must be distinct and other than the experiment's seed")
            primary = [a.name for a in self.arms if not self.replicate(a)
                       and (a.method == "clean" or a.method in (self.protocol.treatment, self.protocol.control))]
            for comparison in self.protocol.primary:
                for name in (comparison.arm, comparison.reference):
                    arm = next((a for a in self.arms if a.name == name), None)
                    if arm is None or not arm.trained or self.replicate(arm) or self.evaluation.domain not in arm.domains(self.evaluation.domain):
                        raise ValueError(f"protocol.primary names {name!r}: it must be a trained arm of the config, under the "
                                         f"experiment's seed, evaluated in {self.evaluation.domain}")
                    if arm.sigma_min == "best":  # replicated at once, before its sweep could choose its value
                        raise ValueError(f"protocol.primary names {name!r}, whose sigma_min 'best' is chosen during the run; "
                                         "name the sweep's arm with that value instead")
                if comparison.arm == comparison.reference:
                    raise ValueError(f"protocol.primary compares {comparison.arm} with itself")
            clash = sorted({f"{name}_seed{seed}" for name in primary for seed in seeds} & {a.name for a in self.arms})
            if clash:
                raise ValueError(f"arms {clash} are named as the protocol's replicates would be; rename them")

    @property
    def pools(self) -> dict[str, DataSource]:
        """The corrupt pools by name (``corrupt`` alone when the config gives one)."""
        return dict(self.corrupt) if isinstance(self.corrupt, dict) else {SINGLE_POOL: self.corrupt}

    def root(self, pool: str) -> DataSource:
        """The DataSource a corrupt pool's episodes come from: its own, or for a prefix its base's."""
        source = self.pools[pool]
        return self.pools[source.prefix_of] if source.prefix_of is not None else source

    def pool(self, arm: Arm) -> str | None:
        """The name of the corrupt pool an arm trains on (None for clean and expert arms)."""
        if arm.method in ("clean", "expert"):
            return None
        return arm.corrupt or next(iter(self.pools))

    def sweep(self, arm: Arm) -> list[Arm]:
        """The dataset-level sigma_min sweep a ``sigma_min: best`` arm takes its value from.

        The ambient arms with a numeric sigma_min, the denoising loss and no buffer (``s_max_factor``),
        evaluated in the evaluation's domain (where they are scored), that differ from ``arm`` in nothing
        else (``Arm.mixing`` and the training seed), so an arm that varies another lever (alpha,
        sigma_max, the seed) is not part of the sweep: it neither sets the best value nor holds it back
        until it is evaluated.
        """
        domain = self.evaluation.domain
        return [
            a for a in self.arms
            if a.method == "ambient" and isinstance(a.sigma_min, float) and a.corrupt_loss == "denoise" and a.s_max_factor is None
            and domain in a.domains(domain) and a.mixing == arm.mixing and self.training_seed(a) == self.training_seed(arm)
        ]  # fmt: skip

    def training_seed(self, arm: Arm) -> int:
        return self.seed if arm.seed is None else arm.seed

    def replicate(self, arm: Arm) -> bool:
        """Trained under another seed than the experiment's: a replicate, never the report's reference."""
        return self.training_seed(arm) != self.seed


    def arm(self, name: str) -> Arm:
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise ExperimentError(f"no arm {name!r}; arms are {[a.name for a in self.arms]}")

    @classmethod
    def load(cls, path: str | Path, backend: str | None = None) -> ExperimentConfig:
        """The config at ``path``; ``backend`` (``--backend``) replaces the YAML's before it is checked, so a
        YAML with ``ray_address`` or ``training.resources`` runs on Ray without saying ``backend: ray``."""
        path = Path(path)
        if not path.is_file():
            raise ExperimentError(f"{path}: no such experiment config")
        try:
            values = strict_yaml.safe_load(path.read_text())
        except yaml.YAMLError as error:
            raise ExperimentError(f"{path}: not valid YAML ({strict_yaml.describe(error)})") from None
        if backend is not None and isinstance(values, dict):
            values = {**values, "backend": backend}
        try:
            config = cls.model_validate(values)
        except ValidationError as error:
            where = f"{path} with --backend {backend}" if backend is not None else str(path)
            raise ExperimentError(f"{where}: {one_line(error)}") from None
        config.check_domains(path)
        return config

    def check_domains(self, where: str | Path = "config") -> None:
        """Every domain and override the run will use exists and applies, checked before any stage runs.

        A domain that does not exist would otherwise surface only in an evaluation worker, at start-up.
        """
        from pushing_sim.domains import DomainError, load_domain

        evaluation = self.evaluation
        uses = [("evaluation", evaluation.domain, evaluation.overrides)]
        uses += [(f"arm {arm.name}", domain, evaluation.overrides) for arm in self.arms for domain in arm.domains(evaluation.domain)]
        uses += [(f"pool {name}", source.domain, source.overrides) for name, source in {"clean": self.clean, **self.pools}.items()
                 if source.store is None]  # fmt: skip
        checked = set()
        for what, domain, overrides in uses:
            if (domain, overrides) in checked:
                continue
            try:
                load_domain(domain, list(overrides))
            except DomainError as error:
                raise ExperimentError(f"{where}: {what}: {error}") from None
            checked.add((domain, overrides))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

"""The experiment's data stages: the clean store and each corrupt pool's, and the classifier's sigma_min.

A pool is generated with the GCS planner (a corruption such as jitter or bias executed as it is
generated), given as an existing store, or, for label noise, derived from its base store in the clean
data's normalised units (data_gen.corruption). Each store's digest goes into the ledger, so a store
generated again on another machine must come out the same. ``ExperimentData`` is the part of
``eval.experiment.Experiment`` that owns these stages and the stores' paths.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from eval.experiment_config import ExperimentError


class ExperimentData:
    """Store paths and the data and sigma_min stages of an experiment (a base of ``Experiment``).

    It uses what ``Experiment`` sets up: ``config``, ``out``, ``ledger``, ``progress``, ``cores`` and
    ``_stage_header``.
    """

    def source(self, pool: str):
        """The DataSource of "clean" or of a corrupt pool."""
        return self.config.clean if pool == "clean" else self.config.pools[pool]

    def store(self, pool: str) -> Path:
        """The episode store of "clean" or of a corrupt pool (given, or ``data/<pool>.zarr``)."""
        source = self.source(pool)
        if source.store and not source.label_noise:
            return Path(source.store)
        return self.out / "data" / f"{pool}.zarr"

    def base_store(self, pool: str) -> Path:
        """The store a label-noise pool is made from: given, or generated as ``data/<pool>.raw.zarr``."""
        source = self.source(pool)
        return Path(source.store) if source.store else self.out / "data" / f"{pool}.raw.zarr"


    def annotation_name(self) -> str:
        return f"{self.config.name}-classifier"

    def data(self) -> None:
        """The clean store, then the corrupt pools the arms run use: generated, given, or for label noise
        derived from its base (so ``--arms`` of one pool makes that pool's data alone)."""
        # One pool: always made, since every arm's training section names it (as before pools had names).
        used = {self.config.pool(arm) for arm in self.arms} if isinstance(self.config.corrupt, dict) else set(self.config.pools)
        used |= {self.source(p).prefix_of for p in used if p is not None and self.source(p).prefix_of is not None}  # a prefix's base first
        pools = sorted((p for p in self.config.pools if p in used), key=lambda p: self.source(p).prefix_of is not None)
        for pool in ["clean"] + pools:
            source = self.source(pool)
            if source.prefix_of is not None:
                self._prefix(pool)
            elif not source.label_noise:
                self._pool_store(f"data/{pool}", source, self.store(pool), pool)
            else:
                self._pool_store(f"data/{pool}.raw", source.model_copy(update={"corruption": None}), self.base_store(pool), pool)
                self._label_noise(pool)

    def _pool_store(self, key: str, source, path: Path, pool: str) -> None:
        """Generate ``source`` into ``path`` (resuming), or check the store it names; record its digest."""
        from data_gen.gcs import GenerationConfig, generate
        from pushing_sim.domains import DomainError, load_domain

        if source.store:
            self._check_existing_store(key, path)
            if source.digest is not None:
                self._check_named_digest(key, path, store_digest(path))
            return
        section = source.model_dump(mode="json", exclude={"digest"})
        if self.ledger.is_done(key, section):
            if path.is_dir():  # kept, or carried in without images (eval.carry --states): it must be the same data
                self._record_digest(key, path, expected=self.ledger.result(key).get("digest"))
                return
            print(f"{path}: gone; generating it again (it must come out the same as before)")
            self.ledger.reopen(key)
        try:
            domain = load_domain(source.domain, list(source.overrides))
        except DomainError as error:
            raise ExperimentError(f"{pool}: {error}") from None
        generation = GenerationConfig(n=source.n, seed=source.seed, domain=domain, replay=source.replay,
                                      replan_every=source.replan_every, keep=source.keep, corruption=source.corruption,
                                      max_attempts_factor=source.max_attempts_factor)  # fmt: skip
        self.ledger.start(key, section)
        what = f"{source.n} episodes in {source.domain}" + (f" with {source.corruption.describe()}" if source.corruption else "")
        self._stage_header(f"data {pool}", f"{what} -> {path}")
        summary = generate(generation, path, workers=self.config.data_workers, progress=self.progress,
                           backend=self.config.backend, address=self.config.ray_address)  # fmt: skip
        self.ledger.add_seconds(key, summary.wall_time)
        if summary.interrupted:
            raise KeyboardInterrupt
        if summary.stored < source.n:
            raise ExperimentError(f"{path}: only {summary.stored} of {source.n} episodes could be generated")
        digest = self.ledger.result(key).get("digest")
        self.ledger.finish(key, 0.0, {"episodes": summary.stored, "attempts": summary.attempts})
        self._record_digest(key, path, expected=digest)

    def _label_noise(self, pool: str) -> None:
        """The label-noise pool: its base store with noisy labels in the clean data's normalised units."""
        from data_gen.corruption import write_label_noise
        from data_gen.episode_store import EpisodeStore

        key, path, source = f"data/{pool}", self.store(pool), self.source(pool)
        section = {"base": self.ledger.entries[f"data/{pool}.raw"]["section"], "corruption": source.corruption.model_dump(mode="json"),
                   "units": self.ledger.entries["data/clean"]["section"]}  # fmt: skip
        if self._kept(key, section, path, f"making it again from {self.base_store(pool)}"):
            return
        with EpisodeStore.open(self.store("clean")) as clean:
            actions = clean.array("action").astype(np.float64)
        self.ledger.start(key, section)
        self._stage_header(f"data {pool}", f"{source.corruption.describe()} -> {path}")
        started = time.perf_counter()
        summary = write_label_noise(self.base_store(pool), path, source.corruption, actions.min(axis=0), actions.max(axis=0),
                                    progress=self.progress)  # fmt: skip
        digest = self.ledger.result(key).get("digest")
        self.ledger.finish(key, time.perf_counter() - started, summary)
        self._record_digest(key, path, expected=digest)

    def _prefix(self, pool: str) -> None:
        """A prefix pool: the first n episodes of its base pool's store, copied (with its annotation sets)."""
        from data_gen.corruption import TRUE_ANNOTATION
        from data_gen.episode_store import StoreError
        from data_gen.subset import write_prefix

        key, path, source = f"data/{pool}", self.store(pool), self.source(pool)
        section = {"prefix_of": self.ledger.entries[f"data/{source.prefix_of}"]["section"], "n": source.n}
        if self._kept(key, section, path, f"copying it again from {self.store(source.prefix_of)}"):
            return
        self.ledger.start(key, section)
        self._stage_header(f"data {pool}", f"the first {source.n} episodes of {source.prefix_of} -> {path}")
        started = time.perf_counter()
        try:
            # The label noise's true levels belong to the episodes; the base's classifier set does not.
            summary = write_prefix(self.store(source.prefix_of), path, source.n, progress=self.progress, annotations=(TRUE_ANNOTATION,))
        except StoreError as error:
            raise ExperimentError(str(error)) from None
        digest = self.ledger.result(key).get("digest")
        self.ledger.finish(key, time.perf_counter() - started, summary)
        self._record_digest(key, path, expected=digest)

    def _kept(self, key: str, section: dict, path: Path, again: str) -> bool:
        """Whether a store made from others is done and still there (its digest checked); one that is gone
        is reopened in the ledger, to be made ``again`` (it must come out the same)."""
        if not self.ledger.is_done(key, section):
            return False
        if path.is_dir():
            self._record_digest(key, path, expected=self.ledger.result(key).get("digest"))
            return True
        print(f"{path}: gone; {again} (it must come out the same as before)")
        self.ledger.reopen(key)
        return False

    def _record_digest(self, key: str, path: Path, expected: str | None = None) -> None:
        """Record the store's digest; a regenerated store must match the one the finished arms used."""
        result = self.ledger.result(key)
        if "digest" in result and expected is None:
            self._check_named_digest(key, path, result["digest"])
            return
        digest = store_digest(path)
        if expected is not None and digest != expected:
            raise ExperimentError(
                f"{path}: differs from the data the finished arms used (digest {digest[:12]} != "
                f"{expected[:12]}); remove {self.out / 'arms'} to train every arm on the new data"
            )
        self._check_named_digest(key, path, digest)
        self.ledger.finish(key, 0.0, {**result, "digest": digest})

    def _check_named_digest(self, key: str, path: Path, digest: str) -> None:
        """ExperimentError unless the store has the digest its pool's config names (if it names one)."""
        pool = key.removeprefix("data/")
        named = None if pool.endswith(".raw") else self.source(pool).digest
        if named is not None and digest != named:
            raise ExperimentError(f"{path}: its episodes are not those the config's {pool}.digest names "
                                  f"({digest[:12]} != {named[:12]}); generation did not reproduce them")  # fmt: skip

    def _check_existing_store(self, key: str, path: Path) -> None:
        from data_gen.episode_store import EpisodeStore

        with EpisodeStore.open(path) as store:
            section = {"store": str(path.resolve()), "episodes": store.n_episodes, "steps": store.n_steps}
        if not self.ledger.is_done(key, section):
            self.ledger.start(key, section)
            self.ledger.finish(key, 0.0)

    def data_sections(self, pool: str | None = None) -> dict:
        """The data sections a stage depends on: clean and, of the corrupt pools, ``pool``'s (a config
        with one pool: always it, as before pools had names)."""
        pools = list(self.config.pools) if not isinstance(self.config.corrupt, dict) else [pool] if pool else []
        keys = ["data/clean"] + [f"data/{p}" for p in pools]
        return {key: self.ledger.entries[key]["section"] for key in keys if key in self.ledger.entries}

    def classifier_key(self, pool: str) -> str:
        return "sigma_min" if not isinstance(self.config.corrupt, dict) else f"sigma_min/{pool}"

    def sigma_min(self, pool: str) -> None:
        """The cross-fitted classifier's per-sample sigma_min of one corrupt pool, as its annotation set."""
        from data_gen.episode_store import EpisodeStore
        from policies.classifier import mean_t_min
        from policies.classify import annotate

        key = self.classifier_key(pool)
        classifier = self.config.classifier.model_copy(update={"action_normalizer": self.config.action_normalizer})
        section = {"classifier": classifier.model_dump(mode="json"), "data": self.data_sections(pool),
                   "annotation": self.annotation_name()}  # fmt: skip
        corrupt = self.store(pool)
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
        result = annotate([self.store("clean")], [corrupt], classifier, name=self.annotation_name(),
                          overwrite=True, progress=self.progress)  # fmt: skip
        values = result.sigma_min[str(corrupt)]
        measured = {"mean_sigma_min": float(values.mean()), "mean_t_min": mean_t_min(values), "heldout_accuracy": result.accuracy}
        if self.config.root(pool).label_noise:  # the classifier's recovery of the known level
            measured["recovery"] = self._recovery(corrupt, values)
        self.ledger.finish(key, time.perf_counter() - started, measured)

    @staticmethod
    def _recovery(corrupt: Path, estimated) -> dict:
        """Per episode, the classifier's sigma_min against the true s: Spearman rank correlation and mean absolute error."""
        from scipy import stats

        from data_gen.corruption import TRUE_ANNOTATION
        from data_gen.episode_store import EpisodeStore

        with EpisodeStore.open(corrupt) as store:
            true = store.annotation(TRUE_ANNOTATION).sigma_min
            starts = np.concatenate([[0], store.episode_ends[:-1]]).astype(np.int64)
        lengths = np.diff(np.concatenate([starts, [len(true)]]))
        estimate = np.add.reduceat(np.asarray(estimated, np.float64), starts) / lengths  # the episode's mean
        truth = np.asarray(true, np.float64)[starts]  # constant over an episode
        rho = stats.spearmanr(estimate, truth).statistic if np.ptp(estimate) > 0 else float("nan")
        return {"spearman": float(rho), "mean_abs_error": float(np.mean(np.abs(estimate - truth))), "episodes": int(len(starts))}


def store_digest(path: Path) -> str:
    """SHA-256 of a store's episodes (``EpisodeStore.digest``: ends, seeds, actions and states; images follow from the states)."""
    from data_gen.episode_store import EpisodeStore

    with EpisodeStore.open(path) as store:
        return store.digest()

"""Data diagnostics: action spectra, the corruption spectrum and sigma_min distributions (science.md §5).

    python -m eval.analyze --store data/target.zarr --store data/sim.zarr [--out DIR] [--pairs 10000] [--chunk 32]
                           [--no-baselines] [--distance-bins 3] [--bootstrap 1000] [--annotation NAME ...]

The first store is the clean one, the second the corrupt one. Writes to DIR (default ``analysis/``
next to the first store):

- ``psd_<store>.png``: PSD of action chunks per action dimension and averaged, log-log, with the
  fitted power law;
- ``corruption_spectrum.png`` (two stores or more): PSD of clean-minus-corrupt action chunks over
  pairs matched by state, against the flat noise floors of the DDPM levels ``--noise-steps`` (where
  the curve is below a floor, noise at that level masks the difference), and beside it, per
  state-distance bin, its baselines (``eval.spectra.corruption_comparison``): clean vs other clean
  and corrupt vs other corrupt, each chunk against its nearest neighbours in other episodes of its
  own set, with the same chunks, pair count and bins. Two demos from nearby states differ by their
  own variety; only power above clean vs clean (the "excess") reads as corruption (science.md §7);
- ``sigma_min_<store>_<set>.png``: histogram of per-step sigma_min, one per annotation set of each
  store (the store module's ``annotations/<set>``): by default every set a store holds, with
  ``--annotation NAME`` (repeatable) only those, and then every store must hold each of them;
- ``summary.png``: the above side by side;
- ``analysis.json``: the config and every number drawn. Each store's ``"sigma_min"`` maps set name
  to its histogram, ``{}`` for a store with no sets. ``corruption_spectrum`` holds the overall
  clean-vs-corrupt spectrum, ``comparisons`` (pairs per bin of each comparison), ``bins`` (per
  distance bin: each comparison's mean PSD, total power with a bootstrap interval and power-law fit,
  and the excess over clean vs clean with its verdict) and ``matched`` (the same averaged over the
  bins both populate, weighted as clean vs corrupt).

A histogram reports ``mean_t_min``, the mean of t_min = ``policies.noise.first_admissible_step``
(the smallest DDPM step t with sigma_t > sigma_min, over training's float32 schedule
``policies.noise.ddpm_sigmas``), the one sigma <-> step rule the policies use. t_min is T
(``NUM_TRAIN_TIMESTEPS``) for a sigma_min no step exceeds; those samples are counted in
``n_without_admissible_step`` and included in the mean as T. No t_min indexes the schedule; the
noise floors index it only with ``--noise-steps``, checked to lie in [0, T - 1].

Actions are min-max normalised to [-1, 1] per dimension over all the stores given, as the policy
normalises them, so spectra and noise floors share the diffusion model's units. Only the low-dim
arrays are read, never the images. Bad inputs exit with code 2 and a one-line message.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Literal, NoReturn

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from scipy.signal import get_window
from tqdm import tqdm

from data_gen.cli import ArgumentParser, fail, flag_message, no_empty_dirs_on_failure
from data_gen.episode_store import EpisodeStore, StoreError
from eval.analysis_report import print_summary, write_figures
from eval.neighbours import DEFAULT_ANGLE_SCALE_M
from eval.spectra import (
    CONTROL_RATE_HZ,
    Comparison,
    CorruptionComparison,
    Demonstrations,
    Spectrum,
    band_power,
    chunk_psd,
    chunk_starts,
    corruption_comparison,
    fit_power_law,
    masking_floor,
    percentile_interval,
)
from policies.noise import ddpm_sigmas, first_admissible_step

NUM_TRAIN_TIMESTEPS = 100
JSON_NAME = "analysis.json"
COMPARISONS = ("clean_vs_corrupt", "clean_vs_clean", "corrupt_vs_corrupt")
MIN_BIN_PAIRS = 10  # fewer pairs in a distance bin: counted, no spectrum
INTERVAL_LEVEL = 0.95


class AnalysisError(Exception):
    """A bad input to the analysis; the message is one line."""


class AnalysisConfig(BaseModel):
    """Everything that decides the analysis; saved in analysis.json."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stores: list[Path] = Field(min_length=1)  # first clean, second corrupt
    out: Path | None = None  # default: analysis/ next to the first store
    chunk: int = Field(32, ge=4)  # steps per action chunk (16 = the policy horizon)
    stride: int | None = Field(None, ge=1)  # between chunks of the per-store PSD; default chunk // 2
    pairs: int = Field(10_000, ge=1)  # pairs of the corruption spectrum, and of each baseline
    baselines: bool = True  # clean vs other clean and corrupt vs other corrupt at matched state distance
    distance_bins: int = Field(3, ge=1)  # state-distance bins (equal counts of clean/corrupt pairs)
    bootstrap: int = Field(1000, ge=0)  # resamples of episodes for the intervals; 0: none
    window: str = "hann"
    detrend: Literal["constant", "linear", "none"] = "constant"
    angle_scale: float = Field(DEFAULT_ANGLE_SCALE_M, gt=0)  # metres per radian in the state distance
    noise_steps: tuple[int, ...] = (5, 10, 20, 40, 80)  # DDPM steps whose noise floors are drawn
    sigma_bins: int = Field(40, ge=1)
    annotations: tuple[str, ...] | None = None  # sigma_min sets to plot; None: every set each store holds
    seed: int = 0

    @field_validator("window")
    @classmethod
    def _known_window(cls, window: str) -> str:
        try:
            get_window(window, 8)
        except ValueError as error:
            raise ValueError(f"unknown window {window!r} ({error})") from None
        return window

    @field_validator("noise_steps")
    @classmethod
    def _steps_in_schedule(cls, steps: tuple[int, ...]) -> tuple[int, ...]:
        bad = [t for t in steps if not 0 <= t < NUM_TRAIN_TIMESTEPS]
        if bad:
            raise ValueError(f"noise steps must be in [0, {NUM_TRAIN_TIMESTEPS - 1}], got {bad}")
        return tuple(sorted(set(steps)))

    @field_validator("annotations")
    @classmethod
    def _unique_names(cls, names: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return None if names is None else tuple(dict.fromkeys(names))

    @property
    def out_dir(self) -> Path:
        return self.out if self.out is not None else self.stores[0].parent / "analysis"

    @property
    def psd_stride(self) -> int:
        return self.stride if self.stride is not None else max(1, self.chunk // 2)


@dataclass(frozen=True)
class LoadedStore:
    """The low-dim arrays of one store, under a file-name-safe name."""

    name: str
    path: Path
    demos: Demonstrations
    sigma_min: dict[str, np.ndarray]  # annotation set name -> (N,) per-step sigma_min


# --------------------------------------------------------------------------------------------------
# The analysis


def analyze(config: AnalysisConfig, progress: bool = True) -> dict[str, Any]:
    """Run the diagnostics, write the PNGs and analysis.json, print a summary; return the JSON content."""
    started = time.perf_counter()
    timing: dict[str, float] = {}
    bar = partial(tqdm, disable=None if progress else True, leave=False)  # None: only on a terminal

    stores = _open_stores(config.stores, config.chunk)
    sets = [_annotation_sets(store, config.annotations) for store in stores]
    out_dir = _output_dir(config.out_dir)
    stores = [_load(store, name, names, bar) for store, name, names in zip(stores, _names(config.stores), sets)]
    timing["load"] = time.perf_counter() - started

    low, high = _action_range([s.demos.action for s in stores])
    scale = 2.0 / (high - low)
    normalised = [replace(s.demos, action=(s.demos.action - low) * scale - 1.0) for s in stores]

    tick = time.perf_counter()
    spectra = [
        chunk_psd(
            demos.action,
            chunk_starts(demos.episode_ends, config.chunk, config.psd_stride),
            config.chunk,
            window=config.window,
            detrend=config.detrend,
            progress=partial(bar, desc=f"PSD {store.name}", unit="batch"),
        )
        for store, demos in zip(stores, normalised)
    ]
    timing["psd"] = time.perf_counter() - tick

    sigmas = ddpm_sigmas(NUM_TRAIN_TIMESTEPS)
    store_results = [
        _store_result(store, spectrum, sigmas, config.sigma_bins) for store, spectrum in zip(stores, spectra)
    ]

    tick = time.perf_counter()
    corruption = None
    if len(stores) < 2:
        print("eval.analyze: one store given, skipping the corruption spectrum (it needs a clean and a corrupt store)")
    else:
        if len(stores) > 2:
            print(f"eval.analyze: corruption spectrum of {stores[0].name} vs {stores[1].name} only; "
                  "further stores get PSDs")
        corruption = _corruption_result(stores[0], stores[1], normalised[0], normalised[1], config, sigmas, bar)
    timing["corruption"] = time.perf_counter() - tick

    tick = time.perf_counter()
    figures = write_figures(out_dir, store_results, corruption)
    timing["plots"] = time.perf_counter() - tick
    timing["total"] = time.perf_counter() - started

    result = _jsonable({
        "config": json.loads(config.model_dump_json()),
        "control_rate_hz": CONTROL_RATE_HZ,
        "num_train_timesteps": NUM_TRAIN_TIMESTEPS,
        "units": "PSD of actions min-max normalised to [-1, 1] over all stores, per Hz (eval.spectra convention)",
        "normalisation": {"action_min": low.tolist(), "action_max": high.tolist()},
        "stores": store_results,
        "corruption_spectrum": corruption,
        "figures": figures,
        "timing_s": timing,
    })
    with open(out_dir / JSON_NAME, "w") as file:
        json.dump(result, file, indent=1, allow_nan=False)
    print_summary(result, out_dir)
    return result


def _open_stores(paths: list[Path], chunk: int) -> list[EpisodeStore]:
    """Open every store and check it has an episode of ``chunk`` steps, before reading any data."""
    stores = []
    for path in paths:
        store = EpisodeStore.open(path, "r")
        if store.n_episodes == 0:
            raise AnalysisError(f"{path}: the store holds no episodes")
        longest = int(np.max(np.diff(store.episode_ends, prepend=0)))
        if longest < chunk:
            raise AnalysisError(f"{path}: --chunk {chunk} is longer than every episode (longest {longest} steps)")
        stores.append(store)
    action_dims = {store.action_dim for store in stores}
    if len(action_dims) > 1:
        raise AnalysisError(f"stores have different action dims {[store.action_dim for store in stores]}")
    return stores


def _annotation_sets(store: EpisodeStore, wanted: tuple[str, ...] | None) -> tuple[str, ...]:
    """The annotation sets to plot for a store: ``wanted`` (each must be there), or all it holds."""
    held = store.annotation_names
    if wanted is None:
        return held
    for name in wanted:
        if name not in held:
            raise AnalysisError(f"{store.path}: no annotation set {name!r} (sets: {list(held) or 'none'})")
    return wanted


def _load(store: EpisodeStore, name: str, sets: tuple[str, ...], bar) -> LoadedStore:
    """The low-dim arrays and the chosen sets' sigma_min of a store (the images are never read)."""
    reads = [("data", key) for key in ("action", "agent_pos", "slider_pose")] + [("set", s) for s in sets]
    arrays, sigma_min = {}, {}
    for kind, key in bar(reads, desc=f"load {name}", unit="array"):
        if kind == "data":
            arrays[key] = store.array(key)
        else:
            sigma_min[key] = store.annotation(key).sigma_min
    demos = Demonstrations(arrays["action"], arrays["agent_pos"], arrays["slider_pose"], store.episode_ends)
    return LoadedStore(name, store.path, demos, sigma_min)


def _action_range(actions: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension min and max over all stores; a constant dimension gets a range of 2 (centred, unscaled)."""
    low = np.min([a.min(axis=0) for a in actions], axis=0).astype(np.float64)
    high = np.max([a.max(axis=0) for a in actions], axis=0).astype(np.float64)
    flat = high - low <= 0
    low[flat], high[flat] = low[flat] - 1.0, high[flat] + 1.0
    return low, high


def _store_result(store: LoadedStore, spectrum: Spectrum, sigmas: np.ndarray, bins: int) -> dict[str, Any]:
    ends = store.demos.episode_ends
    return {
        "name": store.name,
        "path": str(store.path),
        "n_episodes": len(ends),
        "n_steps": int(ends[-1]),
        "psd": _spectrum_result(spectrum),
        "sigma_min": {name: _sigma_min_result(values, sigmas, bins) for name, values in store.sigma_min.items()},
    }


def _spectrum_result(spectrum: Spectrum) -> dict[str, Any]:
    return {
        "n_chunks": spectrum.n_chunks,
        "frequencies_hz": spectrum.frequencies,
        "per_dim": spectrum.per_dim.T,  # (D, F): one list per action dimension
        "mean": spectrum.mean,
        "fit": _fit(spectrum.frequencies, spectrum.mean),
        "fit_per_dim": [_fit(spectrum.frequencies, column) for column in spectrum.per_dim.T],
    }


def _fit(frequencies: np.ndarray, power: np.ndarray) -> dict[str, float] | None:
    """Slope and intercept over all positive bins; None when the power is zero (constant actions)."""
    try:
        law = fit_power_law(frequencies, power)
    except ValueError:
        return None
    return {"slope": law.slope, "intercept": law.intercept}


def _sigma_min_result(sigma_min: np.ndarray, sigmas: np.ndarray, bins: int) -> dict[str, Any]:
    """Histogram over [0, 1] of one set's per-step sigma_min (the store keeps them finite, in [0, 1]) and its t_min."""
    values = np.asarray(sigma_min, dtype=np.float64)
    counts, edges = np.histogram(values, bins=bins, range=(0.0, 1.0))
    t_min = first_admissible_step(values, sigmas)  # len(sigmas) where no step is admissible
    return {
        "n_samples": len(values),
        "mean": float(values.mean()),
        "median": float(np.median(values)),
        "mean_t_min": float(t_min.mean()),
        "n_without_admissible_step": int(np.count_nonzero(t_min == len(sigmas))),
        "bin_edges": edges,
        "counts": counts,
    }


def _corruption_result(
    clean: LoadedStore,
    corrupt: LoadedStore,
    clean_demos: Demonstrations,
    corrupt_demos: Demonstrations,
    config: AnalysisConfig,
    sigmas: np.ndarray,
    bar,
) -> dict[str, Any]:
    with bar(total=1, desc="corruption spectrum and baselines (KD-trees)") as progress:
        comparison = corruption_comparison(
            clean_demos,
            corrupt_demos,
            config.chunk,
            n_pairs=config.pairs,
            n_bins=config.distance_bins,
            baselines=config.baselines,
            n_draws=config.bootstrap,
            min_bin_pairs=MIN_BIN_PAIRS,
            angle_scale=config.angle_scale,
            rng=np.random.default_rng(config.seed),
            window=config.window,
            detrend=config.detrend,
        )
        progress.update()
    spectrum = comparison.clean_vs_corrupt.spectra.overall
    positive = spectrum.frequencies > 0
    floors = []
    for t in config.noise_steps:
        floor = masking_floor(float(sigmas[t]))
        masked = positive & (spectrum.mean < floor)
        floors.append({
            "t": t,
            "sigma": float(sigmas[t]),
            "floor": floor,
            "masked_frequencies_hz": spectrum.frequencies[masked],
            "masked_fraction": float(masked.sum() / positive.sum()),
        })
    return {
        "clean": clean.name,
        "corrupt": corrupt.name,
        "n_pairs": spectrum.n_chunks,
        "neighbour_distance": _distance_summary(comparison.clean_vs_corrupt.pairs.distances),
        **_spectrum_result(spectrum),
        "total_power": band_power(spectrum.frequencies, spectrum.mean),
        "noise_floors": floors,
        **_baseline_results(comparison, {"clean": clean.name, "corrupt": corrupt.name}, config),
    }


def _baseline_results(comparison: CorruptionComparison, names: dict[str, str], config: AnalysisConfig) -> dict:
    """Per distance bin: the three comparisons' power side by side and the excess over clean vs clean."""
    f, edges = comparison.frequencies, comparison.edges
    compared = {key: getattr(comparison, key) for key in COMPARISONS}
    has_baseline = comparison.clean_vs_clean is not None
    excess_means, excess_draws = comparison.excess() if has_baseline else ([None] * (len(edges) - 1), None)
    bins = []
    for b, excess in enumerate(excess_means):
        entry: dict[str, Any] = {"bin": b, "distance_m": [edges[b], edges[b + 1]]}
        for key, item in compared.items():
            spectrum = None if item is None else item.spectra.bins[b]
            entry[key] = None if spectrum is None else {
                **_power_result(f, spectrum.mean, item.spectra.draws[:, b], spectrum.n_chunks,
                                item.spectra.episodes_per_bin[b]),
                "median_distance_m": float(np.median(item.pairs.distances[item.spectra.pair_bins == b])),
            }
        episodes = min(item.spectra.episodes_per_bin[b] for item in compared.values() if item is not None)
        entry["excess"] = None if excess is None else _excess_result(f, excess, excess_draws[:, b], episodes)
        bins.append(entry)
    return {
        "baselines": config.baselines,
        "distance_bins": {
            "edges_m": edges,
            "min_pairs": MIN_BIN_PAIRS,
            "rule": "equal counts of clean-vs-corrupt pairs (0, their quantiles, their maximum); a baseline pair "
                    "beyond the last edge is in no bin; a bin needs min_pairs pairs for a spectrum",
        },
        "comparisons": {key: None if item is None else _pairs_result(item, names) for key, item in compared.items()},
        "bins": bins,
        "matched": _matched_result(comparison) if has_baseline else None,
        "total_power_definition": "sum over the frequencies f > 0 of the mean-over-dims PSD times the bin width "
                                  "(normalised action^2)",
        "bootstrap": {
            "draws": config.bootstrap,
            "level": INTERVAL_LEVEL,
            "resampled": f"each draw resamples the {names['clean']} and the {names['corrupt']} episodes once; a pair "
                         "weighs the product of its two episodes' counts; every comparison uses the same draws, so "
                         "the excess is paired",
        },
    }


def _pairs_result(item: Comparison, names: dict[str, str]) -> dict[str, Any]:
    counts = item.spectra.counts
    return {
        "query": names[item.query],
        "reference": names[item.reference],
        "own_episode_excluded": item.query == item.reference,
        "n_pairs": len(item.pairs.distances),
        "neighbour_distance": _distance_summary(item.pairs.distances),
        "pairs_per_bin": counts,
        "query_episodes_per_bin": item.spectra.episodes_per_bin,
        "pairs_beyond_last_bin": int(np.count_nonzero(item.spectra.pair_bins < 0)),
        "populated_bins": [b for b, spectrum in enumerate(item.spectra.bins) if spectrum is not None],
    }


def _power_result(f: np.ndarray, mean: np.ndarray, draws: np.ndarray, n_pairs: int, episodes: int) -> dict[str, Any]:
    return {
        "n_pairs": n_pairs,
        "mean": mean,
        "fit": _fit(f, mean),
        "total_power": band_power(f, mean),
        "total_power_interval": _interval(band_power(f, draws), episodes),
    }


def _excess_result(f: np.ndarray, excess: np.ndarray, draws: np.ndarray, episodes: int) -> dict[str, Any]:
    total_interval = _interval(band_power(f, draws), episodes)
    if total_interval is None:
        verdict = "no interval"
    else:
        verdict = "above" if total_interval[0] > 0 else "below" if total_interval[1] < 0 else "within"
    return {
        "mean": excess,
        "interval": _interval(draws, episodes),  # [low (F,), high (F,)]
        "total_power": band_power(f, excess),
        "total_power_interval": total_interval,
        "verdict": verdict,
    }


def _matched_result(comparison: CorruptionComparison) -> dict[str, Any] | None:
    """The comparisons averaged over the bins both clean vs corrupt and clean vs clean populate (weights: the first)."""
    bins = comparison.matched_bins()
    if len(bins) == 0:
        return None
    f = comparison.frequencies
    result: dict[str, Any] = {"bins": bins, "weights": comparison.matched_weights()}
    averaged = {}
    for key in COMPARISONS:
        item = getattr(comparison, key)
        averaged[key] = None if item is None else comparison.matched(item)
        if averaged[key] is None:
            result[key] = None
            continue
        n_pairs = int(item.spectra.counts[bins].sum())
        episodes = int(item.spectra.episodes_per_bin[bins].min())
        result[key] = _power_result(f, *averaged[key], n_pairs, episodes)
    (corrupt_mean, corrupt_draws), (clean_mean, clean_draws) = averaged["clean_vs_corrupt"], averaged["clean_vs_clean"]
    episodes = int(comparison.clean_vs_corrupt.spectra.episodes_per_bin[bins].min())
    result["excess"] = _excess_result(f, corrupt_mean - clean_mean, corrupt_draws - clean_draws, episodes)
    return result


def _interval(draws: np.ndarray, episodes: int) -> list | None:
    """[low, high] of the bootstrap draws; None without draws, or with one episode (no spread to resample)."""
    if len(draws) == 0 or episodes < 2:
        return None
    low, high = percentile_interval(draws, INTERVAL_LEVEL)
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
        return None
    return [low, high]


def _distance_summary(distances: np.ndarray) -> dict[str, float]:
    return {"median": float(np.median(distances)), "p90": float(np.percentile(distances, 90))}


# --------------------------------------------------------------------------------------------------
# Helpers


def _names(paths: list[Path]) -> list[str]:
    """File-name-safe store names from the paths (``target.zarr`` -> ``target``), made unique."""
    names: list[str] = []
    for i, path in enumerate(paths):
        stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(path).name.removesuffix(".zarr")) or "store"
        names.append(stem if stem not in names else f"{stem}_{i}")
    return names


def _output_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise AnalysisError(f"{path}: cannot create the output directory ({error.strerror})") from None
    return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


# --------------------------------------------------------------------------------------------------
# Command line


def _fail(message: str) -> NoReturn:
    fail("python -m eval.analyze", message)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m eval.analyze", description=__doc__.splitlines()[0])
    parser.add_argument("--store", action="append", required=True, type=Path,
                        help="episode store; give it twice: clean first, then corrupt")
    parser.add_argument("--out", type=Path, help="output directory (default: analysis/ next to the first store)")
    parser.add_argument("--pairs", type=int, default=10_000,
                        help="clean/corrupt pairs of the corruption spectrum (and pairs of each baseline)")
    parser.add_argument("--baselines", action=argparse.BooleanOptionalAction, default=True,
                        help="clean vs other clean and corrupt vs other corrupt at matched state distance")
    parser.add_argument("--distance-bins", type=int, default=3,
                        help="state-distance bins, equal counts of clean/corrupt pairs")
    parser.add_argument("--bootstrap", type=int, default=1000, help="resamples of episodes for the intervals; 0: none")
    parser.add_argument("--chunk", type=int, default=32, help="steps per action chunk")
    parser.add_argument("--stride", type=int, help="steps between chunks of the per-store PSD (default chunk // 2)")
    parser.add_argument("--window", default="hann", help="taper (any scipy.signal.get_window name)")
    parser.add_argument("--detrend", default="constant", choices=["constant", "linear", "none"])
    parser.add_argument("--angle-scale", type=float, default=DEFAULT_ANGLE_SCALE_M,
                        help="metres per radian of slider rotation in the state distance")
    parser.add_argument("--noise-steps", type=int, nargs="+", default=[5, 10, 20, 40, 80],
                        help="DDPM steps (of 100) whose noise floors are drawn")
    parser.add_argument("--annotation", action="append", metavar="NAME",
                        help="annotation set whose sigma_min to plot (repeatable; default: every set of each store)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        config = AnalysisConfig(
            stores=args.store, out=args.out, chunk=args.chunk, stride=args.stride, pairs=args.pairs,
            baselines=args.baselines, distance_bins=args.distance_bins, bootstrap=args.bootstrap,
            window=args.window, detrend=args.detrend, angle_scale=args.angle_scale,
            noise_steps=tuple(args.noise_steps), seed=args.seed,
            annotations=None if args.annotation is None else tuple(args.annotation),
        )
    except ValidationError as error:
        _fail(flag_message(error, parser.flags() | {"stores": "--store", "annotations": "--annotation"}))
    try:
        with no_empty_dirs_on_failure(config.out_dir):
            analyze(config)
    except (AnalysisError, StoreError) as error:
        _fail(str(error))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Data diagnostics: action spectra, the corruption spectrum and sigma_min distributions (science.md §5).

    python -m eval.analyze --store data/target.zarr --store data/sim.zarr [--out DIR] [--pairs 10000] [--chunk 32]
                           [--annotation NAME ...]

The first store is the clean one, the second the corrupt one. Writes to DIR (default ``analysis/``
next to the first store):

- ``psd_<store>.png``: PSD of action chunks per action dimension and averaged, log-log, with the
  fitted power law;
- ``corruption_spectrum.png`` (two stores or more): PSD of clean-minus-corrupt action chunks over
  pairs matched by state (``eval.spectra.corruption_spectrum``), against the flat noise floors of
  the DDPM levels ``--noise-steps``: where the curve is below a floor, noise at that level masks
  the corruption;
- ``sigma_min_<store>_<set>.png``: histogram of per-step sigma_min, one per annotation set of each
  store (the store module's ``annotations/<set>``): by default every set a store holds, with
  ``--annotation NAME`` (repeatable) only those, and then every store must hold each of them;
- ``summary.png``: the above side by side;
- ``analysis.json``: the config and every number drawn. Each store's ``"sigma_min"`` maps set name
  to its histogram, ``{}`` for a store with no sets.

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

import json
import sys
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Literal, NoReturn

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from scipy.signal import get_window
from tqdm import tqdm

from data_gen.cli import ArgumentParser, fail, no_empty_dirs_on_failure
from data_gen.episode_store import EpisodeStore, StoreError
from eval.neighbours import DEFAULT_ANGLE_SCALE_M
from eval.spectra import (
    CONTROL_RATE_HZ,
    Demonstrations,
    PowerLaw,
    Spectrum,
    chunk_psd,
    chunk_starts,
    corruption_spectrum,
    fit_power_law,
    masking_floor,
)
from policies.noise import ddpm_sigmas, first_admissible_step

NUM_TRAIN_TIMESTEPS = 100
JSON_NAME = "analysis.json"


class AnalysisError(Exception):
    """A bad input to the analysis; the message is one line."""


class AnalysisConfig(BaseModel):
    """Everything that decides the analysis; saved in analysis.json."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stores: list[Path] = Field(min_length=1)  # first clean, second corrupt
    out: Path | None = None  # default: analysis/ next to the first store
    chunk: int = Field(32, ge=4)  # steps per action chunk (16 = the policy horizon)
    stride: int | None = Field(None, ge=1)  # between chunks of the per-store PSD; default chunk // 2
    pairs: int = Field(10_000, ge=1)  # clean/corrupt pairs of the corruption spectrum
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
    figures = _write_figures(out_dir, store_results, corruption)
    timing["plots"] = time.perf_counter() - tick
    timing["total"] = time.perf_counter() - started

    result = _jsonable({
        "config": json.loads(config.model_dump_json()),
        "control_rate_hz": CONTROL_RATE_HZ,
        "units": "PSD of actions min-max normalised to [-1, 1] over all stores, per Hz (eval.spectra convention)",
        "normalisation": {"action_min": low.tolist(), "action_max": high.tolist()},
        "stores": store_results,
        "corruption_spectrum": corruption,
        "figures": figures,
        "timing_s": timing,
    })
    with open(out_dir / JSON_NAME, "w") as file:
        json.dump(result, file, indent=1, allow_nan=False)
    _print_summary(result, out_dir)
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
    with bar(total=1, desc="corruption spectrum (KD-tree)") as progress:
        result = corruption_spectrum(
            clean_demos,
            corrupt_demos,
            config.chunk,
            n_pairs=config.pairs,
            angle_scale=config.angle_scale,
            rng=np.random.default_rng(config.seed),
            window=config.window,
            detrend=config.detrend,
        )
        progress.update()
    spectrum = result.spectrum
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
        "n_pairs": len(result.clean_starts),
        "neighbour_distance": {
            "median": float(np.median(result.distances)),
            "p90": float(np.percentile(result.distances, 90)),
        },
        **_spectrum_result(spectrum),
        "noise_floors": floors,
    }


# --------------------------------------------------------------------------------------------------
# Figures


def _write_figures(out_dir: Path, stores: list[dict], corruption: dict | None) -> dict[str, Any]:
    figures: dict[str, Any] = {"psd": {}, "sigma_min": {}}
    for store in stores:
        figures["psd"][store["name"]] = _save(out_dir, f"psd_{store['name']}.png", _draw_store_psd, store)
    if corruption is not None:
        figures["corruption_spectrum"] = _save(
            out_dir, "corruption_spectrum.png", _draw_corruption, corruption, stores[0]
        )
    for store in stores:
        figures["sigma_min"][store["name"]] = {
            set_name: _save(out_dir, f"sigma_min_{store['name']}_{set_name}.png", _draw_sigma_min, store, set_name)
            for set_name in store["sigma_min"]
        }
    figures["summary"] = _write_summary(out_dir, stores, corruption)
    return figures


def _save(out_dir: Path, name: str, draw, *args) -> str:
    figure = Figure(figsize=(6.4, 4.8), layout="constrained")
    draw(figure.add_subplot(), *args)
    figure.savefig(out_dir / name, dpi=110)
    return name


def _write_summary(out_dir: Path, stores: list[dict], corruption: dict | None) -> str:
    panels = [(_draw_all_psd, (stores,))]
    if corruption is not None:
        panels.append((_draw_corruption, (corruption, stores[0])))
    panels += [(_draw_sigma_min, (store, set_name)) for store in stores for set_name in store["sigma_min"]]
    figure = Figure(figsize=(5.2 * len(panels), 5.0), layout="constrained")
    for axes, (draw, args) in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels):
        draw(axes, *args)
    slopes = ", ".join(f"{s['name']} {_slope_text(s['psd']['fit'])}" for s in stores)
    title = f"PSD slopes: {slopes}"
    if corruption is not None:
        title += f"  |  corruption {corruption['clean']} vs {corruption['corrupt']}: {_slope_text(corruption['fit'])}"
    figure.suptitle(title)
    figure.savefig(out_dir / "summary.png", dpi=90)
    return "summary.png"


def _draw_store_psd(axes, store: dict) -> None:
    psd = store["psd"]
    f, positive = np.asarray(psd["frequencies_hz"]), np.asarray(psd["frequencies_hz"]) > 0
    for d, column in enumerate(psd["per_dim"]):
        axes.loglog(f[positive], np.asarray(column)[positive], lw=1, alpha=0.7, label=f"action dim {d}")
    axes.loglog(f[positive], np.asarray(psd["mean"])[positive], "k", lw=2, label="mean over dims")
    _draw_fit(axes, f[positive], psd["fit"])
    axes.set_title(f"{store['name']}: PSD of {psd['n_chunks']} action chunks")
    _label_psd_axes(axes)


def _draw_all_psd(axes, stores: list[dict]) -> None:
    for store in stores:
        psd = store["psd"]
        f = np.asarray(psd["frequencies_hz"])
        line, = axes.loglog(f[f > 0], np.asarray(psd["mean"])[f > 0], lw=2, label=store["name"])
        _draw_fit(axes, f[f > 0], psd["fit"], color=line.get_color())
    axes.set_title("PSD of action chunks (mean over dims)")
    _label_psd_axes(axes)


def _draw_corruption(axes, corruption: dict, clean: dict) -> None:
    f = np.asarray(corruption["frequencies_hz"])
    positive = f > 0
    clean_f = np.asarray(clean["psd"]["frequencies_hz"])
    axes.loglog(clean_f[clean_f > 0], np.asarray(clean["psd"]["mean"])[clean_f > 0], color="0.6", lw=1.5,
                label=f"{clean['name']} actions (reference)")
    axes.loglog(f[positive], np.asarray(corruption["mean"])[positive], "k", lw=2,
                label=f"{corruption['clean']} - {corruption['corrupt']} ({corruption['n_pairs']} pairs)")
    colours = iter(["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink"] * 20)
    for level in corruption["noise_floors"]:
        axes.axhline(level["floor"], color=next(colours), ls="--", lw=1,
                     label=f"noise floor t={level['t']} (sigma {level['sigma']:.2f})")
    axes.set_title("corruption spectrum vs noise floors\n(below a floor = masked at that noise level)")
    _label_psd_axes(axes, fontsize=7)


def _draw_sigma_min(axes, store: dict, set_name: str) -> None:
    hist = store["sigma_min"][set_name]
    edges = np.asarray(hist["bin_edges"])
    axes.stairs(hist["counts"], edges, fill=True, alpha=0.7)
    axes.axvline(hist["mean"], color="k", ls="--",
                 label=f"mean {hist['mean']:.3f} (mean t_min {hist['mean_t_min']:.1f})")
    axes.set_xlabel("sigma_min")
    axes.set_ylabel("samples")
    axes.set_title(f"{store['name']} / {set_name}: sigma_min of {hist['n_samples']} steps")
    axes.legend(fontsize=8)


def _draw_fit(axes, frequencies: np.ndarray, fit: dict | None, color: str = "r") -> None:
    if fit is not None:
        law = PowerLaw(fit["slope"], fit["intercept"])
        axes.loglog(frequencies, law(frequencies), ls=":", color=color, lw=1.5,
                    label=f"fit f^{fit['slope']:.2f}, log10 P(1 Hz) = {fit['intercept']:.2f}")


def _plain_tick(value: float, _position: int) -> str:
    """'0.2', '1', '5' for the ticks with leading digit 1, 2 or 5; blank for the rest (they would overlap)."""
    if value <= 0:
        return ""
    leading = round(value / 10 ** np.floor(np.log10(value)), 6)
    return f"{value:g}" if leading in (1.0, 2.0, 5.0) else ""


def _label_psd_axes(axes, fontsize: int = 8) -> None:
    axes.set_xlabel("frequency (Hz)")
    axes.set_ylabel("PSD (normalised action$^2$ / Hz)")
    axes.xaxis.set_major_formatter(FuncFormatter(_plain_tick))
    axes.xaxis.set_minor_formatter(FuncFormatter(_plain_tick))
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=fontsize)


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


def _slope_text(fit: dict | None) -> str:
    return "no fit (zero power)" if fit is None else f"slope {fit['slope']:.2f}"


def _print_summary(result: dict[str, Any], out_dir: Path) -> None:
    config = result["config"]
    print(f"eval.analyze: chunks of {config['chunk']} steps at {CONTROL_RATE_HZ:g} Hz, "
          f"actions normalised to [-1, 1] over all stores")
    for store in result["stores"]:
        fit = store["psd"]["fit"]
        intercept = "" if fit is None else f", log10 P(1 Hz) {fit['intercept']:.2f}"
        sets = "no sigma_min sets" if not store["sigma_min"] else f"sigma_min sets {', '.join(store['sigma_min'])}"
        print(f"  {store['name']:>12}: {store['n_episodes']} episodes, {store['n_steps']} steps, "
              f"PSD {_slope_text(fit)}{intercept}; {sets}")
        for set_name, sigma in store["sigma_min"].items():
            print(f"  {'':>12}  {set_name}: sigma_min mean {sigma['mean']:.3f}, median {sigma['median']:.3f}, "
                  f"mean t_min {sigma['mean_t_min']:.1f} of {NUM_TRAIN_TIMESTEPS} "
                  f"({sigma['n_without_admissible_step']} steps with none admissible)")
    corruption = result["corruption_spectrum"]
    if corruption is not None:
        distance = corruption["neighbour_distance"]
        print(f"  corruption spectrum {corruption['clean']} vs {corruption['corrupt']}: {corruption['n_pairs']} pairs, "
              f"neighbour distance median {distance['median']:.4f} (p90 {distance['p90']:.4f}), "
              f"{_slope_text(corruption['fit'])}")
        for level in corruption["noise_floors"]:
            masked = level["masked_frequencies_hz"]
            where = "none" if len(masked) == 0 else f"{min(masked):.2f}-{max(masked):.2f} Hz"
            print(f"    t={level['t']:>2} sigma {level['sigma']:.3f}: "
                  f"masks {level['masked_fraction']:.0%} of bins ({where})")
    timing = result["timing_s"]
    print(f"  wrote {out_dir} in {timing['total']:.2f} s (load {timing['load']:.2f}, PSD {timing['psd']:.2f}, "
          f"corruption {timing['corruption']:.2f}, plots {timing['plots']:.2f})")


# --------------------------------------------------------------------------------------------------
# Command line


def _fail(message: str) -> NoReturn:
    fail("python -m eval.analyze", message)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m eval.analyze", description=__doc__.splitlines()[0])
    parser.add_argument("--store", action="append", required=True, type=Path,
                        help="episode store; give it twice: clean first, then corrupt")
    parser.add_argument("--out", type=Path, help="output directory (default: analysis/ next to the first store)")
    parser.add_argument("--pairs", type=int, default=10_000, help="clean/corrupt pairs of the corruption spectrum")
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
            window=args.window, detrend=args.detrend, angle_scale=args.angle_scale,
            noise_steps=tuple(args.noise_steps), seed=args.seed,
            annotations=None if args.annotation is None else tuple(args.annotation),
        )
    except ValidationError as error:
        first = error.errors()[0]
        _fail(f"{'.'.join(map(str, first['loc']))}: {first['msg']}")
    try:
        with no_empty_dirs_on_failure(config.out_dir):
            analyze(config)
    except (AnalysisError, StoreError) as error:
        _fail(str(error))
    return 0


if __name__ == "__main__":
    sys.exit(main())

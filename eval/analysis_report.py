"""What ``python -m eval.analyze`` shows: its figures and its printed summary, drawn from analysis.json's numbers.

Every function takes the JSON-ready dicts of ``eval.analyze`` (lists, not arrays), so a figure or a
printed line shows exactly what the file holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from eval.spectra import PowerLaw

# One style per comparison, the same in every panel.
COMPARISON_STYLES = {
    "clean_vs_corrupt": {"color": "k", "ls": "-", "lw": 2.0},
    "clean_vs_clean": {"color": "tab:blue", "ls": "--", "lw": 1.8},
    "corrupt_vs_corrupt": {"color": "tab:orange", "ls": ":", "lw": 2.0},
}
FLOOR_COLOURS = ("tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")


def write_figures(out_dir: Path, stores: list[dict], corruption: dict | None) -> dict[str, Any]:
    """Write every PNG into ``out_dir``; return their file names, keyed like analysis.json's ``figures``."""
    figures: dict[str, Any] = {"psd": {}, "sigma_min": {}}
    for store in stores:
        figures["psd"][store["name"]] = _save(out_dir, f"psd_{store['name']}.png", _draw_store_psd, store)
    if corruption is not None:
        figures["corruption_spectrum"] = _save_corruption(out_dir, "corruption_spectrum.png", corruption, stores[0])
    for store in stores:
        figures["sigma_min"][store["name"]] = {
            set_name: _save(out_dir, f"sigma_min_{store['name']}_{set_name}.png", _draw_sigma_min, store, set_name)
            for set_name in store["sigma_min"]
        }
    figures["summary"] = _write_summary(out_dir, stores, corruption)
    return figures


def slope_text(fit: dict | None) -> str:
    return "no fit (zero power)" if fit is None else f"slope {fit['slope']:.2f}"


def print_summary(result: dict[str, Any], out_dir: Path) -> None:
    config = result["config"]
    print(f"eval.analyze: chunks of {config['chunk']} steps at {result['control_rate_hz']:g} Hz, "
          f"actions normalised to [-1, 1] over all stores")
    for store in result["stores"]:
        fit = store["psd"]["fit"]
        intercept = "" if fit is None else f", log10 P(1 Hz) {fit['intercept']:.2f}"
        sets = "no sigma_min sets" if not store["sigma_min"] else f"sigma_min sets {', '.join(store['sigma_min'])}"
        print(f"  {store['name']:>12}: {store['n_episodes']} episodes, {store['n_steps']} steps, "
              f"PSD {slope_text(fit)}{intercept}; {sets}")
        for set_name, sigma in store["sigma_min"].items():
            print(f"  {'':>12}  {set_name}: sigma_min mean {sigma['mean']:.3f}, median {sigma['median']:.3f}, "
                  f"mean t_min {sigma['mean_t_min']:.1f} of {result['num_train_timesteps']} "
                  f"({sigma['n_without_admissible_step']} steps with none admissible)")
    corruption = result["corruption_spectrum"]
    if corruption is not None:
        distance = corruption["neighbour_distance"]
        print(f"  corruption spectrum {corruption['clean']} vs {corruption['corrupt']}: {corruption['n_pairs']} pairs, "
              f"neighbour distance median {distance['median']:.4f} (p90 {distance['p90']:.4f}), "
              f"{slope_text(corruption['fit'])}")
        for level in corruption["noise_floors"]:
            masked = level["masked_frequencies_hz"]
            where = "none" if len(masked) == 0 else f"{min(masked):.2f}-{max(masked):.2f} Hz"
            print(f"    t={level['t']:>2} sigma {level['sigma']:.3f}: "
                  f"masks {level['masked_fraction']:.0%} of bins ({where})")
        _print_baselines(corruption)
    timing = result["timing_s"]
    print(f"  wrote {out_dir} in {timing['total']:.2f} s (load {timing['load']:.2f}, PSD {timing['psd']:.2f}, "
          f"corruption {timing['corruption']:.2f}, plots {timing['plots']:.2f})")


_VERDICTS = {
    "above": "above the clean demos' own variety: corruption",
    "within": "within the baseline's spread: not distinguishable from the demos' own variety",
    "below": "below the baseline: clean and corrupt chunks differ less than two clean demos do",
    "no interval": "no interval (no bootstrap, or one episode): read the numbers side by side",
}


def _print_baselines(corruption: dict[str, Any]) -> None:
    """The three comparisons side by side per distance bin and over the matched bins, and what the excess says."""
    if not corruption["baselines"]:
        print("    no baselines (--no-baselines): this spectrum includes the demos' own variety")
        return
    clean, corrupt, comparisons = corruption["clean"], corruption["corrupt"], corruption["comparisons"]
    labels = {"clean_vs_corrupt": f"{clean} - {corrupt}", "clean_vs_clean": f"{clean} - other {clean}",
              "corrupt_vs_corrupt": f"{corrupt} - other {corrupt}"}
    for key, name in (("clean_vs_clean", clean), ("corrupt_vs_corrupt", corrupt)):
        if comparisons[key] is None:
            print(f"    no {labels[key]} baseline: {name} has full chunks in one episode only")
            del labels[key]
    print("    against its baselines at matched state distance (neighbours from other episodes of the same set); "
          "total power of the differences (normalised action^2) [95% bootstrap over episodes]:")
    for entry in corruption["bins"]:
        low, high = entry["distance_m"]
        counts = {key: comparisons[key]["pairs_per_bin"][entry["bin"]] for key in labels}
        _print_comparisons(f"bin {entry['bin'] + 1}, distance {low:.4f}-{high:.4f} m", entry, labels, counts)
    matched = corruption["matched"]
    if matched is not None:
        bins = ", ".join(str(b + 1) for b in matched["bins"])
        _print_comparisons(f"matched: bins {bins} weighted as {labels['clean_vs_corrupt']}", matched, labels, {})
    for key in labels:
        if comparisons[key]["pairs_beyond_last_bin"]:
            print(f"      {labels[key]}: {comparisons[key]['pairs_beyond_last_bin']} of {comparisons[key]['n_pairs']} "
                  "pairs beyond the last bin (in no bin)")
    if matched is None and "clean_vs_clean" in labels:
        print(f"      no bin holds {corruption['distance_bins']['min_pairs']} pairs of both "
              f"{labels['clean_vs_corrupt']} and {labels['clean_vs_clean']}: no matched comparison")


def _print_comparisons(title: str, entry: dict[str, Any], labels: dict[str, str], counts: dict[str, int]) -> None:
    """One block: each comparison's total power, interval, slope and pairs, then the excess and its verdict."""
    print(f"      {title}")
    width = max(map(len, labels.values())) + 2
    for key, label in labels.items():
        power = entry[key]
        if power is None:
            print(f"        {label:<{width}}{'-':<40} ({counts.get(key, 0)} pairs: too few for a spectrum)")
            continue
        where = f", median distance {power['median_distance_m']:.4f} m" if "median_distance_m" in power else ""
        text = f"{_power_text(power)}  {slope_text(power['fit'])}"
        print(f"        {label:<{width}}{text:<40} ({power['n_pairs']} pairs{where})")
    if entry["excess"] is not None:
        excess = entry["excess"]
        print(f"        {'excess':<{width}}{_power_text(excess, signed=True)}: {_VERDICTS[excess['verdict']]}")
        corrupt, clean = (entry[key].get("median_distance_m") for key in ("clean_vs_corrupt", "clean_vs_clean"))
        if corrupt and clean and not 0.8 < clean / corrupt < 1.25:
            print(f"        {'':<{width}}caution: the pairs' median distances in this bin differ ({corrupt:.4f} vs "
                  f"{clean:.4f} m); more --distance-bins match them more closely")


def _power_text(power: dict[str, Any], signed: bool = False) -> str:
    interval, form = power["total_power_interval"], "+.4f" if signed else ".4f"
    spread = "" if interval is None else f" [{interval[0]:{form}}, {interval[1]:{form}}]"
    return f"{power['total_power']:{form}}{spread}"


def _save(out_dir: Path, name: str, draw, *args) -> str:
    figure = Figure(figsize=(6.4, 4.8), layout="constrained")
    draw(figure.add_subplot(), *args)
    figure.savefig(out_dir / name, dpi=110)
    return name


def _save_corruption(out_dir: Path, name: str, corruption: dict, clean: dict) -> str:
    """The corruption spectrum against the noise floors, then one panel per distance bin with its baselines."""
    panels = [(_draw_corruption, (corruption, clean))]
    if corruption["baselines"]:
        panels += [(_draw_distance_bin, (corruption, entry)) for entry in corruption["bins"]]
    figure = Figure(figsize=(5.6 * len(panels), 5.0), layout="constrained")
    row = figure.subplots(1, len(panels), squeeze=False)[0]
    for axes, (draw, args) in zip(row, panels):
        draw(axes, *args)
    if len(row) > 1:  # the bins on one scale, so that their levels compare at a glance
        limits = np.array([axes.get_ylim() for axes in row[1:]])
        for axes in row[1:]:
            axes.set_ylim(limits[:, 0].min(), limits[:, 1].max())
    figure.savefig(out_dir / name, dpi=100)
    return name


def _write_summary(out_dir: Path, stores: list[dict], corruption: dict | None) -> str:
    panels = [(_draw_all_psd, (stores,))]
    if corruption is not None:
        panels.append((_draw_corruption, (corruption, stores[0])))
    panels += [(_draw_sigma_min, (store, set_name)) for store in stores for set_name in store["sigma_min"]]
    figure = Figure(figsize=(5.2 * len(panels), 5.0), layout="constrained")
    for axes, (draw, args) in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels):
        draw(axes, *args)
    slopes = ", ".join(f"{s['name']} {slope_text(s['psd']['fit'])}" for s in stores)
    title = f"PSD slopes: {slopes}"
    if corruption is not None:
        title += f"  |  corruption {corruption['clean']} vs {corruption['corrupt']}: {slope_text(corruption['fit'])}"
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
    """Clean vs corrupt against the noise floors; with baselines, all three over the matched bins and the excess."""
    f = np.asarray(corruption["frequencies_hz"])
    clean_f = np.asarray(clean["psd"]["frequencies_hz"])
    axes.loglog(clean_f[clean_f > 0], np.asarray(clean["psd"]["mean"])[clean_f > 0], color="0.6", lw=1.5,
                label=f"{clean['name']} actions (reference)")
    matched = corruption.get("matched")
    if matched is None:
        axes.loglog(f[f > 0], np.asarray(corruption["mean"])[f > 0], **COMPARISON_STYLES["clean_vs_corrupt"],
                    label=f"{corruption['clean']} - {corruption['corrupt']} ({corruption['n_pairs']} pairs)")
        title = "corruption spectrum vs noise floors"
    else:
        _draw_comparisons(axes, f, corruption, matched)
        bins = ", ".join(str(b + 1) for b in matched["bins"])
        title = f"matched state distance (bins {bins}) vs noise floors"
    for level, colour in zip(corruption["noise_floors"], FLOOR_COLOURS * 20):
        axes.axhline(level["floor"], color=colour, ls="--", lw=0.8, alpha=0.8,
                     label=f"noise floor t={level['t']} (sigma {level['sigma']:.2f})")
    axes.set_title(f"{title}\n(below a floor = masked at that noise level)")
    _label_psd_axes(axes, fontsize=6)


def _draw_distance_bin(axes, corruption: dict, entry: dict) -> None:
    f = np.asarray(corruption["frequencies_hz"])
    _draw_comparisons(axes, f, corruption, entry)
    low, high = entry["distance_m"]
    counts = " / ".join(str(corruption["comparisons"][key]["pairs_per_bin"][entry["bin"]])
                        for key in COMPARISON_STYLES if corruption["comparisons"][key] is not None)
    axes.set_title(f"distance bin {entry['bin'] + 1}: {low:.4f}-{high:.4f} m\npairs {counts}")
    _label_psd_axes(axes, fontsize=7)


def _draw_comparisons(axes, f: np.ndarray, corruption: dict, entry: dict) -> None:
    """The three difference spectra of one bin (or the matched average) and the excess, on one log-log axes."""
    positive = f > 0
    names = {"clean_vs_corrupt": (corruption["clean"], corruption["corrupt"]),
             "clean_vs_clean": (corruption["clean"], f"other {corruption['clean']}"),
             "corrupt_vs_corrupt": (corruption["corrupt"], f"other {corruption['corrupt']}")}
    for key, style in COMPARISON_STYLES.items():
        power = entry.get(key)
        if power is not None:
            query, reference = names[key]
            axes.loglog(f[positive], np.asarray(power["mean"])[positive], **style,
                        label=f"{query} - {reference} ({slope_text(power['fit'])})")
    excess = entry.get("excess")
    if excess is not None:
        values = np.asarray(excess["mean"])[positive]
        above, below = values > 0, values < 0
        axes.loglog(f[positive][above], values[above], "o", color="tab:red", ms=5,
                    label="excess over clean - other clean")
        axes.loglog(f[positive][below], -values[below], "o", mfc="none", color="tab:red", ms=5,
                    label="|excess| where negative")


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

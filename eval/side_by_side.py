"""`python -m eval.side_by_side --state RESULTS --image RESULTS`: one experiment's arms with two observation kinds.

The image comparison (``experiments/images.yaml``) trains the arms of the state run
(``experiments/cpu.yaml``) on the same data with pixels instead of the state vector; what changes with
pixels is read arm by arm. Both runs evaluate on the start poses of their experiment seed (the image
run's tuning starts, the state run's only ones; start i depends on the seed and i alone), so an arm's
two policies are compared trial by trial there:
image minus state, with the paired bootstrap interval and the exact McNemar p. The image run's
held-out number (seed 1) and its mean over training seeds stand beside it. Writes ``side_by_side.md``,
``side_by_side.json`` and ``side_by_side.png`` (grouped bars) into ``--out``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from data_gen.cli import ArgumentParser, no_empty_dirs_on_failure
from eval.metrics import paired_comparison


class SideBySideError(Exception):
    """A results file this cannot read or pair; the message is one line."""


def load_report(path: Path) -> dict[str, Any]:
    """An experiment's results.json (or its folder)."""
    path = path / "results.json" if path.is_dir() else path
    if not path.is_file():
        raise SideBySideError(f"{path}: no such results file (an experiment's results.json)")
    try:
        report = json.loads(path.read_text())
        if not _well_formed(report):
            raise KeyError("arms")
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
        raise SideBySideError(f"{path}: not an experiment's results.json (eval.experiment writes one)") from None
    return {**report, "path": str(path)}


def _well_formed(report: Any) -> bool:
    """The fields this reads, of the types it reads them as: rows with trials and per-trial successes."""
    if not isinstance(report, dict) or not isinstance(report.get("config", {}), dict) or not isinstance(report.get("arms"), list):
        return False
    for row in report["arms"]:
        if not isinstance(row, dict) or not {"arm", "domain", "successes", "trials", "success_by_trial"} <= row.keys():
            return False
        trials, by_trial = row["trials"], row["success_by_trial"]
        if not isinstance(trials, int) or trials < 1 or not isinstance(by_trial, list) or len(by_trial) != trials:
            return False
        if not all(isinstance(v, bool) for v in by_trial) or row["successes"] != sum(by_trial):
            return False
    seeds = report.get("seeds", [])
    return isinstance(seeds, list) and all(
        isinstance(s, dict) and {"arm", "mean", "sd", "training_seeds"} <= s.keys() for s in seeds
    )


def evaluation_setting(report: dict[str, Any]) -> dict[str, Any]:
    """What makes two runs' trials comparable start by start besides the seed: domain, overrides, episode length."""
    evaluation = report.get("config", {}).get("evaluation", {})
    return {"domain": evaluation.get("domain", "target"), "overrides": list(evaluation.get("overrides", [])),
            "max_steps": evaluation.get("max_steps")}  # fmt: skip


def rows_by_starts(report: dict[str, Any]) -> dict[str, dict[tuple[str, str], dict]]:
    """{"tuning" | "heldout": {(arm, domain): row}} for the arms trained under the experiment's seed.

    A report written before the held-out protocol has one set of starts, the experiment seed's: its
    rows count as evaluated on the tuning starts.
    """
    seed = int(report.get("config", {}).get("seed", 0))
    out: dict[str, dict[tuple[str, str], dict]] = {"tuning": {}, "heldout": {}}
    for row in report["arms"]:
        if row.get("replicate"):
            continue
        starts = row.get("starts", "tuning")
        if starts == "tuning" and row.get("eval_seed", seed) != seed:
            raise SideBySideError(f"{report['path']}: arm {row['arm']} is marked tuning but evaluated with seed {row['eval_seed']}")
        out.setdefault(starts, {})[(row["arm"], row["domain"])] = row
    return out


def seed_means(report: dict[str, Any]) -> dict[str, dict]:
    """{arm: {"mean", "sd", "n"}} of the held-out success over training seeds, where the run has replicates."""
    return {s["arm"]: {"mean": s["mean"], "sd": s["sd"], "n": len(s["training_seeds"])} for s in report.get("seeds", [])}


def side_by_side(state: dict[str, Any], image: dict[str, Any]) -> dict[str, Any]:
    """Per arm of the image run (matched to the state run's by name and evaluation domain): the state result, the image result on the same
    starts, the paired image-minus-state difference, and the image run's held-out result."""
    seeds = [int(r.get("config", {}).get("seed", 0)) for r in (state, image)]
    if seeds[0] != seeds[1]:
        raise SideBySideError(f"the runs' tuning starts differ (experiment seeds {seeds[0]} and {seeds[1]}): nothing to pair")
    settings = [evaluation_setting(r) for r in (state, image)]
    if settings[0] != settings[1]:
        differ = ", ".join(f"{k} {settings[0][k]!r} vs {settings[1][k]!r}" for k in settings[0] if settings[0][k] != settings[1][k])
        raise SideBySideError(f"the runs' trials are not alike ({differ}): nothing to pair")
    domain = settings[1]["domain"]  # the run's own domain; the replicates' spread is measured there
    state_rows, image_rows = rows_by_starts(state)["tuning"], rows_by_starts(image)
    image_heldout, means = image_rows["heldout"], seed_means(image)
    keys = list(dict.fromkeys([*image_rows["tuning"], *image_heldout]))
    arms = []
    for key in keys:
        s, i, h = state_rows.get(key), image_rows["tuning"].get(key), image_heldout.get(key)
        paired = None
        if s is not None and i is not None:
            if len(s["success_by_trial"]) != len(i["success_by_trial"]):
                raise SideBySideError(f"arm {key[0]}: {s['trials']} state trials and {i['trials']} image trials on the tuning starts cannot be paired")
            paired = paired_comparison(i["success_by_trial"], s["success_by_trial"])
        arms.append({
            "arm": key[0], "domain": key[1], "role": (i or h or s).get("role"),
            "state": _summary(s), "image": _summary(i), "image_minus_state": paired,
            "image_heldout": _summary(h),
            "image_heldout_over_seeds": means.get(key[0]) if h is not None and key[1] == domain else None,
        })  # fmt: skip
    state_only = [f"{arm} ({where})" if where != domain else arm for arm, where in state_rows if (arm, where) not in keys]
    return {"state": state["path"], "image": image["path"], "tuning_seed": seeds[0],
            "heldout_seed": image.get("config", {}).get("evaluation", {}).get("heldout_seed"), "arms": arms,
            "state_only": state_only}  # fmt: skip


def _summary(row: dict | None) -> dict | None:
    if row is None:
        return None
    return {"successes": int(row["successes"]), "trials": int(row["trials"]), "success_rate": row["successes"] / row["trials"],
            "ci95": row.get("ci95")}  # fmt: skip


def _rate(summary: dict | None) -> str:
    if summary is None:
        return "-"
    return f"{summary['successes']}/{summary['trials']} ({100 * summary['success_rate']:.1f}%)"


def markdown(table: dict[str, Any]) -> str:
    heldout = table["heldout_seed"]
    lines = [
        "# State vs image policies, arm by arm",
        "",
        f"State: `{table['state']}`; image: `{table['image']}`. Both on the start poses of evaluation seed "
        f"{table['tuning_seed']} (the image run's tuning starts), paired trial by trial; the image run's "
        + (f"held-out starts are seed {heldout}." if heldout is not None else "report has no held-out starts."),
        "",
        f"| arm | domain | state, seed {table['tuning_seed']} | image, seed {table['tuning_seed']} | image - state (paired) | McNemar p "
        f"| image, held-out | image held-out over training seeds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in table["arms"]:
        paired, over = row["image_minus_state"], row["image_heldout_over_seeds"]
        difference = p = seeds = "-"
        if paired is not None:
            lo, hi = (100 * v for v in paired["ci95"])
            difference, p = f"{100 * paired['difference']:+.1f} [{lo:+.1f}, {hi:+.1f}]", f"{paired['mcnemar_p']:.3g}"
        if over is not None and over["n"] > 1:
            seeds = f"{100 * over['mean']:.1f}% (sd {100 * over['sd']:.1f}, {over['n']} seeds)"
        lines.append(f"| {row['arm']} | {row['domain']} | {_rate(row['state'])} | {_rate(row['image'])} | {difference} | {p} "
                     f"| {_rate(row['image_heldout'])} | {seeds} |")  # fmt: skip
    if table["state_only"]:
        lines += ["", f"Arms of the state run the image run does not have: {', '.join(table['state_only'])}."]
    lines += ["", "Differences in percentage points, image minus state, with the paired bootstrap 95% interval; McNemar is "
              "exact. The state run chose its arms on these starts, so its numbers are biased upward; compare the "
              "image run's held-out column with the state run's only with that in mind.", ""]  # fmt: skip
    return "\n".join(lines)


def plot(table: dict[str, Any], path: Path) -> None:
    """Grouped bars: each arm's state and image success on the shared starts, with their Wilson intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = [r for r in table["arms"] if r["state"] is not None or r["image"] is not None]
    figure, axes = plt.subplots(figsize=(max(5, 1.2 * len(rows) + 1), 4))
    x = np.arange(len(rows))
    for offset, kind, colour in ((-0.2, "state", "tab:gray"), (0.2, "image", "tab:blue")):
        rates = [100 * r[kind]["success_rate"] if r[kind] else np.nan for r in rows]
        errors = [[100 * (r[kind]["success_rate"] - r[kind]["ci95"][0]) if r[kind] and r[kind]["ci95"] else 0 for r in rows],
                  [100 * (r[kind]["ci95"][1] - r[kind]["success_rate"]) if r[kind] and r[kind]["ci95"] else 0 for r in rows]]  # fmt: skip
        axes.bar(x + offset, rates, width=0.4, yerr=errors, capsize=3, color=colour, label=kind)
    axes.set_xticks(x, [r["arm"] if r["domain"] == "target" else f"{r['arm']} ({r['domain']})" for r in rows], rotation=25, ha="right")
    axes.set_ylabel(f"success (%), seed {table['tuning_seed']} starts")
    axes.set_ylim(0, 100)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m eval.side_by_side", description=__doc__.splitlines()[0])
    parser.add_argument("--state", type=Path, required=True, help="the state run's results.json (or its folder)")
    parser.add_argument("--image", type=Path, required=True, help="the image run's results.json (or its folder)")
    parser.add_argument("--out", type=Path, default=Path("side_by_side"), help="folder for side_by_side.{md,json,png}")
    args = parser.parse_args(argv)
    if args.out.exists() and not args.out.is_dir():
        print(f"error: --out {args.out}: is a file (give a folder)", file=sys.stderr)
        return 2
    try:
        table = side_by_side(load_report(args.state), load_report(args.image))
    except SideBySideError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not any(r["image_minus_state"] for r in table["arms"]):
        print("error: no arm is in both runs on the same starts (match by arm name and domain)", file=sys.stderr)
        return 2
    text = markdown(table)
    try:
        with no_empty_dirs_on_failure(args.out):
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "side_by_side.json").write_text(json.dumps(table, indent=1))
            (args.out / "side_by_side.md").write_text(text)
            plot(table, args.out / "side_by_side.png")
    except OSError as error:
        print(f"error: cannot write {args.out}: {error.strerror or error}", file=sys.stderr)
        return 2
    print(text)
    print(f"wrote {args.out}/side_by_side.{{md,json,png}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

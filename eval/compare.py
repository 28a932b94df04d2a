"""`python -m eval.compare DIR1 DIR2 ...`: success rates of several evaluations, as a table and a bar plot.

With ``--paired`` the first evaluation is the reference and every other one is compared with it trial
by trial (they must share their start poses, as the evaluations of one experiment do): the success
difference with its paired-bootstrap interval and the exact McNemar p-value. Two arms a few points
apart on 200 trials differ far more surely paired than their separate intervals suggest.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from data_gen.cli import ArgumentParser, no_empty_dirs_on_failure


def load_results(directory: Path) -> dict:
    """The results.json of one evaluation directory (or the file itself)."""
    path = directory / "results.json" if directory.is_dir() else directory
    if not path.is_file():
        raise ValueError(f"{directory}: no results.json (run python -m eval.rollout first)")
    name = run_name(path)
    try:
        results = json.loads(path.read_text())
        trials = sorted(results.get("per_trial", []), key=lambda t: t["index"])
        return {"name": name, "path": path, "success_rate": float(results["success_rate"]),
                "ci95": [float(v) for v in results["ci95"]], "trials": int(results["trials"]),
                "success_by_trial": [bool(t["success"]) for t in trials],
                "starts": [[float(v) for v in t["initial_pose"]] for t in trials]}  # fmt: skip
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise ValueError(f"{path}: not an evaluation results file") from None


def run_name(results: Path) -> str:
    """The label of an evaluation: the name of what was evaluated, not of the folder every evaluation has.

    eval.rollout writes beside a checkpoint into ``runs/NAME/eval`` (named NAME), an experiment into
    ``arms/NAME/eval_DOMAIN`` (named "NAME (DOMAIN)"); any other directory is named as it is.
    """
    folder = results.absolute().parent
    if folder.name.startswith("eval_"):
        return f"{folder.parent.name} ({folder.name[5:]})"
    return folder.parent.name if folder.name == "eval" else folder.name


def paired_rows(rows: list[dict]) -> list[dict | None]:
    """Each row after the first compared trial by trial with the first (None for the first)."""
    from eval.metrics import paired_comparison  # scipy: only when asked

    reference = rows[0]
    comparisons: list[dict | None] = [None]
    for row in rows[1:]:
        for r in (reference, row):
            if len(r["starts"]) != r["trials"]:
                raise ValueError(f"{r['path']}: has no per-trial results to pair")
        if row["starts"] != reference["starts"]:
            raise ValueError(f"{row['path']}: not evaluated on the start poses of {reference['path']} (same --trials and --seed), so it cannot be paired")
        comparisons.append(paired_comparison(np.array(row["success_by_trial"]), np.array(reference["success_by_trial"])))
    return comparisons


def bar_plot(rows: list[dict], path: Path, colours: list[str] | None = None, title: str | None = None) -> None:
    """Success rates of rows {name, success_rate, ci95} as bars with their 95% Wilson whiskers, saved to ``path``."""
    import matplotlib.pyplot as plt

    figure = bar_figure(rows, colours, title)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def bar_figure(rows: list[dict], colours: list[str] | None = None, title: str | None = None):
    """The figure of ``bar_plot``, one bar per row labelled with its name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = [100 * r["success_rate"] for r in rows]
    errors = [[100 * (r["success_rate"] - r["ci95"][0]) for r in rows], [100 * (r["ci95"][1] - r["success_rate"]) for r in rows]]
    figure, axes = plt.subplots(figsize=(max(4, 1.1 * len(rows) + 1), 3.5 if title is None else 4))
    axes.bar(range(len(rows)), rates, yerr=errors, capsize=4, color=colours or "tab:blue")
    axes.set_xticks(range(len(rows)), [r["name"] for r in rows], rotation=25, ha="right")
    axes.set_ylabel("success rate (%) with 95% Wilson interval")
    axes.set_ylim(0, 100)
    if title:
        axes.set_title(title)
    figure.tight_layout()
    return figure


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m eval.compare", description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("compare.png"))
    parser.add_argument("--paired", action="store_true", help="compare each evaluation with the first, trial by trial")
    args = parser.parse_args(argv)
    if args.out.is_dir():
        print(f"error: cannot write {args.out}: is a directory (give a file, e.g. {args.out / 'compare.png'})", file=sys.stderr)
        return 2
    out = args.out if args.out.suffix else args.out.with_suffix(".png")  # the file matplotlib writes
    try:
        rows = [load_results(d) for d in args.dirs]
        paired = paired_rows(rows) if args.paired else [None] * len(rows)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    width = max(len(r["name"]) for r in rows)
    header = f"{'run':{width}} {'trials':>6} {'success':>8} {'95% CI':>15}"
    print(header + (f"  {'vs ' + rows[0]['name'] + ' (paired)':>26} {'McNemar p':>9}" if args.paired else ""))
    for r, c in zip(rows, paired):
        lo, hi = r["ci95"]
        line = f"{r['name']:{width}} {r['trials']:6d} {100 * r['success_rate']:7.1f}% [{100 * lo:5.1f}, {100 * hi:5.1f}]"
        if c is not None:
            d, (clo, chi) = 100 * c["difference"], (100 * v for v in c["ci95"])
            line += f"  {f'{d:+.1f} [{clo:+.1f}, {chi:+.1f}]':>26} {c['mcnemar_p']:9.3g}"
        print(line)
    try:
        with no_empty_dirs_on_failure(out.parent):
            out.parent.mkdir(parents=True, exist_ok=True)
            bar_plot(rows, out)
    except (OSError, ValueError) as error:  # matplotlib reports an unwritable path as either
        print(f"error: cannot write {out}: {getattr(error, 'strerror', None) or error}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m eval.compare DIR1 DIR2 ...`: success rates of several evaluations, as a table and a bar plot."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from data_gen.cli import ArgumentParser, no_empty_dirs_on_failure


def load_results(directory: Path) -> dict:
    """The results.json of one evaluation directory (or the file itself)."""
    path = directory / "results.json" if directory.is_dir() else directory
    if not path.is_file():
        raise ValueError(f"{directory}: no results.json (run python -m eval.rollout first)")
    try:
        results = json.loads(path.read_text())
        return {"name": directory.name, "success_rate": float(results["success_rate"]),
                "ci95": [float(v) for v in results["ci95"]], "trials": int(results["trials"])}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise ValueError(f"{path}: not an evaluation results file") from None


def bar_plot(rows: list[dict], path: Path, colours: list[str] | None = None, title: str | None = None) -> None:
    """Success rates of rows {name, success_rate, ci95} as bars with their 95% Wilson whiskers."""
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
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m eval.compare", description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("compare.png"))
    args = parser.parse_args(argv)
    if args.out.is_dir():
        print(f"error: cannot write {args.out}: is a directory (give a file, e.g. {args.out / 'compare.png'})", file=sys.stderr)
        return 2
    out = args.out if args.out.suffix else args.out.with_suffix(".png")  # the file matplotlib writes
    try:
        rows = [load_results(d) for d in args.dirs]
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    width = max(len(r["name"]) for r in rows)
    print(f"{'run':{width}} {'trials':>6} {'success':>8} {'95% CI':>15}")
    for r in rows:
        lo, hi = r["ci95"]
        print(f"{r['name']:{width}} {r['trials']:6d} {100 * r['success_rate']:7.1f}% [{100 * lo:5.1f}, {100 * hi:5.1f}]")
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

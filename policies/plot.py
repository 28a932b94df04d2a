"""Training curves of one or more runs from their ``metrics.jsonl``: loss, learning rate, gradient norm and
throughput against the step, one line per run, so runs (e.g. an experiment's arms) compare at a glance.

``python -m policies.plot RUN_DIR [RUN_DIR ...] [--out curves.png]``
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from data_gen.cli import ArgumentParser, fail

METRICS_NAME = "metrics.jsonl"
# (metrics key, panel title, log scale); older runs lack train/grad_norm: that panel is then left empty.
PANELS = (("loss", "loss", True), ("lr", "learning rate", False),
          ("train/grad_norm", "gradient norm", True), ("samples_per_s", "samples / s", False))


class PlotError(ValueError):
    """A run directory without readable metrics; one line naming it."""


def read_metrics(run: Path) -> list[dict]:
    """The records of ``run/metrics.jsonl`` in step order (a resumed run may repeat steps: the last wins)."""
    path = run / METRICS_NAME if run.is_dir() else run
    if not path.is_file():
        raise PlotError(f"{run}: no {METRICS_NAME} (train a run with python -m policies.train first)")
    records: dict[int, dict] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            records[int(record["step"])] = record
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise PlotError(f"{path}: line {number} is not a metrics record") from None
    if not records:
        raise PlotError(f"{path}: holds no records yet")
    return [records[step] for step in sorted(records)]


def plot_curves(runs: dict[str, list[dict]], out: Path) -> None:
    """One PNG with a panel per metric and a line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
    for axis, (key, title, log) in zip(axes.flat, PANELS):
        for name, records in runs.items():
            points = [(r["step"], r[key]) for r in records if r.get(key) is not None]
            if points:
                axis.plot(*zip(*points), label=name, linewidth=1.2)
        axis.set_title(title)
        axis.set_yscale("log" if log and axis.lines else "linear")
        axis.grid(alpha=0.3)
    for axis in axes[1]:
        axis.set_xlabel("step")
    axes[0][0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m policies.plot", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories (or metrics.jsonl files)")
    parser.add_argument("--out", type=Path, help="PNG to write (default: RUN/curves.png for one run, else curves.png)")
    args = parser.parse_args(argv)
    out = args.out or (args.runs[0] / "curves.png" if len(args.runs) == 1 and args.runs[0].is_dir() else Path("curves.png"))
    try:
        runs = {str(run): read_metrics(run) for run in args.runs}
        plot_curves(runs, out)
    except PlotError as error:
        fail(parser.prog, error)
    except OSError as error:
        fail(parser.prog, f"cannot write {out}: {error.strerror or error}")
    last = {name: records[-1] for name, records in runs.items()}
    for name, record in last.items():
        print(f"{name}: step {record['step']}, loss {record['loss']:.4f}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

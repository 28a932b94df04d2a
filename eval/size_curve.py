"""Success against the corrupt data's size, per kind of arm: the report of a config with nested pools.

A scaling study (``experiments/scaling.yaml``) trains the same kinds of arm (cotrain a0.25, ambient
s0.15, the ambient loss) on pools that are prefixes of one another; its question is how each kind's
held-out success moves with the pool's size. The protocol report calls these when its meta holds
``pool_sizes`` and ``arm_kinds``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def size_table(report: dict[str, Any]) -> dict[str, Any]:
    """{"sizes": sorted pool sizes, "kinds": {kind: {size: row}}, "flat": {kind: row}}: the held-out rows
    of the arms trained under the experiment's seed; arms without a pool (clean) as flat lines."""
    sizes, kinds = report["pool_sizes"], report["arm_kinds"]
    table: dict[str, dict[int, dict]] = {}
    flat: dict[str, dict] = {}
    for row in report["arms"]:
        if row["starts"] != "heldout" or row["domain"] != report["domain"] or row["replicate"] or row["arm"] not in kinds:
            continue
        kind = kinds[row["arm"]]
        if row["pool"] is None:
            flat[kind if kind not in flat else f"{kind} [{row['arm']}]"] = row
        else:
            size = sizes[row["pool"]]
            if size in table.get(kind, {}):  # two arms alike but for what a kind leaves out: each its own line
                kind = f"{kind} [{row['arm']}]"
            table.setdefault(kind, {})[size] = row
    return {"sizes": sorted(set(sizes.values())), "kinds": table, "flat": flat}


def size_markdown(table: dict[str, Any]) -> list[str]:
    """The table's lines: one row per kind, one column per size, success with its Wilson interval."""
    sizes = table["sizes"]
    lines = ["## Success against the corrupt data's size (held-out starts)", "",
             "| arm kind | " + " | ".join(f"{size} demos" for size in sizes) + " |", "|---|" + "---|" * len(sizes)]  # fmt: skip

    def cell(row: dict | None) -> str:
        if row is None:
            return "-"
        lo, hi = row["ci95"]
        return f"{100 * row['success_rate']:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"

    for kind, by_size in table["kinds"].items():
        lines.append(f"| {kind} | " + " | ".join(cell(by_size.get(size)) for size in sizes) + " |")
    for kind, row in table["flat"].items():
        lines.append(f"| {kind} (no corrupt data) | " + " | ".join([cell(row)] * len(sizes)) + " |")
    return lines


def size_plot(table: dict[str, Any], path: Path, title: str = "") -> None:
    """Success (with 95% Wilson intervals) against the size on a log axis, one line per kind; the arms
    without corrupt data as horizontal bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    for kind, by_size in table["kinds"].items():
        sizes = sorted(by_size)
        rates = [100 * by_size[s]["success_rate"] for s in sizes]
        errors = [[rate - 100 * by_size[s]["ci95"][0] for s, rate in zip(sizes, rates, strict=True)],
                  [100 * by_size[s]["ci95"][1] - rate for s, rate in zip(sizes, rates, strict=True)]]  # fmt: skip
        axes.errorbar(sizes, rates, yerr=errors, marker="o", capsize=4, label=kind)
    for kind, row in table["flat"].items():
        axes.axhline(100 * row["success_rate"], color="grey", linestyle="--", label=f"{kind} (no corrupt data)")
        axes.axhspan(100 * row["ci95"][0], 100 * row["ci95"][1], color="grey", alpha=0.15)
    axes.set_xscale("log")
    axes.set_xticks(table["sizes"], [str(s) for s in table["sizes"]])
    axes.set_xlabel("corrupt demos |D_S|")
    axes.set_ylabel("held-out success (%), 95% Wilson interval")
    axes.set_ylim(0, 100)
    axes.legend(fontsize=8)
    if title:
        axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)

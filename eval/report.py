"""The experiment's report: per-arm rates with Wilson intervals and paired comparisons on the same starts.

Every arm is evaluated on the same start poses, so two arms are compared trial by trial: the
difference in success with a paired bootstrap 95% interval and the exact McNemar test on the
discordant trials (scipy's binomial test). Writes ``results.json``, ``results.md`` and ``results.png``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from eval.compare import bar_plot
from eval.metrics import BOOTSTRAP_RESAMPLES, paired_comparison, wilson_interval


def arm_row(name: str, domain: str, results: dict, train_seconds: float | None, role: str,
            eval_seconds: float | None = None) -> dict[str, Any]:
    """One table row from an evaluation's results.json; eval_seconds: its wall time over all the
    invocations that made it (default: the last invocation's, from results.json)."""
    trials = results["per_trial"]
    successes = sum(t["success"] for t in trials)
    times = [t["time_to_success"] for t in trials if t["time_to_success"] is not None]
    return {
        "arm": name,
        "domain": domain,
        "role": role,
        "trials": len(trials),
        "successes": successes,
        "success_rate": successes / len(trials),
        "ci95": list(wilson_interval(successes, len(trials))),
        "mean_max_coverage": float(np.mean([t["max_coverage"] for t in trials])),
        "median_time_to_success": float(np.median(times)) if times else None,
        "train_seconds": train_seconds,
        "eval_seconds": float(results.get("wall_time", 0.0) if eval_seconds is None else eval_seconds),
        "success_by_trial": [bool(t["success"]) for t in trials],
    }


def build_report(rows: list[dict[str, Any]], domain: str, meta: dict[str, Any]) -> dict[str, Any]:
    """Rows plus each arm's paired comparison with the best cotrain arm, in ``domain``.

    A row marked ``replicate`` (an arm trained again under another seed) is compared, never the
    reference: the better of two draws of one arm would flatter it against every other arm.
    """
    main_rows = [r for r in rows if r["domain"] == domain]
    cotrain = [r for r in main_rows if r["role"] == "cotrain" and not r.get("replicate")]
    reference = max(cotrain, key=lambda r: (r["success_rate"], r["mean_max_coverage"])) if cotrain else None
    comparisons = []
    if reference is not None:
        for row in main_rows:
            if row is reference or row["trials"] != reference["trials"]:
                continue
            comparison = paired_comparison(np.array(row["success_by_trial"]), np.array(reference["success_by_trial"]))
            comparisons.append({"arm": row["arm"], "reference": reference["arm"], **comparison})
    return {**meta, "domain": domain, "best_cotrain": None if reference is None else reference["arm"],
            "arms": rows, "paired_vs_best_cotrain": comparisons}  # fmt: skip


def write_report(report: dict[str, Any], out: Path) -> None:
    """results.json, results.md and results.png in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(report, indent=1))
    (out / "results.md").write_text(markdown(report))
    bar_chart(report, out / "results.png")


def markdown(report: dict[str, Any]) -> str:
    comparisons = {c["arm"]: c for c in report["paired_vs_best_cotrain"]}
    lines = [
        f"# {report.get('name', 'experiment')}: success in `{report['domain']}` over the same start poses",
        "",
        "| arm | domain | success | 95% CI (Wilson) | mean max coverage | median time to success (s) | "
        f"vs {report['best_cotrain'] or '-'} (paired) | McNemar p | train (min) | eval (min) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["arms"]:
        lo, hi = row["ci95"]
        comparison = comparisons.get(row["arm"]) if row["domain"] == report["domain"] else None
        versus = p = "-"
        if comparison is not None:
            clo, chi = comparison["ci95"]
            versus = f"{100 * comparison['difference']:+.1f} [{100 * clo:+.1f}, {100 * chi:+.1f}]"
            p = f"{comparison['mcnemar_p']:.3g}"
        median = "-" if row["median_time_to_success"] is None else f"{row['median_time_to_success']:.1f}"
        train = "-" if row["train_seconds"] is None else f"{row['train_seconds'] / 60:.1f}"
        lines.append(
            f"| {row['arm']} | {row['domain']} | {row['successes']}/{row['trials']} ({100 * row['success_rate']:.1f}%) | "
            f"[{100 * lo:.1f}, {100 * hi:.1f}] | {row['mean_max_coverage']:.3f} | {median} | {versus} | {p} | "
            f"{train} | {row['eval_seconds'] / 60:.1f} |"
        )
    if report["best_cotrain"]:
        lines += ["", f"Paired differences are arm minus `{report['best_cotrain']}` in percentage points "
                  f"({BOOTSTRAP_RESAMPLES} paired bootstrap resamples); McNemar is exact (binomial on discordant trials)."]
    else:
        lines += ["", "No cotrain arm is evaluated yet: the paired comparisons with the best one are still to come."]
    lines += ["Train and eval times are wall-clock minutes (training at its measured median rate).", ""]
    return "\n".join(lines)


ROLE_COLOURS = {"clean": "tab:gray", "sim_only": "tab:brown", "cotrain": "tab:blue", "ambient": "tab:green", "expert": "k"}


def bar_chart(report: dict[str, Any], path: Path) -> None:
    """The arms' success rates with their intervals, coloured by role (eval.compare's plot)."""
    rows = [{**row, "name": row["arm"] if row["domain"] == report["domain"] else f"{row['arm']} ({row['domain']})"}
            for row in report["arms"]]  # fmt: skip
    trials = rows[0]["trials"] if rows else 0
    bar_plot(rows, path, colours=[ROLE_COLOURS.get(r["role"], "tab:purple") for r in rows],
             title=f"{report.get('name', '')}: {trials} trials per arm")  # fmt: skip

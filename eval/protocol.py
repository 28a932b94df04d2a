"""The report of an experiment run under the protocol (science.md §7): tuning vs held-out starts.

Every choice (the best arm of each method per corrupt pool, a 'best' sigma_min) was made on the tuning
starts; every number here is measured on the held-out starts. Per pool, the primary comparison stated
in the config (the best treatment arm against the best control arm) is reported with its own paired
interval and McNemar p, and a Holm-adjusted p across the pools' primaries; every other comparison
(each arm against its pool's best control) carries a Holm-adjusted p beside the raw one, over that
whole family. Arms trained under several seeds get their
mean and spread over seeds. Writes ``results.json``, ``results.md`` and ``results.png``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from statsmodels.stats.multitest import multipletests

from eval.metrics import BOOTSTRAP_RESAMPLES, paired_comparison
from eval.report import bar_chart


def holm(p_values: list[float]) -> list[float]:
    """Holm-adjusted p-values (statsmodels), in the order given."""
    return [float(p) for p in multipletests(p_values, method="holm")[1]] if p_values else []


def build_protocol_report(rows: list[dict[str, Any]], domain: str, meta: dict[str, Any]) -> dict[str, Any]:
    """rows: eval.report.arm_row rows with the protocol's columns (starts, eval_seed, training_seed, pool,
    method, base_arm, replicate); meta: the experiment's, with ``primary_choices`` {pool: {treatment, control}} and, when
    the config states its comparisons, ``stated_primary`` [{arm, reference}]: those are then the primaries, and each
    pool's best control remains the reference of the other comparisons."""
    heldout = {r["arm"]: r for r in rows if r["starts"] == "heldout" and r["domain"] == domain}
    tuning = {r["arm"]: r for r in rows if r["starts"] == "tuning" and r["domain"] == domain}
    primary, family = [], []
    stated = meta.get("stated_primary")  # named comparisons in place of each pool's best vs best
    for comparison in stated or ():
        arm, reference = heldout.get(comparison["arm"]), heldout.get(comparison["reference"])
        if arm is not None and reference is not None:
            primary.append({"pool": arm["pool"], "arm": arm["arm"], "reference": reference["arm"], "chosen_on": "stated",
                            **_paired(arm, reference)})  # fmt: skip
    pairs = {(c["arm"], c["reference"]) for c in stated or ()}
    for pool, chosen in meta["primary_choices"].items():
        control = heldout.get(chosen.get("control"))
        treatment = None if stated else heldout.get(chosen.get("treatment"))
        if control is not None and treatment is not None:
            primary.append({"pool": pool, "arm": treatment["arm"], "reference": control["arm"], "chosen_on": "tuning",
                            **_paired(treatment, control)})  # fmt: skip
        if control is None:
            continue
        for row in heldout.values():
            mine = row["pool"] == pool or row["pool"] is None  # the clean and expert arms: against every pool's control
            if not mine or row["replicate"] or row is control or row is treatment or row["trials"] != control["trials"]:
                continue
            if (row["arm"], control["arm"]) not in pairs:  # a stated primary is not counted again in the family
                family.append({"pool": pool, "arm": row["arm"], "reference": control["arm"], **_paired(row, control)})
    for group in (primary, family):  # each pool's primary is its own question; Holm across them is given too
        for comparison, adjusted in zip(group, holm([c["mcnemar_p"] for c in group]), strict=True):
            comparison["holm_p"] = adjusted
    seeds = _seed_spread(heldout)
    return {**meta, "domain": domain, "arms": rows, "primary": primary, "comparisons": family, "seeds": seeds,
            "tuning_success": {name: r["success_rate"] for name, r in tuning.items()}}  # fmt: skip


def _paired(row: dict, reference: dict) -> dict[str, Any]:
    return paired_comparison(np.array(row["success_by_trial"]), np.array(reference["success_by_trial"]))


def _seed_spread(heldout: dict[str, dict]) -> list[dict[str, Any]]:
    """Per arm trained under several seeds: its held-out rate under each, their mean and standard deviation."""
    groups: dict[str, list[dict]] = {}
    for row in heldout.values():
        groups.setdefault(row["base_arm"], []).append(row)
    spread = []
    for base, members in groups.items():
        if len(members) < 2:
            continue
        members.sort(key=lambda r: r["training_seed"])
        rates = [r["success_rate"] for r in members]
        spread.append({"arm": base, "pool": members[0]["pool"], "training_seeds": [r["training_seed"] for r in members],
                       "success_rates": rates, "mean": float(np.mean(rates)), "sd": float(np.std(rates, ddof=1))})  # fmt: skip
    return spread


def write_protocol_report(report: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(report, indent=1))
    (out / "results.md").write_text(protocol_markdown(report))
    shown = [r for r in report["arms"] if r["starts"] == "heldout"]
    bar_chart({**report, "arms": shown, "name": f"{report.get('name', '')} (held-out starts)"}, out / "results.png")
    if report.get("pool_sizes"):
        from eval.size_curve import size_plot, size_table

        size_plot(size_table(report), out / "results_by_size.png", f"{report.get('name', '')}: success against |D_S|")


def _points(comparison: dict) -> str:
    lo, hi = comparison["ci95"]
    return f"{100 * comparison['difference']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"


def protocol_markdown(report: dict[str, Any]) -> str:
    protocol, seeds = report["config"]["protocol"], report["config"]["evaluation"]
    lines = [
        f"# {report.get('name', 'experiment')}: success in `{report['domain']}` on the held-out starts",
        "",
        f"Choices on the tuning starts (evaluation seed {report['config']['seed']}); every number below on the held-out "
        f"starts (seed {seeds['heldout_seed']}). Primary comparison, stated before the run: "
        + (", ".join(f"`{c['arm']}` vs `{c['reference']}`" for c in report["stated_primary"]) + "."
           if report.get("stated_primary") else
           f"per corrupt pool the best `{protocol['treatment']}` arm vs the best `{protocol['control']}` arm."),
        "",
        "## Primary comparisons",
        "",
        ("| pool | arm | reference | difference (points) [paired 95% CI] | McNemar p | Holm p (across the primaries) |"
         if report.get("stated_primary") else
         "| pool | best treatment | best control | difference (points) [paired 95% CI] | McNemar p | Holm p (across pools) |"),
        "|---|---|---|---|---|---|",
    ]  # fmt: skip
    for c in report["primary"]:
        lines.append(f"| {c['pool']} | {c['arm']} | {c['reference']} | {_points(c)} | {c['mcnemar_p']:.3g} | {c['holm_p']:.3g} |")
    if not report["primary"]:
        lines.append("| - | not yet chosen or evaluated | | | | |")
    if report.get("pool_sizes"):
        from eval.size_curve import size_markdown, size_table

        lines += [""] + size_markdown(size_table(report))
    by_arm = {}
    for c in report["comparisons"]:
        by_arm.setdefault(c["arm"], []).append(c)
    lines += ["", "## Every arm", "",
              "| arm | pool | method | training seed | held-out success | Wilson 95% | tuning success | vs pool's best control "
              "(paired) | McNemar p | Holm p |", "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for row in report["arms"]:
        if row["starts"] != "heldout" or row["domain"] != report["domain"]:
            continue
        lo, hi = row["ci95"]
        tuning = report["tuning_success"].get(row["arm"])
        versus = by_arm.get(row["arm"], [])
        cells = ["; ".join(_points(c) + (f" ({c['pool']})" if len(versus) > 1 else "") for c in versus) or "-",
                 "; ".join(f"{c['mcnemar_p']:.3g}" for c in versus) or "-", "; ".join(f"{c['holm_p']:.3g}" for c in versus) or "-"]
        lines.append(
            f"| {row['arm']} | {row['pool'] or '-'} | {row['method']} | {'-' if row['training_seed'] is None else row['training_seed']} | "
            f"{row['successes']}/{row['trials']} ({100 * row['success_rate']:.1f}%) | [{100 * lo:.1f}, {100 * hi:.1f}] | "
            f"{'-' if tuning is None else f'{100 * tuning:.1f}%'} | {' | '.join(cells)} |"
        )  # fmt: skip
    if report["seeds"]:
        lines += ["", "## Training seeds (held-out success)", "", "| arm | seeds | per seed | mean | sd |", "|---|---|---|---|---|"]
        for s in report["seeds"]:
            per_seed = ", ".join(f"{100 * r:.1f}%" for r in s["success_rates"])
            lines.append(f"| {s['arm']} | {s['training_seeds']} | {per_seed} | {100 * s['mean']:.1f}% | {100 * s['sd']:.1f} |")
    lines += ["", f"Paired differences: arm minus reference in percentage points ({BOOTSTRAP_RESAMPLES} paired bootstrap "
              "resamples); McNemar exact; Holm over every comparison in this table (the primaries have their own family).", ""]  # fmt: skip
    return "\n".join(lines)

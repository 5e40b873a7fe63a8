"""One world over several seeds: each seed's metrics, and their mean with an interval.

A single run's numbers move with its seed: the visitors, the policy's draws and
so which edges it learnt early (in `drift` a run's recovery moves by a thousand
conversations from seed to seed). The interval a run reports against uniform
counts the visitors' luck only, not the policy's own; over seeds both are
counted. ``python -m policy.sim --world W --seeds 7 8 9 10`` runs the world once
per seed and reports, per metric, each seed's value, their mean and a 95%
Student-t interval for it (docs/policy-simulation.md).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from policy.sim.report import LABELS

METRICS: dict[str, str] = {
    "share": "production, % of the oracle",
    "margin": "minus the best simple baseline, points",
    "first_half": "first half, % of the oracle",
    "second_half": "second half, % of the oracle",
    "versus_uniform_expected": "minus uniform, expected, points of lead rate",
    "versus_uniform_leads": "minus uniform, leads, points of lead rate",
}


def seed_row(seed: int, metrics: Mapping[str, Any]) -> dict[str, Any]:
    """One seed's numbers from :func:`policy.sim.report.metrics`."""
    s, v, r = metrics["summary"], metrics["versus_uniform"], metrics["recovery"]
    return {
        "seed": seed,
        "share": 100.0 * s["production_share_of_oracle"],
        "best_simple_baseline": s["best_simple_baseline"],
        "margin": s["production_minus_best_simple_points"],
        "first_half": 100.0 * s["first_half_share_of_oracle"]["thompson"],
        "second_half": 100.0 * s["second_half_share_of_oracle"]["thompson"],
        "versus_uniform_expected": v["expected"]["points"],
        "versus_uniform_leads": v["leads"]["points"],
        "recovery": r["conversations"]["thompson"] if r["flip_at"] is not None else None,
    }


def interval(values: Sequence[float]) -> dict[str, Any]:
    """Mean, standard deviation and the 95% Student-t interval of the mean (one
    value: no spread, so no interval)."""
    n = len(values)
    mean = statistics.fmean(values)
    if n < 2:
        return {"n": n, "mean": mean, "sd": None, "ci95": None}
    from scipy import stats  # only here: its import takes 0.4 s

    sd = statistics.stdev(values)
    half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return {"n": n, "mean": mean, "sd": sd, "ci95": [mean - half, mean + half]}


def summarise(rows: Sequence[Mapping[str, Any]], changes: bool) -> dict[str, Any]:
    """Per metric over the seeds: :func:`interval`; in a world that changes, the
    recovery as the seeds that got back to 90% of the oracle (their mean and the
    largest) and those that never did; which simple baseline was the best, per seed."""
    out: dict[str, Any] = {name: interval([row[name] for row in rows]) for name in METRICS}
    if changes:
        back = [row["recovery"] for row in rows if row["recovery"] is not None]
        out["recovery"] = {
            "recovered": len(back),
            "never": len(rows) - len(back),
            "mean": statistics.fmean(back) if back else None,
            "max": max(back) if back else None,
        }
    out["best_simple_baseline"] = [row["best_simple_baseline"] for row in rows]
    return out


def markdown(world: str, rows: Sequence[Mapping[str, Any]], summary: Mapping[str, Any]) -> str:
    """A row per seed, then the mean and its interval (``summary``: :func:`summarise`
    of the rows; in a world that changes, with the recovery)."""
    changes = "recovery" in summary
    names = list(METRICS)
    head = ["seed", *(METRICS[n] for n in names), "best simple baseline"]
    if changes:
        head.append("back to 90% after")
    lines = [f"world {world}, {len(rows)} seeds", "", "| " + " | ".join(head) + " |"]
    lines.append("|---:|" + "---:|" * len(names) + "---|" + ("---:|" if changes else ""))
    for row in rows:
        cells = [str(row["seed"]), *(_number(n, row[n]) for n in names)]
        cells.append(LABELS[row["best_simple_baseline"]])
        if changes:
            cells.append("never" if row["recovery"] is None else f"{row['recovery']:,}")
        lines.append("| " + " | ".join(cells) + " |")
    cells = ["mean (95% interval)"]
    for n in names:
        s = summary[n]
        text = _number(n, s["mean"])
        if s["ci95"] is not None:
            text += f" ({_number(n, s['ci95'][0])} to {_number(n, s['ci95'][1])})"
        cells.append(text)
    cells.append("")
    if changes:
        r = summary["recovery"]
        cells.append("never" if r["mean"] is None else f"{r['mean']:,.0f} ({r['never']} never)")
    lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _number(name: str, value: float) -> str:
    if name.startswith("versus"):
        return f"{value:+.3f}"
    if name == "margin":
        return f"{value:+.1f}"
    return f"{value:.1f}"

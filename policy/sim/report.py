"""The simulation's tables, its metrics and the regret figure, per world (the JSON: results.py).

Besides each arm's leads: the best simple baseline and the production arm's
margin over it (:func:`summary`), the conversations it takes after a change to be
back at 90% of the oracle (:func:`recovery`), and its difference from uniform
with a 95% interval (:func:`versus`). Shares of the oracle use expected leads
(the sum of the true lead probabilities) unless said otherwise: the same
comparison without the luck of the draws.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from policy.sim.runner import ARMS, SIMPLE, SimResult

LABELS = {
    "thompson": "Thompson sampling (production)",
    "uniform": "uniform random",
    "default": "default edge",
    "cell_bb": "Beta-Bernoulli per cell",
    "answers_bb": "Beta-Bernoulli per answers",
    "oracle": "oracle",
}
COLORS = {
    "thompson": "tab:blue",
    "uniform": "tab:orange",
    "default": "tab:red",
    "cell_bb": "tab:green",
    "answers_bb": "tab:purple",
    "oracle": "black",
}
RECOVERY_SHARE = 0.90


def rows(result: SimResult) -> list[dict[str, Any]]:
    oracle = result.arms["oracle"]
    uniform = result.arms["uniform"]
    n = result.config.conversations
    out = []
    for name in ARMS:
        s = result.arms[name]
        out.append(
            {
                "arm": name,
                "leads": s.leads,
                "leads_per_1000": 1000.0 * s.leads / n,
                "share_of_oracle": s.leads / oracle.leads if oracle.leads else 0.0,
                "lift_over_uniform": s.leads / uniform.leads - 1.0 if uniform.leads else 0.0,
                "regret": oracle.leads - s.leads,
                "expected_leads": s.expected,
                "expected_share_of_oracle": s.expected / oracle.expected if oracle.expected else 0,
                "expected_lift_over_uniform": (
                    s.expected / uniform.expected - 1.0 if uniform.expected else 0.0
                ),
                "expected_regret": oracle.expected - s.expected,
                "decisions": s.decisions,
                "oracle_edge_share": s.oracle_agreement / s.decisions if s.decisions else 0.0,
                "oracle_edge_share_by_point": {
                    point: agreed / taken for point, (taken, agreed) in sorted(s.by_point.items())
                },
            }
        )
    return out


def markdown_table(result: SimResult) -> str:
    lines = [
        "| arm | leads | leads per 1,000 conversations | share of oracle | lift over uniform"
        " | expected leads (true P) | expected share of oracle | decisions on the oracle's edge |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows(result):
        lines.append(
            f"| {LABELS[row['arm']]} | {row['leads']:,} | {row['leads_per_1000']:.1f}"
            f" | {100 * row['share_of_oracle']:.1f}% | {100 * row['lift_over_uniform']:+.1f}%"
            f" | {row['expected_leads']:,.0f} | {100 * row['expected_share_of_oracle']:.1f}%"
            f" | {100 * row['oracle_edge_share']:.1f}% |"
        )
    return "\n".join(lines)


def _share(result: SimResult, arm: str, start: int, end: int) -> float:
    """``arm``'s expected leads over visitors [start, end) as a share of the oracle's."""
    mine = sum(result.arms[arm].p[start:end])
    oracle = sum(result.arms["oracle"].p[start:end])
    return mine / oracle if oracle else 0.0


def summary(result: SimResult) -> dict[str, Any]:
    """The production arm against the oracle and the best simple baseline (expected
    leads), over the run and its two halves."""
    n = result.config.conversations
    oracle = result.arms["oracle"].expected
    shares = {a: result.arms[a].expected / oracle if oracle else 0.0 for a in ARMS}
    best = max(SIMPLE, key=lambda a: shares[a])
    return {
        "production_share_of_oracle": shares["thompson"],
        "production_share_of_oracle_leads": (
            result.arms["thompson"].leads / result.arms["oracle"].leads
            if result.arms["oracle"].leads
            else 0.0
        ),
        "best_simple_baseline": best,
        "best_simple_share_of_oracle": shares[best],
        "production_minus_best_simple_points": 100.0 * (shares["thompson"] - shares[best]),
        "first_half_share_of_oracle": {a: _share(result, a, 0, n // 2) for a in ARMS},
        "second_half_share_of_oracle": {a: _share(result, a, n // 2, n) for a in ARMS},
    }


def recovery_window(conversations: int) -> int:
    return max(100, min(1_000, conversations // 10))


def recovery(result: SimResult, arm: str, window: int) -> int | None:
    """After the world changed (``flip_at``): the conversations until ``arm``'s expected
    leads over the last ``window`` conversations, all after the change, are back at
    90% of the oracle's (at least ``window``); None if never (or no change)."""
    flip = result.flip_at
    if flip is None:
        return None
    mine = _cumulative(result.arms[arm].p)
    oracle = _cumulative(result.arms["oracle"].p)
    for end in range(flip + window, len(mine)):
        o = oracle[end] - oracle[end - window]
        if o > 0 and (mine[end] - mine[end - window]) / o >= RECOVERY_SHARE:
            return end - flip
    return None


def _cumulative(values: Any) -> list[float]:
    out = [0.0]
    total = 0.0
    for v in values:
        total += v
        out.append(total)
    return out


def versus(result: SimResult, arm: str = "thompson", other: str = "uniform") -> dict[str, Any]:
    """``arm`` minus ``other`` per conversation, in points of lead rate, with 95% normal
    intervals over visitors: in leads (paired on the same visitors and draws) and in
    expected leads (true probabilities)."""
    a, b = result.arms[arm], result.arms[other]
    n = len(a.p)
    out: dict[str, Any] = {"arm": arm, "other": other, "conversations": n}
    pairs = {
        "leads": [float(x - y) for x, y in zip(a.lead, b.lead, strict=True)],
        "expected": [x - y for x, y in zip(a.p, b.p, strict=True)],
    }
    for name, diffs in pairs.items():
        mean = sum(diffs) / n if n else 0.0
        var = sum((d - mean) ** 2 for d in diffs) / (n - 1) if n > 1 else 0.0
        half = 1.96 * math.sqrt(var / n) if n else 0.0
        out[name] = {
            "points": 100.0 * mean,
            "ci95": [100.0 * (mean - half), 100.0 * (mean + half)],
        }
    return out


def metrics(result: SimResult) -> dict[str, Any]:
    """What the world is about, beside the table."""
    window = recovery_window(result.config.conversations)
    learners = ("thompson", "cell_bb", "answers_bb")
    return {
        "summary": summary(result),
        "versus_uniform": versus(result),
        "recovery": {
            "flip_at": result.flip_at,
            "window": window,
            "share": RECOVERY_SHARE,
            "conversations": {a: recovery(result, a, window) for a in learners},
        },
    }


def metrics_text(result: SimResult) -> str:
    m = metrics(result)
    s, v, r = m["summary"], m["versus_uniform"], m["recovery"]
    lines = [
        f"world {result.world}: production {100 * s['production_share_of_oracle']:.1f}% of the"
        f" oracle's expected leads ({100 * s['production_share_of_oracle_leads']:.1f}% of its"
        f" leads); best simple baseline {LABELS[s['best_simple_baseline']]}"
        f" {100 * s['best_simple_share_of_oracle']:.1f}%"
        f" ({s['production_minus_best_simple_points']:+.1f} points)",
        f"production - uniform: {v['leads']['points']:+.2f} points of lead rate"
        f" (95% interval {v['leads']['ci95'][0]:+.2f} to {v['leads']['ci95'][1]:+.2f});"
        f" expected {v['expected']['points']:+.2f}"
        f" ({v['expected']['ci95'][0]:+.2f} to {v['expected']['ci95'][1]:+.2f})",
    ]
    if r["flip_at"] is not None:
        back = ", ".join(
            f"{LABELS[a]} {'never' if c is None else f'{c:,}'}"
            for a, c in r["conversations"].items()
        )
        lines.append(
            f"after the change at {r['flip_at']:,}: conversations until >= 90% of the oracle"
            f" over {r['window']:,}: {back}"
        )
    return "\n".join(lines)


def fits_table(result: SimResult) -> str:
    lines = [
        "| fit | after conversation | outcomes | seconds | r-hat max | bulk ESS min"
        " | divergences | published |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for fit in result.fits:
        d = fit.diagnostics
        published = "yes" if fit.installed else "no: " + fit.reason
        if fit.fallback == "online":
            published += "; the online posterior published instead"
        lines.append(
            f"| {fit.version} | {fit.at_conversation:,} | {d.get('trials', 0):,}"
            f" | {fit.seconds:.1f} | {d.get('rhat_max', float('nan')):.4f}"
            f" | {d.get('ess_bulk_min', float('nan')):.0f} | {d.get('divergences', '')}"
            f" | {published} |"
        )
    return "\n".join(lines)


def window_shares(result: SimResult, arm: str, window: int) -> tuple[list[int], list[float]]:
    """Share of the oracle's leads in consecutive windows of ``window`` conversations."""
    at = result.series_at
    xs: list[int] = []
    ys: list[float] = []
    oracle = result.arms["oracle"].expected_series
    mine = result.arms[arm].expected_series
    last_i, last_n = -1, 0
    for i, n in enumerate(at):
        if n - last_n >= window or (i == len(at) - 1 and n > last_n):
            o0 = oracle[last_i] if last_i >= 0 else 0.0
            m0 = mine[last_i] if last_i >= 0 else 0.0
            xs.append(n)
            ys.append((mine[i] - m0) / (oracle[i] - o0) if oracle[i] > o0 else 0.0)
            last_i, last_n = i, n
    return xs, ys


def plot(result: SimResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(9, 7.5), sharex=True, gridspec_kw={"height_ratios": [3, 2]}
    )
    at = result.series_at
    oracle = result.arms["oracle"].expected_series
    for name in ARMS[:-1]:
        series = result.arms[name].expected_series
        regret = [o - s for o, s in zip(oracle, series, strict=True)]
        top.plot(
            at,
            regret,
            label=LABELS[name],
            color=COLORS[name],
            linewidth=2.0 if name == "thompson" else 1.4,
            zorder=3 if name == "thompson" else 2,
        )
    for fit in result.fits:
        for axis in (top, bottom):
            if fit.installed:
                axis.axvline(fit.at_conversation, color="tab:blue", alpha=0.2, linewidth=1)
            else:
                axis.axvline(fit.at_conversation, color="grey", alpha=0.6, linewidth=1, ls=":")
    if result.flip_at is not None:
        for axis in (top, bottom):
            axis.axvline(result.flip_at, color="black", linewidth=1.5, ls="--")
    top.set_ylabel("regret: oracle's expected leads\n- arm's expected leads")
    top.set_title(
        f"World {result.world!r}: {result.config.conversations:,} simulated conversations"
        f" of the solar-quote flow (seed {result.config.seed})",
        fontsize=11,
    )
    top.legend(loc="upper left", fontsize=9)
    top.grid(alpha=0.3)
    window = max(result.config.series_every, result.config.conversations // 20)
    for name in ("default", "uniform", "cell_bb", "answers_bb", "thompson"):
        xs, ys = window_shares(result, name, window)
        bottom.plot(xs, [100 * y for y in ys], marker="o", markersize=3, color=COLORS[name])
    bottom.axhline(90, color="grey", linestyle=":", linewidth=1)
    bottom.set_ylabel(f"% of oracle's expected\nleads, per {window:,}")
    bottom.set_xlabel(
        "conversations (light blue lines: fits installed; grey dotted: fits refused;"
        " black dashed: the world changes)",
        fontsize=9,
    )
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)

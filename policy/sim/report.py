"""The simulation's table, its JSON results and the regret figure."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson

from policy.sim.runner import ARMS, SimResult

LABELS = {
    "thompson": "Thompson sampling",
    "uniform": "uniform random",
    "default": "default edge",
    "oracle": "oracle",
}
COLORS = {"thompson": "tab:blue", "uniform": "tab:orange", "default": "tab:red", "oracle": "black"}


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
        " | expected leads (true P) | decisions on the oracle's edge |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows(result):
        lines.append(
            f"| {LABELS[row['arm']]} | {row['leads']:,} | {row['leads_per_1000']:.1f}"
            f" | {100 * row['share_of_oracle']:.1f}% | {100 * row['lift_over_uniform']:+.1f}%"
            f" | {row['expected_leads']:,.0f} | {100 * row['oracle_edge_share']:.1f}% |"
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
        lines.append(
            f"| {fit.version} | {fit.at_conversation:,} | {d.get('trials', 0):,}"
            f" | {fit.seconds:.1f} | {d.get('rhat_max', float('nan')):.4f}"
            f" | {d.get('ess_bulk_min', float('nan')):.0f} | {d.get('divergences', '')}"
            f" | {'yes' if fit.installed else 'no: ' + fit.reason} |"
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
    oracle = result.arms["oracle"].leads_series
    for name in ARMS:
        series = result.arms[name].leads_series
        regret = [o - s for o, s in zip(oracle, series, strict=True)]
        top.plot(
            at,
            regret,
            label=LABELS[name],
            color=COLORS[name],
            linewidth=2.0 if name == "thompson" else 1.4,
            linestyle="--" if name == "oracle" else "-",
            zorder=3 if name == "thompson" else 2,
        )
    for fit in result.fits:
        for axis in (top, bottom):
            if fit.installed:
                axis.axvline(fit.at_conversation, color="tab:blue", alpha=0.2, linewidth=1)
            else:
                axis.axvline(fit.at_conversation, color="grey", alpha=0.6, linewidth=1, ls=":")
    top.set_ylabel("regret: oracle leads - arm leads")
    top.set_title(
        f"Edge selection on the solar-quote flow: {result.config.conversations:,} simulated"
        f" conversations (seed {result.config.seed})",
        fontsize=11,
    )
    top.legend(loc="upper left")
    top.grid(alpha=0.3)
    window = max(result.config.series_every, result.config.conversations // 20)
    for name in ("default", "uniform", "thompson"):
        xs, ys = window_shares(result, name, window)
        bottom.plot(xs, [100 * y for y in ys], marker="o", markersize=3, color=COLORS[name])
    bottom.axhline(90, color="grey", linestyle=":", linewidth=1)
    bottom.set_ylabel(f"% of oracle's expected\nleads, per {window:,}")
    bottom.set_xlabel("conversations (light blue lines: fits installed; grey dotted: fits refused)")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def to_json(result: SimResult, command: str) -> bytes:
    doc = {
        "command": command,
        "config": asdict(result.config),
        "code": code_fingerprint(),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "seconds": result.seconds,
        "fit_seconds": result.fit_seconds,
        "conjugate_updates": result.conjugate_updates,
        "conjugate_seconds": result.conjugate_seconds,
        "table": rows(result),
        "population": {
            "mix": result.mix,
            "decision_points_met": result.decisions_met,
            "oracle_best_edges": result.best_edges,
        },
        "fits": [
            {
                "at_conversation": f.at_conversation,
                "version": f.version,
                "seconds": f.seconds,
                "installed": f.installed,
                "reason": f.reason,
                "diagnostics": f.diagnostics,
            }
            for f in result.fits
        ],
        "series": {
            "conversations": result.series_at,
            **{
                name: {
                    "leads": result.arms[name].leads_series,
                    "expected_leads": [round(x, 3) for x in result.arms[name].expected_series],
                }
                for name in ARMS
            },
        },
    }
    options = orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
    return orjson.dumps(doc, option=options, default=_jsonable)


def code_fingerprint() -> dict[str, str]:
    """The git commit and the SHA-256 of the policy modules the run used (they may
    have uncommitted changes)."""
    root = Path(__file__).resolve().parents[2]
    out: dict[str, str] = {}
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        )
        out["git_head"] = head.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        out["git_head"] = "unknown"
    for name in ("model.py", "conjugate.py", "thompson.py", "features.py", "rewards.py"):
        path = root / "policy" / name
        if path.exists():
            out[f"policy/{name}"] = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return out


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)

"""An evaluation as JSON or as a small text table. Pure."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from .estimators import Estimate
from .summary import Evaluation

_NAMES = {"logged": "logging policy", "ips": "IPS", "snips": "SNIPS", "dr": "DR"}


@dataclass(frozen=True, slots=True)
class Scope:
    """What the evaluation ran on, beside the estimates."""

    flow_id: str
    flow_versions: tuple[int, ...]
    events: int
    open: int  # conversations whose reward window had not closed (left out, lead or not)
    other_version: int  # conversations of another flow version than the snapshot's (left out)
    without_start: int
    late_decisions: int
    open_with_lead: int = 0  # of ``open``: those with a lead so far
    horizon: float = 86_400.0  # the reward window, seconds
    as_of: float | None = None  # the time the windows are closed against
    held_out: int = 0  # conversations the logging snapshots held out
    holdout_decisions: int = 0  # decisions whose propensity was made holdout-conditional
    unknown_versions: tuple[str, ...] = ()  # snapshot versions the archive lacks
    unknown_decisions: int = 0  # ... their decisions (logged propensity kept)


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _estimate(e: Estimate) -> dict[str, Any]:
    return {k: (_finite(v) if isinstance(v, float) else v) for k, v in asdict(e).items()}


def to_dict(evaluation: Evaluation, scope: Scope) -> dict[str, Any]:
    ev = evaluation
    return {
        "candidate": ev.candidate,
        "flow_id": scope.flow_id,
        "flow_versions": list(scope.flow_versions),
        "level": ev.level,
        "conversations": ev.conversations,
        "conversations_with_decisions": ev.with_decisions,
        "decisions": ev.decisions,
        "estimates": [_estimate(e) for e in ev.estimates],
        "estimates_with_decisions": [_estimate(e) for e in ev.decided],
        "effective_sample_size": ev.ess,
        "max_weight": ev.max_weight,
        "zero_support_share": ev.zero_support,
        "dr_clip": _finite(ev.dr_clip),
        "dr_clipped": ev.dr_clipped,
        "dr_clipped_weight": ev.dr_clipped_weight,
        "clipped_intervals": list(ev.clipped),
        "holdout": {
            "held_out_conversations": scope.held_out,
            "conditional_decisions": scope.holdout_decisions,
            "unknown_snapshot_versions": list(scope.unknown_versions),
            "unknown_decisions": scope.unknown_decisions,
        },
        "as_of": scope.as_of,
        "horizon_seconds": scope.horizon,
        "left_out": {
            "open": scope.open,
            "open_with_lead": scope.open_with_lead,
            "other_flow_version": scope.other_version,
            "without_start": scope.without_start,
            "late_decisions": scope.late_decisions,
        },
        "events": scope.events,
        "warnings": list(ev.warnings),
    }


def _pct(x: float) -> str:
    return f"{x:.2%}" if math.isfinite(x) else "n/a"


def _rows(estimates: tuple[Estimate, ...], level: float) -> list[str]:
    head = (
        f"{'estimator':<16}{'lead rate':>10}  {f'{level:.0%} interval':<20}{'vs logged':>11}"
        " (interval)"
    )
    lines = [head, "-" * len(head)]
    for e in estimates:
        interval = f"[{_pct(e.low)}, {_pct(e.high)}]"
        diff = "" if e.estimator == "logged" else f"{e.difference:+.2%}"
        diff_ci = (
            ""
            if e.estimator == "logged"
            else f" [{e.difference_low:+.2%}, {e.difference_high:+.2%}]"
        )
        line = f"{_NAMES[e.estimator]:<16}{_pct(e.value):>10}  {interval:<20}{diff:>11}{diff_ci}"
        lines.append(line.rstrip())
    return lines


def render(evaluation: Evaluation, scope: Scope) -> str:
    ev = evaluation
    versions = ",".join(str(v) for v in scope.flow_versions)
    lines = [
        f"candidate {ev.candidate} on flow {scope.flow_id} (version {versions}):"
        f" {ev.conversations:,} conversations, {ev.with_decisions:,} with decisions,"
        f" {ev.decisions:,} decisions",
        "",
        "all conversations:",
        *_rows(ev.estimates, ev.level),
        "",
        "conversations with at least one decision:",
        *_rows(ev.decided, ev.level),
        "",
        f"effective sample size {ev.ess:,.0f} of {ev.with_decisions:,}; max weight"
        f" {ev.max_weight:.3g}; logged edges the candidate never takes: {ev.zero_support:.1%}"
        " of decisions",
    ]
    lines += [*scope_lines(scope), *(f"warning: {w}" for w in ev.warnings)]
    return "\n".join(lines)


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:g} h"


def scope_lines(scope: Scope) -> list[str]:
    """What was left out and why, and the holdout's handling: lines of the report."""
    lines = []
    if scope.open:
        lines.append(
            f"left out: {scope.open:,} conversations started less than the reward window"
            f" ({_hours(scope.horizon)}) before the end of the log, {scope.open_with_lead:,}"
            " of them with a lead so far: their outcome is not final, and they are left out"
            " alike with or without a lead"
        )
    if scope.other_version:
        lines.append(
            f"left out: {scope.other_version:,} conversations of another flow version than"
            " the snapshot's"
        )
    if scope.without_start:
        lines.append(
            f"left out: {scope.without_start:,} conversations without their start in the log"
        )
    if scope.holdout_decisions:
        lines.append(
            f"holdout: {scope.held_out:,} conversations were held out by their logging"
            f" snapshot; {scope.holdout_decisions:,} decisions weighted with their propensity"
            " given the conversation's holdout status (1 for a held-out default edge)"
        )
    if scope.unknown_decisions:
        versions = ", ".join(scope.unknown_versions[:3])
        more = (
            f" and {len(scope.unknown_versions) - 3} more"
            if len(scope.unknown_versions) > 3
            else ""
        )
        lines.append(
            f"warning: {scope.unknown_decisions:,} decisions name snapshots the archive does not"
            f" have ({versions}{more}): their holdout is unknown, their logged propensities are"
            " used as they are; if those snapshots had a holdout, the estimates are biased"
        )
    return lines


def render_refusal(evaluation: Evaluation, scope: Scope, reason: str) -> str:
    """The report when no estimate is shown: the logged rate, the scope, the reason."""
    ev = evaluation
    versions = ",".join(str(v) for v in scope.flow_versions)
    logged = ev.estimates[0]
    return "\n".join(
        [
            f"candidate {ev.candidate} on flow {scope.flow_id} (version {versions}):"
            f" {ev.conversations:,} conversations, {ev.with_decisions:,} with decisions,"
            f" {ev.decisions:,} decisions",
            "",
            f"logging policy: {_pct(logged.value)} [{_pct(logged.low)}, {_pct(logged.high)}]"
            f" ({ev.level:.0%} interval)",
            reason,
            *scope_lines(scope),
        ]
    )

"""An evaluation as JSON or as a small text table. Pure."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from .estimators import Estimate, Evaluation

_NAMES = {"logged": "logging policy", "ips": "IPS", "snips": "SNIPS", "dr": "DR"}


@dataclass(frozen=True, slots=True)
class Scope:
    """What the evaluation ran on, beside the estimates."""

    flow_id: str
    flow_versions: tuple[int, ...]
    events: int
    open: int  # conversations whose reward is not known yet (left out)
    other_version: int  # conversations of another flow version than the snapshot's (left out)
    without_start: int
    late_decisions: int


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
        "left_out": {
            "open": scope.open,
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
    left_out = [
        (scope.open, "still open (reward not known yet)"),
        (scope.other_version, "of another flow version than the snapshot's"),
        (scope.without_start, "without their start in the log"),
    ]
    for count, why in left_out:
        if count:
            lines.append(f"left out: {count:,} conversations {why}")
    lines += [f"warning: {w}" for w in ev.warnings]
    return "\n".join(lines)

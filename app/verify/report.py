"""How a verification reads: one summary line, then the first divergences."""

from __future__ import annotations

import json
from typing import Any

from app.verify.model import KIND_TEXT, Divergence, Summary


def _value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def divergence_text(d: Divergence) -> list[str]:
    where = f", {d.where}" if d.where else ", not in the log"
    head = (
        f"first divergence in conversation {d.conversation_id} at event seq {d.seq}"
        f" (id {d.event_id}, {d.type or 'no event'}, command {d.command_seq}{where}):"
        f" {KIND_TEXT[d.kind]}"
    )
    lines = [head]
    lines += [
        f"  {f.name}: logged {_value(f.logged)}, replayed {_value(f.replayed)}" for f in d.fields
    ]
    if d.detail:
        lines.append(f"  {d.detail}")
    return lines


def summary_text(summary: Summary) -> str:
    outcome = "identical" if summary.identical else f"{summary.diverged:,} diverged"
    lines = [
        f"verified {_count(summary.conversations + summary.diverged, 'conversation')}"
        f" ({summary.events:,} events, {summary.decisions:,} decisions): {outcome}"
    ]
    if summary.without_lead_details:
        lines.append(
            f"  {summary.without_lead_details:,} of them without lead details (key erased)"
        )
    for reason, count in sorted(summary.unverifiable.items()):
        lines.append(f"unverifiable: {_count(count, 'conversation')}: {reason}")
    if summary.skipped_commands:
        lines.append(
            f"skipped {_count(summary.skipped_commands, 'unreadable command')}"
            " (the processors skipped them too)"
        )
    for d in summary.divergences:
        lines += divergence_text(d)
    if summary.diverged > len(summary.divergences):
        more = summary.diverged - len(summary.divergences)
        lines.append(f"... and {_count(more, 'more diverged conversation')}")
    return "\n".join(lines)


def summary_json(summary: Summary) -> dict[str, Any]:
    return {
        "identical": summary.identical,
        "conversations": summary.conversations + summary.diverged,
        "verified": summary.conversations,
        "events": summary.events,
        "decisions": summary.decisions,
        "without_lead_details": summary.without_lead_details,
        "diverged": summary.diverged,
        "unverifiable": dict(summary.unverifiable),
        "skipped_commands": summary.skipped_commands,
        "divergences": [d.to_json() for d in summary.divergences],
    }

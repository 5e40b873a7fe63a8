"""Realistic event logs for read-model tests and benchmarks.

Visitors play the shipped example flows through the real ConversationService
(on in-memory fakes): they press random buttons, sometimes unknown ones, drop
off part-way, leave contact details or not. Their conversations interleave,
as in a real log. Seeded, so a log is reproducible.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from policy.uniform import UniformPolicy
from schemas.commands import (
    AnswerQuestion,
    Command,
    PressButton,
    StartConversation,
    SubmitLead,
    VisitorContext,
)
from schemas.events import Event
from schemas.replies import BotMessage
from services.conversation.service import ConversationService
from services.fakes import InMemoryEventLog, InMemoryKeyStore
from tests.support.examples import example_catalog

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "flows"
T0 = 1_764_115_200.0  # 2025-11-26 00:00 UTC
SITES = ("acme", "globex")
DEVICES: tuple[Literal["desktop", "mobile", "tablet"], ...] = ("desktop", "mobile", "tablet")
SOURCES = ("google", "facebook", "newsletter", "")


@dataclass
class _Visitor:
    n: int
    cid: str
    seq: int
    last: BotMessage | None
    quits_after: int


@dataclass(frozen=True)
class Traffic:
    events: list[Event]  # in log order (conversations interleaved)
    keys: InMemoryKeyStore
    conversations: int


def _lead_fields(rng: random.Random, n: int) -> dict[str, str]:
    fields = {"name": f"Visitor {n}", "email": f"visitor{n}@example.com", "consent": "true"}
    if rng.random() < 0.5:
        fields["phone"] = f"+1 415 555 {1000 + n % 9000:04d}"
    return fields


def _next_command(v: _Visitor, rng: random.Random, at: float, n: int) -> Command:
    assert v.last is not None
    v.seq += 1
    if v.last.kind == "input":  # a free-text question (flow format v2): a valid number
        value = str(rng.choice((500, 25_000)))
        return AnswerQuestion(
            conversation_id=v.cid, seq=v.seq, at=at, node_id=v.last.node_id, value=value
        )
    if v.last.kind == "lead_form":
        return SubmitLead(
            conversation_id=v.cid,
            seq=v.seq,
            at=at,
            node_id=v.last.node_id,
            fields=_lead_fields(rng, n),
        )
    stale = rng.random() < 0.03  # a stale widget or a forged frame
    button = "no-such-button" if stale else rng.choice(v.last.buttons).id
    return PressButton(
        conversation_id=v.cid, seq=v.seq, at=at, node_id=v.last.node_id, button_id=button
    )


async def simulate(
    conversations: int, seed: int = 7, spacing: float = 1.0, prefix: str = "c"
) -> Traffic:
    """Play ``conversations`` visitors, ``spacing`` seconds between commands."""
    rng = random.Random(seed)
    catalog = example_catalog()
    flows = sorted(catalog.ids())
    log, keys = InMemoryEventLog(), InMemoryKeyStore()
    service = ConversationService(log, keys, catalog, UniformPolicy())
    waiting = list(range(conversations))
    active: list[_Visitor] = []
    step = 0
    while waiting or active:
        step += 1
        at = T0 + step * spacing
        if waiting and (not active or rng.random() < 0.3):
            n = waiting.pop(0)
            visitor = _Visitor(n, f"{prefix}{n:07d}", 1, None, rng.randint(2, 14))
            reply = await service.handle(
                StartConversation(
                    conversation_id=visitor.cid,
                    seq=1,
                    at=at,
                    flow_id=flows[n % len(flows)],
                    site_id=SITES[n % len(SITES)],
                    context=VisitorContext(
                        device=rng.choice(DEVICES), utm_source=rng.choice(SOURCES)
                    ),
                )
            )
            visitor.last = reply.messages[-1] if reply.messages else None
            active.append(visitor)
            continue
        visitor = active[rng.randrange(len(active))]
        if visitor.last is None or visitor.last.done or visitor.seq >= visitor.quits_after:
            active.remove(visitor)
            continue
        reply = await service.handle(_next_command(visitor, rng, at, visitor.n))
        if reply.messages:
            visitor.last = reply.messages[-1]
    logged = await log.read_after(0, 1 << 62)
    return Traffic([e.event for e in logged], keys, conversations)

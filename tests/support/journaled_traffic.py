"""Visitors played through a real ConversationService, for the replay verifier's
tests: random buttons (sometimes unknown ones), retried commands (duplicates),
commands sent ahead of their turn (out of order), refused and valid leads,
resumes, drop-offs. Conversations interleave; seeded, so a run is reproducible.
The service may run on any log (the in-memory fake, SqliteEventLog)."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Literal

from schemas.commands import (
    AnswerQuestion,
    Command,
    PressButton,
    Resume,
    StartConversation,
    SubmitLead,
    VisitorContext,
)
from schemas.replies import BotMessage
from services.conversation.service import ConversationService

T0 = 1_764_115_200.0  # 2025-11-26 00:00 UTC
FLOWS = ("insurance-quote", "saas-demo", "solar-quote")
DEVICES: tuple[Literal["desktop", "mobile", "tablet"], ...] = ("desktop", "mobile", "tablet")
SOURCES = ("google", "facebook", "newsletter", "")


def email_of(n: int) -> str:
    return f"verify-visitor-{n}@example.com"


@dataclass
class _Visitor:
    n: int
    cid: str
    seq: int
    last: BotMessage | None
    quits_after: int
    sent: Command | None = None


def _lead(v: _Visitor, at: float, rng: random.Random) -> SubmitLead:
    assert v.last is not None
    email = email_of(v.n) if rng.random() > 0.1 else "not-an-email"
    fields = {"name": f"Visitor {v.n}", "email": email, "consent": "true"}
    return SubmitLead(
        conversation_id=v.cid, seq=v.seq, at=at, node_id=v.last.node_id, fields=fields
    )


def _next(v: _Visitor, rng: random.Random, at: float) -> Command:
    assert v.last is not None
    v.seq += 1
    if v.last.kind == "input":  # a free-text question (flow format v2): a valid number
        value = str(rng.choice((500, 25_000)))
        return AnswerQuestion(
            conversation_id=v.cid, seq=v.seq, at=at, node_id=v.last.node_id, value=value
        )
    if v.last.kind == "lead_form":
        return _lead(v, at, rng)
    button = "no-such-button" if rng.random() < 0.03 else rng.choice(v.last.buttons).id
    return PressButton(
        conversation_id=v.cid, seq=v.seq, at=at, node_id=v.last.node_id, button_id=button
    )


async def play(
    service: ConversationService,
    conversations: int,
    *,
    seed: int = 11,
    prefix: str = "v",
    t0: float = T0,
    spacing: float = 1.0,
    flows: tuple[str, ...] = FLOWS,
) -> list[str]:
    """Play ``conversations`` visitors; returns their conversation ids."""
    rng = random.Random(seed)
    waiting = list(range(conversations))
    active: list[_Visitor] = []
    ids: list[str] = []
    step = 0
    while waiting or active:
        step += 1
        at = t0 + step * spacing
        if waiting and (not active or rng.random() < 0.3):
            n = waiting.pop(0)
            v = _Visitor(n, f"{prefix}{n:07d}", 1, None, rng.randint(3, 16))
            start = StartConversation(
                conversation_id=v.cid,
                seq=1,
                at=at,
                flow_id=flows[n % len(flows)],
                site_id="demo",
                context=VisitorContext(device=rng.choice(DEVICES), utm_source=rng.choice(SOURCES)),
            )
            reply = await service.handle(start)
            v.last = reply.messages[-1] if reply.messages else None
            v.sent = start
            active.append(v)
            ids.append(v.cid)
            continue
        v = active[rng.randrange(len(active))]
        if v.last is None or v.last.done or v.seq >= v.quits_after:
            active.remove(v)
            continue
        roll = rng.random()
        if roll < 0.05 and v.sent is not None:  # a retry: a duplicate
            await service.handle(replace(v.sent, at=at))
            continue
        if roll < 0.08:  # a command ahead of its turn: refused, seq not used
            ahead = PressButton(
                conversation_id=v.cid, seq=v.seq + 2, at=at, node_id="x", button_id="y"
            )
            await service.handle(ahead)
            continue
        if roll < 0.1:
            await service.handle(Resume(conversation_id=v.cid, at=at, after_seq=0))
            continue
        command = _next(v, rng, at)
        reply = await service.handle(command)
        v.sent = command
        if reply.messages:
            v.last = reply.messages[-1]
    return ids

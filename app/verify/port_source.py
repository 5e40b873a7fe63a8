"""Transcripts from any :class:`~services.ports.EventLog` (the in-memory fake in
tests): the whole log and journal read through the port, grouped per conversation
in the order conversations started. Meant for small logs; the embedded CLI
streams events.db with :mod:`app.verify.sqlite_source` instead."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from app.verify.model import NO_JOURNAL, LoggedAt, Transcript
from schemas.commands import Command
from services.ports import EventLog, LoggedCommand, LoggedEvent

PAGE = 10_000


def group(events: Sequence[LoggedEvent], commands: Sequence[LoggedCommand]) -> list[Transcript]:
    logged: dict[str, list[LoggedAt]] = {}
    for item in events:
        where = f"events position {item.position}"
        logged.setdefault(item.event.conversation_id, []).append(LoggedAt(item.event, where))
    journaled: dict[str, list[Command]] = {}
    for entry in commands:
        journaled.setdefault(entry.command.conversation_id, []).append(entry.command)
    out = []
    for cid, mine in logged.items():
        mine.sort(key=lambda x: x.event.seq)
        handled = journaled.get(cid, [])
        out.append(Transcript(cid, tuple(handled), tuple(mine), "" if handled else NO_JOURNAL))
    return out


async def read_all(log: EventLog) -> tuple[list[LoggedEvent], list[LoggedCommand]]:
    events: list[LoggedEvent] = []
    while page := await log.read_after(events[-1].position if events else 0, PAGE):
        events.extend(page)
    commands: list[LoggedCommand] = []
    while more := await log.read_commands_after(commands[-1].position if commands else 0, PAGE):
        commands.extend(more)
    return events, commands


async def transcripts(log: EventLog) -> AsyncIterator[Transcript]:
    for transcript in group(*await read_all(log)):
        yield transcript

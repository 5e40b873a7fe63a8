"""Ports of the conversation service: the external systems it talks to.

Each port is a small Protocol with an in-memory fake beside it
(:mod:`services.fakes`) and real adapters (SQLite in :mod:`services.embedded`,
Kafka in the distributed mode). One contract test suite runs against all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from schemas.commands import Command
from schemas.events import Event
from schemas.replies import Reply


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """An event and its position in the log (a global, increasing number)."""

    position: int
    event: Event


@dataclass(frozen=True, slots=True)
class LoggedCommand:
    """A journaled command (a SubmitLead's fields sealed, see
    :mod:`services.conversation.journal`) and its position in the journal."""

    position: int
    command: Command


class EventLog(Protocol):
    """The source of truth: an append-only log of events, ordered per conversation.

    ``append`` returns only once the events are durable. Appending an event whose
    id is already in the log is a no-op, so at-least-once writers are safe.

    ``command`` is the command that produced ``events``, as the journal keeps it:
    it is journaled in the same transaction as the events (once per conversation
    and first event seq: an out-of-order command is logged once as rejected and
    may come back later with the same command seq), so that ``leadflow replay
    --verify`` can re-run the decider over exactly the commands that made the log."""

    async def append(self, events: Sequence[Event], command: Command | None = None) -> None: ...

    async def read_conversation(self, conversation_id: str) -> list[Event]: ...

    async def read_after(self, position: int, limit: int) -> list[LoggedEvent]: ...

    async def read_commands_after(self, position: int, limit: int) -> list[LoggedCommand]: ...


class KeyStore(Protocol):
    """Per-conversation encryption keys, kept outside the event log."""

    async def get_or_create(self, conversation_id: str) -> bytes: ...

    async def get(self, conversation_id: str) -> bytes | None: ...

    async def get_many(self, conversation_ids: Sequence[str]) -> dict[str, bytes]:
        """The keys of those conversations that have one, in one round trip (a page
        of leads must not take one request per lead: it would exhaust a pool)."""
        ...

    async def delete(self, conversation_id: str) -> bool: ...


class CommandBus(Protocol):
    """How a gateway hands a command to the conversation service and gets the reply."""

    async def send(self, command: Command) -> Reply: ...

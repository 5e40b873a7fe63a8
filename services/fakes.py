"""In-memory fakes of the ports, for fast tests and as executable contracts."""

from __future__ import annotations

import os
from collections.abc import Sequence

from schemas.commands import Command
from schemas.events import Event
from services.ports import LoggedCommand, LoggedEvent


class InMemoryEventLog:
    def __init__(self) -> None:
        self._events: list[Event] = []
        self._ids: set[str] = set()
        self._commands: list[Command] = []
        self._journaled: set[tuple[str, int]] = set()

    async def append(self, events: Sequence[Event], command: Command | None = None) -> None:
        for event in events:
            if event.id not in self._ids:
                self._ids.add(event.id)
                self._events.append(event)
        if command is not None and events:
            key = (command.conversation_id, events[0].seq)
            if key not in self._journaled:
                self._journaled.add(key)
                self._commands.append(command)

    async def read_conversation(self, conversation_id: str) -> list[Event]:
        return [e for e in self._events if e.conversation_id == conversation_id]

    async def read_after(self, position: int, limit: int) -> list[LoggedEvent]:
        window = self._events[position : position + limit]
        return [LoggedEvent(position + i + 1, e) for i, e in enumerate(window)]

    async def read_commands_after(self, position: int, limit: int) -> list[LoggedCommand]:
        window = self._commands[position : position + limit]
        return [LoggedCommand(position + i + 1, c) for i, c in enumerate(window)]


class InMemoryKeyStore:
    def __init__(self) -> None:
        self._keys: dict[str, bytes] = {}

    async def get_or_create(self, conversation_id: str) -> bytes:
        return self._keys.setdefault(conversation_id, os.urandom(32))

    async def get(self, conversation_id: str) -> bytes | None:
        return self._keys.get(conversation_id)

    async def get_many(self, conversation_ids: Sequence[str]) -> dict[str, bytes]:
        return {cid: self._keys[cid] for cid in conversation_ids if cid in self._keys}

    async def delete(self, conversation_id: str) -> bool:
        return self._keys.pop(conversation_id, None) is not None

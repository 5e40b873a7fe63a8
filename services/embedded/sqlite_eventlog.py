"""The embedded mode's event log: an append-only SQLite table (the source of truth)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from schemas.codec import encode
from schemas.events import Event, decode_event
from services.embedded.sqlite_worker import SqliteAdapter
from services.ports import LoggedEvent

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    conversation_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    at REAL NOT NULL,
    body BLOB NOT NULL,
    UNIQUE (conversation_id, seq)
);
"""


class SqliteEventLog(SqliteAdapter):
    """Appends are durable when awaited (WAL; ``synchronous`` NORMAL survives a
    killed process, FULL also a power cut) and idempotent on event id."""

    schema = SCHEMA

    async def append(self, events: Sequence[Event]) -> None:
        rows = [(e.id, e.conversation_id, e.seq, e.type, e.at, encode(e)) for e in events]

        def insert(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO events (id, conversation_id, seq, type, at, body)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                rows,
            )

        await self._worker.write(insert)

    async def read_conversation(self, conversation_id: str) -> list[Event]:
        def select(conn: sqlite3.Connection) -> list[bytes]:
            cur = conn.execute(
                "SELECT body FROM events WHERE conversation_id = ? ORDER BY seq",
                (conversation_id,),
            )
            return [row[0] for row in cur]

        return [decode_event(body) for body in await self._worker.read(select)]

    async def read_after(self, position: int, limit: int) -> list[LoggedEvent]:
        def select(conn: sqlite3.Connection) -> list[tuple[int, bytes]]:
            cur = conn.execute(
                "SELECT position, body FROM events WHERE position > ? ORDER BY position LIMIT ?",
                (position, limit),
            )
            return list(cur)

        rows = await self._worker.read(select)
        return [LoggedEvent(pos, decode_event(body)) for pos, body in rows]

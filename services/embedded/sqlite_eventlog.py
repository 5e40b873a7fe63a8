"""The embedded mode's event log: an append-only SQLite table (the source of truth)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

from schemas.codec import encode
from schemas.events import Event, decode_event
from services.embedded.sqlite_worker import SqliteAdapter
from services.ports import LoggedEvent

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    position INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    at REAL NOT NULL,
    body BLOB NOT NULL,
    UNIQUE (conversation_id, seq)
);
"""


Projection = Callable[[sqlite3.Connection, Sequence[Event]], None]


class SqliteEventLog(SqliteAdapter):
    """Appends are durable when awaited (WAL; ``synchronous`` NORMAL survives a
    killed process, FULL also a power cut) and idempotent: an event's id is a
    function of (conversation id, seq), so the unique (conversation_id, seq)
    key refuses a second copy.

    ``projection`` runs inside the append's transaction: read models in the
    same file are then exactly as current as the log, even after kill -9, and
    nothing has to read the events back to project them."""

    def __init__(
        self,
        path: Path,
        synchronous: str = "NORMAL",
        projection: Projection | None = None,
        projection_schema: str = "",
    ) -> None:
        self.schema = SCHEMA + projection_schema
        super().__init__(path, synchronous)
        self._projection = projection

    async def append(self, events: Sequence[Event]) -> None:
        rows = [(e.id, e.conversation_id, e.seq, e.type, e.at, encode(e)) for e in events]

        def insert(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO events (id, conversation_id, seq, type, at, body)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                rows,
            )
            if self._projection is not None:
                self._projection(conn, events)

        await self._writer.write(insert)

    async def read_conversation(self, conversation_id: str) -> list[Event]:
        def select(conn: sqlite3.Connection) -> list[bytes]:
            cur = conn.execute(
                "SELECT body FROM events WHERE conversation_id = ? ORDER BY seq",
                (conversation_id,),
            )
            return [row[0] for row in cur]

        return [decode_event(body) for body in await self._reader.read(select)]

    async def read_after(self, position: int, limit: int) -> list[LoggedEvent]:
        def select(conn: sqlite3.Connection) -> list[tuple[int, bytes]]:
            cur = conn.execute(
                "SELECT position, body FROM events WHERE position > ? ORDER BY position LIMIT ?",
                (position, limit),
            )
            return list(cur)

        rows = await self._reader.read(select)
        return [LoggedEvent(pos, decode_event(body)) for pos, body in rows]

"""Per-conversation keys in their own SQLite file, apart from the event log,
so that backups and copies of the log never carry the keys."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Sequence

from services.conversation.sealing import KEY_BYTES
from services.embedded.sqlite_worker import SqliteAdapter

GET_MANY_CHUNK = 500  # under SQLite's 999 bound variables of old builds
SCHEMA = """
CREATE TABLE IF NOT EXISTS conversation_keys (
    conversation_id TEXT PRIMARY KEY,
    key BLOB NOT NULL,
    created_at REAL NOT NULL
);
"""


class SqliteKeyStore(SqliteAdapter):
    schema = SCHEMA

    async def get_or_create(self, conversation_id: str) -> bytes:
        candidate = os.urandom(KEY_BYTES)

        def upsert(conn: sqlite3.Connection) -> bytes:
            conn.execute(
                "INSERT INTO conversation_keys VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                (conversation_id, candidate, time.time()),
            )
            row = conn.execute(
                "SELECT key FROM conversation_keys WHERE conversation_id = ?", (conversation_id,)
            ).fetchone()
            key: bytes = row[0]
            return key

        return await self._writer.write(upsert)

    async def get(self, conversation_id: str) -> bytes | None:
        def select(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute(
                "SELECT key FROM conversation_keys WHERE conversation_id = ?", (conversation_id,)
            ).fetchone()
            return None if row is None else bytes(row[0])

        return await self._reader.read(select)

    async def get_many(self, conversation_ids: Sequence[str]) -> dict[str, bytes]:
        wanted = list(dict.fromkeys(conversation_ids))

        def select(conn: sqlite3.Connection) -> dict[str, bytes]:
            out: dict[str, bytes] = {}
            for start in range(0, len(wanted), GET_MANY_CHUNK):
                chunk = wanted[start : start + GET_MANY_CHUNK]
                marks = ",".join("?" * len(chunk))
                cur = conn.execute(
                    "SELECT conversation_id, key FROM conversation_keys"
                    f" WHERE conversation_id IN ({marks})",
                    chunk,
                )
                out.update((cid, bytes(key)) for cid, key in cur)
            return out

        return await self._reader.read(select) if wanted else {}

    async def delete(self, conversation_id: str) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "DELETE FROM conversation_keys WHERE conversation_id = ?", (conversation_id,)
            )
            return cur.rowcount > 0

        return await self._writer.write(delete)

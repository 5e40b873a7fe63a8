"""The embedded mode's read models in SQLite, written idempotently.

They live in the event log's file: :func:`project_events` runs inside each
append's transaction (see SqliteEventLog), so the views are exactly as current
as the log. A re-applied event is ignored by its seq, so replaying any part of
the log into them changes nothing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import orjson

from projector.readmodel import ConversationView, LeadView, lead_of, project
from schemas.codec import from_mapping
from schemas.events import Event, LeadCaptured
from services.embedded.sqlite_worker import SqliteAdapter

SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    conversation_id TEXT PRIMARY KEY,
    site_id TEXT NOT NULL,
    last_seq INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS leads (
    conversation_id TEXT PRIMARY KEY,
    site_id TEXT NOT NULL,
    captured_at REAL NOT NULL,
    erased INTEGER NOT NULL DEFAULT 0,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS leads_by_site ON leads (site_id, captured_at);
"""


def _load_view(conn: sqlite3.Connection, cid: str) -> ConversationView | None:
    row = conn.execute(
        "SELECT body FROM conversations WHERE conversation_id = ?", (cid,)
    ).fetchone()
    return None if row is None else from_mapping(ConversationView, orjson.loads(row[0]))


def project_events(conn: sqlite3.Connection, events: Sequence[Event]) -> None:
    """Apply ``events`` to the views, inside the caller's transaction."""
    views: dict[str, ConversationView | None] = {}
    leads: list[LeadView] = []
    for event in events:
        cid = event.conversation_id
        if cid not in views:
            views[cid] = _load_view(conn, cid)
        before = views[cid]
        after = project(before, event)
        views[cid] = after
        if isinstance(event, LeadCaptured) and after is not None and after is not before:
            leads.append(lead_of(event, after.flow_id))
    conn.executemany(
        "INSERT INTO conversations VALUES (?, ?, ?, ?) ON CONFLICT (conversation_id) DO UPDATE"
        " SET last_seq = excluded.last_seq, body = excluded.body"
        " WHERE excluded.last_seq > conversations.last_seq",
        [(v.conversation_id, v.site_id, v.last_seq, orjson.dumps(v)) for v in views.values() if v],
    )
    conn.executemany(
        "INSERT INTO leads (conversation_id, site_id, captured_at, body) VALUES (?, ?, ?, ?)"
        " ON CONFLICT DO NOTHING",
        [
            (lead.conversation_id, lead.site_id, lead.captured_at, orjson.dumps(lead))
            for lead in leads
        ],
    )


class SqliteReadModel(SqliteAdapter):
    """Queries (and erasure) over the read models; writes come from the log's appends."""

    schema = SCHEMA

    async def conversation(self, conversation_id: str) -> ConversationView | None:
        return await self._reader.read(lambda conn: _load_view(conn, conversation_id))

    async def leads(self, site_id: str, limit: int = 100) -> list[tuple[LeadView, bool]]:
        """The newest leads of a site first, each with its ``erased`` flag."""

        def select(conn: sqlite3.Connection) -> list[tuple[LeadView, bool]]:
            cur = conn.execute(
                "SELECT body, erased FROM leads WHERE site_id = ?"
                " ORDER BY captured_at DESC LIMIT ?",
                (site_id, limit),
            )
            return [(from_mapping(LeadView, orjson.loads(b)), bool(e)) for b, e in cur]

        return await self._reader.read(select)

    async def lead(self, conversation_id: str) -> tuple[LeadView, bool] | None:
        def select(conn: sqlite3.Connection) -> tuple[LeadView, bool] | None:
            row = conn.execute(
                "SELECT body, erased FROM leads WHERE conversation_id = ?", (conversation_id,)
            ).fetchone()
            return (
                None
                if row is None
                else (from_mapping(LeadView, orjson.loads(row[0])), bool(row[1]))
            )

        return await self._reader.read(select)

    async def mark_erased(self, conversation_id: str) -> bool:
        """Drop the sealed blob too: without the key it is noise, and now it is gone."""

        def update(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT body FROM leads WHERE conversation_id = ?", (conversation_id,)
            ).fetchone()
            if row is None:
                return False
            body = orjson.loads(row[0])
            body["sealed"] = ""
            conn.execute(
                "UPDATE leads SET erased = 1, body = ? WHERE conversation_id = ?",
                (orjson.dumps(body), conversation_id),
            )
            return True

        return await self._writer.write(update)

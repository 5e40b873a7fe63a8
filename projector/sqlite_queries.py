"""The embedded mode's read-model queries in SQLite: the read-only SELECTs
behind :class:`~projector.sqlite_store.SqliteReadModel`'s reads.

Why apart from the adapter: each is a plain function of a connection (and a
namespace), so the adapter only chooses the thread and transaction to run it
in. Reads of the current namespace are given it by the adapter, which finds it
in the same read transaction; the log's queries read its ``events`` table.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

from projector.store import LeadsPage, encode_cursor
from projector.views import lead_from_fields


def frontier_of(conn: sqlite3.Connection, namespace: str) -> dict[str, int]:
    """The next offset ``namespace`` reads in each part of the log."""
    cur = conn.execute("SELECT part, next_offset FROM rm_frontier WHERE ns = ?", (namespace,))
    return {part: int(offset) for part, offset in cur}


def namespace_size(conn: sqlite3.Connection, namespace: str) -> tuple[int, int]:
    """(conversations, leads) held in ``namespace``, counted in one read transaction."""

    def count(conn: sqlite3.Connection, table: str) -> int:
        row = conn.execute(f"SELECT COUNT(*) FROM {table} WHERE ns = ?", (namespace,))
        return int(row.fetchone()[0])

    conn.execute("BEGIN")
    try:
        return count(conn, "rm_conversations"), count(conn, "rm_leads")
    finally:
        conn.execute("COMMIT")


def position_before(conn: sqlite3.Connection, since: float) -> int:
    """The position after which the log's first event at or after ``since``
    comes (the last position when there is none)."""
    row = conn.execute(
        "SELECT position FROM events WHERE at >= ? ORDER BY position LIMIT 1", (since,)
    ).fetchone()
    if row is not None:
        return int(row[0]) - 1
    last = conn.execute("SELECT MAX(position) FROM events").fetchone()[0]
    return int(last or 0)


def events_after(conn: sqlite3.Connection, position: int) -> int:
    """How many events the log holds after ``position``."""
    count: int = conn.execute(
        "SELECT COUNT(*) FROM events WHERE position > ?", (position,)
    ).fetchone()[0]
    return count


def transcript_of(
    conn: sqlite3.Connection, namespace: str, conversation_id: str, after_seq: int, limit: int
) -> list[dict[str, Any]]:
    """Up to ``limit`` transcript entries of the conversation after ``after_seq``."""
    cur = conn.execute(
        "SELECT entries FROM rm_transcript_chunks WHERE ns = ? AND conversation_id = ?"
        " AND last_seq > ? ORDER BY last_seq",
        (namespace, conversation_id, after_seq),
    )
    found: list[dict[str, Any]] = []
    for (entries,) in cur:  # chunks in seq order, each in seq order
        found.extend(e for e in orjson.loads(entries) if e["seq"] > after_seq)
        if len(found) >= limit:
            break
    return found[:limit]


def leads_page(
    conn: sqlite3.Connection,
    namespace: str,
    site_id: str,
    position: tuple[float, str] | None,
    limit: int,
) -> LeadsPage:
    """A page of the site's leads, newest first, after the keyset ``position``
    (the decoded cursor; None for the first page)."""
    if position is None:
        cur = conn.execute(
            "SELECT fields FROM rm_leads WHERE ns = ? AND site_id = ?"
            " ORDER BY captured_at DESC, conversation_id DESC LIMIT ?",
            (namespace, site_id, limit + 1),
        )
    else:
        cur = conn.execute(
            "SELECT fields FROM rm_leads WHERE ns = ? AND site_id = ?"
            " AND (captured_at, conversation_id) < (?, ?)"
            " ORDER BY captured_at DESC, conversation_id DESC LIMIT ?",
            (namespace, site_id, *position, limit + 1),
        )
    page = [lead_from_fields(orjson.loads(fields)) for (fields,) in cur]
    if len(page) <= limit:
        return LeadsPage(page, None)
    page = page[:limit]
    last = page[-1]
    return LeadsPage(page, encode_cursor(last.captured_at, last.conversation_id))

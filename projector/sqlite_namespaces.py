"""The read models' namespaces in SQLite: which one is current, how each was
filled, how far it has read the log, and dropping one.

Why namespaces: a rebuild fills a fresh namespace while the current one keeps
serving, then switches the ``current`` pointer in one transaction, and the old
one is dropped in chunks (:class:`~projector.sqlite_store.SqliteReadModel`).
``rm_meta`` holds the pointer, the ``serial`` that names new namespaces, and
each namespace's counter layout (``layout:{ns}``) and transcript form
(``transcript:{ns}``), so that a namespace of an earlier version is known and
rebuilt. Every function runs in the caller's transaction: the log's append
(:func:`ensure_current`, through the projection hook) or the adapter's writer.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping

from projector import sqlite_counters as counters
from projector.write_set import LAYOUT_VERSION

DROP_CHUNK = 2_000  # rows (or conversations, or counter keys) per drop transaction


def current_of(conn: sqlite3.Connection) -> str | None:
    """The namespace reads and live appends use; None before the first one."""
    row = conn.execute("SELECT value FROM rm_meta WHERE key = 'current'").fetchone()
    return None if row is None else str(row[0])


def next_namespace(conn: sqlite3.Connection) -> str:
    """A new namespace, named from the ``serial`` and recorded as filled with this
    version's counter layout and chunked transcript."""
    conn.execute(
        "INSERT INTO rm_meta (key, value) VALUES ('serial', '1') ON CONFLICT (key)"
        " DO UPDATE SET value = CAST(value AS INTEGER) + 1"
    )
    row = conn.execute("SELECT value FROM rm_meta WHERE key = 'serial'").fetchone()
    namespace = f"n{int(row[0])}"
    conn.executemany(
        "INSERT OR REPLACE INTO rm_meta (key, value) VALUES (?, ?)",
        [(f"layout:{namespace}", str(LAYOUT_VERSION)), (f"transcript:{namespace}", CHUNKED)],
    )
    return namespace


CHUNKED = "chunks"  # rm_meta's ``transcript:{ns}`` of a namespace whose transcript is in chunks


def transcript_chunked(conn: sqlite3.Connection, namespace: str) -> bool:
    """Whether ``namespace`` keeps its transcript in chunks (not a row per entry)."""
    row = conn.execute("SELECT value FROM rm_meta WHERE key = ?", (f"transcript:{namespace}",))
    found = row.fetchone()
    return found is not None and found[0] == CHUNKED


def layout_of(conn: sqlite3.Connection, namespace: str) -> int:
    """The counter layout ``namespace`` was filled with (1: before layouts were recorded)."""
    row = conn.execute("SELECT value FROM rm_meta WHERE key = ?", (f"layout:{namespace}",))
    found = row.fetchone()
    return 1 if found is None else int(found[0])


def ensure_current(conn: sqlite3.Connection) -> str:
    """The current namespace, created on first use (inside a write transaction)."""
    namespace = current_of(conn)
    if namespace is None:
        namespace = next_namespace(conn)
        set_current(conn, namespace)
    return namespace


def set_current(conn: sqlite3.Connection, namespace: str) -> None:
    """Point ``current`` at ``namespace``."""
    conn.execute(
        "INSERT INTO rm_meta (key, value) VALUES ('current', ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (namespace,),
    )


def set_frontier(conn: sqlite3.Connection, namespace: str, frontier: Mapping[str, int]) -> None:
    """Record the next offset ``namespace`` reads in each part of the log."""
    conn.executemany(
        "INSERT INTO rm_frontier (ns, part, next_offset) VALUES (?, ?, ?)"
        " ON CONFLICT (ns, part) DO UPDATE SET next_offset = excluded.next_offset",
        [(namespace, part, int(offset)) for part, offset in frontier.items()],
    )


def drop_chunk(conn: sqlite3.Connection, namespace: str) -> int:
    """Delete up to DROP_CHUNK entries of each kind; counts as the fake does (a
    conversation, a lead, a transcript, a counter hash are one entry each)."""
    if namespace == current_of(conn):
        raise ValueError(f"namespace {namespace!r} is current; switch away first")
    counters.fold(conn)  # its counters are then rows of rm_counters, counted below
    removed = 0
    for table in ("rm_conversations", "rm_leads"):
        removed += conn.execute(
            f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE ns = ? LIMIT ?)",
            (namespace, DROP_CHUNK),
        ).rowcount
    for table, column in (
        ("rm_transcript_chunks", "conversation_id"),
        ("rm_transcript", "conversation_id"),  # an earlier version's
        ("rm_counters", "key"),
    ):
        groups = [
            (namespace, row[0])
            for row in conn.execute(
                f"SELECT DISTINCT {column} FROM {table} WHERE ns = ? LIMIT ?",
                (namespace, DROP_CHUNK),
            )
        ]
        conn.executemany(f"DELETE FROM {table} WHERE ns = ? AND {column} = ?", groups)
        removed += len(groups)
    conn.execute("DELETE FROM rm_frontier WHERE ns = ?", (namespace,))
    if removed == 0:
        conn.executemany(
            "DELETE FROM rm_meta WHERE key = ?",
            [(f"layout:{namespace}",), (f"transcript:{namespace}",)],
        )
    return removed

"""The embedded mode's read models in SQLite: the read-model store port on tables.

They live in the event log's file, written inside each append's transaction by
the log's projection hook (:mod:`projector.sqlite_projection`). This adapter
runs each port method as one transaction on its writer or reader thread, over
the tables of :mod:`projector.sqlite_schema`, the namespaces of
:mod:`projector.sqlite_namespaces` and the queries of
:mod:`projector.sqlite_queries`.

A rebuild (:mod:`projector.sqlite_rebuild`) fills a fresh namespace from the
log, then :meth:`SqliteReadModel.switch_after_catch_up` projects the last
events and switches in one writer transaction: live appends project in a
writer transaction too (SQLite has one writer at a time, across processes), so
no event can fall between the catch-up and the switch.

A namespace without a layout, or with an older one (a data directory of an
earlier version), or whose transcript is not in chunks, makes
:meth:`SqliteReadModel.needs_rebuild` true: ``leadflow serve`` then rebuilds
the read models from the log before it serves.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, TypeVar

from projector import sqlite_counters as counters
from projector import sqlite_queries as queries
from projector.sqlite_namespaces import (
    current_of,
    drop_chunk,
    ensure_current,
    layout_of,
    next_namespace,
    set_current,
    set_frontier,
    transcript_chunked,
)
from projector.sqlite_projection import (
    apply_write_sets,
    erase,
    lead_of,
    load_views,
    project_into,
    started_since,
)
from projector.sqlite_schema import LEGACY_TABLES, SCHEMA
from projector.store import LeadsPage, Outcome, decode_cursor
from projector.views import ConversationView, LeadView
from projector.write_set import LAYOUT_VERSION, WriteSet
from schemas.events import decode_event
from services.embedded.sqlite_eventlog import SCHEMA as LOG_SCHEMA
from services.embedded.sqlite_worker import SqliteAdapter

T = TypeVar("T")


class SqliteReadModel(SqliteAdapter):
    """The read-model store on SQLite (usually the event log's own file).

    Writes go through this adapter's writer thread; reads of the current
    namespace run in one read transaction each, so a switch and drop between
    finding the namespace and reading it cannot show a half-empty model.
    Reads never create the current namespace (an empty one reads the same)."""

    schema = LOG_SCHEMA + SCHEMA

    async def _read_current(self, fn: Callable[[sqlite3.Connection, str], T], empty: T) -> T:
        def run(conn: sqlite3.Connection) -> T:
            conn.execute("BEGIN")
            try:
                namespace = current_of(conn)
                return empty if namespace is None else fn(conn, namespace)
            finally:
                conn.execute("COMMIT")

        return await self._reader.read(run)

    # -- writing -------------------------------------------------------------
    async def current_namespace(self) -> str:
        current = await self._reader.read(current_of)
        return current if current is not None else await self._writer.write(ensure_current)

    async def load_views(
        self, namespace: str, conversation_ids: Collection[str]
    ) -> dict[str, ConversationView]:
        ids = list(conversation_ids)
        return await self._reader.read(lambda conn: load_views(conn, namespace, ids))

    async def apply(
        self, namespace: str, write_sets: Sequence[WriteSet], *, live: bool
    ) -> list[Outcome]:
        sets = list(write_sets)

        def write(conn: sqlite3.Connection) -> list[Outcome]:
            if live and current_of(conn) != namespace:
                return [Outcome.MOVED] * len(sets)
            return apply_write_sets(conn, namespace, sets)

        return await self._writer.write(write)

    # -- rebuilding ----------------------------------------------------------
    async def new_namespace(self) -> str:
        return await self._writer.write(next_namespace)

    async def set_frontier(
        self, namespace: str, frontier: Mapping[str, int], *, live: bool = False
    ) -> None:
        parts = dict(frontier)

        def write(conn: sqlite3.Connection) -> None:
            if live and current_of(conn) != namespace:
                return
            set_frontier(conn, namespace, parts)

        await self._writer.write(write)

    async def frontier(self, namespace: str) -> dict[str, int]:
        return await self._reader.read(lambda conn: queries.frontier_of(conn, namespace))

    async def switch_to(self, namespace: str) -> str:
        def write(conn: sqlite3.Connection) -> str:
            previous = ensure_current(conn)
            set_current(conn, namespace)
            return previous

        return await self._writer.write(write)

    async def drop_namespace(self, namespace: str) -> int:
        """Deleted a chunk per transaction, so that live appends (which wait for
        the one writer) are not held up by a large namespace."""
        removed = 0
        while True:
            chunk = await self._writer.write(lambda conn: drop_chunk(conn, namespace))
            removed += chunk
            if chunk == 0:
                return removed

    async def switch_after_catch_up(
        self, namespace: str, after_position: int, *, since: float | None = None
    ) -> tuple[str, int]:
        """In one writer transaction: project every logged event after
        ``after_position`` into ``namespace`` (conversations started before
        ``since`` stay out), record its frontier ``{"position": last}``, carry
        over the erasures made in the current namespace meanwhile, and make it
        current. Returns (previous namespace, events caught up)."""

        def write(conn: sqlite3.Connection) -> tuple[str, int]:
            rows = conn.execute(
                "SELECT position, body FROM events WHERE position > ? ORDER BY position",
                (after_position,),
            ).fetchall()
            events = [decode_event(body) for _, body in rows]
            project_into(conn, namespace, (e for e in events if started_since(e, since)))
            last = rows[-1][0] if rows else after_position
            set_frontier(conn, namespace, {"position": last})
            previous = ensure_current(conn)
            if previous != namespace:
                erased = conn.execute(
                    "SELECT conversation_id FROM rm_leads WHERE ns = ? AND erased = 1",
                    (previous,),
                ).fetchall()
                for (cid,) in erased:
                    erase(conn, namespace, cid)
            set_current(conn, namespace)
            return previous, len(rows)

        return await self._writer.write(write)

    # -- the log, for rebuilds -------------------------------------------------
    async def position_before(self, since: float) -> int:
        """The position after which the log's first event at or after ``since``
        comes (the last position when there is none)."""
        return await self._reader.read(lambda conn: queries.position_before(conn, since))

    async def events_after(self, position: int) -> int:
        return await self._reader.read(lambda conn: queries.events_after(conn, position))

    async def needs_rebuild(self) -> bool:
        """True when the read models are of an earlier version: a log with events
        but no current namespace (read models not namespaced yet), or a current
        namespace filled with an older counter layout (no per-site funnels) or
        with a transcript of one row per entry."""

        def read(conn: sqlite3.Connection) -> bool:
            namespace = current_of(conn)
            if namespace is not None:
                older = layout_of(conn, namespace) < LAYOUT_VERSION
                return older or not transcript_chunked(conn, namespace)
            return conn.execute("SELECT 1 FROM events LIMIT 1").fetchone() is not None

        return await self._reader.read(read)

    async def adopt_legacy(self) -> int | None:
        """Carry the erasures of an earlier version's read models into the current
        namespace and drop those tables; None when there are none. Run after the
        rebuild that replaces them."""

        def write(conn: sqlite3.Connection) -> int | None:
            names = {
                row[0]
                for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
            if not names & set(LEGACY_TABLES):
                return None
            namespace = ensure_current(conn)
            carried = 0
            if "leads" in names:
                rows = conn.execute("SELECT conversation_id FROM leads WHERE erased = 1")
                for (cid,) in rows.fetchall():
                    carried += erase(conn, namespace, cid)
            for table in LEGACY_TABLES:
                conn.execute(f"DROP TABLE IF EXISTS {table}")
            return carried

        return await self._writer.write(write)

    async def size(self, namespace: str) -> tuple[int, int]:
        """(conversations, leads) held in ``namespace``."""
        return await self._reader.read(lambda conn: queries.namespace_size(conn, namespace))

    # -- reading (the current namespace) --------------------------------------
    async def conversation(self, conversation_id: str) -> ConversationView | None:
        def read(conn: sqlite3.Connection, ns: str) -> ConversationView | None:
            return load_views(conn, ns, [conversation_id]).get(conversation_id)

        return await self._read_current(read, None)

    async def transcript(
        self, conversation_id: str, after_seq: int = 0, limit: int = 100
    ) -> list[dict[str, Any]]:
        def read(conn: sqlite3.Connection, ns: str) -> list[dict[str, Any]]:
            return queries.transcript_of(conn, ns, conversation_id, after_seq, limit)

        return await self._read_current(read, [])

    async def lead(self, conversation_id: str) -> LeadView | None:
        return await self._read_current(lambda conn, ns: lead_of(conn, ns, conversation_id), None)

    async def leads(self, site_id: str, cursor: str | None = None, limit: int = 50) -> LeadsPage:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        position = None if cursor is None else decode_cursor(cursor)

        def read(conn: sqlite3.Connection, ns: str) -> LeadsPage:
            return queries.leads_page(conn, ns, site_id, position, limit)

        return await self._read_current(read, LeadsPage([], None))

    async def counters(self, key: str) -> dict[str, int]:
        return await self._read_current(
            lambda conn, ns: counters.counters_of(conn, ns, key), dict[str, int]()
        )

    async def mark_erased(self, conversation_id: str) -> bool:
        """Blank the sealed blob too: without the key it is noise, and now it is gone."""

        def write(conn: sqlite3.Connection) -> bool:
            namespace = current_of(conn)
            return namespace is not None and erase(conn, namespace, conversation_id)

        return await self._writer.write(write)

    async def ping(self) -> bool:
        def read(conn: sqlite3.Connection) -> bool:
            return bool(conn.execute("SELECT 1").fetchone() == (1,))

        return await self._reader.read(read)

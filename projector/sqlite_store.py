"""The embedded mode's read models in SQLite: the read-model store port on tables.

They live in the event log's file. :func:`project_in_transaction` is the log's
projection hook: it runs inside each append's transaction (see
SqliteEventLog), reads the current namespace there, plans on the stored views
(:func:`projector.plan.plan`) and applies the write sets with the same seq
check as :meth:`SqliteReadModel.apply`. The views are therefore exactly as
current as the log, even after kill -9, and a replayed event changes nothing.

The tables and why a transcript is kept in chunks: :mod:`projector.sqlite_schema`.

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
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeVar

import orjson

from projector import sqlite_counters as counters
from projector.engine import group_by_conversation
from projector.plan import LAYOUT_VERSION, Increment, WriteSet, plan
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
from projector.sqlite_schema import LEGACY_TABLES, SCHEMA
from projector.store import LeadsPage, Outcome, decode_cursor, encode_cursor
from projector.views import (
    ConversationView,
    LeadView,
    lead_fields,
    lead_from_fields,
    view_from_fields,
)
from schemas.events import ConversationStarted, Event, decode_event
from services.embedded.sqlite_eventlog import SCHEMA as LOG_SCHEMA
from services.embedded.sqlite_worker import SqliteAdapter

T = TypeVar("T")

IN_CHUNK = 500  # ids per ``IN (...)``, well under SQLite's variable limit


def load_views(
    conn: sqlite3.Connection, namespace: str, conversation_ids: Iterable[str]
) -> dict[str, ConversationView]:
    ids = list(dict.fromkeys(conversation_ids))
    views: dict[str, ConversationView] = {}
    for i in range(0, len(ids), IN_CHUNK):
        chunk = ids[i : i + IN_CHUNK]
        marks = ",".join("?" * len(chunk))
        cur = conn.execute(
            "SELECT conversation_id, fields FROM rm_conversations"
            f" WHERE ns = ? AND conversation_id IN ({marks})",
            (namespace, *chunk),
        )
        for cid, fields in cur:
            views[cid] = view_from_fields(orjson.loads(fields))
    return views


def apply_write_sets(
    conn: sqlite3.Connection,
    namespace: str,
    write_sets: Sequence[WriteSet],
    held: Mapping[str, int] | None = None,
) -> list[Outcome]:
    """Each write set with its seq check, inside the caller's transaction: written
    only if the conversation holds ``base_seq``; DUPLICATE if it holds ``new_seq``
    already, CONFLICT if it holds something else. ``held``: the seqs of the
    conversations as just read in this transaction (saves reading them again)."""
    outcomes = []
    increments: list[Increment] = []
    for ws in write_sets:
        seq = None if held is None else held.get(ws.conversation_id)
        if seq is None:
            row = conn.execute(
                "SELECT last_seq FROM rm_conversations WHERE ns = ? AND conversation_id = ?",
                (namespace, ws.conversation_id),
            ).fetchone()
            seq = 0 if row is None else int(row[0])
        if seq >= ws.new_seq:
            outcomes.append(Outcome.DUPLICATE)
            continue
        if seq != ws.base_seq:
            outcomes.append(Outcome.CONFLICT)
            continue
        _write(conn, namespace, ws)
        increments.extend(ws.increments)
        outcomes.append(Outcome.APPLIED)
    counters.add_increments(conn, namespace, increments)
    return outcomes


def _write(conn: sqlite3.Connection, namespace: str, ws: WriteSet) -> None:
    cid = ws.conversation_id
    conn.execute(
        "INSERT INTO rm_conversations (ns, conversation_id, last_seq, fields) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (ns, conversation_id)"
        " DO UPDATE SET last_seq = excluded.last_seq, fields = excluded.fields",
        (namespace, cid, int(ws.fields.get("last_seq", "0")), orjson.dumps(ws.fields)),
    )
    if ws.transcript:
        conn.execute(
            "INSERT INTO rm_transcript_chunks (ns, conversation_id, last_seq, entries)"
            " VALUES (?, ?, ?, ?)",
            (namespace, cid, _last_seq(ws), b"[" + b",".join(ws.transcript) + b"]"),
        )
    if ws.lead is not None:
        _put_lead(conn, namespace, ws.lead)


def _last_seq(ws: WriteSet) -> int:
    """The seq of the write set's last transcript entry (parsed again only when
    the write set does not carry the seqs)."""
    if len(ws.transcript_seqs) == len(ws.transcript):
        return max(ws.transcript_seqs)
    return max(int(orjson.loads(entry)["seq"]) for entry in ws.transcript)


def _put_lead(conn: sqlite3.Connection, namespace: str, lead: LeadView) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO rm_leads"
        " (ns, conversation_id, site_id, captured_at, erased, fields) VALUES (?, ?, ?, ?, ?, ?)",
        (
            namespace,
            lead.conversation_id,
            lead.site_id,
            lead.captured_at,
            int(lead.erased),
            orjson.dumps(lead_fields(lead)),
        ),
    )


def _lead_of(conn: sqlite3.Connection, namespace: str, cid: str) -> LeadView | None:
    row = conn.execute(
        "SELECT fields FROM rm_leads WHERE ns = ? AND conversation_id = ?", (namespace, cid)
    ).fetchone()
    return None if row is None else lead_from_fields(orjson.loads(row[0]))


def _erase(conn: sqlite3.Connection, namespace: str, cid: str) -> bool:
    lead = _lead_of(conn, namespace, cid)
    if lead is None:
        return False
    _put_lead(conn, namespace, replace(lead, sealed="", erased=True))
    return True


def project_into(conn: sqlite3.Connection, namespace: str, events: Iterable[Event]) -> int:
    """Plan ``events`` on the views stored in ``namespace`` and apply them, in the
    caller's transaction; returns how many conversations changed."""
    groups = group_by_conversation(events)
    if not groups:
        return 0
    views = load_views(conn, namespace, groups)
    write_sets = []
    for cid, group in groups.items():
        _, write_set = plan(views.get(cid), group)
        if write_set is not None:
            write_sets.append(write_set)
    # The views were read in this transaction: nothing can conflict.
    held = {cid: views[cid].last_seq if cid in views else 0 for cid in groups}
    outcomes = apply_write_sets(conn, namespace, write_sets, held)
    return sum(1 for outcome in outcomes if outcome is Outcome.APPLIED)


def project_in_transaction(conn: sqlite3.Connection, events: Sequence[Event]) -> None:
    """The event log's projection hook: ``events`` (just appended, or appended
    again) into the current namespace, inside the append's transaction."""
    project_into(conn, ensure_current(conn), events)


# -- the adapter ---------------------------------------------------------------


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
        def read(conn: sqlite3.Connection) -> dict[str, int]:
            cur = conn.execute(
                "SELECT part, next_offset FROM rm_frontier WHERE ns = ?", (namespace,)
            )
            return {part: int(offset) for part, offset in cur}

        return await self._reader.read(read)

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
                    _erase(conn, namespace, cid)
            set_current(conn, namespace)
            return previous, len(rows)

        return await self._writer.write(write)

    # -- the log, for rebuilds -------------------------------------------------
    async def position_before(self, since: float) -> int:
        """The position after which the log's first event at or after ``since``
        comes (the last position when there is none)."""

        def read(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT position FROM events WHERE at >= ? ORDER BY position LIMIT 1", (since,)
            ).fetchone()
            if row is not None:
                return int(row[0]) - 1
            last = conn.execute("SELECT MAX(position) FROM events").fetchone()[0]
            return int(last or 0)

        return await self._reader.read(read)

    async def events_after(self, position: int) -> int:
        def read(conn: sqlite3.Connection) -> int:
            count: int = conn.execute(
                "SELECT COUNT(*) FROM events WHERE position > ?", (position,)
            ).fetchone()[0]
            return count

        return await self._reader.read(read)

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
                    carried += _erase(conn, namespace, cid)
            for table in LEGACY_TABLES:
                conn.execute(f"DROP TABLE IF EXISTS {table}")
            return carried

        return await self._writer.write(write)

    async def size(self, namespace: str) -> tuple[int, int]:
        """(conversations, leads) held in ``namespace``."""

        def count(conn: sqlite3.Connection, table: str) -> int:
            row = conn.execute(f"SELECT COUNT(*) FROM {table} WHERE ns = ?", (namespace,))
            return int(row.fetchone()[0])

        def read(conn: sqlite3.Connection) -> tuple[int, int]:
            conn.execute("BEGIN")
            try:
                return count(conn, "rm_conversations"), count(conn, "rm_leads")
            finally:
                conn.execute("COMMIT")

        return await self._reader.read(read)

    # -- reading (the current namespace) --------------------------------------
    async def conversation(self, conversation_id: str) -> ConversationView | None:
        def read(conn: sqlite3.Connection, ns: str) -> ConversationView | None:
            return load_views(conn, ns, [conversation_id]).get(conversation_id)

        return await self._read_current(read, None)

    async def transcript(
        self, conversation_id: str, after_seq: int = 0, limit: int = 100
    ) -> list[dict[str, Any]]:
        def read(conn: sqlite3.Connection, ns: str) -> list[dict[str, Any]]:
            cur = conn.execute(
                "SELECT entries FROM rm_transcript_chunks WHERE ns = ? AND conversation_id = ?"
                " AND last_seq > ? ORDER BY last_seq",
                (ns, conversation_id, after_seq),
            )
            found: list[dict[str, Any]] = []
            for (entries,) in cur:  # chunks in seq order, each in seq order
                found.extend(e for e in orjson.loads(entries) if e["seq"] > after_seq)
                if len(found) >= limit:
                    break
            return found[:limit]

        return await self._read_current(read, [])

    async def lead(self, conversation_id: str) -> LeadView | None:
        return await self._read_current(lambda conn, ns: _lead_of(conn, ns, conversation_id), None)

    async def leads(self, site_id: str, cursor: str | None = None, limit: int = 50) -> LeadsPage:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        position = None if cursor is None else decode_cursor(cursor)

        def read(conn: sqlite3.Connection, ns: str) -> LeadsPage:
            if position is None:
                cur = conn.execute(
                    "SELECT fields FROM rm_leads WHERE ns = ? AND site_id = ?"
                    " ORDER BY captured_at DESC, conversation_id DESC LIMIT ?",
                    (ns, site_id, limit + 1),
                )
            else:
                cur = conn.execute(
                    "SELECT fields FROM rm_leads WHERE ns = ? AND site_id = ?"
                    " AND (captured_at, conversation_id) < (?, ?)"
                    " ORDER BY captured_at DESC, conversation_id DESC LIMIT ?",
                    (ns, site_id, *position, limit + 1),
                )
            page = [lead_from_fields(orjson.loads(fields)) for (fields,) in cur]
            if len(page) <= limit:
                return LeadsPage(page, None)
            page = page[:limit]
            last = page[-1]
            return LeadsPage(page, encode_cursor(last.captured_at, last.conversation_id))

        return await self._read_current(read, LeadsPage([], None))

    async def counters(self, key: str) -> dict[str, int]:
        return await self._read_current(
            lambda conn, ns: counters.counters_of(conn, ns, key), dict[str, int]()
        )

    async def mark_erased(self, conversation_id: str) -> bool:
        """Blank the sealed blob too: without the key it is noise, and now it is gone."""

        def write(conn: sqlite3.Connection) -> bool:
            namespace = current_of(conn)
            return namespace is not None and _erase(conn, namespace, conversation_id)

        return await self._writer.write(write)

    async def ping(self) -> bool:
        def read(conn: sqlite3.Connection) -> bool:
            return bool(conn.execute("SELECT 1").fetchone() == (1,))

        return await self._reader.read(read)


def started_since(event: Event, since: float | None) -> bool:
    """False for the start of a conversation before ``since``: plan then skips
    the rest of that conversation too (its view never exists)."""
    return since is None or not (isinstance(event, ConversationStarted) and event.at < since)

"""The embedded mode's event log: an append-only SQLite table (the source of truth),
with the command journal and the policy snapshot archive beside it.

* ``commands``: every command that produced events, written in the same
  transaction as those events (a SubmitLead's fields sealed with the
  conversation's key, :mod:`services.conversation.journal`);
* ``policy_snapshots``: every policy snapshot the server installed, by version;
* ``policy_control``: every guardrail change (who, when, what), in order: the
  policy folds it at every start (:mod:`policy.control`);
* ``flow_registry``: every published flow version, every activation and every
  draft played in a preview
  (:mod:`schemas.flow_registry`), followed by :mod:`services.registry.feed`.

With both, ``leadflow replay --verify`` can re-run the decider over the very
commands, flows and snapshots that made the log and compare (docs/analytics.md).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

from schemas.codec import encode
from schemas.commands import Command, decode_command
from schemas.events import Event, decode_event
from schemas.flow_registry import RegistryRecord, encode_record, record_at
from services.embedded.sqlite_worker import SqliteAdapter
from services.ports import LoggedCommand, LoggedEvent

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
CREATE TABLE IF NOT EXISTS commands (
    position INTEGER PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    event_seq INTEGER NOT NULL,
    at REAL NOT NULL,
    type TEXT NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS policy_snapshots (
    version TEXT PRIMARY KEY,
    flow_id TEXT NOT NULL,
    flow_version INTEGER NOT NULL,
    created_at REAL NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS policy_control (
    position INTEGER PRIMARY KEY,
    flow_id TEXT NOT NULL,
    type TEXT NOT NULL,
    at REAL NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS flow_registry (
    position INTEGER PRIMARY KEY,
    flow_id TEXT NOT NULL,
    type TEXT NOT NULL,
    at REAL NOT NULL,
    body BLOB NOT NULL
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
        super().__init__(path, synchronous, group_work=self if projection is not None else None)
        self._projection = projection
        self._deferred: list[Event] | None = None  # the writer thread's only

    def begin(self, deferring: bool) -> None:
        """A group of appends starts (:class:`~services.embedded.sqlite_worker.GroupWork`):
        when it defers, its appends leave their events to one projection at its end.
        A group's counters are then one journal row, its views one read and its
        conversations' rows one pass (a busy server groups tens of appends)."""
        self._deferred = [] if deferring else None

    def finish(self, conn: sqlite3.Connection) -> None:
        events, self._deferred = self._deferred, None
        if events and self._projection is not None:
            self._projection(conn, events)

    async def append(self, events: Sequence[Event], command: Command | None = None) -> None:
        """``command`` (as journaled: see the port) goes into the journal in the
        events' transaction, keyed by (conversation, first event seq)."""
        rows = [(e.id, e.conversation_id, e.seq, e.type, e.at, encode(e)) for e in events]
        journal = (
            None
            if command is None or not events
            else (
                command.conversation_id,
                command.seq,
                events[0].seq,
                command.at,
                command.type,
                encode(command),
            )
        )

        def insert(conn: sqlite3.Connection) -> None:
            before = conn.total_changes
            conn.executemany(
                "INSERT INTO events (id, conversation_id, seq, type, at, body)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                rows,
            )
            # the events' own key decides: a command is journaled with its events,
            # once (no index of its own to check, written on every command)
            if journal is not None and conn.total_changes > before:
                conn.execute(
                    "INSERT INTO commands (conversation_id, seq, event_seq, at, type, body)"
                    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    journal,
                )
            if self._deferred is not None:
                self._deferred.extend(events)  # the last step: a failed append adds none
            elif self._projection is not None:
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

    async def conversations_active_within(self, seconds: float) -> list[str]:
        """The conversations with an event in the last ``seconds`` of the log (counted
        back from its newest event, not from now: after a long stop the timers
        that fell due meanwhile are still found). Newest first; reads backwards
        by position, so it costs what those events cost, not the whole log."""

        def select(conn: sqlite3.Connection) -> list[str]:
            found: dict[str, None] = {}
            newest: float | None = None
            cur = conn.execute("SELECT conversation_id, at FROM events ORDER BY position DESC")
            for conversation_id, at in cur:
                newest = at if newest is None else newest
                if at < newest - seconds:
                    break
                found.setdefault(conversation_id, None)
            return list(found)

        return await self._reader.read(select)

    async def read_commands_after(self, position: int, limit: int) -> list[LoggedCommand]:
        def select(conn: sqlite3.Connection) -> list[tuple[int, bytes]]:
            cur = conn.execute(
                "SELECT position, body FROM commands WHERE position > ? ORDER BY position LIMIT ?",
                (position, limit),
            )
            return list(cur)

        rows = await self._reader.read(select)
        return [LoggedCommand(pos, decode_command(body)) for pos, body in rows]

    async def archive_snapshot(
        self, flow_id: str, flow_version: int, version: str, created_at: float, body: bytes
    ) -> None:
        """Keep a policy snapshot by version, for replays; durable when awaited. A
        version archived again replaces the body, as a re-install of that version
        does in the policy (and as compaction does in Kafka's archive topic)."""
        row = (version, flow_id, flow_version, created_at, body)

        def insert(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO policy_snapshots (version, flow_id, flow_version, created_at, body)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (version) DO UPDATE SET body = excluded.body,"
                " created_at = excluded.created_at",
                row,
            )

        await self._writer.write(insert)

    async def append_control(self, flow_id: str, at: float, body: bytes) -> int:
        """Append a guardrail change to ``policy_control``; its position, durable when
        awaited (``leadflow policy promote`` writes the table from another process
        the same way: :func:`append_control_row`)."""

        def insert(conn: sqlite3.Connection) -> int:
            return append_control_row(conn, flow_id, at, body)

        return await self._writer.write(insert)

    async def append_registry(self, records: Sequence[RegistryRecord]) -> int:
        """Append flow registry records in one transaction (a publish and its
        activation land together or not at all); the position of the last."""

        def insert(conn: sqlite3.Connection) -> int:
            return append_registry_rows(conn, records)

        return await self._writer.write(insert)


def append_registry_rows(conn: sqlite3.Connection, records: Sequence[RegistryRecord]) -> int:
    """Insert ``records`` into ``flow_registry`` (the caller's transaction; the
    writer thread runs each job in one)."""
    position = 0
    for record in records:
        cur = conn.execute(
            "INSERT INTO flow_registry (flow_id, type, at, body) VALUES (?, ?, ?, ?)",
            (record.flow_id, record.type, record_at(record), encode_record(record)),
        )
        position = int(cur.lastrowid or 0)
    return position


def append_control_row(conn: sqlite3.Connection, flow_id: str, at: float, body: bytes) -> int:
    cur = conn.execute(
        "INSERT INTO policy_control (flow_id, type, at, body) VALUES (?, ?, ?, ?)",
        (flow_id, "PolicyGuardrailsChanged", at, body),
    )
    return int(cur.lastrowid or 0)


def registry_flow_ids(path: Path) -> list[str]:
    """The flow ids published in ``path``'s registry (none when the file or its
    table does not exist yet): read once, read-only, before a server starts."""
    if not path.exists():
        return []
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    try:
        rows = conn.execute(
            "SELECT DISTINCT flow_id FROM flow_registry WHERE type = 'FlowPublished'"
        ).fetchall()
    except sqlite3.OperationalError:
        return []  # a log written before the registry existed
    finally:
        conn.close()
    return sorted(str(row[0]) for row in rows)

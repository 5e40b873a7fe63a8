"""The :class:`~services.log_follower.LogFollower` port on the embedded SQLite log.

events.db (:mod:`services.embedded.sqlite_eventlog`) is read as a log of one
partition, 0, whose offsets are the table's ``position`` (positions start at 1
and have no gaps, but nothing here relies on that) and whose record timestamps
are the rows' ``at``. The ``events`` table is the log; the command journal
(``commands``) can be followed the same way.

A record is the row's ``body``, keyed by its ``conversation_id``, with the
columns a reader may filter on without decoding the body as headers: ``type``
(both tables) and ``event_seq`` (the journal: the seq of the first event the
command produced, as ASCII digits). SQLite has no tombstones and no gaps.

Read-only and beside a writer: the file is opened ``mode=ro`` and every read
is one statement in its own short read transaction (WAL), so ``leadflow
serve`` keeps appending and checkpointing while a follower reads, in this
process or another. The connection lives on one thread of its own
(:class:`~services.embedded.sqlite_thread.ThreadOwnedConnection`): a close
racing a read once crashed the interpreter. ``poll`` reads ahead: after a full
chunk, the next one is read on that thread while the caller works on this one.

``types`` narrows a follower to the rows of those types (the ``type`` column):
the rows between are skipped inside SQLite, never turned into records, and
the position still moves past them, to the end of what the read covered (a
follower of leads only does not read the same stretch of other events again
and again). Offsets then have gaps, as a compacted topic's do.

There is no consumer group: nothing is committed (callers keep their
positions in their own files), and ``on_assigned``, if set, is told of
partition 0 once, when the follower starts.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TypeVar

from services.embedded.sqlite_thread import ThreadOwnedConnection
from services.log_follower import LogRecord, OnAssigned

T = TypeVar("T")
PARTITION = 0
_Row = tuple[int, str, str, float, bytes]
_CommandRow = tuple[int, str, str, float, bytes, int]


def _event_records(rows: Sequence[_Row]) -> list[LogRecord]:
    return [
        LogRecord(PARTITION, position, body, cid.encode(), at, (("type", kind.encode()),))
        for position, cid, kind, at, body in rows
    ]


def _command_records(rows: Sequence[_CommandRow]) -> list[LogRecord]:
    return [
        LogRecord(
            PARTITION,
            position,
            body,
            cid.encode(),
            at,
            (("type", kind.encode()), ("event_seq", str(event_seq).encode())),
        )
        for position, cid, kind, at, body, event_seq in rows
    ]


_COLUMNS = {
    "events": "position, conversation_id, type, at, body",
    "commands": "position, conversation_id, type, at, body, event_seq",
    "policy_control": "position, flow_id, type, at, body",  # keyed by flow id
    "flow_registry": "position, flow_id, type, at, body",  # keyed by flow id
}


class SqliteLogFollower:
    """A :class:`~services.log_follower.LogFollower` of a table of events.db.

    ``path`` is the events.db file (it must exist: :meth:`start` raises
    :class:`FileNotFoundError` otherwise, and ``sqlite3.OperationalError`` if
    the table is missing); ``table`` is ``events`` (the log), ``commands``
    (the journal), ``policy_control`` (guardrail changes, keyed by flow
    id) or ``flow_registry`` (published flows and activations, keyed by flow
    id). ``name`` is the log's name in messages: by default the file's
    (``events.db``), ``events.db commands`` for the journal."""

    def __init__(
        self,
        path: Path,
        *,
        table: str = "events",
        name: str | None = None,
        timeout: float = 30.0,
        types: Sequence[str] | None = None,
    ) -> None:
        if table not in _COLUMNS:
            raise ValueError(f"no log table {table!r} in events.db ({', '.join(_COLUMNS)})")
        self._types = tuple(types) if types is not None else None
        self._path = path
        self._table = table
        self._name = name or (path.name if table == "events" else f"{path.name} {table}")
        self._timeout = timeout
        self._conn: ThreadOwnedConnection | None = None
        self._position: int | None = None  # next offset to read; None: the beginning
        self._paused = False
        self._end_seen: int | None = None
        self._ahead: tuple[tuple[int, int], asyncio.Future[tuple[list[LogRecord], int]]] | None = (
            None
        )
        self.on_assigned: OnAssigned | None = None
        self.on_revoked: OnAssigned | None = None  # one partition, never revoked

    @property
    def name(self) -> str:
        return self._name

    async def start(self) -> None:
        if not self._path.exists():
            raise FileNotFoundError(f"no event log at {self._path}")
        self._conn = ThreadOwnedConnection(self._path, self._timeout)
        await self._call(partial(_bounds, table=self._table))  # the table is there
        if self.on_assigned is not None:
            await self.on_assigned([PARTITION])

    async def stop(self) -> None:
        """Close once any read in flight has returned (the close is queued behind
        it on the connection's thread, never beside it); idempotent."""
        self._drop_ahead()
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _client(self) -> ThreadOwnedConnection:
        if self._conn is None:
            raise RuntimeError(f"the {self._name} follower is not started")
        return self._conn

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        return self._client().call(fn)

    def _drop_ahead(self) -> None:
        if self._ahead is not None:
            self._ahead[1].cancel()  # a read not started is dropped; a started one ends
            self._ahead = None

    def assigned(self) -> list[int]:
        self._client()
        return [PARTITION]

    async def seek(self, partition: int, offset: int | None) -> None:
        _check(partition)
        self._drop_ahead()
        if offset is None:
            offset = (await self._call(partial(_bounds, table=self._table)))[0]
        self._position = offset
        self._paused = False

    def pause(self, partitions: Sequence[int]) -> None:
        if PARTITION in partitions:
            self._paused = True
            self._drop_ahead()

    async def poll(self, max_records: int = 5_000, wait: float = 0.2) -> list[LogRecord]:
        """Up to ``max_records`` rows from the position on; when there are none,
        asks again every 50 ms until ``wait`` has passed."""
        deadline = time.monotonic() + wait
        while True:
            records = [] if self._paused else await self._read(max_records)
            if records or time.monotonic() >= deadline:
                return records
            await asyncio.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    async def _read(self, limit: int) -> list[LogRecord]:
        if self._position is None:
            self._position = (await self._call(partial(_bounds, table=self._table)))[0]
        key = (self._position, limit)
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == key:
            records, self._position = await ahead[1]
        else:
            if ahead is not None:
                ahead[1].cancel()
            records, self._position = await self._fetch(*key)
        if records or self._types is not None:
            self._end_seen = max(self._end_seen or 0, self._position)
        if len(records) == limit:
            next_key = (self._position, limit)
            self._ahead = (next_key, self._fetch(*next_key))
        return records

    def _fetch(self, after: int, limit: int) -> asyncio.Future[tuple[list[LogRecord], int]]:
        """The records from ``after`` on, and the position after them."""
        table, types = self._table, self._types
        columns = _COLUMNS[table]
        to_records = _command_records if table == "commands" else _event_records
        if types is None:
            sql = f"SELECT {columns} FROM {table} WHERE position >= ? ORDER BY position LIMIT ?"

            def read(conn: sqlite3.Connection) -> tuple[list[LogRecord], int]:
                records = to_records(conn.execute(sql, (after, limit)).fetchall())
                return records, records[-1].offset + 1 if records else after

            return self._call(read)
        marks = ",".join("?" * len(types))
        narrowed = (
            f"SELECT {columns} FROM {table} WHERE position >= ? AND position < ?"
            f" AND type IN ({marks}) ORDER BY position LIMIT ?"
        )

        def read_types(conn: sqlite3.Connection) -> tuple[list[LogRecord], int]:
            end = _bounds(conn, table)[1]  # rows below it are committed: none comes later
            records = to_records(conn.execute(narrowed, (after, end, *types, limit)).fetchall())
            return records, records[-1].offset + 1 if len(records) == limit else max(after, end)

        return self._call(read_types)

    async def position(self, partition: int) -> int:
        _check(partition)
        if self._position is None:
            self._position = (await self._call(partial(_bounds, table=self._table)))[0]
        return self._position

    async def end_offsets(self) -> dict[int, int]:
        end = (await self._call(partial(_bounds, table=self._table)))[1]
        self._end_seen = end
        return {PARTITION: end}

    async def beginning_offsets(self) -> dict[int, int]:
        return {PARTITION: (await self._call(partial(_bounds, table=self._table)))[0]}

    async def offsets_for_time(self, since: float) -> dict[int, int]:
        table = self._table

        def first_at(conn: sqlite3.Connection) -> int:
            row = conn.execute(f"SELECT MIN(position) FROM {table} WHERE at >= ?", (since,))
            found = row.fetchone()[0]
            return _bounds(conn, table)[1] if found is None else int(found)

        return {PARTITION: await self._call(first_at)}

    def lag(self) -> dict[int, int]:
        if self._end_seen is None:
            return {}
        return {PARTITION: max(0, self._end_seen - (self._position or 0))}

    async def commit(self, positions: dict[int, int]) -> None:
        """Nothing to do: SQLite has no consumer group; callers store positions."""


def _check(partition: int) -> None:
    if partition != PARTITION:
        raise ValueError(f"the SQLite log has one partition, {PARTITION}; not {partition}")


def bounds_sql(table: str) -> str:
    """Two subqueries: each is one step down the table's B-tree, where MIN and MAX
    in one select scan the whole table (every poll of a follower of some types)."""
    return f"SELECT (SELECT MIN(position) FROM {table}), (SELECT MAX(position) FROM {table})"


def _bounds(conn: sqlite3.Connection, table: str) -> tuple[int, int]:
    """(beginning, end) offsets: the first position (the end when there is
    none) and one past the last (1 for an empty table: positions start at 1)."""
    first, last = conn.execute(bounds_sql(table)).fetchone()
    end = 1 if last is None else int(last) + 1
    return (end if first is None else int(first)), end

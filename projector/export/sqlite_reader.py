"""The embedded SQLite event log, read-only and in short transactions.

The file is opened with ``mode=ro``: nothing is written and no lock is held
beyond one chunk's read, so ``leadflow serve`` keeps appending (WAL) and
checkpointing while an export runs. The end is the last position at the
start: later appends are not exported.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from functools import partial
from pathlib import Path

import orjson

from projector.export.errors import NoEventLog
from projector.export.raw import KNOWN, Obj, Place, RawBatch, check, loads
from projector.export.selection import Cohort
from services.embedded.sqlite_thread import ThreadOwnedConnection

EVENTS_DB = "events.db"  # app.embedded.EVENTS_DB, without importing the server
CHUNK = 20_000
Row = tuple[int, str, str, bytes]


def open_readonly(data_dir: Path) -> ThreadOwnedConnection:
    path = data_dir / EVENTS_DB
    if not path.exists():
        raise NoEventLog(f"no event log in {data_dir} (no {EVENTS_DB}; use --kafka for Kafka)")
    return ThreadOwnedConnection(path)


def bounds(conn: sqlite3.Connection, since: float | None) -> tuple[int, int, int]:
    """(position after which to start, last position to read, rows between).

    Starts before the first event at or after ``since``: a conversation started
    then has its start, and so all its events, from there on."""
    end = int(conn.execute("SELECT COALESCE(MAX(position), 0) FROM events").fetchone()[0])
    after = 0
    if since is not None:
        row = conn.execute(
            "SELECT MIN(position) FROM events WHERE at >= ? AND position <= ?", (since, end)
        ).fetchone()
        after = end if row[0] is None else int(row[0]) - 1
    total = int(
        conn.execute(
            "SELECT COUNT(*) FROM events WHERE position > ? AND position <= ?", (after, end)
        ).fetchone()[0]
    )
    return after, end, total


def read_chunk(conn: sqlite3.Connection, after: int, end: int, limit: int) -> list[Row]:
    cur = conn.execute(
        "SELECT position, conversation_id, type, body FROM events"
        " WHERE position > ? AND position <= ? ORDER BY position LIMIT ?",
        (after, end, limit),
    )
    return cur.fetchall()


def raw_rows(rows: Sequence[Row], cohort: Cohort) -> RawBatch:
    """The selected conversations' event objects among ``rows``. Only starts
    and rows of selected conversations are parsed at all."""
    starting = {row[1] for row in rows if row[2] == "ConversationStarted"}
    objs: list[Obj] = []
    places: list[Place] = []
    for position, conversation_id, _type, body in rows:
        if conversation_id not in cohort and conversation_id not in starting:
            continue
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError:
            obj = loads(body, position)  # raises, naming the position
        if type(obj) is not dict or (obj.get("type"), obj.get("v")) not in KNOWN:
            check(obj, position)  # raises, naming the position
        objs.append(obj)
        places.append(position)
    return cohort.keep_raw(RawBatch(objs, places))


async def iter_sqlite(
    data_dir: Path,
    cohort: Cohort,
    since: float | None,
    progress: Callable[[int, int], None] | None,
    chunk: int = CHUNK,
) -> AsyncIterator[RawBatch]:
    """Chunks of the log, the next one read (on the connection's thread, off
    the GIL) while this one is parsed."""
    conn = open_readonly(data_dir)
    reading: asyncio.Future[list[Row]] | None = None
    try:
        after, end, total = await conn.call(partial(bounds, since=since))
        done = 0
        if progress is not None:
            progress(done, total)
        reading = conn.call(partial(read_chunk, after=after, end=end, limit=chunk))
        while True:
            rows = await reading
            if not rows:
                break
            after = rows[-1][0]
            reading = conn.call(partial(read_chunk, after=after, end=end, limit=chunk))
            done += len(rows)
            batch = raw_rows(rows, cohort)
            if progress is not None:
                progress(done, total)
            if batch.objs:
                yield batch
    finally:
        if reading is not None:
            reading.cancel()  # a read not started yet is dropped; a started one ends
        conn.close()  # queued behind a read still in flight, never beside it

"""The embedded SQLite event log, read-only and in short transactions.

Through a :class:`~services.embedded.sqlite_follower.SqliteLogFollower`: the
file is opened ``mode=ro``, nothing is written and no lock is held beyond one
chunk's read, so ``leadflow serve`` keeps appending (WAL) and checkpointing
while an export runs; the next chunk is read on the connection's own thread
while this one is parsed. The end is the last position at the start: later
appends are not exported (:func:`~services.log_follower.read_bounded`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import orjson

from projector.export.errors import NoEventLog, Place
from projector.export.raw import KNOWN, Obj, RawBatch, check, loads
from projector.export.selection import Cohort
from services.embedded.sqlite_follower import SqliteLogFollower
from services.log_follower import LogRecord, bounded_range, read_bounded

EVENTS_DB = "events.db"  # app.embedded.EVENTS_DB, without importing the server
CHUNK = 20_000
Row = tuple[int, str, str, bytes]  # position, conversation id, type, body


def events_follower(data_dir: Path) -> SqliteLogFollower:
    """A follower of ``data_dir``'s events.db, or :class:`NoEventLog`."""
    path = data_dir / EVENTS_DB
    if not path.exists():
        raise NoEventLog(f"no event log in {data_dir} (no {EVENTS_DB}; use --kafka for Kafka)")
    return SqliteLogFollower(path)


def rows_of(records: Sequence[LogRecord]) -> list[Row]:
    """The rows behind the follower's records: its key is the conversation id,
    its ``type`` header the event's type."""
    return [
        (r.offset, (r.key or b"").decode(), (r.header("type") or b"").decode(), r.value or b"")
        for r in records
    ]


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
    """Chunks of the log from the first event at or after ``since`` (a
    conversation started then has its start, and so all its events, from
    there on) up to the last position when it began."""
    follower = events_follower(data_dir)
    try:
        await follower.start()
        start, end = await bounded_range(follower, since)
        total = sum(max(0, end[p] - start[p]) for p in start)
        done = 0
        if progress is not None:
            progress(done, total)
        chunks = read_bounded(follower, start, end, chunk)
        async with contextlib.aclosing(chunks):
            async for part in chunks:
                done += part.covered
                batch = raw_rows(rows_of(part.records), cohort)
                if progress is not None:
                    progress(min(done, total), total)
                if batch.objs:
                    yield batch
    finally:
        await follower.stop()  # queued behind a read still in flight, never beside it

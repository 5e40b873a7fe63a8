"""Rebuild the embedded mode's read models from its SQLite event log.

A fresh namespace is filled from the log while the server keeps appending
(and projecting into the current namespace) in this process or another one.
The log is read through a read-only
:class:`~services.embedded.sqlite_follower.SqliteLogFollower`, in bounded
rounds (:func:`~services.log_follower.read_bounded`): each round reads up to
the end it saw when it began, and rounds go on while appends outrun them (a
round read a chunk or more). The last events are then projected, the frontier
recorded and the namespace switched in one writer transaction
(:meth:`SqliteReadModel.switch_after_catch_up`), so no event falls between
them; finally the old namespace is dropped.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from projector.engine import Projector
from projector.rebuild_report import RebuildReport
from projector.sqlite_projection import started_since
from projector.sqlite_store import SqliteReadModel
from schemas.events import decode_event
from services.embedded.sqlite_eventlog import SqliteEventLog
from services.embedded.sqlite_follower import PARTITION, SqliteLogFollower
from services.log_follower import bounded_range, decode_record, read_bounded

CHUNK = 5_000


async def rebuild_sqlite(
    log: SqliteEventLog,
    store: SqliteReadModel,
    since: float | None,
    progress: Callable[[int, int], None],
    chunk: int = CHUNK,
) -> RebuildReport:
    """Rebuild from the start of ``log``'s file, or only the conversations
    started at or after ``since`` (read from the first event at or after it).
    ``progress`` is called with (events read, events to read) after each chunk;
    the total grows when appends outrun the rebuild. A record this leadflow
    cannot decode stops it with :class:`~services.log_follower.UnreadableLog`."""
    started = time.monotonic()
    namespace = await store.new_namespace()
    follower = SqliteLogFollower(log.path)
    await follower.start()
    try:
        start, end = await bounded_range(follower, since)
        position = start[PARTITION]  # the next position to read
        total = max(0, end[PARTITION] - position)
        projector = Projector(store, namespace, live=False)
        done = 0
        progress(done, total)
        while True:
            read = 0
            chunks = read_bounded(follower, {PARTITION: position}, end, chunk)
            async with contextlib.aclosing(chunks):
                async for part in chunks:
                    if not part.records:
                        continue
                    events = [decode_record(follower.name, r, decode_event) for r in part.records]
                    await projector.project(e for e in events if started_since(e, since))
                    position = part.records[-1].offset + 1
                    read += len(part.records)
                    done += len(part.records)
                    total = max(total, done)
                    progress(done, total)
            if read < chunk:  # caught up but for what the switch's transaction projects
                break
            end = await follower.end_offsets()
            total = max(total, done + end[PARTITION] - position)
    except BaseException:  # readers stay on the old namespace; leave no half-built one
        await store.drop_namespace(namespace)
        raise
    finally:
        await follower.stop()
    previous, caught_up = await store.switch_after_catch_up(namespace, position - 1, since=since)
    if caught_up:
        done += caught_up
        progress(done, max(total, done))
    if previous != namespace:
        await store.drop_namespace(previous)
    conversations, leads = await store.size(namespace)
    return RebuildReport(
        namespace=namespace,
        previous=previous,
        events=done,
        conversations=conversations,
        leads=leads,
        seconds=time.monotonic() - started,
    )

"""Rebuild the embedded mode's read models from its SQLite event log.

A fresh namespace is filled from the log in chunks while the server keeps
appending (and projecting into the current namespace) in this process or
another one; the last events are then projected, the frontier recorded and the
namespace switched in one writer transaction
(:meth:`SqliteReadModel.switch_after_catch_up`), so no event falls between
them; finally the old namespace is dropped.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from projector.engine import Projector
from projector.rebuild_report import RebuildReport
from projector.sqlite_store import SqliteReadModel, started_since
from services.embedded.sqlite_eventlog import SqliteEventLog

CHUNK = 5_000


async def rebuild_sqlite(
    log: SqliteEventLog,
    store: SqliteReadModel,
    since: float | None,
    progress: Callable[[int, int], None],
    chunk: int = CHUNK,
) -> RebuildReport:
    """Rebuild from the start of the log, or only the conversations started at or
    after ``since`` (read from the first event at or after it). ``progress`` is
    called with (events read, events to read) after each chunk; the total grows
    when appends outrun the rebuild."""
    started = time.monotonic()
    namespace = await store.new_namespace()
    position = 0 if since is None else await store.position_before(since)
    total = await store.events_after(position)
    projector = Projector(store, namespace, live=False)
    done = 0
    progress(done, total)
    while True:
        batch = await log.read_after(position, chunk)
        if not batch:
            break
        await projector.project(e.event for e in batch if started_since(e.event, since))
        position = batch[-1].position
        done += len(batch)
        total = max(total, done)
        progress(done, total)
        if len(batch) < chunk:
            break
    previous, caught_up = await store.switch_after_catch_up(namespace, position, since=since)
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

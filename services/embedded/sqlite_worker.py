"""One SQLite connection owned by one thread, driven from asyncio.

SQLite allows one writer per database; giving that writer its own thread keeps
the event loop free, and coalescing the writes queued while a transaction
commits into the next transaction (group commit) amortises the commit cost
across concurrent conversations.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from services.embedded.sqlite_checkpointer import FALLBACK_PAGES, WAL_LIMIT_BYTES, WalCheckpointer

T = TypeVar("T")
Job = tuple[
    bool, Callable[[sqlite3.Connection], Any], asyncio.AbstractEventLoop, asyncio.Future[Any]
]
MAX_GROUP = 512


PAGE_SIZE = 1024
"""Bytes per page of a new file. Every commit writes each page it touched to the
WAL, and a command touches about a dozen (the events and journal rows, their
unique keys, the read models' rows and counters): with SQLite's default 4 KiB
pages `leadflow serve` wrote about 38 KB per command, with 1 KiB about 25 KB
(rows are small: an event body is ~250 bytes). A file keeps the page size
it was created with."""


def connect(path: Path, synchronous: str = "NORMAL") -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute(f"PRAGMA page_size={PAGE_SIZE}")  # before WAL, or it is ignored
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA cache_size=-16384")  # 16 MiB
    conn.execute("PRAGMA temp_store=MEMORY")
    return conn


def hand_checkpoints_over(conn: sqlite3.Connection) -> None:
    """The writer's connection leaves checkpoints to a :class:`WalCheckpointer`
    (down to a fallback far above SQLite's default of 1,000 pages)."""
    conn.execute(f"PRAGMA wal_autocheckpoint={FALLBACK_PAGES}")
    conn.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")


def _resolve(fut: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if fut.cancelled():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)


class GroupWork(Protocol):
    """Work a writer's jobs may leave to the end of their group's transaction, done
    once for all of them (the event log's read models: one projection of a group's
    events instead of one per append). Called on the worker's thread only."""

    def begin(self, deferring: bool) -> None:
        """A group's transaction starts; ``deferring``: its jobs may leave work."""

    def finish(self, conn: sqlite3.Connection) -> None:
        """Do the work the group's jobs left, just before the commit."""


class SqliteWorker:
    """Runs jobs on a dedicated connection; ``write`` jobs are grouped into one
    transaction, ``read`` jobs run alone. Results come back as awaitables.

    ``checkpoints``: the file's writer, whose WAL is copied back by a
    :class:`WalCheckpointer` beside it rather than in its own commits.
    ``group_work``: what a group of writes leaves to the end of its transaction.
    Should it fail, the group is run again with nothing deferred, so that only
    the jobs whose own work fails fail (as when each job did its work itself)."""

    def __init__(
        self,
        path: Path,
        schema: str,
        synchronous: str = "NORMAL",
        checkpoints: bool = False,
        group_work: GroupWork | None = None,
    ) -> None:
        self._path = path
        self._group_work = group_work
        self._checkpointer = WalCheckpointer(path) if checkpoints else None
        self._schema = schema
        self._synchronous = synchronous
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=f"sqlite:{path.name}", daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
        if self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join()

    def _submit(self, write: bool, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._jobs.put((write, fn, loop, fut))
        return fut

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` inside a transaction; returns once it has committed."""
        return await self._submit(True, fn)

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._submit(False, fn)

    def _run(self) -> None:
        try:
            conn = connect(self._path, self._synchronous)
            conn.executescript(self._schema)
            if self._checkpointer is not None:
                hand_checkpoints_over(conn)
                self._checkpointer.start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            self._loop(conn)
        finally:
            conn.close()

    def _loop(self, conn: sqlite3.Connection) -> None:
        carry: list[Job | None] = []
        while True:
            job = carry.pop() if carry else self._jobs.get()
            if job is None:
                return
            if not job[0]:
                self._run_read(conn, job)
                continue
            group = [job]
            while len(group) < MAX_GROUP:
                try:
                    nxt = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if nxt is None or not nxt[0]:
                    carry.append(nxt)
                    break
                group.append(nxt)
            self._run_group(conn, group)

    @staticmethod
    def _run_read(conn: sqlite3.Connection, job: Job) -> None:
        _, fn, loop, fut = job
        try:
            result, error = fn(conn), None
        except Exception as exc:
            result, error = None, exc
        loop.call_soon_threadsafe(_resolve, fut, result, error)

    def _run_group(self, conn: sqlite3.Connection, group: list[Job]) -> None:
        work = self._group_work
        results = None
        if work is not None and len(group) > 1:
            results = _transaction(conn, group, work, deferring=True)
        if results is None:  # nothing deferred, or the deferred work failed: job by job
            results = _transaction(conn, group, work, deferring=False)
        assert results is not None  # a transaction that defers nothing always has results
        for (_, _, loop, fut), (result, error) in zip(group, results, strict=True):
            loop.call_soon_threadsafe(_resolve, fut, result, error)


Results = list[tuple[Any, BaseException | None]]


def _transaction(
    conn: sqlite3.Connection, group: list[Job], work: GroupWork | None, deferring: bool
) -> Results | None:
    """Run ``group`` in one transaction, each job in a savepoint (unless alone: its
    failure is the transaction's); None when the deferred work failed (rolled back)."""
    results: Results = []
    alone = len(group) == 1
    try:
        conn.execute("BEGIN IMMEDIATE")
        if work is not None:
            work.begin(deferring)
        for _, fn, _, _ in group:
            if alone:
                results.append((fn(conn), None))
                continue
            conn.execute("SAVEPOINT job")
            try:
                results.append((fn(conn), None))
                conn.execute("RELEASE job")
            except Exception as exc:
                conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
                results.append((None, exc))
        if work is not None:
            try:
                work.finish(conn)
            except Exception:
                if not deferring:
                    raise
                conn.execute("ROLLBACK")
                return None
        conn.execute("COMMIT")
    except Exception as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        results = [(None, exc)] * len(group)
    return results


class SqliteAdapter:
    """Base of the SQLite adapters: a writer and a reader thread on one file,
    started and closed by the composition root (nothing touches the file at
    construction). WAL lets reads run beside a committing write, so a read never
    queues behind a group of writes."""

    schema = ""

    def __init__(
        self, path: Path, synchronous: str = "NORMAL", group_work: GroupWork | None = None
    ) -> None:
        self.path = path
        self._writer = SqliteWorker(
            path, self.schema, synchronous, checkpoints=True, group_work=group_work
        )
        self._reader = SqliteWorker(path, "", synchronous)

    def start(self) -> None:
        self._writer.start()  # creates the schema first
        self._reader.start()

    def close(self) -> None:
        self._reader.close()
        self._writer.close()

"""A read-only SQLite connection that lives and dies on one thread.

Why: a ``sqlite3.Connection`` closed while another thread is inside one of its
calls crashes the interpreter (a segfault, not an exception). With
``asyncio.to_thread`` that happens easily: cancelling the awaiting task (as
``asyncio.run`` does to every task left when it ends) cancels the asyncio
future but not the read running in the pool, and a ``finally`` that then
closes the connection races it. Here every call, and the close itself, is
queued on one dedicated thread, so the close runs only after the last call
has returned, whatever happened to the tasks awaiting them.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class ThreadOwnedConnection:
    """``call(fn)`` runs ``fn(conn)`` on the connection's own thread."""

    def __init__(self, path: Path, timeout: float = 30.0) -> None:
        self._thread = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"sqlite-ro:{path.name}"
        )
        uri = f"{path.resolve().as_uri()}?mode=ro"
        try:
            self._conn = self._thread.submit(_connect, uri, timeout).result()
        except BaseException:
            self._thread.shutdown(wait=False)
            raise
        self._closed = False

    def call_blocking(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """For callers that are not on an event loop (benchmarks, threads)."""
        return self._thread.submit(fn, self._conn).result()

    def call(self, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """An awaitable of ``fn(conn)``. Cancelling it leaves a started call
        running to its end; it never overlaps the close."""
        if self._closed:
            raise RuntimeError("connection closed")
        return asyncio.wrap_future(self._thread.submit(fn, self._conn))

    def close(self) -> None:
        """Queue the close behind any call in flight; does not block."""
        if self._closed:
            return
        self._closed = True
        self._thread.submit(self._conn.close)
        self._thread.shutdown(wait=False)


def _connect(uri: str, timeout: float) -> sqlite3.Connection:
    conn = sqlite3.connect(uri, uri=True, timeout=timeout)
    conn.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
    return conn

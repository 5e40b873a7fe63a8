"""Copying a file's write-ahead log back into it, from a thread of its own.

Why: SQLite's automatic checkpoint runs in the committing connection, here the
writer thread, once the WAL holds 1,000 pages. Under ``leadflow serve`` that was
every ~40 commands: each checkpoint stalled the commands queued behind it (the
press-to-reply p99 at human pace was 6.6 ms, 3.1 ms without it) and wrote the
hot pages (counters, index leaves, the rightmost pages of the log) back into the
file again and again, about half of the bytes written per command. Here the
writer never checkpoints; this thread runs a PASSIVE checkpoint (which waits for
no reader or writer) every few seconds, so a hot page reaches the file once per
interval whatever the number of commits that changed it.

Durability is SQLite's WAL durability either way: a commit is in the WAL (and,
with ``synchronous`` NORMAL, survives a killed process; FULL, a power cut)
before it is acknowledged; the checkpoint only moves it. The writer keeps a
fallback automatic checkpoint at :data:`FALLBACK_PAGES`, should this thread be
starved, and ``journal_size_limit`` truncates the WAL file after it restarts.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

CHECKPOINT_SECONDS = 5.0
"""How often the log is copied back. The WAL then holds the commits of about
this long (at 80 commands/s, ~2 MB)."""

FALLBACK_PAGES = 65_536
"""The writer's own automatic checkpoint, only reached if this thread falls
behind: 64 MiB of WAL at 1 KiB pages."""

WAL_LIMIT_BYTES = 64 * 1024 * 1024
"""``journal_size_limit``: what the WAL file is cut back to when it restarts."""

log = logging.getLogger(__name__)


class WalCheckpointer:
    """Checkpoints ``path`` every ``seconds`` on a connection and thread of its
    own; ``start`` after the file exists, ``close`` before the writer closes
    (the last connection to close then checkpoints what is left and removes the
    WAL)."""

    def __init__(self, path: Path, seconds: float | None = None) -> None:
        self._path = path
        self._seconds = CHECKPOINT_SECONDS if seconds is None else seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"sqlite-checkpoint:{path.name}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join()

    def _run(self) -> None:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout=30000")
            while not self._stop.wait(self._seconds):
                checkpoint(conn)
        finally:
            conn.close()


def checkpoint(conn: sqlite3.Connection) -> None:
    """One PASSIVE checkpoint: copies what no reader still needs, never waits
    for a lock. A failure is logged and retried at the next interval (the WAL
    keeps every commit meanwhile)."""
    try:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    except sqlite3.Error as exc:
        log.warning("checkpoint failed, retried later: %s", exc)

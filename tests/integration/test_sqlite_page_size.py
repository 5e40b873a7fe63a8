"""The SQLite files of `leadflow serve` are made with small pages (fewer bytes
written per command: see services/embedded/sqlite_worker.PAGE_SIZE), and a file
made before, with SQLite's default pages, keeps working as it is."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from services.embedded.sqlite_eventlog import SqliteEventLog
from services.embedded.sqlite_worker import PAGE_SIZE
from tests.support.traffic import simulate


def pragma(path: Path, name: str) -> object:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]
    finally:
        conn.close()


async def append_and_read(path: Path) -> int:
    traffic = await simulate(3, seed=1)
    log = SqliteEventLog(path)
    log.start()
    try:
        await log.append(traffic.events)
        first = traffic.events[0].conversation_id
        return len(await log.read_conversation(first))
    finally:
        log.close()


async def test_a_new_log_is_made_with_small_pages_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    assert await append_and_read(path) > 0
    assert pragma(path, "page_size") == PAGE_SIZE < 4096
    assert pragma(path, "journal_mode") == "wal"


async def test_a_log_made_with_default_pages_keeps_them_and_works(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA page_size=4096")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE older (x INTEGER)")  # the file exists before the adapter
    conn.close()
    assert await append_and_read(path) > 0
    assert pragma(path, "page_size") == 4096

"""The SQLite writer thread's transactions: a write alone commits or leaves
nothing; writes queued together commit together, each failing one rolled back
to its savepoint without touching the others."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from services.embedded.sqlite_worker import SqliteWorker

SCHEMA = "CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY);"


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[SqliteWorker]:
    worker = SqliteWorker(tmp_path / "w.db", SCHEMA)
    worker.start()
    yield worker
    worker.close()


def insert_then(key: str, fail: bool = False) -> Callable[[sqlite3.Connection], str]:
    def job(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO t VALUES (?)", (key,))
        if fail:
            raise ValueError(f"{key} failed after its insert")
        return key

    return job


async def keys(worker: SqliteWorker) -> list[str]:
    return await worker.read(lambda c: [r[0] for r in c.execute("SELECT k FROM t ORDER BY k")])


async def test_a_write_alone_that_fails_leaves_nothing_and_the_next_one_commits(
    worker: SqliteWorker,
) -> None:
    with pytest.raises(ValueError, match="a failed"):
        await worker.write(insert_then("a", fail=True))
    assert await keys(worker) == []
    assert await worker.write(insert_then("b")) == "b"
    assert await keys(worker) == ["b"]


async def test_writes_queued_together_share_a_transaction_and_fail_alone(
    worker: SqliteWorker,
) -> None:
    gate, entered = threading.Event(), threading.Event()

    def hold(conn: sqlite3.Connection) -> None:
        entered.set()
        gate.wait(5.0)  # the others queue meanwhile: the next group takes them all

    first = asyncio.ensure_future(worker.write(hold))
    await asyncio.to_thread(entered.wait, 5.0)
    group = [
        asyncio.ensure_future(worker.write(insert_then(k, fail=k == "y"))) for k in ("x", "y", "z")
    ]
    await asyncio.sleep(0.05)
    gate.set()
    await first
    results = await asyncio.gather(*group, return_exceptions=True)
    assert results[0] == "x" and results[2] == "z"
    assert isinstance(results[1], ValueError)
    assert await keys(worker) == ["x", "z"]

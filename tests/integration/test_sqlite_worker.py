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


async def run_held_group(
    worker: SqliteWorker, jobs: list[Callable[[sqlite3.Connection], str]]
) -> list[object]:
    """A first write holds the thread while ``jobs`` queue: they run as one group."""
    gate, entered = threading.Event(), threading.Event()

    def hold(conn: sqlite3.Connection) -> None:
        entered.set()
        gate.wait(5.0)

    first = asyncio.ensure_future(worker.write(hold))
    await asyncio.to_thread(entered.wait, 5.0)
    group = [asyncio.ensure_future(worker.write(job)) for job in jobs]
    await asyncio.sleep(0.05)
    gate.set()
    await first
    return await asyncio.gather(*group, return_exceptions=True)


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
    results = await run_held_group(worker, [insert_then(k, fail=k == "y") for k in ("x", "y", "z")])
    assert results[0] == "x" and results[2] == "z"
    assert isinstance(results[1], ValueError)
    assert await keys(worker) == ["x", "z"]


class Tally:
    """Group work that counts the keys its group's jobs left in one row per group;
    ``refuse``: a key whose presence makes the deferred tally fail."""

    def __init__(self, refuse: str = "") -> None:
        self.refuse = refuse
        self.deferred: list[str] | None = None
        self.groups: list[tuple[bool, list[str]]] = []  # (deferring, what it tallied)

    def begin(self, deferring: bool) -> None:
        self.deferred = [] if deferring else None

    def finish(self, conn: sqlite3.Connection) -> None:
        pending, self.deferred = self.deferred, None
        if pending is None:
            return
        if self.refuse in pending:
            raise ValueError(f"cannot tally {self.refuse}")
        conn.execute("INSERT INTO tally VALUES (?)", (",".join(pending),))
        self.groups.append((True, pending))

    def job(self, key: str) -> Callable[[sqlite3.Connection], str]:
        def insert(conn: sqlite3.Connection) -> str:
            conn.execute("INSERT INTO t VALUES (?)", (key,))
            if self.deferred is not None:
                self.deferred.append(key)
            else:  # its own tally, as a job alone does it
                if key == self.refuse:
                    raise ValueError(f"cannot tally {key}")
                conn.execute("INSERT INTO tally VALUES (?)", (key,))
                self.groups.append((False, [key]))
            return key

        return insert


async def tallies(worker: SqliteWorker) -> list[str]:
    return await worker.read(lambda c: [r[0] for r in c.execute("SELECT v FROM tally")])


@pytest.fixture
def tallied(tmp_path: Path) -> Iterator[tuple[SqliteWorker, Tally]]:
    tally = Tally(refuse="q")
    worker = SqliteWorker(
        tmp_path / "g.db", SCHEMA + "CREATE TABLE tally (v TEXT);", group_work=tally
    )
    worker.start()
    yield worker, tally
    worker.close()


async def test_a_groups_deferred_work_is_done_once_for_all_its_jobs_in_their_transaction(
    tallied: tuple[SqliteWorker, Tally],
) -> None:
    worker, tally = tallied
    results = await run_held_group(worker, [tally.job(k) for k in ("a", "b", "c")])
    assert results == ["a", "b", "c"]
    assert await tallies(worker) == ["a,b,c"]  # one row for the group, committed with it
    assert await keys(worker) == ["a", "b", "c"]
    assert await worker.write(tally.job("d")) == "d"  # alone: nothing deferred
    assert tally.groups[-1] == (False, ["d"])


async def test_a_failed_job_in_a_deferring_group_leaves_nothing_to_the_groups_work(
    tallied: tuple[SqliteWorker, Tally],
) -> None:
    worker, tally = tallied

    def broken(conn: sqlite3.Connection) -> str:
        raise ValueError("before its insert")

    results = await run_held_group(worker, [tally.job("a"), broken, tally.job("c")])
    assert results[0] == "a" and results[2] == "c" and isinstance(results[1], ValueError)
    assert await tallies(worker) == ["a,c"]


async def test_when_the_deferred_work_fails_the_group_runs_again_job_by_job(
    tallied: tuple[SqliteWorker, Tally],
) -> None:
    worker, tally = tallied
    results = await run_held_group(worker, [tally.job(k) for k in ("p", "q", "r")])
    assert results[0] == "p" and results[2] == "r"
    assert isinstance(results[1], ValueError) and "cannot tally q" in str(results[1])
    assert await keys(worker) == ["p", "r"]  # q's insert went with its own failure
    assert sorted(await tallies(worker)) == ["p", "r"]  # each tallied on its own
    assert [g for g in tally.groups if g[0]] == []  # the failed deferred tally left nothing

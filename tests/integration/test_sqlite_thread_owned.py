"""The analysts' read-only SQLite connection is never closed under a read.

A close racing a read in another thread crashed the interpreter in CI (a
segfault in ``read_chunk`` while ``asyncio.run`` shut its executor down).
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from services.embedded.sqlite_thread import ThreadOwnedConnection


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "events.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x INTEGER)")
    conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(1000)])
    conn.commit()
    conn.close()
    return path


async def test_a_close_waits_for_the_read_whose_awaiter_was_cancelled(db: Path) -> None:
    conn = ThreadOwnedConnection(db)
    started = threading.Event()
    outcome: list[object] = []

    def slow_read(c: sqlite3.Connection) -> int:
        started.set()
        time.sleep(0.3)  # the close is requested meanwhile
        try:
            outcome.append(c.execute("SELECT COUNT(*) FROM t").fetchone()[0])
        except sqlite3.Error as e:  # a close that did not wait shows up here
            outcome.append(e)
        return 0

    reading = conn.call(slow_read)
    await asyncio.to_thread(started.wait)
    reading.cancel()
    conn.close()
    await asyncio.to_thread(conn._thread.shutdown, wait=True)
    assert outcome == [1000]
    with pytest.raises(RuntimeError):
        conn.call(slow_read)


async def test_calls_run_in_order_on_one_thread(db: Path) -> None:
    conn = ThreadOwnedConnection(db)
    try:
        names = await asyncio.gather(
            *(conn.call(lambda _c: threading.current_thread().name) for _ in range(5))
        )
        assert len(set(names)) == 1 and names[0] != threading.current_thread().name
        assert await conn.call(lambda c: c.execute("SELECT MAX(x) FROM t").fetchone()[0]) == 999
    finally:
        conn.close()


def test_the_connection_is_read_only(db: Path) -> None:
    conn = ThreadOwnedConnection(db)
    try:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.call_blocking(lambda c: c.execute("INSERT INTO t VALUES (1)"))
    finally:
        conn.close()


ABANDON = """
import asyncio, sys
from pathlib import Path
from projector.export.selection import Cohort, Selection
from projector.export.sqlite_reader import iter_sqlite

KEEP = []

async def main():
    gen = iter_sqlite(Path(sys.argv[1]), Cohort(Selection()), None, None, chunk=500)
    KEEP.append(gen)  # still referenced when asyncio.run finalises it, as a traceback keeps it
    async for _batch in gen:
        return  # leaves the generator open with the next read in flight

for _ in range(30):
    asyncio.run(main())
    KEEP.clear()
print("ok")
"""


def test_an_export_abandoned_mid_read_leaves_the_process_whole(tmp_path: Path) -> None:
    """The CI crash's shape: ``asyncio.run`` cancels the read's awaiter and
    finalises the generator, whose close used to race the read."""
    from tests.support.export_logs import write_sqlite_log
    from tests.support.traffic import simulate

    traffic = asyncio.run(simulate(200, seed=3))
    data = tmp_path / "data"
    write_sqlite_log(data, traffic.events, dict(traffic.keys._keys))
    done = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", ABANDON, str(data)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"

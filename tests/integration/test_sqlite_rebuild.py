"""Rebuilding the SQLite read models from the log, on real files, while appends go on.

A rebuild fills a fresh namespace, catches up and switches in one writer
transaction, then drops the old namespace. It must give the same read models
as the live projection, keep erasures, lose nothing appended meanwhile (in
this process or another), and start an old data directory's models afresh.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import textwrap
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

import orjson
import pytest

from projector import sqlite_counters as counters
from projector.sqlite_projection import project_in_transaction
from projector.sqlite_rebuild import rebuild_sqlite
from projector.sqlite_schema import SCHEMA
from projector.sqlite_store import SqliteReadModel
from schemas.events import ConversationStarted, Event
from services.embedded.sqlite_eventlog import SqliteEventLog
from services.embedded.sqlite_keystore import SCHEMA as KEYS_SCHEMA
from services.log_follower import UnreadableLog
from tests.support.readmodel_oracle import Oracle
from tests.support.server import ROOT, ServerProcess
from tests.support.traffic import Traffic, simulate

NAMESPACED = (
    "rm_conversations",
    "rm_transcript_chunks",
    "rm_leads",
    "rm_counters",
    "rm_counter_deltas",
    "rm_frontier",
)
N = 300


@pytest.fixture(scope="module")
def traffic() -> Traffic:
    return asyncio.run(simulate(N))


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "events.db"


@pytest.fixture
async def log(path: Path) -> AsyncIterator[SqliteEventLog]:
    log = SqliteEventLog(path, projection=project_in_transaction, projection_schema=SCHEMA)
    log.start()
    yield log
    log.close()


@pytest.fixture
async def store(path: Path, log: SqliteEventLog) -> AsyncIterator[SqliteReadModel]:
    store = SqliteReadModel(path)
    store.start()
    yield store
    store.close()


async def append_in_chunks(log: SqliteEventLog, events: Sequence[Event], size: int = 50) -> None:
    for i in range(0, len(events), size):
        await log.append(events[i : i + size])


def rows_of(path: Path, namespace: str) -> dict[str, list[tuple[object, ...]]]:
    """Every row of a namespace, without its ns column (the increments not
    folded yet folded first, as a read would add them)."""
    with sqlite3.connect(path) as conn:
        counters.fold(conn)
        rows = {
            table: sorted(
                row[1:] for row in conn.execute(f"SELECT * FROM {table} WHERE ns = ?", (namespace,))
            )
            for table in NAMESPACED
        }
        # a transcript's chunks are what each write set added: a rebuild's batches
        # cut them elsewhere than the live appends did, so compare the entries
        rows["rm_transcript_chunks"] = sorted(
            (cid, entry["seq"], orjson.dumps(entry))
            for cid, entries in conn.execute(
                "SELECT conversation_id, entries FROM rm_transcript_chunks WHERE ns = ?",
                (namespace,),
            )
            for entry in orjson.loads(entries)
        )
        return rows


def namespaces_in(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {
            ns for table in NAMESPACED for (ns,) in conn.execute(f"SELECT DISTINCT ns FROM {table}")
        }


async def test_rebuild_gives_the_live_read_models_and_drops_the_old_ones(
    path: Path, log: SqliteEventLog, store: SqliteReadModel, traffic: Traffic
) -> None:
    await append_in_chunks(log, traffic.events)
    live = rows_of(path, "n1")
    calls: list[tuple[int, int]] = []
    report = await rebuild_sqlite(log, store, None, lambda *p: calls.append(p), chunk=1_000)
    assert (report.namespace, report.previous) == ("n2", "n1")
    assert await store.current_namespace() == "n2"
    rebuilt = rows_of(path, "n2")
    assert rebuilt.pop("rm_frontier") == [("position", len(traffic.events))]
    assert live.pop("rm_frontier") == []
    assert rebuilt == live  # byte for byte: views, transcripts, leads, counters
    assert namespaces_in(path) == {"n2"}
    assert report.events == len(traffic.events)
    assert report.conversations == N and report.leads == len(live["rm_leads"]) > 0
    assert calls[0] == (0, len(traffic.events)) and calls[-1][0] == calls[-1][1] == report.events
    assert len(calls) == 1 + -(-len(traffic.events) // 1_000)


async def test_rebuild_since_keeps_the_conversations_started_from_then(
    path: Path, log: SqliteEventLog, store: SqliteReadModel, traffic: Traffic
) -> None:
    """Conversations started before ``since`` are left out, also their later events
    (read by the rebuild or appended after it)."""
    starts = [e for e in traffic.events if isinstance(e, ConversationStarted)]
    since = starts[N // 2].at
    kept = {e.conversation_id for e in starts if e.at >= since}
    cut = len(traffic.events) * 7 // 10
    await append_in_chunks(log, traffic.events[:cut])
    report = await rebuild_sqlite(log, store, since, lambda *_: None)
    await append_in_chunks(log, traffic.events[cut:])
    oracle = await Oracle().fold(e for e in traffic.events if e.conversation_id in kept)
    assert await oracle.read(store) == await oracle.read()
    with sqlite3.connect(path) as conn:
        held = {c for (c,) in conn.execute("SELECT conversation_id FROM rm_conversations")}
        counters.fold(conn)  # the increments not folded yet are counters too
        keys = {k for (k,) in conn.execute("SELECT DISTINCT key FROM rm_counters")}
    assert held == kept and keys == oracle.counter_keys
    assert report.events < cut  # read from the first event at or after ``since``


Hook = Callable[[], Awaitable[None]]


class RacingStore(SqliteReadModel):
    """Appends (and an erasure) land exactly in the windows that matter: after the
    rebuild's last read, and after its switch but before its drop."""

    def __init__(self, path: Path, before: Hook, after: Hook) -> None:
        super().__init__(path)
        self.before, self.after = before, after
        self.caught_up = 0

    async def switch_after_catch_up(
        self, namespace: str, after_position: int, *, since: float | None = None
    ) -> tuple[str, int]:
        await self.before()
        previous, self.caught_up = await super().switch_after_catch_up(
            namespace, after_position, since=since
        )
        await self.after()
        return previous, self.caught_up


async def test_appends_racing_a_rebuild_lose_nothing(
    path: Path, log: SqliteEventLog, traffic: Traffic
) -> None:
    events = traffic.events
    start = len(events) * 6 // 10
    await append_in_chunks(log, events[:start])
    parts = deque(events[i : i + 4] for i in range(start, len(events), 4))
    lock = asyncio.Lock()

    async def append_next(n: int) -> None:
        async with lock:  # one appender at a time: the log stays in order
            for _ in range(min(n, len(parts))):
                await log.append(parts.popleft())

    leads = [e.conversation_id for e in events[:start] if e.type == "LeadCaptured"]
    erased = leads[len(leads) // 2]

    async def before() -> None:
        await append_next(3)  # only the catch-up can project these into the new namespace
        assert await racing.mark_erased(erased)  # erased in the old namespace, mid-rebuild

    async def after() -> None:
        await append_next(3)  # the live projection now writes the new namespace

    racing = RacingStore(path, before, after)
    racing.start()
    try:

        async def appender() -> None:  # leaves a few appends for the hooks
            while len(parts) > 12:
                await append_next(1)
                await asyncio.sleep(0.001)

        background = asyncio.create_task(appender())
        report = await rebuild_sqlite(log, racing, None, lambda *_: None, chunk=300)
        await background
        await append_next(len(parts))
        oracle = await Oracle().fold(events)
        await oracle.store.mark_erased(erased)
        assert await oracle.read(racing) == await oracle.read()
        assert namespaces_in(path) == {report.namespace}
        assert racing.caught_up >= 12 and report.events <= len(events) - 12
        lead = await racing.lead(erased)
        assert lead is not None and lead.erased and lead.sealed == ""
    finally:
        racing.close()


APPENDER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from projector.sqlite_schema import SCHEMA
    from projector.sqlite_projection import project_in_transaction
    from services.embedded.sqlite_eventlog import SqliteEventLog
    from tests.support.traffic import simulate

    async def main(path: str, start: int, n: int) -> None:
        events = (await simulate(n)).events[start:]
        log = SqliteEventLog(
            Path(path), projection=project_in_transaction, projection_schema=SCHEMA
        )
        log.start()
        print("ready", flush=True)
        sys.stdin.readline()
        for i in range(0, len(events), 3):
            await log.append(events[i : i + 3])
            await asyncio.sleep(0.002)
        log.close()
        print("done", flush=True)

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
    """
)


async def test_appends_from_another_process_racing_a_rebuild_lose_nothing(
    path: Path, log: SqliteEventLog, store: SqliteReadModel, traffic: Traffic
) -> None:
    """As with ``leadflow serve`` appending while ``leadflow replay`` runs."""
    start = len(traffic.events) // 2
    await append_in_chunks(log, traffic.events[:start])
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        APPENDER,
        str(path),
        str(start),
        str(N),
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert await proc.stdout.readline() == b"ready\n"
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
        await asyncio.sleep(0.05)
        report = await rebuild_sqlite(log, store, None, lambda *_: None, chunk=250)
        assert await asyncio.wait_for(proc.stdout.readline(), 60) == b"done\n"
        assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    # The other process sealed its leads under keys of its own: fold what was logged.
    logged = [e.event for e in await log.read_after(0, 1 << 30)]
    assert [e.id for e in logged] == [e.id for e in traffic.events]
    oracle = await Oracle().fold(logged)
    assert await oracle.read(store) == await oracle.read()
    assert namespaces_in(path) == {report.namespace}
    assert start <= report.events <= len(traffic.events)


async def test_serve_rebuilds_the_read_models_of_an_old_data_dir(
    tmp_path: Path, traffic: Traffic
) -> None:
    """A data directory of the previous version (read models in unnamespaced
    ``conversations``/``leads`` tables, an erased lead among them): ``leadflow
    serve`` rebuilds before serving, keeps the erasure and drops the old tables."""
    data = tmp_path / "data"
    data.mkdir()
    old = SqliteEventLog(data / "events.db")  # the log alone, no projection
    old.start()
    try:
        await append_in_chunks(old, traffic.events, 500)
    finally:
        old.close()
    captured = [e for e in traffic.events if e.type == "LeadCaptured"]
    gone, kept = captured[0].conversation_id, captured[1].conversation_id
    with sqlite3.connect(data / "events.db") as conn:
        conn.executescript(
            "CREATE TABLE conversations (conversation_id TEXT PRIMARY KEY, site_id TEXT,"
            " last_seq INTEGER, body BLOB);"
            "CREATE TABLE leads (conversation_id TEXT PRIMARY KEY, site_id TEXT,"
            " captured_at REAL, erased INTEGER NOT NULL DEFAULT 0, body BLOB);"
        )
        conn.execute("INSERT INTO leads VALUES (?, 'x', 0, 1, '{}')", (gone,))
    with sqlite3.connect(data / "keys.db") as conn:
        conn.executescript(KEYS_SCHEMA)
        for event in captured[1:]:
            key = await traffic.keys.get(event.conversation_id)
            conn.execute(
                "INSERT INTO conversation_keys VALUES (?, ?, ?)",
                (event.conversation_id, key, time.time()),
            )
    server = ServerProcess(data).start()
    try:
        for cid, status in ((gone, "erased"), (kept, "captured")):
            result = server.cli("conversation", cid)
            assert result.returncode == 0, result.stderr
            assert orjson.loads(result.stdout)["lead"]["status"] == status
        site = captured[1].site_id
        leads = [orjson.loads(line) for line in server.cli("leads", site).stdout.splitlines()]
        assert len(leads) == min(100, sum(1 for e in captured if e.site_id == site))
        assert any(lead["fields"] for lead in leads)
    finally:
        server.stop()
    with sqlite3.connect(data / "events.db") as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
        erased = conn.execute(
            "SELECT erased FROM rm_leads WHERE conversation_id = ?", (gone,)
        ).fetchone()
        held = conn.execute("SELECT COUNT(*) FROM rm_conversations").fetchone()[0]
    assert "conversations" not in tables and "leads" not in tables
    assert erased == (1,) and held == N


async def test_a_record_it_cannot_read_stops_the_rebuild_and_changes_nothing(
    path: Path, log: SqliteEventLog, store: SqliteReadModel, traffic: Traffic
) -> None:
    """A newer-format record stops the rebuild with UnreadableLog (the CLI says so
    in one line, exit 2); readers stay on the old namespace and no half-built
    namespace is left behind."""
    await append_in_chunks(log, traffic.events[:200])
    with sqlite3.connect(path) as conn:
        body = orjson.dumps({"type": "ButtonPressed", "v": 99, "conversation_id": "x", "seq": 1})
        conn.execute(
            "INSERT INTO events (id, conversation_id, seq, type, at, body)"
            " VALUES ('poison', 'x', 1, 'ButtonPressed', 0, ?)",
            (body,),
        )
    before = rows_of(path, "n1")
    with pytest.raises(UnreadableLog, match="version 99"):
        await rebuild_sqlite(log, store, None, lambda *p: None, chunk=50)
    assert await store.current_namespace() == "n1"
    assert namespaces_in(path) == {"n1"}
    assert rows_of(path, "n1") == before


async def test_a_transcript_of_one_row_per_entry_is_rebuilt_into_chunks(
    path: Path, log: SqliteEventLog, store: SqliteReadModel, traffic: Traffic
) -> None:
    """A namespace of an earlier version (its transcript one row per entry, no
    ``transcript:`` mark) needs a rebuild; the rebuild reads the same transcripts
    from chunks and drops the old rows with their namespace."""
    await append_in_chunks(log, traffic.events)
    cid = traffic.events[0].conversation_id
    expected = await store.transcript(cid)
    assert len(expected) > 3 and not await store.needs_rebuild()
    with sqlite3.connect(path) as conn:  # what an earlier version wrote
        for ns, chunk_cid, entries in conn.execute(
            "SELECT ns, conversation_id, entries FROM rm_transcript_chunks"
        ).fetchall():
            conn.executemany(
                "INSERT INTO rm_transcript (ns, conversation_id, seq, entry) VALUES (?, ?, ?, ?)",
                [(ns, chunk_cid, e["seq"], orjson.dumps(e)) for e in orjson.loads(entries)],
            )
        conn.execute("DELETE FROM rm_transcript_chunks")
        conn.execute("DELETE FROM rm_meta WHERE key LIKE 'transcript:%'")
    assert await store.needs_rebuild()
    await rebuild_sqlite(log, store, None, lambda *_: None)
    assert not await store.needs_rebuild()
    assert await store.transcript(cid) == expected
    assert await store.transcript(cid, after_seq=expected[1]["seq"], limit=2) == expected[2:4]
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM rm_transcript").fetchone() == (0,)

"""The SQLite read models, projected inside the event log's append transactions.

On real files: what the appends project reads back exactly as the oracle (the
in-memory fake fed one event at a time), and appending any logged range again
changes no row of any table.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from projector.sqlite_projection import project_in_transaction
from projector.sqlite_schema import SCHEMA
from projector.sqlite_store import SqliteReadModel
from schemas.events import Event
from services.embedded.sqlite_eventlog import SqliteEventLog
from tests.support.readmodel_oracle import Oracle
from tests.support.traffic import Traffic, simulate

TABLES = (
    "rm_meta",
    "rm_frontier",
    "rm_conversations",
    "rm_transcript_chunks",
    "rm_leads",
    "rm_counters",
    "rm_counter_deltas",
)


@pytest.fixture(scope="module")
def traffic() -> Traffic:
    return asyncio.run(simulate(300))


@pytest.fixture(scope="module")
def oracle(traffic: Traffic) -> Oracle:
    return asyncio.run(Oracle().fold(traffic.events))


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[SqliteEventLog]:
    log = SqliteEventLog(
        tmp_path / "events.db", projection=project_in_transaction, projection_schema=SCHEMA
    )
    log.start()
    yield log
    log.close()


@pytest.fixture
async def store(tmp_path: Path, log: SqliteEventLog) -> AsyncIterator[SqliteReadModel]:
    store = SqliteReadModel(tmp_path / "events.db")
    store.start()
    yield store
    store.close()


def chunks(events: Sequence[Event], sizes: Sequence[int]) -> list[list[Event]]:
    """``events`` cut into consecutive chunks, cycling through ``sizes``."""
    out, i, n = [], 0, 0
    while i < len(events):
        size = sizes[n % len(sizes)]
        out.append(list(events[i : i + size]))
        i, n = i + size, n + 1
    return out


async def append_all(log: SqliteEventLog, parts: list[list[Event]], together: int) -> None:
    """Append ``parts`` in order, ``together`` at a time: they queue on the writer
    in order and share transactions (group commit, one savepoint each)."""
    for i in range(0, len(parts), together):
        await asyncio.gather(*(log.append(part) for part in parts[i : i + together]))


def dump(path: Path) -> dict[str, list[tuple[object, ...]]]:
    with sqlite3.connect(path) as conn:
        return {t: sorted(conn.execute(f"SELECT * FROM {t}")) for t in TABLES}


@pytest.mark.parametrize(("sizes", "together"), [((1,), 1), ((7, 1, 40, 3), 8)])
async def test_appends_project_what_the_oracle_holds(
    tmp_path: Path,
    log: SqliteEventLog,
    store: SqliteReadModel,
    traffic: Traffic,
    oracle: Oracle,
    sizes: tuple[int, ...],
    together: int,
) -> None:
    """One event per append, or ragged chunks sharing transactions: the read models
    (views, transcripts, leads, funnels, rollups) equal the oracle's."""
    await append_all(log, chunks(traffic.events, sizes), together)
    assert await oracle.read(store) == await oracle.read()
    assert await store.current_namespace() == "n1"
    last = traffic.events[-1].conversation_id
    view = await store.conversation(last)
    assert view is not None
    assert view.last_seq == len(await log.read_conversation(last))
    with sqlite3.connect(tmp_path / "events.db") as conn:
        held = conn.execute("SELECT COUNT(*) FROM rm_conversations").fetchone()[0]
    assert held == len(oracle.conversations) == traffic.conversations


async def test_appending_a_logged_range_again_changes_nothing(
    tmp_path: Path, log: SqliteEventLog, traffic: Traffic
) -> None:
    """At-least-once writers re-append events: the log ignores them and so do the
    read models, row for row (counters included), as does a direct re-projection."""
    events = traffic.events
    await append_all(log, chunks(events, (25,)), 4)
    before = dump(tmp_path / "events.db")
    counted = ("rm_counters", "rm_counter_deltas")  # folded, or not yet
    assert all(before[t] for t in TABLES if t not in ("rm_frontier", *counted))
    assert any(before[t] for t in counted)
    third = len(events) // 3
    await append_all(log, chunks(events[third : 2 * third], (9, 2)), 5)
    await log.append(events)
    with sqlite3.connect(tmp_path / "events.db", isolation_level=None) as conn:
        conn.execute("BEGIN IMMEDIATE")
        project_in_transaction(conn, events[::-1])  # any order: grouped and sorted by seq
        conn.execute("COMMIT")
    assert dump(tmp_path / "events.db") == before


async def test_a_partly_new_append_applies_only_the_new_events(
    log: SqliteEventLog, store: SqliteReadModel, traffic: Traffic, oracle: Oracle
) -> None:
    """A redelivered batch that overlaps the log's tail: only the unseen events count."""
    events = traffic.events
    half = len(events) // 2
    await log.append(events[:half])
    await log.append(events[half - 200 :])
    assert await oracle.read(store) == await oracle.read()


async def test_reads_of_a_file_without_read_models_are_empty(tmp_path: Path) -> None:
    """No namespace yet: reads see an empty model and do not create one."""
    store = SqliteReadModel(tmp_path / "events.db")
    store.start()
    try:
        assert await store.conversation("c1") is None
        assert await store.transcript("c1") == []
        assert (await store.leads("acme")).leads == []
        assert await store.counters("funnel:solar-quote:1") == {}
        assert not await store.mark_erased("c1")
        assert not await store.needs_rebuild()  # nothing logged either
        with sqlite3.connect(tmp_path / "events.db") as conn:
            assert conn.execute("SELECT COUNT(*) FROM rm_meta").fetchone() == (0,)
    finally:
        store.close()


async def test_leads_pages_use_the_keyset_index(tmp_path: Path, store: SqliteReadModel) -> None:
    """A page of a site's leads is a range of the (ns, site, captured_at, id) index."""
    await store.current_namespace()
    with sqlite3.connect(tmp_path / "events.db") as conn:
        plan = " ".join(
            row[-1]
            for row in conn.execute(
                "EXPLAIN QUERY PLAN SELECT fields FROM rm_leads WHERE ns = ? AND site_id = ?"
                " AND (captured_at, conversation_id) < (?, ?)"
                " ORDER BY captured_at DESC, conversation_id DESC LIMIT ?",
                ("n1", "acme", 1.0, "c", 51),
            )
        )
    assert "rm_leads_by_site" in plan and "TEMP B-TREE" not in plan

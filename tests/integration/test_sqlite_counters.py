"""The embedded read models' counters: increments journaled per transaction and
folded every FOLD_EVERY rows (projector/sqlite_counters.py). Reads are exact
before, across and after a fold; a fold moves every increment exactly once."""

from __future__ import annotations

import random
import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from projector import sqlite_counters as counters
from projector.sqlite_schema import SCHEMA


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(tmp_path / "events.db", isolation_level=None)
    connection.executescript(SCHEMA)
    yield connection
    connection.close()


def journal(conn: sqlite3.Connection, namespace: str, deltas: list[counters.Delta]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    counters.add_increments(conn, namespace, deltas)
    conn.execute("COMMIT")


def rows(conn: sqlite3.Connection, table: str) -> int:
    return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def test_reads_are_exact_before_across_and_after_folds(conn: sqlite3.Connection) -> None:
    rng = random.Random(5)
    expected: dict[str, Counter[str]] = {
        "funnel:a:1": Counter(),
        "daily:site:s:2026-12-07": Counter(),
    }
    for i in range(counters.FOLD_EVERY * 2 + 17):
        deltas = [(key, rng.choice(["started", "edge:q1>q2", "lead"]), 1) for key in expected]
        for key, field, delta in deltas:
            expected[key][field] += delta
        journal(conn, "n1", deltas)
        if i % 97 == 0 or i >= counters.FOLD_EVERY * 2 - 2:
            for key, fields in expected.items():
                assert counters.counters_of(conn, "n1", key) == dict(fields)
    assert rows(conn, "rm_counter_deltas") == 17  # two folds happened, 17 rows since
    assert rows(conn, "rm_counters") == sum(len(fields) for fields in expected.values())


def test_a_fold_moves_every_increment_once_and_keeps_namespaces_apart(
    conn: sqlite3.Connection,
) -> None:
    journal(conn, "n1", [("funnel:a:1", "started", 2), ("funnel:a:1", "lead", 1)])
    journal(conn, "n2", [("funnel:a:1", "started", 5)])
    journal(conn, "n1", [("funnel:a:1", "started", 1), ("funnel:a:1", "lead", -1)])
    assert rows(conn, "rm_counters") == 0
    conn.execute("BEGIN IMMEDIATE")
    assert counters.fold(conn) == 3
    conn.execute("COMMIT")
    assert rows(conn, "rm_counter_deltas") == 0
    assert counters.counters_of(conn, "n1", "funnel:a:1") == {"started": 3, "lead": 0}
    assert counters.counters_of(conn, "n2", "funnel:a:1") == {"started": 5}
    assert counters.fold(conn) == 0  # nothing left to fold: nothing counted twice
    assert counters.counters_of(conn, "n1", "funnel:a:1") == {"started": 3, "lead": 0}


def test_increments_that_cancel_out_journal_nothing(conn: sqlite3.Connection) -> None:
    journal(conn, "n1", [("funnel:a:1", "started", 1), ("funnel:a:1", "started", -1)])
    journal(conn, "n1", [])
    assert rows(conn, "rm_counter_deltas") == 0


def test_a_key_is_found_folded_or_not(conn: sqlite3.Connection) -> None:
    journal(conn, "n1", [("funnel:solar:1", "started", 1)])
    assert counters.has_key_between(conn, "n1", "funnel:solar:", "funnel:solar;")
    assert not counters.has_key_between(conn, "n1", "funnel:saas:", "funnel:saas;")
    assert not counters.has_key_between(conn, "n2", "funnel:solar:", "funnel:solar;")
    counters.fold(conn)
    assert counters.has_key_between(conn, "n1", "funnel:solar:", "funnel:solar;")
    assert counters.pending(conn, "n1") == []  # folded: nothing journaled is left

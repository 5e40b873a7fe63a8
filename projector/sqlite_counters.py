"""The read models' counters in SQLite: a compact journal of increments in each
command's transaction, folded into the counters table every FOLD_EVERY rows.

Why: one press increments about five counters (the funnel of all sites and the
site's own, three daily rollups), which sit in five different B-tree leaves of
``rm_counters``; each commit wrote each of those pages (about 6 of the 24 pages
a command wrote to the WAL). Here a transaction appends one row to
``rm_counter_deltas`` (its increments, encoded together), always on the table's
rightmost leaf, and every FOLD_EVERY-th row folds them all into ``rm_counters``
in that transaction: the counters' pages are written once per fold.

Nothing is lost or counted twice: the increments are committed with the views
and events that caused them, a fold moves them in one transaction, and every
read adds the rows not folded yet (:func:`counters_of`), so reads are exact at
any moment.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Iterable

import orjson

SCHEMA = """
CREATE TABLE IF NOT EXISTS rm_counter_deltas (
    position INTEGER PRIMARY KEY,
    ns TEXT NOT NULL,
    body BLOB NOT NULL
);
"""

FOLD_EVERY = 256
"""Rows of increments between folds: a fold then costs about one commit's worth
of extra pages, once per 256 commands."""

Delta = tuple[str, str, int]  # key, field, delta


def add_increments(conn: sqlite3.Connection, namespace: str, deltas: Iterable[Delta]) -> None:
    """Journal ``deltas`` (the caller's transaction); fold when due."""
    summed = _sum(deltas)
    if not summed:
        return
    body = orjson.dumps([[key, field, delta] for (key, field), delta in summed.items()])
    cur = conn.execute("INSERT INTO rm_counter_deltas (ns, body) VALUES (?, ?)", (namespace, body))
    if (cur.lastrowid or 0) % FOLD_EVERY == 0:
        fold(conn)


def fold(conn: sqlite3.Connection) -> int:
    """Move every journaled increment into ``rm_counters`` (the caller's
    transaction); returns the rows folded."""
    rows = conn.execute(
        "SELECT position, ns, body FROM rm_counter_deltas ORDER BY position"
    ).fetchall()
    if not rows:
        return 0
    totals: dict[tuple[str, str, str], int] = defaultdict(int)
    for _, namespace, body in rows:
        for key, field, delta in orjson.loads(body):
            totals[(namespace, key, field)] += delta
    conn.executemany(
        "INSERT INTO rm_counters (ns, key, field, value) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (ns, key, field) DO UPDATE SET value = value + excluded.value",
        [(ns, key, field, value) for (ns, key, field), value in totals.items()],
    )
    conn.execute("DELETE FROM rm_counter_deltas WHERE position <= ?", (rows[-1][0],))
    return len(rows)


def counters_of(conn: sqlite3.Connection, namespace: str, key: str) -> dict[str, int]:
    """The fields of counter ``key``: folded values plus the journaled ones."""
    values = {
        str(field): int(value)
        for field, value in conn.execute(
            "SELECT field, value FROM rm_counters WHERE ns = ? AND key = ?", (namespace, key)
        )
    }
    for k, field, delta in pending(conn, namespace):
        if k == key:
            values[field] = values.get(field, 0) + delta
    return values


def has_key_between(conn: sqlite3.Connection, namespace: str, low: str, high: str) -> bool:
    """Whether any counter key ``low <= key < high`` exists, folded or not."""
    hit = conn.execute(
        "SELECT 1 FROM rm_counters WHERE ns = ? AND key >= ? AND key < ? LIMIT 1",
        (namespace, low, high),
    ).fetchone()
    return hit is not None or any(low <= key < high for key, _, _ in pending(conn, namespace))


def pending(conn: sqlite3.Connection, namespace: str) -> list[Delta]:
    """The increments of ``namespace`` not folded yet (at most FOLD_EVERY rows)."""
    found: list[Delta] = []
    for (body,) in conn.execute("SELECT body FROM rm_counter_deltas WHERE ns = ?", (namespace,)):
        found.extend((str(k), str(f), int(d)) for k, f, d in orjson.loads(body))
    return found


def _sum(deltas: Iterable[Delta]) -> dict[tuple[str, str], int]:
    summed: dict[tuple[str, str], int] = defaultdict(int)
    for key, field, delta in deltas:
        summed[(key, field)] += delta
    return {k: v for k, v in summed.items() if v}

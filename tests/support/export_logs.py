"""Real event logs for the export's integration tests and benchmark.

:func:`write_sqlite_log` writes a simulated log (:mod:`tests.support.traffic`)
into a data directory exactly as ``leadflow serve`` lays it out: the events
through :class:`SqliteEventLog.append`, the conversation keys in ``keys.db``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from schemas.events import ConversationStarted, Event, event_id
from services.embedded.sqlite_eventlog import SqliteEventLog
from services.embedded.sqlite_keystore import SCHEMA as KEYS_SCHEMA
from tests.support.server import ROOT

APPEND_CHUNK = 5_000


async def _append(log: SqliteEventLog, events: Sequence[Event]) -> None:
    for i in range(0, len(events), APPEND_CHUNK):
        await log.append(events[i : i + APPEND_CHUNK])


def write_sqlite_log(
    data_dir: Path, events: Sequence[Event], keys: dict[str, bytes] | None = None
) -> None:
    """Not from inside a running event loop (it runs its own)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log = SqliteEventLog(data_dir / "events.db")
    log.start()
    try:
        asyncio.run(_append(log, events))
    finally:
        log.close()
    conn = sqlite3.connect(data_dir / "keys.db")
    try:
        conn.executescript(KEYS_SCHEMA)
        conn.executemany(
            "INSERT INTO conversation_keys VALUES (?, ?, 0)", sorted((keys or {}).items())
        )
        conn.commit()
    finally:
        conn.close()


def replicate(events: Sequence[Event], copies: int, shift: float) -> list[Event]:
    """``copies`` copies of a log, each of new conversations (``<id>-k<copy>``)
    started ``shift`` seconds after the previous copy: a large, realistic log
    without playing every visitor (the sealed leads of copies do not open)."""
    out: list[Event] = list(events)
    for k in range(1, copies):
        for e in events:
            cid = f"{e.conversation_id}-k{k}"
            out.append(
                dataclasses.replace(
                    e, conversation_id=cid, id=event_id(cid, e.seq), at=e.at + k * shift
                )
            )
    return out


def insert_raw_row(
    data_dir: Path, conversation_id: str, seq: int, type_name: str, body: bytes
) -> int:
    """Append a row as a newer writer would; returns its position."""
    conn = sqlite3.connect(data_dir / "events.db")
    try:
        cur = conn.execute(
            "INSERT INTO events (id, conversation_id, seq, type, at, body)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (f"raw-{conversation_id}-{seq}", conversation_id, seq, type_name, 0.0, body),
        )
        conn.commit()
        assert cur.lastrowid is not None
        return cur.lastrowid
    finally:
        conn.close()


def cohort(
    events: Iterable[Event],
    since: float | None = None,
    until: float | None = None,
    flow_id: str | None = None,
    site_id: str | None = None,
) -> list[Event]:
    """The oracle of a selection: all events of the conversations whose start matches."""
    events = list(events)
    chosen = {
        e.conversation_id
        for e in events
        if isinstance(e, ConversationStarted)
        and (since is None or e.at >= since)
        and (until is None or e.at < until)
        and (flow_id is None or e.flow_id == flow_id)
        and (site_id is None or e.site_id == site_id)
    }
    return [e for e in events if e.conversation_id in chosen]


def type_counts(events: Iterable[Event]) -> Counter[str]:
    return Counter(e.type for e in events)


def leadflow(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real ``leadflow`` command in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

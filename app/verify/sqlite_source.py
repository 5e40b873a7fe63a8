"""The embedded log as transcripts: events.db's ``events``, the command journal
(``commands``) and the snapshot archive (``policy_snapshots``), read-only.

Conversations come in the order they started (conversations that ran at the
same time share policy snapshots, which keeps the compiled-snapshot cache warm),
a chunk at a time: each chunk's events and commands are read in one read
transaction, and since the journal is written in the events' transactions the
two always agree, even while ``leadflow serve`` appends. Nothing is written:
the connections are opened ``mode=ro``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

from app.verify.model import NO_JOURNAL, LoggedAt, Transcript, UnreadableLog
from schemas.codec import MessageError
from schemas.commands import Command, decode_command
from schemas.events import decode_event

Progress = Callable[[int, int], None]


def connect_ro(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


class SqliteLog:
    """A read-only view of events.db for the verifier."""

    def __init__(self, path: Path, chunk: int = 500) -> None:
        self._conn = connect_ro(path)
        self._chunk = chunk
        tables = _tables(self._conn)
        self.has_journal = "commands" in tables
        self.has_archive = "policy_snapshots" in tables

    def close(self) -> None:
        self._conn.close()

    def cohort(self, since: float | None) -> list[str]:
        """The conversations started at/after ``since`` (all without), in start order."""
        sql = "SELECT conversation_id FROM events WHERE seq = 1"
        args: tuple[float, ...] = ()
        if since is not None:
            sql += " AND at >= ?"
            args = (since,)
        return [row[0] for row in self._conn.execute(sql + " ORDER BY position", args)]

    def snapshot(self, version: str) -> bytes | None:
        """The archived body of a policy snapshot version (None: not archived)."""
        if not self.has_archive:
            return None
        row = self._conn.execute(
            "SELECT body FROM policy_snapshots WHERE version = ?", (version,)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def _chunk_of(self, ids: list[str]) -> Iterator[Transcript]:
        marks = ",".join("?" * len(ids))
        self._conn.execute("BEGIN")
        try:
            events = self._conn.execute(
                f"SELECT position, conversation_id, body FROM events"
                f" WHERE conversation_id IN ({marks}) ORDER BY conversation_id, seq",
                ids,
            ).fetchall()
            commands = (
                self._conn.execute(
                    f"SELECT position, conversation_id, body, event_seq FROM commands"
                    f" WHERE conversation_id IN ({marks}) ORDER BY conversation_id, event_seq",
                    ids,
                ).fetchall()
                if self.has_journal
                else []
            )
        finally:
            self._conn.execute("COMMIT")
        logged: dict[str, list[LoggedAt]] = {}
        for position, cid, body in events:
            where = f"events position {position}"
            try:
                event = decode_event(body)
            except MessageError as exc:
                raise UnreadableLog(where, str(exc)) from exc
            logged.setdefault(cid, []).append(LoggedAt(event, where))
        journaled: dict[str, list[Command]] = {}
        partial: set[str] = set()
        for position, cid, body, event_seq in commands:
            if cid not in journaled and event_seq != 1:
                partial.add(cid)
            try:
                command = decode_command(body)
            except MessageError as exc:
                raise UnreadableLog(f"commands position {position}", str(exc)) from exc
            journaled.setdefault(cid, []).append(command)
        for cid in ids:
            mine = journaled.get(cid, [])
            lost = NO_JOURNAL if not mine or cid in partial else ""
            yield Transcript(cid, tuple(mine), tuple(logged.get(cid, [])), lost)

    async def transcripts(
        self, since: float | None, progress: Progress | None = None
    ) -> AsyncIterator[Transcript]:
        ids = self.cohort(since)
        for start in range(0, len(ids), self._chunk):
            for transcript in self._chunk_of(ids[start : start + self._chunk]):
                yield transcript
            if progress is not None:
                progress(min(len(ids), start + self._chunk), len(ids))
        if progress is not None and not ids:
            progress(0, 0)


class SqliteKeys:
    """Conversation keys from keys.db, read-only (None when erased or absent)."""

    def __init__(self, path: Path) -> None:
        self._conn = connect_ro(path) if path.exists() else None

    async def get(self, conversation_id: str) -> bytes | None:
        if self._conn is None:
            return None
        row = self._conn.execute(
            "SELECT key FROM conversation_keys WHERE conversation_id = ?", (conversation_id,)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

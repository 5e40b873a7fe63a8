"""The embedded log as transcripts: events.db's ``events``, the command journal
(``commands``) and the snapshot archive (``policy_snapshots``), read-only.

The log and the journal are read through read-only
:class:`~services.embedded.sqlite_follower.SqliteLogFollower` s, bounded
(:func:`~services.log_follower.read_bounded`): the events' end is taken first,
then the journal's, and a journaled command whose events lie past the events'
end (its ``event_seq`` is beyond the conversation's last logged seq) is left
out. Since the journal is written in the events' transactions, what is read
then agrees exactly, even while ``leadflow serve`` appends. Nothing is written.

Two passes, so that memory holds the conversations in progress rather than the
log: the first reads only keys, positions and the ``type`` column (no body is
decoded) and learns the conversations started at/after ``since`` (all without),
in the order they started, with the position of each one's last event and last
journaled command; the second decodes them and hands each conversation on as
soon as both reads are past its last rows (those closing together in the order
they started). Conversations that ran at the same time come close together
and share policy snapshots, which keeps the compiled-snapshot cache warm; a
conversation resumed days later holds back nothing but itself.
"""

from __future__ import annotations

import contextlib
import heapq
import sqlite3
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from app.verify.model import NO_JOURNAL, LoggedAt, Transcript, unreadable
from schemas.codec import MessageError
from schemas.commands import Command, decode_command
from schemas.events import decode_event
from services.embedded.sqlite_follower import PARTITION, SqliteLogFollower
from services.log_follower import Chunk, LogRecord, bounded_range, read_bounded

Progress = Callable[[int, int], None]
READ = 5_000  # records a read
STARTED = b"ConversationStarted"


def connect_ro(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def _cid(record: LogRecord) -> str:
    return (record.key or b"").decode()


@dataclass
class _Range:
    """One log's bounded read: where it starts and ends, how far it got."""

    follower: SqliteLogFollower
    start: int
    end: int
    position: int = 0  # the next position to read
    last: dict[str, int] = field(default_factory=dict)  # conversation -> its last position

    @classmethod
    async def of(cls, follower: SqliteLogFollower, since: float | None) -> _Range:
        start, end = await bounded_range(follower, since)
        return cls(follower, start[PARTITION], end[PARTITION], start[PARTITION])

    def chunks(self) -> AsyncGenerator[Chunk, None]:
        self.position = self.start
        return read_bounded(self.follower, {PARTITION: self.start}, {PARTITION: self.end}, READ)

    def passed(self, cid: str) -> bool:
        return self.last.get(cid, -1) < self.position


class SqliteLog:
    """A read-only view of events.db for the verifier. ``chunk``: progress is
    reported every ``chunk`` conversations."""

    def __init__(self, path: Path, chunk: int = 500) -> None:
        self._path = path
        self._chunk = chunk
        self._conn = connect_ro(path)
        tables = _tables(self._conn)
        self.has_journal = "commands" in tables
        self.has_archive = "policy_snapshots" in tables

    def close(self) -> None:
        self._conn.close()

    def snapshot(self, version: str) -> bytes | None:
        """The archived body of a policy snapshot version (None: not archived)."""
        if not self.has_archive:
            return None
        row = self._conn.execute(
            "SELECT body FROM policy_snapshots WHERE version = ?", (version,)
        ).fetchone()
        return None if row is None else bytes(row[0])

    async def transcripts(
        self, since: float | None, progress: Progress | None = None
    ) -> AsyncIterator[Transcript]:
        events = SqliteLogFollower(self._path)
        journal = SqliteLogFollower(self._path, table="commands") if self.has_journal else None
        async with contextlib.AsyncExitStack() as stack:
            for follower in (events, journal):
                if follower is not None:
                    await follower.start()
                    stack.push_async_callback(follower.stop)
            logged = await _Range.of(events, since)  # the events' end first
            journaled = None if journal is None else await _Range.of(journal, since)
            cohort = await _scan(logged, journaled, since)
            total, done = len(cohort), 0
            async for transcript in _assemble(logged, journaled, cohort):
                yield transcript
                done += 1
                if progress is not None and (done % self._chunk == 0 or done == total):
                    progress(done, total)
            if progress is not None and not total:
                progress(0, 0)


async def _scan(logged: _Range, journaled: _Range | None, since: float | None) -> list[str]:
    """The first pass: the conversations started at/after ``since`` in start
    order, each one's last event position (and last journaled command's)."""
    cohort = logged.last
    async with contextlib.aclosing(logged.chunks()) as chunks:
        async for chunk in chunks:
            for record in chunk.records:
                cid = _cid(record)
                if cid in cohort or (
                    record.header("type") == STARTED
                    and (since is None or record.timestamp >= since)
                ):
                    cohort[cid] = record.offset
    if journaled is not None:
        async with contextlib.aclosing(journaled.chunks()) as chunks:
            async for chunk in chunks:
                for record in chunk.records:
                    cid = _cid(record)
                    if cid in cohort:
                        journaled.last[cid] = record.offset
    return list(cohort)


@dataclass
class _Held:
    """A conversation's rows read so far in the second pass."""

    events: list[LoggedAt] = field(default_factory=list)
    commands: list[tuple[int, int, bytes]] = field(default_factory=list)  # event seq, pos, body


async def _assemble(
    logged: _Range, journaled: _Range | None, order: list[str]
) -> AsyncIterator[Transcript]:
    """The second pass: both logs read side by side (the journal kept no later
    than the events, by time), each conversation handed on once both reads are
    past its last rows."""
    held: dict[str, _Held] = {}
    closing = _Closing(order, logged, journaled)
    async with contextlib.AsyncExitStack() as stack:
        events = await stack.enter_async_context(contextlib.aclosing(logged.chunks()))
        commands = None
        if journaled is not None:
            commands = await stack.enter_async_context(contextlib.aclosing(journaled.chunks()))
        journal_at = float("-inf")
        async for chunk in events:
            _hold_events(chunk, logged.last, held)
            if chunk.records:
                logged.position = chunk.records[-1].offset + 1
                events_at = chunk.records[-1].timestamp
                while commands is not None and journaled is not None and journal_at <= events_at:
                    part = await anext(commands, None)
                    if part is None:
                        commands, journaled.position = None, journaled.end
                        break
                    _hold_commands(part, logged.last, held)
                    if part.records:
                        journaled.position = part.records[-1].offset + 1
                        journal_at = part.records[-1].timestamp
            for cid in closing.closed():
                yield _transcript(cid, held)
        logged.position = logged.end
        if commands is not None and journaled is not None:
            async for part in commands:
                _hold_commands(part, logged.last, held)
            journaled.position = journaled.end
    for cid in closing.closed():
        yield _transcript(cid, held)


class _Closing:
    """Which conversations both reads are past, each once: those past the
    events' read wait (in a heap by their last command's position) for the
    journal's."""

    def __init__(self, order: list[str], logged: _Range, journaled: _Range | None) -> None:
        self._logged, self._journaled = logged, journaled
        self._rank = {cid: i for i, cid in enumerate(order)}
        self._by_event = sorted(order, key=logged.last.__getitem__, reverse=True)
        self._by_command: list[tuple[int, int, str]] = []

    def closed(self) -> list[str]:
        logged, journaled = self._logged, self._journaled
        while self._by_event and logged.passed(self._by_event[-1]):
            cid = self._by_event.pop()
            last = -1 if journaled is None else journaled.last.get(cid, -1)
            heapq.heappush(self._by_command, (last, self._rank[cid], cid))
        out: list[tuple[int, str]] = []
        position = logged.end + 1 if journaled is None else journaled.position
        while self._by_command and self._by_command[0][0] < position:
            _, rank, cid = heapq.heappop(self._by_command)
            out.append((rank, cid))
        return [cid for _, cid in sorted(out)]


def _hold_events(chunk: Chunk, cohort: dict[str, int], held: dict[str, _Held]) -> None:
    for record in chunk.records:
        cid = _cid(record)
        if cid not in cohort:
            continue
        mine = held.setdefault(cid, _Held())
        where = f"events position {record.offset}"
        try:
            event = decode_event(record.value or b"")
        except MessageError as exc:
            raise unreadable(
                where, exc, log="events", partition=PARTITION, offset=record.offset
            ) from exc
        mine.events.append(LoggedAt(event, where))


def _hold_commands(chunk: Chunk, cohort: dict[str, int], held: dict[str, _Held]) -> None:
    for record in chunk.records:
        cid = _cid(record)
        if cid in cohort:
            event_seq = int(record.header("event_seq") or b"0")
            mine = held.setdefault(cid, _Held())
            mine.commands.append((event_seq, record.offset, record.value or b""))


def _transcript(cid: str, held: dict[str, _Held]) -> Transcript:
    """The commands journaled up to the conversation's last logged event, decoded;
    NO_JOURNAL when there are none or the journal began after its start."""
    mine = held.pop(cid, None) or _Held()
    mine.events.sort(key=lambda x: x.event.seq)
    last_seq = mine.events[-1].event.seq if mine.events else 0
    commands: list[Command] = []
    for event_seq, position, body in mine.commands:
        if event_seq > last_seq:
            break  # its events lie past the events' end: not read
        try:
            commands.append(decode_command(body))
        except MessageError as exc:
            raise unreadable(
                f"commands position {position}",
                exc,
                log="commands",
                partition=PARTITION,
                offset=position,
            ) from exc
    partial = bool(mine.commands) and mine.commands[0][0] != 1
    lost = NO_JOURNAL if not commands or partial else ""
    return Transcript(cid, tuple(commands), tuple(mine.events), lost)


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

"""The ``LogFollower`` port: how every consumer of the event log reads it.

One abstraction for following a log, whichever log it is: the Kafka topics of
the distributed mode (``events``, ``commands``) or the SQLite log of the
embedded mode (``events.db``). The processor's catch-up, the live projector,
rebuilds, the export, the verifier, the policy feed and lead delivery all read
through it, so decode errors, positions and bounded reads are handled once.

Positions
    A log has partitions (SQLite: one, partition 0) and each record an offset
    in its partition (SQLite: the log's global ``position``). A *position* is
    the **next** offset to read of a partition. A follower never stores
    positions itself: the caller stores them atomically with its own writes
    (a read model beside its views, a ledger beside its state) and hands them
    back to :meth:`LogFollower.seek` when it starts or is assigned a partition.
    That is what makes "nothing lost, nothing applied twice" hold across
    kill -9: the position and the effects of the records before it are one
    write.

Bounded reads
    :func:`read_bounded` reads every partition from a start (the beginning, or
    the first record at or after a time) up to the end captured when it began;
    later appends are not read. Exports, rebuilds and verification use it. It
    reads only the partitions it was given and pauses each one it is done
    with (:meth:`LogFollower.pause`), so nothing past the end is fetched and
    no fetch is left in flight when the follower stops.

Decoding
    Records are bytes; :func:`decode_record` turns a decode failure into one
    typed :class:`UnreadableLog` that names the log, partition and offset, so an
    operator can find the record and every consumer reports it the same way.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from schemas.codec import MessageError, UnknownType, UnsupportedVersion

T = TypeVar("T")
OnAssigned = Callable[[list[int]], Awaitable[None]]


Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One record of a log. ``value`` None is a Kafka tombstone; ``timestamp`` is
    in Unix seconds (Kafka's record timestamp; SQLite: the event's ``at``).

    ``key`` is the conversation id for the conversation logs (Kafka's record
    key; SQLite: the row's ``conversation_id``). ``headers`` are Kafka's record
    headers (a trace context, say); the SQLite log puts there the row's columns
    a reader may filter on without decoding the body (``type``, and for the
    command journal ``event_seq``), as :mod:`services.embedded.sqlite_follower`
    documents."""

    partition: int
    offset: int
    value: bytes | None
    key: bytes | None = None
    timestamp: float = 0.0
    headers: Headers = ()

    def header(self, name: str) -> bytes | None:
        """The first header called ``name``, None when there is none."""
        for key, value in self.headers:
            if key == name:
                return value
        return None


class UnreadableLog(Exception):
    """A record this reader cannot decode. ``where`` names it (``events partition
    3 offset 812``, ``events.db position 812``); ``newer`` is True when the record
    is of a schema version or type this leadflow does not know, so an upgraded
    reader could read it. The message never carries field values: safe to print
    and to log."""

    def __init__(
        self,
        where: str,
        reason: str,
        *,
        log: str = "",
        partition: int | None = None,
        offset: int | None = None,
        newer: bool = False,
    ) -> None:
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason
        self.log = log
        self.partition = partition
        self.offset = offset
        self.newer = newer


def where_of(log: str, record: LogRecord) -> str:
    """``events partition 3 offset 812``, or ``events.db position 812`` for SQLite
    (a log whose name holds ``.db``: one partition, offsets are positions)."""
    if ".db" in log:
        return f"{log} position {record.offset}"
    return f"{log} partition {record.partition} offset {record.offset}"


def decode_record(log: str, record: LogRecord, decode: Callable[[bytes], T]) -> T:
    """``decode(record.value)``, or :class:`UnreadableLog` naming the record.

    A tombstone (None) is unreadable too: callers that expect tombstones skip
    them before decoding."""
    if record.value is None:
        raise UnreadableLog(
            where_of(log, record),
            "empty record (a tombstone)",
            log=log,
            partition=record.partition,
            offset=record.offset,
        )
    try:
        return decode(record.value)
    except (MessageError, ValueError, TypeError, KeyError) as exc:
        newer = isinstance(exc, UnsupportedVersion | UnknownType)
        reason = f"{exc}; upgrade leadflow to read it" if newer else f"unreadable record ({exc})"
        raise UnreadableLog(
            where_of(log, record),
            reason,
            log=log,
            partition=record.partition,
            offset=record.offset,
            newer=newer,
        ) from exc


class LogFollower(Protocol):
    """Reads one log record by record, from positions the caller keeps.

    ``start`` connects (a consumer-group follower joins its group and is told
    its partitions through ``on_assigned``; a manual one reads the partitions
    it was given); ``stop`` leaves, with no fetch left in flight. ``poll``
    returns the next records (possibly none) of the assigned partitions, in
    offset order per partition; after ``seek(p, o)`` the next record of ``p``
    is the first at or after offset ``o`` (None: the start of the log).

    ``on_assigned``, if set before ``start``, is awaited with the partitions
    the follower reads: by a group follower on every assignment (revoked
    partitions are forgotten), by a manual one once, at the end of ``start``.
    Either way it is where a live consumer seeks to the positions it stores.
    ``on_revoked``, if set, is awaited with the partitions a group follower is
    about to give up, before they move: where a consumer finishes or abandons
    the work it holds for them (a manual follower never calls it).

    Callers seek every partition they read: where a partition never sought
    starts is the adapter's (a consumer group's committed offset, say; a
    manual Kafka follower fetches nothing before a seek). ``pause`` stops
    reading partitions until they are sought again."""

    on_assigned: OnAssigned | None
    on_revoked: OnAssigned | None

    @property
    def name(self) -> str:
        """The log's name in messages: ``events``, ``commands``, ``events.db``."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def assigned(self) -> list[int]: ...

    async def seek(self, partition: int, offset: int | None) -> None:
        """Read ``partition`` from ``offset`` on (None: its beginning); resumes it
        if it was paused. Records fetched before and not yet polled are dropped."""
        ...

    def pause(self, partitions: Sequence[int]) -> None:
        """Fetch and return nothing more of ``partitions`` until they are sought
        again (a bounded read pauses each partition it is done with, so nothing
        past its end is fetched and no fetch is in flight when it stops)."""
        ...

    async def poll(self, max_records: int = 5_000, wait: float = 0.2) -> list[LogRecord]:
        """At most ``max_records`` records; waits up to ``wait`` seconds when none are there."""
        ...

    async def position(self, partition: int) -> int:
        """The offset of the next record ``poll`` would return for ``partition``
        (past gaps such as Kafka's transaction markers)."""
        ...

    async def end_offsets(self) -> dict[int, int]:
        """Per assigned partition, the offset one past its last readable record
        now (Kafka with ``read_committed``: the last stable offset)."""
        ...

    async def offsets_for_time(self, since: float) -> dict[int, int]:
        """Per assigned partition, the offset of the first record at or after
        ``since`` (Unix seconds), or its end offset when there is none."""
        ...

    async def beginning_offsets(self) -> dict[int, int]: ...

    def lag(self) -> dict[int, int]:
        """Records not yet returned per assigned partition (as last seen)."""
        ...

    async def commit(self, positions: dict[int, int]) -> None:
        """Advisory: tell the log's own tools how far the caller is (Kafka: the
        group's committed offsets). Never the caller's source of truth."""
        ...


@dataclass(frozen=True, slots=True)
class Chunk:
    """What one bounded read step returned: the records, and how many offsets
    they covered (records plus gaps), for progress."""

    records: Sequence[LogRecord]
    covered: int


async def bounded_range(
    follower: LogFollower, since: float | None = None
) -> tuple[dict[int, int], dict[int, int]]:
    """(start, end) offsets per assigned partition: from the beginning or from
    the first record at or after ``since``, up to the end as it is now."""
    end = await follower.end_offsets()
    start = await follower.beginning_offsets()
    if since is not None:
        found = await follower.offsets_for_time(since)
        start = {p: max(start[p], found.get(p, end[p])) for p in end}
    return start, end


async def read_bounded(
    follower: LogFollower,
    start: dict[int, int],
    end: dict[int, int],
    max_records: int = 10_000,
) -> AsyncGenerator[Chunk, None]:
    """The records in ``[start, end)`` of each partition of ``start``, in chunks
    (tombstones included). Offsets may have gaps (transaction markers, aborted
    records): a partition is done once the follower's position reaches its end.

    The follower's other partitions are paused, and each partition is paused
    once done: nothing past the end is fetched, no fetch is in flight when the
    follower stops, and the caller may read another partition afterwards."""
    position = dict(start)
    pending = {p for p in position if position[p] < end.get(p, 0)}
    idle = [p for p in follower.assigned() if p not in pending]
    if idle:
        follower.pause(idle)
    for partition in sorted(pending):
        await follower.seek(partition, position[partition])
    while pending:
        fetched = [r for r in await follower.poll(max_records, wait=0.25) if r.partition in pending]
        if not fetched:  # only gaps left, or nothing fetched yet: ask where we are
            done = [p for p in sorted(pending) if await follower.position(p) >= end[p]]
            if done:
                follower.pause(done)
                pending.difference_update(done)
            continue
        records: list[LogRecord] = []
        covered = 0
        for record in fetched:
            partition = record.partition
            if partition not in pending:
                continue
            if record.offset >= end[partition]:
                follower.pause([partition])
                pending.discard(partition)
                continue
            records.append(record)
            covered += record.offset + 1 - position[partition]
            position[partition] = record.offset + 1
            if position[partition] >= end[partition]:
                follower.pause([partition])
                pending.discard(partition)
        yield Chunk(records, covered)

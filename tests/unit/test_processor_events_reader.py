"""The processor's catch-up reader on the in-memory log: the records of one
partition past an offset, up to the end the read began with."""

from __future__ import annotations

import pytest

from schemas.batches import encode_batch
from schemas.commands import VisitorContext
from schemas.events import ConversationStarted
from services.log_follower import LogFollower, LogRecord, UnreadableLog
from services.log_follower_fake import MemoryLog, MemoryLogFollower
from services.processor.events_reader import EventsReader


def batch(cid: str) -> bytes:
    started = ConversationStarted(
        conversation_id=cid,
        seq=1,
        id=f"{cid}-1",
        at=1.0,
        command_seq=1,
        flow_id="quiz",
        flow_version=1,
        site_id="s",
        context=VisitorContext(),
    )
    return encode_batch([started])


class Opened:
    """Opens followers of one partition of ``log``, and remembers them."""

    def __init__(self, log: MemoryLog) -> None:
        self.log = log
        self.followers: list[MemoryLogFollower] = []

    def __call__(self, partition: int) -> LogFollower:
        follower = MemoryLogFollower(self.log, partitions=[partition])
        self.followers.append(follower)
        return follower


async def test_it_reads_the_records_past_the_offset_across_gaps() -> None:
    log = MemoryLog(2)
    for i in range(3):
        log.append(1, batch(f"a{i}"))
    log.gap(1, 2)  # an aborted transaction's records, say
    log.append(1, batch("b"))
    log.append(0, batch("other partition"))
    opened = Opened(log)
    reader = EventsReader(opened)
    read = await reader.after(1, 0)
    assert [(offset, b.conversation_id) for offset, b in read] == [(1, "a1"), (2, "a2"), (5, "b")]
    assert [o for o, _ in await reader.after(1, -1)] == [0, 1, 2, 5]  # from the beginning
    assert await reader.after(1, 5) == []  # nothing past the last record
    assert await reader.after(0, 0) == []
    for follower in opened.followers:  # each read stopped its follower
        with pytest.raises(RuntimeError):
            follower.assigned()


class Appending(MemoryLogFollower):
    """A log that grows while it is read: the processor's own new events."""

    def __init__(self, log: MemoryLog, partition: int) -> None:
        super().__init__(log, partitions=[partition])
        self.memory = log

    async def poll(self, max_records: int = 5_000, wait: float = 0.2) -> list[LogRecord]:
        self.memory.append(0, batch("later"))
        return await super().poll(1, wait)


async def test_records_appended_during_the_read_are_not_read() -> None:
    log = MemoryLog(1)
    for i in range(3):
        log.append(0, batch(f"c{i}"))
    reader = EventsReader(lambda p: Appending(log, p))
    read = await reader.after(0, -1)
    assert [(o, b.conversation_id) for o, b in read] == [(0, "c0"), (1, "c1"), (2, "c2")]


async def test_a_record_that_is_not_an_event_batch_names_its_offset() -> None:
    log = MemoryLog(3)
    log.append(2, batch("d"))
    log.append(2, b"not a batch")
    with pytest.raises(UnreadableLog) as raised:
        await EventsReader(Opened(log)).after(2, -1)
    assert (raised.value.partition, raised.value.offset, raised.value.newer) == (2, 1, False)
    assert "events partition 2 offset 1" in str(raised.value)

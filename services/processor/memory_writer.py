"""An in-memory :class:`~services.processor.writer.PartitionWriter` over
:class:`~services.log_follower_fake.MemoryLog`s, fenced like Kafka's: the
newest writer started for a partition is the only one whose commits land.
For the engine's unit tests; the contract it must keep is the Kafka one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from services.log_follower_fake import MemoryLog
from services.processor.batch import Out, marker_key
from services.processor.writer import Fenced, WriteFailed


@dataclass
class MemoryTopics:
    """The logs a processor writes, and the epochs that fence its writers."""

    commands: MemoryLog
    events: MemoryLog
    changelog: MemoryLog
    dead: MemoryLog = field(default_factory=lambda: MemoryLog(1, "commands-dead"))
    group: str = "processor"
    epochs: dict[int, int] = field(default_factory=dict)
    fail_commits: int = 0  # the next commits that fail (a broker away)


class MemoryPartitionWriter:
    def __init__(self, topics: MemoryTopics, partition: int) -> None:
        self._topics = topics
        self._partition = partition
        self._epoch: int | None = None

    @property
    def partition(self) -> int:
        return self._partition

    async def start(self) -> None:
        self._epoch = self._topics.epochs.get(self._partition, 0) + 1
        self._topics.epochs[self._partition] = self._epoch

    async def commit(self, records: Sequence[Out], marker: int | None = None) -> list[int]:
        if self._epoch != self._topics.epochs.get(self._partition):
            raise Fenced(f"partition {self._partition} has a newer writer")
        if self._topics.fail_commits > 0:
            self._topics.fail_commits -= 1
            raise WriteFailed("the broker is away")
        offsets = []
        for record in records:
            if record.kind == "events":
                offsets.append(
                    self._topics.events.append(
                        self._partition, record.value, key=record.key, headers=tuple(record.headers)
                    )
                )
            elif record.kind == "state":
                self._topics.changelog.append(self._partition, record.value, key=record.key)
            elif record.kind == "command":
                self._topics.commands.append(self._partition, record.value, key=record.key)
            else:
                self._topics.dead.append(
                    0, record.value, key=record.key, headers=tuple(record.headers)
                )
        if marker is not None:
            value = str(marker).encode()
            self._topics.changelog.append(self._partition, value, key=marker_key(self._partition))
        return offsets

    async def stop(self) -> None:
        self._epoch = None

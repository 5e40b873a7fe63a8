"""The registry writer on a :class:`~services.log_follower_fake.MemoryLog`: the fake for tests."""

from __future__ import annotations

from collections.abc import Sequence

from schemas.flow_registry import RegistryRecord, encode_record, record_at, record_key
from services.log_follower_fake import MemoryLog


class MemoryRegistryWriter:
    """Appends each record to partition 0 of ``log``, keyed as the compacted topic is."""

    def __init__(self, log: MemoryLog) -> None:
        self.log = log

    async def append_registry(self, records: Sequence[RegistryRecord]) -> int:
        offset = -1
        for record in records:
            offset = self.log.append(
                0, encode_record(record), key=record_key(record), timestamp=record_at(record)
            )
        return offset

"""The processor's catch-up reader: an ``events`` partition past an offset.

After a crash or a rebalance the processor folds the events records past its
table's marker into the table before it handles the partition's next command
(:meth:`~services.processor.handler.CommandHandler.catch_up`). This reads them
through a :class:`~services.log_follower.LogFollower` of that partition alone
(on Kafka manually assigned: no group joined, nothing committed), from the
offset after the marker up to the partition's end as the read begins
(:func:`~services.log_follower.read_bounded`): records appended meanwhile are
the processor's own, produced after the catch-up.

A record that is not an event batch raises
:class:`~services.log_follower.UnreadableLog` naming its partition and offset:
the processor must not decide on a state it could not fold.
"""

from __future__ import annotations

from collections.abc import Callable

from schemas.batches import EventBatch, decode_batch
from services.distributed.kafka_follower import KafkaLogFollower
from services.distributed.settings import KafkaSettings
from services.log_follower import LogFollower, decode_record, read_bounded

OpenFollower = Callable[[int], LogFollower]  # a follower of one partition, not started


class EventsReader:
    """``after(partition, offset)``: the records of ``partition`` past ``offset``,
    decoded, with their offsets (the handler's ``read_events_after``)."""

    def __init__(self, open_follower: OpenFollower) -> None:
        self._open = open_follower

    @classmethod
    def kafka(cls, settings: KafkaSettings) -> EventsReader:
        """On the ``events`` topic, each read with a follower of its own."""
        return cls(
            lambda partition: KafkaLogFollower(
                settings, settings.events_topic, partitions=[partition]
            )
        )

    async def after(self, partition: int, offset: int) -> list[tuple[int, EventBatch]]:
        follower = self._open(partition)
        await follower.start()
        try:
            end = (await follower.end_offsets()).get(partition, 0)
            if offset + 1 >= end:
                return []
            out: list[tuple[int, EventBatch]] = []
            async for chunk in read_bounded(follower, {partition: offset + 1}, {partition: end}):
                out.extend(
                    (r.offset, decode_record(follower.name, r, decode_batch)) for r in chunk.records
                )
            return out
        finally:
            await follower.stop()

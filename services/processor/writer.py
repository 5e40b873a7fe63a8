"""The processor's output port: one fenced, transactional writer per partition.

A :class:`PartitionWriter` is the only way a processor writes what a batch of
commands produced. ``start`` makes it *the* writer of its partition and fences
every earlier one (a processor that froze past its session and came back, a
zombie, can then write nothing more: Kafka refuses its transaction). ``commit``
writes a batch's records atomically: either all of them become visible to
``read_committed`` readers, or none does.

The commands position is *not* part of the transaction: the engine commits it
to the consumer group after the batch (at least once). A new owner may then
decide a few commands again, which changes nothing: the states it recovers
already hold their effects, so the decider sees them as repeats of a known
seq. Keeping the position out of the transaction saves two round trips to the
broker per batch, which every visitor waiting for a reply would pay.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from services.processor.batch import Out


class Fenced(Exception):
    """A newer writer owns the partition: this one must stop writing for good."""


class WriteFailed(Exception):
    """The batch was not written (nothing of it is visible); it may be retried."""


class PartitionWriter(Protocol):
    @property
    def partition(self) -> int: ...

    async def start(self) -> None:
        """Become the partition's writer, fencing earlier ones (and aborting
        whatever transaction they left open)."""
        ...

    async def commit(self, records: Sequence[Out], marker: int | None = None) -> list[int]:
        """Write ``records`` in one transaction, with ``marker`` (the offset of the
        last events record an earlier batch wrote, if not yet recorded) as the
        partition's events marker; returns the offsets of the ``events`` records.
        Raises :class:`Fenced` or :class:`WriteFailed`."""
        ...

    async def stop(self) -> None:
        """Abort an open transaction, if any, and close."""
        ...

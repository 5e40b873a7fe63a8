"""The processor's :class:`~services.processor.writer.PartitionWriter` on Kafka:
one transactional producer per commands partition.

Its ``transactional.id`` is ``{processor group}-{partition}``, the same on every
processor, so the producer a new owner starts for a partition (Kafka's
InitProducerId) bumps the id's epoch: the previous owner's producer is fenced
(its next write or commit fails with ``ProducerFenced``) and the transaction it
left open is aborted. A batch is one transaction: its events (to the events
partition of the same number), the conversations' new states and the events
offset marker (to the changelog partition of the same number), any dead
letters. Readers use ``read_committed``, so they see a batch whole or not at
all. (The commands position is committed to the group by the engine, outside
the transaction: see :mod:`services.processor.writer`.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, ProducerFenced, TransactionCoordinatorFenced

from services.distributed.settings import KafkaSettings
from services.processor.batch import Out, marker_key
from services.processor.writer import Fenced, WriteFailed

log = logging.getLogger(__name__)
FENCED = (ProducerFenced, TransactionCoordinatorFenced)


class KafkaPartitionWriter:
    def __init__(
        self,
        settings: KafkaSettings,
        partition: int,
        *,
        transaction_timeout_ms: int = 15_000,
        request_timeout_ms: int = 10_000,
    ) -> None:
        self._settings = settings
        self._partition = partition
        self._options: dict[str, Any] = {
            "transactional_id": f"{settings.processor_id}-{partition}",
            "acks": "all",
            "enable_idempotence": True,
            "linger_ms": 0,
            "transaction_timeout_ms": transaction_timeout_ms,
            "request_timeout_ms": request_timeout_ms,
            "max_request_size": 8 * 1024 * 1024,
        }
        self._producer = self._new_producer()
        self._topics = {
            "events": settings.events_topic,
            "state": settings.changelog_topic,
            "dead": settings.dead_letters_topic,
        }
        self._started = False

    @property
    def partition(self) -> int:
        return self._partition

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(**self._settings.client_kwargs(), **self._options)

    async def start(self) -> None:
        """May be called again after a :class:`WriteFailed` (a stopped producer
        cannot start again, so each attempt gets a new one)."""
        if self._started:
            return
        try:
            await self._producer.start()  # InitProducerId: fences the previous owner
        except FENCED as exc:
            raise Fenced(str(exc)) from exc
        except (KafkaError, OSError) as exc:
            with contextlib.suppress(Exception):
                await self._producer.stop()
            self._producer = self._new_producer()
            raise WriteFailed(f"cannot start the writer of partition {self._partition}") from exc
        self._started = True

    async def commit(self, records: Sequence[Out], marker: int | None = None) -> list[int]:
        try:
            await self._producer.begin_transaction()
            pending = await self._write(records, marker)
            await self._producer.commit_transaction()  # waits for every record sent
            return [int(sent.result().offset) for sent in pending]
        except FENCED as exc:
            raise Fenced(str(exc)) from exc
        except BaseException as exc:
            await asyncio.shield(self._abort())
            if isinstance(exc, KafkaError):
                raise WriteFailed(str(exc)) from exc
            raise

    async def _write(self, records: Sequence[Out], marker: int | None) -> list[asyncio.Future[Any]]:
        """Hand every record to the producer; the futures of the events records."""
        pending = []
        for record in records:
            partition = 0 if record.kind == "dead" else self._partition
            sent = await self._producer.send(
                self._topics[record.kind],
                value=record.value,
                key=record.key,
                partition=partition,
                headers=list(record.headers),
            )
            if record.kind == "events":
                pending.append(sent)
        if marker is not None:  # catch-up starts after it, should a state ever lag the log
            await self._producer.send(
                self._topics["state"],
                value=str(marker).encode(),
                key=marker_key(self._partition),
                partition=self._partition,
            )
        return pending

    async def _abort(self) -> None:
        if not self._producer._txn_manager or not self._producer._txn_manager.is_in_transaction():
            return
        try:
            await self._producer.abort_transaction()
        except Exception as exc:  # fenced or disconnected: the broker aborts it anyway
            log.info("abort failed: %s", type(exc).__name__, extra={"partition": self._partition})

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        try:
            await asyncio.wait_for(self._producer.stop(), 5.0)
        except Exception as exc:  # leaving anyway: an open transaction times out
            log.info("writer stop: %s", type(exc).__name__, extra={"partition": self._partition})

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

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, ProducerFenced, TransactionCoordinatorFenced
from aiokafka.producer import sender as aiokafka_sender
from aiokafka.producer.transaction_manager import TransactionState

from services.distributed.settings import KafkaSettings
from services.processor.batch import Out, marker_key
from services.processor.writer import Fenced, WriteFailed

log = logging.getLogger(__name__)
FENCED = (ProducerFenced, TransactionCoordinatorFenced)
CONCURRENT_TRANSACTIONS_BACKOFF_S = 0.002
ADD_AHEAD_SECONDS = 0.002  # after a commit, before the next transaction adds its partition


def shorten_concurrent_transactions_backoff(
    seconds: float = CONCURRENT_TRANSACTIONS_BACKOFF_S,
) -> None:
    """A transaction's commit returns once the coordinator decided it; its markers
    are written just after. A next transaction that adds its partition in that
    window (a partition with steady traffic always does) is refused with
    CONCURRENT_TRANSACTIONS, and aiokafka sleeps a fixed 20 ms before it asks
    again (``BACKOFF_OVERRIDE``, the Java client's figure): measured, 4 to 25% of
    the lone commands waited those 20 ms (bench/kafka/txn_probe.py). The markers
    take about a millisecond on a healthy broker, so ask again after 2 ms. A
    module constant of aiokafka: tests/unit/test_kafka_writer_backoff.py fails
    should an upgrade drop it."""
    aiokafka_sender.BACKOFF_OVERRIDE = seconds


class KafkaPartitionWriter:
    def __init__(
        self,
        settings: KafkaSettings,
        partition: int,
        *,
        transaction_timeout_ms: int = 15_000,
        request_timeout_ms: int = 10_000,
    ) -> None:
        shorten_concurrent_transactions_backoff()
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
        self._lock = asyncio.Lock()  # a commit and the idle close never interleave
        self._idle: asyncio.Task[None] | None = None  # closes a transaction opened ahead
        self._idle_seconds = min(5.0, transaction_timeout_ms / 3000)

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
        async with self._lock:
            await self._open_ahead()

    async def commit(self, records: Sequence[Out], marker: int | None = None) -> list[int]:
        async with self._lock:
            self._cancel_idle()
            offsets = await self._commit(records, marker)
            await self._open_ahead()
            return offsets

    async def _commit(self, records: Sequence[Out], marker: int | None) -> list[int]:
        try:
            await self._leave_failed_transaction()
            if not self._in_transaction():
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

    def _state(self) -> TransactionState | None:
        txn_manager = self._producer._txn_manager
        return None if txn_manager is None else txn_manager.state

    def _in_transaction(self) -> bool:
        return self._state() is TransactionState.IN_TRANSACTION

    async def _leave_failed_transaction(self) -> None:
        """A transaction that failed on its own (an add or a send refused while no
        batch waited: the one opened ahead, say) must be aborted before the next
        begins (aiokafka asserts it); a fatal error (fenced, or a sequence the
        broker refused) ends this writer: it must not start a new producer, which
        would fence the partition's rightful owner."""
        state = self._state()
        if state is TransactionState.ABORTABLE_ERROR:
            await self._producer.abort_transaction()
        elif state is TransactionState.FATAL_ERROR:
            raise Fenced(f"the writer of partition {self._partition} hit a fatal error")

    async def _open_ahead(self) -> None:
        """Begin the next transaction now and, ``ADD_AHEAD_SECONDS`` later, add the
        events partition to it (AddPartitionsToTxn) while no command waits: the
        next batch's records then go straight out, one round trip to the broker
        fewer for a lone command. The delay lets the last commit's markers be
        written first: an add before they are is refused (CONCURRENT_TRANSACTIONS)
        and asked again, a request for nothing (a batch that comes sooner adds the
        partition itself). The coordinator would abort a transaction left open
        past ``transaction_timeout_ms`` (and fence this producer): an idle
        partition's is closed after ``_idle_seconds``."""
        try:
            await self._producer.begin_transaction()
        except Exception as exc:  # the next commit begins its own (or fails and says why)
            log.info("no transaction opened ahead: %r", exc, extra={"partition": self._partition})
            return
        self._idle = asyncio.create_task(self._ahead(), name="transaction-ahead")

    async def _ahead(self) -> None:
        """Cancelled (under the lock) by the next commit, whatever it waits for."""
        await asyncio.sleep(ADD_AHEAD_SECONDS)
        if self._in_transaction():  # a synchronous check and add: no commit between
            self._producer._txn_manager.maybe_add_partition_to_txn(
                TopicPartition(self._topics["events"], self._partition)
            )
        await self._close_when_idle()

    def _cancel_idle(self) -> None:
        if self._idle is not None and self._idle is not asyncio.current_task():
            self._idle.cancel()
        self._idle = None

    async def _close_when_idle(self) -> None:
        await asyncio.sleep(self._idle_seconds)
        async with self._lock:
            self._idle = None
            if not self._in_transaction():
                return
            try:
                await self._producer.commit_transaction()  # empty: only its markers
            except Exception as exc:  # fenced or away: the next commit says so
                log.info("idle transaction: %r", exc, extra={"partition": self._partition})

    async def _abort(self) -> None:
        if self._state() not in (TransactionState.IN_TRANSACTION, TransactionState.ABORTABLE_ERROR):
            return
        try:
            await self._producer.abort_transaction()
        except Exception as exc:  # fenced or disconnected: the broker aborts it anyway
            log.info("abort failed: %s", type(exc).__name__, extra={"partition": self._partition})

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        self._cancel_idle()
        try:  # the transaction opened ahead: at once, not at the next owner's start
            await asyncio.wait_for(self._abort(), 2.0)
        except Exception as exc:
            log.info("abort at stop: %s", type(exc).__name__, extra={"partition": self._partition})
        try:
            await asyncio.wait_for(self._producer.stop(), 5.0)
        except Exception as exc:  # leaving anyway: an open transaction times out
            log.info("writer stop: %s", type(exc).__name__, extra={"partition": self._partition})

"""The processor's :class:`~services.processor.writer.PartitionWriter` on Kafka:
two transactional producers per commands partition, taking turns.

Their ``transactional.id`` are ``{processor group}-{partition}`` and
``{processor group}-{partition}-b``, the same on every processor, so the
producers a new owner starts for a partition (Kafka's InitProducerId, for both
ids before anything is written) bump both ids' epochs: the previous owner's
producers are fenced (their next write or commit fails with ``ProducerFenced``)
and the transactions they left open are aborted. A batch is one transaction:
its events (to the events partition of the same number), any dead letters and,
at a checkpoint, the conversations' states and the events offset marker (to the
changelog partition of the same number). Readers use ``read_committed``, so
they see a batch whole or not at all. (The commands position is committed to
the group by the engine, outside the transaction: see
:mod:`services.processor.writer`.)

**Why two.** A transaction's commit returns once the coordinator decided it;
its markers are written just after, and until they are the same producer's
next transaction cannot add its partition (CONCURRENT_TRANSACTIONS: aiokafka
asks again after a pause). Under load the next batch is always ready at once,
so with one producer every batch waited for the previous one's markers. With
two taking turns, the producer of the next batch committed two batches ago:
its next transaction is begun and its events partition added
(AddPartitionsToTxn) while the other commits, and a batch's records go
straight out: a batch costs the broker round trips of its records and of its
commit only. Batches stay strictly sequential (the engine waits for one commit
before it writes the next), so the log's order is the batches' order.
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

from services.distributed.kafka_producers import retrieve_when_done, stop_producer
from services.distributed.settings import KafkaSettings
from services.processor.batch import Out, marker_key
from services.processor.writer import Fenced, WriteFailed

log = logging.getLogger(__name__)
FENCED = (ProducerFenced, TransactionCoordinatorFenced)
CONCURRENT_TRANSACTIONS_BACKOFF_S = 0.002


def shorten_concurrent_transactions_backoff(
    seconds: float = CONCURRENT_TRANSACTIONS_BACKOFF_S,
) -> None:
    """A transaction's commit returns once the coordinator decided it; its markers
    are written just after. A next transaction that adds its partition in that
    window (a partition with steady traffic always does) is refused with
    CONCURRENT_TRANSACTIONS, and aiokafka sleeps a fixed 20 ms before it asks
    again (``BACKOFF_OVERRIDE``, the Java client's figure): measured with one
    producer per partition, 4 to 25% of the lone commands waited those 20 ms
    (bench/kafka/txn_probe.py), and under load nearly every batch. Two producers
    taking turns make it rare (the other's commit was quicker than the markers);
    the markers take about a millisecond on a healthy broker, so ask again after
    2 ms. A
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
            "acks": "all",
            "enable_idempotence": True,
            "linger_ms": 0,
            "transaction_timeout_ms": transaction_timeout_ms,
            "request_timeout_ms": request_timeout_ms,
            "max_request_size": 8 * 1024 * 1024,
        }
        base = f"{settings.processor_id}-{partition}"
        self._ids = (base, f"{base}-b")
        self._producers = [self._new_producer(i) for i in range(2)]
        self._running = [False, False]
        self._spent = [False, False]  # stopped: a stopped producer cannot start again
        self._turn = 0  # the producer of the next batch
        self._topics = {
            "events": settings.events_topic,
            "state": settings.changelog_topic,
            "dead": settings.dead_letters_topic,
            "command": settings.commands_topic,  # a due timer's FireTimer (processor.timers)
        }
        self._events = TopicPartition(settings.events_topic, partition)
        self._started = False
        self._lock = asyncio.Lock()  # a commit and the idle close never interleave
        self._idle: asyncio.Task[None] | None = None  # closes a transaction opened ahead
        self._idle_seconds = min(5.0, transaction_timeout_ms / 3000)

    @property
    def partition(self) -> int:
        return self._partition

    @property
    def opened_ahead(self) -> bool:
        """The next batch's transaction is begun (its partition added or being added)."""
        return self._in_transaction(self._producers[self._turn])

    def _new_producer(self, index: int) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            **self._settings.client_kwargs(), transactional_id=self._ids[index], **self._options
        )

    async def start(self) -> None:
        """Both producers, before anything is written (each start fences that id's
        previous owner). May be called again after a :class:`WriteFailed` (a
        stopped producer cannot start again, so each attempt gets a new one)."""
        if self._started:
            return
        for index in range(2):
            if self._running[index]:
                continue
            if self._spent[index]:  # started again after stop(): a new producer, same id
                self._producers[index] = self._new_producer(index)
                self._spent[index] = False
            producer = self._producers[index]
            try:
                await producer.start()  # InitProducerId: fences the previous owner
            except FENCED as exc:
                raise Fenced(str(exc)) from exc
            except (KafkaError, OSError) as exc:
                with contextlib.suppress(Exception):
                    await stop_producer(producer)
                self._producers[index] = self._new_producer(index)
                raise WriteFailed(
                    f"cannot start the writer of partition {self._partition}"
                ) from exc
            self._running[index] = True
        self._started = True
        async with self._lock:
            await self._open_ahead(self._producers[self._turn])

    async def commit(self, records: Sequence[Out], marker: int | None = None) -> list[int]:
        async with self._lock:
            self._cancel_idle()
            offsets = await self._commit(self._producers[self._turn], records, marker)
            self._turn ^= 1
            await self._open_ahead(self._producers[self._turn])
            return offsets

    async def _commit(
        self, producer: AIOKafkaProducer, records: Sequence[Out], marker: int | None
    ) -> list[int]:
        sent: list[asyncio.Future[Any]] = []
        try:
            await self._leave_failed_transaction(producer)
            if not self._in_transaction(producer):
                await producer.begin_transaction()
            pending = await self._write(producer, records, marker, sent)
            await producer.commit_transaction()  # waits for every record sent
            return [int(sent.result().offset) for sent in pending]
        except FENCED as exc:
            retrieve_when_done(sent)  # their failure is this one
            raise Fenced(str(exc)) from exc
        except BaseException as exc:
            retrieve_when_done(sent)
            await asyncio.shield(self._abort(producer))
            if isinstance(exc, KafkaError):
                raise WriteFailed(str(exc)) from exc
            raise

    async def _write(
        self,
        producer: AIOKafkaProducer,
        records: Sequence[Out],
        marker: int | None,
        sent: list[asyncio.Future[Any]],
    ) -> list[asyncio.Future[Any]]:
        """Hand every record to the producer (each future added to ``sent``); the
        futures of the events records."""
        pending = []
        for record in records:
            partition = 0 if record.kind == "dead" else self._partition
            future = await producer.send(
                self._topics[record.kind],
                value=record.value,
                key=record.key,
                partition=partition,
                headers=list(record.headers),
            )
            sent.append(future)
            if record.kind == "events":
                pending.append(future)
        if marker is not None:  # catch-up starts after it, should a state ever lag the log
            future = await producer.send(
                self._topics["state"],
                value=str(marker).encode(),
                key=marker_key(self._partition),
                partition=self._partition,
            )
            sent.append(future)
        return pending

    @staticmethod
    def _state(producer: AIOKafkaProducer) -> TransactionState | None:
        txn_manager = producer._txn_manager
        return None if txn_manager is None else txn_manager.state

    def _in_transaction(self, producer: AIOKafkaProducer) -> bool:
        return self._state(producer) is TransactionState.IN_TRANSACTION

    async def _leave_failed_transaction(self, producer: AIOKafkaProducer) -> None:
        """A transaction that failed on its own (an add refused while no batch
        waited: the one opened ahead, say) must be aborted before the next begins
        (aiokafka asserts it); a fatal error (fenced, or a sequence the broker
        refused) ends this writer: it must not start a new producer, which would
        fence the partition's rightful owner."""
        state = self._state(producer)
        if state is TransactionState.ABORTABLE_ERROR:
            await producer.abort_transaction()
        elif state is TransactionState.FATAL_ERROR:
            raise Fenced(f"the writer of partition {self._partition} hit a fatal error")

    async def _open_ahead(self, producer: AIOKafkaProducer) -> None:
        """Begin the next batch's transaction now and add the events partition to
        it while no command waits: the next batch's records then go straight out.
        This producer's last transaction was committed before the other's, so
        its markers are (nearly always) written and the add is not refused. The
        coordinator would abort a transaction left open past
        ``transaction_timeout_ms`` (and fence this producer): an idle partition's
        is closed after ``_idle_seconds``."""
        try:
            await self._leave_failed_transaction(producer)
            await producer.begin_transaction()
            producer._txn_manager.maybe_add_partition_to_txn(self._events)
        except Exception as exc:  # the next commit begins its own (or fails and says why)
            log.info("no transaction opened ahead: %r", exc, extra={"partition": self._partition})
            return
        self._idle = asyncio.create_task(self._close_when_idle(producer), name="idle-transaction")

    def _cancel_idle(self) -> None:
        if self._idle is not None and self._idle is not asyncio.current_task():
            self._idle.cancel()
        self._idle = None

    async def _close_when_idle(self, producer: AIOKafkaProducer) -> None:
        """Cancelled (under the lock) by the next commit, whatever it waits for."""
        await asyncio.sleep(self._idle_seconds)
        async with self._lock:
            self._idle = None
            if not self._in_transaction(producer):
                return
            try:
                await producer.commit_transaction()  # empty: only its markers
            except Exception as exc:  # fenced or away: the next commit says so
                log.info("idle transaction: %r", exc, extra={"partition": self._partition})

    async def _abort(self, producer: AIOKafkaProducer) -> None:
        if self._state(producer) not in (
            TransactionState.IN_TRANSACTION,
            TransactionState.ABORTABLE_ERROR,
        ):
            return
        try:
            await producer.abort_transaction()
        except Exception as exc:  # fenced or disconnected: the broker aborts it anyway
            log.info("abort failed: %s", type(exc).__name__, extra={"partition": self._partition})

    async def stop(self) -> None:
        if not self._started and not any(self._running):
            return
        self._started = False
        self._cancel_idle()
        for index, producer in enumerate(self._producers):
            if not self._running[index]:
                continue
            self._running[index] = False
            self._spent[index] = True
            try:  # the transaction opened ahead: at once, not at the next owner's start
                await asyncio.wait_for(self._abort(producer), 2.0)
                await asyncio.wait_for(stop_producer(producer), 5.0)
            except Exception as exc:  # leaving anyway: an open transaction times out
                log.info(
                    "writer stop: %s", type(exc).__name__, extra={"partition": self._partition}
                )

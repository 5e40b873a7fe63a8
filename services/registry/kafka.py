"""The flow registry on Kafka: the compacted ``{prefix}flows`` topic.

Every service follows it with a manually assigned, ``read_committed``
:class:`~services.distributed.kafka_follower.KafkaLogFollower`
(:func:`registry_follower`: no group, every process needs every record, read
from the beginning). Writers append through :class:`KafkaRegistryWriter`: all
records of one append (a version and its activation) in one Kafka transaction,
``acks=all``, keyed by :func:`~schemas.flow_registry.record_key`, so a reader
sees both or neither, and a writer killed mid-publish leaves nothing behind
(the coordinator aborts its transaction).

Seeding from flow files (:func:`seed_registry`) is safe when several processes
start at once: every seeder uses one shared transactional id
(:func:`seed_transactional_id`). Starting its producer fences any other seeder
and settles that seeder's open transaction (committed or aborted) before it
returns; the seeder then reads the registry to its end, plans, writes and
commits. A seeder fenced in between (another started after it) retries from the
top with what the other wrote, so two processes seeding the same new file make
one version, and a file with new content is never given a version number that
another seeder just used for other content (compaction keeps the last record of
a key: two records for one version would let compaction swap its content).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, ProducerFenced, TransactionCoordinatorFenced

from schemas.flow_registry import RegistryRecord, encode_record, record_key
from services.distributed.kafka_follower import KafkaLogFollower
from services.distributed.settings import KafkaSettings
from services.distributed.topics import FLOW_RECORD_MAX_BYTES, flows_topic
from services.registry.feed import RegistryFeed
from services.registry.seed import plan_seed

log = logging.getLogger("leadflow.registry")
FENCED = (ProducerFenced, TransactionCoordinatorFenced)


class RegistryFenced(RuntimeError):
    """Another writer started with this writer's transactional id."""


def registry_follower(settings: KafkaSettings) -> KafkaLogFollower:
    return KafkaLogFollower(
        settings,
        flows_topic(settings),
        partitions=[0],
        fetch_max_wait_ms=100,
        max_partition_fetch_bytes=2 * FLOW_RECORD_MAX_BYTES,
        name="flows",
    )


def seed_transactional_id(settings: KafkaSettings) -> str:
    """Shared by every seeder of the deployment (that is what serialises them)."""
    return f"{settings.prefix}flow-registry-seed"


def writer_transactional_id(settings: KafkaSettings, service: str) -> str:
    """One per process (a writer never fences another process's publishes)."""
    return f"{settings.prefix}flow-registry-{service}-{uuid.uuid4().hex[:12]}"


class KafkaRegistryWriter:
    """A :class:`~services.registry.feed.RegistryWriter` on the ``flows`` topic.

    The producer starts at the first append (a process that never writes
    registers no transactional id) or at :meth:`start`; appends are serialised
    (a transactional producer runs one transaction at a time)."""

    def __init__(self, settings: KafkaSettings, transactional_id: str) -> None:
        self._settings = settings
        self._topic = flows_topic(settings)
        self._transactional_id = transactional_id
        self._producer: AIOKafkaProducer | None = None
        self._one_at_a_time = asyncio.Lock()

    async def start(self) -> None:
        """Start the producer: fences any other producer of this transactional id
        and settles its open transaction first. RegistryFenced if fenced meanwhile."""
        if self._producer is not None:
            return
        producer = AIOKafkaProducer(
            **self._settings.client_kwargs(),
            transactional_id=self._transactional_id,
            transaction_timeout_ms=30_000,
            acks="all",
            enable_idempotence=True,
            max_request_size=FLOW_RECORD_MAX_BYTES,
        )
        try:
            await producer.start()
        except FENCED as exc:
            with contextlib.suppress(Exception):
                await producer.stop()
            raise RegistryFenced(str(exc)) from exc
        except BaseException:
            with contextlib.suppress(Exception):
                await producer.stop()
            raise
        self._producer = producer

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(KafkaError, OSError):
                await producer.stop()

    async def append_registry(self, records: Sequence[RegistryRecord]) -> int:
        async with self._one_at_a_time:
            await self.start()
            producer = self._producer
            assert producer is not None
            sent: list[asyncio.Future[Any]] = []
            try:
                await producer.begin_transaction()
                for record in records:
                    sent.append(
                        await producer.send(
                            self._topic,
                            key=record_key(record),
                            value=encode_record(record),
                            partition=0,
                        )
                    )
                await producer.commit_transaction()  # waits for every record sent
            except BaseException as exc:
                for future in sent:  # their failure is this one: not "never retrieved"
                    future.add_done_callback(_retrieve)
                if not isinstance(exc, FENCED):
                    # aborted (by us, or by the coordinator at its timeout); a new
                    # producer begins the next append afresh
                    with contextlib.suppress(Exception):
                        await asyncio.shield(producer.abort_transaction())
                await self.stop()
                if isinstance(exc, FENCED):
                    raise RegistryFenced(str(exc)) from exc
                raise
            return int(sent[-1].result().offset)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


async def seed_registry(
    settings: KafkaSettings,
    feed: RegistryFeed,
    documents: Sequence[Mapping[str, Any]],
    *,
    clock: Callable[[], float],
    attempts: int = 20,
) -> list[RegistryRecord]:
    """Load ``feed`` (not yet running) and publish the documents whose content is
    new, under the shared seed transactional id (see the module's docstring);
    ``feed`` has folded them when this returns. The records written (none when
    every file's content was already published)."""
    for attempt in range(attempts):
        writer = KafkaRegistryWriter(settings, seed_transactional_id(settings))
        try:
            await writer.start()  # fences the other seeders, settles their transaction
            await feed.load()
            records = plan_seed(feed.registry, documents, clock())
            if records:
                await writer.append_registry(records)
                await feed.load()  # folds what this seeder wrote
            return records
        except RegistryFenced:
            log.info("flow registry seeding: another process seeds too; retrying")
            await asyncio.sleep(random.uniform(0.05, 0.3) * (1 + attempt))
        finally:
            await writer.stop()
    raise RegistryFenced(f"flow registry seeding fenced {attempts} times in a row")

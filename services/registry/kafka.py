"""The flow registry on Kafka: the compacted ``{prefix}flows`` topic.

Every service follows it with a manually assigned, ``read_committed``
:class:`~services.distributed.kafka_follower.KafkaLogFollower`
(:func:`registry_follower`: no group, every process needs every record, read
from the beginning). Writers append through :class:`KafkaRegistryWriter`: all
records of one append (a version and its activation) in one Kafka transaction,
``acks=all``, keyed by :func:`~schemas.flow_registry.record_key`, so a reader
sees both or neither, and a writer killed mid-publish leaves nothing behind
(the coordinator aborts its transaction).

Every writer of the deployment (seeding at start, the admin API's publishes and
activations, in any process) uses one transactional id,
:func:`registry_transactional_id`, and appends compare-and-append: each append
starts a fresh producer, which fences every other writer and settles its open
transaction (committed or aborted) before it returns; the writer then checks
that the log holds no record its feed has not read (``expected_end``: the feed's
position), and only then writes and commits. A writer fenced in between, or
whose feed was behind, writes nothing (:class:`RegistryFenced`,
:class:`RegistryStale`) and its caller plans again on the caught-up registry
(:func:`seed_registry` does). So two processes seeding the same new file make
one version, and two publishes racing from two projectors never give one
version number two contents: compaction keeps the last record of a key, so two
records of one version would let it swap the version's content.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, ProducerFenced, TransactionCoordinatorFenced

from schemas.flow_registry import RegistryRecord, encode_record, record_key
from services.distributed.kafka_follower import KafkaLogFollower
from services.distributed.kafka_producers import retrieve_when_done, stop_producer
from services.distributed.settings import KafkaSettings
from services.distributed.topics import FLOW_RECORD_MAX_BYTES, flows_topic
from services.log_follower import read_bounded
from services.registry.feed import RegistryFeed, StaleRegistry
from services.registry.seed import plan_seed

log = logging.getLogger("leadflow.registry")
FENCED = (ProducerFenced, TransactionCoordinatorFenced)


class RegistryFenced(StaleRegistry):
    """Another writer started with this writer's transactional id meanwhile."""


class RegistryStale(StaleRegistry):
    """The registry has records the caller's feed has not read: plan again."""


def registry_follower(settings: KafkaSettings) -> KafkaLogFollower:
    return KafkaLogFollower(
        settings,
        flows_topic(settings),
        partitions=[0],
        fetch_max_wait_ms=100,
        max_partition_fetch_bytes=2 * FLOW_RECORD_MAX_BYTES,
        name="flows",
    )


def registry_transactional_id(settings: KafkaSettings) -> str:
    """Shared by every writer of the deployment (that is what serialises them)."""
    return f"{settings.prefix}flow-registry-writer"


async def unread_records(settings: KafkaSettings, position: int) -> int:
    """How many committed records the ``flows`` topic holds at or after ``position``."""
    follower = registry_follower(settings)
    await follower.start()
    try:
        end = await follower.end_offsets()
        if end.get(0, 0) <= position:
            return 0
        count = 0
        async for chunk in read_bounded(follower, {0: position}, end):
            count += len(chunk.records)
        return count
    finally:
        await follower.stop()


class KafkaRegistryWriter:
    """A :class:`~services.registry.feed.RegistryWriter` on the ``flows`` topic.

    Each append starts a fresh producer (fencing every other writer of the
    shared id) and, with ``expected_end`` (the caller's feed position: the next
    offset it would read), refuses with :class:`RegistryStale` if the log has a
    committed record from there on. Appends in one process are serialised."""

    def __init__(
        self,
        settings: KafkaSettings,
        transactional_id: str | None = None,
        expected_end: Callable[[], int | None] | None = None,
    ) -> None:
        self._settings = settings
        self._topic = flows_topic(settings)
        self._transactional_id = transactional_id or registry_transactional_id(settings)
        self.expected_end = expected_end
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
                await stop_producer(producer)
            raise RegistryFenced(str(exc)) from exc
        except BaseException:
            with contextlib.suppress(Exception):
                await stop_producer(producer)
            raise
        self._producer = producer

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(KafkaError, OSError):
                await stop_producer(producer)

    async def append_registry(self, records: Sequence[RegistryRecord]) -> int:
        async with self._one_at_a_time:
            await self.stop()
            await self.start()  # fences the other writers, settles their transaction
            if self.expected_end is not None:
                unread = await unread_records(self._settings, self.expected_end() or 0)
                if unread:
                    await self.stop()
                    raise RegistryStale(
                        f"the flow registry has {unread} record(s) this process has not "
                        "read yet; plan again"
                    )
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
                retrieve_when_done(sent)  # their failure is this one
                if not isinstance(exc, FENCED):
                    # aborted (by us, or by the coordinator at its timeout); a new
                    # producer begins the next append afresh
                    with contextlib.suppress(Exception):
                        await asyncio.shield(producer.abort_transaction())
                await self.stop()
                if isinstance(exc, FENCED):
                    raise RegistryFenced(str(exc)) from exc
                raise
            await self.stop()  # idle, it would only be fenced by the next writer
            return int(sent[-1].result().offset)


async def seed_registry(
    feed: RegistryFeed,
    writer: KafkaRegistryWriter,
    documents: Sequence[Mapping[str, Any]],
    *,
    clock: Callable[[], float],
    attempts: int = 20,
) -> list[RegistryRecord]:
    """Load ``feed`` (not yet running) and publish the documents whose content is
    new through ``writer`` (compare-and-append against the feed's position: see
    the module's docstring), planning again whenever another writer was first;
    ``feed`` has folded them when this returns. The records written (none when
    every file's content was already published)."""
    for attempt in range(attempts):
        try:
            await feed.load()
            records = plan_seed(feed.registry, documents, clock())
            if records:
                offset = await writer.append_registry(records)
                await feed.load_through(offset)  # folds what this seeder wrote
            return records
        except (RegistryFenced, RegistryStale) as exc:
            log.info("flow registry seeding: another process wrote first (%s); again", exc)
            await asyncio.sleep(random.uniform(0.05, 0.3) * (1 + attempt))
    raise RegistryFenced(f"flow registry seeding lost {attempts} times in a row")

"""Policy snapshots on Kafka: the compacted ``{prefix}policy-snapshots`` topic.

The policy service publishes each flow's snapshots keyed by flow id
(:class:`SnapshotPublisher`), each first to the archive topic
``{prefix}policy-snapshot-archive`` keyed by ``{flow id}/{version}`` (replays
look decisions' snapshots up there); every processor runs a :class:`SnapshotFollower`,
which reads the topic from the beginning with a manually assigned consumer (no
group: every processor needs every snapshot) and then follows it, installing
each snapshot into its :class:`~policy.thompson.ThompsonPolicy`. A decision reads
one snapshot reference, so an install is a hot swap: no restart, no pause.

The policy service publishes through a transactional producer
(``transactional_id``: the same on every instance, so a new leader fences the
old one, :mod:`policy.leader_kafka`): a snapshot's archive record and its live
record are one transaction, and a fenced publisher raises :class:`Fenced`.
Its archive record is the compact form when the snapshot has one
(:func:`policy.archive.archive_body`: the online learner's Gaussian posterior,
from which the snapshot's exact bytes are regenerated).

A record that cannot be used (not a snapshot, for a flow version this process
does not serve, decision points that do not match the flow) is logged and
skipped; the process keeps the snapshot it had.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, ProducerFenced, TransactionCoordinatorFenced

from policy.archive import archive_body
from policy.snapshot import PolicySnapshot, SnapshotError, decode_snapshot, encode_snapshot
from services.distributed.kafka_producers import stop_producer
from services.distributed.settings import KafkaSettings
from services.distributed.topics import (
    SNAPSHOT_MAX_BYTES,
    archive_key,
    snapshot_archive_topic,
    snapshots_topic,
)

log = logging.getLogger("leadflow.policy.snapshots")
FETCH_BYTES = 2 * SNAPSHOT_MAX_BYTES
RETRY_SECONDS = 1.0


async def follow_forever(
    follow: Callable[[], Awaitable[None]], what: str, retry_seconds: float = RETRY_SECONDS
) -> None:
    """Run a topic-following loop until cancelled, restarting it after broker trouble."""
    while True:
        try:
            await follow()
        except asyncio.CancelledError:
            raise
        except (KafkaError, OSError) as exc:
            log.warning("%s: %s; retrying", what, exc)
            await asyncio.sleep(retry_seconds)


class Installer(Protocol):
    def install(self, snapshot: PolicySnapshot) -> bool: ...


Check = Callable[[PolicySnapshot], None]  # raises SnapshotError for a snapshot to refuse
OnInstalled = Callable[[PolicySnapshot], None]


class Fenced(RuntimeError):
    """Another instance's publisher started with the same transactional id: this
    one no longer leads and must not publish."""


FENCED = (ProducerFenced, TransactionCoordinatorFenced)


class SnapshotPublisher:
    """Publishes snapshots keyed by flow id; ``publish`` returns once Kafka has one.
    Each goes to the archive topic first (in the same transaction when
    ``transactional_id`` is set): a processor never decides with a snapshot that
    a replay cannot find.

    Publications are serialised (one at a time, in call order): a transactional
    producer runs one transaction at a time, and the policy service publishes
    from its schedule and from guardrail changes concurrently. Interleaved, the
    second ``begin_transaction`` failed while the first one committed, and both
    snapshots were lost (a guardrail change answered with no version)."""

    def __init__(self, settings: KafkaSettings, transactional_id: str | None = None) -> None:
        self._settings = settings
        self._topic = snapshots_topic(settings)
        self._archive = snapshot_archive_topic(settings)
        self._transactional_id = transactional_id
        self._producer: AIOKafkaProducer | None = None
        self._one_at_a_time = asyncio.Lock()
        self.last_archived = b""  # the last archive record published (compact or full)

    @property
    def started(self) -> bool:
        return self._producer is not None

    async def start(self) -> None:
        """With a transactional id: fences any other publisher of that id."""
        options: dict[str, object] = {}
        if self._transactional_id is not None:
            options = {"transactional_id": self._transactional_id, "transaction_timeout_ms": 30_000}
        producer = AIOKafkaProducer(
            **self._settings.client_kwargs(),
            acks="all",
            enable_idempotence=True,
            compression_type="gzip",
            max_request_size=SNAPSHOT_MAX_BYTES,
            **options,
        )
        try:
            await producer.start()
        except FENCED as exc:
            raise Fenced(str(exc)) from exc
        self._producer = producer

    async def stop(self) -> None:
        if self._producer is not None:
            await stop_producer(self._producer)
            self._producer = None

    async def publish(self, snapshot: PolicySnapshot) -> int:
        """The record's offset in the snapshots topic (after any publication in progress)."""
        async with self._one_at_a_time:
            return await self._publish(snapshot)

    async def _publish(self, snapshot: PolicySnapshot) -> int:
        if self._producer is None:
            raise RuntimeError("the snapshot publisher is not started")
        value = encode_snapshot(snapshot)
        archived = archive_body(snapshot, value)
        key = archive_key(snapshot.flow_id, snapshot.version)
        producer = self._producer
        if self._transactional_id is None:
            await producer.send_and_wait(self._archive, key=key, value=archived)
            meta = await producer.send_and_wait(
                self._topic, key=snapshot.flow_id.encode(), value=value
            )
        else:
            try:
                await producer.begin_transaction()
                await producer.send(self._archive, key=key, value=archived)
                sent = await producer.send(self._topic, key=snapshot.flow_id.encode(), value=value)
                await producer.commit_transaction()
                meta = sent.result()
            except FENCED as exc:
                raise Fenced(str(exc)) from exc
            except BaseException:
                # AssertionError: aiokafka refuses an abort while a commit is in flight
                # (a commit cancelled at shutdown); the original exception is the one to raise
                with contextlib.suppress(KafkaError, OSError, AssertionError):
                    await asyncio.shield(producer.abort_transaction())
                raise
        self.last_archived = archived
        log.info(
            "policy snapshot %s published",
            snapshot.version,
            extra={
                "flow_id": snapshot.flow_id,
                "flow_version": snapshot.flow_version,
                "policy_version": snapshot.version,
                "bytes": len(value),
                "archived_bytes": len(archived),
                "offset": meta.offset,
            },
        )
        return int(meta.offset)


class SnapshotFollower:
    """Reads every snapshot record from the beginning, then follows the topic.

    ``loaded`` is set once the records that were in the topic when the follower
    started have been read (and the usable ones installed): a processor waits for
    it (bounded) before its first decision. While loading, only the newest usable
    record of each flow is decoded."""

    def __init__(
        self,
        settings: KafkaSettings,
        policy: Installer,
        *,
        check: Check | None = None,
        on_installed: OnInstalled | None = None,
        poll_timeout_ms: int = 500,
    ) -> None:
        self._settings = settings
        self._policy = policy
        self._check = check
        self._on_installed = on_installed
        self._poll_timeout_ms = poll_timeout_ms
        self._tp = TopicPartition(snapshots_topic(settings), 0)
        self.loaded = asyncio.Event()
        self.installed = 0
        self.skipped = 0
        self.position = 0  # the next offset to read
        self._progress = asyncio.Event()  # set after every poll and at the load's end

    def offer(self, value: bytes | None, offset: int) -> bool:
        """Decode, check and install one record's snapshot; False when it is skipped."""
        if value is None:
            log.info("policy snapshot tombstone ignored", extra={"offset": offset})
            return False
        try:
            snapshot = decode_snapshot(value)
            if self._check is not None:
                self._check(snapshot)
            installed = self._policy.install(snapshot)
        except SnapshotError as exc:
            self.skipped += 1
            log.warning("policy snapshot at offset %d skipped: %s", offset, exc)
            return False
        if not installed:
            log.info(
                "policy snapshot %s not newer than the installed one: skipped",
                snapshot.version,
                extra={"offset": offset},
            )
            return False
        self.installed += 1
        log.info(
            "policy snapshot %s installed",
            snapshot.version,
            extra={
                "flow_id": snapshot.flow_id,
                "flow_version": snapshot.flow_version,
                "policy_version": snapshot.version,
                "created_at": snapshot.created_at,
                "offset": offset,
            },
        )
        if self._on_installed is not None:
            self._on_installed(snapshot)
        return True

    async def run(self) -> None:
        """Follow the topic until cancelled; broker trouble is logged and retried."""
        await follow_forever(self._follow, "policy snapshots")

    async def _follow(self) -> None:
        consumer = AIOKafkaConsumer(
            **self._settings.client_kwargs(),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_partition_fetch_bytes=FETCH_BYTES,
            fetch_max_bytes=FETCH_BYTES,
            fetch_max_wait_ms=self._poll_timeout_ms,
        )
        await consumer.start()
        try:
            consumer.assign([self._tp])
            consumer.seek(self._tp, self.position)
            if not self.loaded.is_set():
                await self._load(consumer)
            while True:
                batches = await consumer.getmany(self._tp, timeout_ms=self._poll_timeout_ms)
                for record in batches.get(self._tp, []):
                    self.offer(record.value, record.offset)
                    self.position = record.offset + 1
                # past transaction markers and aborted records too
                self.position = max(self.position, await consumer.position(self._tp))
                self._progress.set()
        finally:
            with contextlib.suppress(KafkaError, OSError):
                await consumer.stop()

    async def _load(self, consumer: AIOKafkaConsumer) -> None:
        end = (await consumer.end_offsets([self._tp]))[self._tp]
        newest: dict[bytes, list[tuple[int, bytes | None]]] = {}
        while self.position < end:
            batches = await consumer.getmany(self._tp, timeout_ms=self._poll_timeout_ms)
            records = batches.get(self._tp, [])
            for record in records:
                if record.offset >= end:  # arrived while loading: followed afterwards
                    break
                newest.setdefault(record.key or b"", []).append((record.offset, record.value))
                self.position = record.offset + 1
            if not records:  # the log may end on offsets that hold no record
                self.position = max(self.position, min(end, await consumer.position(self._tp)))
        for records in newest.values():
            if records[-1][1] is None:
                continue  # the flow's snapshot was deleted
            for offset, value in reversed(records):  # the newest usable one wins
                if self.offer(value, offset):
                    break
        consumer.seek(self._tp, self.position)
        self.loaded.set()
        self._progress.set()
        log.info(
            "policy snapshots loaded: %d installed, %d skipped",
            self.installed,
            self.skipped,
            extra={"records": end},
        )

    async def end_offset(self) -> int:
        """The topic's end now, as a ``read_committed`` reader sees it."""
        consumer = AIOKafkaConsumer(
            **self._settings.client_kwargs(), group_id=None, isolation_level="read_committed"
        )
        await consumer.start()
        try:
            return int((await consumer.end_offsets([self._tp]))[self._tp])
        finally:
            with contextlib.suppress(KafkaError, OSError):
                await consumer.stop()

    async def caught_up(self, seconds: float) -> None:
        """Wait until every record committed so far has been offered (a new
        leader's first step after fencing the old one: it then knows the old
        leader's last publication). TimeoutError after ``seconds``."""
        end = await self.end_offset()

        async def reached() -> None:
            while not self.loaded.is_set() or self.position < end:
                self._progress.clear()
                await self._progress.wait()

        await asyncio.wait_for(reached(), seconds)

    async def wait_loaded(self, seconds: float) -> bool:
        """True once loaded; False (logged) if that took longer than ``seconds``."""
        try:
            await asyncio.wait_for(self.loaded.wait(), seconds)
        except TimeoutError:
            log.warning("policy snapshots not loaded after %.0f s: deciding without", seconds)
            return False
        return True

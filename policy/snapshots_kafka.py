"""Policy snapshots on Kafka: the compacted ``{prefix}policy-snapshots`` topic.

The policy service publishes each flow's snapshots keyed by flow id
(:class:`SnapshotPublisher`), each first to the archive topic
``{prefix}policy-snapshot-archive`` keyed by ``{flow id}/{version}`` (replays
look decisions' snapshots up there); every processor runs a :class:`SnapshotFollower`,
which reads the topic from the beginning with a manually assigned consumer (no
group: every processor needs every snapshot) and then follows it, installing
each snapshot into its :class:`~policy.thompson.ThompsonPolicy`. A decision reads
one snapshot reference, so an install is a hot swap: no restart, no pause.

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
from aiokafka.errors import KafkaError

from policy.snapshot import PolicySnapshot, SnapshotError, decode_snapshot, encode_snapshot
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


class SnapshotPublisher:
    """Publishes snapshots keyed by flow id; ``publish`` returns once Kafka has one.
    Each goes to the archive topic first: a processor never decides with a
    snapshot that a replay cannot find."""

    def __init__(self, settings: KafkaSettings) -> None:
        self._settings = settings
        self._topic = snapshots_topic(settings)
        self._archive = snapshot_archive_topic(settings)
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(
            **self._settings.client_kwargs(),
            acks="all",
            enable_idempotence=True,
            compression_type="gzip",
            max_request_size=SNAPSHOT_MAX_BYTES,
        )
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def publish(self, snapshot: PolicySnapshot) -> int:
        """The record's offset in the snapshots topic."""
        if self._producer is None:
            raise RuntimeError("the snapshot publisher is not started")
        value = encode_snapshot(snapshot)
        await self._producer.send_and_wait(
            self._archive, key=archive_key(snapshot.flow_id, snapshot.version), value=value
        )
        meta = await self._producer.send_and_wait(
            self._topic, key=snapshot.flow_id.encode(), value=value
        )
        log.info(
            "policy snapshot %s published",
            snapshot.version,
            extra={
                "flow_id": snapshot.flow_id,
                "flow_version": snapshot.flow_version,
                "policy_version": snapshot.version,
                "bytes": len(value),
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
        log.info(
            "policy snapshots loaded: %d installed, %d skipped",
            self.installed,
            self.skipped,
            extra={"records": end},
        )

    async def wait_loaded(self, seconds: float) -> bool:
        """True once loaded; False (logged) if that took longer than ``seconds``."""
        try:
            await asyncio.wait_for(self.loaded.wait(), seconds)
        except TimeoutError:
            log.warning("policy snapshots not loaded after %.0f s: deciding without", seconds)
            return False
        return True

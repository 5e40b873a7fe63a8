"""Which policy-service instance leads: a Kafka consumer group, fenced by a transactional id.

Every ``leadflow run policy`` joins the group ``{prefix}policy-leader`` on the
one-partition ``{prefix}policy-control`` topic (it reads nothing through it:
the partition is paused once assigned; the control feed reads the topic on its
own). The group coordinator assigns that one partition to one member: it
*leads* (fits and publishes); the others stand by (fold the events, learn,
adopt the leader's snapshots: :meth:`policy.fitting.FitScheduler.adopt`). When
the leader dies its session times out (``session_timeout_ms``, 10 s by
default) and the partition moves to a standby; a leader that stops cleanly
leaves the group at once.

A group alone cannot stop a leader that froze (a long pause, a partitioned
node) and wakes up still believing it leads. Publishing is therefore fenced:
the leader publishes through a transactional producer whose
``transactional.id`` (``{prefix}policy-publisher``) is the same on every
instance (:class:`policy.snapshots_kafka.SnapshotPublisher`), and a new leader's
producer start (InitProducerId) bumps its epoch, so the old leader's next
publication fails with ``ProducerFenced`` (it steps down) and a transaction it
left open is aborted. Readers use ``read_committed``.

The partition goes to the **oldest member** (:class:`OldestLeads`: each member
tells its start time in its join metadata), not to whichever the default
assignor sorts first: a standby that starts or restarts never takes the lead
from a running leader, so leadership moves only when the leader leaves or dies.

``on_elected`` runs when this instance gets the partition, ``on_deposed`` when
it loses it (revocation: before the group hands it to another member, so a
clean handover never has two leaders) or the group is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)
from aiokafka.errors import KafkaError

from services.distributed.settings import KafkaSettings
from services.distributed.topics import control_topic

log = logging.getLogger("leadflow.policy.leader")
RETRY_SECONDS = 1.0

Hook = Callable[[], Awaitable[None]]


def leader_group(settings: KafkaSettings) -> str:
    return f"{settings.prefix}policy-leader"


_STARTED = struct.Struct(">d")


def oldest_member(started: Mapping[str, float]) -> str:
    """The member that leads: the earliest start, ties by member id."""
    return min(started, key=lambda member: (started[member], member))


def started_at(user_data: bytes | None) -> float:
    """A member's start time from its join metadata (unknown: last in line)."""
    if user_data is None or len(user_data) != _STARTED.size:
        return float("inf")
    value: float = _STARTED.unpack(user_data)[0]
    return value


def oldest_leads(started: float) -> type[AbstractPartitionAssignor]:
    """An assignor for one process: it tells its ``started`` time when it joins, and,
    when this member computes the group's assignment, gives every partition to the
    member that started first."""

    class OldestLeads(AbstractPartitionAssignor):  # type: ignore[misc]
        name = "leadflow-oldest"
        version = 0

        @classmethod
        def assign(
            cls,
            cluster: ClusterMetadata,
            members: Mapping[str, ConsumerProtocolMemberMetadata],
        ) -> dict[str, ConsumerProtocolMemberAssignment]:
            leader = oldest_member({m: started_at(meta.user_data) for m, meta in members.items()})
            topics = sorted({t for meta in members.values() for t in meta.subscription})
            owned = [(topic, sorted(cluster.partitions_for_topic(topic) or ())) for topic in topics]
            return {
                member: ConsumerProtocolMemberAssignment(
                    cls.version, owned if member == leader else [], b""
                )
                for member in members
            }

        @classmethod
        def metadata(cls, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
            return ConsumerProtocolMemberMetadata(cls.version, list(topics), _STARTED.pack(started))

        @classmethod
        def on_assignment(cls, assignment: ConsumerProtocolMemberAssignment) -> None:
            return None

    return OldestLeads


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, election: KafkaLeaderElection) -> None:
        self._election = election

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        if self._election.partition in revoked:
            await self._election.depose("partition revoked")

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        if self._election.partition in assigned:
            self._election.consumer_pause()
            await self._election.elect()


class KafkaLeaderElection:
    """Joins the group and keeps its membership until cancelled (see the module)."""

    def __init__(
        self,
        settings: KafkaSettings,
        on_elected: Hook,
        on_deposed: Hook,
        *,
        session_timeout_ms: int = 10_000,
        heartbeat_interval_ms: int = 1_000,
    ) -> None:
        self._settings = settings
        self._on_elected = on_elected
        self._on_deposed = on_deposed
        self._session_timeout_ms = session_timeout_ms
        self._heartbeat_interval_ms = heartbeat_interval_ms
        self.partition = TopicPartition(control_topic(settings), 0)
        self.leading = False
        self.elections = 0  # how often this instance was elected
        self.started = time.time()  # the oldest member leads
        self._consumer: AIOKafkaConsumer | None = None

    def consumer_pause(self) -> None:
        if self._consumer is not None:
            self._consumer.pause(self.partition)

    async def elect(self) -> None:
        if self.leading:
            return
        log.info("policy service elected leader", extra={"group": leader_group(self._settings)})
        self.leading = True
        self.elections += 1
        try:
            await self._on_elected()
        except Exception:
            log.exception("policy service could not take over: standing by")
            self.leading = False
            await self._on_deposed()

    async def depose(self, why: str) -> None:
        if not self.leading:
            return
        self.leading = False
        log.info("policy service stands by: %s", why)
        await self._on_deposed()

    async def run(self) -> None:
        """Stay in the group until cancelled; broker trouble: depose, retry."""
        while True:
            try:
                await self._member()
            except asyncio.CancelledError:
                raise
            except (KafkaError, OSError) as exc:
                log.warning("policy leader election: %s; retrying", exc)
                await asyncio.sleep(RETRY_SECONDS)

    async def _member(self) -> None:
        consumer = AIOKafkaConsumer(
            **self._settings.client_kwargs(),
            group_id=leader_group(self._settings),
            enable_auto_commit=False,
            auto_offset_reset="latest",
            session_timeout_ms=self._session_timeout_ms,
            heartbeat_interval_ms=self._heartbeat_interval_ms,
            rebalance_timeout_ms=self._session_timeout_ms,
            partition_assignment_strategy=(oldest_leads(self.started),),
        )
        await consumer.start()
        self._consumer = consumer
        try:
            consumer.subscribe([self.partition.topic], listener=_Listener(self))
            while True:  # polls keep the membership (max.poll.interval); nothing is read
                await consumer.getmany(timeout_ms=1000)
        finally:
            self._consumer = None
            with contextlib.suppress(Exception):
                await self.depose("left the group")
            with contextlib.suppress(KafkaError, OSError):
                await consumer.stop()

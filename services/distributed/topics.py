"""The topics of the distributed mode, created idempotently at startup.

`commands` and `events` are keyed by conversation id and co-partitioned (same
partition count, same default partitioner), so the processor that owns a
conversation's command partition owns its events partition too. `replies` has
one partition per gateway instance: gateway N reads only partition N.

`policy-snapshots` is compacted and keyed by flow id: the policy service publishes
each flow's posterior snapshots there, and every processor reads it from the
beginning at start (the newest record of each flow survives compaction) and then
follows it (docs/policy.md). Every snapshot is first published to
`policy-snapshot-archive`, compacted too but keyed by `{flow id}/{version}`, so
that compaction keeps every version a logged decision may name
(``leadflow replay --verify`` reads it).

`policy-control` holds every guardrail change (exploration floor, holdout, kill
switch, promotions) in order, keyed by flow id, one partition, never deleted nor
compacted: the policy service folds it at every start, and it is the audit
trail of who changed what and when (docs/policy.md).

`flows` is the flow registry (:mod:`services.registry`): every published flow
version and every activation, one partition (one order for every flow),
compacted on :func:`schemas.flow_registry.record_key` (``published/{flow}/{version}``
kept forever, ``active/{site or *}/{flow}`` keeps the last activation). Every
service reads it from the beginning at start and follows it (docs/flows.md);
writers append in transactions, so a publish and its activation are read
together or not at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from services.distributed.settings import KafkaSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)


SNAPSHOT_MAX_BYTES = 8 * 1024 * 1024  # a snapshot record's limit (posterior draws, base64)


def snapshots_topic(settings: KafkaSettings) -> str:
    return f"{settings.prefix}policy-snapshots"


def snapshot_archive_topic(settings: KafkaSettings) -> str:
    return f"{settings.prefix}policy-snapshot-archive"


def control_topic(settings: KafkaSettings) -> str:
    return f"{settings.prefix}policy-control"


def flows_topic(settings: KafkaSettings) -> str:
    return f"{settings.prefix}flows"


FLOW_RECORD_MAX_BYTES = 2 * 1024 * 1024  # a published document with its envelope


def registry_topic_specs(settings: KafkaSettings) -> list[TopicSpec]:
    """The flow registry: one partition, compacted (a version's key is its own,
    so compaction only drops superseded activations)."""
    return [
        TopicSpec(
            flows_topic(settings),
            1,
            settings.replication_factor,
            {"cleanup.policy": "compact", "max.message.bytes": str(FLOW_RECORD_MAX_BYTES)},
        )
    ]


def archive_key(flow_id: str, version: str) -> bytes:
    """The archive's record key: one per snapshot version, so compaction keeps them all."""
    return f"{flow_id}/{version}".encode()


def policy_topic_specs(settings: KafkaSettings) -> list[TopicSpec]:
    """The policy snapshots: one partition (a total order per flow), compacted soon
    enough that a processor starting up reads few superseded snapshots; their
    archive, every version kept (compacted on a per-version key, never deleted);
    and the guardrail changes, one partition, every record kept."""
    return [
        TopicSpec(
            snapshots_topic(settings),
            1,
            settings.replication_factor,
            {
                "cleanup.policy": "compact",
                "segment.ms": str(10 * 60 * 1000),
                "min.cleanable.dirty.ratio": "0.1",
                "max.compaction.lag.ms": str(15 * 60 * 1000),
                "max.message.bytes": str(SNAPSHOT_MAX_BYTES),
            },
        ),
        TopicSpec(
            snapshot_archive_topic(settings),
            1,
            settings.replication_factor,
            {"cleanup.policy": "compact", "max.message.bytes": str(SNAPSHOT_MAX_BYTES)},
        ),
        TopicSpec(
            control_topic(settings),
            1,
            settings.replication_factor,
            {"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"},
        ),
    ]


DEAD_LETTER_RETENTION_MS = 30 * 24 * 3600 * 1000  # a month to look at them


def all_topic_specs(settings: KafkaSettings) -> list[TopicSpec]:
    """Every topic of the deployment: what ``ensure_topics`` creates by default."""
    return [*topic_specs(settings), *policy_topic_specs(settings), *registry_topic_specs(settings)]


def topic_specs(settings: KafkaSettings) -> list[TopicSpec]:
    """The conversation topics (commands, events, replies), the processors'
    changelog and the commands' dead letters."""
    rf = settings.replication_factor
    return [
        TopicSpec(
            settings.commands_topic,
            settings.partitions,
            rf,
            {"retention.ms": str(settings.commands_retention_ms)},
        ),
        TopicSpec(
            settings.events_topic,
            settings.partitions,
            rf,
            {"retention.ms": str(settings.events_retention_ms), "cleanup.policy": "delete"},
        ),
        TopicSpec(
            settings.replies_topic,
            settings.reply_partitions,
            rf,
            {"retention.ms": str(settings.replies_retention_ms)},
        ),
        TopicSpec(settings.changelog_topic, settings.partitions, rf, {"cleanup.policy": "compact"}),
        TopicSpec(
            settings.dead_letters_topic,
            1,
            rf,
            {"retention.ms": str(DEAD_LETTER_RETENTION_MS), "cleanup.policy": "delete"},
        ),
    ]


class TopicMismatch(RuntimeError):
    """An existing topic has another partition count than the deployment expects."""


async def _partition_counts(
    admin: AIOKafkaAdminClient, names: list[str], settle_seconds: float = 10.0
) -> dict[str, int]:
    """Partition counts, waiting while a just-created topic still shows none (another
    instance may have created it a moment ago and its metadata is still propagating)."""
    deadline = asyncio.get_running_loop().time() + settle_seconds
    while True:
        described = await admin.describe_topics(names)
        counts = {d["topic"]: len(d["partitions"]) for d in described}
        settled = all(counts.get(name, 0) > 0 for name in names)
        if settled or asyncio.get_running_loop().time() > deadline:
            return counts
        await asyncio.sleep(0.2)


async def ensure_topics(settings: KafkaSettings, specs: list[TopicSpec] | None = None) -> None:
    """Create the missing topics; refuse to run on topics partitioned differently
    (a changed partition count would move conversations between partitions)."""
    specs = all_topic_specs(settings) if specs is None else specs
    admin = AIOKafkaAdminClient(**settings.client_kwargs())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        if missing:
            new = [
                NewTopic(s.name, s.partitions, s.replication_factor, topic_configs=s.config)
                for s in missing
            ]
            with contextlib.suppress(TopicAlreadyExistsError):  # another instance was first
                await admin.create_topics(new)
        counts = await _partition_counts(admin, [s.name for s in specs])
        wrong = [
            f"{s.name} has {counts.get(s.name)} partitions, expected {s.partitions}"
            for s in specs
            if counts.get(s.name) != s.partitions
        ]
        if wrong:
            raise TopicMismatch("; ".join(wrong))
    finally:
        await admin.close()


async def partition_count(settings: KafkaSettings, topic: str) -> int:
    """How many partitions ``topic`` has (0 if it does not exist)."""
    admin = AIOKafkaAdminClient(**settings.client_kwargs())
    await admin.start()
    try:
        if topic not in set(await admin.list_topics()):
            return 0
        return (await _partition_counts(admin, [topic])).get(topic, 0)
    finally:
        await admin.close()

"""The distributed log as transcripts: the ``commands`` and ``events`` topics
(co-partitioned, keyed by conversation id) and the snapshot archive topic.

Read-only, like ``leadflow replay --kafka``: partitions are assigned by hand (no
consumer group, no commits), ``read_committed``, up to the end offsets seen when
the partition's reading began (commands' ends first, so the events of every
command read are in the log if the processors handled it). One partition at a
time: its commands and events are held in memory, then verified and dropped.

Lead fields on the commands topic are sealed with ``LEADFLOW_COMMAND_SECRET``;
they are opened as the processor opens them, and a command the processor could
not read (undecodable, or sealed with another secret) is skipped as it did. A
record of a schema version this reader does not know stops the verification
(:class:`~app.verify.model.UnreadableLog`, naming partition and offset).

Commands at or past the processors' committed offset (their consumer group's,
read with the admin API) may still be in flight: events the log lacks for them
are counted as "not processed yet", not as a divergence.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from app.verify.model import LoggedAt, Transcript, UnreadableLog
from policy.snapshot import SnapshotError, decode_snapshot
from schemas.batches import decode_batch
from schemas.codec import MessageError, UnsupportedVersion
from schemas.commands import Command, StartConversation, decode_command
from schemas.events import ConversationStarted
from services.distributed.command_sealing import CommandSealer, CommandSealError
from services.distributed.readers import MIB, manual_consumer
from services.distributed.settings import KafkaSettings
from services.distributed.topics import (
    partition_count,
    snapshot_archive_topic,
    snapshots_topic,
)

PAST_RETENTION = "commands past retention (StartConversation no longer in the commands topic)"
EVENTS_PAST_RETENTION = "events past retention (ConversationStarted no longer in the events topic)"
SLACK_SECONDS = 300.0  # record timestamps (producers' clocks) against the events' times
Progress = Callable[[int, int], None]
Record = tuple[int, bytes | None, bytes | None]  # offset, key, value


async def _read(
    consumer: AIOKafkaConsumer, tp: TopicPartition, since: float | None
) -> list[Record]:
    """Every record of ``tp`` from its beginning (or from ``since`` less the slack)
    up to the end offset it has now."""
    end = (await consumer.end_offsets([tp]))[tp]
    start = (await consumer.beginning_offsets([tp]))[tp]
    if since is not None:
        found = await consumer.offsets_for_times({tp: int((since - SLACK_SECONDS) * 1000)})
        start = end if found[tp] is None else max(start, found[tp].offset)
    consumer.assign([tp])
    consumer.seek(tp, start)
    out: list[Record] = []
    while start < end and await consumer.position(tp) < end:
        fetched = await consumer.getmany(tp, timeout_ms=1000, max_records=10_000)
        for msg in fetched.get(tp, []):
            if msg.offset >= end:
                break
            out.append((msg.offset, msg.key, msg.value))
    consumer.pause(tp)  # no fetch left in flight: stop() would wait for it
    return out


async def _records(settings: KafkaSettings, topic: str) -> list[Record]:
    if not await partition_count(settings, topic):
        return []
    consumer = manual_consumer(settings, 16 * MIB)
    await consumer.start()
    try:
        return await _read(consumer, TopicPartition(topic, 0), None)
    finally:
        await consumer.stop()


async def read_archive(settings: KafkaSettings) -> dict[str, bytes]:
    """The archived snapshots by version (the newest record of a key wins), plus
    any snapshot still in the live topic that the archive lacks (published before
    the archive existed)."""
    out: dict[str, bytes] = {}
    for _, key, value in await _records(settings, snapshot_archive_topic(settings)):
        if key is None:
            continue
        version = key.decode(errors="replace").partition("/")[2]
        if value is None:
            out.pop(version, None)
        else:
            out[version] = value
    for _, _, value in await _records(settings, snapshots_topic(settings)):
        if value is None:
            continue
        try:
            version = decode_snapshot(value).version
        except SnapshotError:
            continue  # the processors skipped it too
        out.setdefault(version, value)
    return out


async def committed_offsets(settings: KafkaSettings) -> dict[int, int] | None:
    """The processors' committed offsets per commands partition (their consumer
    group's; read, never written), None when the group has none. Commands below
    them were handled: their events are in the log, or never will be."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(settings.processor_id)
    except KafkaError:  # no such group (no coordinator for it): nothing is known
        return None
    finally:
        await admin.close()
    out = {
        tp.partition: meta.offset
        for tp, meta in offsets.items()
        if tp.topic == settings.commands_topic and meta.offset >= 0
    }
    return out or None


@dataclass
class KafkaLog:
    settings: KafkaSettings
    sealer: CommandSealer
    skipped_commands: int = 0
    partitions: int = 0
    events_read: int = field(default=0)

    def _commands(
        self, partition: int, records: Sequence[Record]
    ) -> dict[str, list[tuple[int, Command]]]:
        """Each conversation's readable commands with their offsets, in topic order."""
        out: dict[str, list[tuple[int, Command]]] = {}
        for offset, _, value in records:
            if value is None:
                continue
            try:
                command = self.sealer.open(decode_command(value))
            except UnsupportedVersion as exc:
                where = f"commands partition {partition} offset {offset}"
                raise UnreadableLog(where, str(exc)) from exc
            except (MessageError, CommandSealError):
                self.skipped_commands += 1  # the processor skipped it too
                continue
            out.setdefault(command.conversation_id, []).append((offset, command))
        return out

    def _events(self, partition: int, records: Sequence[Record]) -> dict[str, list[LoggedAt]]:
        out: dict[str, list[LoggedAt]] = {}
        for offset, _, value in records:
            if value is None:
                continue
            where = f"events partition {partition} offset {offset}"
            try:
                batch = decode_batch(value)
            except MessageError as exc:
                raise UnreadableLog(where, str(exc)) from exc
            for event in batch.events:
                out.setdefault(event.conversation_id, []).append(LoggedAt(event, where))
        return out

    def _transcripts(
        self,
        commands: dict[str, list[tuple[int, Command]]],
        events: dict[str, list[LoggedAt]],
        since: float | None,
        committed: int | None = None,
    ) -> list[Transcript]:
        """``committed``: the processors' committed offset in this commands partition
        (None: not known; every command then counts as handled)."""

        def pending(mine: list[tuple[int, Command]]) -> int | None:
            if committed is None:
                return None
            return next((i for i, (offset, _) in enumerate(mine) if offset >= committed), None)

        out: list[Transcript] = []
        for cid, logged in events.items():
            logged.sort(key=lambda x: x.event.seq)
            first = logged[0].event
            if not isinstance(first, ConversationStarted) or first.seq != 1:
                if since is None:
                    out.append(Transcript(cid, (), tuple(logged), EVENTS_PAST_RETENTION))
                continue  # started before the range
            if since is not None and first.at < since:
                continue
            mine = commands.get(cid, [])
            handled = tuple(c for _, c in mine)
            started = any(isinstance(c, StartConversation) and c.seq == 1 for c in handled)
            lost = "" if started else PAST_RETENTION
            out.append(Transcript(cid, handled, tuple(logged), lost, pending(mine)))
        for cid, mine in commands.items():  # commands whose events the log lacks
            if cid in events:
                continue
            handled = tuple(c for _, c in mine)
            start = next(
                (c for c in handled if isinstance(c, StartConversation) and c.seq == 1), None
            )
            if start is not None and (since is None or start.at >= since):
                out.append(Transcript(cid, handled, (), "", pending(mine)))
        return out

    async def transcripts(
        self, since: float | None, progress: Progress | None = None
    ) -> AsyncIterator[Transcript]:
        self.partitions = await partition_count(self.settings, self.settings.events_topic)
        if not self.partitions:
            raise UnreadableLog(self.settings.events_topic, "the events topic does not exist")
        committed = await committed_offsets(self.settings)
        consumer = manual_consumer(self.settings, 16 * MIB)
        await consumer.start()
        try:
            for p in range(self.partitions):
                command_records = await _read(
                    consumer, TopicPartition(self.settings.commands_topic, p), since
                )
                event_records = await _read(
                    consumer, TopicPartition(self.settings.events_topic, p), since
                )
                commands = self._commands(p, command_records)
                events = self._events(p, event_records)
                self.events_read += len(event_records)
                mark = None if committed is None else committed.get(p, 0)
                for transcript in self._transcripts(commands, events, since, mark):
                    yield transcript
                if progress is not None:
                    progress(p + 1, self.partitions)
        finally:
            await consumer.stop()

"""The distributed log as transcripts: the ``commands`` and ``events`` topics
(co-partitioned, keyed by conversation id) and the snapshot archive topic.

Read-only, like ``leadflow replay --kafka``: through manual
:class:`~services.distributed.kafka_follower.KafkaLogFollower` s (partitions
assigned by hand, no consumer group, no commits, ``read_committed``), each
partition up to the end offset seen when its reading began
(:func:`~services.log_follower.read_bounded`; commands' ends first, so the
events of every command read are in the log if the processors handled it).
One partition at a time: its commands and events are held in memory, then
verified and dropped.

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

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from app.verify.model import LoggedAt, Transcript, UnreadableLog, unreadable
from policy.snapshot import SnapshotError, decode_snapshot
from schemas.batches import decode_batch
from schemas.codec import MessageError, UnsupportedVersion
from schemas.commands import Command, StartConversation, decode_command
from schemas.events import ConversationStarted
from services.distributed.command_sealing import CommandSealer, CommandSealError
from services.distributed.kafka_follower import MIB, KafkaLogFollower
from services.distributed.settings import KafkaSettings
from services.distributed.topics import (
    partition_count,
    snapshot_archive_topic,
    snapshots_topic,
)
from services.log_follower import LogFollower, read_bounded

PAST_RETENTION = "commands past retention (StartConversation no longer in the commands topic)"
EVENTS_PAST_RETENTION = "events past retention (ConversationStarted no longer in the events topic)"
SLACK_SECONDS = 300.0  # record timestamps (producers' clocks) against the events' times
Progress = Callable[[int, int], None]
Record = tuple[int, bytes | None, bytes | None]  # offset, key, value


def _follower(
    settings: KafkaSettings, topic: str, partitions: Sequence[int] | None = None
) -> KafkaLogFollower:
    """A manual follower; 16 MiB a partition fetch, above the 8 MiB snapshots."""
    return KafkaLogFollower(
        settings, topic, partitions=partitions, max_partition_fetch_bytes=16 * MIB
    )


async def _read(follower: LogFollower, partition: int, since: float | None) -> list[Record]:
    """Every record of ``partition`` from its beginning (or from ``since`` less
    the slack) up to the end offset it has now; the partition is paused after."""
    end = (await follower.end_offsets())[partition]
    start = (await follower.beginning_offsets())[partition]
    if since is not None:
        found = (await follower.offsets_for_time(since - SLACK_SECONDS))[partition]
        start = max(start, found)
    out: list[Record] = []
    async for chunk in read_bounded(follower, {partition: start}, {partition: end}, 10_000):
        out.extend((r.offset, r.key, r.value) for r in chunk.records)
    return out


async def _records(settings: KafkaSettings, topic: str) -> list[Record]:
    """The records of a one-partition topic ([] when it does not exist)."""
    follower = _follower(settings, topic)
    await follower.start()
    try:
        return await _read(follower, 0, None) if follower.assigned() else []
    finally:
        await follower.stop()


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
    admin = AIOKafkaAdminClient(**settings.client_kwargs())
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
                raise unreadable(
                    where, exc, log="commands", partition=partition, offset=offset
                ) from exc
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
                raise unreadable(
                    where, exc, log="events", partition=partition, offset=offset
                ) from exc
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
        partitions = range(self.partitions)
        commands_log = _follower(self.settings, self.settings.commands_topic, partitions)
        events_log = _follower(self.settings, self.settings.events_topic, partitions)
        try:
            await commands_log.start()
            await events_log.start()
            for p in partitions:
                command_records = await _read(commands_log, p, since)
                event_records = await _read(events_log, p, since)
                commands = self._commands(p, command_records)
                events = self._events(p, event_records)
                self.events_read += len(event_records)
                mark = None if committed is None else committed.get(p, 0)
                for transcript in self._transcripts(commands, events, since, mark):
                    yield transcript
                if progress is not None:
                    progress(p + 1, self.partitions)
        finally:
            await events_log.stop()
            await commands_log.stop()

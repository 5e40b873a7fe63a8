"""A partition's conversation states, recovered when a processor takes it over.

The changelog is a checkpoint of the states, not their truth (that is the
``events`` log, a state is a fold of it): each conversation's state as of its
last checkpoint (compacted, keyed by conversation id) and, under
:func:`~services.processor.batch.marker_key`, an events offset every state
there reflects at least. A checkpoint is written in the transaction of a
batch every ``checkpoint_seconds`` (and when a partition is handed over), not
with every batch: a transaction that writes one partition instead of two
costs the broker less and a lone command less latency. The recovery reads the
changelog partition to its end, then folds the events past the marker (the
*catch-up*, ``seq`` > the state's ``seq`` only): the commands of the last
seconds before a kill -9, a state written by the faust processor this one
replaced, or one lost with a misconfigured compaction, are brought level with
the log before any command of the partition is decided.

Both reads go through :class:`~services.log_follower.LogFollower`s of the one
partition, manually assigned and ``read_committed``. An events record that
is not an event batch raises :class:`~services.log_follower.UnreadableLog`:
a processor must not decide on a state it could not fold, so the partition
stays out of service (and the processor unready) until it is upgraded or
the record is dealt with; the other partitions go on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from schemas.batches import decode_batch
from services.conversation.state import ConversationState, fold
from services.conversation.state_codec import decode_state
from services.log_follower import LogFollower, LogRecord, decode_record, read_bounded
from services.processor.batch import MARKER_PREFIX, marker_key

OpenFollower = Callable[[str, int], LogFollower]  # (topic role, partition) -> not started


@dataclass
class Recovered:
    """``caught_up``: the conversations whose changelog state the catch-up brought
    level (they must be in the next checkpoint: a later marker would skip the
    events that were folded here). ``events_end``: the events partition's end
    (last stable offset) the states are level with."""

    states: dict[bytes, ConversationState]
    changelog_records: int
    caught_up_events: int
    caught_up: set[bytes] = field(default_factory=set)
    events_end: int = 0


async def _read_all(follower: LogFollower, partition: int) -> list[LogRecord]:
    await follower.start()
    try:
        start = (await follower.beginning_offsets()).get(partition, 0)
        end = (await follower.end_offsets()).get(partition, 0)
        out: list[LogRecord] = []
        if start >= end:
            return out
        async for chunk in read_bounded(follower, {partition: start}, {partition: end}):
            out.extend(chunk.records)
        return out
    finally:
        await follower.stop()


async def recover(open_follower: OpenFollower, partition: int) -> Recovered:
    """The partition's states, level with its events log. A state the processor
    cannot decode raises :class:`~services.log_follower.UnreadableLog` naming
    its changelog offset, like an unreadable events record."""
    changelog = open_follower("changelog", partition)
    newest: dict[bytes, LogRecord] = {}
    records = await _read_all(changelog, partition)
    for record in records:
        if record.key is None:
            continue
        if record.value is None:
            newest.pop(record.key, None)  # a tombstone
        else:
            newest[record.key] = record
    marker = newest.pop(marker_key(partition), None)
    states = {
        key: decode_record(changelog.name, record, decode_state)
        for key, record in newest.items()
        if not key.startswith(MARKER_PREFIX)
    }
    last = -1 if marker is None or marker.value is None else int(marker.value)
    caught_up: set[bytes] = set()
    applied, end = await _catch_up(open_follower, partition, states, last, caught_up)
    return Recovered(states, len(records), applied, caught_up, end)


async def _catch_up(
    open_follower: OpenFollower,
    partition: int,
    states: dict[bytes, ConversationState],
    marker: int,
    caught_up: set[bytes],
) -> tuple[int, int]:
    """Fold the events after ``marker`` into ``states``; (events applied, end)."""
    follower = open_follower("events", partition)
    await follower.start()
    try:
        end = (await follower.end_offsets()).get(partition, 0)
        if marker + 1 >= end:
            return 0, end
        applied = 0
        async for chunk in read_bounded(follower, {partition: marker + 1}, {partition: end}):
            for record in chunk.records:
                if record.value is None:
                    continue
                batch = decode_record(follower.name, record, decode_batch)
                key = batch.conversation_id.encode()
                state = states.get(key) or ConversationState(batch.conversation_id)
                fresh = [e for e in batch.events if e.seq > state.seq]
                if fresh:
                    states[key] = fold(state, fresh)
                    caught_up.add(key)
                    applied += 1
        return applied, end
    finally:
        await follower.stop()

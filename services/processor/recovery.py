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
from services.log_follower import LogFollower, decode_record, read_bounded
from services.processor.batch import MARKER_PREFIX, marker_key
from services.processor.state_cache import StateCache

OpenFollower = Callable[[str, int], LogFollower]  # (topic role, partition) -> not started


@dataclass
class Recovered:
    """``caught_up``: the conversations whose changelog state the catch-up brought
    level (they must be in the next checkpoint: a later marker would skip the
    events that were folded here). ``events_end``: the events partition's end
    (last stable offset) the states are level with."""

    states: StateCache
    changelog_records: int
    caught_up_events: int
    caught_up: set[bytes] = field(default_factory=set)
    events_end: int = 0


async def _read_changelog(
    follower: LogFollower, partition: int, states: StateCache
) -> tuple[int, int]:
    """Stream the changelog partition into ``states`` (each key's last record
    wins, a tombstone removes it); (records read, the marker's events offset or -1).
    Records are decoded as they come, so memory holds at most the cache's
    capacity whatever the partition's size; an undecodable record stops the
    recovery even when a later one replaces it."""
    marker = marker_key(partition)
    last, count = -1, 0
    await follower.start()
    try:
        start = (await follower.beginning_offsets()).get(partition, 0)
        end = (await follower.end_offsets()).get(partition, 0)
        if start >= end:
            return 0, last
        async for chunk in read_bounded(follower, {partition: start}, {partition: end}):
            for record in chunk.records:
                count += 1
                key = record.key
                if key is None:
                    continue
                if key == marker:
                    last = -1 if record.value is None else int(record.value)
                elif key.startswith(MARKER_PREFIX):
                    continue
                elif record.value is None:
                    states.pop(key, None)  # a tombstone
                else:
                    states[key] = decode_record(follower.name, record, decode_state)
        return count, last
    finally:
        await follower.stop()


async def recover(
    open_follower: OpenFollower, partition: int, states: StateCache | None = None
) -> Recovered:
    """The partition's states, level with its events log, in ``states`` (emptied
    first; an unbounded cache by default). A state the processor cannot decode
    raises :class:`~services.log_follower.UnreadableLog` naming its changelog
    offset, like an unreadable events record."""
    states = StateCache() if states is None else states
    states.close()
    changelog = open_follower("changelog", partition)
    records, last = await _read_changelog(changelog, partition, states)
    caught_up: set[bytes] = set()
    applied, end = await _catch_up(open_follower, partition, states, last, caught_up)
    return Recovered(states, records, applied, caught_up, end)


async def _catch_up(
    open_follower: OpenFollower,
    partition: int,
    states: StateCache,
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

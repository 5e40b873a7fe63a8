"""Following a log live: the loop every following consumer of the log runs.

:func:`follow` starts a :class:`~services.log_follower.LogFollower`, seeks
every partition it is given to the positions the caller keeps, and hands each
poll's records to the caller until told to stop; broker trouble restarts the
follower from the caller's positions again. A new follower (lead delivery,
say) is then its handler and its positions::

    async def positions(partitions: list[int]) -> dict[int, int | None]:
        return await ledger.positions(partitions)      # kept with the effects

    async def handle(records: list[LogRecord]) -> None:
        for record in records:
            try:
                batch = decode_record(follower.name, record, decode_batch)
            except UnreadableLog as exc:
                ...                                      # skip, stop or dead-letter
            else:
                await deliver(batch)
        await ledger.advance(next_positions(records))   # with the effects, atomically

    await follow(follower, handle, positions, retry_on=(KafkaError, OSError))

Bounded reads (a catch-up, an export, a rebuild) use
:func:`~services.log_follower.read_bounded` instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence

from services.log_follower import LogFollower, LogRecord

log = logging.getLogger("leadflow.log_follow")

Handle = Callable[[list[LogRecord]], Awaitable[object]]
# the caller's positions of ``partitions``: the next offset to read (None: the beginning)
Positions = Callable[[list[int]], Awaitable[Mapping[int, int | None]]]


def next_positions(records: Iterable[LogRecord]) -> dict[int, int]:
    """Per partition, the offset after the last of ``records`` (the position to
    store once their effects are stored)."""
    out: dict[int, int] = {}
    for record in records:
        out[record.partition] = max(out.get(record.partition, 0), record.offset + 1)
    return out


async def seek_to(follower: LogFollower, partitions: Sequence[int], positions: Positions) -> None:
    """Seek ``partitions`` to where ``positions`` says (a partition it leaves out:
    the beginning)."""
    wanted = await positions(sorted(partitions))
    for partition in sorted(partitions):
        await follower.seek(partition, wanted.get(partition))


async def follow(
    follower: LogFollower,
    handle: Handle,
    positions: Positions,
    *,
    stopping: asyncio.Event | None = None,
    retry_on: tuple[type[BaseException], ...] = (OSError,),
    retry_seconds: float = 1.0,
    max_records: int = 5_000,
    wait: float = 0.2,
) -> None:
    """Follow ``follower``'s log until ``stopping`` is set (the batch in hand is
    handled first) or the task is cancelled; the follower is stopped on the way
    out (a consumer group is left at once).

    Every partition the follower reads is first sought to ``positions``: a
    consumer group's on each assignment (through ``on_assigned``, which this
    sets), a manual follower's once started. Then every poll's records, none
    included (so that the handler can watch time pass), go to ``handle``, in
    offset order per partition; ``handle`` may seek the follower itself (to
    read a batch again, say).

    An error of ``retry_on`` (the broker unreachable) stops the follower and
    starts it again ``retry_seconds`` later, from ``positions`` again: the
    caller's positions are the truth, never the follower's. Any other error
    (an :class:`~services.log_follower.UnreadableLog` the handler let through,
    say) stops the follower and is raised."""
    while True:
        try:
            await _follow_once(follower, handle, positions, stopping, max_records, wait)
            return
        except retry_on as exc:
            log.warning(
                "following %s failed (%s); starting again in %.1f s",
                follower.name,
                exc or type(exc).__name__,
                retry_seconds,
                extra={"log": follower.name, "error": type(exc).__name__},
            )
            await asyncio.sleep(retry_seconds)


async def _follow_once(
    follower: LogFollower,
    handle: Handle,
    positions: Positions,
    stopping: asyncio.Event | None,
    max_records: int,
    wait: float,
) -> None:
    sought: set[int] = set()

    async def assigned(partitions: list[int]) -> None:
        await seek_to(follower, partitions, positions)
        sought.update(partitions)

    follower.on_assigned = assigned
    try:
        await follower.start()
        unsought = [p for p in follower.assigned() if p not in sought]
        if unsought:  # a manual follower: its partitions are not announced
            await assigned(unsought)
        while stopping is None or not stopping.is_set():
            await handle(await follower.poll(max_records, wait))
    finally:
        follower.on_assigned = None
        try:
            await follower.stop()
        except Exception as exc:  # leaving is best effort: the log is unreachable, say
            log.warning(
                "stopping the %s follower failed: %s",
                follower.name,
                exc or type(exc).__name__,
                extra={"log": follower.name, "error": type(exc).__name__},
            )

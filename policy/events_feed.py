"""The policy service's feed: the ``events`` log into the reward ledger.

The ledger is rebuilt from the log at every start: the feed follows every
partition of the log from its beginning (on Kafka a manually assigned
follower: no group, nothing committed) and keeps its positions in memory, so
a follower restarted after broker trouble goes on where the ledger stands
(:func:`services.log_follow.follow`). It is *caught up* once it has read what
the log held when it started; the fitting schedule waits for that.

While catching up, conversations are expired against the oldest event time
among the partitions still behind (a lead of a lagging partition is not
mistaken for a failure); afterwards against the ledger's watermark, the newest
event time read (the schedule calls :meth:`EventsFeed.expire`): never the wall
clock, so the counts are a function of the log.

A record that cannot be read (:class:`~services.log_follower.UnreadableLog`,
of a newer format too: the ledger is a learning signal, and one lost outcome
only widens a posterior) is skipped, logged with its partition and offset and
counted in ``leadflow_policy_skipped_records_total``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping

from policy.metrics import PolicyMetrics
from policy.rewards import RewardLedger
from schemas.batches import decode_batch
from services.log_follow import follow
from services.log_follower import LogFollower, LogRecord, UnreadableLog, decode_record

log = logging.getLogger("leadflow.policy.service")


class EventsFeed:
    """Feeds ``ledger`` from ``follower`` (every partition of the ``events`` log,
    not started). ``retry_on``: the follower's errors that mean broker trouble."""

    def __init__(
        self,
        follower: LogFollower,
        ledger: RewardLedger,
        metrics: PolicyMetrics,
        *,
        retry_on: tuple[type[BaseException], ...] = (OSError,),
        retry_seconds: float = 1.0,
        max_records: int = 5_000,
        wait: float = 0.2,
    ) -> None:
        self._follower = follower
        self._ledger = ledger
        self._metrics = metrics
        self._retry_on = retry_on
        self._retry_seconds = retry_seconds
        self._max_records = max_records
        self._wait = wait
        self.caught_up = asyncio.Event()
        self.records = 0
        self._positions: dict[int, int] = {}  # next offset per partition
        self._times: dict[int, float] = {}  # newest event time per partition
        self._behind: dict[int, int] | None = None  # partitions not read to their start end
        self._started: float | None = None

    def expire(self) -> int:
        """End the conversations abandoned or past their window by the log's time
        (the schedule calls it)."""
        expired = self._ledger.expire()
        self._metrics.open.set(self._ledger.open_conversations())
        return expired

    async def run(self) -> None:
        """Follow the log until cancelled."""
        await follow(
            self._follower,
            self.handle,
            self.positions,
            retry_on=self._retry_on,
            retry_seconds=self._retry_seconds,
            max_records=self._max_records,
            wait=self._wait,
        )

    async def positions(self, partitions: list[int]) -> Mapping[int, int | None]:
        """Where the ledger stands in each partition (None: not read yet, its beginning)."""
        if self._started is None:
            self._started = time.monotonic()
        return {p: self._positions.get(p) for p in partitions}

    async def handle(self, records: list[LogRecord]) -> None:
        """Fold one poll into the ledger, then see whether it has caught up."""
        self._apply(records)
        if not self.caught_up.is_set():
            if self._behind is None:  # what the log holds now is the history to read
                self._behind = await self._follower.end_offsets()
            self._behind = {
                p: end for p, end in self._behind.items() if self._positions.get(p, 0) < end
            }
            polled = {r.partition for r in records}
            for partition, end in list(self._behind.items()):
                # nothing came: only gaps (transaction markers) may be left before the end
                if partition not in polled and await self._follower.position(partition) >= end:
                    del self._behind[partition]
            self._expire_behind(self._behind)
            if not self._behind:
                self._caught_up(time.monotonic() - (self._started or time.monotonic()))
        for partition, lag in self._follower.lag().items():
            self._metrics.lag.labels(str(partition)).set(lag)

    def _apply(self, records: list[LogRecord]) -> None:
        for record in records:
            partition = record.partition
            self._positions[partition] = record.offset + 1
            self.records += 1
            if record.value is None:
                continue
            try:
                batch = decode_record(self._follower.name, record, decode_batch)
            except UnreadableLog as exc:
                self._metrics.skipped.inc()
                log.warning(
                    "unreadable events record skipped: %s",
                    exc,
                    extra={"partition": partition, "offset": record.offset},
                )
                continue
            self._ledger.observe(batch.events)
            self._metrics.events.inc(len(batch.events))
            if batch.events:
                newest = max(e.at for e in batch.events)
                self._times[partition] = max(self._times.get(partition, 0.0), newest)

    def _expire_behind(self, behind: Mapping[int, int]) -> None:
        if behind:
            self._ledger.expire(min(self._times.get(p, 0.0) for p in behind))
        self._metrics.open.set(self._ledger.open_conversations())

    def _caught_up(self, seconds: float) -> None:
        self.expire()
        self.caught_up.set()
        log.info(
            "policy ledger caught up with the events log",
            extra={
                "records": self.records,
                "seconds": round(seconds, 2),
                "open_conversations": self._ledger.open_conversations(),
                "outcomes": {
                    f"{k.flow_id}@{k.flow_version}": c.trials()
                    for k, c in self._ledger.flows.items()
                },
            },
        )

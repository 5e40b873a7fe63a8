"""Is the processor stuck? A worker that stays out of service while its
dependencies answer.

Why: a consumer that never rejoins its group after a long broker outage (seen
with the faust worker this processor replaced: robinhood/faust#259 and #517),
or a partition whose batches keep failing while Kafka and Redis both answer,
leaves its visitors waiting forever. Nothing inside the process recovers from
that, but a new process does: the states are in the changelog and the log, and every
command is idempotent, so a restart is as safe as kill -9.

The rule is deliberately narrow. Time counts only while Kafka and Redis answer
(an outage explains any wait), and a partition recovering its states is making
progress however long that takes. Only a spell of ``limit_seconds`` with
neither counts as a stall. A partition out of service because its log holds
a record it cannot read is *not* a stall (a restart would not help): the
processor says so on ``/readyz`` instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

STALL_EXIT_CODE = 70  # EX_SOFTWARE: what the supervisor sees when the watch fires


def stall_seconds_from_env(env: Mapping[str, str]) -> float:
    """LEADFLOW_PROCESSOR_STALL_SECONDS (120; 0 turns the watch off)."""
    raw = env.get("LEADFLOW_PROCESSOR_STALL_SECONDS", "120")
    try:
        seconds = float(raw)
    except ValueError:
        raise ValueError(f"LEADFLOW_PROCESSOR_STALL_SECONDS={raw!r} is not a number") from None
    if not 0 <= seconds < float("inf"):
        raise ValueError(f"LEADFLOW_PROCESSOR_STALL_SECONDS={raw!r} must be 0 or more seconds")
    return seconds


@dataclass(frozen=True, slots=True)
class WorkerView:
    """What the processor looks like from outside its engine, at one moment."""

    started: bool  # the engine follows the commands topic
    rebalancing: bool
    recovering: bool  # a partition is reading its changelog: progress, however long
    assigned: int  # partitions assigned to this member
    stuck: bool = False  # a partition's batches keep failing

    @property
    def progressing(self) -> bool:
        if self.recovering:
            return True
        return self.started and not self.rebalancing and self.assigned > 0 and not self.stuck


@dataclass(slots=True)
class StallWatch:
    """Fed one observation per dependency check; says when the spell is too long.

    ``limit_seconds <= 0`` turns the watch off."""

    limit_seconds: float
    since: float | None = None  # when the current unexplained spell began

    def observe(self, now: float, worker: WorkerView, dependencies_answer: bool) -> bool:
        """True once the worker has not progressed for ``limit_seconds`` of its
        dependencies answering; any progress or failed check starts the count again."""
        if self.limit_seconds <= 0 or worker.progressing or not dependencies_answer:
            self.since = None
            return False
        if self.since is None:
            self.since = now
        return now - self.since >= self.limit_seconds

    def stalled_for(self, now: float) -> float:
        return 0.0 if self.since is None else now - self.since

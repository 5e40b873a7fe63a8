"""Prometheus metrics of one conversation processor (its own registry).

Labels are bounded sets (command types, outcomes, refusal codes, partitions, flow
ids and policy versions): never a conversation id, never personal data. Gauges that
mirror state held elsewhere (lag, policy versions, snapshot age) are refreshed when
``/metrics`` is scraped, from the readers the composition root hands in.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# the processor's share of a < 100 ms press-to-reply target
DECIDE_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class SnapshotInUse(Protocol):
    """What the metrics read of a policy snapshot (a ``policy.snapshot.PolicySnapshot``)."""

    @property
    def flow_id(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def created_at(self) -> float: ...


class ProcessorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.commands = Counter(
            "leadflow_processor_commands_total",
            "Commands handled, by type and outcome (ok, refused, unreadable)",
            ["type", "outcome"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "leadflow_processor_rejected_commands_total",
            "Commands refused or skipped, by reason (the reply's error code, unreadable, unsealed)",
            ["reason"],
            registry=self.registry,
        )
        self.decide_seconds = Histogram(
            "leadflow_processor_decide_seconds",
            "Deciding one command of a batch (the decider and the key store)",
            buckets=DECIDE_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "leadflow_processor_in_flight",
            "Commands fetched and not yet committed (queued in their partitions)",
            registry=self.registry,
        )
        self.lag = Gauge(
            "leadflow_processor_lag_records",
            "Records of the commands topic not yet read, per assigned partition "
            "(high watermark - position)",
            ["partition"],
            registry=self.registry,
        )
        self.policy_version = Gauge(
            "leadflow_processor_policy_version",
            "1 for the policy snapshot version in use per flow",
            ["flow", "version"],
            registry=self.registry,
        )
        self.snapshot_age = Gauge(
            "leadflow_processor_policy_snapshot_age_seconds",
            "Age of the policy snapshot in use per flow (now - its created_at)",
            ["flow"],
            registry=self.registry,
        )
        self.states = Gauge(
            "leadflow_processor_states",
            "Conversation states of the assigned partitions, in memory or spilled to the"
            " local state folder (LEADFLOW_PROCESSOR_STATE_CACHE per partition in memory)",
            ["where"],
            registry=self.registry,
        )
        self.ready = Gauge(
            "leadflow_processor_ready",
            "1 while /readyz answers 200",
            registry=self.registry,
        )


@dataclass(frozen=True, slots=True)
class Lag:
    """Per partition: the high watermark and the next offset to read (None: unknown)."""

    highwater: int | None
    position: int | None


def lag_records(lag: Lag) -> int | None:
    if lag.highwater is None or lag.position is None:
        return None
    return max(0, lag.highwater - lag.position)


def refresh(
    metrics: ProcessorMetrics,
    lags: Callable[[], Mapping[int, Lag]],
    snapshots: Callable[[], Iterable[SnapshotInUse]],
    in_flight: Callable[[], int],
    now: Callable[[], float] = time.time,
    states: Callable[[], tuple[int, int]] | None = None,
) -> None:
    """Set the mirrored gauges from the current state (called on each scrape)."""
    metrics.lag.clear()
    for partition, lag in sorted(lags().items()):
        records = lag_records(lag)
        if records is not None:
            metrics.lag.labels(str(partition)).set(records)
    metrics.policy_version.clear()
    metrics.snapshot_age.clear()
    for snapshot in snapshots():
        metrics.policy_version.labels(snapshot.flow_id, snapshot.version).set(1)
        metrics.snapshot_age.labels(snapshot.flow_id).set(max(0.0, now() - snapshot.created_at))
    metrics.in_flight.set(in_flight())
    if states is not None:
        in_memory, spilled = states()
        metrics.states.labels("memory").set(in_memory)
        metrics.states.labels("spilled").set(spilled)

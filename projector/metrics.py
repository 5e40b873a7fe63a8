"""Prometheus metrics of the projector (its own registry). Labels are partitions
and outcomes only: never conversation ids, never personal data."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ProjectorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.lag = Gauge(
            "leadflow_projector_lag_records",
            "Records of the events topic not yet projected (high watermark - position)",
            ["partition"],
            registry=self.registry,
        )
        self.last_event_age = Gauge(
            "leadflow_projector_last_event_age_seconds",
            "Age of the newest event applied to the read models",
            registry=self.registry,
        )
        self.events = Counter(
            "leadflow_projector_events_total",
            "Events consumed from the log",
            registry=self.registry,
        )
        self.write_sets = Counter(
            "leadflow_projector_write_sets_total",
            "Per-conversation write sets, by outcome (applied, duplicate, conflict)",
            ["outcome"],
            registry=self.registry,
        )
        self.skipped = Counter(
            "leadflow_projector_skipped_records_total",
            "Records of the events topic that could not be read, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "leadflow_projector_batch_seconds",
            "Time to project one consumed batch into the store",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.store_up = Gauge(
            "leadflow_projector_store_up",
            "1 while the read-model store answers",
            registry=self.registry,
        )
        self.store_errors = Counter(
            "leadflow_projector_store_errors_total",
            "Failed attempts to write a batch (it is retried until it lands)",
            registry=self.registry,
        )
        self.namespace_switches = Counter(
            "leadflow_projector_namespace_switches_total",
            "Rebuilt namespaces this projector moved to",
            registry=self.registry,
        )

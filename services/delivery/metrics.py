"""Prometheus metrics of lead delivery (their own registry).

Labels are bounded: destination types, outcomes and reasons, and (for
disabled destinations only) site and destination names from the sites file.
Never a conversation id, a lead's contents or a URL.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0, 300.0, 1800.0, 7200.0)


class DeliveryMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        """``registry``: a service's own (the embedded mode shares the gateway's)."""
        self.registry = CollectorRegistry() if registry is None else registry
        self.attempts = Counter(
            "leadflow_delivery_attempts_total",
            "Delivery attempts by destination type and outcome (delivered, retry, gone, erased)",
            ["type", "outcome"],
            registry=self.registry,
        )
        self.deferred = Counter(
            "leadflow_delivery_deferred_total",
            "Due deliveries put off without an attempt, by reason (circuit_open, busy)",
            ["type", "reason"],
            registry=self.registry,
        )
        self.created = Counter(
            "leadflow_delivery_created_total",
            "Deliveries created from captured leads (one per lead and destination)",
            registry=self.registry,
        )
        self.dead = Counter(
            "leadflow_delivery_dead_lettered_total",
            "Deliveries that became dead letters, by reason",
            ["type", "reason"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "leadflow_delivery_lead_to_delivered_seconds",
            "From the lead's capture to its delivery's success",
            ["type"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.attempt_seconds = Histogram(
            "leadflow_delivery_attempt_seconds",
            "One attempt, by destination type",
            ["type"],
            registry=self.registry,
        )
        self.oldest_pending = Gauge(
            "leadflow_delivery_oldest_pending_seconds",
            "Age of the oldest pending delivery's lead (0: none pending)",
            registry=self.registry,
        )
        self.pending = Gauge(
            "leadflow_delivery_pending",
            "Deliveries pending (due now or waiting for a retry)",
            registry=self.registry,
        )
        self.dead_letters = Gauge(
            "leadflow_delivery_dead_letters",
            "Deliveries that are dead letters now",
            registry=self.registry,
        )
        self.disabled = Gauge(
            "leadflow_delivery_destination_disabled",
            "1 for a destination disabled by a 410 Gone until re-enabled",
            ["site", "destination"],
            registry=self.registry,
        )
        self.circuit_open = Gauge(
            "leadflow_delivery_circuits_open",
            "Destinations whose circuit breaker is open in this worker",
            registry=self.registry,
        )
        self.log_errors = Counter(
            "leadflow_delivery_unreadable_records_total",
            "Event log records the delivery worker could not read (it stops there)",
            registry=self.registry,
        )

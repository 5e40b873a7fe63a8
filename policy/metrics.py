"""The policy service's Prometheus metrics (a registry of its own)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class PolicyMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter(
            "leadflow_policy_events_total", "Events read from the log", registry=self.registry
        )
        self.skipped = Counter(
            "leadflow_policy_skipped_records_total",
            "Records of the events topic that could not be read",
            registry=self.registry,
        )
        self.lag = Gauge(
            "leadflow_policy_lag_records",
            "Records of the events topic not read yet",
            ["partition"],
            registry=self.registry,
        )
        self.open = Gauge(
            "leadflow_policy_open_conversations",
            "Conversations with decisions waiting for their outcome",
            registry=self.registry,
        )
        self.outcomes = Gauge(
            "leadflow_policy_outcomes",
            "Decision outcomes counted, per flow",
            ["flow"],
            registry=self.registry,
        )
        self.late_leads = Gauge(
            "leadflow_policy_late_leads",
            "Leads captured after their conversation was counted as abandoned, per flow",
            ["flow"],
            registry=self.registry,
        )
        self.published = Counter(
            "leadflow_policy_snapshots_published_total",
            "Snapshots published, per flow",
            ["flow"],
            registry=self.registry,
        )
        self.fits = Gauge(
            "leadflow_policy_fits",
            "Fits per flow and outcome (published, failed) since the start",
            ["flow", "outcome"],
            registry=self.registry,
        )
        self.fit_seconds = Gauge(
            "leadflow_policy_last_fit_seconds",
            "How long the flow's last fit took",
            ["flow"],
            registry=self.registry,
        )
        self.fit_diagnostics = Gauge(
            "leadflow_policy_last_fit_diagnostic",
            "The flow's last fit: max r-hat (rhat_max), min bulk ESS (ess_bulk_min), "
            "divergent transitions (divergences)",
            ["flow", "diagnostic"],
            registry=self.registry,
        )
        self.version = Gauge(
            "leadflow_policy_version",
            "1 for the snapshot version last published per flow",
            ["flow", "version"],
            registry=self.registry,
        )
        self.leader = Gauge(
            "leadflow_policy_leader",
            "1 while this policy-service instance leads (fits and publishes), 0 on standby",
            registry=self.registry,
        )
        self.elections = Counter(
            "leadflow_policy_elections_total",
            "How often this instance was elected leader",
            registry=self.registry,
        )
        self.archived_bytes = Counter(
            "leadflow_policy_archived_bytes_total",
            "Bytes written to the snapshot archive, per form (compact: an update's "
            "Gaussian posterior; full: the snapshot)",
            ["form"],
            registry=self.registry,
        )

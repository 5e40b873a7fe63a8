"""What a process's registry feed applied, as metrics and log lines.

:func:`changes` is pure: what differs between the registry a process had and the
one it has now (new versions, activations that changed). :class:`RegistryMetrics`
declares the gauges in a service's own Prometheus registry, and
:class:`RegistryObserver` turns the changes into log lines and gauge values. Log
lines carry flow ids, versions, content hashes and who published (``admin``,
``site:<id>``, ``flows-dir``): never a document's text, never personal data.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

from schemas.flow import Flow
from services.catalog import FlowCatalog
from services.registry.core import Registry

log = logging.getLogger("leadflow.registry")


@dataclass(frozen=True, slots=True)
class Changes:
    published: tuple[tuple[str, int], ...]  # (flow, version), in version order
    activated: tuple[tuple[str, str, int], ...]  # (site or "", flow, version)


def changes(before: Registry, after: Registry) -> Changes:
    published = sorted(set(after.published) - set(before.published))
    activated = sorted(
        (site, flow, version)
        for (site, flow), version in after.active.items()
        if before.active.get((site, flow)) != version
    )
    return Changes(tuple(published), tuple(activated))


class ObservedCatalog(FlowCatalog):
    """A catalog that calls ``changed()`` after each version added and each
    activation that changed what a site starts on: the registry feed applies a
    record to its registry, then to its catalog, so ``changed`` sees the registry
    with that record, record by record (a timer would miss a publish and a
    rollback that came within one tick)."""

    def __init__(self, changed: Callable[[], None]) -> None:
        super().__init__()
        self._changed = changed
        self._activated: dict[tuple[str, str], int] = {}

    def add(self, flow: Flow) -> None:
        new = self.get(flow.id, flow.version) is None
        super().add(flow)
        if new:
            self._changed()

    def activate(self, flow_id: str, version: int, site_id: str = "") -> None:
        super().activate(flow_id, version, site_id)
        if self.get(flow_id, version) is None or self._activated.get((site_id, flow_id)) == version:
            return
        self._activated[(site_id, flow_id)] = version
        self._changed()


class RegistryMetrics:
    """Labels: flow ids and site ids of the deployment (bounded sets)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.active_version = Gauge(
            "leadflow_flow_active_version",
            "The version new conversations start on, per flow and site (site * : every "
            "site without an activation of its own)",
            ["flow_id", "site"],
            registry=registry,
        )
        self.versions = Gauge(
            "leadflow_flow_versions",
            "Published versions of each flow this process knows",
            ["flow_id"],
            registry=registry,
        )
        self.applied = Counter(
            "leadflow_flow_registry_applied_total",
            "Registry records applied by this process since it started, by kind "
            "(published, activated)",
            ["kind"],
            registry=registry,
        )
        self.skipped = Gauge(
            "leadflow_flow_registry_skipped_records",
            "Registry records this process could not use (undecodable, or a document "
            "that does not validate here)",
            registry=registry,
        )
        self.lag = Gauge(
            "leadflow_flow_registry_lag_records",
            "Registry records not yet read by this process (as last fetched)",
            registry=registry,
        )
        self.last_record = Gauge(
            "leadflow_flow_registry_last_record_timestamp_seconds",
            "When the last registry record this process applied was written (Unix time)",
            registry=registry,
        )
        self.last_applied = Gauge(
            "leadflow_flow_registry_last_applied_timestamp_seconds",
            "When this process last applied a registry record (Unix time)",
            registry=registry,
        )
        self.loaded = Gauge(
            "leadflow_flow_registry_loaded",
            "1 once this process has folded the registry up to its end",
            registry=registry,
        )


class RegistryObserver:
    """Call :meth:`observe` with the feed's registry now and then (after each
    batch a feed applied, or on a short timer): it logs and counts what changed."""

    def __init__(
        self, metrics: RegistryMetrics, service: str, clock: Callable[[], float] = time.time
    ) -> None:
        self._metrics = metrics
        self._service = service
        self._clock = clock
        self._seen = Registry()

    def observe(
        self,
        registry: Registry,
        *,
        lag: int | None = None,
        record_at: float | None = None,
        skipped: int = 0,
        quiet: bool = False,
    ) -> Changes:
        """``quiet``: count and set the gauges, but log no line per change (a
        start folding the whole registry logs one summary instead)."""
        found = changes(self._seen, registry)
        m = self._metrics
        for flow_id, version in found.published:
            record = registry.published[(flow_id, version)]
            m.applied.labels("published").inc()
            if quiet:
                continue
            log.info(
                "flow %s version %d published",
                flow_id,
                version,
                extra={
                    "service": self._service,
                    "flow_id": flow_id,
                    "flow_version": version,
                    "content_hash": record.content_hash,
                    "published_by": record.published_by,
                },
            )
        for site_id, flow_id, version in found.activated:
            m.applied.labels("activated").inc()
            if quiet:
                continue
            log.info(
                "flow %s version %d activated for %s",
                flow_id,
                version,
                f"site {site_id}" if site_id else "every site",
                extra={
                    "service": self._service,
                    "flow_id": flow_id,
                    "flow_version": version,
                    "site": site_id or "*",
                },
            )
        if found.published or found.activated:
            m.last_applied.set(self._clock())
            for flow_id in registry.flow_ids():
                m.versions.labels(flow_id).set(len(registry.versions(flow_id)))
                active = registry.active_version(flow_id)
                if active is not None:
                    m.active_version.labels(flow_id, "*").set(active)
            for (site_id, flow_id), version in registry.active.items():
                if site_id:
                    m.active_version.labels(flow_id, site_id).set(
                        registry.active_version(flow_id, site_id) or version
                    )
        if lag is not None:
            m.lag.set(lag)
        if record_at is not None:
            m.last_record.set(record_at)
        m.skipped.set(skipped)
        self._seen = registry
        return found

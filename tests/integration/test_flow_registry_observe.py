"""What a process's registry feed applied, as metrics and log lines
(services/registry/observe.py)."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry

from schemas.flow_registry import FlowActivated, FlowPublished, RegistryRecord, content_hash
from services.catalog import EXAMPLE_FLOWS_DIR
from services.log_follower_fake import MemoryLog, MemoryLogFollower
from services.registry.core import apply, fold
from services.registry.feed import RegistryFeed
from services.registry.memory import MemoryRegistryWriter
from services.registry.observe import ObservedCatalog, RegistryMetrics, RegistryObserver, changes
from services.registry.seed import read_flow_documents

SOLAR = next(d for d in read_flow_documents(EXAMPLE_FLOWS_DIR) if d["id"] == "solar-quote")


def published(version: int, text: str = "") -> FlowPublished:
    document = {**SOLAR, "version": version, "title": f"{SOLAR['title']}{text}"}
    return FlowPublished(
        flow_id="solar-quote",
        version=version,
        document=document,
        content_hash=content_hash(document),
        published_by="admin",
        published_at=1.0,
    )


def activated(version: int, site: str = "") -> FlowActivated:
    return FlowActivated(
        flow_id="solar-quote", version=version, site_id=site, activated_by="admin", activated_at=2.0
    )


def test_changes_name_new_versions_and_changed_activations_only() -> None:
    before = fold([published(1), activated(1)])
    after = fold([published(1), activated(1), published(2, " two"), activated(1, "acme")])
    found = changes(before, after)
    assert found.published == (("solar-quote", 2),)
    assert found.activated == (("acme", "solar-quote", 1),)  # "*" stayed on 1
    rolled = apply(after, activated(2))
    assert changes(after, rolled).activated == (("", "solar-quote", 2),)
    assert changes(rolled, rolled).published == ()
    assert changes(rolled, rolled).activated == ()


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


async def test_a_publish_and_a_rollback_applied_together_are_each_logged_and_counted() -> None:
    """Observed record by record through the catalog, not on a timer: a publish
    and a rollback applied in one batch are two activations."""
    log = MemoryLog(partitions=1)
    writer = MemoryRegistryWriter(log)
    prometheus = CollectorRegistry()
    observer = RegistryObserver(RegistryMetrics(prometheus), "test", clock=lambda: 5.0)
    feed: RegistryFeed

    def changed() -> None:
        observer.observe(feed.registry)

    feed = RegistryFeed(MemoryLogFollower(log), ObservedCatalog(changed), writer)
    records: list[RegistryRecord] = [published(1), activated(1)]
    await writer.append_registry(records)
    await feed.load()
    await writer.append_registry([published(2, " two"), activated(2), activated(1)])
    handler, logger = Lines(), logging.getLogger("leadflow.registry")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        await feed.load()  # folds the new records in one go, as a poll's batch would be
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    lines = handler.lines
    assert "flow solar-quote version 2 published" in lines
    assert lines.count("flow solar-quote version 2 activated for every site") == 1
    assert lines.count("flow solar-quote version 1 activated for every site") == 1
    assert sample(prometheus, "leadflow_flow_registry_applied_total", kind="activated") == 3
    assert sample(prometheus, "leadflow_flow_registry_applied_total", kind="published") == 2
    assert sample(prometheus, "leadflow_flow_active_version", flow_id="solar-quote", site="*") == 1
    assert sample(prometheus, "leadflow_flow_versions", flow_id="solar-quote") == 2
    assert sample(prometheus, "leadflow_flow_registry_last_applied_timestamp_seconds") == 5.0

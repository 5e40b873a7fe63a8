"""Flow files as registry seeds: today's deployments keep working.

At start-up every file of ``LEADFLOW_FLOWS_DIR`` is published if its content is
new for its flow (a content hash not yet in the registry) and that new version
is activated for every site, as a changed file took effect at a restart before
the registry existed. A file whose content is already published changes nothing,
not even the active version: a version activated (or rolled back to) through the
admin API stays active across restarts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from schemas.flow_errors import FlowError, InvalidFlow
from schemas.flow_registry import ALL_SITES, RegistryRecord
from schemas.flow_validation import load_flow_document
from services.catalog import FLOW_SUFFIXES
from services.registry.core import Published, Registry, apply, plan_publish

SEEDED_BY = "flows-dir"


def read_flow_documents(directory: Path) -> list[dict[str, Any]]:
    """Every flow file's document, validated; InvalidFlow listing all errors."""
    files = sorted(p for p in directory.iterdir() if p.suffix in FLOW_SUFFIXES)
    if not files:
        raise InvalidFlow([FlowError(str(directory), "", "", "no flow files found")])
    documents: list[dict[str, Any]] = []
    errors: list[FlowError] = []
    for path in files:
        try:
            documents.append(load_flow_document(path)[0])
        except InvalidFlow as exc:
            errors.extend(exc.errors)
    if errors:
        raise InvalidFlow(errors)
    return documents


def plan_seed(
    registry: Registry, documents: Iterable[Mapping[str, Any]], at: float
) -> list[RegistryRecord]:
    """The records that publish (and activate) every document with new content,
    lowest declared version first per flow."""

    def order(doc: Mapping[str, Any]) -> tuple[str, int]:
        version = doc.get("version")
        return str(doc["id"]), version if isinstance(version, int) else 0

    records: list[RegistryRecord] = []
    for doc in sorted(documents, key=order):
        plan = plan_publish(registry, doc, by=SEEDED_BY, at=at, activate_for=ALL_SITES)
        if not isinstance(plan, Published) or not plan.created:
            continue
        for record in plan.records:
            registry = apply(registry, record)
            records.append(record)
    return records

"""The flow registry as a fold over its records, and the rules for changing it. Pure.

Versions are immutable and numbered per flow. A published document keeps the
``version`` it declares when that is above every published version of its flow
(so the versions of flow files that conversations already started on stay
theirs), else it becomes the next one. Publishing content that is already a
version of the flow (same content hash) changes nothing and names that version:
publishing is idempotent. The active version of a flow for a site is the site's
own activation, else the activation for every site, else the highest version.

A draft (:class:`~schemas.flow_registry.FlowDrafted`, what a preview plays) is
kept apart: under its reserved negative number, never among the versions, never
active. Drafting content that is already drafted changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from schemas.flow_registry import (
    ALL_SITES,
    FlowActivated,
    FlowDrafted,
    FlowPublished,
    RegistryRecord,
    content_hash,
)


@dataclass(frozen=True, slots=True)
class Registry:
    published: Mapping[tuple[str, int], FlowPublished] = field(default_factory=dict)
    active: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (site, flow) -> version
    drafts: Mapping[tuple[str, int], FlowDrafted] = field(default_factory=dict)  # by draft number

    def versions(self, flow_id: str) -> list[int]:
        return sorted(v for f, v in self.published if f == flow_id)

    def latest(self, flow_id: str) -> int | None:
        versions = self.versions(flow_id)
        return versions[-1] if versions else None

    def flow_ids(self) -> list[str]:
        return sorted({f for f, _ in self.published})

    def active_version(self, flow_id: str, site_id: str = ALL_SITES) -> int | None:
        for key in ((site_id, flow_id), (ALL_SITES, flow_id)):
            version = self.active.get(key)
            if version is not None and (flow_id, version) in self.published:
                return version
        return self.latest(flow_id)

    def by_hash(self, flow_id: str, digest: str) -> FlowPublished | None:
        for (f, _), record in self.published.items():
            if f == flow_id and record.content_hash == digest:
                return record
        return None


def apply(registry: Registry, record: RegistryRecord) -> Registry:
    """The registry after ``record``. A version is never replaced: a second
    record for a published (flow, version) is ignored, as is an activation of a
    version not (yet) published, and a draft whose number is taken."""
    if isinstance(record, FlowDrafted):
        key = (record.flow_id, record.version)
        if key in registry.drafts:
            return registry
        return replace(registry, drafts={**registry.drafts, key: record})
    if isinstance(record, FlowPublished):
        key = (record.flow_id, record.version)
        if key in registry.published:
            return registry
        return replace(registry, published={**registry.published, key: record})
    if (record.flow_id, record.version) not in registry.published:
        return registry
    return replace(
        registry, active={**registry.active, (record.site_id, record.flow_id): record.version}
    )


@dataclass(frozen=True, slots=True)
class Published:
    """What a publish appends (nothing when the content is already a version)."""

    version: int
    records: tuple[RegistryRecord, ...]
    created: bool


@dataclass(frozen=True, slots=True)
class Conflict:
    """The caller's ``if_match`` is not the flow's latest version (HTTP 409)."""

    latest: int | None


def plan_publish(
    registry: Registry,
    document: Mapping[str, Any],
    *,
    by: str,
    at: float,
    activate_for: str | None = ALL_SITES,
    if_match: int | None = None,
) -> Published | Conflict:
    """The records that publish a validated ``document`` (and activate it for
    ``activate_for``, a site id or ``""`` for every site; None: do not activate)."""
    flow_id = str(document["id"])
    latest = registry.latest(flow_id)
    if if_match is not None and if_match != (latest or 0):
        return Conflict(latest)
    digest = content_hash(document)
    existing = registry.by_hash(flow_id, digest)
    records: list[RegistryRecord] = []
    if existing is not None:
        version = existing.version
    else:
        declared = document.get("version")
        floor = (latest or 0) + 1
        version = declared if isinstance(declared, int) and declared >= floor else floor
        records.append(
            FlowPublished(
                flow_id=flow_id,
                version=version,
                document={**document, "version": version},
                content_hash=digest,
                published_by=by,
                published_at=at,
            )
        )
    if activate_for is not None:
        after = registry
        for record in records:
            after = apply(after, record)
        if after.active.get((activate_for, flow_id)) != version or existing is None:
            records.append(_activation(flow_id, version, activate_for, by, at))
    return Published(version, tuple(records), created=existing is None)


@dataclass(frozen=True, slots=True)
class Drafted:
    """What a draft appends (nothing when the content is drafted already)."""

    record: FlowDrafted
    created: bool


@dataclass(frozen=True, slots=True)
class DraftCollision:
    """Another draft of the flow has this content's number (about 1 in 2**31 per pair)."""

    version: int


def plan_draft(
    registry: Registry, document: Mapping[str, Any], *, by: str, at: float
) -> Drafted | DraftCollision:
    """The record that makes a validated ``document`` a draft, playable in a preview."""
    flow_id = str(document["id"])
    digest = content_hash(document)
    record = FlowDrafted(
        flow_id=flow_id, content_hash=digest, document=dict(document), drafted_by=by, drafted_at=at
    )
    existing = registry.drafts.get((flow_id, record.version))
    if existing is None:
        return Drafted(record, created=True)
    if existing.content_hash != digest:
        return DraftCollision(record.version)
    return Drafted(existing, created=False)


@dataclass(frozen=True, slots=True)
class UnknownVersion:
    flow_id: str
    version: int


def plan_activate(
    registry: Registry, flow_id: str, version: int, site_id: str, *, by: str, at: float
) -> FlowActivated | UnknownVersion:
    """The record that makes ``version`` the active one for ``site_id`` (rollback
    is activating an older version)."""
    if (flow_id, version) not in registry.published:
        return UnknownVersion(flow_id, version)
    return _activation(flow_id, version, site_id, by, at)


def _activation(flow_id: str, version: int, site_id: str, by: str, at: float) -> FlowActivated:
    return FlowActivated(
        flow_id=flow_id, version=version, site_id=site_id, activated_by=by, activated_at=at
    )


def fold(records: list[RegistryRecord] | tuple[RegistryRecord, ...]) -> Registry:
    registry = Registry()
    for record in records:
        registry = apply(registry, record)
    return registry

"""Flows and snapshots: a flow's decision points, the check that a snapshot fits the
flows served here (or, for the fit schedule, a flow version's points), and the
uniform snapshot of a flow without a fit."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import numpy as np

from policy.features import FEATURE_NAMES
from policy.snapshot import Guardrails, PointPosterior, PolicySnapshot, SnapshotError
from policy.thompson import check_snapshot
from schemas.flow import Flow
from services.catalog import FlowCatalog

if TYPE_CHECKING:
    from policy.reward_counts import FlowCounts


def decision_points(flow: Flow) -> dict[tuple[str, str], tuple[str, ...]]:
    return {
        (node.id, button.id): button.next
        for node in flow.nodes.values()
        for button in node.buttons
        if button.is_decision_point
    }


def catalog_points(
    catalog: FlowCatalog | None, flow_id: str, flow_version: int
) -> dict[tuple[str, str], tuple[str, ...]] | None:
    """The flow version's decision points; None when the catalog does not have it."""
    flow = catalog.get(flow_id, flow_version) if catalog is not None else None
    return decision_points(flow) if flow is not None else None


def points_to_check(
    catalog: FlowCatalog | None, flow_id: str, flow_version: int, counts: FlowCounts
) -> Mapping[tuple[str, str], tuple[str, ...]]:
    """A snapshot must match the flow version's decision points (those the catalog
    has, else a copy of those the counts saw)."""
    points = catalog_points(catalog, flow_id, flow_version)
    return points if points is not None else dict(counts.candidates)


def flow_checker(catalog: FlowCatalog) -> Callable[[PolicySnapshot], None]:
    """Refuses (SnapshotError) a snapshot for a flow version the catalog does not
    serve, or whose decision points do not match it."""

    def check(snapshot: PolicySnapshot) -> None:
        flow = catalog.get(snapshot.flow_id, snapshot.flow_version)
        if flow is None:
            raise SnapshotError(
                f"snapshot {snapshot.version}: flow {snapshot.flow_id}@{snapshot.flow_version}"
                " is not served here"
            )
        check_snapshot(snapshot, decision_points(flow))

    return check


def uniform_snapshot(flow: Flow, version: str, at: float, rails: Guardrails) -> PolicySnapshot:
    """A snapshot under which Thompson sampling is exactly uniform: at a point with k
    candidates, k draws, candidate i the best in draw i. With the kill switch on it
    takes the default edges; a flow without a fit gets one when it is killed."""
    points = {
        key: PointPosterior(
            node_id=key[0],
            button_id=key[1],
            candidates=candidates,
            base=np.eye(len(candidates), dtype=np.float32),
            slopes=np.zeros((len(candidates), len(candidates), len(FEATURE_NAMES)), np.float32),
        )
        for key, candidates in decision_points(flow).items()
    }
    return PolicySnapshot(
        flow_id=flow.id,
        flow_version=flow.version,
        version=version,
        created_at=at,
        points=points,
        guardrails=rails,
        diagnostics={"kind": "uniform"},
    )

"""How the fit schedule publishes, and what each publication changes in its memory.

Publishing is a callable (:data:`Publish`): the Kafka publisher in the
distributed mode, an install into the in-process policy in the embedded mode.
Every snapshot gets a ``created_at`` strictly greater than the last one's (a
processor installs a snapshot only if it is newer). Between fits the schedule
publishes *derived* snapshots, numbered ``{fitted version}.{n}``: the update of
the fit with the outcomes counted since it (an :data:`Update`, the conjugate
one by default: :func:`policy.fitting.conjugate_update`), or the published
snapshot with new guardrails. A killed flow without a fit gets the uniform
snapshot with the kill switch on.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable

from policy.fit_versions import fit_version
from policy.flow_fit import FlowFit
from policy.flow_snapshots import points_to_check, uniform_snapshot
from policy.reward_counts import FlowCounts
from policy.snapshot import Guardrails, PolicySnapshot
from policy.thompson import check_snapshot
from services.catalog import FlowCatalog

log = logging.getLogger("leadflow.policy.fitting")

Publish = Callable[[PolicySnapshot], Awaitable[object]]
# (fitted snapshot, outcomes counted since its fit, new version, created at) -> updated one
Update = Callable[[PolicySnapshot, FlowCounts, str, float], PolicySnapshot]
GuardrailsFor = Callable[[str], Guardrails]


class SchedulePublisher:
    """The schedule's publications: ``guardrails`` gives a flow's current ones
    (the schedule's, overrides included); ``clock`` is monotonic (when a flow was
    last published), ``wall`` the time the versions and ``created_at`` read."""

    def __init__(
        self,
        publish: Publish,
        guardrails: GuardrailsFor,
        catalog: FlowCatalog | None,
        *,
        clock: Callable[[], float],
        wall: Callable[[], float],
    ) -> None:
        self._publish = publish
        self._guardrails = guardrails
        self._catalog = catalog
        self._clock = clock
        self._wall = wall
        self._last_created_at = 0.0

    def created_at(self) -> float:
        """Strictly increasing: a processor installs a snapshot only if it is newer."""
        at = max(self._wall(), self._last_created_at + 0.001)
        self._last_created_at = at
        return at

    async def checked(self, snapshot: PolicySnapshot, counts: FlowCounts) -> None:
        """Publish a fit's snapshot once it matches the flow version's decision points
        (:func:`~policy.flow_snapshots.points_to_check`; raises if it does not)."""
        check_snapshot(
            snapshot,
            points_to_check(self._catalog, snapshot.flow_id, snapshot.flow_version, counts),
        )
        await self._publish(snapshot)

    async def update(
        self, flow_id: str, state: FlowFit, counts: FlowCounts, update: Update
    ) -> None:
        """Publish the update of the flow's fit with the outcomes counted since it."""
        assert state.fitted is not None and state.fit_counts is not None
        delta = counts.since(state.fit_counts)
        state.revision += 1
        version = f"{state.fitted.version}.{state.revision}"
        try:
            updated = update(state.fitted, delta, version, self.created_at())
        except Exception:
            log.exception("policy update failed", extra={"policy_version": version})
            state.updated_at = self._clock()
            return
        updated = dataclasses.replace(updated, guardrails=self._guardrails(flow_id))
        await self.derived(state, updated, "update", counts.trials())

    async def derive(
        self, flow_id: str, state: FlowFit, base: PolicySnapshot, why: str
    ) -> PolicySnapshot:
        """Publish ``base`` again as the fit's next revision, with the flow's guardrails."""
        state.revision += 1
        fitted = state.fitted.version if state.fitted is not None else base.version
        snapshot = dataclasses.replace(
            base,
            version=f"{fitted}.{state.revision}",
            created_at=self.created_at(),
            guardrails=self._guardrails(flow_id),
        )
        await self.derived(state, snapshot, why, state.updated_trials)
        return snapshot

    async def derived(
        self, state: FlowFit, snapshot: PolicySnapshot, why: str, trials: int
    ) -> None:
        """Publish a snapshot between fits, reflecting ``trials`` outcomes."""
        await self._publish(snapshot)
        state.published = snapshot
        state.updated_at = self._clock()
        state.updated_trials = trials
        log.info(
            "policy snapshot %s published",
            why,
            extra={
                "flow_id": snapshot.flow_id,
                "flow_version": snapshot.flow_version,
                "policy_version": snapshot.version,
                "outcomes": trials,
            },
        )

    async def kill_without_fit(self, flow_id: str, state: FlowFit) -> PolicySnapshot | None:
        """A killed flow without a fitted snapshot still has to take its default edges:
        publish a uniform snapshot with the kill switch on (needs the catalog)."""
        rails = self._guardrails(flow_id)
        flow = self._catalog.latest(flow_id) if self._catalog is not None else None
        if not rails.killed or flow is None or state.published is not None:
            return None
        at = self._wall()
        snapshot = uniform_snapshot(flow, fit_version(flow.id, flow.version, at), at, rails)
        snapshot = dataclasses.replace(snapshot, created_at=self.created_at())
        await self._publish(snapshot)
        state.flow_version = flow.version
        state.published = snapshot
        log.info(
            "policy kill switch published",
            extra={"flow_id": flow_id, "policy_version": snapshot.version},
        )
        return snapshot

"""One fit of a flow version: the request, the worker's report, what is published.

The fit (``policy.model.fit_flow``: PyMC, seconds to minutes) runs in a worker
process (:class:`policy.fit_worker.ProcessFitter`) while the event loop goes on
counting. A fit that passes its diagnostics and matches the flow version's
decision points is published, re-seeds the flow's online learner and restarts
the refit clock; a fit that fails its diagnostics or crashes publishes nothing
and is retried ``refit_seconds`` later (with new outcomes or not: another seed
may pass). A fit refused by its diagnostics is judged by
:mod:`policy.fit_verdict`: a few divergences (under 1% of the transitions) or a
failed fit publish the online posterior instead, so a refused fit never leaves
a flow uniform while the learner has data.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable

from policy.fit_request import Fit, FitFailed, FitReport, FitRequest
from policy.fit_verdict import verdict_from_diagnostics
from policy.fit_versions import fit_seed, fit_version
from policy.flow_fit import FlowFit
from policy.flow_snapshots import catalog_points
from policy.reward_counts import FlowCounts
from policy.schedule_learners import ScheduleLearners
from policy.schedule_publisher import GuardrailsFor, SchedulePublisher
from policy.settings import FitSettings, Schedule
from policy.snapshot import PolicySnapshot
from services.catalog import FlowCatalog

log = logging.getLogger("leadflow.policy.fitting")


class FitRunner:
    """Runs the schedule's fits (one at a time: the schedule starts them) and keeps
    the flow's :class:`~policy.flow_fit.FlowFit` in step with each."""

    def __init__(
        self,
        schedule: Schedule,
        fit_settings: FitSettings,
        catalog: FlowCatalog | None,
        *,
        publisher: SchedulePublisher,
        learners: ScheduleLearners,
        guardrails: GuardrailsFor,
        clock: Callable[[], float],
        wall: Callable[[], float],
    ) -> None:
        self._schedule = schedule
        self._fit_settings = fit_settings
        self._catalog = catalog
        self._publisher = publisher
        self._learners = learners
        self._guardrails = guardrails
        self._clock = clock
        self._wall = wall

    async def run(
        self,
        fit: Fit,
        state: FlowFit,
        flow_id: str,
        flow_version: int,
        counts: FlowCounts,
        reason: str,
    ) -> None:
        """Ask ``fit`` for the flow version on ``counts`` (a copy; ``reason``: why it
        is due) and publish its snapshot, or its fallback."""
        state.attempted_version = flow_version
        state.attempted_trials = counts.trials()
        state.attempted_at = self._clock()
        state.attempt_failed = True  # until it is published
        version = fit_version(flow_id, flow_version, self._wall())
        request = FitRequest(
            flow_id=flow_id,
            flow_version=flow_version,
            counts=counts,
            version=version,
            seed=fit_seed(version),
            guardrails=self._guardrails(flow_id),
            points=catalog_points(self._catalog, flow_id, flow_version),
            options=self._fit_settings.options(),
        )
        log.info(
            "policy fit started",
            extra={
                "flow_id": flow_id,
                "flow_version": flow_version,
                "policy_version": version,
                "reason": reason,
                "outcomes": counts.trials(),
                "conversations": counts.conversations,
            },
        )
        report = await self._ask(fit, request, state)
        if report is None:
            return
        state.last_diagnostics = dict(report.diagnostics)
        state.last_fit_seconds = report.seconds
        if report.snapshot is None:
            await self._refused(state, request, report)
            return
        await self._publish(state, request, report, report.snapshot, reason)

    async def _ask(self, fit: Fit, request: FitRequest, state: FlowFit) -> FitReport | None:
        """The fit's report; None when it did not come back (counted as a failure)."""
        try:
            return await fit(request)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            state.failures += 1
            state.last_reason = f"fit failed: {exc}"
            log.error(
                "policy fit failed: %s",
                exc,
                extra={"flow_id": request.flow_id, "policy_version": request.version},
                exc_info=not isinstance(exc, FitFailed),
            )
            return None

    async def _refused(self, state: FlowFit, request: FitRequest, report: FitReport) -> None:
        state.failures += 1
        state.last_reason = report.reason or "no snapshot"
        await self._fall_back(state, request, report)
        log.warning(
            "policy fit not published: %s",
            state.last_reason,
            extra={
                "flow_id": request.flow_id,
                "policy_version": request.version,
                "diagnostics": state.last_diagnostics,
                "seconds": round(report.seconds, 2),
            },
        )

    async def _fall_back(self, state: FlowFit, request: FitRequest, report: FitReport) -> None:
        """A refused fit publishes the online posterior when the verdict says so."""
        learner = state.learner
        online = (
            self._learners.config is not None
            and learner is not None
            and learner.flow_version == request.flow_version
            and learner.outcomes > 0
        )
        verdict = verdict_from_diagnostics(report.diagnostics, online_available=online)
        if verdict.publish != "online" or not online:
            return
        state.online_root = f"{request.version}.online"
        state.revision = 0
        published = await self._learners.publish(
            request.flow_id, "fallback", request.counts.trials()
        )
        if published is not None:
            state.attempt_failed = False  # the refit waits for new outcomes, as after a fit
            log.info(
                "online posterior published instead of the refused fit: %s",
                verdict.reason,
                extra={"flow_id": request.flow_id, "policy_version": published.version},
            )

    async def _publish(
        self,
        state: FlowFit,
        request: FitRequest,
        report: FitReport,
        fitted: PolicySnapshot,
        reason: str,
    ) -> None:
        """Publish the fit's snapshot (stamped, with the flow's current guardrails) and
        make it the flow's fit; a kept learner's posterior follows at once."""
        flow_id, counts = request.flow_id, request.counts
        snapshot = dataclasses.replace(
            fitted,
            created_at=self._publisher.created_at(),
            guardrails=self._guardrails(flow_id),
        )
        try:
            await self._publisher.checked(snapshot, counts)
        except Exception as exc:
            state.failures += 1
            state.last_reason = f"not published: {exc}"
            log.error(
                "policy fit not published: %s", exc, extra={"policy_version": snapshot.version}
            )
            return
        state.flow_version = request.flow_version
        state.fit_counts = counts
        kept = self._learners.reseed(state, snapshot, counts)
        state.fitted = snapshot
        state.published = snapshot
        state.updated_at = self._clock()
        state.updated_trials = counts.trials()
        state.revision = 0
        state.fits += 1
        state.attempt_failed = False
        state.last_reason = None
        if kept and self._schedule.update_seconds > 0:
            # the learner knows more than the fit: its posterior follows at once
            # (unless publications between fits are off: then the fit stands)
            await self._learners.publish(flow_id, "update", counts.trials())
        log.info(
            "policy fit published",
            extra={
                "flow_id": flow_id,
                "flow_version": request.flow_version,
                "policy_version": snapshot.version,
                "reason": reason,
                "outcomes": counts.trials(),
                "seconds": round(report.seconds, 2),
                "diagnostics": state.last_diagnostics,
            },
        )

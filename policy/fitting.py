"""The fitting schedule: reward counts -> fits in a worker process -> published snapshots.

:class:`FitScheduler` looks at the :class:`~policy.rewards.RewardLedger` every
``tick_seconds`` and, per flow:

* counts only what the ledger counted: final outcomes, in the order their
  conversations started, so neither the first fit nor the outcomes that trigger a
  refit or an update ever hold leads whose conversations' peers are still open
  (their failures are not known yet; before, the first fit saw about 100% leads);

* picks the flow version to learn for: the newest one with enough outcomes (a
  flow has one snapshot at a time, keyed by flow id);
* **fits** it when it has ``min_outcomes`` outcomes the last fit did not see and
  either ``refit_seconds`` passed since that fit or ``refit_outcomes`` (if set)
  new outcomes arrived. The fit (``policy.model.fit_flow``: PyMC, seconds to
  minutes) runs in a worker process (:class:`policy.fit_worker.ProcessFitter`), one at a time,
  while the event loop goes on counting; a fit that fails its diagnostics or
  crashes publishes nothing and is retried ``refit_seconds`` later (with new
  outcomes or not: another seed may pass);
* does not fit a killed flow (it takes its default edges);
* between fits, every ``update_seconds``, **updates** the fitted snapshot with
  the outcomes counted since the fit and publishes it as a new version: with an
  online learner (``online``, :mod:`policy.online`) its posterior, which learns
  from every counted decision with the visitor's answers, forgets (a half-life
  in conversations) and is re-seeded from each fit; without one, the conjugate
  update of the fit (:mod:`policy.conjugate`);
* a fit refused by its diagnostics is judged by :mod:`policy.fit_verdict`: a
  few divergences (under 1% of the transitions) or a failed fit publish the
  online posterior instead, so a refused fit never leaves a flow uniform while
  the learner has data.

Publishing is a callable: the Kafka publisher in the distributed mode, an
install into the in-process policy in the embedded mode. Only a *leading*
schedule fits and publishes (:attr:`FitScheduler.leading`; the embedded mode
always leads). A standby (the distributed policy service's second instance,
:mod:`policy.leader_kafka`) keeps learning from the ledger and *adopts* every
snapshot the leader publishes (:meth:`FitScheduler.adopt`: a fit re-seeds its
learner and restarts the refit clock, an update advances the revision), so that
on taking over it publishes the next update of the leader's fit, numbered after
the leader's last one, and refits on the leader's schedule. Versions read
``{flow}@{flow_version}#{UTC time of the fit}`` for a fit and
``...#{time}.{n}`` for its n-th update (or guardrail change). Nothing here
imports PyMC: the worker process imports ``policy.model`` itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from policy.fit_request import Fit, FitFailed, FitReport, FitRequest
from policy.fit_timing import conjugate_update_due, fit_due, fit_target, online_update_due
from policy.fit_verdict import verdict_from_diagnostics
from policy.fit_versions import fit_seed, fit_version, is_fit_snapshot, split_version
from policy.flow_fit import FlowFit
from policy.flow_snapshots import catalog_points, points_to_check
from policy.online import OnlineConfig, OnlineLearner, Outcome
from policy.rewards import DecisionOutcome, FlowCounts, FlowKey, RewardLedger
from policy.schedule_publisher import GuardrailsFor, Publish, SchedulePublisher, Update
from policy.settings import FitSettings, Schedule
from policy.snapshot import (
    Guardrails,
    PolicySnapshot,
)
from policy.thompson import check_snapshot
from services.catalog import FlowCatalog

log = logging.getLogger("leadflow.policy.fitting")


# ---- the schedule ------------------------------------------------------------------------


class FitScheduler:
    def __init__(
        self,
        ledger: RewardLedger,
        schedule: Schedule,
        fit_settings: FitSettings,
        guardrails: GuardrailsFor,
        fit: Fit,
        publish: Publish,
        update: Update | None = None,
        *,
        catalog: FlowCatalog | None = None,
        online: OnlineConfig | None = None,
        before_tick: Callable[[], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.ledger = ledger
        self.schedule = schedule
        self.fit_settings = fit_settings
        self._guardrails = guardrails
        self._overrides: dict[str, Guardrails] = {}
        self._fit = fit
        self._update = update
        self._catalog = catalog
        if online is None and schedule.online:
            online = schedule.online_config()
        self._online = online
        self._before_tick = before_tick
        self._clock = clock
        self._wall = wall
        self.flows: dict[str, FlowFit] = {}
        self._learning = threading.Lock()  # the learners: see _learn
        self.fitting: asyncio.Task[None] | None = None
        self._publisher = SchedulePublisher(
            publish, self.guardrails, catalog, clock=clock, wall=wall
        )
        self.leading = True  # False: a standby that learns and adopts, never publishes

    @property
    def role(self) -> str:
        return "leader" if self.leading else "standby"

    # -- guardrails -------------------------------------------------------------------------

    def guardrails(self, flow_id: str) -> Guardrails:
        return self._overrides.get(flow_id) or self._guardrails(flow_id)

    async def set_guardrails(self, flow_id: str, rails: Guardrails) -> PolicySnapshot | None:
        """Use ``rails`` for the flow from now on; republishes its snapshot with them
        (a new version: propensities change). None when the flow has no snapshot yet."""
        self._overrides[flow_id] = rails
        if not self.leading:
            return None  # the leader publishes it
        state = self.flows.get(flow_id)
        if state is None or state.published is None:
            return await self._kill_without_fit(flow_id)
        return await self._publisher.derive(flow_id, state, state.published, "guardrails")

    # -- decisions (pure given the ledger and the clock) ------------------------------------

    def target(self, flow_id: str, versions: Mapping[int, FlowCounts]) -> int | None:
        """The flow version to fit (:func:`~policy.fit_timing.fit_target`)."""
        return fit_target(self.flows.get(flow_id), versions, self.schedule)

    def due(self, flow_id: str, flow_version: int, counts: FlowCounts, now: float) -> str | None:
        """Why the flow version should be fitted now, or None
        (:func:`~policy.fit_timing.fit_due`)."""
        return fit_due(self.flows.get(flow_id), flow_version, counts, now, self.schedule)

    def update_due(self, flow_id: str, counts: FlowCounts, now: float) -> bool:
        """Whether to publish between fits: the online learner's posterior with a
        learner, else the conjugate update of the fit (with an update function)."""
        state = self.flows.get(flow_id)
        if self._online is not None:
            return online_update_due(state, now, self.schedule)
        return self._update is not None and conjugate_update_due(state, counts, now, self.schedule)

    def _by_flow(self) -> dict[str, dict[int, FlowCounts]]:
        out: dict[str, dict[int, FlowCounts]] = {}
        for key, counts in self.ledger.flows.items():
            out.setdefault(key.flow_id, {})[key.flow_version] = counts
        return out

    # -- the loop -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Tick until cancelled (then the running fit, if any, is cancelled too)."""
        try:
            while True:
                try:
                    await self.tick()
                except Exception:
                    log.exception("policy schedule tick failed")
                await asyncio.sleep(self.schedule.tick_seconds)
        finally:
            if self.fitting is not None:
                self.fitting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self.fitting

    async def tick(self) -> None:
        """One look at the counts: start at most one fit, publish due updates."""
        if self._before_tick is not None:
            self._before_tick()
        if self._online is not None:
            taken = self.ledger.take_outcomes()
            if taken:  # off the event loop: with pairs a batch is tens of ms of numpy
                await asyncio.to_thread(self._learn, taken)
        if not self.leading:
            return
        now = self._clock()
        fitting = self.fitting is not None and not self.fitting.done()
        for flow_id in self._catalog.ids() if self._catalog is not None else ():
            state = self.flows.get(flow_id)
            if (state is None or state.published is None) and self.guardrails(flow_id).killed:
                await self._kill_without_fit(flow_id)
        for flow_id, versions in sorted(self._by_flow().items()):
            version = self.target(flow_id, versions)
            if version is None or self.guardrails(flow_id).killed:
                continue  # a killed flow takes its default edges: nothing to learn
            counts = versions[version]
            reason = None if fitting else self.due(flow_id, version, counts, now)
            if reason is not None:
                self.flows.setdefault(flow_id, FlowFit()).since_request = []
                self.fitting = asyncio.create_task(
                    self._run_fit(flow_id, version, counts.copy(), reason), name=f"fit-{flow_id}"
                )
                fitting = True
            elif self.update_due(flow_id, counts, now):
                if self._online is not None:
                    await self._publish_online(flow_id, "update", counts.trials())
                else:
                    await self._update_flow(flow_id, counts)

    # -- the online learner ---------------------------------------------------------------

    def _learn(self, taken: Mapping[FlowKey, list[DecisionOutcome]]) -> None:
        """Hand the newly counted decisions to each flow's learner (created, with the
        prior, for the newest flow version that has outcomes). The schedule's tick
        runs it in a worker thread, so that the event loop keeps answering visitors
        (learning a batch with context pairs and the change detector is tens of ms of
        numpy; the GIL is handed back to the loop every few hundred microseconds):
        whatever else touches a learner holds ``_learning`` too."""
        with self._learning:
            self._learn_now(taken)

    def _learn_now(self, taken: Mapping[FlowKey, list[DecisionOutcome]]) -> None:
        for key, decided in sorted(taken.items()):
            state = self.flows.setdefault(key.flow_id, FlowFit())
            learner = state.learner
            if learner is None or learner.flow_version < key.flow_version:
                points = catalog_points(self._catalog, key.flow_id, key.flow_version)
                counts = self.ledger.flows.get(key)
                if points is None:
                    points = dict(counts.candidates) if counts is not None else {}
                learner = OnlineLearner(key.flow_id, key.flow_version, points, self._online)
                state.learner, state.learned, state.changes_published = learner, 0, 0
            elif learner.flow_version > key.flow_version:
                continue  # an older version's stragglers
            batch = [
                Outcome(o.conversation_id, o.node_id, o.button_id, o.edge, o.cell, o.answers,
                        o.success)
                for o in decided
            ]  # fmt: skip
            learner.observe(batch)
            if self.fitting is not None and not self.fitting.done():
                state.since_request.extend(batch)

    def _reseed(self, state: FlowFit, snapshot: PolicySnapshot, counts: FlowCounts) -> bool:
        """A published fit anchors the learner: its posterior, tempered to the
        forgetting horizon, plus what was counted while it ran; unless the
        learner knows more than the fit (context pairs the fit has not, or a
        change it detected: ``OnlineLearner.keeps_over``), which keeps it as it
        is. True when the learner was kept (its posterior is due at once)."""
        if self._online is None:
            return False
        with self._learning:
            return self._reseed_now(state, snapshot, counts)

    def _reseed_now(self, state: FlowFit, snapshot: PolicySnapshot, counts: FlowCounts) -> bool:
        assert self._online is not None
        kept = state.learner
        if (
            kept is not None
            and kept.flow_version == snapshot.flow_version
            and kept.keeps_over(snapshot)
        ):
            state.since_request = []  # the learner has them already
            kept.anchor = str(snapshot.diagnostics.get("fit_version", snapshot.version))
            state.learned = 0
            state.online_root = snapshot.version
            return True
        learner = OnlineLearner.from_snapshot(
            snapshot, self._online, conversations=counts.conversations
        )
        if state.since_request:
            learner.observe(state.since_request)
        state.since_request = []
        state.learner, state.learned, state.changes_published = learner, 0, 0
        state.online_root = snapshot.version
        return False

    async def _publish_online(self, flow_id: str, why: str, trials: int) -> PolicySnapshot | None:
        state = self.flows[flow_id]
        learner = state.learner
        if learner is None:
            return None
        state.revision += 1
        root = state.online_root or fit_version(flow_id, learner.flow_version, self._wall())
        version = f"{root}.{state.revision}"
        created_at, guardrails = self._publisher.created_at(), self.guardrails(flow_id)
        counts = self.ledger.flows.get(FlowKey(flow_id, learner.flow_version), FlowCounts())
        points = points_to_check(self._catalog, flow_id, learner.flow_version, counts)

        def derive() -> tuple[PolicySnapshot, int, int]:
            with self._learning:
                derived, outcomes, changes = (
                    learner.snapshot(version, created_at, guardrails),
                    learner.outcomes,
                    learner.changes,
                )
            check_snapshot(derived, points)
            return derived, outcomes, changes

        try:  # off the event loop, like learning: it waits for a batch being learnt
            snapshot, learned, changes = await asyncio.to_thread(derive)
        except Exception:
            log.exception("online snapshot not published", extra={"policy_version": version})
            state.updated_at = self._clock()
            return None
        await self._publisher.derived(state, snapshot, why, trials)
        state.flow_version = learner.flow_version
        state.learned = learned  # what this snapshot holds, not what was learnt since
        state.changes_published = changes
        return snapshot

    async def idle(self) -> None:
        """Wait for the running fit (if any) to be handled."""
        if self.fitting is not None:
            await asyncio.shield(self.fitting)

    async def _run_fit(
        self, flow_id: str, flow_version: int, counts: FlowCounts, reason: str
    ) -> None:
        state = self.flows.setdefault(flow_id, FlowFit())
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
            guardrails=self.guardrails(flow_id),
            points=catalog_points(self._catalog, flow_id, flow_version),
            options=self.fit_settings.options(),
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
        try:
            report = await self._fit(request)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            state.failures += 1
            state.last_reason = f"fit failed: {exc}"
            log.error(
                "policy fit failed: %s",
                exc,
                extra={"flow_id": flow_id, "policy_version": version},
                exc_info=not isinstance(exc, FitFailed),
            )
            return
        state.last_diagnostics = dict(report.diagnostics)
        state.last_fit_seconds = report.seconds
        if report.snapshot is None:
            state.failures += 1
            state.last_reason = report.reason or "no snapshot"
            await self._fall_back(flow_id, flow_version, state, report, version, counts)
            log.warning(
                "policy fit not published: %s",
                state.last_reason,
                extra={
                    "flow_id": flow_id,
                    "policy_version": version,
                    "diagnostics": state.last_diagnostics,
                    "seconds": round(report.seconds, 2),
                },
            )
            return
        snapshot = dataclasses.replace(
            report.snapshot,
            created_at=self._publisher.created_at(),
            guardrails=self.guardrails(flow_id),
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
        state.flow_version = flow_version
        state.fit_counts = counts
        kept = self._reseed(state, snapshot, counts)
        state.fitted = snapshot
        state.published = snapshot
        state.updated_at = self._clock()
        state.updated_trials = counts.trials()
        state.revision = 0
        state.fits += 1
        state.attempt_failed = False
        state.last_reason = None
        if kept and self.schedule.update_seconds > 0:
            # the learner knows more than the fit: its posterior follows at once
            # (unless publications between fits are off: then the fit stands)
            await self._publish_online(flow_id, "update", counts.trials())
        log.info(
            "policy fit published",
            extra={
                "flow_id": flow_id,
                "flow_version": flow_version,
                "policy_version": snapshot.version,
                "reason": reason,
                "outcomes": counts.trials(),
                "seconds": round(report.seconds, 2),
                "diagnostics": state.last_diagnostics,
            },
        )

    async def _fall_back(
        self,
        flow_id: str,
        flow_version: int,
        state: FlowFit,
        report: FitReport,
        version: str,
        counts: FlowCounts,
    ) -> None:
        """A refused fit publishes the online posterior when the verdict says so."""
        learner = state.learner
        online = (
            self._online is not None
            and learner is not None
            and learner.flow_version == flow_version
            and learner.outcomes > 0
        )
        verdict = verdict_from_diagnostics(report.diagnostics, online_available=online)
        if verdict.publish != "online" or not online:
            return
        state.online_root = f"{version}.online"
        state.revision = 0
        published = await self._publish_online(flow_id, "fallback", counts.trials())
        if published is not None:
            state.attempt_failed = False  # the refit waits for new outcomes, as after a fit
            log.info(
                "online posterior published instead of the refused fit: %s",
                verdict.reason,
                extra={"flow_id": flow_id, "policy_version": published.version},
            )

    async def _update_flow(self, flow_id: str, counts: FlowCounts) -> None:
        assert self._update is not None
        await self._publisher.update(flow_id, self.flows[flow_id], counts, self._update)

    async def _kill_without_fit(self, flow_id: str) -> PolicySnapshot | None:
        state = self.flows.setdefault(flow_id, FlowFit())
        return await self._publisher.kill_without_fit(flow_id, state)

    # -- a standby follows the leader ------------------------------------------------------

    def adopt(self, snapshot: PolicySnapshot) -> None:
        """Take ``snapshot``, published by the leader, as this schedule's own (a
        standby's; a leading schedule ignores it: it is its own publication).

        A fit (:func:`~policy.fit_versions.is_fit_snapshot`) becomes the flow's
        fit: the outcomes counted so far are handed to the learners first, then
        the flow's learner is re-seeded from the fit (as the leader did when it
        published it) and the refit clock restarts. Any other snapshot advances
        the revision to its own, so that the next update this schedule
        publishes after a takeover is numbered after it."""
        if self.leading:
            return
        root, revision = split_version(snapshot.version)
        state = self.flows.setdefault(snapshot.flow_id, FlowFit())
        key = FlowKey(snapshot.flow_id, snapshot.flow_version)
        if revision is None and is_fit_snapshot(snapshot):
            if self._online is not None:
                self._learn(self.ledger.take_outcomes())
            counts = self.ledger.flows.get(key, FlowCounts()).copy()
            self._reseed(state, snapshot, counts)
            state.fitted, state.fit_counts = snapshot, counts
            state.attempted_version, state.attempted_at = snapshot.flow_version, self._clock()
            state.attempted_trials = state.updated_trials = counts.trials()
            state.attempt_failed = False
            state.revision = 0
        elif revision is not None:
            state.revision = max(state.revision, revision)
            if state.learner is not None:
                state.online_root = root
        if state.learner is not None and state.learner.flow_version == snapshot.flow_version:
            state.learned = state.learner.outcomes
        state.flow_version = snapshot.flow_version
        state.published = snapshot
        state.updated_at = self._clock()

    def status(self) -> dict[str, Any]:
        """What the schedule knows, per flow: for /flows/{id}/summary and the logs."""
        return {
            flow_id: state.status(self.guardrails(flow_id))
            for flow_id, state in sorted(self.flows.items())
        }


def conjugate_update() -> Update | None:
    """The in-process update between fits (``policy.conjugate``, numpy only)."""
    try:
        from policy.conjugate import update_snapshot
    except ImportError:
        log.warning("policy.conjugate is missing: snapshots change only with fits")
        return None
    return update_snapshot

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

The parts: what a fit is asked and answers (:mod:`policy.fit_request`), the
versions and the fit's seed (:mod:`policy.fit_versions`), a flow's memory
(:mod:`policy.flow_fit`), when a fit or an update is due
(:mod:`policy.fit_timing`, pure), one fit and its fallback
(:mod:`policy.fit_run`), the online learners (:mod:`policy.schedule_learners`)
and the publications (:mod:`policy.schedule_publisher`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from policy.fit_request import Fit
from policy.fit_run import FitRunner
from policy.fit_timing import conjugate_update_due, fit_due, fit_target, online_update_due
from policy.fit_versions import is_fit_snapshot, split_version
from policy.flow_fit import FlowFit
from policy.online_config import OnlineConfig
from policy.reward_counts import FlowCounts, FlowKey
from policy.rewards import RewardLedger
from policy.schedule_learners import ScheduleLearners
from policy.schedule_publisher import GuardrailsFor, Publish, SchedulePublisher, Update
from policy.settings import FitSettings, Schedule
from policy.snapshot import Guardrails, PolicySnapshot
from services.catalog import FlowCatalog

log = logging.getLogger("leadflow.policy.fitting")


class FitScheduler:
    """The schedule: it keeps each flow's :class:`~policy.flow_fit.FlowFit` in
    ``flows``, decides at every tick (:mod:`policy.fit_timing`) and hands the
    work to what it owns: the fit runner (:class:`~policy.fit_run.FitRunner`),
    the online learners (:class:`~policy.schedule_learners.ScheduleLearners`)
    and the publisher (:class:`~policy.schedule_publisher.SchedulePublisher`)."""

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
        self.flows: dict[str, FlowFit] = {}
        self.fitting: asyncio.Task[None] | None = None
        self._publisher = SchedulePublisher(
            publish, self.guardrails, catalog, clock=clock, wall=wall
        )
        self._learners = ScheduleLearners(
            online,
            self.flows,
            ledger,
            catalog,
            publisher=self._publisher,
            guardrails=self.guardrails,
            fit_running=self._fit_running,
            clock=clock,
            wall=wall,
        )
        self._learning = self._learners.lock  # held by whatever touches a learner
        self._runner = FitRunner(
            schedule,
            fit_settings,
            catalog,
            publisher=self._publisher,
            learners=self._learners,
            guardrails=self.guardrails,
            clock=clock,
            wall=wall,
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
                await asyncio.to_thread(self._learners.learn, taken)
        if not self.leading:
            return
        now = self._clock()
        fitting = self._fit_running()
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
                    await self._learners.publish(flow_id, "update", counts.trials())
                else:
                    await self._update_flow(flow_id, counts)

    async def idle(self) -> None:
        """Wait for the running fit (if any) to be handled."""
        if self.fitting is not None:
            await asyncio.shield(self.fitting)

    def _fit_running(self) -> bool:
        return self.fitting is not None and not self.fitting.done()

    async def _run_fit(
        self, flow_id: str, flow_version: int, counts: FlowCounts, reason: str
    ) -> None:
        state = self.flows.setdefault(flow_id, FlowFit())
        await self._runner.run(self._fit, state, flow_id, flow_version, counts, reason)

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
                self._learners.learn(self.ledger.take_outcomes())
            counts = self.ledger.flows.get(key, FlowCounts()).copy()
            self._learners.reseed(state, snapshot, counts)
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

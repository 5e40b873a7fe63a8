"""The fit schedule's online learners: one per flow, learning between fits.

With an online learner (``online``, :mod:`policy.online`) the schedule hands it
every counted decision with the visitor's answers; its posterior, which forgets
(a half-life in conversations), is what the schedule publishes between fits,
and each published fit re-seeds it (:meth:`ScheduleLearners.reseed`). Learning
a batch (with context pairs and the change detector, tens of ms of numpy) and
deriving a snapshot from a learner run in worker threads, so that the event
loop keeps answering visitors: whatever touches a learner holds
:attr:`ScheduleLearners.lock`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping

from policy.fit_versions import fit_version
from policy.flow_fit import FlowFit
from policy.flow_snapshots import catalog_points, points_to_check
from policy.online import OnlineLearner
from policy.online_config import OnlineConfig, Outcome
from policy.reward_counts import DecisionOutcome, FlowCounts, FlowKey
from policy.rewards import RewardLedger
from policy.schedule_publisher import GuardrailsFor, SchedulePublisher
from policy.snapshot import PolicySnapshot
from policy.thompson import check_snapshot
from services.catalog import FlowCatalog

log = logging.getLogger("leadflow.policy.fitting")


class ScheduleLearners:
    """The learners of the schedule's flows, kept in ``flows`` (the schedule's
    memory, shared with it). ``config`` None: no learners. ``fit_running`` says
    whether a fit is running: what is learnt meanwhile re-seeds the learner from
    that fit (``FlowFit.since_request``)."""

    def __init__(
        self,
        config: OnlineConfig | None,
        flows: dict[str, FlowFit],
        ledger: RewardLedger,
        catalog: FlowCatalog | None,
        *,
        publisher: SchedulePublisher,
        guardrails: GuardrailsFor,
        fit_running: Callable[[], bool],
        clock: Callable[[], float],
        wall: Callable[[], float],
    ) -> None:
        self.config = config
        self.lock = threading.Lock()  # the learners: see learn
        self._flows = flows
        self._ledger = ledger
        self._catalog = catalog
        self._publisher = publisher
        self._guardrails = guardrails
        self._fit_running = fit_running
        self._clock = clock
        self._wall = wall

    def learn(self, taken: Mapping[FlowKey, list[DecisionOutcome]]) -> None:
        """Hand the newly counted decisions to each flow's learner (created, with the
        prior, for the newest flow version that has outcomes). The schedule's tick
        runs it in a worker thread, so that the event loop keeps answering visitors
        (learning a batch with context pairs and the change detector is tens of ms of
        numpy; the GIL is handed back to the loop every few hundred microseconds):
        whatever else touches a learner holds ``lock`` too."""
        with self.lock:
            self._learn_now(taken)

    def _learn_now(self, taken: Mapping[FlowKey, list[DecisionOutcome]]) -> None:
        for key, decided in sorted(taken.items()):
            state = self._flows.setdefault(key.flow_id, FlowFit())
            learner = state.learner
            if learner is None or learner.flow_version < key.flow_version:
                points = catalog_points(self._catalog, key.flow_id, key.flow_version)
                counts = self._ledger.flows.get(key)
                if points is None:
                    points = dict(counts.candidates) if counts is not None else {}
                learner = OnlineLearner(key.flow_id, key.flow_version, points, self.config)
                state.learner, state.learned, state.changes_published = learner, 0, 0
            elif learner.flow_version > key.flow_version:
                continue  # an older version's stragglers
            batch = [
                Outcome(o.conversation_id, o.node_id, o.button_id, o.edge, o.cell, o.answers,
                        o.success)
                for o in decided
            ]  # fmt: skip
            learner.observe(batch)
            if self._fit_running():
                state.since_request.extend(batch)

    def reseed(self, state: FlowFit, snapshot: PolicySnapshot, counts: FlowCounts) -> bool:
        """A published fit anchors the learner: its posterior, tempered to the
        forgetting horizon, plus what was counted while it ran; unless the
        learner knows more than the fit (context pairs the fit has not, or a
        change it detected: ``OnlineLearner.keeps_over``), which keeps it as it
        is. True when the learner was kept (its posterior is due at once)."""
        if self.config is None:
            return False
        with self.lock:
            return self._reseed_now(state, snapshot, counts)

    def _reseed_now(self, state: FlowFit, snapshot: PolicySnapshot, counts: FlowCounts) -> bool:
        assert self.config is not None
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
            snapshot, self.config, conversations=counts.conversations
        )
        if state.since_request:
            learner.observe(state.since_request)
        state.since_request = []
        state.learner, state.learned, state.changes_published = learner, 0, 0
        state.online_root = snapshot.version
        return False

    async def publish(self, flow_id: str, why: str, trials: int) -> PolicySnapshot | None:
        """Publish the flow's learner's posterior as the next revision of its online
        root (the fit's version, or ``{refused fit's version}.online``); None when
        the flow has no learner or its snapshot could not be derived."""
        state = self._flows[flow_id]
        learner = state.learner
        if learner is None:
            return None
        state.revision += 1
        root = state.online_root or fit_version(flow_id, learner.flow_version, self._wall())
        version = f"{root}.{state.revision}"
        created_at, guardrails = self._publisher.created_at(), self._guardrails(flow_id)
        counts = self._ledger.flows.get(FlowKey(flow_id, learner.flow_version), FlowCounts())
        points = points_to_check(self._catalog, flow_id, learner.flow_version, counts)

        def derive() -> tuple[PolicySnapshot, int, int]:
            with self.lock:
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

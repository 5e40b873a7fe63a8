"""The arms of a simulation: each picks edges for a visitor's conversation and learns
when it ends (see :mod:`policy.sim.runner` for what each arm is).

:class:`ThompsonArm` is production's: the real :class:`~policy.thompson.ThompsonPolicy`
on snapshots of the run's fits and, between them, of the online learner or the
conjugate update, as the policy service's fit schedule publishes them.
:class:`UniformArm` is the real uniform policy; :class:`SimpleArm` wraps the
baselines of :mod:`policy.sim.baselines`. :class:`ArmStats` is what the run counts
per arm.
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from policy.features import CELLS, Cell, cell_from_labels
from policy.fit_verdict import verdict_from_diagnostics
from policy.online import OnlineLearner
from policy.online_config import OnlineConfig, Outcome
from policy.reward_counts import FlowCounts, OutcomeKey
from policy.sim.baselines import BetaBernoulli, DefaultEdge, Oracle
from policy.sim.config import FitRecord, Fitter, SimConfig, Updater
from policy.sim.conversations import Conversation, PointKey, Visitor
from policy.sim.population import Population
from policy.snapshot import Guardrails, PolicySnapshot
from policy.thompson import ThompsonPolicy
from policy.uniform import UniformPolicy
from services.policy_port import DecisionPoint

_CELL_NUMBER = {cell.key: i for i, cell in enumerate(CELLS)}


@dataclass
class ArmStats:
    leads: int = 0
    expected: float = 0.0  # sum of the true lead probabilities of its conversations
    decisions: int = 0
    oracle_agreement: int = 0  # decisions that took the oracle's edge (where it had one)
    by_point: dict[str, list[int]] = field(default_factory=dict)  # point -> [decisions, agreed]
    leads_series: list[int] = field(default_factory=list)
    expected_series: list[float] = field(default_factory=list)
    # per visitor, in arrival order: the true lead probability and the lead
    p: array[float] = field(default_factory=lambda: array("d"))
    lead: bytearray = field(default_factory=bytearray)


class Arm:
    """One arm of the simulation: picks edges for a visitor's conversation, learns
    when it ends, may act between visitors (``after``)."""

    name = ""

    def begin(self, visitor: Visitor, plan: Mapping[PointKey, str]) -> None:
        return None

    def choose(self, point: DecisionPoint, visitor: Visitor) -> str:
        raise NotImplementedError

    def observe(self, visitor: Visitor, conversation: Conversation, lead: bool) -> None:
        return None

    def after(self, done: int) -> None:
        return None


class UniformArm(Arm):
    name = "uniform"

    def __init__(self) -> None:
        self.policy = UniformPolicy()

    def choose(self, point: DecisionPoint, visitor: Visitor) -> str:
        return self.policy.choose(point).chosen


class SimpleArm(Arm):
    """A :mod:`policy.sim.baselines` policy: it sees the decision points and, at the
    end of the conversation, its decisions and the outcome."""

    def __init__(self, policy: DefaultEdge | BetaBernoulli | Oracle) -> None:
        self.policy = policy
        self.name = policy.name
        self._decisions: list[tuple[DecisionPoint, str]] = []

    def begin(self, visitor: Visitor, plan: Mapping[PointKey, str]) -> None:
        self._decisions = []
        if isinstance(self.policy, Oracle):
            self.policy.plan(plan)

    def choose(self, point: DecisionPoint, visitor: Visitor) -> str:
        edge = self.policy.choose(point)
        self._decisions.append((point, edge))
        return edge

    def observe(self, visitor: Visitor, conversation: Conversation, lead: bool) -> None:
        self.policy.learn(self._decisions, lead)


class ThompsonArm(Arm):
    name = "thompson"

    def __init__(
        self,
        population: Population,
        config: SimConfig,
        fitter: Fitter,
        updater: Updater | None,
        log: Callable[[str], None] = lambda _: None,
        online: OnlineConfig | None = None,
    ) -> None:
        self.population = population
        self.config = config
        self.fitter = fitter
        self.updater = updater
        self.online = online
        self.log = log
        self.policy = ThompsonPolicy()
        self.rails = Guardrails(min_exploration=config.min_exploration)
        flow = population.flow
        self.counts = FlowCounts()
        for node_id, button_id in flow.decision_points():
            button = flow.node(node_id).button(button_id)
            assert button is not None
            self.counts.candidates[(node_id, button_id)] = button.next
        self.counts_at_fit = self.counts.copy()
        self.fitted: PolicySnapshot | None = None
        self.fits: list[FitRecord] = []
        self.updates = 0
        self.revision = 0  # updates since the installed fit
        self.update_seconds = 0.0
        self.learn_seconds = 0.0  # in the online learner's observe
        # the learner's detected changes: (conversations with decisions, points)
        self.changes: list[tuple[int, int]] = []
        # the current conversation's decisions: (cell key, answers the decision saw)
        self._seen: list[tuple[str, tuple[tuple[str, str], ...]]] = []
        # the online learner (created with the prior at the first outcome, as the
        # fit schedule does; re-seeded by each installed fit) and what it publishes
        self.learner: OnlineLearner | None = None
        self.learned = 0  # learner.outcomes at its last publication
        self.online_root: str | None = None  # the version its publications derive from
        self.online_published = 0  # online posteriors published (updates and fallbacks)
        self._created_at = 0.0
        self._pending: list[Outcome] = []  # outcomes not yet handed to the learner
        self._pending_conversations = 0

    def created_at(self) -> float:
        """Strictly increasing, as the schedule's (a snapshot installs only if newer)."""
        self._created_at = max(time.time(), self._created_at + 0.001)
        return self._created_at

    def choose(self, point: DecisionPoint, visitor: Visitor) -> str:
        choice = self.policy.choose(point)
        # counted like the reward ledger: in the cell the decision logged (none logged,
        # as by the uniform fallback: the conversation's cell at its start)
        # (labels of earlier answers, if the snapshot has them, follow the cell's)
        logged = choice.features[: len(Cell._fields)]
        cell = cell_from_labels(logged).key if logged else visitor.cell.key
        self._seen.append((cell, tuple(point.answers)))
        return choice.chosen

    def observe(self, visitor: Visitor, conversation: Conversation, lead: bool) -> None:
        seen, self._seen = self._seen, []
        if not conversation.decisions:
            return
        self.counts.conversations += 1
        batch: list[Outcome] = []
        for ((node_id, button_id), edge), (cell, answers) in zip(
            conversation.decisions, seen, strict=True
        ):
            self.counts.add(OutcomeKey(node_id, button_id, edge, cell), lead)
            batch.append(
                Outcome(
                    visitor.conversation_id,
                    node_id,
                    button_id,
                    edge,
                    _CELL_NUMBER[cell],
                    answers,
                    lead,
                )
            )
        if self.online is not None:
            self._pending.extend(batch)
            self._pending_conversations += 1

    def _learn(self) -> None:
        """Hand the outcomes since the last call to the learner, as one batch (the
        service hands it what each tick took; only what is published matters)."""
        if self.online is None or not self._pending:
            return
        started = time.perf_counter()
        if self.learner is None:
            flow = self.population.flow
            self.learner = OnlineLearner(
                flow.id, flow.version, dict(self.counts.candidates), self.online
            )
        before = self.learner.changes
        self.learner.observe(self._pending, self._pending_conversations)
        self._pending, self._pending_conversations = [], 0
        self.learn_seconds += time.perf_counter() - started
        if self.learner.changes > before:
            self.changes.append((self.counts.conversations, self.learner.changes - before))
            self.log(
                f"change detected at {self.learner.changes - before} point(s) after"
                f" {self.counts.conversations} conversations with decisions"
            )

    def after(self, done: int) -> None:
        if self.config.fit_due(done) or self.config.update_due(done):
            self._learn()
        if self.config.fit_due(done):
            self._fit(done)
        elif self.config.update_due(done):
            if self.online is not None:
                learner = self.learner
                if (
                    self.online_root is None
                    and self.config.online_before_fit
                    and learner is not None
                    and learner.outcomes >= self.config.early_outcomes
                ):
                    self.online_root = f"{self.population.flow.key}#online"
                self._publish_online()
            elif self.fitted is not None and self.updater is not None:
                started = time.perf_counter()
                delta = self.counts.since(self.counts_at_fit)
                self.revision += 1
                version = f"{self.fitted.version}.{self.revision}"  # as the service names it
                snapshot = self.updater(self.fitted, delta, version, time.time())
                self.policy.install(snapshot)
                self.updates += 1
                self.update_seconds += time.perf_counter() - started

    def _fit(self, done: int) -> None:
        flow = self.population.flow
        version = f"{flow.key}#fit{len(self.fits) + 1}"
        counts = self.counts.copy()
        started = time.perf_counter()
        result = self.fitter(counts, version=version, seed=self.config.seed * 1_000 + done)
        seconds = time.perf_counter() - started
        installed = result.snapshot is not None and self.policy.install(result.snapshot)
        record = FitRecord(done, version, seconds, installed, result.reason, result.diagnostics)
        if installed:
            assert result.snapshot is not None
            self.fitted = result.snapshot
            self.counts_at_fit = counts
            self.revision = 0
            if self.online is not None:
                self.online_root = result.snapshot.version
                if self.learner is not None and self.learner.keeps_over(result.snapshot):
                    # the learner knows more than the fit (pairs, a change): it stays,
                    # and its posterior is published at once after the fit
                    record.fallback = "kept"
                    self.learner.anchor = result.snapshot.version
                    self._publish_online(force=True)
                else:
                    # the fit anchors the learner (the run waits for the fit: nothing
                    # was counted while it ran)
                    self.learner = OnlineLearner.from_snapshot(
                        result.snapshot, self.online, conversations=counts.conversations
                    )
                    self.learned = 0
        elif self.online is not None:
            learner = self.learner
            available = learner is not None and learner.outcomes > 0
            verdict = verdict_from_diagnostics(result.diagnostics, online_available=available)
            record.verdict = verdict.reason
            record.fallback = "none"
            if verdict.publish == "online" and available:
                self.online_root = f"{version}.online"
                self.revision = 0
                if self._publish_online(force=True):
                    record.fallback = "online"
        self.fits.append(record)
        instead = f", published instead: {record.fallback}" if record.fallback else ""
        self.log(
            f"fit {version} on {counts.trials()} outcomes of {counts.conversations}"
            f" conversations: {seconds:.1f} s, {'installed' if installed else 'REFUSED'}"
            f" ({result.reason}{instead})"
        )

    def _publish_online(self, *, force: bool = False) -> bool:
        """Publish the learner's posterior (as the schedule's update or fallback):
        only once a fit or a fallback was published, and with new outcomes."""
        learner = self.learner
        if learner is None or self.online_root is None:
            return False
        if not force and learner.outcomes <= self.learned:
            return False
        started = time.perf_counter()
        self.revision += 1
        version = f"{self.online_root}.{self.revision}"
        snapshot = learner.snapshot(version, self.created_at(), self.rails)
        installed = self.policy.install(snapshot)
        self.learned = learner.outcomes
        self.updates += 1
        self.online_published += 1
        self.update_seconds += time.perf_counter() - started
        return installed

"""The simulation loop: six arms, one stream of visitors, outcomes at conversation end.

Every arm plays every visitor (the same context, the same answers and the same
uniform draw deciding the lead: common random numbers, so the differences
between arms are the differences between their edges, not luck):

* ``thompson``: the real :class:`~policy.thompson.ThompsonPolicy` (uniform until
  its first snapshot) on snapshots from the real :func:`policy.model.fit_flow`,
  refitted on the counts so far at conversation ``first_fit`` and then every
  ``refit_every`` conversations; between fits (``between_fits``), as the policy
  service's :class:`~policy.fitting.FitScheduler` does:

  - ``online`` (production's default, ``LEADFLOW_POLICY_ONLINE``): the online
    learner (:class:`~policy.online.OnlineLearner`) learns from every
    conversation's final outcomes, each decision with the visitor's cell and the
    answers it saw (``DecisionPoint.answers``, the press at the point last), and
    its posterior is published every ``update_every`` conversations; each
    installed fit re-seeds it (:meth:`~policy.online.OnlineLearner.from_snapshot`,
    tempered to the forgetting horizon); a fit refused by its checks goes
    through :func:`policy.fit_verdict.verdict_from_diagnostics`, which may
    publish the online posterior instead;
  - ``conjugate``: the conjugate update of the fit with the counts since it
    (:func:`policy.fitting.conjugate_update`) every ``update_every`` conversations;
  - ``none``: the fits alone;
* ``uniform``: the real :class:`~policy.uniform.UniformPolicy`;
* ``default``: always the decision point's first candidate (the flow's default edge);
* ``cell_bb`` and ``answers_bb``: Beta-Bernoulli Thompson sampling per (decision
  point, context cell) and per (decision point, answers so far)
  (:mod:`policy.sim.baselines`), learning after every conversation;
* ``oracle``: the edges of the visitor's path with the largest true lead
  probability (:meth:`~policy.sim.population.Population.best_path`).

Outcomes are known when a conversation ends (no reward delay): the Thompson
arm's counts get one outcome per decision taken, keyed like the reward
ledger's, by (decision point, edge, context cell the decision logged).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from array import array
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from policy.features import CELLS, Cell, cell_from_labels
from policy.fit_verdict import verdict_from_diagnostics
from policy.online import OnlineConfig, OnlineLearner, Outcome
from policy.rewards import FlowCounts, OutcomeKey
from policy.settings import PRODUCTION_ONLINE
from policy.sim.baselines import BetaBernoulli, DefaultEdge, Oracle, answers_key, cell_key
from policy.sim.population import Conversation, PointKey, Population, Visitor
from policy.snapshot import Guardrails, PolicySnapshot
from policy.thompson import ThompsonPolicy
from policy.uniform import UniformPolicy
from services.policy_port import DecisionPoint

ARMS = ("thompson", "uniform", "default", "cell_bb", "answers_bb", "oracle")
SIMPLE = ("uniform", "default", "cell_bb", "answers_bb")  # the simple baselines
BETWEEN_FITS = ("online", "conjugate", "none")  # what the production arm does between fits
_CELL_NUMBER = {cell.key: i for i, cell in enumerate(CELLS)}


@dataclass(frozen=True, slots=True)
class SimConfig:
    conversations: int = 50_000
    seed: int = 7
    edge_scale: float = 1.0
    first_fit: int = 1_000  # the first fit, after this many conversations
    refit_every: int = 5_000  # then a fit every this many conversations
    update_every: int = 250  # publications between fits every this many conversations (0: none)
    between_fits: str = "online"  # BETWEEN_FITS: the online learner, conjugate updates, nothing
    # the online learner as production's environment defaults configure it
    half_life: float = PRODUCTION_ONLINE.half_life  # LEADFLOW_POLICY_HALF_LIFE
    pairs: bool = PRODUCTION_ONLINE.pairs  # its context interactions (LEADFLOW_POLICY_PAIRS)
    change_half_life: float = PRODUCTION_ONLINE.change_half_life  # its change detector
    change_threshold: float = PRODUCTION_ONLINE.change_threshold
    draw_scale: float = PRODUCTION_ONLINE.draw_scale  # its published draws' spread
    # publish the learner's posterior before the first fit, from the first update tick
    # at which it has ``early_outcomes`` outcomes: production fits first at
    # LEADFLOW_POLICY_MIN_OUTCOMES (100) outcomes, the run's first fit comes later
    # (``first_fit`` conversations) only to keep runs short
    online_before_fit: bool = True
    early_outcomes: int = 100
    draws: int = 1_000  # per chain (half of fit_flow's default, to keep a run short)
    tune: int = 500
    chains: int = 2
    min_exploration: float = 0.05
    # sampler and acceptance settings passed to fit_flow; None: fit_flow's own (the
    # production checks: r-hat, bulk ESS, divergences), which the full run uses
    target_accept: float | None = None
    max_rhat: float | None = None
    min_ess: float | None = None
    max_divergences: int | None = None
    series_every: int = 250  # the cumulative curves keep a point every this many

    @classmethod
    def fast(cls, conversations: int = 1_500, seed: int = 7) -> SimConfig:
        """A smoke run: few conversations, two tiny fits (2 chains of 150 draws) with
        loose checks (only a sampler that went wrong is refused)."""
        return cls(
            conversations=conversations,
            seed=seed,
            first_fit=conversations // 4,
            refit_every=conversations // 2,
            update_every=100,
            draws=150,
            tune=150,
            chains=2,
            max_rhat=1.1,
            min_ess=10.0,
            max_divergences=1_000,
            series_every=max(10, conversations // 100),
        )

    def fit_due(self, done: int) -> bool:
        if done >= self.conversations:
            return False  # nobody would be served by it
        return done == self.first_fit or (done > self.first_fit and done % self.refit_every == 0)

    def fit_options(self) -> dict[str, Any]:
        """The sampler and diagnostics settings that override fit_flow's defaults."""
        options = {
            "target_accept": self.target_accept,
            "max_rhat": self.max_rhat,
            "min_ess": self.min_ess,
            "max_divergences": self.max_divergences,
        }
        return {k: v for k, v in options.items() if v is not None}

    def update_due(self, done: int) -> bool:
        return self.update_every > 0 and done % self.update_every == 0

    def online_config(self) -> OnlineConfig | None:
        """The online learner's configuration (production's but the half-life), None
        unless ``between_fits`` is ``online``."""
        if self.between_fits not in BETWEEN_FITS:
            raise ValueError(f"between_fits must be one of {BETWEEN_FITS}: {self.between_fits!r}")
        if self.between_fits != "online":
            return None
        return OnlineConfig(
            half_life=self.half_life,
            pairs=self.pairs,
            change_half_life=self.change_half_life,
            change_threshold=self.change_threshold,
            draw_scale=self.draw_scale,
        )


@dataclass(frozen=True, slots=True)
class FitOutcome:
    snapshot: PolicySnapshot | None
    diagnostics: Mapping[str, Any]
    reason: str


class Fitter(Protocol):
    def __call__(self, counts: FlowCounts, *, version: str, seed: int) -> FitOutcome: ...


# (fitted snapshot, outcomes counted since its fit, new version, created at) -> updated one
Updater = Callable[[PolicySnapshot, FlowCounts, str, float], PolicySnapshot]


def model_fitter(population: Population, config: SimConfig) -> Fitter:
    """``policy.model.fit_flow`` with the run's draws and guardrails (PyMC is imported here)."""
    from policy.model import fit_flow

    flow = population.flow
    rails = Guardrails(min_exploration=config.min_exploration)
    options = config.fit_options()

    def fit(counts: FlowCounts, *, version: str, seed: int) -> FitOutcome:
        result = fit_flow(
            flow.id,
            flow.version,
            counts,
            version=version,
            seed=seed,
            guardrails=rails,
            draws=config.draws,
            tune=config.tune,
            chains=config.chains,
            **options,
        )
        return FitOutcome(result.snapshot, dict(result.diagnostics), result.reason or "ok")

    return fit


class WorkerFitter:
    """The policy service's fit worker (:class:`policy.fit_worker.ProcessFitter`: a
    spawned process that imports PyMC) asked with a real :class:`~policy.fitting.FitRequest`;
    the run waits for each fit. ``close`` stops the worker."""

    def __init__(self, population: Population, config: SimConfig) -> None:
        from policy.fit_worker import ProcessFitter
        from policy.settings import FitSettings

        self.population = population
        self.rails = Guardrails(min_exploration=config.min_exploration)
        self.options: dict[str, int | float] = {
            "draws": config.draws,
            "tune": config.tune,
            "chains": config.chains,
            **config.fit_options(),
        }
        self.worker = ProcessFitter(FitSettings())

    def __call__(self, counts: FlowCounts, *, version: str, seed: int) -> FitOutcome:
        from policy.fitting import FitRequest
        from policy.flow_snapshots import decision_points

        flow = self.population.flow
        request = FitRequest(
            flow_id=flow.id,
            flow_version=flow.version,
            counts=counts,
            version=version,
            seed=seed,
            guardrails=self.rails,
            points=decision_points(flow),
            options=self.options,
        )
        report = asyncio.run(self.worker(request))
        return FitOutcome(report.snapshot, dict(report.diagnostics), report.reason or "ok")

    def close(self) -> None:
        self.worker.close()


def conjugate_updater() -> Updater | None:
    """The policy service's update between fits (``policy.conjugate.update_snapshot``,
    through ``policy.fitting.conjugate_update``); None while that module is missing."""
    from policy.fitting import conjugate_update

    return conjugate_update()


@dataclass
class FitRecord:
    at_conversation: int
    version: str
    seconds: float
    installed: bool
    reason: str
    diagnostics: Mapping[str, Any]
    # what a refused fit published instead: "online" (the learner's posterior) or "none"
    fallback: str | None = None
    verdict: str | None = None  # policy.fit_verdict's reason for a refused fit


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


@dataclass
class SimResult:
    config: SimConfig
    arms: dict[str, ArmStats]
    fits: list[FitRecord]
    conjugate_updates: int  # publications between fits (conjugate or online)
    conjugate_seconds: float
    series_at: list[int]
    seconds: float
    fit_seconds: float
    best_edges: dict[str, dict[str, int]]  # point -> oracle edge -> visitors
    mix: dict[str, dict[str, int]]  # factor -> level -> visitors (cells at the start)
    decisions_met: dict[int, int]  # decision points met (on the oracle's path) -> visitors
    world: str = "baseline"
    flip_at: int | None = None  # the visitor from whom the world changed, if it did
    keys: dict[str, int] = field(default_factory=dict)  # Beta-Bernoulli arm -> keys it saw
    learn_seconds: float = 0.0  # the online learner's observe, in total
    changes: list[tuple[int, int]] = field(default_factory=list)  # the learner's detections
    pair_points: list[str] = field(default_factory=list)  # points publishing pairs at the end


def point_name(key: PointKey) -> str:
    return f"{key[0]}.{key[1]}"


def make_arms(
    population: Population,
    config: SimConfig,
    fitter: Fitter,
    updater: Updater | None,
    log: Callable[[str], None],
) -> tuple[ThompsonArm, list[Arm]]:
    thompson = ThompsonArm(population, config, fitter, updater, log, config.online_config())
    arms: list[Arm] = [
        thompson,
        UniformArm(),
        SimpleArm(DefaultEdge()),
        SimpleArm(BetaBernoulli("cell_bb", cell_key, config.seed)),
        SimpleArm(BetaBernoulli("answers_bb", answers_key, config.seed)),
        SimpleArm(Oracle()),
    ]
    assert tuple(a.name for a in arms) == ARMS
    return thompson, arms


def simulate(
    population: Population,
    config: SimConfig,
    fitter: Fitter | None = None,
    updater: Updater | None = None,
    *,
    use_conjugate: bool = True,
    world: str = "baseline",
    log: Callable[[str], None] = lambda _: None,
) -> SimResult:
    """Run every arm over ``config.conversations`` visitors in arrival order.
    ``use_conjugate=False``: nothing between fits, whatever ``config.between_fits``
    says (the fits alone)."""
    started = time.perf_counter()
    if not use_conjugate:
        config = dataclasses.replace(config, between_fits="none")
    if fitter is None:
        fitter = model_fitter(population, config)
    if updater is None and config.between_fits == "conjugate":
        updater = conjugate_updater()
    between = config.between_fits
    if between == "conjugate" and updater is None:
        between = "none"
    elif between == "online":
        between = f"online (half-life {config.half_life:g} conversations)"
    log(f"world {world}: between fits {between}, every {config.update_every} conversations")
    thompson, arms = make_arms(population, config, fitter, updater, log)
    stats = {arm.name: ArmStats() for arm in arms}
    series_at: list[int] = []
    best_edges: dict[str, dict[str, int]] = {}
    mix: dict[str, dict[str, int]] = {name: {} for name in Cell._fields}
    decisions_met: dict[int, int] = {}
    for visitor in population.visitors(config.conversations, config.seed):
        for name, level in zip(Cell._fields, visitor.cell, strict=True):
            mix[name][level] = mix[name].get(level, 0) + 1
        plan, _ = population.best_path(visitor)
        decisions_met[len(plan)] = decisions_met.get(len(plan), 0) + 1
        for key, edge in plan.items():
            per_point = best_edges.setdefault(point_name(key), {})
            per_point[edge] = per_point.get(edge, 0) + 1
        for arm in arms:
            arm.begin(visitor, plan)
            conversation = population.walk(visitor, arm.choose)
            p = population.lead_probability(visitor, conversation)
            lead = visitor.draw < p
            arm.observe(visitor, conversation, lead)
            s = stats[arm.name]
            s.leads += lead
            s.expected += p
            s.p.append(p)
            s.lead.append(lead)
            for key, edge in conversation.decisions:
                s.decisions += 1
                best = plan.get(key)
                if best is None:
                    continue  # a point off the oracle's path: no edge to agree with
                agreed = int(edge == best)
                s.oracle_agreement += agreed
                tally = s.by_point.setdefault(point_name(key), [0, 0])
                tally[0] += 1
                tally[1] += agreed
        done = visitor.index + 1
        for arm in arms:
            arm.after(done)
        if done % config.series_every == 0 or done == config.conversations:
            series_at.append(done)
            for s in stats.values():
                s.leads_series.append(s.leads)
                s.expected_series.append(s.expected)
        if done % 10_000 == 0:
            log(f"{done} conversations, {time.perf_counter() - started:.0f} s")
    keys = {
        arm.name: arm.policy.keys()
        for arm in arms
        if isinstance(arm, SimpleArm) and isinstance(arm.policy, BetaBernoulli)
    }
    return SimResult(
        config=config,
        arms=stats,
        fits=thompson.fits,
        conjugate_updates=thompson.updates,
        conjugate_seconds=thompson.update_seconds,
        series_at=series_at,
        seconds=time.perf_counter() - started,
        fit_seconds=sum(f.seconds for f in thompson.fits),
        best_edges=best_edges,
        mix=mix,
        decisions_met=dict(sorted(decisions_met.items())),
        world=world,
        flip_at=population.flip_at,
        keys=keys,
        learn_seconds=thompson.learn_seconds,
        changes=thompson.changes,
        pair_points=[]
        if thompson.learner is None
        else [
            point_name(k) for k in sorted(thompson.learner.points) if thompson.learner.uses_pairs(k)
        ],
    )

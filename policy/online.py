"""Learning between fits, with forgetting: a Laplace-approximated Bayesian logistic
regression per (decision point, edge), updated per batch of final outcomes. Pure numpy.

For one flow version, every candidate edge ``e`` of every decision point has a
Gaussian (Laplace) posterior, updated per batch as in Chapelle & Li 2011 ("An
Empirical Evaluation of Thompson Sampling", Algorithm 3), over the weights
``w = [intercept, cell features (FEATURE_NAMES), answer features]`` of

    P(lead | edge e, cell features x, answer features y) = sigmoid(w . [1, x, y]).

With ``pairs`` the cell's part is the symmetric coding of :mod:`policy.pair_design`
(every level and every combination of two factors' levels, 109 weights), whose
six pair scales each point learns from its data with ``pair_ard``
(:mod:`policy.relevance`) or, without, keeps at ``pair_sd`` and weighs against an
additive twin.

Answer features are the point's earlier answers (``answer:{node}={button}``,
:func:`policy.features.earlier_answers`), registered per point the first time an
outcome at that point carries them (a batch's new names in sorted order), at
most ``max_answers`` per point. Edge x answer is modelled (each edge has its own
slopes); answer x cell interactions are left out (shrinkage keeps the many
one-hot slopes honest where data are thin).

Prior (shrinkage), the Laplace step and the full precision matrix:
:mod:`policy.laplace`. Learnt pair scales: :mod:`policy.relevance`. Change
detection: :mod:`policy.online_change` (the CUSUM: :mod:`policy.change_detection`).
Seeding from a fit: :mod:`policy.online_seeding`. Publishing:
:mod:`policy.online_publishing`.

Per batch (:meth:`OnlineLearner.observe`):

1. *Forgetting*: with ``n`` the distinct conversations in the batch and
   ``g = 2 ** (-n / half_life)``, every edge's natural parameters move toward the
   prior's, ``Q <- Q0 + g (Q - Q0)``, ``h <- h0 + g (h - h0)``: the evidence of
   the data decays exponentially, halving every ``half_life`` conversations
   (default 1,000). How fast that relearns a changed world, and the change
   detector that relearns it sooner: :mod:`policy.online_change`.
2. *The batch*: per edge with outcomes in it, identical rows grouped as Binomial
   counts, Newton steps to the mode and the Laplace approximation there
   (:func:`policy.laplace.learn`).

:meth:`OnlineLearner.snapshot` samples ``draws`` weight vectors per edge from
``N(m, Q^-1)`` with a generator seeded from the snapshot's version (the same
learner state and version give the same bytes) and returns a
:class:`~policy.snapshot.PolicySnapshot` (format v2 when a point has answer
features) that :class:`~policy.thompson.ThompsonPolicy` installs like a fit's.

:meth:`OnlineLearner.from_snapshot` seeds a learner from a PyMC fit's snapshot,
tempered to the forgetting horizon (:mod:`policy.online_seeding`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from policy import laplace, online_change, online_publishing, online_seeding, pair_design, relevance
from policy.features import CELLS, FEATURE_NAMES, PAIR_NAMES, earlier_answers, features
from policy.laplace import EdgeGaussian, FloatArray
from policy.online_config import OnlineConfig, Outcome, PointKey
from policy.snapshot import Guardrails, PolicySnapshot

F = len(FEATURE_NAMES)


@dataclass
class PointState:
    """One decision point's edges and the answer features it has registered."""

    candidates: tuple[str, ...]
    answers: list[tuple[str, str]] = field(default_factory=list)  # registered, in order
    index: dict[tuple[str, str], int] = field(default_factory=dict)
    support: list[int] = field(default_factory=list)  # outcomes seen with each answer
    edges: dict[str, EdgeGaussian] = field(default_factory=dict)
    pair_sd: list[float] = field(default_factory=list)  # per pair of factors (ARD), if learnt


Groups = Sequence[tuple[tuple[str, int, tuple[int, ...]], list[int]]]


class OnlineLearner:
    """The online posterior of one flow version (see the module's docstring).
    ``points``: each decision point's candidates, in the order the snapshot
    lists them. Not thread-safe: one owner (the fit schedule) calls it."""

    def __init__(
        self,
        flow_id: str,
        flow_version: int,
        points: Mapping[PointKey, tuple[str, ...]],
        config: OnlineConfig | None = None,
        *,
        additive: bool = True,
    ) -> None:
        """``additive=False``: no additive model beside a learner with pairs (the
        change detector's shadow: only its score and its posterior are used)."""
        self.flow_id = flow_id
        self.flow_version = flow_version
        self.config = config or OnlineConfig()
        self.points: dict[PointKey, PointState] = {}
        self.outcomes = 0
        self.conversations = 0
        self.anchor: str | None = None  # the fit version it was seeded from
        # weights before the answers: the intercept and the cell's slopes, or with pairs
        # the symmetric coding of policy.pair_design
        self.fixed = pair_design.SIZE if self.config.pairs else 1 + F
        self.changes = 0  # changes detected (points whose evidence was replaced)
        self.changed_at: int | None = None  # self.conversations at the last one
        self.cusum: dict[PointKey, float] = {}
        self.shadow: OnlineLearner | None = None
        if self.config.change_half_life > 0:
            fast = replace(self.config, half_life=self.config.change_half_life, change_half_life=0)
            self.shadow = OnlineLearner(flow_id, flow_version, points, fast, additive=False)
        # with weighed pairs (pairs without learnt scales), the additive model beside it
        # and, per point, the discounted log Bayes factor (prequential) of the model with
        # pairs over it: a point publishes its pairs only where the data support them
        # (evidence > 0); with learnt scales (pair_ard) a point always publishes the model
        # with pairs (its faded pairs at 0: policy.online_publishing.published_pairs)
        self.additive: OnlineLearner | None = None
        self.pair_evidence: dict[PointKey, float] = {}
        if self.config.pairs and additive and not self.config.pair_ard:
            self.additive = OnlineLearner(
                flow_id, flow_version, points, replace(self.config, pairs=False)
            )
        for key, candidates in points.items():
            self._point(key, candidates)

    # ---- the prior and the features --------------------------------------------------------

    def prior(self, size: int) -> tuple[FloatArray, FloatArray]:
        """(Q0, h0) of ``size`` weights: intercept, cell slopes (or the pair coding),
        answer slopes."""
        cfg = self.config
        return laplace.prior(
            size,
            intercept_sd=cfg.intercept_sd,
            slope_sd=cfg.slope_sd,
            prior_mean_logit=cfg.prior_mean_logit,
            pair_sd=cfg.pair_sd if cfg.pairs else None,
        )

    def point_prior(self, point: PointState, size: int) -> tuple[FloatArray, FloatArray]:
        """(Q0, h0) of one point's edges: :meth:`prior` with the point's learnt pair
        scales (:mod:`policy.relevance`), once it has them."""
        q0, h0 = self.prior(size)
        return relevance.with_scales(q0, pair_design.PAIR_BLOCKS, point.pair_sd), h0

    def _point(self, key: PointKey, candidates: tuple[str, ...]) -> PointState:
        point = self.points.get(key)
        if point is None:
            point = PointState(tuple(candidates))
            q0, h0 = self.prior(self.fixed)
            for edge in point.candidates:
                point.edges[edge] = EdgeGaussian(q0.copy(), h0.copy())
            self.points[key] = point
        return point

    def register(self, point: PointState, names: Iterable[tuple[str, str]]) -> None:
        """Add answer features (sorted), each edge's weights extended by the prior."""
        new = sorted(set(names) - point.index.keys())
        room = self.config.max_answers - len(point.answers)
        new = new[: max(room, 0)]
        if not new:
            return
        for name in new:
            point.index[name] = len(point.answers)
            point.answers.append(name)
            point.support.append(0)
        grow = len(new)
        for edge in point.edges.values():
            d = len(edge.h)
            q = np.zeros((d + grow, d + grow))
            q[:d, :d] = edge.q
            q[d:, d:] = np.eye(grow) / self.config.slope_sd**2
            edge.q = q
            edge.h = np.concatenate([edge.h, np.zeros(grow)])

    def fill_row(self, row: FloatArray, cell: int, active: Iterable[int]) -> None:
        """Fill one design row: the cell's coding, then a 1 per active answer feature."""
        if self.config.pairs:
            row[: self.fixed] = pair_design.ROWS[cell]
        else:
            row[0] = 1.0
            row[1 : 1 + F] = features(CELLS[cell])
        for a in active:
            row[self.fixed + a] = 1.0

    # ---- learning --------------------------------------------------------------------------

    def forget(self, conversations: int) -> None:
        """Discount every edge's evidence for ``conversations`` conversations."""
        g = self.config.discount(conversations)
        if g == 1.0:
            return
        for point in self.points.values():
            prior = self.point_prior(point, self.fixed + len(point.answers))  # every edge's
            for edge in point.edges.values():
                laplace.toward_prior(edge, *prior, g)

    def observe(self, batch: Sequence[Outcome], conversations: int | None = None) -> None:
        """Learn from a batch of final outcomes (forgetting first, for
        ``conversations``: by default the distinct conversation ids in it).
        Outcomes at unknown points or edges are ignored."""
        n = len({o.conversation_id for o in batch}) if conversations is None else conversations
        with_pairs: dict[PointKey, float] | None = None  # this learner's score of the batch
        if self.additive is not None:
            with_pairs = online_change.log_likelihood(self, batch)
            without = online_change.log_likelihood(self.additive, batch)
            g = self.config.discount(n)
            for key in with_pairs.keys() | self.pair_evidence.keys():
                gain = with_pairs.get(key, 0.0) - without.get(key, 0.0)
                self.pair_evidence[key] = g * self.pair_evidence.get(key, 0.0) + gain
            self.additive.observe(batch, n)
        if self.shadow is not None:
            online_change.detect(self, batch, with_pairs)
            self.shadow.observe(batch, n)
        self.forget(n)
        self.conversations += n
        by_point: dict[PointKey, list[Outcome]] = {}
        for outcome in batch:
            point = self.points.get(outcome.point)
            if point is not None and outcome.edge in point.edges:
                by_point.setdefault(outcome.point, []).append(outcome)
        for key in sorted(by_point):
            self._observe_point(self.points[key], by_point[key])

    def _observe_point(self, point: PointState, rows: Sequence[Outcome]) -> None:
        given = [set(earlier_answers(o.answers, o.node_id, o.button_id)) for o in rows]
        self.register(point, (a for answers in given for a in answers))
        groups: dict[tuple[str, int, tuple[int, ...]], list[int]] = {}
        for outcome, answers in zip(rows, given, strict=True):
            active = tuple(sorted(point.index[a] for a in answers if a in point.index))
            for a in active:
                point.support[a] += 1
            tally = groups.setdefault((outcome.edge, outcome.cell, active), [0, 0])
            tally[0] += 1
            tally[1] += 1 if outcome.success else 0
        self.outcomes += len(rows)
        for edge_id in point.candidates:
            mine = sorted((g, t) for g, t in groups.items() if g[0] == edge_id)
            if mine:
                self._update(point.edges[edge_id], mine, len(point.answers))
        if self.config.pairs and self.config.pair_ard:
            scales = point.pair_sd or [self.config.pair_sd] * len(pair_design.PAIR_BLOCKS)
            point.pair_sd = relevance.relevance_step(
                list(point.edges.values()),
                pair_design.PAIR_BLOCKS,
                scales,
                self.config.pair_sd_bounds,
            )

    def _update(self, edge: EdgeGaussian, groups: Groups, answers: int) -> None:
        z = np.zeros((len(groups), self.fixed + answers))
        trials = np.empty(len(groups))
        successes = np.empty(len(groups))
        for r, ((_, cell, active), (n, y)) in enumerate(groups):
            self.fill_row(z[r], cell, active)
            trials[r], successes[r] = n, y
        laplace.learn(edge, z, trials, successes)

    # ---- seeding from a fit ------------------------------------------------------------------

    def keeps_over(self, fit: PolicySnapshot) -> bool:
        """Whether a fit should leave this learner as it is rather than re-seed it:
        the learner has outcomes and either models context pairs the fit does not
        know (re-seeding would reset them to the prior) or detected a change (the
        fit's counts mix the worlds before and after it)."""
        if self.outcomes == 0:
            return False
        if self.changes > 0:
            return True
        return self.config.pairs and not any(p.pairs for p in fit.points.values())

    @classmethod
    def from_snapshot(
        cls,
        snapshot: PolicySnapshot,
        config: OnlineConfig | None = None,
        conversations: int | None = None,
    ) -> OnlineLearner:
        """A learner whose posterior is moment-matched to ``snapshot``'s draws,
        the fit's evidence tempered to the forgetting horizon (``conversations``:
        what the fit saw; by default its diagnostics' ``conversations``;
        :mod:`policy.online_seeding`)."""
        points = {key: p.candidates for key, p in snapshot.points.items()}
        learner = cls(snapshot.flow_id, snapshot.flow_version, points, config)
        online_seeding.seed(learner, snapshot, conversations)
        if learner.additive is not None:  # the model without pairs, seeded alike
            additive = replace(learner.config, pairs=False)
            learner.additive = cls.from_snapshot(snapshot, additive, conversations)
        return learner

    # ---- publishing ---------------------------------------------------------------------------

    @property
    def published_fixed(self) -> int:
        """Weights a snapshot has before the answers: intercept, cell slopes, pairs."""
        return 1 + F + (len(PAIR_NAMES) if self.config.pairs else 0)

    def published_answers(self, key: PointKey) -> list[int]:
        """Indices of the point's answers that are published (enough support)."""
        point = self.points[key]
        return [
            i
            for i, support in enumerate(point.support)
            if support >= self.config.min_answer_support
        ]

    def posterior_mean(self, key: PointKey, edge: str) -> FloatArray:
        """The edge's weights' posterior mean: intercept, cell slopes, answer slopes."""
        return self.points[key].edges[edge].mean

    def posterior_precision(self, key: PointKey, edge: str) -> FloatArray:
        """The edge's weights' posterior precision matrix (a copy)."""
        return self.points[key].edges[edge].q.copy()

    def answer_names(self, key: PointKey) -> list[tuple[str, str]]:
        return list(self.points[key].answers)

    def uses_pairs(self, key: PointKey) -> bool:
        """Whether the point's published posterior is the model with pairs: always with
        learnt pair scales (``pair_ard``; the pairs whose scale fell are published
        at 0, :func:`policy.online_publishing.published_pairs`), else where the model
        with pairs predicted the point's outcomes better than the additive one
        (discounted)."""
        if self.config.pairs and self.config.pair_ard:
            return True
        return self.config.pairs and self.pair_evidence.get(key, 0.0) > 0.0

    def snapshot(
        self,
        version: str,
        created_at: float,
        guardrails: Guardrails | None = None,
        *,
        seed: int | None = None,
    ) -> PolicySnapshot:
        """``draws`` joint draws per edge from the posterior, as a snapshot
        (deterministic for the learner's state and the version or ``seed``): per
        point the model with pairs where :meth:`uses_pairs`, else the additive one."""
        gaussians = []
        for key in sorted(self.points):
            model = (
                self.additive if self.additive is not None and not self.uses_pairs(key) else self
            )
            gaussians.append(online_publishing.point_gaussian(model, key))
        return online_publishing.snapshot_of(self, version, created_at, guardrails, gaussians, seed)

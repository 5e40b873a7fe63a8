"""Learning between fits, with forgetting: a Laplace-approximated Bayesian logistic
regression per (decision point, edge), updated per batch of final outcomes. Pure numpy.

For one flow version, every candidate edge ``e`` of every decision point has a
Gaussian (Laplace) posterior, updated per batch as in Chapelle & Li 2011 ("An
Empirical Evaluation of Thompson Sampling", Algorithm 3), over the weights
``w = [intercept, cell features (FEATURE_NAMES), answer features]`` of

    P(lead | edge e, cell features x, answer features y) = sigmoid(w . [1, x, y]).

Answer features are the point's earlier answers (``answer:{node}={button}``,
:func:`policy.features.earlier_answers`), registered per point the first time an
outcome at that point carries them (a batch's new names in sorted order), at
most ``max_answers`` per point. There are no interaction terms yet besides the
one that matters most here, edge x answer (each edge has its own slopes); answer
x cell interactions are left out (shrinkage keeps the many one-hot slopes
honest where data are thin).

Prior (shrinkage): independent ``N(prior_mean_logit, intercept_sd**2)`` for the
intercept and ``N(0, slope_sd**2)`` for every slope; in natural parameters, the
precision matrix ``Q0`` (diagonal) and ``h0 = Q0 m0``.

The precision is kept as a full matrix, not the paper's diagonal: with at most
``1 + 13 + max_answers`` weights per edge it costs microseconds, and with one-hot
features a diagonal precision forgets the intercept/slope correlations, so a
change of the overall rate reaches the baseline cell's logit (the intercept
alone) only partly: in a flipped world the diagonal version still preferred the
old edge at the baseline cell after four half-lives.

Per batch (:meth:`OnlineLearner.observe`):

1. *Forgetting*: with ``n`` the distinct conversations in the batch and
   ``g = 2 ** (-n / half_life)``, every edge's natural parameters move toward the
   prior's, ``Q <- Q0 + g (Q - Q0)``, ``h <- h0 + g (h - h0)``: the evidence of
   the data decays exponentially, halving every ``half_life`` conversations
   (default 1,000). At steady traffic the posterior holds about
   ``half_life / ln 2`` conversations' worth of evidence; after the world
   changes, evidence from before the change weighs half after one half-life
   and a quarter after two. When the best edge flips (its rate and the
   runner-up's swapped), the traffic-averaged posterior means cross after
   about one half-life, and after two (the *relearning horizon*,
   :attr:`OnlineConfig.horizon`, 2,000 conversations by default) the new best
   edge wins in most draws (about 70% averaged over the traffic in
   tests/integration/test_policy_online_learning.py's world, about 80% after three), while a
   learner that never forgets still prefers the old edge. A shorter half-life
   relearns sooner and explores more (fewer conversations' worth of evidence).
2. *Newton steps on the batch* (per edge with outcomes in it; identical rows
   grouped as Binomial counts): the mode ``w`` of
   ``0.5 (w - m)' Q (w - m) - sum_j log Binomial(s_j | n_j, sigmoid(w . z_j))``
   (``m = Q^-1 h``), by Newton's method, Hessian ``Q + Z' diag(n p (1 - p)) Z``;
3. *Laplace*: ``m <- w``, ``Q <- Q + Z' diag(n p (1 - p)) Z`` (at the mode),
   ``h <- Q m``.

:meth:`OnlineLearner.snapshot` samples ``draws`` weight vectors per edge from
``N(m, Q^-1)`` with a generator seeded from the snapshot's version (the same
learner state and version give the same bytes) and returns a
:class:`~policy.snapshot.PolicySnapshot` (format v2 when a point has answer
features) that :class:`~policy.thompson.ThompsonPolicy` installs like a fit's.

:meth:`OnlineLearner.from_snapshot` seeds a learner from a PyMC fit's snapshot
(the periodic full fit stays the anchor): each edge's draws are moment-matched
to a mean and a covariance (``Q_fit``, ``h_fit``); the fit is tempered to what
forgetting would have kept, ``t = min(1, (half_life / ln 2) / conversations)``,
``Q = (1 - t) Q0 + t Q_fit`` and ``h = (1 - t) h0 + t h_fit``, so a fit over a
long history does not outweigh the forgetting. Answer features the fit does
not know start at the prior.
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from policy import pair_design
from policy.archive import GaussianPosterior, PointGaussian, draw_points
from policy.features import (
    CELLS,
    FEATURE_NAMES,
    PAIR_INDEX,
    PAIR_NAMES,
    answer_label,
    earlier_answers,
    features,
)
from policy.snapshot import Guardrails, PointPosterior, PolicySnapshot

FloatArray = npt.NDArray[np.float64]
PointKey = tuple[str, str]

NEWTON_STEPS = 25
NEWTON_TOLERANCE = 1e-9
MIN_VARIANCE = 1e-6  # of a moment-matched weight: a fit's draws never pin one exactly
F = len(FEATURE_NAMES)
P = len(PAIR_NAMES)


@dataclass(frozen=True, slots=True)
class OnlineConfig:
    """The prior, the forgetting and the size of what is published."""

    half_life: float = 1000.0  # conversations; math.inf: no forgetting
    prior_mean_logit: float = -1.5  # about 18% leads
    intercept_sd: float = 1.5
    slope_sd: float = 0.5
    draws: int = 200
    max_answers: int = 64  # answer features per decision point
    min_answer_support: int = 5  # outcomes with the answer before it is published
    pairs: bool = False  # context interactions (PAIR_NAMES) as features (snapshot v4)
    pair_sd: float = 0.3  # each combination's prior sd (policy.pair_design: shrinkage)
    # change detection: a shadow learner with this half-life (0: none) and a CUSUM of
    # its predictive log-likelihood over this learner's, per point, in nats
    change_half_life: float = 0.0
    change_threshold: float = 15.0
    # the published draws' spread: N(m, (draw_scale * sd)^2); 1 is Thompson sampling
    # on the posterior, below 1 a sharpened posterior (less exploration on top of the
    # guardrails' floor, which alone keeps every edge learned)
    draw_scale: float = 1.0

    def discount(self, conversations: int) -> float:
        if conversations <= 0 or math.isinf(self.half_life):
            return 1.0
        return float(2.0 ** (-conversations / self.half_life))

    @property
    def horizon(self) -> float:
        """Conversations after which a flipped best edge is firmly preferred again."""
        return 2.0 * self.half_life


@dataclass(frozen=True, slots=True)
class Outcome:
    """One decision's final outcome: the edge taken at a point, the visitor's
    cell (an index into :data:`~policy.features.CELLS`), the conversation's
    answers as the decision saw them (``DecisionPoint.answers``; the press at
    the point itself, if last, is dropped) and whether it ended in a lead."""

    conversation_id: str
    node_id: str
    button_id: str
    edge: str
    cell: int
    answers: tuple[tuple[str, str], ...]
    success: bool

    @property
    def point(self) -> PointKey:
        return (self.node_id, self.button_id)


@dataclass
class _Edge:
    q: FloatArray  # precision matrix (D, D)
    h: FloatArray  # precision times mean (D,)

    @property
    def mean(self) -> FloatArray:
        m: FloatArray = np.asarray(np.linalg.solve(self.q, self.h), dtype=np.float64)
        return m


@dataclass
class _Point:
    candidates: tuple[str, ...]
    answers: list[tuple[str, str]] = field(default_factory=list)  # registered, in order
    index: dict[tuple[str, str], int] = field(default_factory=dict)
    support: list[int] = field(default_factory=list)  # outcomes seen with each answer
    edges: dict[str, _Edge] = field(default_factory=dict)


ADOPTED_EVIDENCE = 0.1
"""What a detected change keeps of the shadow's evidence. When the detector fires,
about half of the shadow's window (one change half-life) still predates the
change, so its posterior leans to the old best edge; kept whole, it was relearned
at the long half-life. ``python -m policy.sim --world drift`` without fits: back
to 90% of the oracle's leads 6,819 conversations after the flip with the whole
shadow, 3,887 with none of it, 3,698 with a tenth; the stationary worlds detect
no change, so nothing else moves (docs/policy-simulation.md)."""


CASCADE = 0.1
"""Once a point's CUSUM crosses the threshold, any other point of the flow whose
CUSUM is above this fraction of it in the same batch is taken to have changed
too. What moves one point's best edge (a new campaign's visitors, a season)
usually moves others, and their evidence, spread over fewer outcomes, crosses
later: in the drift world (every point flips at once) the detector otherwise
fired at the last point 1,200 to 1,800 conversations after the first. Without
fits: back to 90% of the oracle 2,510 conversations after the flip instead of
3,698. A point with no evidence of a change (its CUSUM at 0) keeps its posterior."""


def snapshot_seed(version: str) -> int:
    return int.from_bytes(hashlib.sha256(f"online/{version}".encode()).digest()[:8], "big")


def _sigmoid(z: FloatArray) -> FloatArray:
    out: FloatArray = 0.5 * (1.0 + np.tanh(0.5 * z))
    return out


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
        self.points: dict[PointKey, _Point] = {}
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
        # with pairs, the additive model beside it and, per point, the discounted log
        # Bayes factor (prequential) of the model with pairs over it: a point publishes
        # its pairs only where the data support them (evidence > 0)
        self.additive: OnlineLearner | None = None
        self.pair_evidence: dict[PointKey, float] = {}
        if self.config.pairs and additive:
            self.additive = OnlineLearner(
                flow_id, flow_version, points, replace(self.config, pairs=False)
            )
        for key, candidates in points.items():
            self._point(key, candidates)

    # ---- the prior ------------------------------------------------------------------------

    def _prior(self, size: int) -> tuple[FloatArray, FloatArray]:
        """(Q0, h0) of ``size`` weights: intercept, cell slopes, answer slopes."""
        cfg = self.config
        diagonal = np.full(size, 1.0 / cfg.slope_sd**2)
        diagonal[0] = 1.0 / cfg.intercept_sd**2
        if cfg.pairs:
            diagonal[: self.fixed] = pair_design.prior_precision(
                cfg.intercept_sd, cfg.slope_sd, cfg.pair_sd
            )
        h0 = np.zeros(size)
        h0[0] = diagonal[0] * cfg.prior_mean_logit
        return np.diag(diagonal), h0

    def _point(self, key: PointKey, candidates: tuple[str, ...]) -> _Point:
        point = self.points.get(key)
        if point is None:
            point = _Point(tuple(candidates))
            q0, h0 = self._prior(self.fixed)
            for edge in point.candidates:
                point.edges[edge] = _Edge(q0.copy(), h0.copy())
            self.points[key] = point
        return point

    def _register(self, point: _Point, names: Iterable[tuple[str, str]]) -> None:
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

    # ---- learning --------------------------------------------------------------------------

    def forget(self, conversations: int) -> None:
        """Discount every edge's evidence for ``conversations`` conversations."""
        g = self.config.discount(conversations)
        if g == 1.0:
            return
        for point in self.points.values():
            for edge in point.edges.values():
                q0, h0 = self._prior(len(edge.h))
                edge.q = q0 + g * (edge.q - q0)
                edge.h = h0 + g * (edge.h - h0)

    def observe(self, batch: Sequence[Outcome], conversations: int | None = None) -> None:
        """Learn from a batch of final outcomes (forgetting first, for
        ``conversations``: by default the distinct conversation ids in it).
        Outcomes at unknown points or edges are ignored."""
        n = len({o.conversation_id for o in batch}) if conversations is None else conversations
        with_pairs: dict[PointKey, float] | None = None  # this learner's score of the batch
        if self.additive is not None:
            with_pairs = self._log_likelihood(batch)
            without = self.additive._log_likelihood(batch)
            g = self.config.discount(n)
            for key in with_pairs.keys() | self.pair_evidence.keys():
                gain = with_pairs.get(key, 0.0) - without.get(key, 0.0)
                self.pair_evidence[key] = g * self.pair_evidence.get(key, 0.0) + gain
            self.additive.observe(batch, n)
        if self.shadow is not None:
            self._detect(batch, with_pairs)
            self.shadow.observe(batch, n)
        self.forget(n)
        self.conversations += n
        by_point: dict[PointKey, list[Outcome]] = {}
        for outcome in batch:
            point = self.points.get(outcome.point)
            if point is not None and outcome.edge in point.edges:
                by_point.setdefault(outcome.point, []).append(outcome)
        for key in sorted(by_point):
            point = self.points[key]
            rows = by_point[key]
            given = [set(earlier_answers(o.answers, o.node_id, o.button_id)) for o in rows]
            self._register(point, (a for answers in given for a in answers))
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

    def _update(
        self,
        edge: _Edge,
        groups: Sequence[tuple[tuple[str, int, tuple[int, ...]], list[int]]],
        answers: int,
    ) -> None:
        z = np.zeros((len(groups), self.fixed + answers))
        trials = np.empty(len(groups))
        successes = np.empty(len(groups))
        for r, ((_, cell, active), (n, y)) in enumerate(groups):
            if self.config.pairs:
                z[r, : self.fixed] = pair_design.ROWS[cell]
            else:
                z[r, 0] = 1.0
                z[r, 1 : 1 + F] = features(CELLS[cell])
            for a in active:
                z[r, self.fixed + a] = 1.0
            trials[r], successes[r] = n, y
        m = edge.mean
        w = m.copy()
        for _ in range(NEWTON_STEPS):
            p = _sigmoid(z @ w)
            gradient = edge.q @ (w - m) - z.T @ (successes - trials * p)
            hessian = edge.q + (z.T * (trials * p * (1.0 - p))) @ z
            step = np.linalg.solve(hessian, gradient)
            w -= step
            if float(np.max(np.abs(step))) < NEWTON_TOLERANCE:
                break
        p = _sigmoid(z @ w)
        edge.q = edge.q + (z.T * (trials * p * (1.0 - p))) @ z
        edge.q = 0.5 * (edge.q + edge.q.T)  # exactly symmetric
        edge.h = edge.q @ w

    # ---- change detection ----------------------------------------------------------------------

    def _log_likelihood(self, batch: Sequence[Outcome]) -> dict[PointKey, float]:
        """Per point, the batch's log-likelihood under this learner's posterior
        predictive (the probit approximation ``sigmoid(mu / sqrt(1 + pi s^2 / 8))``
        of the logit's Gaussian ``N(mu, s^2)``: an uncertain model's predictions
        are moderated, not taken at its mean): a prequential score, called before
        the batch is learned. One solve per (point, edge) gives the mean and every
        row's variance of that edge's outcomes at once."""
        groups: dict[tuple[PointKey, str], list[Outcome]] = {}
        for o in batch:
            point = self.points.get(o.point)
            if point is not None and o.edge in point.edges:
                groups.setdefault((o.point, o.edge), []).append(o)
        out: dict[PointKey, float] = {}
        for (key, edge_id), outcomes in groups.items():
            point = self.points[key]
            edge = point.edges[edge_id]
            rows = self._design(point, outcomes, len(edge.h))
            solved = np.linalg.solve(edge.q, np.column_stack((edge.h, rows.T)))
            mu = rows @ solved[:, 0]
            variance = np.einsum("ij,ji->i", rows, solved[:, 1:])
            # the posterior predictive (probit approximation: MacKay 1992)
            z = mu / np.sqrt(1.0 + math.pi * variance / 8.0)
            # log sigmoid(z) for a lead, log sigmoid(-z) else, computed stably
            signed = np.where([o.success for o in outcomes], z, -z)
            out[key] = out.get(key, 0.0) - float(np.logaddexp(0.0, -signed).sum())
        return out

    def _design(self, point: _Point, outcomes: Sequence[Outcome], width: int) -> FloatArray:
        """One row of weights' inputs per outcome: the cell's coding, then a 1 per
        earlier answer the point knows."""
        rows = np.zeros((len(outcomes), width))
        if self.config.pairs:
            rows[:, : self.fixed] = pair_design.ROWS[[o.cell for o in outcomes]]
        else:
            rows[:, 0] = 1.0
            for r, o in enumerate(outcomes):
                rows[r, 1 : 1 + F] = features(CELLS[o.cell])
        for r, o in enumerate(outcomes):
            for a in earlier_answers(o.answers, o.node_id, o.button_id):
                i = point.index.get(a)
                if i is not None:
                    rows[r, self.fixed + i] = 1.0
        return rows

    def _detect(self, batch: Sequence[Outcome], mine: dict[PointKey, float] | None) -> None:
        """Page's CUSUM, per point, of the shadow's (short half-life) predictive
        log-likelihood minus this learner's: above ``change_threshold`` nats the
        point's world has changed, and its posterior becomes the shadow's,
        tempered to :data:`ADOPTED_EVIDENCE` of its evidence (the evidence from
        before the change is dropped at once instead of decaying at the long
        half-life). A change seen at one point lowers the bar for the others in
        the same batch to :data:`CASCADE` of the threshold (see there)."""
        shadow = self.shadow
        assert shadow is not None
        if mine is None:  # not scored yet (it is when pairs are weighed)
            mine = self._log_likelihood(batch)
        theirs = shadow._log_likelihood(batch)
        sums = {key: self.cusum.get(key, 0.0) for key in self.cusum}
        for key, score in mine.items():
            sums[key] = max(0.0, sums.get(key, 0.0) + theirs.get(key, score) - score)
        threshold = self.config.change_threshold
        if any(s > threshold for s in sums.values()):
            threshold *= CASCADE
        for key, s in sums.items():
            if s > threshold:
                self.points[key] = self._adopt(shadow.points[key], shadow)
                self.changes += 1
                self.changed_at = self.conversations
                s = 0.0
            self.cusum[key] = s

    def _adopt(self, point: _Point, other: OnlineLearner) -> _Point:
        """A copy of ``other``'s point (same features) keeping :data:`ADOPTED_EVIDENCE`
        of its evidence over the prior (both learners share the prior)."""
        assert other.fixed == self.fixed
        adopted = copy.deepcopy(point)
        for edge in adopted.edges.values():
            q0, h0 = self._prior(len(edge.h))
            edge.q = q0 + ADOPTED_EVIDENCE * (edge.q - q0)
            edge.h = h0 + ADOPTED_EVIDENCE * (edge.h - h0)
        return adopted

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

    # ---- seeding from a fit ------------------------------------------------------------------

    @classmethod
    def from_snapshot(
        cls,
        snapshot: PolicySnapshot,
        config: OnlineConfig | None = None,
        conversations: int | None = None,
    ) -> OnlineLearner:
        """A learner whose posterior is moment-matched to ``snapshot``'s draws,
        the fit's evidence tempered to the forgetting horizon (``conversations``:
        what the fit saw; by default its diagnostics' ``conversations``)."""
        points = {key: p.candidates for key, p in snapshot.points.items()}
        learner = cls(snapshot.flow_id, snapshot.flow_version, points, config)
        learner.anchor = str(snapshot.diagnostics.get("fit_version", snapshot.version))
        seen = conversations
        if seen is None:
            raw = snapshot.diagnostics.get("conversations")
            seen = int(raw) if isinstance(raw, int | float) and not isinstance(raw, bool) else 0
        kept = learner.config.half_life / math.log(2.0)
        temper = 1.0 if seen <= 0 or seen <= kept else kept / seen
        for key, posterior in snapshot.points.items():
            point = learner.points[key]
            learner._register(point, _answer_pairs(posterior.answers))
            for name in _answer_pairs(posterior.answers):  # the fit's answers stay published
                i = point.index[name]
                point.support[i] = max(point.support[i], learner.config.min_answer_support)
            for e, edge_id in enumerate(posterior.candidates):
                draws = np.concatenate(
                    [
                        posterior.base[:, e, None].astype(np.float64),
                        posterior.slopes[:, e, :].astype(np.float64),
                        _pairs_aligned(posterior, e, P if learner.config.pairs else 0),
                        _aligned(posterior, point, e),
                    ],
                    axis=1,
                )
                published = learner.published_fixed
                known = np.ones(draws.shape[1], dtype=bool)
                known[1 + F :] = False
                if learner.config.pairs:
                    for pair in posterior.pairs:
                        known[1 + F + PAIR_INDEX[pair]] = True
                for name in _answer_pairs(posterior.answers):
                    known[published + point.index[name]] = True
                if learner.config.pairs:
                    learner._seed_pairs(point.edges[edge_id], draws, known, temper)
                    continue
                q0, h0 = learner._prior(draws.shape[1])
                mean = np.where(known, draws.mean(axis=0), np.linalg.solve(q0, h0))
                size = int(known.sum())
                cov: FloatArray = np.zeros((size, size))
                if len(draws) > 1:
                    cov = np.atleast_2d(np.cov(draws[:, known], rowvar=False))
                cov = cov + MIN_VARIANCE * np.eye(size)
                q_fit = q0.copy()
                q_fit[np.ix_(known, known)] = np.linalg.inv(cov)
                q_fit = 0.5 * (q_fit + q_fit.T)
                edge = point.edges[edge_id]
                edge.q = (1.0 - temper) * q0 + temper * q_fit
                edge.h = (1.0 - temper) * h0 + temper * (q_fit @ mean)
        if learner.additive is not None:  # the model without pairs, seeded alike
            additive = replace(learner.config, pairs=False)
            learner.additive = cls.from_snapshot(snapshot, additive, conversations)
        return learner

    def _seed_pairs(
        self, edge: _Edge, draws: FloatArray, known: npt.NDArray[np.bool_], temper: float
    ) -> None:
        """With pairs: the fit's moment-matched Gaussian over the published weights it
        knows, ``N(mean, cov)``, is taken as a tempered Gaussian observation of those
        weights (``B w``, B the publishing map): ``Q = Q0 + t B' cov^-1 B``,
        ``h = h0 + t B' cov^-1 mean``."""
        size = int(known.sum())
        cov: FloatArray = np.zeros((size, size))
        if len(draws) > 1:
            cov = np.atleast_2d(np.cov(draws[:, known], rowvar=False))
        cov = cov + MIN_VARIANCE * np.eye(size)
        precision = np.linalg.inv(cov)
        b = self._publish_map(draws.shape[1] - self.published_fixed)[known]
        q0, h0 = self._prior(b.shape[1])
        edge.q = q0 + temper * (b.T @ precision @ b)
        edge.q = 0.5 * (edge.q + edge.q.T)
        edge.h = h0 + temper * (b.T @ (precision @ draws[:, known].mean(axis=0)))

    @property
    def published_fixed(self) -> int:
        """Weights a snapshot has before the answers: intercept, cell slopes, pairs."""
        return 1 + F + (P if self.config.pairs else 0)

    def _publish_map(self, answers: int) -> FloatArray:
        """(published_fixed + answers, fixed + answers): the snapshot's weights of the
        learner's (the pair coding's TRANSFORM, then the answers as they are)."""
        out = np.zeros((self.published_fixed + answers, self.fixed + answers))
        if self.config.pairs:
            out[: self.published_fixed, : self.fixed] = pair_design.TRANSFORM
        else:
            out[: self.fixed, : self.fixed] = np.eye(self.fixed)
        out[self.published_fixed :, self.fixed :] = np.eye(answers)
        return out

    # ---- publishing ---------------------------------------------------------------------------

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

    def snapshot(
        self,
        version: str,
        created_at: float,
        guardrails: Guardrails | None = None,
        *,
        seed: int | None = None,
    ) -> PolicySnapshot:
        """``draws`` joint draws per edge from the posterior, as a snapshot
        (deterministic for the learner's state and the version or ``seed``)."""
        gaussians: list[PointGaussian] = []
        for key in sorted(self.points):
            if self.additive is not None and not self.uses_pairs(key):
                gaussians.append(self.additive._gaussian(key))
            else:
                gaussians.append(self._gaussian(key))
        return self._snapshot(version, created_at, guardrails, gaussians, seed)

    def uses_pairs(self, key: PointKey) -> bool:
        """Whether the point's published posterior has pairs: the model with pairs
        predicted the point's outcomes better than the additive one (discounted)."""
        return self.config.pairs and self.pair_evidence.get(key, 0.0) > 0.0

    def _gaussian(self, key: PointKey) -> PointGaussian:
        """The point's published weights' Gaussian, per edge (the marginal of the
        published answers; with pairs, mapped to the snapshot's coding)."""
        point = self.points[key]
        keep = self.published_answers(key)
        scale = self.config.draw_scale
        means, factors = [], []
        if self.config.pairs:
            rows = [*range(self.published_fixed), *(self.published_fixed + a for a in keep)]
            selected = self._publish_map(len(point.answers))[np.array(rows, dtype=np.intp)]
            for edge_id in point.candidates:
                edge = point.edges[edge_id]
                # the published weights B w: N(B m, B Q^-1 B')
                marginal = selected @ np.linalg.solve(edge.q, selected.T)
                factors.append(np.linalg.cholesky(0.5 * (marginal + marginal.T)) * scale)
                means.append(selected @ edge.mean)
        else:
            columns = np.array(
                [0, *range(1, self.fixed), *(self.fixed + a for a in keep)], dtype=np.intp
            )
            for edge_id in point.candidates:
                edge = point.edges[edge_id]
                # the marginal of the published weights: N(m[c], (Q^-1)[c, c])
                marginal = np.linalg.inv(edge.q)[np.ix_(columns, columns)]
                factor = np.linalg.cholesky(0.5 * (marginal + marginal.T))
                factors.append(factor if scale == 1.0 else factor * scale)
                means.append(edge.mean[columns])
        return PointGaussian(
            node_id=key[0],
            button_id=key[1],
            candidates=point.candidates,
            answers=tuple(answer_label(*point.answers[a]) for a in keep),
            mean=np.array(means, dtype=np.float64),
            factor=np.array(factors, dtype=np.float64),
            pairs=PAIR_NAMES if self.config.pairs else (),
        )

    def _snapshot(
        self,
        version: str,
        created_at: float,
        guardrails: Guardrails | None,
        gaussians: list[PointGaussian],
        seed: int | None,
    ) -> PolicySnapshot:
        draws = self.config.draws
        source = GaussianPosterior(
            snapshot_seed(version) if seed is None else seed, draws, tuple(gaussians)
        )
        points = draw_points(source)
        diagnostics: dict[str, Any] = {
            "source": "online",
            "outcomes": self.outcomes,
            "conversations": self.conversations,
            "half_life_conversations": self.config.half_life,
            "draws": draws,
            "answer_features": sum(len(p.answers) for p in points.values()),
        }
        if self.config.pairs:
            diagnostics["pair_points"] = sum(1 for p in points.values() if p.pairs)
        if self.shadow is not None:
            diagnostics["changes_detected"] = self.changes
        if self.anchor is not None:
            diagnostics["fit_version"] = self.anchor
        return PolicySnapshot(
            flow_id=self.flow_id,
            flow_version=self.flow_version,
            version=version,
            created_at=created_at,
            points=points,
            guardrails=guardrails if guardrails is not None else Guardrails(),
            diagnostics=diagnostics,
            source=source,
        )


def _answer_pairs(names: Sequence[str]) -> list[tuple[str, str]]:
    out = []
    for name in names:
        node, _, button = name.partition(":")[2].partition("=")
        out.append((node, button))
    return out


def _pairs_aligned(posterior: PointPosterior, e: int, width: int) -> FloatArray:
    """The posterior's pair slopes of edge ``e`` in PAIR_NAMES order (``width``
    columns: P, or 0 for a learner without pairs; zeros for pairs it does not know)."""
    out = np.zeros((posterior.base.shape[0], width))
    if width:
        for j, name in enumerate(posterior.pairs):
            out[:, PAIR_INDEX[name]] = posterior.pair_slopes[:, e, j]
    return out


def _aligned(posterior: PointPosterior, point: _Point, e: int) -> FloatArray:
    """The posterior's answer slopes of edge ``e`` in the learner's answer order
    (zeros for answers the snapshot does not know)."""
    out = np.zeros((posterior.base.shape[0], len(point.answers)))
    for j, name in enumerate(_answer_pairs(posterior.answers)):
        out[:, point.index[name]] = posterior.answer_slopes[:, e, j]
    return out

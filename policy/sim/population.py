"""A synthetic visitor population with a known truth, for one real flow. Pure.

Visitors arrive one after another (a Poisson process whose rate follows the
site's day: quiet at night, busiest in the evening). Each has a context
(device, UTM parameters or referrer, locale, time zone) that the real
:func:`policy.features.cell_of` maps to a context cell, and the answer they
would give at every question of the flow. A conversation walks the flow's
graph with these answers, an arm picking the edge at every *decision point*
(a button with several candidate edges): :func:`policy.sim.conversations.walk`.

Whether the conversation ends in a lead is drawn once at the end, with

    P(lead) = sigmoid(intercept + context effects + answer effects
                      + sum over the decisions taken of edge_effect(edge, cell))

and 0 after a dead-end answer (renting, no usable roof). ``edge_effect`` is 0
for a decision point's default edge (its first candidate) and
``base + slopes . features(cell)`` for the others: edge x context interactions,
so the best edge differs between cells. Answer effects are only given to
questions every eligible visitor answers whatever the edges (property, bill,
timeframe); questions met after an edge (battery, shading, the estimate offer)
are folded into that edge's effect. Then the decisions a visitor meets do not
depend on the edges taken, and the logit is a sum: the oracle that takes, at
every decision point, the edge with the largest true effect for the visitor's
cell maximises each visitor's lead probability.

The other worlds (:mod:`policy.sim.worlds`) widen the truth: an edge effect may
also hold products of context levels (``interactions``), terms for the answers
given before the decision (``answers``) and for a hidden visitor type that also
drives those answers (``kinds``), and the edge effects may change sign from one
visitor on (``flip_at``). Then a visitor's lead probability is a property of
the *path* (the edges taken), and the oracle enumerates the paths
(:meth:`Population.best_path`).
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from policy.features import (
    DEVICES,
    FACTOR_LEVELS,
    FEATURE_NAMES,
    LANGUAGES,
    SOURCES,
    Cell,
    cell_of,
    features,
    labels,
)
from policy.sim.contexts import pick, visitor_context
from policy.sim.conversations import Chooser, Conversation, PointKey, Visitor, walk
from schemas.flow import Flow, NodeKind
from services.policy_port import DecisionPoint

ALL_LABELS = tuple(
    f"{name}={level}"
    for name, levels in zip(Cell._fields, FACTOR_LEVELS, strict=True)
    for level in levels
)  # every level of every factor, as labels(cell) writes them


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


@dataclass(frozen=True, slots=True)
class EdgeEffect:
    """The true change of the lead logit when this edge is taken instead of the
    decision point's default edge: ``base + sum(slopes[f] * x[f])``."""

    base: float
    slopes: Mapping[str, float] = field(default_factory=dict)
    # (label, label) -> logit, for a visitor whose cell has both labels ("device=mobile",
    # any level, the baselines included): what additive slopes cannot express
    interactions: Mapping[tuple[str, str], float] = field(default_factory=dict)
    # an answer given before the decision (question, button) -> logit
    answers: Mapping[PointKey, float] = field(default_factory=dict)
    # the visitor's hidden type -> logit
    kinds: Mapping[str, float] = field(default_factory=dict)


class _Branch(Exception):
    """The oracle's walk met a decision point its plan does not cover yet."""

    def __init__(self, key: PointKey, candidates: tuple[str, ...]) -> None:
        self.key = key
        self.candidates = candidates


@dataclass(frozen=True)
class Population:
    flow: Flow
    devices: Mapping[str, float]
    sources: Mapping[str, float]
    languages: Mapping[str, float]
    hourly_traffic: Sequence[float]  # 24 relative arrival rates by the site's local hour
    arrivals_per_day: float
    site_time_zone: str
    answer_shares: Mapping[str, Mapping[str, float]]  # question node -> button -> share
    intercept: float
    context_effects: Mapping[str, float]  # feature name -> logit change
    answer_effects: Mapping[PointKey, float]
    dead_ends: frozenset[PointKey]
    edge_effects: Mapping[PointKey, Mapping[str, EdgeEffect]]  # non-default edges only
    edge_scale: float = 1.0
    start: datetime = datetime(2026, 3, 2, tzinfo=UTC)
    # a hidden visitor type (name -> share) and, per type, answer shares that replace
    # ``answer_shares`` for some questions; its own logit in ``kind_effects``
    kinds: Mapping[str, float] = field(default_factory=dict)
    kind_answer_shares: Mapping[str, Mapping[str, Mapping[str, float]]] = field(
        default_factory=dict
    )
    kind_effects: Mapping[str, float] = field(default_factory=dict)
    flip_at: int | None = None  # from this visitor (index) on, every edge effect changes sign
    _logits: dict[tuple[PointKey, str, Cell], float] = field(
        init=False, default_factory=dict, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        self.validate()

    # -- the truth -----------------------------------------------------------

    def validate(self) -> None:
        """The population must describe exactly the flow's decision points and questions."""
        flow = self.flow
        points = {
            (n, b): flow.node(n).button(b) for n, b in flow.decision_points()
        }  # every decision point of the flow
        if set(self.edge_effects) != set(points):
            raise ValueError(
                f"edge effects cover {sorted(self.edge_effects)}, the flow's decision points"
                f" are {sorted(points)}"
            )
        for key, edges in self.edge_effects.items():
            button = points[key]
            assert button is not None
            if set(edges) != set(button.next[1:]):
                raise ValueError(f"{key}: effects for {sorted(edges)}, candidates {button.next}")
            for effect in edges.values():
                unknown = set(effect.slopes) - set(FEATURE_NAMES)
                if unknown:
                    raise ValueError(f"{key}: unknown features {sorted(unknown)}")
                paired = {label for pair in effect.interactions for label in pair}
                if paired - set(ALL_LABELS):
                    raise ValueError(f"{key}: unknown labels {sorted(paired - set(ALL_LABELS))}")
                if set(effect.kinds) - set(self.kinds):
                    raise ValueError(f"{key}: unknown visitor types {sorted(effect.kinds)}")
        for kind, overrides in self.kind_answer_shares.items():
            if kind not in self.kinds:
                raise ValueError(f"answer shares for an unknown visitor type {kind!r}")
            for question, override in overrides.items():
                if set(override) != set(self.answer_shares.get(question, {})):
                    raise ValueError(f"{kind}: answer shares of {question} must cover its buttons")
        for node in flow.nodes.values():
            if node.kind is not NodeKind.QUESTION:
                continue
            shares = self.answer_shares.get(node.id)
            if shares is None or set(shares) != {b.id for b in node.buttons}:
                raise ValueError(f"answer shares of {node.id} must cover its buttons")
        for name, mix in (
            ("devices", (self.devices, DEVICES)),
            ("sources", (self.sources, SOURCES)),
            ("languages", (self.languages, LANGUAGES)),
        ):
            if not set(mix[0]) <= set(mix[1]):
                raise ValueError(f"{name}: unknown levels {sorted(set(mix[0]) - set(mix[1]))}")
        if set(self.context_effects) - set(FEATURE_NAMES):
            raise ValueError("context effects name unknown features")
        if len(self.hourly_traffic) != 24:
            raise ValueError("hourly_traffic needs 24 values")

    def edge_logit(
        self,
        key: PointKey,
        edge: str,
        cell: Cell,
        *,
        answered: Sequence[PointKey] = (),
        kind: str = "",
        index: int = 0,
    ) -> float:
        """The true logit change of taking ``edge`` at ``key`` for a visitor in ``cell``
        (of type ``kind``, who gave ``answered`` before the decision; visitor ``index``
        in arrival order, for a world that changes)."""
        cached = self._logits.get((key, edge, cell))
        if cached is None:
            effect = self.edge_effects[key].get(edge)
            cached = 0.0
            if effect is not None:
                x = features(cell)
                cached = effect.base + sum(
                    w * float(x[FEATURE_NAMES.index(f)]) for f, w in effect.slopes.items()
                )
                mine = set(labels(cell))
                cached += sum(w for (a, b), w in effect.interactions.items() if {a, b} <= mine)
            self._logits[(key, edge, cell)] = cached
        value = cached
        effect = self.edge_effects[key].get(edge)
        if effect is not None and (effect.answers or effect.kinds):
            value += sum(effect.answers.get(a, 0.0) for a in answered)
            value += effect.kinds.get(kind, 0.0)
        value *= self.edge_scale
        if self.flip_at is not None and index >= self.flip_at:
            value = -value
        return value

    def answer_shares_of(self, kind: str) -> dict[str, Mapping[str, float]]:
        """Question node -> button -> share for a visitor of type ``kind`` (the
        type's overrides over ``answer_shares``; ``""`` or an unknown type: those)."""
        return {**self.answer_shares, **self.kind_answer_shares.get(kind, {})}

    def best_edge(self, key: PointKey, candidates: Sequence[str], cell: Cell) -> str:
        """The candidate with the largest true effect (the first of ties)."""
        return max(candidates, key=lambda e: self.edge_logit(key, e, cell))

    def context_logit(self, cell: Cell) -> float:
        x = features(cell)
        return sum(w * float(x[FEATURE_NAMES.index(f)]) for f, w in self.context_effects.items())

    def lead_probability(self, visitor: Visitor, conversation: Conversation) -> float:
        if any(a in self.dead_ends for a in conversation.answered):
            return 0.0
        logit = self.intercept + self.context_logit(visitor.cell)
        logit += self.kind_effects.get(visitor.kind, 0.0)
        logit += sum(self.answer_effects.get(a, 0.0) for a in conversation.answered)
        at = conversation.answered_at or (0,) * len(conversation.decisions)
        for (key, edge), n in zip(conversation.decisions, at, strict=True):
            logit += self.edge_logit(
                key,
                edge,
                visitor.cell,
                answered=conversation.answered[:n],
                kind=visitor.kind,
                index=visitor.index,
            )
        return sigmoid(logit)

    def best_path(self, visitor: Visitor) -> tuple[dict[PointKey, str], float]:
        """The oracle's plan: the edges (per decision point met) of the path with the
        largest lead probability for this visitor, and that probability. Every path is
        walked (the solar flow has at most 8); ties go to the earlier candidates."""
        plans: list[dict[PointKey, str]] = [{}]
        best: tuple[dict[PointKey, str], float] | None = None
        while plans:
            plan = plans.pop()

            def follow(point: DecisionPoint, _: Visitor, plan: dict[PointKey, str] = plan) -> str:
                key = (point.node_id, point.button_id)
                if key not in plan:
                    raise _Branch(key, point.candidates)
                return plan[key]

            try:
                conversation = self.walk(visitor, follow)
            except _Branch as branch:
                plans.extend({**plan, branch.key: c} for c in reversed(branch.candidates))
                continue
            p = self.lead_probability(visitor, conversation)
            if best is None or p > best[1]:
                best = (dict(conversation.decisions), p)
        assert best is not None
        return best

    # -- conversations -------------------------------------------------------

    def walk(self, visitor: Visitor, choose: Chooser) -> Conversation:
        """Play the visitor's conversation on this population's flow (:func:`walk`);
        ``choose`` picks the edge at each decision point."""
        return walk(self.flow, visitor, choose)

    # -- visitors ------------------------------------------------------------

    def visitors(self, count: int, seed: int) -> Iterator[Visitor]:
        """``count`` visitors in arrival order; the same seed gives the same stream."""
        rnd = random.Random(f"visitors/{seed}")
        zone = ZoneInfo(self.site_time_zone)
        top = max(self.hourly_traffic)
        mean = sum(self.hourly_traffic) / 24.0
        peak_rate = self.arrivals_per_day / 86_400.0 * top / mean  # thinned to the day's shape
        t = self.start.timestamp()
        devices = list(self.devices.items())
        sources = list(self.sources.items())
        languages = list(self.languages.items())
        questions = {n: list(shares.items()) for n, shares in self.answer_shares.items()}
        kinds = list(self.kinds.items())
        by_kind = {
            k: {n: list(s.items()) for n, s in self.answer_shares_of(k).items()}
            for k in self.kind_answer_shares
        }
        index = 0
        while index < count:
            t += rnd.expovariate(peak_rate)
            hour = datetime.fromtimestamp(t, zone).hour
            if rnd.random() * top > self.hourly_traffic[hour]:
                continue
            device = pick(rnd, devices)
            source = pick(rnd, sources)
            language = pick(rnd, languages)
            context = visitor_context(rnd, device, source, language)
            cell = cell_of(context, t)
            kind = pick(rnd, kinds) if kinds else ""  # no draw without types: same stream
            if (cell.device, cell.source, cell.language) != (device, source, language):
                raise AssertionError(f"context {context} is in cell {cell}, meant {source}")
            yield Visitor(
                index=index,
                conversation_id=str(uuid.UUID(int=rnd.getrandbits(128), version=4)),
                started_at=t,
                context=context,
                cell=cell,
                answers={
                    n: pick(rnd, shares) for n, shares in by_kind.get(kind, questions).items()
                },
                seconds_per_answer=rnd.uniform(3.0, 12.0),
                draw=rnd.random(),
                kind=kind,
            )
            index += 1

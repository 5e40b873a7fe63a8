"""Thompson sampling over a posterior snapshot: the policy the decider calls. Pure.

For a decision point with candidates ``e_0..e_{k-1}`` (``e_0``: the flow's
default edge, the button's first ``next``) and a visitor in context cell ``c``
(0/1 features ``x``, see :mod:`policy.features`), one decision is:

1. ``seed = decision_seed(conversation id, command seq, snapshot version)``
   (63 bits of SHA-256, :func:`policy.uniform.decision_seed`); from it two
   uniform numbers ``u1, u2`` in [0, 1): the first two outputs ``z1, z2`` of
   SplitMix64 started at ``seed``, ``u = (z >> 11) / 2**53``
   (:mod:`policy.decision_draws`). Integer arithmetic only: every process,
   machine and Python version derives the same numbers;
2. a killed flow takes ``e_0``; so does a conversation in the holdout
   (``holdout_share(conversation id) < holdout``, a hash of the id, so the whole
   conversation is held out);
3. else, with probability ``explore = min(1, k * floor)`` (``u1 < explore``; the
   exploration floor) the candidate ``floor(u2 * k)``;
4. else the posterior draw ``s = floor(u2 * n)`` of the snapshot's ``n`` draws
   (both floors taken exactly, on integers: ``((z2 >> 11) * k) >> 53``),
   and the candidate with the highest ``base[s, e] + slopes[s, e] @ x``, i.e.
   the highest sampled conversion probability (the sigmoid is monotone); ties go
   to the lowest index. That sum is taken in float64 in a fixed order (``base``,
   then each active feature's slope in ``FEATURE_NAMES`` order, then the slope
   of each of the point's pair features the cell has (context interactions,
   snapshot v4) in the order of ``PointPosterior.pairs``, then the slope
   of each active answer feature in the order of the point's
   ``PointPosterior.answers``), element-wise, so it does not depend on a BLAS
   library's summation order or the CPU. A point without answer features (every
   snapshot of format v1: PyMC fits, conjugate updates), or a visitor who gave
   none of the answers the point knows, decides exactly as before answers
   existed.

Answers: a decision point's posterior may list answer features
(``answer:{node}={button}``, :mod:`policy.features`); the visitor's earlier
answers (:func:`policy.features.earlier_answers` of ``DecisionPoint.answers``)
that the point knows are its *answers key* (their indices, ascending). The
decision is conditioned on (cell, answers key), and ``EdgeChosen.features``
logs the cell's labels first, then the known answers' labels in the point's
order: exactly what the decision was conditioned on.

The logged propensity is the exact probability that this procedure gives the
chosen edge for this visitor: the share ``w_e`` of the snapshot's draws in which
``e`` wins, mixed with the floor and the holdout, ``h * [e = e_0] + (1 - h) *
((1 - explore) * w_e + explore / k)`` (1.0 for the default edge of a killed
flow): :meth:`policy.point_policy.Distribution.probabilities`. That is what analysts need to
evaluate other policies offline (inverse propensity weighting). Every
candidate gets at least ``(1 - h) * floor`` (with ``k * floor <= 1``).

Promotion: at a point the snapshot's guardrails promote
(:attr:`~policy.snapshot.Guardrails.promoted`, an edge among the point's
candidates), a conversation outside the holdout takes the promoted edge (no
exploration, no draw) and one in the holdout still takes ``e_0``; the
propensities are exact as ever: ``(1 - h) + h * [promoted = e_0]`` for the
promoted edge, ``h`` for ``e_0`` when it is not promoted, 0 for the others.
The seed is derived and logged as always, so ``replay --verify`` needs nothing
but the snapshot the decision names.

Scope: a snapshot serves the decision points of its own flow version whose
candidates match its posterior; anything else (no snapshot for the flow,
another flow version, an unknown point) goes to the fallback policy (uniform),
except that a killed snapshot sends every decision of its flow, any version, to
the default edge.

Where the parts live: the seeded numbers in :mod:`policy.decision_draws`, the
draws' winners per cell and their summation order in :mod:`policy.winners`, a
compiled point (its cells' and answers keys' distributions, the caches that keep
a decision O(us)) in :mod:`policy.point_policy`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from policy.decision_draws import TWO_POW_MINUS_53, holdout_share, splitmix64
from policy.features import CELL_LABELS, FEATURE_NAMES, cell_index
from policy.point_policy import Distribution, PointPolicy, explore_share
from policy.snapshot import PolicySnapshot, SnapshotError
from policy.uniform import UniformPolicy, decision_seed
from services.policy_port import DecisionPoint, EdgeChoice, EdgePolicy


@dataclass(frozen=True, slots=True)
class _Compiled:
    snapshot: PolicySnapshot
    points: Mapping[tuple[str, str], PointPolicy]
    killed_version: str

    def point(self, decision: DecisionPoint) -> PointPolicy | None:
        """The compiled point serving ``decision``, if the snapshot covers it."""
        if decision.flow_version != self.snapshot.flow_version:
            return None
        compiled = self.points.get((decision.node_id, decision.button_id))
        if compiled is None or compiled.candidates != decision.candidates:
            return None
        return compiled


CompiledSnapshot = _Compiled


def compile_snapshot(snapshot: PolicySnapshot) -> CompiledSnapshot:
    """What :meth:`ThompsonPolicy.install` builds from a snapshot (about a
    millisecond per decision point): pure, so a caller can build it off the event
    loop and hand it to ``install``."""
    return _compile(snapshot)


def _compile(snapshot: PolicySnapshot) -> _Compiled:
    if tuple(snapshot.feature_names) != FEATURE_NAMES:
        raise SnapshotError(f"snapshot {snapshot.version} was fitted on other features")
    points = {
        key: PointPolicy(posterior, snapshot.guardrails)
        for key, posterior in snapshot.points.items()
    }
    return _Compiled(snapshot, points, f"{snapshot.version}:killed")


@dataclass
class ThompsonPolicy:
    """Decides from the snapshot of the point's flow version; without one (or
    for a decision point the snapshot does not know) it falls back to uniform,
    unless the flow's snapshot is killed (then: the default edge).

    ``install`` swaps snapshots in place (the processors' hot swap): a decision
    reads one compiled snapshot reference, so it never sees half of an update.
    ``snapshots`` is the installed snapshot per flow id (read it; ``install``
    writes it)."""

    snapshots: dict[str, PolicySnapshot] = field(default_factory=dict)
    fallback: EdgePolicy = field(default_factory=UniformPolicy)
    _compiled: dict[str, _Compiled] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        for flow_id, snapshot in self.snapshots.items():
            self._compiled[flow_id] = _compile(snapshot)

    def install(self, snapshot: PolicySnapshot, compiled: CompiledSnapshot | None = None) -> bool:
        """Use ``snapshot`` for its flow; False (and ignored) if it is not newer
        than the installed one: for an older flow version, or for the same flow
        version and created no later (unless it is the same version string,
        which is installed again). Raises SnapshotError for a snapshot fitted on
        other features. Compiling takes about a millisecond per decision point;
        ``compiled``, :func:`compile_snapshot` of this very snapshot, saves it."""
        current = self.snapshots.get(snapshot.flow_id)
        if current is snapshot:
            return True
        if current is not None and current.version != snapshot.version:
            if snapshot.flow_version < current.flow_version:
                return False
            if (
                snapshot.flow_version == current.flow_version
                and snapshot.created_at <= current.created_at
            ):
                return False
        if compiled is None or compiled.snapshot is not snapshot:
            compiled = _compile(snapshot)
        self._compiled[snapshot.flow_id] = compiled
        self.snapshots[snapshot.flow_id] = snapshot
        return True

    def installed(self) -> Iterable[PolicySnapshot]:
        return self.snapshots.values()

    def snapshot_for(self, point: DecisionPoint) -> PolicySnapshot | None:
        snapshot = self.snapshots.get(point.flow_id)
        if snapshot is None or snapshot.flow_version != point.flow_version:
            return None
        return snapshot

    def _compiled_for(self, flow_id: str) -> _Compiled | None:
        snapshot = self.snapshots.get(flow_id)
        if snapshot is None:
            return None
        compiled = self._compiled.get(flow_id)
        if compiled is None or compiled.snapshot is not snapshot:
            # ``snapshots`` was written directly, or a decision raced an install
            compiled = _compile(snapshot)
            self._compiled[flow_id] = compiled
        return compiled

    def distribution(self, point: DecisionPoint) -> Distribution | None:
        """What ``choose`` does at ``point``; None when it uses the fallback."""
        return self.cell_distribution(point, cell_index(point.context, point.at))

    def cell_distribution(self, point: DecisionPoint, cell: int) -> Distribution | None:
        """What ``choose`` does at ``point`` for a visitor in ``CELLS[cell]``
        who gave ``point.answers`` (``point.context`` and ``point.at`` are not
        read); None when it uses the fallback. Off-policy evaluation asks this for
        the cell a decision logged."""
        compiled = self._compiled_for(point.flow_id)
        if compiled is None:
            return None
        served = compiled.point(point)
        if compiled.snapshot.guardrails.killed:
            if served is not None:
                return served.decision(point, cell)[2].distribution
            k = len(point.candidates)
            rails = compiled.snapshot.guardrails
            return Distribution((1.0 / k,) * k, explore_share(k, rails), rails.holdout, True)
        if served is None:
            return None
        return served.decision(point, cell)[2].distribution

    def choose(self, point: DecisionPoint) -> EdgeChoice:
        compiled = self._compiled_for(point.flow_id)
        if compiled is None:
            return self.fallback.choose(point)
        snapshot = compiled.snapshot
        rails = snapshot.guardrails
        served = compiled.point(point)
        if served is None and not rails.killed:
            return self.fallback.choose(point)
        cell = cell_index(point.context, point.at)
        seed = decision_seed(point.conversation_id, point.command_seq, snapshot.version)
        if served is None or rails.killed:  # served is None only when killed
            return EdgeChoice(
                chosen=point.candidates[0],
                propensity=1.0,
                policy_version=compiled.killed_version,
                seed=seed,
                features=CELL_LABELS[cell],
            )
        winners, offset, policy, logged = served.decision(point, cell)
        promoted = policy.distribution.promoted
        if rails.holdout > 0.0 and holdout_share(point.conversation_id) < rails.holdout:
            index = 0
        elif promoted is not None:
            index = promoted
        else:
            k = len(served.candidates)
            z2 = splitmix64(seed, 2) >> 11
            if (splitmix64(seed, 1) >> 11) * TWO_POW_MINUS_53 < policy.distribution.explore:
                index = (z2 * k) >> 53
            else:
                index = winners[offset + ((z2 * served.draws) >> 53)]
        return EdgeChoice(
            chosen=served.candidates[index],
            propensity=policy.logged[index],
            policy_version=snapshot.version,
            seed=seed,
            features=logged,
        )


def check_snapshot(
    snapshot: PolicySnapshot, points: Mapping[tuple[str, str], tuple[str, ...]]
) -> None:
    """Refuse a snapshot whose decision points do not match the flow version's."""
    for key, posterior in snapshot.points.items():
        candidates = points.get(key)
        if candidates is None:
            raise SnapshotError(f"snapshot {snapshot.version}: no decision point {key}")
        if candidates != posterior.candidates:
            raise SnapshotError(
                f"snapshot {snapshot.version}: {key} has candidates {posterior.candidates},"
                f" the flow has {candidates}"
            )

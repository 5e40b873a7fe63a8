"""Thompson sampling over a posterior snapshot: the policy the decider calls. Pure.

For a decision point with candidates ``e_0..e_{k-1}`` (``e_0``: the flow's
default edge, the button's first ``next``) and a visitor in context cell ``c``
(0/1 features ``x``, see :mod:`policy.features`), one decision is:

1. ``seed = decision_seed(conversation id, command seq, snapshot version)``
   (63 bits of SHA-256, :func:`policy.uniform.decision_seed`); from it two
   uniform numbers ``u1, u2`` in [0, 1): the first two outputs ``z1, z2`` of
   SplitMix64 started at ``seed`` (:func:`splitmix64`), ``u = (z >> 11) / 2**53``
   (:func:`decision_uniforms`). Integer arithmetic only: every process, machine
   and Python version derives the same numbers;
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
   then each active feature's slope in ``FEATURE_NAMES`` order), element-wise,
   so it does not depend on a BLAS library's summation order or the CPU.

The logged propensity is the exact probability that this procedure gives the
chosen edge for this visitor: the share ``w_e`` of the snapshot's draws in which
``e`` wins, mixed with the floor and the holdout, ``h * [e = e_0] + (1 - h) *
((1 - explore) * w_e + explore / k)`` (1.0 for the default edge of a killed
flow): :meth:`Distribution.probabilities`. That is what analysts need to
evaluate other policies offline (inverse propensity weighting). Every
candidate gets at least ``(1 - h) * floor`` (with ``k * floor <= 1``).

Scope: a snapshot serves the decision points of its own flow version whose
candidates match its posterior; anything else (no snapshot for the flow,
another flow version, an unknown point) goes to the fallback policy (uniform),
except that a killed snapshot sends every decision of its flow, any version, to
the default edge.

Speed: :meth:`ThompsonPolicy.install` compiles a snapshot once: for every
decision point and each of the ``len(CELLS)`` context cells it stores the
winner of every draw (numpy, about a millisecond per point); a cell's
distribution is built on its first decision and kept. A decision is then a
cell lookup, two SHA-256 hashes (seed, holdout) and a few integer operations,
with no numpy on the path.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from policy.features import CELL_LABELS, CELLS, FACTOR_LEVELS, FEATURE_NAMES, cell_index
from policy.snapshot import Guardrails, PointPosterior, PolicySnapshot, SnapshotError
from policy.uniform import UniformPolicy, decision_seed
from services.policy_port import DecisionPoint, EdgeChoice, EdgePolicy

_MASK64 = (1 << 64) - 1
_GAMMA = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB
_TWO_POW_MINUS_53 = 2.0**-53


def splitmix64(state: int, i: int) -> int:
    """The ``i``-th (from 1) 64-bit output of SplitMix64 started at ``state``."""
    z = (state + i * _GAMMA) & _MASK64
    z = ((z ^ (z >> 30)) * _MIX1) & _MASK64
    z = ((z ^ (z >> 27)) * _MIX2) & _MASK64
    return z ^ (z >> 31)


def decision_uniforms(seed: int) -> tuple[float, float]:
    """``u1`` (the exploration coin) and ``u2`` (the candidate or the draw) of a decision."""
    return (
        (splitmix64(seed, 1) >> 11) * _TWO_POW_MINUS_53,
        (splitmix64(seed, 2) >> 11) * _TWO_POW_MINUS_53,
    )


def holdout_share(conversation_id: str) -> float:
    """A stable uniform number in [0, 1) per conversation."""
    digest = hashlib.sha256(f"holdout/{conversation_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def _winners(posterior: PointPosterior, xs: npt.NDArray[np.float64]) -> npt.NDArray[np.intp]:
    """For each row of ``xs`` (feature vectors), the winning candidate of every
    draw: ``(rows, draws)``. Element-wise float64 sums in a fixed order."""
    base = np.asarray(posterior.base, dtype=np.float32).astype(np.float64)  # (n, k)
    slopes = np.asarray(posterior.slopes, dtype=np.float32).astype(np.float64)  # (n, k, f)
    logits = np.repeat(base[np.newaxis], len(xs), axis=0)  # (rows, n, k)
    for f in range(len(FEATURE_NAMES)):
        weights = xs[:, f]
        rows = np.flatnonzero(weights)
        if rows.size:
            logits[rows] += weights[rows, np.newaxis, np.newaxis] * slopes[np.newaxis, :, :, f]
    winners: npt.NDArray[np.intp] = np.argmax(logits, axis=2)
    return winners


def _cell_winners(posterior: PointPosterior) -> npt.NDArray[np.intp]:
    """``_winners`` of every cell's features, ``(len(CELLS), draws)``, computed
    factor by factor: each cell has one level per factor (the baseline level
    adds 0.0), so this is the same sum in the same order, broadcast."""
    base = np.asarray(posterior.base, dtype=np.float32).astype(np.float64)  # (n, k)
    slopes = np.asarray(posterior.slopes, dtype=np.float32).astype(np.float64)  # (n, k, f)
    n, k = base.shape
    logits = base
    first = 0
    for position, levels in enumerate(FACTOR_LEVELS):
        # this factor's effect per level, (levels, n, k): 0 for the baseline level
        effect = np.zeros((len(levels), n, k))
        effect[1:] = np.moveaxis(slopes[:, :, first : first + len(levels) - 1], 2, 0)
        first += len(levels) - 1
        shape = [1] * len(FACTOR_LEVELS) + [n, k]
        shape[position] = len(levels)
        logits = logits + effect.reshape(shape)
    winners: npt.NDArray[np.intp] = np.argmax(logits.reshape(len(CELLS), n, k), axis=2)
    return winners


def win_shares(posterior: PointPosterior, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """For each candidate, the share of posterior draws in which it is the best."""
    winners = _winners(posterior, np.asarray(x, dtype=np.float64)[np.newaxis])[0]
    counts = np.bincount(winners, minlength=len(posterior.candidates))
    shares: npt.NDArray[np.float64] = counts / float(len(winners))
    return shares


@dataclass(frozen=True, slots=True)
class Distribution:
    """What the policy does at one decision point for one visitor."""

    thompson: tuple[float, ...]  # win shares over the draws
    explore: float  # probability of the uniform branch (k * floor)
    holdout: float  # holdout share of the snapshot
    killed: bool

    def probabilities(self, in_holdout: bool | None = None) -> tuple[float, ...]:
        """Probability of each candidate (index 0 is the default edge). With
        ``in_holdout`` None: marginal over the holdout coin (what is logged)."""
        k = len(self.thompson)
        default = tuple(1.0 if i == 0 else 0.0 for i in range(k))
        if self.killed:
            return default
        learned = tuple((1 - self.explore) * p + self.explore / k for p in self.thompson)
        if in_holdout is True:
            return default
        if in_holdout is False:
            return learned
        h = self.holdout
        return tuple(h * d + (1 - h) * p for d, p in zip(default, learned, strict=True))


@dataclass(frozen=True, slots=True)
class _CellPolicy:
    distribution: Distribution
    logged: tuple[float, ...]  # distribution.probabilities()


def _explore(k: int, rails: Guardrails) -> float:
    return min(1.0, k * rails.min_exploration)


class _PointPolicy:
    """One decision point of a compiled snapshot: the winner of every draw in
    every cell (``winners[cell * draws + s]``; bytes when k <= 256), and each
    cell's distribution, built on the cell's first decision (deterministic, so
    building it twice in a race is harmless)."""

    __slots__ = ("_cells", "_rails", "_shares", "candidates", "draws", "winners")

    def __init__(self, posterior: PointPosterior, rails: Guardrails) -> None:
        k = len(posterior.candidates)
        winners = _cell_winners(posterior)  # (cells, draws)
        counts = np.stack([np.count_nonzero(winners == e, axis=1) for e in range(k)], axis=1)
        self.candidates = posterior.candidates
        self.draws: int = winners.shape[1]
        self.winners: Sequence[int] = (
            winners.astype(np.uint8).tobytes() if k <= 256 else tuple(winners.ravel().tolist())
        )
        self._shares: list[list[float]] = (counts / float(self.draws)).tolist()
        self._rails = rails
        self._cells: list[_CellPolicy | None] = [None] * len(CELLS)

    def cell(self, c: int) -> _CellPolicy:
        built = self._cells[c]
        if built is None:
            k = len(self.candidates)
            rails = self._rails
            dist = Distribution(
                tuple(self._shares[c]), _explore(k, rails), rails.holdout, rails.killed
            )
            built = _CellPolicy(dist, dist.probabilities())
            self._cells[c] = built
        return built


@dataclass(frozen=True, slots=True)
class _Compiled:
    snapshot: PolicySnapshot
    points: Mapping[tuple[str, str], _PointPolicy]
    killed_version: str

    def point(self, decision: DecisionPoint) -> _PointPolicy | None:
        """The compiled point serving ``decision``, if the snapshot covers it."""
        if decision.flow_version != self.snapshot.flow_version:
            return None
        compiled = self.points.get((decision.node_id, decision.button_id))
        if compiled is None or compiled.candidates != decision.candidates:
            return None
        return compiled


def _compile(snapshot: PolicySnapshot) -> _Compiled:
    if tuple(snapshot.feature_names) != FEATURE_NAMES:
        raise SnapshotError(f"snapshot {snapshot.version} was fitted on other features")
    points = {
        key: _PointPolicy(posterior, snapshot.guardrails)
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

    def install(self, snapshot: PolicySnapshot) -> bool:
        """Use ``snapshot`` for its flow; False (and ignored) if it is not newer
        than the installed one: for an older flow version, or for the same flow
        version and created no later (unless it is the same version string,
        which is installed again). Raises SnapshotError for a snapshot fitted on
        other features. Compiling takes about a millisecond per decision point."""
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
        (``point.context`` and ``point.at`` are not read); None when it uses the
        fallback. Off-policy evaluation asks this for the cell a decision logged."""
        compiled = self._compiled_for(point.flow_id)
        if compiled is None:
            return None
        served = compiled.point(point)
        if compiled.snapshot.guardrails.killed:
            if served is not None:
                return served.cell(cell).distribution
            k = len(point.candidates)
            rails = compiled.snapshot.guardrails
            return Distribution((1.0 / k,) * k, _explore(k, rails), rails.holdout, True)
        if served is None:
            return None
        return served.cell(cell).distribution

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
        policy = served.cell(cell)
        if rails.holdout > 0.0 and holdout_share(point.conversation_id) < rails.holdout:
            index = 0
        else:
            k = len(served.candidates)
            z2 = splitmix64(seed, 2) >> 11
            if (splitmix64(seed, 1) >> 11) * _TWO_POW_MINUS_53 < policy.distribution.explore:
                index = (z2 * k) >> 53
            else:
                draws = served.draws
                index = served.winners[cell * draws + ((z2 * draws) >> 53)]
        return EdgeChoice(
            chosen=served.candidates[index],
            propensity=policy.logged[index],
            policy_version=snapshot.version,
            seed=seed,
            features=CELL_LABELS[cell],
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

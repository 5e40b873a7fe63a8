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
flow): :meth:`Distribution.probabilities`. That is what analysts need to
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

Speed: :meth:`ThompsonPolicy.install` compiles a snapshot once: for every
decision point and each of the ``len(CELLS)`` context cells it stores the
winner of every draw (numpy, about a millisecond per point); a cell's
distribution is built on its first decision and kept. A decision is then a
cell lookup, two SHA-256 hashes (seed, holdout) and a few integer operations,
with no numpy on the path. With answers, the winners of an answers key are
computed for every cell at once on the key's first decision and kept in a
bounded LRU per point (:data:`ANSWER_KEYS_CACHED` keys, ``cells * draws``
bytes each: 38 kB at 192 cells and 200 draws); later decisions with that key,
in any cell, cost a dictionary lookup more than a cell's. A key is rare next to
its decisions (a point sees the combinations of a few earlier answers: 27 for
three questions of three buttons), so building all its cells at once (about a
millisecond) leaves misses out of the p99 (issue 16: p99 <= 50 us per decision
with answers), where a miss per (cell, key) came in 6% of decisions and cost
25-70 us. The install keeps every cell's float64 logits, so a key's build is
one numpy add per answer of the key over all cells (in key order, in place
after the first: the documented sum, element by element the same as one cell's),
one argmax, the winners packed to bytes and counted per cell and edge; the
distribution of a winner count is shared by every (cell, key) with that count,
and its logged probabilities are :meth:`Distribution.probabilities` unrolled
(the same operations in the same order). A key holds only answers the point
knows: the others never split it.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from policy.features import (
    CELL_LABELS,
    CELLS,
    FACTOR_LEVELS,
    FEATURE_NAMES,
    PAIR_INDEX,
    PAIR_INDICES,
    cell_index,
    earlier_answers,
    features,
)
from policy.snapshot import Guardrails, PointPosterior, PolicySnapshot, SnapshotError
from policy.uniform import UniformPolicy, decision_seed
from services.policy_port import DecisionPoint, EdgeChoice, EdgePolicy

_MASK64 = (1 << 64) - 1
_GAMMA = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB
_TWO_POW_MINUS_53 = 2.0**-53
ANSWER_CACHE_SIZE = 8192  # answers tuples, labels and shared distributions kept per point
ANSWER_KEYS_CACHED = 256  # answers keys (each with every cell's winners) kept per point


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


def _winners(
    posterior: PointPosterior,
    xs: npt.NDArray[np.float64],
    ys: npt.NDArray[np.float64] | None = None,
) -> npt.NDArray[np.intp]:
    """For each row of ``xs`` (cell feature vectors; ``ys``: answer feature
    vectors, none by default), the winning candidate of every draw: ``(rows,
    draws)``. Element-wise float64 sums in a fixed order."""
    base = np.asarray(posterior.base, dtype=np.float32).astype(np.float64)  # (n, k)
    slopes = np.asarray(posterior.slopes, dtype=np.float32).astype(np.float64)  # (n, k, f)
    logits = np.repeat(base[np.newaxis], len(xs), axis=0)  # (rows, n, k)
    for f in range(len(FEATURE_NAMES)):
        weights = xs[:, f]
        rows = np.flatnonzero(weights)
        if rows.size:
            logits[rows] += weights[rows, np.newaxis, np.newaxis] * slopes[np.newaxis, :, :, f]
    if posterior.pairs:
        pairs = np.asarray(posterior.pair_slopes, dtype=np.float32).astype(np.float64)
        for p, name in enumerate(posterior.pairs):
            i, j = PAIR_INDICES[PAIR_INDEX[name]]
            weights = xs[:, i] * xs[:, j]
            rows = np.flatnonzero(weights)
            if rows.size:
                logits[rows] += weights[rows, np.newaxis, np.newaxis] * pairs[np.newaxis, :, :, p]
    if ys is not None:
        extra = np.asarray(posterior.answer_slopes, dtype=np.float32).astype(np.float64)
        for a in range(len(posterior.answers)):
            weights = ys[:, a]
            rows = np.flatnonzero(weights)
            if rows.size:
                logits[rows] += weights[rows, np.newaxis, np.newaxis] * extra[np.newaxis, :, :, a]
    winners: npt.NDArray[np.intp] = np.argmax(logits, axis=2)
    return winners


def _cell_winners(posterior: PointPosterior) -> npt.NDArray[np.intp]:
    """``_winners`` of every cell's features, ``(len(CELLS), draws)``."""
    winners: npt.NDArray[np.intp] = np.argmax(_cell_logits(posterior), axis=2)
    return winners


def _cell_logits(posterior: PointPosterior) -> npt.NDArray[np.float64]:
    """Every cell's logits ``(len(CELLS), draws, k)``, computed factor by factor:
    each cell has one level per factor (the baseline level adds 0.0), so this is
    the same sum in the same order as :func:`_winners`, broadcast; then each of the
    point's pairs' slopes added to the cells that have the pair, in order."""
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
    out: npt.NDArray[np.float64] = np.ascontiguousarray(logits.reshape(len(CELLS), n, k))
    if posterior.pairs:
        pairs = np.asarray(posterior.pair_slopes, dtype=np.float32).astype(np.float64)
        for p, name in enumerate(posterior.pairs):
            # each cell once per pair: the same float64 adds, in the point's order
            out[_PAIR_CELLS[PAIR_INDEX[name]]] += pairs[np.newaxis, :, :, p]
    return out


_CELL_FEATURES = [features(cell) for cell in CELLS]
_PAIR_CELLS: tuple[npt.NDArray[np.intp], ...] = tuple(
    np.array([c for c, x in enumerate(_CELL_FEATURES) if x[i] and x[j]], dtype=np.intp)
    for i, j in PAIR_INDICES
)
"""Per pair feature (PAIR_NAMES order), the cells that have it."""


def win_shares(
    posterior: PointPosterior,
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.float64] | None = None,
) -> npt.NDArray[np.float64]:
    """For each candidate, the share of posterior draws in which it is the best
    for cell features ``x`` (and answer features ``y``, in ``posterior.answers``
    order; none given: no answers)."""
    ys = None if y is None else np.asarray(y, dtype=np.float64)[np.newaxis]
    winners = _winners(posterior, np.asarray(x, dtype=np.float64)[np.newaxis], ys)[0]
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
    promoted: int | None = None  # the promoted candidate's index, if the point has one

    def probabilities(self, in_holdout: bool | None = None) -> tuple[float, ...]:
        """Probability of each candidate (index 0 is the default edge). With
        ``in_holdout`` None: marginal over the holdout coin (what is logged).
        At a promoted point, outside the holdout the promoted edge has
        probability 1: the promoted edge gets ``(1 - h) + h * [promoted = 0]``,
        the default edge ``h + (1 - h) * [promoted = 0]``."""
        k = len(self.thompson)
        default = tuple(1.0 if i == 0 else 0.0 for i in range(k))
        if self.killed:
            return default
        if self.promoted is not None:
            learned = tuple(1.0 if i == self.promoted else 0.0 for i in range(k))
        else:
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


@dataclass(frozen=True, slots=True)
class _KeyWinners:
    """One answers key of a decision point, every cell at once: the winner of
    every draw (``winners[cell * draws + s]``; bytes when k <= 256), each cell's
    winner count per edge, and each cell's policy, built on the cell's first
    decision with this key."""

    winners: Sequence[int]
    counts: list[tuple[int, ...]]
    policies: list[_CellPolicy | None]


def _pack(winners: npt.NDArray[np.intp], k: int) -> Sequence[int]:
    return winners.astype(np.uint8).tobytes() if k <= 256 else tuple(winners.ravel().tolist())


class _PointPolicy:
    """One decision point of a compiled snapshot: the winner of every draw in
    every cell (``winners[cell * draws + s]``; bytes when k <= 256), and each
    cell's distribution, built on the cell's first decision (deterministic, so
    building it twice in a race is harmless). With answer features, the same
    per answers key for every cell at once, built on the key's first decision
    and kept in a bounded LRU.

    An answers key's miss is the sum's last steps for every cell: the cells'
    logits (kept from the install, ``(cells, draws, k)``) plus each answer's
    slopes in key order (one numpy add each, broadcast over the cells, in place
    after the first), one argmax, the winners packed to bytes and counted per
    cell and edge; the distribution of a winner count is shared by every
    (cell, key) with the same counts, and the answer labels of a key by every
    cell."""

    __slots__ = (
        "_answer_keys",
        "_answer_labels",
        "_cell_logits",
        "_cells",
        "_explore",
        "_key_labels",
        "_keys",
        "_lock",
        "_policies",
        "_promoted",
        "_rails",
        "_shares",
        "_terms",
        "answer_index",
        "candidates",
        "draws",
        "winners",
    )

    def __init__(self, posterior: PointPosterior, rails: Guardrails) -> None:
        k = len(posterior.candidates)
        self._answer_labels = posterior.answers
        self.answer_index: dict[tuple[str, str], int] = {}
        for i, name in enumerate(posterior.answers):
            node, _, button = name.partition(":")[2].partition("=")
            self.answer_index[(node, button)] = i
        self._keys: OrderedDict[tuple[int, ...], _KeyWinners] = OrderedDict()
        self._policies: dict[tuple[int, ...], _CellPolicy] = {}
        self._key_labels: dict[tuple[int, ...], tuple[str, ...]] = {}
        self._answer_keys: dict[tuple[tuple[str, str], ...], tuple[int, ...]] = {}
        self._lock = threading.Lock()
        logits = _cell_logits(posterior)  # (cells, draws, k), C-contiguous
        winners: npt.NDArray[np.intp] = np.argmax(logits, axis=2)  # (cells, draws)
        # kept for the (cell, answers) winners: each cell's logits, then each answer's
        # slope added in key order (float32 rounded, as the codec stores them)
        self._cell_logits: npt.NDArray[np.float64] | None = logits if posterior.answers else None
        terms = np.asarray(posterior.answer_slopes, np.float32).astype(np.float64)
        self._terms: list[npt.NDArray[np.float64]] = [
            np.ascontiguousarray(terms[:, :, a]) for a in range(len(posterior.answers))
        ]  # each (draws, k)
        counts = np.stack([np.count_nonzero(winners == e, axis=1) for e in range(k)], axis=1)
        self.candidates = posterior.candidates
        self.draws: int = winners.shape[1]
        self.winners: Sequence[int] = _pack(winners, k)
        self._shares: list[list[float]] = (counts / float(self.draws)).tolist()
        self._rails = rails
        self._explore = _explore(k, rails)
        edge = rails.promoted_edges().get(posterior.key)
        # a promotion of an edge this flow version's point does not have is ignored
        self._promoted = posterior.candidates.index(edge) if edge in posterior.candidates else None
        self._cells: list[_CellPolicy | None] = [None] * len(CELLS)

    def _policy(self, shares: tuple[float, ...]) -> _CellPolicy:
        rails = self._rails
        dist = Distribution(shares, self._explore, rails.holdout, rails.killed, self._promoted)
        if rails.killed or self._promoted is not None:
            return _CellPolicy(dist, dist.probabilities())
        # Distribution.probabilities() unrolled: the same float operations in the same
        # order (h * d + (1 - h) * ((1 - explore) * w + explore / k), d = [e = e_0])
        explore, h = self._explore, rails.holdout
        keep, spread, free = 1 - explore, explore / len(shares), 1 - h
        logged = tuple([h * 0.0 + free * (keep * w + spread) for w in shares])
        logged = (h * 1.0 + free * (keep * shares[0] + spread), *logged[1:])
        return _CellPolicy(dist, logged)

    def cell(self, c: int) -> _CellPolicy:
        built = self._cells[c]
        if built is None:
            built = self._policy(tuple(self._shares[c]))
            self._cells[c] = built
        return built

    def answers_key(self, point: DecisionPoint) -> tuple[int, ...]:
        """The indices (ascending) of the point's known answers the visitor gave
        before this decision; () when the point knows none."""
        index = self.answer_index
        if not index:
            return ()
        known = self._answer_keys.get(point.answers)
        if known is not None:
            return known
        given = earlier_answers(point.answers, point.node_id, point.button_id)
        known = tuple(sorted({index[a] for a in given if a in index}))
        if len(self._answer_keys) >= ANSWER_CACHE_SIZE:
            self._answer_keys.clear()
        self._answer_keys[point.answers] = known
        return known

    def keyed(self, c: int, key: tuple[int, ...]) -> tuple[Sequence[int], _CellPolicy]:
        """The winners (of every cell: cell ``c``'s start at ``c * draws``) and
        the distribution of cell ``c`` with answers ``key`` (not ())."""
        with self._lock:
            found = self._keys.get(key)
            if found is not None:
                self._keys.move_to_end(key)
        if found is None:
            found = self._build(key)
            with self._lock:
                self._keys[key] = found
                while len(self._keys) > ANSWER_KEYS_CACHED:
                    self._keys.popitem(last=False)
        policy = found.policies[c]
        if policy is None:
            policy = self._shared_policy(found.counts[c])
            found.policies[c] = policy  # deterministic: a race builds the same
        return found.winners, policy

    def _build(self, key: tuple[int, ...]) -> _KeyWinners:
        """An answers key's miss: for every cell, the same float64 sum in the same
        order as :func:`_winners` (the cell's logits, then each answer's slopes in
        key order), its argmax, and the winners counted per edge."""
        k = len(self.candidates)
        terms = self._terms
        assert self._cell_logits is not None  # a point with answers keeps them
        logits = np.add(self._cell_logits, terms[key[0]])
        for a in key[1:]:
            np.add(logits, terms[a], out=logits)
        winners: npt.NDArray[np.intp] = logits.argmax(2)  # (cells, draws)
        counts = np.stack([np.count_nonzero(winners == e, axis=1) for e in range(k)], axis=1)
        per_cell = [tuple(row) for row in counts.tolist()]
        return _KeyWinners(_pack(winners, k), per_cell, [None] * len(per_cell))

    def _shared_policy(self, counts: tuple[int, ...]) -> _CellPolicy:
        """The policy of a winner count, shared by every (cell, key) that has it."""
        policy = self._policies.get(counts)
        if policy is None:
            draws = self.draws
            policy = self._policy(tuple(n / draws for n in counts))
            if len(self._policies) >= ANSWER_CACHE_SIZE:
                self._policies.clear()
            self._policies[counts] = policy
        return policy

    def labels(self, key: tuple[int, ...]) -> tuple[str, ...]:
        """The answer labels a decision with answers ``key`` logs after its cell's."""
        labels = self._key_labels.get(key)
        if labels is None:
            labels = tuple(self._answer_labels[a] for a in key)
            if len(self._key_labels) >= ANSWER_CACHE_SIZE:
                self._key_labels.clear()
            self._key_labels[key] = labels
        return labels

    def decision(
        self, point: DecisionPoint, c: int
    ) -> tuple[Sequence[int], int, _CellPolicy, tuple[str, ...]]:
        """(winners, offset of the cell's draws in them, policy, logged features)."""
        key = self.answers_key(point)
        if not key:
            return self.winners, c * self.draws, self.cell(c), CELL_LABELS[c]
        winners, policy = self.keyed(c, key)
        return winners, c * self.draws, policy, CELL_LABELS[c] + self.labels(key)


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
            return Distribution((1.0 / k,) * k, _explore(k, rails), rails.holdout, True)
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
            if (splitmix64(seed, 1) >> 11) * _TWO_POW_MINUS_53 < policy.distribution.explore:
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

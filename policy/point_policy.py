"""One decision point of a compiled snapshot: what the policy does there, per cell and answers.
Pure.

:class:`Distribution` is what the policy does for one visitor at one point: the
share ``w_e`` of the snapshot's draws in which ``e`` wins, mixed with the
exploration floor and the holdout; :meth:`Distribution.probabilities` is the
exact probability of each candidate that the decision logs (see
:mod:`policy.thompson`).

Speed: :class:`PointPolicy` stores, when the snapshot is installed, the winner of
every draw for each of the ``len(CELLS)`` context cells (numpy, about a
millisecond per point); a cell's distribution is built on its first decision and
kept. A decision is then a cell lookup and a few integer operations, with no
numpy on the path. With answers, the winners of an answers key are computed for
every cell at once on the key's first decision and kept in a bounded LRU per
point (:data:`ANSWER_KEYS_CACHED` keys, ``cells * draws`` bytes each: 38 kB at
192 cells and 200 draws); later decisions with that key, in any cell, cost a
dictionary lookup more than a cell's. A key is rare next to its decisions (a
point sees the combinations of a few earlier answers: 27 for three questions of
three buttons), so building all its cells at once (about a millisecond) leaves
misses out of the p99 (issue 16: p99 <= 50 us per decision with answers), where
a miss per (cell, key) came in 6% of decisions and cost 25-70 us. The install
keeps every cell's float64 logits, so a key's build is one numpy add per answer
of the key over all cells (in key order, in place after the first: the
documented sum, element by element the same as one cell's), one argmax, the
winners packed to bytes and counted per cell and edge; the distribution of a
winner count is shared by every (cell, key) with that count, and its logged
probabilities are :meth:`Distribution.probabilities` unrolled (the same
operations in the same order). A key holds only answers the point knows: the
others never split it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from policy.features import CELL_LABELS, CELLS, earlier_answers
from policy.snapshot import Guardrails, PointPosterior
from policy.winners import cell_logits
from services.policy_port import DecisionPoint

ANSWER_CACHE_SIZE = 8192  # answers tuples, labels and shared distributions kept per point
ANSWER_KEYS_CACHED = 256  # answers keys (each with every cell's winners) kept per point


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
class CellPolicy:
    distribution: Distribution
    logged: tuple[float, ...]  # distribution.probabilities()


def explore_share(k: int, rails: Guardrails) -> float:
    return min(1.0, k * rails.min_exploration)


@dataclass(frozen=True, slots=True)
class KeyWinners:
    """One answers key of a decision point, every cell at once: the winner of
    every draw (``winners[cell * draws + s]``; bytes when k <= 256), each cell's
    winner count per edge, and each cell's policy, built on the cell's first
    decision with this key."""

    winners: Sequence[int]
    counts: list[tuple[int, ...]]
    policies: list[CellPolicy | None]


def _pack(winners: npt.NDArray[np.intp], k: int) -> Sequence[int]:
    return winners.astype(np.uint8).tobytes() if k <= 256 else tuple(winners.ravel().tolist())


class PointPolicy:
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
        self._keys: OrderedDict[tuple[int, ...], KeyWinners] = OrderedDict()
        self._policies: dict[tuple[int, ...], CellPolicy] = {}
        self._key_labels: dict[tuple[int, ...], tuple[str, ...]] = {}
        self._answer_keys: dict[tuple[tuple[str, str], ...], tuple[int, ...]] = {}
        self._lock = threading.Lock()
        logits = cell_logits(posterior)  # (cells, draws, k), C-contiguous
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
        self._explore = explore_share(k, rails)
        edge = rails.promoted_edges().get(posterior.key)
        # a promotion of an edge this flow version's point does not have is ignored
        self._promoted = posterior.candidates.index(edge) if edge in posterior.candidates else None
        self._cells: list[CellPolicy | None] = [None] * len(CELLS)

    def _policy(self, shares: tuple[float, ...]) -> CellPolicy:
        rails = self._rails
        dist = Distribution(shares, self._explore, rails.holdout, rails.killed, self._promoted)
        if rails.killed or self._promoted is not None:
            return CellPolicy(dist, dist.probabilities())
        # Distribution.probabilities() unrolled: the same float operations in the same
        # order (h * d + (1 - h) * ((1 - explore) * w + explore / k), d = [e = e_0])
        explore, h = self._explore, rails.holdout
        keep, spread, free = 1 - explore, explore / len(shares), 1 - h
        logged = tuple([h * 0.0 + free * (keep * w + spread) for w in shares])
        logged = (h * 1.0 + free * (keep * shares[0] + spread), *logged[1:])
        return CellPolicy(dist, logged)

    def cell(self, c: int) -> CellPolicy:
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

    def keyed(self, c: int, key: tuple[int, ...]) -> tuple[Sequence[int], CellPolicy]:
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

    def _build(self, key: tuple[int, ...]) -> KeyWinners:
        """An answers key's miss: for every cell, the same float64 sum in the same
        order as :func:`policy.winners.winners` (the cell's logits, then each answer's slopes in
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
        return KeyWinners(_pack(winners, k), per_cell, [None] * len(per_cell))

    def _shared_policy(self, counts: tuple[int, ...]) -> CellPolicy:
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
    ) -> tuple[Sequence[int], int, CellPolicy, tuple[str, ...]]:
        """(winners, offset of the cell's draws in them, policy, logged features)."""
        key = self.answers_key(point)
        if not key:
            return self.winners, c * self.draws, self.cell(c), CELL_LABELS[c]
        winners, policy = self.keyed(c, key)
        return winners, c * self.draws, policy, CELL_LABELS[c] + self.labels(key)

"""Thompson sampling over a posterior snapshot: the policy the decider calls. Pure.

For a decision point with candidates ``e_1..e_k`` and a visitor in context cell
``c`` (features ``x``), one decision is:

1. an RNG seeded from (conversation id, command seq, snapshot version);
2. with probability ``k * floor`` (the exploration floor) a uniformly random
   candidate, else: draw one posterior sample ``s`` and take the candidate with
   the highest ``base[s, e] + slopes[s, e] @ x`` (the highest sampled
   conversion probability);
3. a holdout share of conversations (by a hash of their id) always takes the
   flow's default edge, as does every conversation of a killed flow.

The logged propensity is the exact probability that this procedure gives the
chosen edge for this visitor: the share of the snapshot's draws in which it
wins, mixed with the floor and the holdout. That is what analysts need to
evaluate other policies offline (inverse propensity weighting).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from policy.features import Cell, cell_of, features
from policy.port import DecisionPoint, EdgeChoice, EdgePolicy
from policy.snapshot import PointPosterior, PolicySnapshot, SnapshotError
from policy.uniform import UniformPolicy, decision_seed


def holdout_share(conversation_id: str) -> float:
    """A stable uniform number in [0, 1) per conversation."""
    digest = hashlib.sha256(f"holdout/{conversation_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def win_shares(posterior: PointPosterior, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """For each candidate, the share of posterior draws in which it is the best."""
    logits = posterior.base + posterior.slopes @ x.astype(np.float32)  # (draws, k)
    winners = np.argmax(logits, axis=1)
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


@dataclass
class ThompsonPolicy:
    """Decides from the snapshot of the point's flow version; without one (or
    for a decision point the snapshot does not know) it falls back to uniform.

    ``install`` swaps snapshots in place (the processors' hot swap): a decision
    reads one snapshot reference, so it never sees half of an update."""

    snapshots: dict[str, PolicySnapshot] = field(default_factory=dict)
    fallback: EdgePolicy = field(default_factory=UniformPolicy)
    _shares: dict[tuple[str, tuple[str, str], Cell], tuple[float, ...]] = field(
        default_factory=dict
    )

    def install(self, snapshot: PolicySnapshot) -> bool:
        """Use ``snapshot`` for its flow; False (and ignored) if it is not newer
        than the installed one of the same flow version."""
        current = self.snapshots.get(snapshot.flow_id)
        if (
            current is not None
            and current.flow_version == snapshot.flow_version
            and current.created_at >= snapshot.created_at
            and current.version != snapshot.version
        ):
            return False
        self.snapshots[snapshot.flow_id] = snapshot
        if len(self._shares) > 50_000:
            self._shares.clear()
        return True

    def installed(self) -> Iterable[PolicySnapshot]:
        return self.snapshots.values()

    def snapshot_for(self, point: DecisionPoint) -> PolicySnapshot | None:
        snapshot = self.snapshots.get(point.flow_id)
        if snapshot is None or snapshot.flow_version != point.flow_version:
            return None
        return snapshot

    def distribution(self, point: DecisionPoint) -> Distribution | None:
        snapshot = self.snapshot_for(point)
        if snapshot is None:
            return None
        posterior = snapshot.points.get((point.node_id, point.button_id))
        if posterior is None or posterior.candidates != point.candidates:
            return None
        cell = cell_of(point.context, point.at)
        key = (snapshot.version, posterior.key, cell)
        shares = self._shares.get(key)
        if shares is None:
            shares = tuple(float(s) for s in win_shares(posterior, features(cell)))
            self._shares[key] = shares
        k = len(point.candidates)
        rails = snapshot.guardrails
        return Distribution(
            thompson=shares,
            explore=min(1.0, k * rails.min_exploration),
            holdout=rails.holdout,
            killed=rails.killed,
        )

    def choose(self, point: DecisionPoint) -> EdgeChoice:
        snapshot = self.snapshot_for(point)
        dist = None if snapshot is None else self.distribution(point)
        if snapshot is None or dist is None:
            return self.fallback.choose(point)
        cell = cell_of(point.context, point.at)
        seed = decision_seed(point.conversation_id, point.command_seq, snapshot.version)
        rng = np.random.default_rng(seed)
        k = len(point.candidates)
        in_holdout = holdout_share(point.conversation_id) < dist.holdout
        if dist.killed or in_holdout:
            index = 0
        elif rng.random() < dist.explore:
            index = int(rng.integers(k))
        else:
            posterior = snapshot.points[(point.node_id, point.button_id)]
            s = int(rng.integers(posterior.base.shape[0]))
            sampled = posterior.base[s] + posterior.slopes[s] @ features(cell).astype(np.float32)
            index = int(np.argmax(sampled))
        propensity = dist.probabilities()[index]
        version = f"{snapshot.version}:killed" if dist.killed else snapshot.version
        return EdgeChoice(
            chosen=point.candidates[index],
            propensity=propensity,
            policy_version=version,
            seed=seed,
            features=tuple(f"{name}={value}" for name, value in cell._asdict().items()),
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

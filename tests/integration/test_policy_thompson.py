"""Thompson sampling over posterior snapshots: determinism, propensities, guardrails, swaps."""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from typing import Literal

import numpy as np
import pytest

from policy.decision_draws import decision_uniforms, holdout_share, splitmix64
from policy.features import CELLS, FEATURE_NAMES, Cell, cell_of, features
from policy.snapshot import (
    Guardrails,
    PointPosterior,
    PolicySnapshot,
    SnapshotError,
    decode_snapshot,
    encode_snapshot,
)
from policy.thompson import ThompsonPolicy, check_snapshot
from policy.uniform import decision_seed
from policy.winners import win_shares
from schemas.commands import VisitorContext
from services.policy_port import DecisionPoint

FLOW = "quiz"
DAY = 1_767_225_600.0  # 2026-01-01T00:00:00Z
POINTS: Mapping[tuple[str, str], tuple[str, ...]] = {
    ("q1", "b"): ("a", "b"),
    ("q2", "b"): ("x", "y", "z"),
    ("q3", "b"): ("m", "n", "o", "p"),
}
Device = Literal["desktop", "mobile", "tablet", "unknown"]
DEVICE: Mapping[str, Device] = {
    "desktop": "desktop",
    "mobile": "mobile",
    "tablet": "tablet",
    "unknown": "unknown",
}
SOURCE = {  # source -> (utm_source, utm_medium, referrer)
    "direct": ("", "", ""),
    "search": ("google", "", ""),
    "paid": ("google", "cpc", ""),
    "social": ("facebook", "", ""),
    "email": ("newsletter", "", ""),
    "other": ("", "", "https://example.org/"),
}


def posterior(
    key: tuple[str, str], candidates: tuple[str, ...], rng: np.random.Generator, draws: int = 60
) -> PointPosterior:
    k = len(candidates)
    base = rng.normal(-2.0, 0.3, size=k) + rng.normal(0.0, 0.3, size=(draws, k))
    slopes = rng.normal(0.0, 0.4, size=(k, len(FEATURE_NAMES)))
    slopes = slopes + rng.normal(0.0, 0.2, size=(draws, k, len(FEATURE_NAMES)))
    return PointPosterior(
        node_id=key[0],
        button_id=key[1],
        candidates=candidates,
        base=base.astype(np.float32),
        slopes=slopes.astype(np.float32),
    )


def snapshot(
    version: str = "quiz@1#1",
    created_at: float = 100.0,
    flow_version: int = 1,
    rails: Guardrails | None = None,
    seed: int = 5,
    points: Mapping[tuple[str, str], tuple[str, ...]] = POINTS,
) -> PolicySnapshot:
    rng = np.random.default_rng(seed)
    return PolicySnapshot(
        flow_id=FLOW,
        flow_version=flow_version,
        version=version,
        created_at=created_at,
        points={key: posterior(key, cands, rng) for key, cands in points.items()},
        guardrails=rails or Guardrails(),
    )


def context_for(cell: Cell) -> tuple[VisitorContext, float]:
    """A visitor context and a time (UTC) in ``cell``."""
    source, medium, referrer = SOURCE[cell.source]
    context = VisitorContext(
        device=DEVICE[cell.device],
        utm_source=source,
        utm_medium=medium,
        referrer=referrer,
        locale="en-US" if cell.language == "en" else "de-DE",
        time_zone="UTC",
    )
    hour = {"night": 1, "morning": 7, "afternoon": 13, "evening": 19}[cell.hour]
    return context, DAY + hour * 3600.0


def point(
    key: tuple[str, str] = ("q2", "b"),
    conversation_id: str = "conv-1",
    command_seq: int = 3,
    cell: Cell = CELLS[0],
    flow_version: int = 1,
    candidates: tuple[str, ...] | None = None,
) -> DecisionPoint:
    context, at = context_for(cell)
    return DecisionPoint(
        conversation_id=conversation_id,
        command_seq=command_seq,
        flow_id=FLOW,
        flow_version=flow_version,
        node_id=key[0],
        button_id=key[1],
        candidates=POINTS[key] if candidates is None else candidates,
        context=context,
        at=at,
    )


def policy_with(snap: PolicySnapshot) -> ThompsonPolicy:
    policy = ThompsonPolicy()
    assert policy.install(snap)
    return policy


def test_context_helper_reaches_every_cell() -> None:
    """The tests below cover every cell only if context_for really lands in it."""
    for cell in CELLS:
        assert cell_of(*context_for(cell)) == cell


# ---- determinism --------------------------------------------------------------------------


def test_splitmix64_matches_the_reference_outputs() -> None:
    """SplitMix64 from state 1234567: the published first outputs (Vigna's splitmix64.c)."""
    assert [splitmix64(1234567, i) for i in (1, 2, 3)] == [
        6457827717110365317,
        3203168211198807973,
        9817491932198370423,
    ]


def test_same_point_gives_the_same_choice_in_any_policy_object() -> None:
    """Replaying a command (new process, snapshot decoded from its bytes) repeats the decision."""
    snap = snapshot(rails=Guardrails(min_exploration=0.1, holdout=0.2))
    policies = [
        policy_with(snap),
        policy_with(snap),
        policy_with(decode_snapshot(encode_snapshot(snap))),
    ]
    for i in range(300):
        p = point(conversation_id=f"c{i}", command_seq=i % 7 + 2, cell=CELLS[(i * 37) % len(CELLS)])
        first = policies[0].choose(p)
        assert policies[0].choose(p) == first
        assert all(other.choose(p) == first for other in policies[1:])


def test_seed_comes_from_conversation_seq_and_policy_version() -> None:
    """The logged seed is decision_seed(conversation, seq, snapshot version): another
    snapshot version (same draws) seeds the decision differently."""
    p = point()
    one = policy_with(snapshot(version="quiz@1#1")).choose(p)
    two = policy_with(snapshot(version="quiz@1#2")).choose(p)
    assert one.seed == decision_seed("conv-1", 3, "quiz@1#1")
    assert two.seed == decision_seed("conv-1", 3, "quiz@1#2")
    assert one.seed != two.seed
    assert (one.policy_version, two.policy_version) == ("quiz@1#1", "quiz@1#2")


def _reference_choice(snap: PolicySnapshot, p: DecisionPoint) -> str:
    """The procedure of policy.thompson's docstring, written out independently."""
    seed = decision_seed(p.conversation_id, p.command_seq, snap.version)
    z1, z2 = (splitmix64(seed, 1) >> 11, splitmix64(seed, 2) >> 11)
    rails = snap.guardrails
    digest = hashlib.sha256(f"holdout/{p.conversation_id}".encode()).digest()
    if rails.killed or int.from_bytes(digest[:8], "big") / 2.0**64 < rails.holdout:
        return p.candidates[0]
    post = snap.points[(p.node_id, p.button_id)]
    k, n = len(p.candidates), post.base.shape[0]
    if z1 / 2.0**53 < min(1.0, k * rails.min_exploration):
        return p.candidates[(z2 * k) >> 53]
    s = (z2 * n) >> 53
    x = features(cell_of(p.context, p.at))
    logits = post.base[s].astype(np.float64)
    for f in range(len(FEATURE_NAMES)):
        if x[f]:
            logits = logits + post.slopes[s, :, f].astype(np.float64)
    return p.candidates[int(np.argmax(logits))]


@pytest.mark.parametrize(
    "rails",
    [Guardrails(), Guardrails(min_exploration=0.2, holdout=0.3), Guardrails(min_exploration=0.0)],
)
def test_choice_is_the_documented_procedure(rails: Guardrails) -> None:
    """Anyone holding the snapshot and the logged seed can recompute the choice."""
    snap = snapshot(rails=rails)
    policy = policy_with(snap)
    for i in range(300):
        key = list(POINTS)[i % 3]
        p = point(key, f"conv-{i}", i % 5 + 2, CELLS[(i * 53) % len(CELLS)])
        assert policy.choose(p).chosen == _reference_choice(snap, p)


def test_decision_uniforms_are_the_top_53_bits_of_splitmix() -> None:
    u1, u2 = decision_uniforms(42)
    assert u1 == (splitmix64(42, 1) >> 11) / 2.0**53
    assert u2 == (splitmix64(42, 2) >> 11) / 2.0**53
    assert 0.0 <= u1 < 1.0 and 0.0 <= u2 < 1.0


# ---- propensities -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rails",
    [
        Guardrails(min_exploration=0.0),
        Guardrails(min_exploration=0.05, holdout=0.1),
        Guardrails(min_exploration=0.4, holdout=0.5),  # k * floor > 1: uniform
        Guardrails(holdout=1.0),
    ],
)
def test_propensities_sum_to_one_for_every_cell(rails: Guardrails) -> None:
    policy = policy_with(snapshot(rails=rails))
    for key in POINTS:
        for cell in CELLS:
            dist = policy.distribution(point(key, cell=cell))
            assert dist is not None
            assert math.fsum(dist.probabilities()) == pytest.approx(1.0, abs=1e-12)
            assert all(0.0 <= p <= 1.0 for p in dist.probabilities())


@pytest.mark.parametrize(("floor", "holdout"), [(0.05, 0.0), (0.1, 0.25), (0.3, 0.0)])
def test_every_candidate_gets_at_least_the_floor(floor: float, holdout: float) -> None:
    """Even an edge that never wins a draw keeps floor * (1 - holdout) (capped at 1/k)."""
    snap = snapshot(rails=Guardrails(min_exploration=floor, holdout=holdout))
    dominated = {
        key: replace(
            post,
            base=np.tile(np.arange(len(post.candidates), dtype=np.float32) * 10, (5, 1)),
            slopes=np.zeros((5, len(post.candidates), len(FEATURE_NAMES)), np.float32),
        )
        for key, post in snap.points.items()
    }
    policy = policy_with(replace(snap, points=dominated))
    for key, candidates in POINTS.items():
        k = len(candidates)
        for cell in CELLS[::7]:
            dist = policy.distribution(point(key, cell=cell))
            assert dist is not None
            assert dist.thompson[-1] == 1.0  # the last edge wins every draw
            least = min(floor, 1.0 / k) * (1.0 - holdout)
            assert min(dist.probabilities()) >= least - 1e-12


def test_logged_propensity_is_the_distributions_probability_of_the_choice() -> None:
    policy = policy_with(snapshot(rails=Guardrails(min_exploration=0.1, holdout=0.2)))
    for i in range(400):
        p = point(list(POINTS)[i % 3], f"conv-{i}", 2, CELLS[(i * 11) % len(CELLS)])
        choice = policy.choose(p)
        dist = policy.distribution(p)
        assert dist is not None
        assert choice.propensity == dist.probabilities()[p.candidates.index(choice.chosen)]
        assert choice.propensity > 0.0
        assert choice.features == (
            f"device={CELLS[(i * 11) % len(CELLS)].device}",
            f"source={CELLS[(i * 11) % len(CELLS)].source}",
            f"hour={CELLS[(i * 11) % len(CELLS)].hour}",
            f"language={CELLS[(i * 11) % len(CELLS)].language}",
        )


@pytest.mark.parametrize("key", list(POINTS))
def test_choice_frequencies_match_the_logged_propensities(key: tuple[str, str]) -> None:
    """Over 1,000 conversations at one point and cell, the choice counts agree with the
    logged (holdout-marginal) propensities: chi-square below its 99.99% quantile.
    (4,000 and 20,000 in tests/integration/test_larger_logs.py.)"""
    choice_counts_agree_with_propensities(key, 1000)


def choice_counts_agree_with_propensities(key: tuple[str, str], n: int) -> None:
    policy = policy_with(snapshot(rails=Guardrails(min_exploration=0.05, holdout=0.2)))
    cell = CELLS[77]
    context, at = context_for(cell)
    counts: Counter[str] = Counter()
    logged: dict[str, float] = {}
    for i in range(n):
        p = DecisionPoint(
            conversation_id=f"visitor-{i}",
            command_seq=4,
            flow_id=FLOW,
            flow_version=1,
            node_id=key[0],
            button_id=key[1],
            candidates=POINTS[key],
            context=context,
            at=at,
        )
        choice = policy.choose(p)
        counts[choice.chosen] += 1
        logged[choice.chosen] = choice.propensity
    dist = policy.distribution(point(key, cell=cell))
    assert dist is not None
    expected = dict(zip(POINTS[key], dist.probabilities(), strict=True))
    assert all(logged[e] == expected[e] for e in logged)
    chi2 = sum((counts[e] - n * p) ** 2 / (n * p) for e, p in expected.items())
    assert chi2 < {1: 15.1, 2: 18.4, 3: 21.1}[len(expected) - 1], (counts, expected)


def test_win_shares_agree_with_the_distribution_for_every_cell() -> None:
    """The summary's win shares (win_shares) and the decisions' come out identical."""
    snap = snapshot()
    policy = policy_with(snap)
    for key, post in snap.points.items():
        for cell in CELLS[::5]:  # 5 is prime to every factor's levels: all levels covered
            dist = policy.distribution(point(key, cell=cell))
            assert dist is not None
            assert dist.thompson == tuple(float(s) for s in win_shares(post, features(cell)))


def test_cell_distribution_is_the_distribution_of_the_cell_whatever_the_context() -> None:
    """Off-policy evaluation rebuilds a decision's cell from its logged labels and
    asks cell_distribution: it must be what a visitor of that cell gets, and must
    not read the point's context or time."""
    policy = policy_with(snapshot(rails=Guardrails(min_exploration=0.1, holdout=0.2)))
    elsewhere = point(("q3", "b"), cell=CELLS[-1])
    for index, cell in list(enumerate(CELLS))[::7]:
        expected = policy.distribution(point(("q3", "b"), cell=cell))
        assert expected is not None
        assert policy.cell_distribution(elsewhere, index) == expected
    assert policy.cell_distribution(point(("q3", "b"), flow_version=2), 0) is None


def test_ties_go_to_the_first_candidate() -> None:
    flat = {
        key: replace(post, base=np.zeros_like(post.base), slopes=np.zeros_like(post.slopes))
        for key, post in snapshot().points.items()
    }
    policy = policy_with(replace(snapshot(), points=flat))
    dist = policy.distribution(point(("q3", "b")))
    assert dist is not None and dist.thompson == (1.0, 0.0, 0.0, 0.0)


# ---- holdout and kill switch --------------------------------------------------------------


def test_holdout_share_of_conversations_takes_the_default_edge() -> None:
    """About ``holdout`` of the conversations are held out, at every decision they make;
    the logged propensity of the default edge includes the holdout."""
    h = 0.25
    policy = policy_with(snapshot(rails=Guardrails(min_exploration=0.05, holdout=h)))
    ids = [f"visitor-{i}" for i in range(4000)]
    held = [cid for cid in ids if holdout_share(cid) < h]
    assert abs(len(held) / len(ids) - h) < 3 * math.sqrt(h * (1 - h) / len(ids))
    for cid in held[:300]:
        for seq, key in enumerate(POINTS, start=2):
            p = point(key, cid, seq, CELLS[seq * 5])
            choice = policy.choose(p)
            dist = policy.distribution(p)
            assert dist is not None
            assert choice.chosen == POINTS[key][0]
            learned = dist.probabilities(in_holdout=False)[0]
            assert choice.propensity == pytest.approx(h + (1 - h) * learned)
            assert dist.probabilities(in_holdout=True)[0] == 1.0


def test_full_holdout_always_takes_the_default_edge_with_propensity_one() -> None:
    policy = policy_with(snapshot(rails=Guardrails(holdout=1.0)))
    for i in range(50):
        choice = policy.choose(point(conversation_id=f"c{i}"))
        assert (choice.chosen, choice.propensity) == ("x", 1.0)


def test_kill_switch_takes_the_default_edge_everywhere_in_the_flow() -> None:
    """Killed: the default edge with propensity 1.0 and a ':killed' version, also at
    points the snapshot does not know and in the flow's other versions."""
    snap = snapshot(version="quiz@2#4", flow_version=2, rails=Guardrails(killed=True))
    policy = policy_with(snap)
    points = [
        point(("q2", "b"), flow_version=2),
        point(("q1", "b"), flow_version=2, candidates=("other", "edges")),
        point(("q3", "b"), flow_version=1),
    ]
    for i, p in enumerate(points):
        for cell in CELLS[::19]:
            p = replace(p, conversation_id=f"k{i}-{cell.key}", context=context_for(cell)[0])
            choice = policy.choose(p)
            assert choice.chosen == p.candidates[0]
            assert choice.propensity == 1.0
            assert choice.policy_version == "quiz@2#4:killed"
            assert choice.seed == decision_seed(p.conversation_id, p.command_seq, "quiz@2#4")
            dist = policy.distribution(p)
            assert dist is not None and dist.probabilities()[0] == 1.0


def test_unkilling_resumes_sampling() -> None:
    policy = policy_with(snapshot(version="quiz@1#1", rails=Guardrails(killed=True)))
    assert policy.choose(point()).policy_version == "quiz@1#1:killed"
    assert policy.install(snapshot(version="quiz@1#2", created_at=200.0))
    assert policy.choose(point()).policy_version == "quiz@1#2"


# ---- snapshot versions and scope ----------------------------------------------------------


def test_an_older_snapshot_does_not_replace_a_newer_one() -> None:
    policy = policy_with(snapshot(version="quiz@1#2", created_at=200.0))
    assert not policy.install(snapshot(version="quiz@1#1", created_at=100.0))
    assert not policy.install(snapshot(version="quiz@1#0", created_at=200.0))  # not newer
    assert policy.snapshots[FLOW].version == "quiz@1#2"
    assert policy.choose(point()).policy_version == "quiz@1#2"


def test_a_newer_snapshot_replaces_the_installed_one() -> None:
    policy = policy_with(snapshot(version="quiz@1#1", created_at=100.0))
    before = policy.choose(point())
    assert policy.install(snapshot(version="quiz@1#2", created_at=200.0, seed=9))
    after = policy.choose(point())
    assert after.policy_version == "quiz@1#2"
    assert after.seed != before.seed
    assert [s.version for s in policy.installed()] == ["quiz@1#2"]


def test_the_same_version_can_be_installed_again() -> None:
    """A processor re-reading the topic installs what it already has: not an error."""
    policy = policy_with(snapshot(version="quiz@1#1"))
    assert policy.install(snapshot(version="quiz@1#1"))
    assert policy.install(policy.snapshots[FLOW])


def test_flow_versions_order_snapshots_before_their_times() -> None:
    """The newer flow version's snapshot wins; an older version's never replaces it."""
    policy = policy_with(snapshot(version="quiz@2#1", flow_version=2, created_at=100.0))
    assert not policy.install(snapshot(version="quiz@1#9", flow_version=1, created_at=900.0))
    assert policy.install(snapshot(version="quiz@3#1", flow_version=3, created_at=50.0))
    assert policy.snapshots[FLOW].version == "quiz@3#1"


def test_a_snapshot_for_another_flow_version_is_not_used() -> None:
    """Node ids change between versions: decisions there fall back to uniform."""
    policy = policy_with(snapshot(version="quiz@2#1", flow_version=2))
    p = point(flow_version=1)
    assert policy.snapshot_for(p) is None
    assert policy.distribution(p) is None
    choice = policy.choose(p)
    assert choice.policy_version == "uniform-v1"
    assert choice.propensity == pytest.approx(1 / 3)


def test_unknown_points_and_other_candidates_fall_back_to_uniform() -> None:
    policy = policy_with(snapshot())
    for p in (
        point(("q2", "b"), candidates=("x", "y")),  # the flow changed the edges
        point(("q9", "b"), candidates=("x", "y")),  # not in the snapshot
        replace(point(), flow_id="another-flow"),
    ):
        assert policy.distribution(p) is None
        assert policy.choose(p).policy_version == "uniform-v1"


def test_check_snapshot_rejects_mismatching_decision_points() -> None:
    snap = snapshot()
    check_snapshot(snap, POINTS)
    check_snapshot(snap, {**POINTS, ("q4", "b"): ("s", "t")})  # new points: uniform there
    with pytest.raises(SnapshotError, match="candidates"):
        check_snapshot(snap, {**POINTS, ("q2", "b"): ("x", "z", "y")})
    with pytest.raises(SnapshotError, match="no decision point"):
        check_snapshot(snap, {k: v for k, v in POINTS.items() if k != ("q1", "b")})


def test_install_rejects_a_snapshot_fitted_on_other_features() -> None:
    other = replace(snapshot(), feature_names=tuple(reversed(FEATURE_NAMES)))
    with pytest.raises(SnapshotError, match="features"):
        ThompsonPolicy().install(other)


def test_snapshots_given_to_the_constructor_or_written_directly_are_used() -> None:
    policy = ThompsonPolicy(snapshots={FLOW: snapshot(version="quiz@1#1")})
    assert policy.choose(point()).policy_version == "quiz@1#1"
    policy.snapshots[FLOW] = snapshot(version="quiz@1#7")
    choice = policy.choose(point())
    dist = policy.distribution(point())
    assert choice.policy_version == "quiz@1#7"
    assert dist is not None
    assert choice.propensity == dist.probabilities()[POINTS[("q2", "b")].index(choice.chosen)]

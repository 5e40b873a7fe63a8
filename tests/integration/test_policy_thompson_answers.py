"""Answers as features of a decision: old snapshots decide bit for bit as before,
answer-aware snapshots decide by the share-of-draws formula, log what they were
conditioned on, and travel as snapshot format v2.

The pinned digests and the distribution checks make thousands of decisions
(compute-bound, no I/O), so the module runs with the integration tier, not in the
unit tier's 2 s.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import replace

import numpy as np
import pytest

import policy.point_policy as point_policy
from policy.features import (
    CELL_LABELS,
    CELLS,
    FEATURE_NAMES,
    cell_from_labels,
    cell_index,
    earlier_answers,
    features,
    split_labels,
)
from policy.snapshot import (
    Guardrails,
    PointPosterior,
    PolicySnapshot,
    SnapshotError,
    decode_snapshot,
    encode_snapshot,
)
from policy.thompson import ThompsonPolicy
from policy.winners import win_shares
from schemas.commands import VisitorContext
from services.policy_port import DecisionPoint

DAY = 1_767_225_600.0  # 2026-01-01T00:00:00Z

# Captured with policy/thompson.py and policy/snapshot.py as they were before answers
# existed (commit 28cc213, numpy 2.4.6): the decisions of golden_points() under
# golden_snapshot(), and the bytes of the encoded snapshot.
GOLDEN_DECISIONS = "6be753f7b0de78c06215bb0c6bc052a3d12067e6798c59a9d4cbd63888f79c4a"
GOLDEN_SNAPSHOT_BYTES = "f0949c5f88a9d5e674ee7d238072d0def01968d046130ad678dae0d419897ccb"


def golden_snapshot() -> PolicySnapshot:
    rng = np.random.default_rng(20260116)
    pts = {}
    for i, k in enumerate((2, 3, 4)):
        base = rng.normal(-2.0, 0.4, size=(50, k))
        slopes = rng.normal(0.0, 0.5, size=(50, k, len(FEATURE_NAMES)))
        key = (f"q{i}", "b")
        pts[key] = PointPosterior(
            node_id=key[0],
            button_id="b",
            candidates=tuple(f"e{j}" for j in range(k)),
            base=base.astype(np.float32),
            slopes=slopes.astype(np.float32),
        )
    return PolicySnapshot(
        "golden", 1, "golden@1#1", 1.0, pts, Guardrails(min_exploration=0.05, holdout=0.1)
    )


def golden_points(snap: PolicySnapshot) -> list[DecisionPoint]:
    rnd = random.Random(16)
    out = []
    devices = ("desktop", "mobile", "tablet", "unknown", "watch")
    utm = (
        ("", "", ""),
        ("google", "", ""),
        ("google", "cpc", ""),
        ("facebook", "", ""),
        ("newsletter", "", ""),
        ("", "", "https://example.org/"),
    )
    for i in range(3000):
        p = rnd.choice(list(snap.points.values()))
        s, m, r = rnd.choice(utm)
        ctx = VisitorContext(
            device=rnd.choice(devices),  # type: ignore[arg-type]
            utm_source=s,
            utm_medium=m,
            referrer=r,
            locale=rnd.choice(("en", "de-DE", "EN-us")),
            time_zone=rnd.choice(("UTC", "Europe/Berlin", "Asia/Kolkata", "")),
        )
        earlier = tuple(
            (f"n{rnd.randrange(4)}", f"a{rnd.randrange(3)}") for _ in range(rnd.randrange(4))
        )
        answers = (*earlier, (p.node_id, p.button_id))
        out.append(
            DecisionPoint(
                conversation_id=f"c{i}",
                command_seq=rnd.randrange(2, 20),
                flow_id="golden",
                flow_version=1,
                node_id=p.node_id,
                button_id=p.button_id,
                candidates=p.candidates,
                context=ctx,
                answers=answers,
                at=DAY + rnd.uniform(0, 365 * 86400),
            )
        )
    return out


def digest(policy: ThompsonPolicy, points: list[DecisionPoint]) -> str:
    h = hashlib.sha256()
    for point in points:
        c = policy.choose(point)
        d = policy.distribution(point)
        assert d is not None
        probs = [p.hex() for p in d.probabilities()]
        row = (c.chosen, c.propensity.hex(), c.policy_version, c.seed, c.features, probs)
        h.update(repr(row).encode())
    return h.hexdigest()


def test_a_snapshot_without_answers_decides_bit_for_bit_as_before() -> None:
    """Guards replay --verify of every decision logged before answers existed:
    same choices, propensities, seeds and logged features (the points carry
    answers, which such a snapshot must not read)."""
    snap = golden_snapshot()
    policy = ThompsonPolicy()
    policy.install(snap)
    assert digest(policy, golden_points(snap)) == GOLDEN_DECISIONS
    encoded = encode_snapshot(snap)
    assert hashlib.sha256(encoded).hexdigest() == GOLDEN_SNAPSHOT_BYTES  # still v1 bytes
    decoded = ThompsonPolicy()
    decoded.install(decode_snapshot(encoded))
    assert digest(decoded, golden_points(snap)) == GOLDEN_DECISIONS


# ---- an answer-aware snapshot ---------------------------------------------------------------

ANSWERS = ("answer:size=big", "answer:size=small", "answer:roof=flat")


def answer_snapshot(
    rails: Guardrails | None = None, draws: int = 80, dtype: type = np.float32
) -> PolicySnapshot:
    rng = np.random.default_rng(5)
    k = 3
    base = rng.normal(-1.5, 0.3, size=(draws, k))
    slopes = rng.normal(0.0, 0.4, size=(draws, k, len(FEATURE_NAMES)))
    answer_slopes = rng.normal(0.0, 0.8, size=(draws, k, len(ANSWERS)))
    point = PointPosterior(
        node_id="q2",
        button_id="b",
        candidates=("x", "y", "z"),
        base=base.astype(dtype),
        slopes=slopes.astype(dtype),
        answers=ANSWERS,
        answer_slopes=answer_slopes.astype(dtype),
    )
    return PolicySnapshot(
        "quiz", 1, "quiz@1#a", 10.0, {point.key: point}, rails or Guardrails(0.05, 0.2)
    )


def point_with(
    answers: tuple[tuple[str, str], ...], cid: str = "c1", seq: int = 3
) -> DecisionPoint:
    return DecisionPoint(
        conversation_id=cid,
        command_seq=seq,
        flow_id="quiz",
        flow_version=1,
        node_id="q2",
        button_id="b",
        candidates=("x", "y", "z"),
        context=VisitorContext(device="mobile", utm_source="google", utm_medium="cpc"),
        answers=(*answers, ("q2", "b")),
        at=DAY + 3600 * 13,
    )


def share_formula(snap: PolicySnapshot, point: DecisionPoint) -> list[float]:
    """The documented propensity, computed from scratch: win shares of
    base + slopes . x + answer_slopes . y, mixed with the floor and the holdout."""
    post = snap.points[("q2", "b")]
    cell = cell_index(point.context, point.at)
    y = np.array(
        [
            1.0 if (a.split(":")[1].split("=")[0], a.split("=")[1]) in point.answers[:-1] else 0.0
            for a in ANSWERS
        ]
    )
    logits = (
        post.base.astype(np.float64)
        + np.einsum("skf,f->sk", post.slopes.astype(np.float64), features(CELLS[cell]))
        + np.einsum("ska,a->sk", post.answer_slopes.astype(np.float64), y)
    )
    winners = np.argmax(logits, axis=1)
    k = len(post.candidates)
    w = np.bincount(winners, minlength=k) / len(winners)
    floor, h = snap.guardrails.min_exploration, snap.guardrails.holdout
    explore = min(1.0, k * floor)
    return [h * (e == 0) + (1 - h) * ((1 - explore) * w[e] + explore / k) for e in range(k)]


@pytest.mark.parametrize(
    "answers",
    [(), (("size", "big"),), (("size", "small"), ("roof", "flat")), (("roof", "flat"), ("x", "y"))],
)
def test_propensities_follow_the_share_of_draws_with_answers(
    answers: tuple[tuple[str, str], ...],
) -> None:
    snap = answer_snapshot()
    policy = ThompsonPolicy()
    policy.install(snap)
    point = point_with(answers)
    dist = policy.distribution(point)
    assert dist is not None
    probs = dist.probabilities()
    assert sum(probs) == pytest.approx(1.0, abs=1e-12)
    assert probs == pytest.approx(share_formula(snap, point), abs=1e-12)
    choice = policy.choose(point)
    assert choice.propensity == probs[point.candidates.index(choice.chosen)]
    shares = win_shares(
        snap.points[("q2", "b")],
        features(CELLS[cell_index(point.context, point.at)]),
        np.array([1.0 if a in {f"answer:{n}={b}" for n, b in answers} else 0.0 for a in ANSWERS]),
    )
    assert tuple(shares) == dist.thompson


def test_choices_match_the_distribution_over_many_conversations() -> None:
    snap = answer_snapshot(Guardrails(0.05, 0.0))
    policy = ThompsonPolicy()
    policy.install(snap)
    n = 6000
    counts = dict.fromkeys(("x", "y", "z"), 0)
    for i in range(n):
        counts[policy.choose(point_with((("size", "big"),), cid=f"c{i}")).chosen] += 1
    dist = policy.distribution(point_with((("size", "big"),)))
    assert dist is not None
    for edge, p in zip(("x", "y", "z"), dist.probabilities(), strict=True):
        assert abs(counts[edge] - n * p) < 5 * (n * p * (1 - p)) ** 0.5 + 1


def test_logged_features_name_the_cell_then_the_known_answers_in_point_order() -> None:
    """EdgeChosen.features must say what the decision was conditioned on, and the
    reward ledger must still find the cell in it."""
    snap = answer_snapshot()
    policy = ThompsonPolicy()
    policy.install(snap)
    point = point_with((("roof", "flat"), ("unknown", "q"), ("size", "big")))
    choice = policy.choose(point)
    cell = cell_index(point.context, point.at)
    assert choice.features == (*CELL_LABELS[cell], "answer:size=big", "answer:roof=flat")
    assert cell_from_labels(choice.features) == CELLS[cell]
    assert split_labels(choice.features) == (
        CELL_LABELS[cell],
        ("answer:size=big", "answer:roof=flat"),
    )
    assert policy.choose(point_with((("nope", "n"),))).features == CELL_LABELS[cell]


def test_without_known_answers_an_answer_snapshot_decides_as_its_cell_part() -> None:
    snap = answer_snapshot()
    stripped = replace(
        snap,
        points={
            k: replace(p, answers=(), answer_slopes=np.zeros((p.base.shape[0], 3, 0), np.float32))
            for k, p in snap.points.items()
        },
    )
    a, b = ThompsonPolicy(), ThompsonPolicy()
    a.install(snap)
    b.install(stripped)
    for i in range(300):
        point = point_with((("other", "q"),), cid=f"c{i}", seq=i)
        assert a.choose(point) == b.choose(point)


def test_a_decoded_answer_snapshot_decides_as_the_installed_one() -> None:
    """replay --verify decodes the archived bytes: in-memory float64 draws must
    decide as their float32 encoding does."""
    snap = answer_snapshot(dtype=np.float64)
    data = encode_snapshot(snap)
    assert b'"v":2' in data
    decoded = decode_snapshot(data)
    assert decoded.points[("q2", "b")].answers == ANSWERS
    a, b = ThompsonPolicy(), ThompsonPolicy()
    a.install(snap)
    b.install(decoded)
    for i in range(500):
        point = point_with(
            ((("size", "big"),), (("size", "small"), ("roof", "flat")))[i % 2], f"c{i}"
        )
        assert a.choose(point) == b.choose(point)
        assert a.distribution(point) == b.distribution(point)


def test_the_answers_cache_is_bounded_and_eviction_changes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(point_policy, "ANSWER_KEYS_CACHED", 2)
    monkeypatch.setattr(point_policy, "ANSWER_CACHE_SIZE", 2)
    snap = answer_snapshot()
    policy = ThompsonPolicy()
    policy.install(snap)
    keys = [
        (("size", "big"),),
        (("size", "small"),),
        (("roof", "flat"),),
        (("size", "big"), ("roof", "flat")),
    ]
    first = [policy.choose(point_with(a, cid="same")) for a in keys]
    compiled = policy._compiled["quiz"].points[("q2", "b")]
    assert len(compiled._keys) == 2
    again = [policy.choose(point_with(a, cid="same")) for a in keys]
    assert again == first
    assert len(compiled._keys) == 2


def test_earlier_answers_drop_the_press_that_reached_the_point() -> None:
    given = (("size", "big"), ("q2", "b"))
    assert earlier_answers(given, "q2", "b") == (("size", "big"),)
    assert earlier_answers((("size", "big"),), "q2", "b") == (("size", "big"),)
    assert earlier_answers((), "q2", "b") == ()


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        (("size=big",), "not an answer feature"),
        (("answer:size",), "not an answer feature"),
        (("answer:size=big", "answer:size=big"), "twice"),
    ],
)
def test_bad_answer_features_are_refused(answers: tuple[str, ...], message: str) -> None:
    with pytest.raises(SnapshotError, match=message):
        PointPosterior(
            node_id="q",
            button_id="b",
            candidates=("a", "b"),
            base=np.zeros((3, 2), np.float32),
            slopes=np.zeros((3, 2, len(FEATURE_NAMES)), np.float32),
            answers=answers,
            answer_slopes=np.zeros((3, 2, len(answers)), np.float32),
        )


def test_answer_slopes_of_the_wrong_shape_are_refused() -> None:
    with pytest.raises(SnapshotError, match="answer_slopes"):
        PointPosterior(
            node_id="q",
            button_id="b",
            candidates=("a", "b"),
            base=np.zeros((3, 2), np.float32),
            slopes=np.zeros((3, 2, len(FEATURE_NAMES)), np.float32),
            answers=("answer:size=big",),
            answer_slopes=np.zeros((3, 2, 2), np.float32),
        )


def test_a_v1_reader_field_set_ignores_nothing_in_v2() -> None:
    """v1 documents never carry answers; a v2 document without them reads as v1."""
    data = encode_snapshot(golden_snapshot()).replace(b'"v":1', b'"v":2')
    snap = decode_snapshot(data)
    assert all(not p.answers for p in snap.points.values())


# ---- answer-aware decisions, pinned ---------------------------------------------------------

# Captured with policy/thompson.py as it was before the (cell, answers) miss path was
# made cheaper (commit 3ca639f, numpy 2.4.6): the decisions and distributions of
# answer_golden_points() under answer_golden_snapshot().
GOLDEN_ANSWER_DECISIONS = "422f5dcf4318ac90d760c261c9586c5222e3c7973c514db26ae95f89eceb6f0b"


def answer_golden_snapshot() -> PolicySnapshot:
    rng = np.random.default_rng(20261206)
    names = tuple(f"answer:n{j}=a{b}" for j in range(3) for b in range(3))
    pts = {}
    for i, k in enumerate((2, 3, 4)):
        key = (f"q{i}", "b")
        pts[key] = PointPosterior(
            node_id=key[0],
            button_id="b",
            candidates=tuple(f"e{j}" for j in range(k)),
            base=rng.normal(-2.0, 0.4, size=(60, k)).astype(np.float32),
            slopes=rng.normal(0.0, 0.5, size=(60, k, len(FEATURE_NAMES))).astype(np.float32),
            answers=names[: 3 + 3 * i],
            answer_slopes=rng.normal(0.0, 0.6, size=(60, k, 3 + 3 * i)).astype(np.float32),
        )
    return PolicySnapshot(
        "golden", 1, "golden@1#a", 1.0, pts, Guardrails(min_exploration=0.05, holdout=0.1)
    )


@pytest.mark.parametrize("cache", [point_policy.ANSWER_CACHE_SIZE, 3])
def test_answer_decisions_are_pinned_bit_for_bit(
    cache: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guards replay --verify of every logged answer-aware decision: the choices,
    propensities and distributions of (cell, answers) keys must not change when
    the way their winners are computed or cached does (a tiny cache: every key
    is computed again and again)."""
    monkeypatch.setattr(point_policy, "ANSWER_CACHE_SIZE", cache)
    snap = answer_golden_snapshot()
    policy = ThompsonPolicy()
    policy.install(snap)
    assert digest(policy, golden_points(snap)) == GOLDEN_ANSWER_DECISIONS


@pytest.mark.parametrize(
    "rails",
    [Guardrails(0.05, 0.2), Guardrails(0.0, 0.0), Guardrails(0.3, 0.7), Guardrails(1.0, 0.1)],
)
def test_the_logged_probabilities_are_the_distributions_bit_for_bit(rails: Guardrails) -> None:
    """The miss path computes the logged propensities without Distribution.probabilities();
    they must be the same floats."""
    snap = answer_snapshot(rails)
    policy = ThompsonPolicy()
    policy.install(snap)
    compiled = policy._compiled["quiz"].points[("q2", "b")]
    rnd = random.Random(3)
    for _ in range(200):
        counts = [rnd.randrange(81) for _ in range(3)]
        shares = tuple(n / 80 for n in counts)
        built = compiled._policy(shares)
        assert built.logged == built.distribution.probabilities()

"""A learner with context pairs (policy/online.py, policy/pair_design.py) learns an
interaction that additive slopes cannot express, publishes it as a v4 snapshot that
ThompsonPolicy decides by, and its compact archive form regenerates the exact bytes.
(12,000 outcomes through the 109-weight learner and its additive twin: 2 s with
OPENBLAS_NUM_THREADS=1, up to 25 s when BLAS threads fight over a loaded machine.) And a v4 update
replays bit for bit from its compact archive form."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from policy.archive import (
    GaussianPosterior,
    PointGaussian,
    archive_body,
    draw_points,
    expand,
    is_compact,
)
from policy.features import CELLS, FEATURE_NAMES, PAIR_NAMES
from policy.online import OnlineLearner
from policy.online_config import OnlineConfig, Outcome
from policy.snapshot import PolicySnapshot, decode_snapshot, encode_snapshot
from policy.thompson import ThompsonPolicy
from schemas.commands import VisitorContext
from services.policy_port import DecisionPoint

Device = Literal["desktop", "mobile", "tablet", "unknown"]
KEY = ("q", "b")
F = len(FEATURE_NAMES)
EDGES = ("x", "y")


def _decide(policy: ThompsonPolicy, device: Device, utm: tuple[str, str], i: int) -> str:
    context = VisitorContext(device=device, utm_source=utm[0], utm_medium=utm[1], locale="en-GB")
    point = DecisionPoint(
        conversation_id=f"c{i}", command_seq=2, flow_id="f", flow_version=1,
        node_id=KEY[0], button_id=KEY[1], candidates=EDGES, context=context,
        answers=(KEY,), at=1_700_000_000.0 + 3600.0 * 3,
    )  # fmt: skip
    return policy.choose(point).chosen


def _outcomes(rng: np.random.Generator, n: int, start: int) -> list[Outcome]:
    """y wins for mobile x paid and for desktop x search, x elsewhere (no main effects)."""
    rows = []
    for i in range(start, start + n):
        c = int(rng.integers(len(CELLS)))
        cell = CELLS[c]
        edge = EDGES[int(rng.integers(2))]
        plus = (cell.device, cell.source) in (("mobile", "paid"), ("desktop", "search"))
        minus = (cell.device, cell.source) in (("mobile", "search"), ("desktop", "paid"))
        effect = 1.5 if plus else -1.5 if minus else 0.0
        logit = -1.0 + (effect if edge == "y" else 0.0)
        lead = bool(rng.random() < 1.0 / (1.0 + math.exp(-logit)))
        rows.append(Outcome(f"c{i}", KEY[0], KEY[1], edge, c, (KEY,), lead))
    return rows


def test_a_learner_with_pairs_learns_an_interaction_and_archives_exactly() -> None:
    rng = np.random.default_rng(7)
    learner = OnlineLearner("f", 1, {KEY: EDGES}, OnlineConfig(pairs=True, half_life=math.inf))
    for b in range(12):
        learner.observe(_outcomes(rng, 1_000, b * 1_000))
    snapshot = learner.snapshot("f@1#online.1", 2.0)
    assert len(snapshot.points[KEY].pairs) == len(PAIR_NAMES)
    data = encode_snapshot(snapshot)
    assert b'"v":4' in data
    body = archive_body(snapshot, data)
    assert is_compact(body) and expand(body) == data
    policy = ThompsonPolicy()
    assert policy.install(decode_snapshot(data))
    mobile: Device = "mobile"
    desktop: Device = "desktop"
    paid, search = ("google", "cpc"), ("google", "")
    share = {
        (d, s): sum(_decide(policy, d, u, i) == "y" for i in range(200)) / 200
        for d in (mobile, desktop)
        for s, u in (("paid", paid), ("search", search))
    }
    assert share[(mobile, "paid")] > 0.8 and share[(desktop, "search")] > 0.8
    assert share[(mobile, "search")] < 0.2 and share[(desktop, "paid")] < 0.2


def test_v4_decisions_replay_bit_for_bit_from_the_compact_archive() -> None:
    """What `replay --verify` relies on: the archived body of a v4 update expands to
    the published bytes, and a policy installed from them decides every decision
    as the publisher's did (edge, propensity, seed, logged features)."""
    rng = np.random.default_rng(4)
    c = 1 + F + len(PAIR_NAMES)
    factor = np.tril(rng.normal(0, 0.05, size=(2, c, c))) + 0.2 * np.eye(c)
    gaussian = PointGaussian(
        KEY[0], KEY[1], EDGES, (), rng.normal(0, 0.5, size=(2, c)), factor, PAIR_NAMES
    )
    source = GaussianPosterior(seed=11, draws=200, points=(gaussian,))
    published = PolicySnapshot("f", 1, "f@1#fit1.3", 1.0, draw_points(source), source=source)
    data = encode_snapshot(published)
    body = archive_body(published, data)
    assert is_compact(body) and expand(body) == data
    live, replayed = ThompsonPolicy(), ThompsonPolicy()
    assert live.install(published) and replayed.install(decode_snapshot(expand(body)))
    for i, context in enumerate(CONTEXTS * 20):
        point = DecisionPoint(
            conversation_id=f"c{i}", command_seq=2, flow_id="f", flow_version=1,
            node_id=KEY[0], button_id=KEY[1], candidates=EDGES, context=context,
            answers=(KEY,), at=1_700_000_000.0 + 977.0 * i,
        )  # fmt: skip
        assert live.choose(point) == replayed.choose(point)


CONTEXTS = (
    VisitorContext(device="mobile", utm_source="google", utm_medium="cpc", locale="pl-PL"),
    VisitorContext(device="desktop", utm_source="google", locale="en-GB"),
    VisitorContext(device="tablet", referrer="https://facebook.com/", locale="en"),
)

"""A learner with context pairs (policy/online.py, policy/pair_design.py) learns an
interaction that additive slopes cannot express, publishes it as a v4 snapshot that
ThompsonPolicy decides by, and its compact archive form regenerates the exact bytes.
(About 2 s: 12,000 outcomes through the 109-weight learner.)"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from policy.archive import archive_body, expand, is_compact
from policy.features import CELLS, PAIR_NAMES
from policy.online import OnlineConfig, OnlineLearner, Outcome
from policy.snapshot import decode_snapshot, encode_snapshot
from policy.thompson import ThompsonPolicy
from schemas.commands import VisitorContext
from services.policy_port import DecisionPoint

Device = Literal["desktop", "mobile", "tablet", "unknown"]
KEY = ("q", "b")
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

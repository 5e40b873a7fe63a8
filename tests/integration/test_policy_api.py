"""The policy API's pure parts: the per-flow summary's numbers and the parsing of
``POST /decide`` bodies (the HTTP side runs in tests/integration/test_policy_service.py)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from policy.api.context import PolicyApiContext
from policy.api.decide import parse_point
from policy.api.protocol import ApiError
from policy.api.summary import flow_summary
from policy.features import FEATURE_NAMES, cell_of, features
from policy.optimisation import traffic_mix
from policy.reward_counts import FlowCounts, OutcomeKey
from policy.snapshot import Guardrails, PointPosterior, PolicySnapshot
from policy.thompson import ThompsonPolicy
from schemas.commands import VisitorContext
from services.catalog import FlowCatalog
from services.policy_port import DecisionPoint
from tests.unit.flows import quiz

POINT = ("size", "big")
CANDIDATES = ("colour", "extra", "note")
MOBILE = "mobile|direct|morning|en"
DESKTOP = "desktop|direct|morning|en"


def sigmoid(x: Any) -> Any:
    return 1.0 / (1.0 + np.exp(-x))


def snapshot(rails: Guardrails | None = None, draws: int = 400) -> PolicySnapshot:
    rng = np.random.default_rng(5)
    base = rng.normal([-1.0, -0.2, -2.0], 0.3, size=(draws, 3)).astype(np.float32)
    slopes = np.zeros((draws, 3, len(FEATURE_NAMES)), dtype=np.float32)
    slopes[:, 0, FEATURE_NAMES.index("device=mobile")] = 1.5  # colour wins on mobile
    posterior = PointPosterior(*POINT, CANDIDATES, base, slopes)
    return PolicySnapshot(
        flow_id="quiz",
        flow_version=1,
        version="quiz@1#t",
        created_at=1.0,
        points={POINT: posterior},
        guardrails=rails or Guardrails(min_exploration=0.05),
    )


def counts(mobile: int, desktop: int) -> FlowCounts:
    out = FlowCounts(candidates={POINT: CANDIDATES})
    for cell, n in ((MOBILE, mobile), (DESKTOP, desktop)):
        for i in range(n):
            out.add(OutcomeKey(*POINT, CANDIDATES[i % 3], cell), success=i % 4 == 0)
    return out


def test_conversion_is_the_posterior_mean_over_the_traffic_mix_with_a_90_interval() -> None:
    snap = snapshot()
    mix_counts = counts(mobile=30, desktop=90)
    assert traffic_mix(mix_counts, POINT) == {DESKTOP: 0.75, MOBILE: 0.25}
    [point] = flow_summary(snap, mix_counts)["decision_points"]
    posterior = snap.points[POINT]
    x_mobile = features(cell_of(VisitorContext(device="mobile"), 8 * 3600.0))
    for i, edge in enumerate(point["edges"]):
        base = posterior.base[:, i].astype(np.float64)
        lift = float(posterior.slopes[0, i] @ x_mobile)
        p = 0.75 * sigmoid(base) + 0.25 * sigmoid(base + lift)
        assert edge["conversion"] == pytest.approx(p.mean(), abs=1e-5)
        assert edge["interval"] == pytest.approx(list(np.quantile(p, [0.05, 0.95])), abs=1e-5)
        assert edge["interval"][0] <= edge["conversion"] <= edge["interval"][1]
    assert [e["outcomes"] for e in point["edges"]] == [40, 40, 40]
    assert sum(e["leads"] for e in point["edges"]) == 8 + 23  # every 4th of 30 and of 90
    assert point["contexts"] == 2 and point["draws"] == 400


def test_shares_are_the_policy_s_probabilities_with_the_guardrails() -> None:
    policy = ThompsonPolicy()
    snap = snapshot(Guardrails(min_exploration=0.1, holdout=0.2))
    policy.install(snap)
    mobile_only = counts(mobile=9, desktop=0)
    [point] = flow_summary(snap, mobile_only)["decision_points"]
    decision = DecisionPoint(
        conversation_id="c",
        command_seq=1,
        flow_id="quiz",
        flow_version=1,
        node_id=POINT[0],
        button_id=POINT[1],
        candidates=CANDIDATES,
        context=VisitorContext(device="mobile"),
        at=8 * 3600.0,
    )
    dist = policy.distribution(decision)
    assert dist is not None
    shares = [e["share"] for e in point["edges"]]
    assert shares == pytest.approx(list(dist.probabilities()), abs=1e-6)
    assert sum(shares) == pytest.approx(1.0)
    assert min(shares) >= 0.8 * 0.1 - 1e-9  # the floor, scaled by the non-holdout share
    killed = flow_summary(replace(snap, guardrails=Guardrails(killed=True)))
    assert [e["share"] for e in killed["decision_points"][0]["edges"]] == [1.0, 0.0, 0.0]
    assert [e["default"] for e in point["edges"]] == [True, False, False]


def test_without_counts_the_summary_is_at_the_baseline_context() -> None:
    snap = snapshot()
    body = flow_summary(snap)
    [point] = body["decision_points"]
    base = snap.points[POINT].base.astype(np.float64)
    assert point["contexts"] == 0
    assert [e["conversion"] for e in point["edges"]] == pytest.approx(
        list(sigmoid(base).mean(axis=0)), abs=1e-5
    )
    assert body["policy_version"] == "quiz@1#t" and body["credible_interval"] == 0.9


def api(with_snapshot: bool = True) -> PolicyApiContext:
    policy = ThompsonPolicy()
    if with_snapshot:
        policy.install(snapshot())
    return PolicyApiContext(policy=policy, catalog=FlowCatalog([quiz(1)]))


def test_decide_bodies_default_to_the_snapshot_and_the_catalog() -> None:
    body = {"conversation_id": "x", "flow_id": "quiz", "node_id": "size", "button_id": "big"}
    point = parse_point(body, api())
    assert (point.flow_version, point.candidates, point.command_seq) == (1, CANDIDATES, 0)
    assert point.context == VisitorContext()
    point = parse_point({**body, "context": {"device": "tablet"}, "at": 5}, api(False))
    assert point.candidates == CANDIDATES and point.context.device == "tablet"
    assert point.at == 5.0


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"flow_id": None}, 400),
        ({"conversation_id": 7}, 400),
        ({"flow_version": True}, 400),
        ({"candidates": ["only-one"]}, 400),
        ({"candidates": ["a", "a"]}, 400),
        ({"context": {"device": "phone"}}, 400),
        ({"context": {"email": "x@example.com"}}, 400),
        ({"answers": [["size"]]}, 400),
        ({"at": "now"}, 400),
        ({"node_id": "nowhere"}, 404),
    ],
)
def test_bad_decide_bodies_are_refused(change: dict[str, Any], status: int) -> None:
    body: dict[str, Any] = {
        "conversation_id": "x",
        "flow_id": "quiz",
        "node_id": "size",
        "button_id": "big",
        **change,
    }
    body = {k: v for k, v in body.items() if v is not None}
    with pytest.raises(ApiError) as caught:
        parse_point(body, api())
    assert caught.value.status == status

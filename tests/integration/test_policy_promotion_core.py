"""Promotions: exact propensities (the holdout keeps the default edge), the snapshot codec,
guardrail changes as records and their fold, and the ledger with the holdout apart."""

from __future__ import annotations

import dataclasses

import orjson
import pytest

from policy.control import (
    ControlError,
    ControlState,
    GuardrailChange,
    PromotionChange,
    decode_change,
    encode_change,
)
from policy.decision_draws import holdout_share
from policy.holdout_ledger import HoldoutLedger
from policy.rewards import RewardLedger
from policy.snapshot import (
    Guardrails,
    Promotion,
    SnapshotError,
    decode_snapshot,
    encode_snapshot,
)
from policy.thompson import ThompsonPolicy
from tests.integration.test_policy_thompson import point, snapshot
from tests.unit.test_policy_rewards import FLOW, T0, Conversation


def _policy(rails: Guardrails) -> ThompsonPolicy:
    policy = ThompsonPolicy()
    assert policy.install(snapshot(rails=rails))
    return policy


@pytest.mark.parametrize("edge", ["x", "y"])
@pytest.mark.parametrize("holdout", [0.0, 0.3])
def test_promoted_propensities_are_exact_and_sum_to_one(edge: str, holdout: float) -> None:
    """Promoted edge: (1 - h) + h [promoted = e_0]; e_0: h + ...; the others 0."""
    policy = _policy(Guardrails(holdout=holdout, promoted=(Promotion("q2", "b", edge),)))
    dist = policy.distribution(point())
    assert dist is not None
    probs = dist.probabilities()
    assert sum(probs) == pytest.approx(1.0)
    expected = {
        "x": holdout + (1 - holdout) * (edge == "x"),
        "y": (1 - holdout) * (edge == "y"),
        "z": 0.0,
    }
    assert dict(zip(("x", "y", "z"), probs, strict=True)) == pytest.approx(expected)
    for i in range(300):
        p = point(conversation_id=f"c-{i}")
        choice = policy.choose(p)
        held = holdout_share(p.conversation_id) < holdout
        assert choice.chosen == ("x" if held else edge)  # the holdout keeps e_0
        assert choice.propensity == pytest.approx(expected[choice.chosen])


def test_other_points_are_unchanged_by_a_promotion() -> None:
    plain = _policy(Guardrails())
    promoted = _policy(Guardrails(promoted=(Promotion("q2", "b", "y"),)))
    for i in range(100):
        p = point(key=("q1", "b"), conversation_id=f"c-{i}")
        assert promoted.choose(p) == dataclasses.replace(plain.choose(p))


def test_a_promotion_of_an_unknown_edge_is_ignored() -> None:
    plain = _policy(Guardrails())
    odd = _policy(Guardrails(promoted=(Promotion("q2", "b", "nope"),)))
    p = point()
    assert odd.choose(p).chosen == plain.choose(p).chosen
    assert odd.distribution(p) == plain.distribution(p)


def test_snapshots_round_trip_with_promotions_and_stay_v1_without() -> None:
    rails = Guardrails(holdout=0.1, promoted=(Promotion("q2", "b", "z"), Promotion("q1", "b", "b")))
    snap = snapshot(rails=rails)
    data = encode_snapshot(snap)
    assert orjson.loads(data)["v"] == 3
    back = decode_snapshot(data)
    assert back.guardrails == rails
    assert back.guardrails.promoted_edges() == {("q1", "b"): "b", ("q2", "b"): "z"}
    plain = encode_snapshot(snapshot())
    assert orjson.loads(plain)["v"] == 1
    assert "promoted" not in orjson.loads(plain)["guardrails"]


def test_a_v2_reader_would_refuse_promotions_and_bad_ones_are_refused() -> None:
    doc = orjson.loads(
        encode_snapshot(snapshot(rails=Guardrails(promoted=(Promotion("q2", "b", "z"),))))
    )
    doc["guardrails"]["promoted"].append({"node_id": "q2", "button_id": "b", "edge": "y"})
    with pytest.raises(SnapshotError, match="twice"):
        decode_snapshot(orjson.dumps(doc))
    doc["guardrails"]["promoted"] = [{"node_id": "q2", "button_id": "b"}]
    with pytest.raises(SnapshotError):
        decode_snapshot(orjson.dumps(doc))


def test_guardrail_changes_round_trip_and_fold_in_order() -> None:
    base = Guardrails(min_exploration=0.05, holdout=0.1)
    state = ControlState(lambda flow_id: base)
    first = GuardrailChange("f", 1.0, "api", holdout=0.2, reason="more control")
    second = GuardrailChange("f", 2.0, "cli:ann", promotions=(PromotionChange("q", "b", "e"),))
    third = GuardrailChange("f", 3.0, "api", killed=True)
    for position, change in enumerate((first, second, third), start=1):
        decoded = decode_change(encode_change(change))
        assert decoded == change
        state.fold(position, decoded)
    rails = state.guardrails("f")
    assert rails == Guardrails(0.05, 0.2, True, (Promotion("q", "b", "e"),))
    assert state.guardrails("g") == base
    history = state.audit("f")
    assert [h["by"] for h in history] == ["api", "cli:ann", "api"]
    assert history[0]["change"] == {"holdout": 0.2} and history[0]["reason"] == "more control"
    ended = GuardrailChange("f", 4.0, "api", promotions=(PromotionChange("q", "b", None),))
    assert state.fold(4, decode_change(encode_change(ended))).promoted == ()


@pytest.mark.parametrize(
    "body",
    [
        b"nope",
        b'{"type": "Other"}',
        b'{"type": "PolicyGuardrailsChanged", "v": 9, "change": {}}',
        b'{"type": "PolicyGuardrailsChanged", "v": 1, "flow_id": "f", "at": 1, "by": "x",'
        b' "change": {"holdout": 2}}',
        b'{"type": "PolicyGuardrailsChanged", "v": 1, "flow_id": "f", "at": 1, "by": "x",'
        b' "change": {"killed": 1}}',
    ],
)
def test_unusable_control_records_raise_control_error(body: bytes) -> None:
    with pytest.raises(ControlError):
        decode_change(body)


def test_the_holdout_ledger_counts_the_holdout_apart_and_the_ledger_unchanged() -> None:
    """Membership is holdout_share(id) < h; the plain ledger's counts do not change."""
    ledger = HoldoutLedger(3600.0, 600.0, holdout_of=lambda flow_id: 0.5)
    plain = RewardLedger(3600.0, 600.0)
    held = rest = 0
    for i in range(40):
        conv = Conversation(f"conv-{i}", at=T0 + i).start().decide("q1", "a")
        conv = conv.lead().complete(lead=True) if i % 3 == 0 else conv.complete()
        ledger.observe(conv)
        plain.observe(conv)
        if holdout_share(conv.cid) < 0.5:
            held += 1
        else:
            rest += 1
    ledger.expire()
    plain.expire()
    assert 0 < held < 40
    assert ledger.flows == plain.flows
    h, r = ledger.split(FLOW)
    assert h is not None and r is not None
    assert (h.trials(), r.trials()) == (held, rest)
    assert h.conversations + r.conversations == plain.flows[FLOW].conversations

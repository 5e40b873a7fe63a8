"""The uniform edge policy: seeded, replayable, unbiased."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest

from policy.uniform import UniformPolicy, decision_seed
from schemas.commands import VisitorContext
from services.policy_port import DecisionPoint, EdgePolicy

CANDIDATES = ("a", "b", "c")


def point(
    conversation_id: str = "conv-p", command_seq: int = 2, candidates: tuple[str, ...] = CANDIDATES
) -> DecisionPoint:
    return DecisionPoint(
        conversation_id=conversation_id,
        command_seq=command_seq,
        flow_id="quiz",
        flow_version=1,
        node_id="q",
        button_id="b",
        candidates=candidates,
        context=VisitorContext(),
    )


@pytest.mark.parametrize(
    ("conversation_id", "command_seq", "salt"),
    [("conv-p", 2, ""), ("7f3e-uuid", 41, "holdout")],
)
def test_decision_seed_is_the_documented_sha256_derivation(
    conversation_id: str, command_seq: int, salt: str
) -> None:
    """The seed must be the top 63 bits of sha256("cid/seq/salt"): stable across processes."""
    digest = hashlib.sha256(f"{conversation_id}/{command_seq}/{salt}".encode()).digest()
    expected = int.from_bytes(digest[:8], "big") >> 1
    assert decision_seed(conversation_id, command_seq, salt) == expected
    assert 0 <= expected < 2**63


def test_decision_seed_depends_on_conversation_seq_and_salt() -> None:
    """Different decision points must get different seeds."""
    seeds = {
        decision_seed("conv-p", 2),
        decision_seed("conv-p", 3),
        decision_seed("conv-q", 2),
        decision_seed("conv-p", 2, "salt"),
    }
    assert len(seeds) == 4


def test_same_conversation_and_seq_choose_the_same_edge() -> None:
    """Replaying a command must repeat the decision exactly, even in a new policy object."""
    first = UniformPolicy().choose(point())
    assert all(UniformPolicy().choose(point()) == first for _ in range(5))


def test_choice_records_seed_version_and_a_candidate() -> None:
    """EdgeChoice must carry the seed it drew with and the policy version."""
    choice = UniformPolicy().choose(point())
    assert choice.chosen in CANDIDATES
    assert choice.seed == decision_seed("conv-p", 2)
    assert choice.policy_version == "uniform-v1"


@pytest.mark.parametrize("k", [1, 4])
def test_propensity_is_one_over_k(k: int) -> None:
    """The logged propensity must be 1/k for k candidates (needed for off-policy evaluation)."""
    candidates = tuple(f"n{i}" for i in range(k))
    choice = UniformPolicy().choose(point(candidates=candidates))
    assert choice.propensity == pytest.approx(1 / k)
    assert choice.chosen in candidates


def test_choices_spread_over_candidates() -> None:
    """Across 3000 seeds each of 3 candidates must get 25-42% (no stuck or biased RNG)."""
    policy: EdgePolicy = UniformPolicy()
    counts = Counter(policy.choose(point(command_seq=seq)).chosen for seq in range(1, 3001))
    assert set(counts) == set(CANDIDATES)
    for candidate in CANDIDATES:
        assert 0.25 <= counts[candidate] / 3000 <= 0.42, counts

"""Off-policy evaluation: the estimators on hand-computed examples, the candidates'
probabilities, the fold of the log into trajectories and its errors."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from statistics import NormalDist

import numpy as np
import pytest

from app.cli_policy_errors import UsageError
from app.cli_policy_evaluate import parse_edges
from policy.decision_draws import holdout_share
from policy.evaluation.candidates import (
    Candidate,
    FixedCandidate,
    SnapshotCandidate,
    UniformCandidate,
)
from policy.evaluation.conversation_terms import Terms, clipped_dr, dr_term, terms
from policy.evaluation.estimators import NoDecisions, estimates
from policy.evaluation.lead_model import LeadCounts, LeadModel, cross_fitted_models, fold_of
from policy.evaluation.propensities import (
    candidate_path,
    logged_prefixes,
    prefix_probabilities,
    with_holdouts,
)
from policy.evaluation.ratio_interval import ratio_interval
from policy.evaluation.report import Scope, render, render_refusal, to_dict
from policy.evaluation.summary import effective_sample_size, evaluate, refusal, summarize
from policy.evaluation.trajectories import Decision, LogError, Trajectory, fold
from policy.features import CELL_LABELS, CELLS, FEATURE_NAMES, cell_index
from policy.point_policy import Distribution
from policy.snapshot import Guardrails, PointPosterior, PolicySnapshot
from policy.thompson import ThompsonPolicy
from schemas.commands import VisitorContext
from schemas.events import (
    ButtonPressed,
    ConversationCompleted,
    ConversationStarted,
    EdgeChosen,
    Event,
    LeadCaptured,
)
from services.policy_port import DecisionPoint

AB = ("a", "b")


def decision(chosen: int, propensity: float, node: str = "q1", cell: int = 0) -> Decision:
    return Decision(node, "go", AB, chosen, propensity, cell, "logging-v1")


def trajectory(cid: str, reward: float, *decisions: Decision, version: int = 1) -> Trajectory:
    return Trajectory(cid, "quiz", version, 0.0, tuple(decisions), reward)


# A: one decision (p 0.5, edge a), a lead; B: one decision (p 0.8, edge b), none;
# C: two decisions (p 0.5 a, then p 0.25 b), a lead; D: no decision, none.
EXAMPLE = (
    trajectory("A", 1.0, decision(0, 0.5)),
    trajectory("B", 0.0, decision(1, 0.8)),
    trajectory("C", 1.0, decision(0, 0.5), decision(1, 0.25, node="q2")),
    trajectory("D", 0.0),
)


def sample_sd(xs: Sequence[float]) -> float:
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


# -- estimators ---------------------------------------------------------------------


def test_weights_multiply_over_a_conversations_decisions() -> None:
    """uniform: A 0.5/0.5, B 0.5/0.8, C (0.5/0.5)(0.5/0.25), D 1 (no decision)."""
    t = terms(EXAMPLE, UniformCandidate())
    assert t.weight.tolist() == pytest.approx([1.0, 0.625, 2.0, 1.0])
    assert t.decisions == 4 and t.zero_support == 0
    default = terms(EXAMPLE, FixedCandidate())
    assert default.weight.tolist() == pytest.approx([2.0, 0.0, 0.0, 1.0])
    assert default.zero_support == 2  # B's b and C's second b


def test_ips_snips_and_their_intervals_by_hand() -> None:
    t = terms(EXAMPLE, UniformCandidate())
    est = {e.estimator: e for e in estimates(t, 0.95, assisted=False)}
    z = 1.959963984540054
    # logged: mean reward
    assert est["logged"].value == 0.5
    # IPS: mean(w r) = (1 + 0 + 2 + 0) / 4
    ips_terms = [1.0, 0.0, 2.0, 0.0]
    assert est["ips"].value == pytest.approx(0.75)
    assert est["ips"].se == pytest.approx(sample_sd(ips_terms) / 2.0)
    assert est["ips"].low == pytest.approx(0.75 - z * sample_sd(ips_terms) / 2.0)
    # IPS - logged, paired: terms w r - r = (0, 0, 1, 0)
    assert est["ips"].difference == pytest.approx(0.25)
    assert est["ips"].difference_high == pytest.approx(0.25 + z * sample_sd([0, 0, 1, 0]) / 2)
    # SNIPS: sum(w r) / sum(w) = 3 / 4.625; influence w (r - V) / mean(w)
    v = 3.0 / 4.625
    w, r = [1.0, 0.625, 2.0, 1.0], [1.0, 0.0, 1.0, 0.0]
    influence = [wi * (ri - v) / (4.625 / 4) for wi, ri in zip(w, r, strict=True)]
    assert sum(influence) == pytest.approx(0.0, abs=1e-12)
    assert est["snips"].value == pytest.approx(v)
    assert est["snips"].se == pytest.approx(sample_sd(influence) / 2.0)
    paired = [i - (ri - 0.5) for i, ri in zip(influence, r, strict=True)]
    assert est["snips"].difference_low == pytest.approx(v - 0.5 - z * sample_sd(paired) / 2)


def test_model_assisted_intervals_are_never_narrower() -> None:
    t = terms(EXAMPLE, UniformCandidate())
    plain = estimates(t, 0.95, assisted=False)
    assisted = estimates(t, 0.95, assisted=True)
    for p, a in zip(plain, assisted, strict=True):
        assert a.value == p.value
        assert a.se >= p.se - 1e-15
        assert a.high - a.low >= p.high - p.low - 1e-12


def test_the_model_assisted_standard_error_by_hand() -> None:
    """IPS terms w r: modelled second moment mean(m w^2); the larger variance wins."""
    w = np.array([4.0, 1.0, 1.0, 1.0])
    r = np.array([0.0, 0.0, 1.0, 0.0])  # the heavy conversation had no lead
    m = np.array([0.5, 0.2, 0.2, 0.2])  # ... but the model gives it 50%
    t = Terms(r, w, w * r, m, np.ones(4, dtype=bool), 4, 0)
    plain = {e.estimator: e for e in estimates(t, assisted=False)}["ips"]
    assisted = {e.estimator: e for e in estimates(t)}["ips"]
    assert plain.se == pytest.approx(sample_sd([0.0, 0.0, 1.0, 0.0]) / 2)
    modelled = (np.mean(m * w * w) - 0.25**2) * 4 / 3
    assert modelled > plain.se**2 * 4
    assert assisted.se == pytest.approx(math.sqrt(modelled / 4))


def test_effective_sample_size() -> None:
    assert effective_sample_size(np.array([1.0, 1.0, 1.0, 1.0])) == 4.0
    assert effective_sample_size(np.array([2.0, 0.0, 0.0])) == 1.0
    assert effective_sample_size(np.array([1.0, 0.625, 2.0])) == pytest.approx(
        3.625**2 / (1 + 0.625**2 + 4)
    )
    assert effective_sample_size(np.zeros(3)) == 0.0


def test_the_logging_policy_as_candidate_has_weights_of_one() -> None:
    """A candidate that is the logging policy: IPS = SNIPS = the logged value, ESS = n."""

    class Logged:
        name = "logged"

        def covers(self, trajectory: Trajectory) -> bool:
            return True

        def probabilities(self, trajectory: Trajectory, decision: Decision) -> tuple[float, ...]:
            p = decision.propensity
            return (p, 1 - p) if decision.chosen == 0 else (1 - p, p)

        def split(
            self, trajectory: Trajectory, decision: Decision
        ) -> tuple[float, tuple[float, ...], tuple[float, ...]]:
            p = self.probabilities(trajectory, decision)
            return (0.0, p, p)

    ev = evaluate(EXAMPLE, Logged())
    assert ev.estimate("ips").value == ev.estimate("snips").value == ev.estimate("logged").value
    assert ev.ess == 3.0 and ev.max_weight == 1.0
    assert ev.estimate("ips").difference_low == ev.estimate("ips").difference_high == 0.0


def test_dr_with_a_perfect_model_has_no_correction() -> None:
    """The reward is 1 exactly when edge a is taken at the (last) decision and the
    model knows it: every conversation's DR term is sum_a pi(a) Q(a), whatever
    the logged action and propensity: zero variance from the correction."""
    q = [(1.0, 0.0)]
    new = [(0.3, 0.7)]
    logs = [
        trajectory("x", 1.0, decision(0, 0.9)),
        trajectory("y", 0.0, decision(1, 0.1)),
        trajectory("z", 1.0, decision(0, 0.2)),
    ]
    assert [dr_term(t, new, q) for t in logs] == pytest.approx([0.3, 0.3, 0.3])
    # two decisions, the model exact at both (Q_1 = what D_2 is for the edge taken)
    two = trajectory("w", 1.0, decision(1, 0.4), decision(0, 0.5, node="q2"))
    new2 = [(0.5, 0.5), (0.3, 0.7)]
    q2 = [(0.3, 0.3), (1.0, 0.0)]
    assert dr_term(two, new2, q2) == pytest.approx(0.3)


def test_dr_by_hand_with_a_wrong_model() -> None:
    """D_2 = V_2 + rho_2 (r - Q_2(a_2)), D_1 = V_1 + rho_1 (D_2 - Q_1(a_1))."""
    t = trajectory("w", 1.0, decision(1, 0.4), decision(0, 0.5, node="q2"))
    new = [(0.5, 0.5), (0.3, 0.7)]
    q = [(0.2, 0.6), (0.1, 0.4)]
    d2 = (0.3 * 0.1 + 0.7 * 0.4) + (0.3 / 0.5) * (1.0 - 0.1)
    d1 = (0.5 * 0.2 + 0.5 * 0.6) + (0.5 / 0.4) * (d2 - 0.6)
    assert dr_term(t, new, q) == pytest.approx(d1)


def test_cross_fitting_keeps_a_conversations_reward_out_of_its_model() -> None:
    logs = [trajectory(f"c{i}", float(i % 2), decision(i % 2, 0.5, cell=3)) for i in range(40)]
    models, assignment = cross_fitted_models(logs, folds=4)
    for i, t in enumerate(logs):
        others = LeadCounts()
        for j, u in enumerate(logs):
            if assignment[j] != assignment[i]:
                others.add(u)
        expected = LeadModel(others).q(1, t.decisions[0])
        assert models[assignment[i]].q(1, t.decisions[0]) == pytest.approx(expected)
        assert assignment[i] == fold_of(t.conversation_id, 4)


def test_the_lead_model_shrinks_sparse_cells_towards_the_edge() -> None:
    counts = LeadCounts()
    for i in range(100):
        counts.add(trajectory(f"c{i}", 1.0 if i < 30 else 0.0, decision(0, 0.5, cell=1)))
    model = LeadModel(counts)
    in_cell, elsewhere = model.q(1, decision(0, 0.5, cell=1)), model.q(1, decision(0, 0.5, cell=2))
    assert in_cell[0] == pytest.approx(0.3, abs=0.01)
    assert elsewhere[0] == pytest.approx(in_cell[0], abs=0.01)  # no data: the edge's rate
    assert 0.0 < in_cell[1] < 1.0  # an edge never logged: the point's rate, shrunk


def test_no_decisions_is_its_own_error() -> None:
    with pytest.raises(NoDecisions, match="no logged decisions in this range"):
        evaluate([trajectory("D", 0.0)], UniformCandidate())
    with pytest.raises(NoDecisions):
        evaluate([], UniformCandidate())


def test_a_level_outside_0_1_is_refused() -> None:
    with pytest.raises(ValueError, match="confidence level"):
        evaluate(EXAMPLE, UniformCandidate(), level=95.0)


def test_values_over_conversations_with_decisions_leave_out_the_others() -> None:
    ev = evaluate(EXAMPLE, UniformCandidate())
    assert ev.conversations == 4 and ev.with_decisions == 3
    assert ev.estimate("logged", decided=True).value == pytest.approx(2 / 3)
    assert ev.estimate("ips", decided=True).value == pytest.approx(1.0)  # (1 + 0 + 2) / 3


def test_small_effective_sample_sizes_are_warned_about() -> None:
    ev = evaluate(EXAMPLE, FixedCandidate())
    assert any("effective sample size" in w for w in ev.warnings)
    assert ev.zero_support == 0.5


def test_summarize_matches_evaluate() -> None:
    t: Terms = terms(EXAMPLE, UniformCandidate())
    assert summarize(t, "uniform") == evaluate(EXAMPLE, UniformCandidate())


# -- candidates ---------------------------------------------------------------------


POINTS = {("q1", "go"): AB, ("q2", "go"): ("x", "y", "z")}


def snapshot(rails: Guardrails | None = None, version: int = 1, seed: int = 4) -> PolicySnapshot:
    rng = np.random.default_rng(seed)
    points = {}
    for key, cands in POINTS.items():
        k = len(cands)
        base = rng.normal(-1.0, 0.5, size=(50, k)).astype(np.float32)
        slopes = rng.normal(0.0, 0.5, size=(50, k, len(FEATURE_NAMES))).astype(np.float32)
        points[key] = PointPosterior(key[0], key[1], cands, base, slopes)
    return PolicySnapshot(
        flow_id="quiz",
        flow_version=version,
        version=f"quiz@{version}#{1 if seed == 4 else seed}",
        created_at=1.0,
        points=points,
        guardrails=rails or Guardrails(),
    )


def test_snapshot_candidate_gives_the_policys_distribution_in_the_logged_cell() -> None:
    snap = snapshot()
    policy = ThompsonPolicy()
    policy.install(snap)
    candidate = SnapshotCandidate(snap)
    t = trajectory("conv", 0.0)
    for cell in (0, 17, 101, len(CELLS) - 1):
        d = Decision("q2", "go", ("x", "y", "z"), 0, 0.3, cell, "v")
        point = DecisionPoint(
            conversation_id="conv",
            command_seq=2,
            flow_id="quiz",
            flow_version=1,
            node_id="q2",
            button_id="go",
            candidates=("x", "y", "z"),
            context=VisitorContext(),
        )
        dist = policy.cell_distribution(point, cell)
        assert dist is not None
        assert candidate.probabilities(t, d) == dist.probabilities()
        assert sum(candidate.probabilities(t, d)) == pytest.approx(1.0)
        assert min(candidate.probabilities(t, d)) >= 0.05 - 1e-12  # the floor


def test_snapshot_candidate_holds_out_whole_conversations() -> None:
    snap = snapshot(Guardrails(holdout=0.5))
    candidate = SnapshotCandidate(snap)
    d = decision(1, 0.5)
    held = next(f"c{i}" for i in range(100) if holdout_share(f"c{i}") < 0.5)
    free = next(f"c{i}" for i in range(100) if holdout_share(f"c{i}") >= 0.5)
    assert candidate.probabilities(trajectory(held, 0.0), d) == (1.0, 0.0)
    assert candidate.probabilities(trajectory(free, 0.0), d) != (1.0, 0.0)


def test_snapshot_candidate_scope_fallback_and_kill_switch() -> None:
    candidate = SnapshotCandidate(snapshot())
    assert candidate.covers(trajectory("c", 0.0))
    assert not candidate.covers(trajectory("c", 0.0, version=2))
    unknown = Decision("q9", "go", ("m", "n", "o", "p"), 0, 0.25, 0, "v")
    assert candidate.probabilities(trajectory("c", 0.0), unknown) == (0.25,) * 4  # the fallback
    killed = SnapshotCandidate(snapshot(Guardrails(killed=True)))
    assert killed.probabilities(trajectory("c", 0.0), decision(1, 0.5)) == (1.0, 0.0)


def test_uniform_and_fixed_candidates() -> None:
    d = Decision("q2", "go", ("x", "y", "z"), 2, 0.2, 0, "v")
    t = trajectory("c", 0.0)
    assert UniformCandidate().probabilities(t, d) == (1 / 3, 1 / 3, 1 / 3)
    assert FixedCandidate().probabilities(t, d) == (1.0, 0.0, 0.0)
    fixed = FixedCandidate({("q2", "go"): "z"})
    assert fixed.probabilities(t, d) == (0.0, 0.0, 1.0)
    assert fixed.probabilities(t, decision(0, 0.5)) == (1.0, 0.0)  # not named: default
    assert FixedCandidate({("q2", "go"): "nope"}).probabilities(t, d) == (1.0, 0.0, 0.0)


def test_edges_of_the_command_line() -> None:
    assert parse_edges(["property:house=bill", "bill:mid=timeframe"]) == {
        ("property", "house"): "bill",
        ("bill", "mid"): "timeframe",
    }
    for bad in ("property=bill", "property:house", ":house=bill", "property:house="):
        with pytest.raises(UsageError, match="NODE:BUTTON=EDGE"):
            parse_edges([bad])


# -- holdout-conditional propensities ------------------------------------------------

# The synthetic world: every conversation meets q1 (a, b) then q2 (x, y, z); its
# lead probability depends on both edges; one context cell. The logging policy is
# the real ThompsonPolicy on ``snapshot()``; the truth is exact per conversation.
LEAD = {
    ("a", "x"): 0.30,
    ("a", "y"): 0.10,
    ("a", "z"): 0.20,
    ("b", "x"): 0.15,
    ("b", "y"): 0.45,
    ("b", "z"): 0.25,
}
CELL = cell_index(VisitorContext(), 0.0)


def point_of(cid: str, seq: int, key: tuple[str, str]) -> DecisionPoint:
    return DecisionPoint(
        conversation_id=cid,
        command_seq=seq,
        flow_id="quiz",
        flow_version=1,
        node_id=key[0],
        button_id=key[1],
        candidates=POINTS[key],
        context=VisitorContext(),
    )


def distributions(snap: PolicySnapshot, cid: str = "c") -> list[Distribution]:
    policy = ThompsonPolicy()
    policy.install(snap)
    out = []
    for seq, key in enumerate(POINTS, start=2):
        dist = policy.cell_distribution(point_of(cid, seq, key), CELL)
        assert dist is not None
        out.append(dist)
    return out


def paths() -> list[tuple[int, int]]:
    return [(i, j) for i in range(2) for j in range(3)]


def lead_of(path: tuple[int, int]) -> float:
    return LEAD[(POINTS[("q1", "go")][path[0]], POINTS[("q2", "go")][path[1]])]


def path_probability(dists: Sequence[Distribution], path: tuple[int, int]) -> float:
    """The probability of the path, the conversation's holdout coin integrated out."""
    h = dists[0].holdout
    held = math.prod(d.probabilities(in_holdout=True)[a] for d, a in zip(dists, path, strict=True))
    free = math.prod(d.probabilities(in_holdout=False)[a] for d, a in zip(dists, path, strict=True))
    return h * held + (1 - h) * free


def logged_path(dists: Sequence[Distribution], path: tuple[int, int], version: str) -> Trajectory:
    """The path as logged: each decision with its marginal propensity (what the
    ThompsonPolicy logs) and, as the CLI finds it in the archive, the holdout."""
    decisions = tuple(
        Decision(
            key[0], key[1], POINTS[key], a, d.probabilities()[a], CELL, version, holdout=d.holdout
        )
        for key, d, a in zip(POINTS, dists, path, strict=True)
    )
    return Trajectory("c", "quiz", 1, 0.0, decisions, lead_of(path))  # the expected reward


@pytest.mark.parametrize("holdout", [0.0, 0.2])
def test_ips_and_dr_are_exactly_unbiased_under_a_holdout(holdout: float) -> None:
    """Regression: with a holdout the logged propensities are marginal over the
    holdout coin, which is drawn once per conversation; their product over a
    conversation's decisions is not the probability of its path, and IPS put the
    default edge at 0.376 against a true 0.207. Here every path of the synthetic
    world is weighted as the estimators weight it: the expectation under the real
    ThompsonPolicy's logging (holdout 0 and 0.2) of IPS, and of DR with an
    arbitrary model, is exactly the candidate's true value (uniform, the default
    edge, another snapshot with the same holdout); the product of the logged
    propensities (the old weight) misses it by points."""
    rails = Guardrails(min_exploration=0.05, holdout=holdout)
    logging = snapshot(rails)
    logged = distributions(logging)
    q = [(0.25, 0.2), (0.3, 0.1, 0.2)]  # an arbitrary, wrong model of the lead probability
    other = snapshot(rails, seed=9)
    targets: list[tuple[Candidate, list[Distribution] | None]] = [
        (UniformCandidate(), None),
        (FixedCandidate(), None),
        (SnapshotCandidate(other), distributions(other)),
    ]
    for candidate, dists in targets:
        expected_ips = expected_dr = expected_old = truth = 0.0
        for path in paths():
            t = logged_path(logged, path, logging.version)
            mu = path_probability(logged, path)
            if dists is not None:
                truth += path_probability(dists, path) * lead_of(path)
            else:
                truth += math.prod(
                    candidate.probabilities(t, d)[a] for d, a in zip(t.decisions, path, strict=True)
                ) * lead_of(path)
            w = terms([t], candidate, folds=1).weight[0]
            expected_ips += mu * w * lead_of(path)
            chosen = list(path)
            new, target = candidate_path([candidate.split(t, d) for d in t.decisions], chosen)
            cumulative = [p / m for p, m in zip(target, logged_prefixes(t.decisions), strict=True)]
            expected_dr += mu * clipped_dr(t, new, q, math.inf, cumulative)[0]
            old = math.prod(
                candidate.probabilities(t, d)[a] / d.propensity
                for d, a in zip(t.decisions, path, strict=True)
            )
            expected_old += mu * old * lead_of(path)
        assert expected_ips == pytest.approx(truth, abs=1e-12), candidate.name
        assert expected_dr == pytest.approx(truth, abs=1e-12), candidate.name
        if holdout > 0.0 and isinstance(candidate, FixedCandidate):
            assert expected_old - truth > 0.02, (expected_old, truth)


def test_path_probabilities_integrate_the_holdout_coin_out_by_hand() -> None:
    """Two decisions under holdout 0.2, both default edges, free probabilities 0.3
    and 0.6: the path has probability 0.2 * 1 + 0.8 * 0.3 * 0.6, not the product
    of the logged marginals (0.2 + 0.8 * 0.3) (0.2 + 0.8 * 0.6)."""
    h = 0.2
    first = Decision("q1", "go", AB, 0, h + (1 - h) * 0.3, 0, "snap", holdout=h)
    second = Decision("q2", "go", AB, 0, h + (1 - h) * 0.6, 0, "snap", holdout=h)
    assert first.held_propensity == 1.0 and first.free_propensity == pytest.approx(0.3)
    held, free = [1.0, 1.0], [0.3, 0.6]
    assert prefix_probabilities([h, h], held, free) == pytest.approx(
        [h + (1 - h) * 0.3, h + (1 - h) * 0.3 * 0.6]
    )
    # a holdout raised to 0.5 between the two decisions: u in [0.2, 0.5) held at the second only
    assert prefix_probabilities([0.2, 0.5], held, free)[1] == pytest.approx(
        0.2 + 0.3 * 0.3 * 1.0 + 0.5 * 0.3 * 0.6
    )
    other = replace(second, chosen=1, propensity=(1 - h) * 0.4)
    assert other.held_propensity == 0.0 and other.free_propensity == pytest.approx(0.4)
    assert prefix_probabilities([h, h], [1.0, 0.0], [0.3, 0.4])[1] == pytest.approx(
        (1 - h) * 0.3 * 0.4
    )
    # a candidate with holdout 0.5: given a default first edge, P(held) = 0.5 / (0.5 + 0.5 * 0.3)
    split = (0.5, (1.0, 0.0), (0.3, 0.7))
    conditionals, prefixes = candidate_path([split, split], [0, 0])
    p_held = 0.5 / (0.5 + 0.5 * 0.3)
    assert conditionals[0] == pytest.approx((0.65, 0.35))
    assert conditionals[1] == pytest.approx((p_held + (1 - p_held) * 0.3, (1 - p_held) * 0.7))
    assert prefixes == pytest.approx([0.65, 0.5 + 0.5 * 0.09])


def test_holdouts_come_from_the_snapshot_each_decision_names() -> None:
    h = 0.2
    held = next(f"c{i}" for i in range(100) if holdout_share(f"c{i}") < h)
    free = next(f"c{i}" for i in range(100) if holdout_share(f"c{i}") >= h)
    default = Decision("q1", "go", AB, 0, h + (1 - h) * 0.3, 0, "snap")
    other = Decision("q1", "go", AB, 1, (1 - h) * 0.7, 0, "snap")
    log = [
        trajectory(held, 1.0, default, replace(default, policy_version="snap:killed")),
        trajectory(free, 0.0, other, replace(other, policy_version="uniform-v1")),
        trajectory("x", 0.0, replace(other, policy_version="gone")),
    ]
    out = with_holdouts(log, {"snap": h})
    assert [d.holdout for t in out.trajectories for d in t.decisions] == [h, 0, h, 0, 0]
    assert out.unknown_versions == ("gone",) and out.unknown_decisions == 1
    assert out.decisions == 2 and out.held_out == 1
    with pytest.raises(LogError, match="held out, yet it took 'b'"):
        with_holdouts([trajectory(held, 0.0, other)], {"snap": h})
    with pytest.raises(LogError, match="not a mixture with that holdout"):
        with_holdouts([trajectory(free, 0.0, replace(default, propensity=0.1))], {"snap": h})


# -- clipped DR and the effective sample size floor --------------------------------


# The default edge logged with probability 0.05 a few times, never with a lead, while
# the model (cross-fitted) expects leads after it: DR = V + 20 (0 - Q) per such
# conversation, far below 0 (a DR of -52.7% with an ESS of 2.2 was printed once).
HEAVY = tuple(
    trajectory(f"h{i}", 0.0 if i < 3 else 1.0, decision(0 if i < 3 else 1, 0.05 if i < 3 else 0.95))
    for i in range(12)
) + tuple(trajectory(f"m{i}", 1.0, decision(0, 0.05, node="q9")) for i in range(12))


def test_dr_with_few_heavy_weights_is_refused_not_printed() -> None:
    """Regression: DR printed a lead rate of -52.7% with an effective sample size of
    2.2. Below the floor (MIN_ESS, 50) there is no estimate, and the reason says so."""
    ev = evaluate(HEAVY[:12], FixedCandidate(), clip=math.inf)
    assert ev.ess < 5
    raw = summarize(terms(HEAVY[:12], FixedCandidate(), clip=math.inf), "default", clip=False)
    assert raw.estimate("dr", decided=True).value < 0.0  # what was printed
    reason = refusal(ev)
    assert reason is not None and "below the floor of 50" in reason and "3.0 of 12" in reason
    assert refusal(ev, min_ess=2.0) is None
    text = render_refusal(ev, Scope("quiz", (1,), 40, 0, 0, 0, 0), reason)
    assert "no estimate" in text and "DR" not in text and "logging policy" in text


def test_clipped_dr_bounds_every_cumulative_weight() -> None:
    """D_1 = sum_t [w_<t V_t - w_<=t Q_t] + w_<=T r, each w clipped at ``clip``."""
    t = trajectory("w", 1.0, decision(1, 0.1), decision(0, 0.1, node="q2"))
    new = [(0.0, 1.0), (1.0, 0.0)]  # weights 10, then 100
    q = [(0.2, 0.6), (0.1, 0.4)]
    value, slope, clipped_ = clipped_dr(t, new, q, clip=20.0)
    assert value == pytest.approx(1 * 0.6 - 10 * 0.6 + 10 * 0.1 - 20 * 0.1 + 20 * 1.0)
    assert slope == 20.0 and clipped_
    assert clipped_dr(t, new, q)[0] == pytest.approx(dr_term(t, new, q))  # no clip: exact
    unclipped = clipped_dr(t, new, q, clip=1000.0)
    assert unclipped[0] == pytest.approx(dr_term(t, new, q)) and not unclipped[2]


def test_dr_clipping_and_interval_clipping_are_reported() -> None:
    ev = evaluate(HEAVY, FixedCandidate(), clip=5.0)
    assert ev.dr_clip == 5.0 and ev.dr_clipped == 15
    assert any(
        "DR clipped the importance weight of 15 conversations at 5" in w for w in ev.warnings
    )
    data = to_dict(ev, Scope("quiz", (1,), 40, 0, 0, 0, 0))
    assert data["dr_clip"] == 5.0 and data["dr_clipped"] == 15
    for e in ev.estimates + ev.decided:
        assert 0.0 <= e.low <= e.value <= e.high <= 1.0
    assert ev.clipped and any(w.startswith("intervals clipped to [0%, 100%]") for w in ev.warnings)


# -- the fold -----------------------------------------------------------------------


T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z, a Thursday
CONTEXT = VisitorContext(device="mobile", utm_source="google", locale="en-GB", time_zone="UTC")


def started(cid: str, at: float = T0, flow_version: int = 1) -> ConversationStarted:
    return ConversationStarted(
        conversation_id=cid,
        seq=1,
        id=f"{cid}/1",
        at=at,
        command_seq=1,
        flow_id="quiz",
        flow_version=flow_version,
        site_id="demo",
        context=CONTEXT,
    )


def chosen(
    cid: str,
    seq: int,
    at: float,
    edge: str = "a",
    propensity: float = 0.5,
    features: tuple[str, ...] = (),
) -> EdgeChosen:
    return EdgeChosen(
        conversation_id=cid,
        seq=seq,
        id=f"{cid}/{seq}",
        at=at,
        command_seq=seq,
        node_id="q1",
        button_id="go",
        candidates=AB,
        chosen=edge,
        propensity=propensity,
        policy_version="v",
        seed=1,
        features=features,
    )


def lead(cid: str, seq: int, at: float) -> LeadCaptured:
    return LeadCaptured(
        conversation_id=cid,
        seq=seq,
        id=f"{cid}/{seq}",
        at=at,
        command_seq=seq,
        node_id="form",
        site_id="demo",
        fields_present=("email",),
        consent=True,
        sealed="x",
    )


def completed(cid: str, seq: int, at: float) -> ConversationCompleted:
    return ConversationCompleted(
        conversation_id=cid,
        seq=seq,
        id=f"{cid}/{seq}",
        at=at,
        command_seq=seq,
        node_id="end",
        lead_captured=False,
    )


def test_the_fold_settles_rewards_as_the_reward_ledger_does() -> None:
    horizon = 3600.0
    events: list[Event] = [
        started("won"),
        chosen("won", 2, T0 + 10),
        lead("won", 3, T0 + 20),
        chosen("won", 4, T0 + 30),  # after the lead: not counted
        started("late"),
        chosen("late", 2, T0 + 10),
        lead("late", 3, T0 + horizon + 1),  # after the horizon: a failure
        started("ended"),
        completed("ended", 2, T0 + 5),
        started("open", at=T0 + 9000),
        chosen("open", 2, T0 + 9010),
        ButtonPressed(
            conversation_id="orphan",
            seq=4,
            id="o/4",
            at=T0,
            command_seq=4,
            node_id="q",
            button_id="b",
        ),
    ]
    result = fold(events, horizon_seconds=horizon, as_of=T0 + 9100)
    by_id = {t.conversation_id: t for t in result.trajectories}
    assert set(by_id) == {"won", "late", "ended"}
    assert by_id["won"].reward == 1.0 and len(by_id["won"].decisions) == 1
    assert by_id["late"].reward == 0.0
    assert by_id["ended"].reward == 0.0 and by_id["ended"].decisions == ()
    assert result.open == 1 and result.without_start == 1 and result.late_decisions == 1
    assert result.events == len(events)


def test_open_conversations_are_left_out_whether_or_not_they_have_a_lead() -> None:
    """Regression: a range ending "now" kept the recent conversations that had
    captured a lead (or completed) and left out those still without one, so the
    recent ones kept were mostly leads (2 to 5 points too high). A conversation
    counts once its reward window closed, whatever it did so far."""
    horizon = 3600.0
    now = T0 + 10_000
    events: list[Event] = [
        started("old-lead", at=T0),
        chosen("old-lead", 2, T0 + 10),
        lead("old-lead", 3, T0 + 20),
        started("old-none", at=T0),
        chosen("old-none", 2, T0 + 10),
        started("new-lead", at=now - 100),
        chosen("new-lead", 2, now - 90),
        lead("new-lead", 3, now - 80),
        started("new-done", at=now - 100),
        chosen("new-done", 2, now - 90),
        completed("new-done", 3, now - 80),
        started("new-none", at=now - 100),
        chosen("new-none", 2, now - 90),
    ]
    result = fold(events, horizon_seconds=horizon, as_of=now)
    assert {t.conversation_id for t in result.trajectories} == {"old-lead", "old-none"}
    assert result.open == 3 and result.open_with_lead == 1
    rates = [t.reward for t in result.trajectories]
    assert sum(rates) / len(rates) == 0.5  # the old rule kept new-lead and new-done: 2/4
    # the window closes on the start time alone: an hour later all count
    assert len(fold(events, horizon_seconds=horizon, as_of=now + horizon).trajectories) == 5


def test_a_decisions_cell_is_the_logged_one_else_the_context_at_the_decision() -> None:
    night, evening = T0 + 3600.0, T0 + 19 * 3600.0
    logged = CELL_LABELS[7]
    events: list[Event] = [
        started("c", at=night),
        chosen("c", 2, night + 5, features=logged),
        chosen("c", 3, evening, edge="b"),  # the uniform policy logs no features
    ]
    (t,) = fold(events, as_of=night + 10 * 86400).trajectories
    assert t.decisions[0].cell == 7
    assert t.decisions[1].cell == cell_index(CONTEXT, evening)
    assert t.decisions[1].cell != cell_index(CONTEXT, night)  # not the start's hour
    assert t.decisions[1].chosen == 1


@pytest.mark.parametrize("propensity", [0.0, -0.1, 1.5, math.nan])
def test_a_propensity_outside_0_1_is_an_error_naming_the_decision(propensity: float) -> None:
    events: list[Event] = [started("c"), chosen("c", 2, T0 + 1, propensity=propensity)]
    with pytest.raises(LogError, match=r"conversation c \(seq 2\) at q1/go: logged propensity"):
        fold(events)


def test_a_chosen_edge_that_is_not_a_candidate_is_an_error() -> None:
    events: list[Event] = [started("c"), chosen("c", 2, T0 + 1, edge="zz")]
    with pytest.raises(LogError, match="'zz' is not a candidate"):
        fold(events)


# -- the report ---------------------------------------------------------------------


def test_report_json_and_text() -> None:
    ev = evaluate(EXAMPLE, FixedCandidate())
    scope = Scope("quiz", (1,), 40, open=2, other_version=3, without_start=0, late_decisions=0)
    data = to_dict(ev, scope)
    assert data["conversations"] == 4 and data["left_out"]["open"] == 2
    assert [e["estimator"] for e in data["estimates"]] == ["logged", "ips", "snips", "dr"]
    text = render(ev, scope)
    for part in ("logging policy", "IPS", "SNIPS", "DR", "95% interval", "warning:", "left out: 3"):
        assert part in text


def test_the_ratio_interval_with_weights_of_one_is_the_normal_interval() -> None:
    """With every weight 1 (on-policy), Fieller's interval for E[w r] / E[w] is the
    mean's normal interval."""
    r = np.array([1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0])
    z = 1.645
    low, high = ratio_interval(np.ones_like(r), r, z)
    half = z * float(np.std(r, ddof=1)) / math.sqrt(len(r))
    assert (low, high) == pytest.approx((0.4 - half, 0.4 + half))


def test_the_ratio_interval_reaches_above_an_ips_pulled_down_by_missed_weights() -> None:
    """A sample in which the heavily weighted conversations are missing (mean weight
    0.6 where the expectation is 1): IPS is pulled down to 0.12, the ratio to 0.2,
    and the interval IPS reports reaches past both (the union with the ratio's)."""
    w = np.array([0.6] * 100)
    r = np.array([1.0] * 20 + [0.0] * 80)
    ips = float((w * r).mean())
    z = NormalDist().inv_cdf(0.95)
    low, high = ratio_interval(w, r, z, np.full_like(r, 0.2))
    assert ips == pytest.approx(0.12)
    assert low < 0.2 < high and high > 0.25
    t = Terms(
        reward=r,
        weight=w,
        dr=w * r,
        expected=np.full_like(r, 0.2),
        decided=np.ones(len(r), dtype=bool),
        decisions=len(r),
        zero_support=0,
    )
    (reported,) = [e for e in estimates(t, 0.9) if e.estimator == "ips"]
    assert reported.value == pytest.approx(ips)
    assert reported.low <= low and reported.high >= high


def test_the_model_assisted_ratio_interval_is_never_narrower() -> None:
    rng = np.random.default_rng(3)
    w = rng.exponential(1.0, 400)
    r = (rng.random(400) < 0.2).astype(float)
    plain = ratio_interval(w, r, 1.645)
    assisted = ratio_interval(w, r, 1.645, np.full(400, 0.3))
    assert assisted[0] <= plain[0] and assisted[1] >= plain[1]
    assert assisted != plain

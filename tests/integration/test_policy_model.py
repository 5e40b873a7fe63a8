"""The PyMC model of edge selection and the conjugate updates between fits.

Real NUTS fits (``policy.model.fit_flow``, PyMC compiled by PyTensor) on
synthetic counts of the solar-quote flow whose true best edge at every decision
point is known (a logit gap of 0.8, the same in every context cell). One fit
with the production settings is shared by the module (about 15 s; the first
run on a machine also compiles PyTensor's C code, about 25 s more).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from policy.conjugate import update_snapshot
from policy.features import CELLS, FEATURE_NAMES, features
from policy.model import MAX_RHAT, MIN_ESS, FitResult, fit_flow
from policy.reward_counts import FlowCounts, OutcomeKey, Tally
from policy.snapshot import Guardrails, PolicySnapshot, decode_snapshot, encode_snapshot
from policy.thompson import ThompsonPolicy, check_snapshot
from policy.winners import win_shares
from schemas.flow import Flow
from services.catalog import EXAMPLE_FLOWS_DIR, FlowCatalog

FLOW_ID = "solar-quote"
SEED = 7
GAP = 0.8  # logit: the true best edge over the others
Point = tuple[str, str]


def solar() -> Flow:
    flow = FlowCatalog.from_directory(EXAMPLE_FLOWS_DIR).latest(FLOW_ID)
    assert flow is not None
    return flow


def flow_points(flow: Flow) -> dict[Point, tuple[str, ...]]:
    points = {}
    for node_id, button_id in flow.decision_points():
        button = flow.node(node_id).button(button_id)
        assert button is not None
        points[(node_id, button_id)] = button.next
    return points


def traffic() -> np.ndarray[Any, np.dtype[np.float64]]:
    """A skewed traffic mix over the cells (most visitors in few cells)."""
    rng = np.random.default_rng(1)
    weights = rng.gamma(0.5, 1.0, len(CELLS))
    mix: np.ndarray[Any, np.dtype[np.float64]] = weights / weights.sum()
    return mix


def truth(points: Mapping[Point, tuple[str, ...]]) -> dict[Point, int]:
    """The index of the true best candidate of each point (alternating)."""
    return {key: i % len(c) for i, (key, c) in enumerate(sorted(points.items()))}


def synthetic_counts(
    points: Mapping[Point, tuple[str, ...]],
    best: Mapping[Point, int],
    per_point: int,
    seed: int,
    skip: Point | None = None,
) -> FlowCounts:
    """``per_point`` decisions at every point (none at ``skip``), candidates taken
    uniformly; P(lead) = sigmoid(-1.5 + GAP [best edge] + shared context effects)."""
    rng = np.random.default_rng(seed)
    context = np.random.default_rng(2).normal(0.0, 0.4, len(FEATURE_NAMES))
    x = np.array([features(c) for c in CELLS])
    mix = traffic()
    counts = FlowCounts(candidates=dict(points), conversations=per_point)
    for key, candidates in points.items():
        if key == skip:
            continue
        per_cell = rng.multinomial(per_point, mix)
        for c in np.flatnonzero(per_cell):
            split = rng.multinomial(per_cell[c], np.full(len(candidates), 1.0 / len(candidates)))
            for e, edge in enumerate(candidates):
                if split[e] == 0:
                    continue
                logit = -1.5 + (GAP if e == best[key] else 0.0) + float(x[c] @ context)
                p = 1.0 / (1.0 + np.exp(-logit))
                counts.tallies[OutcomeKey(key[0], key[1], edge, CELLS[c].key)] = Tally(
                    int(split[e]), int(rng.binomial(split[e], p))
                )
    return counts


@pytest.fixture(scope="module")
def points() -> dict[Point, tuple[str, ...]]:
    return flow_points(solar())


@pytest.fixture(scope="module")
def unseen(points: Mapping[Point, tuple[str, ...]]) -> Point:
    """A decision point the counts know (its candidates) but have no outcome for."""
    return sorted(points)[-1]


@pytest.fixture(scope="module")
def counts(points: Mapping[Point, tuple[str, ...]], unseen: Point) -> FlowCounts:
    return synthetic_counts(points, truth(points), per_point=6_000, seed=SEED, skip=unseen)


@pytest.fixture(scope="module")
def fitted(counts: FlowCounts) -> FitResult:
    return fit_flow(
        FLOW_ID,
        1,
        counts,
        version=f"{FLOW_ID}@1#test",
        seed=SEED,
        guardrails=Guardrails(min_exploration=0.02),
        created_at=1_000.0,
    )


@pytest.fixture(scope="module")
def snapshot(fitted: FitResult) -> PolicySnapshot:
    assert fitted.snapshot is not None, (fitted.reason, fitted.diagnostics)
    return fitted.snapshot


def common_cells(n: int = 3) -> list[int]:
    return [int(i) for i in np.argsort(-traffic())[:n]]


def test_fit_publishes_a_snapshot_that_ranks_the_true_best_edge_first(
    fitted: FitResult,
    snapshot: PolicySnapshot,
    points: Mapping[Point, tuple[str, ...]],
    unseen: Point,
) -> None:
    assert fitted.reason is None
    assert (snapshot.flow_id, snapshot.flow_version) == (FLOW_ID, 1)
    assert snapshot.version == f"{FLOW_ID}@1#test"
    assert snapshot.guardrails == Guardrails(min_exploration=0.02)
    assert set(snapshot.points) == set(points)
    check_snapshot(snapshot, points)
    best = truth(points)
    for key, posterior in snapshot.points.items():
        assert posterior.base.shape == (200, len(points[key]))
        assert posterior.slopes.shape == (200, len(points[key]), len(FEATURE_NAMES))
        if key == unseen:
            continue
        for cell in common_cells():
            shares = win_shares(posterior, features(CELLS[cell]))
            assert int(np.argmax(shares)) == best[key], (key, CELLS[cell], shares)
            assert shares[best[key]] >= 0.9, (key, CELLS[cell], shares)


def test_a_point_without_outcomes_gets_prior_draws_that_explore(
    snapshot: PolicySnapshot, unseen: Point
) -> None:
    posterior = snapshot.points[unseen]
    shares = win_shares(posterior, features(CELLS[common_cells(1)[0]]))
    assert shares.min() >= 0.1 and shares.max() <= 0.9, shares
    assert float(posterior.base.std(axis=0).min()) > 0.05  # draws, not a point estimate


def test_the_fit_reports_its_diagnostics(
    fitted: FitResult, snapshot: PolicySnapshot, counts: FlowCounts
) -> None:
    d = fitted.diagnostics
    print({k: d[k] for k in ("rhat_max", "ess_bulk_min", "divergences", "fit_seconds")})
    assert d["source"] == "fit"
    assert d["rhat_max"] <= MAX_RHAT == d["max_rhat"]
    assert d["ess_bulk_min"] >= MIN_ESS == d["min_ess_bulk"]
    assert d["divergences"] == 0
    assert d["fit_seconds"] > 0 and d["sampling_seconds"] > 0 and d["setup_seconds"] > 0
    assert d["trials"] == counts.trials()
    assert d["successes"] == sum(t.successes for t in counts.tallies.values())
    assert d["rows"] == len(counts.tallies)
    assert 0 < d["cells"] <= len(CELLS)
    assert d["points"] == len(counts.candidates)
    assert d["snapshot_draws"] == 200
    assert snapshot.diagnostics["rhat_max"] == d["rhat_max"]


def test_the_snapshot_round_trips_under_a_megabyte_and_installs(
    snapshot: PolicySnapshot, points: Mapping[Point, tuple[str, ...]]
) -> None:
    data = encode_snapshot(snapshot)
    assert len(data) < 1_000_000, len(data)
    decoded = decode_snapshot(data)
    assert decoded.version == snapshot.version
    assert decoded.guardrails == snapshot.guardrails
    assert dict(decoded.diagnostics) == dict(snapshot.diagnostics)
    for key, posterior in snapshot.points.items():
        assert decoded.points[key].candidates == posterior.candidates
        np.testing.assert_array_equal(decoded.points[key].base, posterior.base)
        np.testing.assert_array_equal(decoded.points[key].slopes, posterior.slopes)
    policy = ThompsonPolicy()
    assert policy.install(decoded)


def test_a_fit_without_the_budget_to_converge_is_refused(counts: FlowCounts) -> None:
    def tiny() -> FitResult:
        return fit_flow(FLOW_ID, 1, counts, version="tiny", seed=3, draws=15, tune=15)

    result = tiny()
    assert result.snapshot is None
    assert result.reason is not None and result.reason.startswith("not converged"), result.reason
    assert "r-hat" in result.reason or "ESS" in result.reason
    d = result.diagnostics
    assert d["rhat_max"] > MAX_RHAT or d["ess_bulk_min"] < MIN_ESS
    again = tiny()  # seeded: the same sampler run
    timings = ("fit_seconds", "sampling_seconds", "setup_seconds")
    assert {k: v for k, v in again.diagnostics.items() if k not in timings} == {
        k: v for k, v in d.items() if k not in timings
    }


def test_a_fit_without_outcomes_is_refused(points: Mapping[Point, tuple[str, ...]]) -> None:
    result = fit_flow(FLOW_ID, 1, FlowCounts(candidates=dict(points)), version="empty")
    assert result.snapshot is None and result.reason == "no outcomes to fit"


def _average(snapshot: PolicySnapshot, key: Point, edge: int, cell: int) -> float:
    posterior = snapshot.points[key]
    x = features(CELLS[cell]).astype(np.float64)
    logits = posterior.base[:, edge].astype(np.float64) + posterior.slopes[:, edge, :] @ x
    return float(np.mean(1.0 / (1.0 + np.exp(-logits))))


def test_conjugate_update_moves_the_base_towards_new_evidence(
    snapshot: PolicySnapshot, points: Mapping[Point, tuple[str, ...]], unseen: Point
) -> None:
    key = next(k for k in sorted(points) if k != unseen)
    loser = 1 - truth(points)[key]
    edge = points[key][loser]
    cell = common_cells(1)[0]
    since = FlowCounts(candidates=dict(points))
    since.tallies[OutcomeKey(key[0], key[1], edge, CELLS[cell].key)] = Tally(6_000, 4_800)
    before = _average(snapshot, key, loser, cell)
    updated = update_snapshot(snapshot, since, f"{snapshot.version}.1", 2_000.0)
    after = _average(updated, key, loser, cell)
    report = updated.diagnostics["updated_edges"][f"{key[0]}/{key[1]}/{edge}"]
    print(before, after, report)
    assert report["trials"] == 6_000 and report["successes"] == 4_800
    assert report["prior_mean"] == pytest.approx(before, abs=1e-4)
    # the Beta posterior's mean, between the fit's belief and the evidence (0.8)
    assert before < report["posterior_mean"] < 0.8
    assert 0.8 - report["posterior_mean"] < 0.5 * (0.8 - before)
    assert after == pytest.approx(report["posterior_mean"], abs=0.01)
    assert updated.version == f"{snapshot.version}.1" and updated.created_at == 2_000.0
    assert updated.diagnostics["source"] == "conjugate"
    assert updated.diagnostics["fit_version"] == snapshot.version
    assert updated.diagnostics["since_trials"] == 6_000
    assert updated.guardrails == snapshot.guardrails
    new, old = updated.points[key], snapshot.points[key]
    np.testing.assert_array_equal(new.slopes, old.slopes)  # context structure kept
    np.testing.assert_array_equal(new.base[:, 1 - loser], old.base[:, 1 - loser])
    assert float(new.base[:, loser].mean()) > float(old.base[:, loser].mean()) + 0.5
    shares_old = win_shares(old, features(CELLS[cell]))
    shares_new = win_shares(new, features(CELLS[cell]))
    assert shares_new[loser] > 0.9 > shares_old[loser], (shares_old, shares_new)
    for other in points:
        if other != key:
            assert updated.points[other] is snapshot.points[other]
    decode_snapshot(encode_snapshot(updated))


def test_conjugate_update_is_deterministic_and_keeps_an_untouched_snapshot(
    snapshot: PolicySnapshot, counts: FlowCounts, points: Mapping[Point, tuple[str, ...]]
) -> None:
    since = synthetic_counts(points, truth(points), per_point=500, seed=SEED + 1)

    def arrays(s: PolicySnapshot) -> list[np.ndarray[Any, Any]]:
        return [p.base for p in s.points.values()]

    one = update_snapshot(snapshot, since, "v.1", 1.0)
    two = update_snapshot(snapshot, since, "v.1", 1.0)
    for a, b in zip(arrays(one), arrays(two), strict=True):
        np.testing.assert_array_equal(a, b)
    other = update_snapshot(snapshot, since, "v.1", 1.0, seed=12345)
    assert any(not np.array_equal(a, b) for a, b in zip(arrays(one), arrays(other), strict=True))
    # evidence from the same population keeps the best edges in front, and
    # teaches the point that had no outcomes at the fit which edge is best
    best = truth(points)
    x = features(CELLS[common_cells(1)[0]])
    for key, posterior in one.points.items():
        assert int(np.argmax(win_shares(posterior, x))) == best[key], key
    empty = update_snapshot(snapshot, FlowCounts(candidates=dict(points)), "v.2", 1.0)
    assert all(empty.points[k] is snapshot.points[k] for k in snapshot.points)
    assert empty.diagnostics["since_trials"] == 0

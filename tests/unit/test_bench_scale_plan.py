"""bench.scale's pure parts: where the sockets live, the widget's backoff, the
percentiles and the failover arithmetic (no I/O)."""

from __future__ import annotations

import random

import pytest

from bench.scale import results
from bench.scale.plan import (
    PlanError,
    backoff_s,
    default_gateways,
    default_loadgens,
    gateway_counts,
    interleave,
    percentile,
    plan,
    reconnect_target,
    spread,
)


def test_spread_is_near_equal_and_whole() -> None:
    assert spread(10, 3) == [4, 3, 3]
    assert sum(spread(100_000, 7)) == 100_000
    with pytest.raises(PlanError):
        spread(5, 0)


def test_the_full_run_fits_a_20k_open_files_limit() -> None:
    budget = 20_000 - 1000
    gateways = default_gateways(100_000, budget)
    assert gateways == 7  # 6 would leave 20,000 per survivor after the kill
    layout = plan(100_000, gateways, default_loadgens(100_000, 17_000), budget)
    assert layout.total == 100_000
    assert layout.gateways[layout.victim] == 19_000  # a fifth, capped by the budget
    assert layout.after_kill <= budget
    assert max(sum(row) for row in layout.loadgens) <= budget
    for g in range(gateways):  # every gateway's sockets are split over the load generators
        assert sum(row[g] for row in layout.loadgens) == layout.gateways[g]


def test_a_plan_that_overflows_a_survivor_is_refused() -> None:
    with pytest.raises(PlanError, match="add gateways"):
        gateway_counts(100_000, 6, 19_000)
    with pytest.raises(PlanError, match="load generators"):
        plan(100_000, 7, 2, 19_000)


def test_a_small_run_gives_the_victim_a_fifth() -> None:
    counts = gateway_counts(5000, 3, 19_000)
    assert counts == [1000, 2000, 2000]


def test_interleave_spreads_any_prefix_over_every_gateway() -> None:
    order = interleave([3, 1, 2])
    assert order == [0, 1, 2, 0, 2, 0]
    assert set(interleave([10, 10, 10])[:3]) == {0, 1, 2}


def test_a_reconnect_never_goes_back_to_the_lost_gateway() -> None:
    targets = {reconnect_target(i, a, 7, lost=3) for i in range(20) for a in range(5)}
    assert 3 not in targets
    assert targets == {0, 1, 2, 4, 5, 6}


def test_backoff_is_the_widgets_full_jitter() -> None:
    rng = random.Random(1)
    first = [backoff_s(0, rng) for _ in range(200)]
    assert min(first) >= 0 and max(first) <= 0.5
    late = [backoff_s(12, rng) for _ in range(200)]
    assert max(late) <= 15.0 and max(late) > 7.5


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([], 0.5) is None


def test_failover_times_from_the_kill_to_the_last_resume() -> None:
    answers: list[dict[str, object]] = [
        {"lost_resumed": [(100.0, 101.5), (100.1, 103.0)], "presses_resent": 1},
        {"lost_resumed": [(100.2, 102.0), (50.0, 51.0)]},  # the second: before the kill
    ]
    out = results.failover(answers, killed_at=100.0, expected=3)
    assert out["lost"] == 3 and out["resumed"] == 3 and out["never_resumed"] == 0
    assert out["all_resumed_s"] == 3.0
    assert out["lost_before_kill"] == 1
    assert out["presses_resent"] == 1
    never = results.failover([{"lost_resumed": [(100.0, None)]}], 100.0, 1)
    assert never["all_resumed_s"] is None and never["never_resumed"] == 1


def test_retried_attempts_are_not_errors_but_a_lost_resume_is() -> None:
    answers = [
        {"errors": {"reconnect_attempt_failed:ClientConnectorError": 5, "ack_went_back": 1}},
        {"errors": {"open_attempt_failed:TimeoutError": 2, "error:unavailable": 1}},
    ]
    out = results.errors(answers)
    assert out["errors"] == 2
    assert out["by_kind"] == {"ack_went_back": 1, "error:unavailable": 1}
    assert sum(out["retried_attempts"].values()) == 7


def test_errors_are_counted_in_the_phase_they_happened_in() -> None:
    answers = [
        {
            "errors": {"reply_timeout": 2},
            "error_at": [["reply_timeout", 15.0], ["reply_timeout", 31.0]],
        },
        {"errors": {"wrong_ack": 1}, "error_at": [["wrong_ack", 99.0]]},
    ]
    phases = [("ramp", 0.0, 10.0), ("active", 10.0, 20.0), ("failover", 20.0, 40.0)]
    out = results.errors(answers, phases)
    assert out["by_phase"] == {
        "active": {"reply_timeout": 1},
        "failover": {"reply_timeout": 1},
        "later": {"wrong_ack": 1},
    }
    assert list(out["by_phase"]) == ["active", "failover", "later"]  # the run's order
    assert "by_phase" not in results.errors(answers)


def test_the_load_generators_late_ticks_are_counted_per_phase_with_the_longest() -> None:
    answers = [
        {"loop_lags": [[1.0, 0.3], [21.0, 2.5]]},
        {"loop_lags": [[22.0, 0.4], [50.0, 0.2]]},
        {},  # an answer of an older load generator: nothing recorded
    ]
    phases = [("ramp", 0.0, 10.0), ("active", 10.0, 20.0), ("failover", 20.0, 40.0)]
    assert results.loop_lags(answers, phases) == {
        "ramp": {"late_ticks": 1, "longest_s": 0.3},
        "failover": {"late_ticks": 2, "longest_s": 2.5},
        "later": {"late_ticks": 1, "longest_s": 0.2},
    }
    assert results.loop_lags([{}], phases) == {}


def test_latency_windows_select_by_send_time() -> None:
    samples = [(1.0, 10.0), (2.0, 20.0), (3.0, 30.0)]
    assert results.window(samples, 1.5, 3.0) == [20.0]
    out = results.latencies([{"press": samples}], "press", 0.0, 10.0)
    assert out["count"] == 3 and out["p50_ms"] == 20.0


def test_latencies_per_window_cover_the_phase_and_keep_their_offsets() -> None:
    samples = [(100.0, 5.0), (104.0, 7.0), (111.0, 90.0), (121.0, 3.0)]
    out = results.latencies_by_window([{"press": samples}], "press", 100.0, 125.0)
    assert [w["from_s"] for w in out] == [0.0, 10.0, 20.0]
    assert [w["count"] for w in out] == [2, 1, 1]
    assert out[1]["p99_ms"] == 90.0 and out[0]["max_ms"] == 7.0


def test_a_ramp_still_opening_has_no_duration() -> None:
    done = {"ramp_began": 10.0, "ramp_ended": 30.0, "opened": 100, "ramp_ms": [5.0]}
    assert results.ramp([done])["per_s"] == 5.0
    still = {"ramp_began": 10.0, "ramp_ended": 0.0, "opened": 40, "ramp_ms": []}
    out = results.ramp([done, still])
    assert out["complete"] is False and out["seconds"] is None and out["opened"] == 140

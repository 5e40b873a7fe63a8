"""The mirror benchmark's pure part: the send schedule and the record numbering."""

from __future__ import annotations

from bench.mirror.core import lags_ns, record_number, record_value, schedule


def test_the_schedule_sends_the_rate_evenly_and_exactly() -> None:
    plan = schedule(500.0, 30.0)
    assert sum(count for _, count in plan) == 15_000
    assert {count for _, count in plan} == {5}  # 5 records every 10 ms
    assert plan[0][0] == 0.0 and abs(plan[-1][0] - 29.99) < 1e-9
    uneven = schedule(333.0, 1.0)
    assert sum(count for _, count in uneven) == 333
    assert max(c for _, c in uneven) - min(c for _, c in uneven) <= 1


def test_a_record_carries_its_number_and_has_the_asked_size() -> None:
    value = record_value(123_456_789, 400)
    assert len(value) == 400 and record_number(value) == 123_456_789
    assert record_number(record_value(7, 4)) == 7  # never shorter than its number


def test_lags_count_only_records_seen_after_an_acknowledgement() -> None:
    assert lags_ns({1: 100, 2: 200}, {1: 150, 3: 999}) == [50]

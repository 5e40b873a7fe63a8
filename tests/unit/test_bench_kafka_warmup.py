"""The Kafka benchmark's warm-up ends when the broker's CPU per command stopped falling."""

from __future__ import annotations

from bench.kafka.config import WARMUP_MIN_ROUNDS, settled


def test_a_warm_up_runs_its_minimum_rounds_even_when_flat() -> None:
    assert not settled([1.0] * (WARMUP_MIN_ROUNDS - 1))
    assert settled([1.0] * WARMUP_MIN_ROUNDS)


def test_a_broker_whose_cpu_keeps_falling_is_not_settled() -> None:
    falling = [3.6, 3.1, 2.6, 2.1, 1.7, 1.4]  # about 15-20% less each round
    assert not any(settled(falling[: n + 1]) for n in range(len(falling)))


def test_a_round_no_lower_than_the_earlier_low_settles_it() -> None:
    assert settled([3.6, 1.2, 0.9, 0.85])  # within 10% of the low
    assert settled([3.6, 0.9, 1.0])  # noise upwards


def test_a_round_without_a_measure_does_not_settle() -> None:
    assert not settled([3.6, 1.0, None])
    assert not settled([None, 1.0, 1.0])

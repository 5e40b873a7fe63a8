"""The processor's stall watch: out of service while its dependencies answer, for too long.

The watch behind /healthz, served by a test server (a socket), is in
tests/integration/test_processor_probes.py."""

from __future__ import annotations

import pytest

from services.processor.stall import StallWatch, WorkerView, stall_seconds_from_env

SERVING = WorkerView(started=True, rebalancing=False, recovering=False, assigned=4)
UNASSIGNED = WorkerView(started=True, rebalancing=False, recovering=False, assigned=0)
REBALANCING = WorkerView(started=True, rebalancing=True, recovering=False, assigned=4)
RECOVERING = WorkerView(started=False, rebalancing=True, recovering=True, assigned=4)
JOINING = WorkerView(started=False, rebalancing=False, recovering=False, assigned=0)
STUCK = WorkerView(started=True, rebalancing=False, recovering=False, assigned=4, stuck=True)


@pytest.mark.parametrize("view", [UNASSIGNED, REBALANCING, JOINING, STUCK])
def test_a_spell_out_of_service_while_kafka_answers_fires_at_the_limit(view: WorkerView) -> None:
    watch = StallWatch(60.0)
    assert not watch.observe(0.0, view, dependencies_answer=True)
    assert not watch.observe(59.0, view, dependencies_answer=True)
    assert watch.observe(60.0, view, dependencies_answer=True)
    assert watch.stalled_for(75.0) == 75.0


def test_serving_and_recovering_are_progress() -> None:
    watch = StallWatch(60.0)
    for t in range(0, 600, 5):
        assert not watch.observe(
            float(t), SERVING if t % 2 else RECOVERING, dependencies_answer=True
        )
    assert watch.stalled_for(600.0) == 0.0


def test_progress_starts_the_count_again() -> None:
    watch = StallWatch(60.0)
    watch.observe(0.0, REBALANCING, dependencies_answer=True)
    watch.observe(50.0, SERVING, dependencies_answer=True)
    assert not watch.observe(100.0, REBALANCING, dependencies_answer=True)
    assert not watch.observe(159.0, REBALANCING, dependencies_answer=True)
    assert watch.observe(160.0, REBALANCING, dependencies_answer=True)


def test_a_kafka_outage_explains_the_wait() -> None:
    watch = StallWatch(60.0)
    watch.observe(0.0, UNASSIGNED, dependencies_answer=True)
    assert not watch.observe(55.0, UNASSIGNED, dependencies_answer=False)
    assert not watch.observe(100.0, UNASSIGNED, dependencies_answer=True)  # counts from here
    assert watch.observe(160.0, UNASSIGNED, dependencies_answer=True)


def test_a_partition_failing_while_every_dependency_answers_is_a_stall() -> None:
    """Batches that keep failing with Kafka and Redis both up: a new process may
    do better; during a Redis outage the same failures are no stall."""
    watch = StallWatch(60.0)
    assert not watch.observe(0.0, STUCK, dependencies_answer=False)  # Redis away
    assert not watch.observe(500.0, STUCK, dependencies_answer=False)
    assert not watch.observe(510.0, STUCK, dependencies_answer=True)
    assert watch.observe(570.0, STUCK, dependencies_answer=True)


def test_a_limit_of_zero_turns_the_watch_off() -> None:
    watch = StallWatch(0.0)
    assert not any(watch.observe(float(t), UNASSIGNED, True) for t in range(0, 10_000, 100))


@pytest.mark.parametrize(
    ("raw", "expected"), [(None, 120.0), ("0", 0.0), ("30", 30.0), ("2.5", 2.5)]
)
def test_the_limit_comes_from_the_environment(raw: str | None, expected: float) -> None:
    env = {} if raw is None else {"LEADFLOW_PROCESSOR_STALL_SECONDS": raw}
    assert stall_seconds_from_env(env) == expected


@pytest.mark.parametrize("raw", ["soon", "-1", "inf", "nan"])
def test_a_bad_limit_is_refused_naming_the_variable(raw: str) -> None:
    with pytest.raises(ValueError, match="LEADFLOW_PROCESSOR_STALL_SECONDS"):
        stall_seconds_from_env({"LEADFLOW_PROCESSOR_STALL_SECONDS": raw})

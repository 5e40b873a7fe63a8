"""The capacity model (bench/capacity.py): fits, sizing rules and partition choice."""

from __future__ import annotations

import math

import pytest

from bench.capacity import Limits, Line, Load, UnitCosts, fit, partitions_for, plan, unit_costs


def test_a_line_through_exact_points_is_recovered() -> None:
    line = fit([(100.0, 0.3 + 0.0002 * 100), (1000.0, 0.3 + 0.0002 * 1000), (2000.0, 0.7)])
    assert line.fixed == pytest.approx(0.3)
    assert line.per_command == pytest.approx(0.0002)
    assert line.capacity(0.5) == pytest.approx(1000.0)


def test_a_cost_that_falls_with_load_is_charged_its_worst_rest_and_best_marginal() -> None:
    line = fit([(300.0, 0.9), (1000.0, 0.6), (2000.0, 0.3)])
    assert line == Line(0.9, 0.3 / 2000.0)


def test_one_run_is_all_marginal_cost_and_no_runs_is_an_error() -> None:
    assert fit([(500.0, 0.5)]) == Line(0.0, 0.001)
    with pytest.raises(ValueError, match="no runs"):
        fit([])
    assert Line(0.1, 0.0).capacity(0.5) == math.inf


COSTS = UnitCosts(
    gateway=Line(0.2, 0.0002),
    processor=Line(0.4, 0.0001),
    broker=Line(0.5, 0.0001),
    records_per_command=4.0,
    socket_kib=22.0,
    start_cpu_ms=1.0,
    idle_cores_per_10k=0.0,
    source="test",
)


def test_gateways_are_the_larger_of_the_memory_and_the_cpu_need() -> None:
    limits = Limits(sockets_per_gateway=10_000)
    by_memory = plan(Load(95_000, 100.0, 10.0), COSTS, limits)
    assert (by_memory.gateways, by_memory.gateways_by_memory) == (10, 10)
    # 0.0002 x 4,000 + 0.001 x 400 = 1.2 cores over a 0.6 - 0.2 budget: 3 by CPU
    by_cpu = plan(Load(1_000, 3_600.0, 400.0), COSTS, limits)
    assert (by_cpu.gateways_by_cpu, by_cpu.gateways) == (3, 3)
    assert plan(Load(10, 1.0, 1.0), COSTS, limits).gateways == limits.min_gateways


def test_processors_brokers_and_records_follow_the_command_rate() -> None:
    p = plan(Load(10_000, 4_500.0, 500.0), COSTS, Limits())
    assert p.processors == math.ceil(5_000 / ((0.6 - 0.4) / 0.0001))  # 3
    assert p.brokers == max(3, math.ceil((0.5 + 0.5) * 3 / (2.0 * 0.6)))
    assert p.kafka_records_per_s == 20_000
    assert p.gateway_memory_gib == pytest.approx(10_000 * 22 / 2**20)


def test_partitions_leave_room_to_double_and_divide_evenly() -> None:
    assert partitions_for(5) == 12
    assert partitions_for(6) == 12
    assert partitions_for(7) == 24
    assert partitions_for(100) == 200


def test_unit_costs_are_read_from_a_kafka_bench_run() -> None:
    runs = [
        {"commands_per_s": 300, "cpu_cores": {"processor": 0.43, "broker": 0.9, "gateway-0": 0.3}},
        {"commands_per_s": 1300, "cpu_cores": {"processor": 0.53, "broker": 0.6, "gateway-0": 0.5}},
    ]
    records = {"commands": 100, "events": 120, "replies": 100, "raw": 999}
    costs = unit_costs({"leadflow": runs, "topic_records": records}, None)
    assert costs.processor.per_command == pytest.approx(0.0001)
    assert costs.gateway.per_command == pytest.approx(0.0002)
    assert costs.records_per_command == pytest.approx(3.2)  # the baseline's topic is not ours
    assert costs.socket_kib == 22.0
    with_sockets = unit_costs({"leadflow": runs}, {"unit_costs": {"socket_kib": 18.5}})
    assert with_sockets.socket_kib == 18.5

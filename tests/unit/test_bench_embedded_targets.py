"""bench.embedded's issue-17 targets: throughput of one process and storage bytes
per command, with the CPU per command that explains a miss."""

from __future__ import annotations

from typing import Any

from bench.embedded.targets import evaluate_capacity_targets


def phase(judged: bool, **leadflow: Any) -> dict[str, Any]:
    base = {"conversations_started": 100, "presses": 700, "leads": 100, "presses_per_s": 800.0}
    return {"judged": judged, "leadflow": {**base, **leadflow}}


def test_throughput_and_bytes_per_command_are_judged_with_their_cost() -> None:
    phases = {
        "human": phase(True, server_io_mb={"write_bytes": 9.216}),  # 9,000 KiB over 900
        "saturated": phase(
            False, presses_per_s=2600.0, cpu={"server_s": 0.45, "server_cores": 0.9}
        ),
    }
    throughput, storage = evaluate_capacity_targets(phases)
    assert throughput["pass"] is True and throughput["measured"] == 2600.0
    assert throughput["server_cpu_ms_per_command"] == 0.5  # 450 ms over 900 commands
    # one core: 2,000 commands/s, 9 commands for 8 presses and leads: 1,777.8 presses/s
    assert throughput["presses_per_s_at_one_core"] == 1777.8
    assert storage["measured"] == 10.0 and storage["pass"] is True


def test_a_run_without_the_phases_or_io_counters_judges_nothing() -> None:
    assert evaluate_capacity_targets({}) == []
    (storage,) = evaluate_capacity_targets({"human": phase(True)})
    assert storage["measured"] is None and storage["pass"] is None

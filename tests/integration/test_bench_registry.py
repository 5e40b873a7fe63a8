"""The registry benchmark's pure helpers: the greeting marker rewrite, partition
attribution (as Kafka's default partitioner), coverage and its percentiles."""

from __future__ import annotations

import uuid

import pytest

from bench.registry.core import (
    GREETING_LINE,
    Start,
    all_covered,
    assigned_partitions,
    coverage,
    covered,
    greeting_marker,
    marker,
    murmur2,
    nearest_rank,
    owners,
    partition_of,
    since,
    stats_s,
    verdict,
    with_greeting,
)
from schemas.flow_validation import validate_text
from services.catalog import EXAMPLE_FLOWS_DIR

SOLAR = (EXAMPLE_FLOWS_DIR / "solar-quote.yaml").read_text()


def test_the_marker_becomes_the_greetings_first_word_and_the_flow_stays_valid() -> None:
    mark = marker("ab12cd", 7)
    assert mark == "rb-ab12cd-007"
    rewritten = with_greeting(SOLAR, mark)
    assert GREETING_LINE not in rewritten and rewritten.count(mark) == 1
    flow, errors = validate_text(rewritten, "solar-quote.yaml")
    assert errors == [] and flow is not None
    welcome = flow.node("welcome")
    assert welcome.text.startswith(f"{mark} It takes about a minute")
    assert greeting_marker(welcome.text) == mark
    assert greeting_marker(GREETING_LINE) == "Hi!"  # what the seeded version greets with


def test_markers_are_distinct_and_none_is_a_prefix_of_another() -> None:
    marks = [marker("run", i) for i in range(200)]
    assert len(set(marks)) == 200
    assert not any(a != b and b.startswith(a) for a in marks for b in marks)


def test_the_rewrite_refuses_a_document_without_the_greeting_or_a_multi_word_marker() -> None:
    with pytest.raises(ValueError, match="greeting"):
        with_greeting("id: other\n", "rb-x-000")
    with pytest.raises(ValueError, match="one non-empty word"):
        with_greeting(SOLAR, "two words")


# Kafka's own vectors (UtilsTest.testMurmur2, signed there), which aiokafka's
# DefaultPartitioner reproduces
KAFKA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


def test_murmur2_is_kafkas() -> None:
    for data, signed in KAFKA_MURMUR2.items():
        assert murmur2(data) == signed & 0xFFFFFFFF, data


def test_partition_of_is_the_default_partitioners_choice() -> None:
    assert partition_of("foobar", 4) == (-790332482 & 0x7FFFFFFF) % 4 == 2
    assert partition_of("21", 2) == (-973932308 & 0x7FFFFFFF) % 2
    assert partition_of("abc", 1) == 0
    assert {partition_of(uuid.uuid4().hex, 2) for _ in range(100)} == {0, 1}
    with pytest.raises(ValueError, match="partitions"):
        partition_of("x", 0)


def test_assignments_are_read_from_the_processors_json_log_lines() -> None:
    log = "\n".join(
        [
            '{"level": "info", "msg": "partitions assigned", "partitions": [0, 1]}',
            "not json, partitions assigned",
            '{"level": "info", "msg": "partitions revoked", "partitions": [0, 1]}',
            '{"level": "info", "msg": "partitions assigned", "partitions": [1]}',
        ]
    )
    assert assigned_partitions(log) == [[0, 1], [1]]
    assert owners({"p0": [0], "p1": [1]}, 2) == {0: "p0", 1: "p1"}
    with pytest.raises(ValueError, match="without an owner"):
        owners({"p0": [0], "p1": []}, 2)
    with pytest.raises(ValueError, match="owned by"):
        owners({"p0": [0, 1], "p1": [1]}, 2)


def start(gateway: str, processor: str, greeted: float, mark: str) -> Start:
    return Start(gateway, processor, greeted - 0.01, greeted, mark)


def test_coverage_is_the_first_new_greeting_per_gateway_and_processor() -> None:
    starts = [
        start("g0", "p0", 1.0, "old"),  # the old version: not counted
        start("g0", "p1", 1.2, "new"),
        start("g1", "p1", 1.1, "new"),
        start("g0", "p0", 1.5, "new"),
        start("g1", "p0", 1.4, "new"),
        start("g2", "p9", 0.5, "new"),  # not a gateway or processor of the run
    ]
    first = coverage(starts, "new", ["g0", "g1"], ["p0", "p1"])
    assert first == {"gateway:g0": 1.2, "gateway:g1": 1.1, "processor:p0": 1.4, "processor:p1": 1.1}
    assert covered(first) and all_covered(first) == 1.4
    assert since(first, 1.0)["processor:p0"] == pytest.approx(0.4)
    partial = coverage(starts[:3], "new", ["g0", "g1"], ["p0", "p1"])
    assert partial["processor:p0"] is None
    assert not covered(partial) and all_covered(partial) is None
    assert since(partial, 1.0)["processor:p0"] is None


def test_percentiles_are_nearest_rank_and_a_missed_publish_fails_the_target() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert nearest_rank(values, 0.5) == 50.0
    assert nearest_rank(values, 0.99) == 99.0
    assert nearest_rank([3.0, 1.0, 2.0], 1.0) == 3.0
    with pytest.raises(ValueError, match="no values"):
        nearest_rank([], 0.5)
    s = stats_s([0.1, 0.2, None, 0.3])
    assert s == {"count": 3, "missed": 1, "p50_ms": 200.0, "p95_ms": 300.0, "p99_ms": 300.0,
                 "max_ms": 300.0}  # fmt: skip
    assert verdict([0.2, 0.9], 1.0)["pass"] is True
    assert verdict([0.2, 1.1], 1.0) == {
        "target_p99_ms": 1000.0,
        "p99_ms": 1100.0,
        "missed": 0,
        "pass": False,
    }
    assert verdict([0.2, None], 1.0)["pass"] is False
    assert verdict([], 1.0)["pass"] is False

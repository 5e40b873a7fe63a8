"""The processor's metrics, without Kafka. Its /healthz, /readyz, /metrics server (a
socket) is in tests/integration/test_processor_probes.py."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

from policy.snapshot import PolicySnapshot
from schemas.codec import encode
from schemas.commands import PressButton, StartConversation
from services.log_follower import LogRecord
from services.processor.metrics import Lag, ProcessorMetrics, lag_records, refresh
from tests.unit.flows import decider_for

CID = "0b8f3c55-3f7a-4a53-8a4e-5f3f1d2c9e01"


def value(metrics: ProcessorMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


async def test_commands_are_counted_by_type_and_outcome_and_refusals_by_reason() -> None:
    decider = decider_for()
    start = StartConversation(
        conversation_id=CID, seq=1, at=1.0, flow_id="quiz", site_id="s", reply_to="0"
    )
    stale = PressButton(
        conversation_id=CID, seq=9, at=2.0, node_id="nowhere", button_id="x", reply_to="0"
    )
    raws = (encode(start), encode(stale), b"not json")
    await decider.decide(0, [LogRecord(0, i, raw) for i, raw in enumerate(raws)], {})
    m = decider.metrics
    total = "leadflow_processor_commands_total"
    assert value(m, total, type="StartConversation", outcome="ok") == 1
    assert value(m, total, type="PressButton", outcome="refused") == 1
    assert value(m, total, type="unknown", outcome="unreadable") == 1
    reasons = {
        s.labels["reason"]
        for s in next(iter(m.rejected.collect())).samples
        if s.name.endswith("_total") and s.value
    }
    assert "unreadable" in reasons and len(reasons) == 2, reasons
    assert value(m, "leadflow_processor_decide_seconds_count") == 2


def test_refresh_mirrors_lag_policy_versions_and_snapshot_age() -> None:
    metrics = ProcessorMetrics()
    snapshot = cast(PolicySnapshot, SimpleNamespace(flow_id="quiz", version="v7", created_at=100))
    lags = {0: Lag(10, 4), 1: Lag(5, 9), 2: Lag(None, 3)}
    refresh(metrics, lambda: lags, lambda: [snapshot], lambda: 3, lambda: 130.0, lambda: (40, 7))
    assert value(metrics, "leadflow_processor_states", where="memory") == 40
    assert value(metrics, "leadflow_processor_states", where="spilled") == 7
    assert value(metrics, "leadflow_processor_lag_records", partition="0") == 6
    assert value(metrics, "leadflow_processor_lag_records", partition="1") == 0
    assert value(metrics, "leadflow_processor_lag_records", partition="2") is None
    assert value(metrics, "leadflow_processor_policy_version", flow="quiz", version="v7") == 1
    assert value(metrics, "leadflow_processor_policy_snapshot_age_seconds", flow="quiz") == 30
    assert value(metrics, "leadflow_processor_in_flight") == 3
    # a swapped snapshot replaces the old version's series (no stale 1s)
    newer = cast(PolicySnapshot, SimpleNamespace(flow_id="quiz", version="v8", created_at=120))
    refresh(metrics, dict, lambda: [newer], lambda: 0, now=lambda: 130.0)
    assert value(metrics, "leadflow_processor_policy_version", flow="quiz", version="v7") is None
    assert value(metrics, "leadflow_processor_policy_version", flow="quiz", version="v8") == 1
    assert lag_records(Lag(3, None)) is None

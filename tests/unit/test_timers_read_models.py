"""Fired timers in the read models: the plan counts nudges and abandonments per
node (and abandonments in the totals and the day), the transcript names them,
and the export fills their columns; the report's fold and the policy's
trajectories take them without a change."""

from __future__ import annotations

import orjson

from projector.export.raw_columns import to_columns
from projector.plan import plan
from projector.report.fold import fold_funnel
from projector.write_set import daily_flow_key, funnel_key, utc_day
from schemas.events import Event
from tests.unit.test_timers import T0, Run


def played() -> list[Event]:
    run = Run()
    run.start()
    run.fire("idle", T0 + 60)
    run.fire("abandon", T0 + 600)
    run.press(2, "blue", T0 + 900)  # came back and finished
    return run.events


def test_the_plan_counts_nudges_and_abandonments_where_they_happened() -> None:
    events = played()
    _, writes = plan(None, events)
    assert writes is not None
    funnel = {i.field: i.delta for i in writes.increments if i.key == funnel_key("nudger", 1)}
    assert funnel["nudged:colour"] == 1 and funnel["abandoned:colour"] == 1
    assert funnel["abandoned"] == 1 and funnel["completed"] == 1
    day = daily_flow_key("nudger", utc_day(T0))
    assert {i.field for i in writes.increments if i.key == day} >= {"abandoned", "completed"}
    kinds = [orjson.loads(entry)["kind"] for entry in writes.transcript]
    assert kinds[kinds.index("nudge") :] == ["nudge", "abandoned", "press", "node", "completed"]


def test_the_export_fills_the_timer_columns() -> None:
    events = played()
    cols = to_columns(events, {}, include_pii=False)
    rows = [
        i for i, t in enumerate(cols["type"]) if t in ("VisitorNudged", "ConversationAbandoned")
    ]
    assert [cols["node_id"][i] for i in rows] == ["colour", "colour"]
    assert [cols["idle_seconds"][i] for i in rows] == [60.0, 600.0]
    assert cols["lead_captured"][rows[1]] is False


def test_the_report_fold_counts_them_as_the_read_model_does() -> None:
    events = played()
    [stats] = fold_funnel([events], "nudger").values()
    assert (stats.started, stats.completed) == (1, 1)
    _, writes = plan(None, events)
    assert writes is not None
    read_model = {i.field: i.delta for i in writes.increments if i.key == funnel_key("nudger", 1)}
    assert stats.counters() == {k: v for k, v in read_model.items() if v}

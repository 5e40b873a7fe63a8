"""The pure projection (plan) and the batching engine, on the in-memory store.

Events come from the real ConversationService playing the shipped flows
(tests.support.traffic), so the projection is tested on the stream the
decider really produces.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from dataclasses import replace
from typing import Any

import orjson
import pytest

from projector.engine import NamespaceMoved, ProjectionStuck, Projector
from projector.memory_store import InMemoryReadModel
from projector.plan import plan
from projector.store import BadCursor, Outcome, decode_cursor, encode_cursor
from projector.views import (
    ConversationView,
    lead_fields,
    lead_from_fields,
    view_fields,
    view_from_fields,
)
from projector.write_set import WriteSet, daily_flow_key, daily_site_key, funnel_key, utc_day
from schemas.commands import VisitorContext
from schemas.events import (
    ConversationStarted,
    Event,
    LeadCaptured,
    NodeEntered,
    event_id,
)
from tests.support.readmodel_oracle import Oracle
from tests.support.traffic import T0, Traffic, simulate

TRAFFIC: Traffic = asyncio.run(simulate(30, seed=3, spacing=900.0))
_ORACLE: list[tuple[Oracle, dict[str, Any]]] = []


async def traffic_oracle() -> tuple[Oracle, dict[str, Any]]:
    """The oracle of TRAFFIC's events and the read models it holds, folded once for
    the module: the tests only read it."""
    if not _ORACLE:
        oracle = await Oracle().fold(TRAFFIC.events)
        _ORACLE.append((oracle, await oracle.read()))
    return _ORACLE[0]


def conversation(cid: str) -> list[Event]:
    return [e for e in TRAFFIC.events if e.conversation_id == cid]


def with_lead() -> list[Event]:
    lead = next(e for e in TRAFFIC.events if isinstance(e, LeadCaptured))
    return conversation(lead.conversation_id)


def started(cid: str = "c1", at: float = T0) -> ConversationStarted:
    return ConversationStarted(
        conversation_id=cid,
        seq=1,
        id=event_id(cid, 1),
        at=at,
        command_seq=1,
        flow_id="f",
        flow_version=2,
        site_id="s",
        context=VisitorContext(device="mobile", utm_source="ads"),
    )


def entered(node: str, seq: int, cid: str = "c1") -> NodeEntered:
    return NodeEntered(
        conversation_id=cid,
        seq=seq,
        id=event_id(cid, seq),
        at=T0 + seq,
        command_seq=seq,
        node_id=node,
        kind="question",
    )


def lead(seq: int, cid: str = "c1") -> LeadCaptured:
    return LeadCaptured(
        conversation_id=cid,
        seq=seq,
        id=event_id(cid, seq),
        at=T0 + seq,
        command_seq=seq,
        node_id="form",
        site_id="s",
        fields_present=("email",),
        consent=True,
        sealed="c2VhbGVk",
    )


def counts(ws: WriteSet | None) -> dict[str, int]:
    assert ws is not None
    return {f"{i.key}|{i.field}": i.delta for i in ws.increments}


def test_nothing_is_written_before_the_conversation_started() -> None:
    """Regression: events whose start is out of range must not create half-empty views."""
    events = conversation(TRAFFIC.events[0].conversation_id)
    assert isinstance(events[0], ConversationStarted)
    assert plan(None, events[1:]) == (None, None)


def test_the_started_view_copies_the_start_event() -> None:
    view, ws = plan(None, [started()])
    assert view == ConversationView(
        conversation_id="c1",
        site_id="s",
        flow_id="f",
        flow_version=2,
        status="active",
        current_node="",
        last_seq=1,
        lead_captured=False,
        answers=(),
        context=VisitorContext(device="mobile", utm_source="ads"),
        started_at=T0,
        updated_at=T0,
    )
    assert ws is not None and (ws.base_seq, ws.new_seq) == (0, 1)
    day = utc_day(T0)
    assert counts(ws) == {
        "funnel:f:2|started": 1,
        "site:s:funnel:f:2|started": 1,
        f"daily:flow:f:{day}|started": 1,
        f"site:s:daily:flow:f:{day}|started": 1,
        f"daily:site:s:{day}|started": 1,
    }


def test_events_at_or_below_the_views_seq_change_nothing() -> None:
    events = conversation(TRAFFIC.events[0].conversation_id)
    view, _ = plan(None, events)
    assert view is not None
    assert plan(view, events) == (view, None)
    assert plan(view, events[:3]) == (view, None)


def test_a_plan_in_pieces_equals_a_plan_at_once() -> None:
    events = with_lead()
    whole, _ = plan(None, events)
    view = None
    for i in range(0, len(events), 2):
        view, _ = plan(view, events[i : i + 2])
    assert view == whole


def test_funnel_counts_each_conversation_once_per_node_and_edge() -> None:
    events: list[Event] = [
        started(),
        entered("a", 2),
        entered("b", 3),
        entered("a", 4),
        entered("b", 5),
    ]
    view, ws = plan(None, events)
    funnel = funnel_key("f", 2)
    got = {k.split("|")[1]: v for k, v in counts(ws).items() if k.startswith(funnel)}
    assert got == {
        "started": 1,
        "entered:a": 1,
        "entered:b": 1,
        "left:a": 1,
        "left:b": 1,
        "edge:a>b": 1,
        "edge:b>a": 1,
    }
    assert view is not None and view.edges == ("a>b", "b>a") and view.current_node == "b"


def test_a_lead_converts_the_path_so_far_and_every_later_node() -> None:
    events: list[Event] = [
        started(),
        entered("a", 2),
        entered("form", 3),
        lead(4),
        entered("end", 5),
    ]
    view, ws = plan(None, events)
    got = counts(ws)
    funnel = funnel_key("f", 2)
    for field in ("converted:a", "converted:form", "converted:end", "edge_converted:a>form"):
        assert got[f"{funnel}|{field}"] == 1, field
    assert got[f"{funnel}|edge_converted:form>end"] == 1
    assert got[f"{funnel}|leads"] == 1
    assert got[f"{daily_site_key('s', utc_day(T0 + 4))}|leads"] == 1
    assert got[f"{daily_flow_key('f', utc_day(T0 + 4))}|leads"] == 1
    assert view is not None and view.lead_captured and view.lead_at == T0 + 4
    assert ws is not None and ws.lead is not None and ws.lead.sealed == "c2VhbGVk"


def test_a_second_lead_event_is_not_a_second_lead() -> None:
    view, _ = plan(None, [started(), entered("form", 2), lead(3)])
    _, ws = plan(view, [lead(4)])
    assert ws is not None and ws.lead is None
    assert not any("leads" in k or "converted" in k for k in counts(ws))


def test_daily_rollups_follow_the_utc_day_of_each_event() -> None:
    midnight = 1_764_201_600.0  # 2025-11-27 00:00 UTC
    view, _ = plan(None, [started(at=midnight - 1)])
    assert utc_day(midnight - 1) == "2025-11-26"
    bump = replace(lead(2), at=midnight + 1)
    _, ws = plan(view, [bump])
    assert f"{daily_site_key('s', '2025-11-27')}|leads" in counts(ws)


def test_the_transcript_holds_no_contact_details() -> None:
    events = with_lead()
    _, ws = plan(None, events)
    assert ws is not None
    kinds = [orjson.loads(e)["kind"] for e in ws.transcript]
    assert kinds[0] == "started" and "lead" in kinds and "press" in kinds
    blob = b"".join(ws.transcript) + orjson.dumps(ws.fields)
    assert b"@example.com" not in blob and b"Visitor " not in blob


def test_a_write_set_carries_each_transcript_entrys_seq() -> None:
    _, ws = plan(None, with_lead())
    assert ws is not None and len(ws.transcript) > 3
    assert ws.transcript_seqs == tuple(orjson.loads(e)["seq"] for e in ws.transcript)


def test_increments_of_one_field_are_merged() -> None:
    _, ws = plan(None, [started(), entered("a", 2)])
    assert ws is not None
    fields = [(i.key, i.field) for i in ws.increments]
    assert len(fields) == len(set(fields))


def test_view_and_lead_fields_round_trip() -> None:
    view, ws = plan(None, with_lead())
    assert view is not None and ws is not None and ws.lead is not None
    assert view_from_fields(view_fields(view)) == view
    assert lead_from_fields(lead_fields(ws.lead)) == ws.lead
    assert all(isinstance(v, str) for v in view_fields(view).values())


def test_cursors_round_trip_and_refuse_garbage() -> None:
    assert decode_cursor(encode_cursor(1764115200.123456, "c9")) == (1764115200.123456, "c9")
    for bad in ("", "!!!", encode_cursor(1.0, "x")[:-3] + "A"):
        with pytest.raises(BadCursor):
            decode_cursor(bad)


async def batches_of_any_size_give_the_oracles_read_models(
    traffic: Traffic, oracle: Oracle, expected: dict[str, Any]
) -> None:
    """Projected one event at a time, in batches of 7 or all at once, the read
    models are the oracle's (30 conversations here; 300 in
    tests/integration/test_larger_logs.py)."""
    for size in (1, 7, 500):
        store = InMemoryReadModel()
        projector = Projector(store, await store.current_namespace(), live=True)
        for i in range(0, len(traffic.events), size):
            await projector.project(traffic.events[i : i + size])
        assert await oracle.read(store) == expected, size


async def test_batches_of_any_size_give_the_oracles_read_models() -> None:
    await batches_of_any_size_give_the_oracles_read_models(TRAFFIC, *await traffic_oracle())


async def test_a_cold_projector_reloads_views_and_skips_what_is_applied() -> None:
    store = InMemoryReadModel()
    ns = await store.current_namespace()
    half = len(TRAFFIC.events) // 2
    await Projector(store, ns, live=True).project(TRAFFIC.events[:half])
    cold = Projector(store, ns, live=True)
    window = TRAFFIC.events[half - 40 : half + 40]
    result = await cold.project(window)
    # only conversations that start inside the window are assumed new (and conflict)
    assert 0 < result.conflicts <= sum(1 for e in window if e.seq == 1)
    await cold.project(TRAFFIC.events[half + 40 :])
    oracle, expected = await traffic_oracle()
    assert await oracle.read(store) == expected


async def test_a_conflict_is_planned_again_on_the_stored_view() -> None:
    store = InMemoryReadModel()
    ns = await store.current_namespace()
    events = with_lead()
    stale = Projector(store, ns, live=True)
    await stale.project(events[:3])
    await Projector(store, ns, live=True).project(events[:6])  # someone else moved on
    result = await stale.project(events[:8])
    assert result.conflicts == 1 and result.applied == 1
    view = await store.conversation(events[0].conversation_id)
    assert view is not None and view.last_seq == events[7].seq


async def test_a_replayed_batch_is_a_duplicate() -> None:
    store = InMemoryReadModel()
    projector = Projector(store, await store.current_namespace(), live=True)
    await projector.project(TRAFFIC.events[:50])
    result = await Projector(store, projector.namespace, live=True).project(TRAFFIC.events[:50])
    assert result.applied == 0 and result.duplicates > 0


async def test_a_live_projector_stops_when_its_namespace_is_replaced() -> None:
    store = InMemoryReadModel()
    projector = Projector(store, await store.current_namespace(), live=True)
    await projector.project(TRAFFIC.events[:20])
    await store.switch_to(await store.new_namespace())
    with pytest.raises(NamespaceMoved):
        await projector.project(TRAFFIC.events[20:40])


class AlwaysConflicting(InMemoryReadModel):
    async def apply(
        self, namespace: str, write_sets: Sequence[WriteSet], *, live: bool
    ) -> list[Outcome]:
        return [Outcome.CONFLICT for _ in write_sets]

    async def load_views(
        self, namespace: str, conversation_ids: Collection[str]
    ) -> dict[str, ConversationView]:
        return {}


async def test_endless_conflicts_raise_instead_of_looping() -> None:
    store = AlwaysConflicting()
    projector = Projector(store, await store.current_namespace(), live=True)
    with pytest.raises(ProjectionStuck):
        await projector.project(TRAFFIC.events[:5])


async def test_the_view_cache_is_bounded() -> None:
    store = InMemoryReadModel()
    projector = Projector(store, await store.current_namespace(), live=True, cache_size=5)
    await projector.project(TRAFFIC.events)
    assert len(projector._cache) == 5

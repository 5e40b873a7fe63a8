"""The projection, pure: (conversation view, its new events) -> (new view, write set).

No I/O here. A store applies a write set only if its conversation still holds
``base_seq`` (compare-and-set) and skips it if it already holds ``new_seq``:
that check, atomic with the write, is what makes a replayed event change
nothing, counters included.

Funnel semantics (per flow version), each conversation counted once:

- ``entered:N``: conversations that reached node N;
- ``left:N``: conversations that went on from N (drop-off at N = entered - left);
- ``edge:A>B``: conversations that went from A to B;
- ``converted:N`` / ``edge_converted:A>B``: conversations through N (or A>B)
  that captured a lead;
- ``started``, ``completed``, ``leads``, ``rejected``.

Daily rollups count ``started``, ``completed`` and ``leads`` per flow and per
site and UTC day.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, replace

import orjson

from projector.views import ConversationView, LeadView, view_fields
from schemas.events import (
    ButtonPressed,
    CommandRejected,
    ConversationCompleted,
    ConversationStarted,
    EdgeChosen,
    Event,
    LeadCaptured,
    NodeEntered,
)


@dataclass(frozen=True, slots=True)
class Increment:
    """``HINCRBY key field delta``; ``key`` is relative to the namespace."""

    key: str
    field: str
    delta: int = 1


@dataclass(frozen=True, slots=True)
class WriteSet:
    """Everything one conversation's new events change, applied atomically.

    ``base_seq`` is the view's ``last_seq`` the set was planned on (0 for a
    conversation the store does not hold yet); ``new_seq`` the last event's."""

    conversation_id: str
    base_seq: int
    new_seq: int
    fields: dict[str, str]
    transcript: tuple[bytes, ...]
    lead: LeadView | None
    increments: tuple[Increment, ...]
    site_id: str


def funnel_key(flow_id: str, flow_version: int) -> str:
    return f"funnel:{flow_id}:{flow_version}"


def daily_flow_key(flow_id: str, day: str) -> str:
    return f"daily:flow:{flow_id}:{day}"


def daily_site_key(site_id: str, day: str) -> str:
    return f"daily:site:{site_id}:{day}"


def utc_day(at: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(at))


class _Plan:
    """Accumulates one write set while folding events into the view."""

    def __init__(self, view: ConversationView | None) -> None:
        self.view = view
        self.transcript: list[bytes] = []
        self.increments: list[Increment] = []
        self.lead: LeadView | None = None

    def count(self, view: ConversationView, funnel_field: str, daily: bool, at: float) -> None:
        self.increments.append(Increment(funnel_key(view.flow_id, view.flow_version), funnel_field))
        if daily:
            day = utc_day(at)
            self.increments.append(Increment(daily_flow_key(view.flow_id, day), funnel_field))
            self.increments.append(Increment(daily_site_key(view.site_id, day), funnel_field))

    def note(self, entry: dict[str, object]) -> None:
        self.transcript.append(orjson.dumps(entry))

    def apply(self, event: Event) -> None:
        view = self.view
        if view is None:
            if isinstance(event, ConversationStarted):
                self.view = self._started(event)
            return  # a conversation whose start is not in this store: outside its range
        if event.seq <= view.last_seq:
            return
        view = self._changed(view, event)
        self.view = replace(view, last_seq=event.seq, updated_at=event.at)

    def _started(self, event: ConversationStarted) -> ConversationView:
        view = ConversationView(
            conversation_id=event.conversation_id,
            site_id=event.site_id,
            flow_id=event.flow_id,
            flow_version=event.flow_version,
            status="active",
            current_node="",
            last_seq=event.seq,
            lead_captured=False,
            answers=(),
            context=event.context,
            started_at=event.at,
            updated_at=event.at,
        )
        self.count(view, "started", True, event.at)
        self.note(_entry(event, flow_id=event.flow_id, flow_version=event.flow_version))
        return view

    def _changed(self, view: ConversationView, event: Event) -> ConversationView:
        match event:
            case NodeEntered():
                view = self._entered(view, event)
            case ButtonPressed(node_id=node_id, button_id=button_id):
                view = replace(view, answers=(*view.answers, (node_id, button_id)))
                self.note(_entry(event, node_id=node_id, button_id=button_id))
            case EdgeChosen():
                self.note(
                    _entry(
                        event,
                        node_id=event.node_id,
                        button_id=event.button_id,
                        chosen=event.chosen,
                        propensity=event.propensity,
                        policy_version=event.policy_version,
                    )
                )
            case LeadCaptured():
                view = self._lead(view, event)
            case ConversationCompleted():
                view = replace(view, status="completed", completed_at=event.at)
                self.count(view, "completed", True, event.at)
                self.note(_entry(event, node_id=event.node_id, lead_captured=event.lead_captured))
            case CommandRejected():
                self.count(view, "rejected", False, event.at)
        return view

    def _entered(self, view: ConversationView, event: NodeEntered) -> ConversationView:
        node, previous = event.node_id, view.current_node
        funnel = funnel_key(view.flow_id, view.flow_version)
        if previous and previous not in view.left:
            view = replace(view, left=(*view.left, previous))
            self.increments.append(Increment(funnel, f"left:{previous}"))
        if previous and f"{previous}>{node}" not in view.edges:
            edge = f"{previous}>{node}"
            view = replace(view, edges=(*view.edges, edge))
            self.increments.append(Increment(funnel, f"edge:{edge}"))
            if view.lead_captured:
                self.increments.append(Increment(funnel, f"edge_converted:{edge}"))
        if node not in view.nodes:
            view = replace(view, nodes=(*view.nodes, node))
            self.increments.append(Increment(funnel, f"entered:{node}"))
            if view.lead_captured:
                self.increments.append(Increment(funnel, f"converted:{node}"))
        self.note(_entry(event, node_id=node, node_kind=event.kind))
        return replace(view, current_node=node)

    def _lead(self, view: ConversationView, event: LeadCaptured) -> ConversationView:
        if view.lead_captured:
            return view
        view = replace(view, lead_captured=True, lead_at=event.at)
        self.count(view, "leads", True, event.at)
        funnel = funnel_key(view.flow_id, view.flow_version)
        self.increments.extend(Increment(funnel, f"converted:{n}") for n in view.nodes)
        self.increments.extend(Increment(funnel, f"edge_converted:{e}") for e in view.edges)
        self.lead = LeadView(
            conversation_id=view.conversation_id,
            site_id=event.site_id,
            flow_id=view.flow_id,
            flow_version=view.flow_version,
            event_id=event.id,
            captured_at=event.at,
            sealed=event.sealed,
            fields_present=event.fields_present,
            consent=event.consent,
        )
        self.note(
            _entry(
                event,
                node_id=event.node_id,
                fields_present=list(event.fields_present),
                consent=event.consent,
            )
        )
        return view


_KINDS = {
    "ConversationStarted": "started",
    "NodeEntered": "node",
    "ButtonPressed": "press",
    "EdgeChosen": "decision",
    "LeadCaptured": "lead",
    "ConversationCompleted": "completed",
}


def _entry(event: Event, **data: object) -> dict[str, object]:
    return {"seq": event.seq, "at": event.at, "kind": _KINDS[event.type], **data}


def plan(
    view: ConversationView | None, events: Iterable[Event]
) -> tuple[ConversationView | None, WriteSet | None]:
    """The view after one conversation's ``events`` (in seq order), and its write set.

    The write set is None when nothing is to be written: every event is at or
    below the view's seq, or the conversation's start is not in the store (a
    log whose older segments were deleted, or a replay from a timestamp)."""
    planner = _Plan(view)
    for event in events:
        planner.apply(event)
    after = planner.view
    if after is None or after is view:
        return after, None
    return after, WriteSet(
        conversation_id=after.conversation_id,
        base_seq=0 if view is None else view.last_seq,
        new_seq=after.last_seq,
        fields=view_fields(after),
        transcript=tuple(planner.transcript),
        lead=planner.lead,
        increments=_merged(planner.increments),
        site_id=after.site_id,
    )


def _merged(increments: list[Increment]) -> tuple[Increment, ...]:
    """Same-field increments summed, in first-seen order (fewer commands, same result)."""
    totals: dict[tuple[str, str], int] = {}
    for inc in increments:
        totals[inc.key, inc.field] = totals.get((inc.key, inc.field), 0) + inc.delta
    return tuple(Increment(k, f, d) for (k, f), d in totals.items())

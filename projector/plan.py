"""The projection, pure: (conversation view, its new events) -> (new view, write set).

No I/O here. A store applies a write set only if its conversation still holds
``base_seq`` (compare-and-set) and skips it if it already holds ``new_seq``:
that check, atomic with the write, is what makes a replayed event change
nothing, counters included.

Funnel semantics (per flow version), each conversation counted once, however
often it loops (the view keeps the distinct nodes, edges and nodes left):

- ``entered:N``: conversations that reached node N;
- ``left:N``: conversations that went on from N (drop-off at N = entered - left);
- ``edge:A>B``: conversations that went from A to B;
- ``converted:N`` / ``edge_converted:A>B``: conversations through N (or A>B)
  that captured a lead;
- ``went_back:N``: conversations that went back to N to change its answer
  (``WentBack``). Going back leaves the node the visitor was on (``left``) but
  is no edge: the re-entered node (already counted) is entered from nowhere,
  and the withdrawn answers leave the view's ``answers``;
- ``started``, ``completed``, ``leads``, ``rejected``.

Daily rollups count ``started``, ``completed`` and ``leads`` per flow and per
site and UTC day.

Tenants: every funnel and every daily rollup is counted for all sites together
and for the conversation's own site (the keys: :mod:`projector.write_set`).

Preview conversations (``ConversationStarted.preview``: the studio playing a
draft) are not projected at all: their start makes no view, and every later event
of a conversation without a view is skipped, so no funnel, rollup, transcript or
lead of theirs reaches a read model.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson

from projector.views import ConversationView, LeadView, view_fields
from projector.write_set import (
    Increment,
    WriteSet,
    daily_flow_key,
    daily_site_key,
    funnel_key,
    utc_day,
)
from schemas.events import (
    ButtonPressed,
    CommandRejected,
    ConversationAbandoned,
    ConversationCompleted,
    ConversationStarted,
    EdgeChosen,
    Event,
    LeadCaptured,
    NodeEntered,
    QuestionAnswered,
    VisitorNudged,
    WentBack,
)


class _Draft:
    """A mutable working copy of a view: one frozen view is built per write set,
    not one per event (``dataclasses.replace`` per event dominated the cost)."""

    def __init__(self, view: ConversationView) -> None:
        self.conversation_id = view.conversation_id
        self.site_id = view.site_id
        self.flow_id = view.flow_id
        self.flow_version = view.flow_version
        self.status = view.status
        self.current_node = view.current_node
        self.last_seq = view.last_seq
        self.lead_captured = view.lead_captured
        self.context = view.context
        self.started_at = view.started_at
        self.updated_at = view.updated_at
        self.completed_at = view.completed_at
        self.lead_at = view.lead_at
        self.answers: list[tuple[str, str]] = list(view.answers)
        self.nodes: list[str] = list(view.nodes)
        self.edges: list[str] = list(view.edges)
        self.left: list[str] = list(view.left)
        self.went_back: list[str] = list(view.went_back)
        self.funnel = funnel_key(view.flow_id, view.flow_version)
        self.site_funnel = funnel_key(view.flow_id, view.flow_version, view.site_id)

    def view(self) -> ConversationView:
        return ConversationView(
            conversation_id=self.conversation_id,
            site_id=self.site_id,
            flow_id=self.flow_id,
            flow_version=self.flow_version,
            status=self.status,
            current_node=self.current_node,
            last_seq=self.last_seq,
            lead_captured=self.lead_captured,
            answers=tuple(self.answers),
            context=self.context,
            started_at=self.started_at,
            updated_at=self.updated_at,
            completed_at=self.completed_at,
            lead_at=self.lead_at,
            nodes=tuple(self.nodes),
            edges=tuple(self.edges),
            left=tuple(self.left),
            went_back=tuple(self.went_back),
        )


class _Plan:
    """Accumulates one write set while folding events into a draft of the view."""

    def __init__(self, view: ConversationView | None) -> None:
        self.draft = None if view is None else _Draft(view)
        self.changed = False
        self.transcript: list[bytes] = []
        self.seqs: list[int] = []  # the transcript entries' seqs (a store's key)
        self.increments: list[Increment] = []
        self.lead: LeadView | None = None

    def bump(self, d: _Draft, funnel_field: str) -> None:
        """One funnel counter, in the all-sites funnel and in the site's own."""
        self.increments.append(Increment(d.funnel, funnel_field))
        self.increments.append(Increment(d.site_funnel, funnel_field))

    def count(self, d: _Draft, funnel_field: str, daily: bool, at: float) -> None:
        self.bump(d, funnel_field)
        if daily:
            day, add = utc_day(at), self.increments.append
            add(Increment(daily_flow_key(d.flow_id, day), funnel_field))
            add(Increment(daily_flow_key(d.flow_id, day, d.site_id), funnel_field))
            add(Increment(daily_site_key(d.site_id, day), funnel_field))

    def note(self, entry: dict[str, object]) -> None:
        seq = entry["seq"]
        assert isinstance(seq, int)
        self.seqs.append(seq)
        self.transcript.append(orjson.dumps(entry))

    def apply(self, event: Event) -> None:
        d = self.draft
        if d is None:
            if isinstance(event, ConversationStarted) and not event.preview:
                self.draft = self._started(event)
                self.changed = True
            return  # a conversation whose start is not in this store: outside its range
        if event.seq <= d.last_seq:
            return
        self._changed(d, event)
        d.last_seq = event.seq
        d.updated_at = event.at
        self.changed = True

    def _started(self, event: ConversationStarted) -> _Draft:
        d = _Draft(
            ConversationView(
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
        )
        self.count(d, "started", True, event.at)
        self.note(_entry(event, flow_id=event.flow_id, flow_version=event.flow_version))
        return d

    def _changed(self, d: _Draft, event: Event) -> None:
        match event:
            case NodeEntered():
                self._entered(d, event)
            case ButtonPressed(node_id=node_id, button_id=button_id):
                d.answers.append((node_id, button_id))
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
            case QuestionAnswered(node_id=node_id):
                # an input node counts like a question; its value (maybe personal) stays out
                answer = "skipped" if event.skipped else "answered"
                d.answers.append((node_id, answer))
                self.note(_entry(event, node_id=node_id, skipped=event.skipped))
            case WentBack():
                self._went_back(d, event)
            case VisitorNudged(node_id=node_id):
                self.bump(d, f"nudged:{node_id}")
                self.note(_entry(event, node_id=node_id))
            case ConversationAbandoned(node_id=node_id):
                # where silent visitors gave up (each spell of silence: one who came
                # back and fell silent again counts again)
                self.count(d, "abandoned", True, event.at)
                self.bump(d, f"abandoned:{node_id}")
                self.note(_entry(event, node_id=node_id, lead_captured=event.lead_captured))
            case LeadCaptured():
                self._lead(d, event)
            case ConversationCompleted():
                d.status = "completed"
                d.completed_at = event.at
                self.count(d, "completed", True, event.at)
                self.note(_entry(event, node_id=event.node_id, lead_captured=event.lead_captured))
            case CommandRejected():
                self.count(d, "rejected", False, event.at)

    def _entered(self, d: _Draft, event: NodeEntered) -> None:
        """Counted only the first time: ``d.nodes``, ``d.edges`` and ``d.left``
        are what the conversation already counted, so a loop adds nothing."""
        node, previous = event.node_id, d.current_node
        bump = self.bump
        if previous and previous not in d.left:
            d.left.append(previous)
            bump(d, f"left:{previous}")
        edge = f"{previous}>{node}"
        if previous and edge not in d.edges:
            d.edges.append(edge)
            bump(d, f"edge:{edge}")
            if d.lead_captured:
                bump(d, f"edge_converted:{edge}")
        if node not in d.nodes:
            d.nodes.append(node)
            bump(d, f"entered:{node}")
            if d.lead_captured:
                bump(d, f"converted:{node}")
        self.note(_entry(event, node_id=node, node_kind=event.kind))
        d.current_node = node

    def _went_back(self, d: _Draft, event: WentBack) -> None:
        """The visitor left ``from_node`` backwards: it counts as left (no drop-off
        there), the re-opened node is entered from nowhere (no edge back), and the
        answers from the re-opened node's on are withdrawn."""
        previous, node = d.current_node, event.node_id
        if previous and previous not in d.left:
            d.left.append(previous)
            self.bump(d, f"left:{previous}")
        if node not in d.went_back:
            d.went_back.append(node)
            self.bump(d, f"went_back:{node}")
        for i in range(len(d.answers) - 1, -1, -1):
            if d.answers[i][0] == node:
                del d.answers[i:]
                break
        d.current_node = ""
        self.note(
            _entry(
                event,
                node_id=node,
                from_node=event.from_node,
                withdrawn_seq=event.withdrawn_seq,
            )
        )

    def _lead(self, d: _Draft, event: LeadCaptured) -> None:
        if d.lead_captured:
            return
        d.lead_captured = True
        d.lead_at = event.at
        self.count(d, "leads", True, event.at)
        for n in d.nodes:
            self.bump(d, f"converted:{n}")
        for e in d.edges:
            self.bump(d, f"edge_converted:{e}")
        self.lead = LeadView(
            conversation_id=d.conversation_id,
            site_id=event.site_id,
            flow_id=d.flow_id,
            flow_version=d.flow_version,
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


_KINDS = {
    "ConversationStarted": "started",
    "NodeEntered": "node",
    "ButtonPressed": "press",
    "EdgeChosen": "decision",
    "LeadCaptured": "lead",
    "QuestionAnswered": "answer",
    "WentBack": "back",
    "VisitorNudged": "nudge",
    "ConversationAbandoned": "abandoned",
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
    if planner.draft is None or not planner.changed:
        return view, None
    after = planner.draft.view()
    return after, WriteSet(
        conversation_id=after.conversation_id,
        base_seq=0 if view is None else view.last_seq,
        new_seq=after.last_seq,
        fields=view_fields(after),
        transcript=tuple(planner.transcript),
        lead=planner.lead,
        increments=_merged(planner.increments),
        site_id=after.site_id,
        transcript_seqs=tuple(planner.seqs),
    )


def _merged(increments: list[Increment]) -> tuple[Increment, ...]:
    """Same-field increments summed, in first-seen order (fewer commands, same result)."""
    totals: dict[tuple[str, str], int] = {}
    for key, field, delta in increments:
        totals[key, field] = totals.get((key, field), 0) + delta
    return tuple(Increment(k, f, d) for (k, f), d in totals.items())

"""From the event log to deliveries (pure): the worker's fold.

The worker follows the ``events`` log and keeps, per conversation still in
progress, its :class:`~services.conversation.state.ConversationState` (the
very fold the conversation service uses). When a ``LeadCaptured`` event
arrives it takes a :class:`~services.delivery.model.LeadSnapshot` of that
state (flow version, visitor context, answers), frames it (``framing``:
the payload's non-personal inputs, fixed from here on, see
:class:`~services.delivery.model.Frame`) and creates one
:class:`~services.delivery.model.Delivery` per destination of the lead's
site. A conversation's state is forgotten once it completes. A preview
conversation's lead (the studio playing a draft) creates no delivery.

A worker whose log can be read by conversation (the embedded mode's events.db)
keeps no states at all: :func:`leads_in` takes each lead's conversation as the
log holds it up to the lead (its *history*) and folds that. Nothing is written
for the commands that capture no lead.

Everything is idempotent by event seq and delivery id: events at or below a
state's seq change nothing, and the store adds a delivery id once, so reading
a stretch of the log twice (at least once) creates nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from schemas.events import ConversationCompleted, Event, LeadCaptured
from services.conversation.state import ConversationState, fold
from services.delivery.config import Destination
from services.delivery.model import Answer, Delivery, Frame, LeadSnapshot, delivery_id

Forget = None
Framing = Callable[[LeadSnapshot], Frame]


@dataclass
class Intake:
    """What a stretch of the log changes: states to keep (None: forget) and new deliveries."""

    states: dict[str, ConversationState | None] = field(default_factory=dict)
    deliveries: list[Delivery] = field(default_factory=list)


def snapshot(state: ConversationState, lead: LeadCaptured) -> LeadSnapshot:
    return LeadSnapshot(
        event_id=lead.id,
        conversation_id=lead.conversation_id,
        site_id=lead.site_id,
        flow_id=state.flow_id,
        flow_version=state.flow_version,
        node_id=lead.node_id,
        captured_at=lead.at,
        started_at=state.started_at,
        consent=lead.consent,
        fields_present=lead.fields_present,
        sealed=lead.sealed,
        context=state.context,
        answers=tuple(Answer(node_id=n, button_id=b) for n, b in state.answers()),
    )


def deliveries_for(
    lead: LeadSnapshot,
    destinations: Iterable[Destination],
    now: float,
    frame: Frame | None = None,
) -> list[Delivery]:
    return [
        Delivery(
            id=delivery_id(lead.event_id, d.name),
            site_id=lead.site_id,
            destination=d.name,
            kind=d.kind,
            lead=lead,
            created_at=now,
            next_at=now,
            series_at=now,
            frame=frame,
        )
        for d in destinations
    ]


def take_in(
    events: Sequence[Event],
    known: Mapping[str, ConversationState],
    destinations: Mapping[str, Sequence[Destination]],
    deliver_since: float,
    now: float,
    framing: Framing,
) -> Intake:
    """Fold ``events`` (in log order) onto ``known`` states.

    ``destinations`` maps a site id to its destinations; a lead captured
    before ``deliver_since`` (when this store began delivering) creates none.
    ``framing`` fixes a lead's frame (:func:`services.delivery.payload.frame`
    with this worker's catalog and public URL)."""
    intake = Intake()
    current: dict[str, ConversationState] = {}
    for event in events:
        cid = event.conversation_id
        state = current.get(cid)
        if state is None:
            state = known.get(cid) or ConversationState(cid)
        if event.seq <= state.seq:
            continue
        if isinstance(event, LeadCaptured) and event.at >= deliver_since and not state.preview:
            lead = snapshot(state, event)
            sites = destinations.get(lead.site_id, ())
            if sites:
                intake.deliveries.extend(deliveries_for(lead, sites, now, framing(lead)))
        state = fold(state, [event])
        current[cid] = state
        if isinstance(event, ConversationCompleted):
            intake.states[cid] = Forget
        else:
            intake.states[cid] = state
    return intake


def wanted_histories(
    events: Iterable[Event], destinations: Mapping[str, Sequence[Destination]], deliver_since: float
) -> list[str]:
    """The conversations whose history :func:`leads_in` needs: those with a lead,
    captured since the store began delivering, on a site with destinations."""
    wanted = (
        e.conversation_id
        for e in events
        if isinstance(e, LeadCaptured) and e.at >= deliver_since and destinations.get(e.site_id)
    )
    return list(dict.fromkeys(wanted))


def leads_in(
    events: Sequence[Event],
    histories: Mapping[str, Sequence[Event]],
    destinations: Mapping[str, Sequence[Destination]],
    deliver_since: float,
    now: float,
    framing: Framing,
) -> list[Delivery]:
    """The deliveries of the leads among ``events``, each framed from its
    conversation's history (its events in seq order, as the log holds them; the
    ones at or after the lead are ignored). The same as :func:`take_in`'s for a
    log read from the start, without keeping a state per conversation."""
    deliveries: list[Delivery] = []
    for event in events:
        if not isinstance(event, LeadCaptured) or event.at < deliver_since:
            continue
        sites = destinations.get(event.site_id, ())
        history = histories.get(event.conversation_id)
        if not sites or history is None:
            continue
        earlier = [e for e in history if e.seq < event.seq]
        state = fold(ConversationState(event.conversation_id), earlier)
        if state.preview:
            continue
        lead = snapshot(state, event)
        deliveries.extend(deliveries_for(lead, sites, now, framing(lead)))
    return deliveries

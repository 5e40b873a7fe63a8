"""Which conversations an export selects (pure).

The unit is the conversation: a conversation is selected by its
``ConversationStarted`` (time in ``[since, until)``, flow, site), and then all
of its events are kept, also those after ``until``. Events of a conversation
whose start the scan never met are dropped: their cohort is unknown. Preview
conversations (``ConversationStarted.preview``: the studio playing a draft) are
never selected, so none of their events is exported.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from projector.export.errors import Place
from projector.export.raw import Obj, RawBatch, explain
from schemas.events import ConversationStarted, Event


@dataclass(frozen=True, slots=True)
class Selection:
    since: float | None = None  # conversations STARTED at/after this time (unix seconds)
    until: float | None = None  # ... and before this time
    flow_id: str | None = None  # only conversations of this flow
    site_id: str | None = None  # only conversations of this site


def selects(selection: Selection, at: float, flow_id: str, site_id: str) -> bool:
    """Whether a conversation started at ``at`` in this flow and site is selected."""
    return (
        (selection.since is None or at >= selection.since)
        and (selection.until is None or at < selection.until)
        and (selection.flow_id is None or flow_id == selection.flow_id)
        and (selection.site_id is None or site_id == selection.site_id)
    )


class Cohort:
    """The selected conversations, learned from their starts as a scan meets
    them (a scan reads every conversation's events in seq order, so its start
    comes first).

    An event whose (conversation, seq) the scan already kept is left out and
    counted in :attr:`duplicates`: a log written at least once may hold a
    record twice (the faust processor's zombies did), and an export must have
    one row per event."""

    __slots__ = ("_chosen", "_selection", "duplicates")

    def __init__(self, selection: Selection) -> None:
        self._selection = selection
        self._chosen: dict[str, int] = {}  # selected conversation -> newest seq kept
        self.duplicates = 0

    def __contains__(self, conversation_id: str) -> bool:
        return conversation_id in self._chosen

    def __len__(self) -> int:
        return len(self._chosen)

    def keep_raw(self, batch: RawBatch) -> RawBatch:
        """:meth:`keep` on event objects (:mod:`projector.export.raw`)."""
        objs: list[Obj] = []
        places: list[Place] = []
        chosen, selection = self._chosen, self._selection
        for obj, place in zip(batch.objs, batch.places, strict=True):
            try:
                cid, seq = obj["conversation_id"], obj["seq"]
                if (
                    cid not in chosen
                    and obj["type"] == "ConversationStarted"
                    and not obj.get("preview", False)
                    and selects(selection, obj["at"], obj["flow_id"], obj["site_id"])
                ):
                    chosen[cid] = 0
                if cid in chosen:
                    if seq <= chosen[cid]:
                        self.duplicates += 1
                        continue
                    chosen[cid] = seq
                    objs.append(obj)
                    places.append(place)
            except (KeyError, TypeError) as exc:
                explain(obj, place, exc)
        return RawBatch(objs, places)

    def keep(self, events: Iterable[Event]) -> list[Event]:
        """The events of selected conversations, in the order given."""
        kept: list[Event] = []
        chosen, selection = self._chosen, self._selection
        for event in events:
            cid = event.conversation_id
            if (
                cid not in chosen
                and isinstance(event, ConversationStarted)
                and not event.preview
                and selects(selection, event.at, event.flow_id, event.site_id)
            ):
                chosen[cid] = 0
            if cid in chosen:
                if event.seq <= chosen[cid]:
                    self.duplicates += 1
                    continue
                chosen[cid] = event.seq
                kept.append(event)
        return kept

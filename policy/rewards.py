"""Rewards: which logged decisions led to a lead. Pure; a fold over the event log.

A conversation that captures a lead is a success for every decision taken in
it; one without a lead ``horizon`` seconds after it started is a failure for
every decision taken in it. Outcomes are counted per (decision point,
candidate edge, context cell): the sufficient statistics of the model, whose
size depends on the flow and the cells, never on the number of conversations.

An outcome is counted in the cell the decision was conditioned on (its
``EdgeChosen.features``; the conversation's cell at its start when a decision
logged none, as the uniform policy does). Decisions taken after the
conversation was resolved (after its lead, or after the horizon) are not
counted: nothing they chose could change the outcome. Conversations that
started before the log's start are ignored.

The ledger is built by folding the log from its start (the policy service does
so when it starts); within one fold every event is seen once.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

from policy.features import cell_from_labels, cell_of
from schemas.events import ConversationStarted, EdgeChosen, Event, LeadCaptured

DEFAULT_HORIZON_SECONDS = 24 * 3600.0
# Conversations resolved lately, remembered so that a repeated ConversationStarted
# (a record written twice) does not open them again; repeats come close in the log.
RESOLVED_KEPT = 200_000


class FlowKey(NamedTuple):
    flow_id: str
    flow_version: int


class OutcomeKey(NamedTuple):
    node_id: str
    button_id: str
    edge: str
    cell: str  # Cell.key


@dataclass
class Tally:
    trials: int = 0
    successes: int = 0


@dataclass
class FlowCounts:
    """Outcomes of one flow version's decisions, and each decision point's candidates."""

    candidates: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    tallies: dict[OutcomeKey, Tally] = field(default_factory=dict)
    conversations: int = 0  # conversations with at least one decision, resolved

    def add(self, key: OutcomeKey, success: bool) -> None:
        tally = self.tallies.setdefault(key, Tally())
        tally.trials += 1
        tally.successes += int(success)

    def trials(self) -> int:
        return sum(t.trials for t in self.tallies.values())

    def since(self, earlier: FlowCounts) -> FlowCounts:
        """The outcomes added after ``earlier`` (a copy taken at the last fit)."""
        delta = FlowCounts(dict(self.candidates), {}, self.conversations - earlier.conversations)
        for key, tally in self.tallies.items():
            before = earlier.tallies.get(key, Tally())
            if tally.trials > before.trials:
                delta.tallies[key] = Tally(
                    tally.trials - before.trials, tally.successes - before.successes
                )
        return delta

    def copy(self) -> FlowCounts:
        return FlowCounts(
            dict(self.candidates),
            {k: Tally(t.trials, t.successes) for k, t in self.tallies.items()},
            self.conversations,
        )


@dataclass
class _Open:
    flow: FlowKey
    started_at: float
    cell: str
    decisions: list[OutcomeKey] = field(default_factory=list)
    seq: int = 1  # the newest event seq observed: older or equal ones are duplicates


def _logged_cell(features: tuple[str, ...]) -> str | None:
    """The key of the cell a decision logged, None if it logged none (or not a cell)."""
    if not features:
        return None
    try:
        return cell_from_labels(features).key
    except ValueError:
        return None


class RewardLedger:
    def __init__(self, horizon_seconds: float = DEFAULT_HORIZON_SECONDS) -> None:
        self.horizon = horizon_seconds
        self.flows: dict[FlowKey, FlowCounts] = {}
        self._open: dict[str, _Open] = {}
        self._by_start: list[tuple[float, str]] = []  # heap; entries of resolved ones stay
        self._resolved: OrderedDict[str, None] = OrderedDict()  # the newest RESOLVED_KEPT
        self.latest_event_at = 0.0
        self.duplicates = 0

    def observe(self, events: Iterable[Event]) -> None:
        """Fold events in; an event whose (conversation, seq) was already observed
        (a log written at least once may repeat one) changes nothing."""
        for event in events:
            if self._duplicate(event):
                self.duplicates += 1
                continue
            self.latest_event_at = max(self.latest_event_at, event.at)
            if isinstance(event, ConversationStarted):
                flow = FlowKey(event.flow_id, event.flow_version)
                cell = cell_of(event.context, event.at).key
                self._open[event.conversation_id] = _Open(flow, event.at, cell)
                heapq.heappush(self._by_start, (event.at, event.conversation_id))
            elif isinstance(event, EdgeChosen):
                self._decided(event)
            elif isinstance(event, LeadCaptured):
                self._resolve(event.conversation_id, success=True)

    def _duplicate(self, event: Event) -> bool:
        cid = event.conversation_id
        conv = self._open.get(cid)
        if isinstance(event, ConversationStarted):
            return conv is not None or cid in self._resolved
        if conv is None:
            return False
        if event.seq <= conv.seq:
            return True
        conv.seq = event.seq
        return False

    def _decided(self, event: EdgeChosen) -> None:
        conv = self._open.get(event.conversation_id)
        if conv is None:
            return  # started before the log's start, or already resolved
        counts = self.flows.setdefault(conv.flow, FlowCounts())
        counts.candidates.setdefault((event.node_id, event.button_id), event.candidates)
        cell = _logged_cell(event.features) or conv.cell
        conv.decisions.append(OutcomeKey(event.node_id, event.button_id, event.chosen, cell))

    def _resolve(self, conversation_id: str, success: bool) -> None:
        conv = self._open.pop(conversation_id, None)
        if conv is not None:
            self._resolved[conversation_id] = None
            if len(self._resolved) > RESOLVED_KEPT:
                self._resolved.popitem(last=False)
        if conv is None or not conv.decisions:
            return
        counts = self.flows.setdefault(conv.flow, FlowCounts())
        counts.conversations += 1
        for key in conv.decisions:
            counts.add(key, success)

    def expire(self, now: float | None = None) -> int:
        """Count as failures the conversations without a lead ``horizon`` seconds
        after they started (``now``: the newest event's time by default)."""
        cutoff = (self.latest_event_at if now is None else now) - self.horizon
        expired = 0
        heap = self._by_start
        while heap and heap[0][0] <= cutoff:
            started_at, cid = heapq.heappop(heap)
            conv = self._open.get(cid)
            if conv is not None and conv.started_at == started_at:
                self._resolve(cid, success=False)
                expired += 1
        return expired

    def open_conversations(self) -> int:
        return len(self._open)

    def __iter__(self) -> Iterator[tuple[FlowKey, FlowCounts]]:
        return iter(self.flows.items())

"""Rewards: which logged decisions led to a lead. Pure; a fold over the event log.

An outcome is counted only once it is **final**: a lead or a completion at
once, an abandonment after ``idle`` seconds, the reward window's close after
``horizon`` (:mod:`policy.reward_conversations` has the rules, with one
conversation's decisions and going back; :mod:`policy.reward_counts` the counts).

Time is the log's own: the **watermark**, the largest event time folded so far,
never the wall clock, so two folds of one log (whole, in chunks, with expiry
called at other moments) give the same tallies. An event that comes ``idle``
seconds or more after the previous event of its conversation (or after its
window) first ends that conversation, as the watermark would have.

A final outcome is counted only once every conversation of the same flow version
that started before it is final too: the counted conversations are always the
oldest ones, a sample that does not depend on the outcomes (leads are final
within minutes, abandonments ``idle`` seconds later; counted as they become
final, the first hundred outcomes would be mostly leads). Open conversations,
and final ones waiting for older ones, count nowhere.

Decisions taken after the conversation was final are not counted: nothing they
chose could change the outcome. Conversations that started before the log's
start are ignored, and so are preview conversations
(``ConversationStarted.preview``: the studio playing a draft or a version;
their decisions are logged but teach the policy nothing).

A **late lead**, one captured after its conversation was abandoned but within
its window (the visitor came back), does not change the failure already
counted: tallies only grow, which the fit schedule and the conjugate updates
between fits rely on. It is counted in :attr:`RewardLedger.late_leads`, per
flow version, so that an operator sees when ``idle`` is too short.

The ledger is built by folding the log from its start (the policy service does
so when it starts); within one fold every event is seen once.

Besides the tallies, every counted decision is also kept as a
:class:`~policy.reward_counts.DecisionOutcome` (the visitor's cell and the
answers the decision saw) in :attr:`RewardLedger.outcomes` until
:meth:`RewardLedger.take_outcomes` drains them: the online learner between
fits (``policy.online``) learns from them, answers included, which the cell
tallies cannot hold.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from policy.features import cell_of
from policy.reward_conversations import (
    ABANDONED,
    DEFAULT_HORIZON_SECONDS,
    DEFAULT_IDLE_SECONDS,
    WINDOW_CLOSED,
    Ending,
    FinalOutcome,
    OpenConversation,
    ending_before,
    ending_of,
    final_outcome,
    followed,
    trials,
)
from policy.reward_counts import DecisionOutcome, FlowCounts, FlowKey, decision_outcome
from schemas.events import ConversationStarted, EdgeChosen, Event, LeadCaptured, VisitorNudged

# Conversations resolved lately, remembered so that a repeated ConversationStarted
# (a record written twice) does not open them again; repeats come close in the log.
RESOLVED_KEPT = 200_000
# Counted decisions kept for the online learner, per flow version, until drained; the
# oldest go first when nothing drains them (a ledger with no learner behind it)
OUTCOMES_KEPT = 100_000


@dataclass
class _Abandoned:
    """An abandoned conversation, remembered until its window closes: a lead that
    comes back within it is a late lead."""

    flow: FlowKey
    started_at: float
    seq: int
    late_lead: bool = False


class RewardLedger:
    """The fold. :meth:`observe` the log's events in order, and call :meth:`expire`
    (with no argument: at the watermark) before reading the tallies in ``flows``."""

    def __init__(
        self,
        horizon_seconds: float = DEFAULT_HORIZON_SECONDS,
        idle_seconds: float = DEFAULT_IDLE_SECONDS,
    ) -> None:
        self.horizon = horizon_seconds
        self.idle = idle_seconds
        self.flows: dict[FlowKey, FlowCounts] = {}
        self.late_leads: dict[FlowKey, int] = {}
        self.watermark = 0.0  # the largest event time folded so far
        self.duplicates = 0
        self._open: dict[str, OpenConversation] = {}
        self._final: dict[str, FinalOutcome] = {}  # final, not counted yet
        self._abandoned: dict[str, _Abandoned] = {}
        # heaps; entries of conversations that moved on stay until they come up
        self._by_start: dict[FlowKey, list[tuple[float, str]]] = {}  # not counted yet
        self._by_activity: list[tuple[float, str]] = []  # open ones, by their last event
        self._abandoned_by_start: list[tuple[float, str]] = []
        self._resolved: OrderedDict[str, None] = OrderedDict()  # the newest RESOLVED_KEPT
        self.outcomes: dict[FlowKey, list[DecisionOutcome]] = {}  # counted, not yet taken

    @property
    def latest_event_at(self) -> float:
        """The watermark (the name it had before)."""
        return self.watermark

    # -- folding ----------------------------------------------------------------------------

    def observe(self, events: Iterable[Event]) -> None:
        """Fold events in; an event whose (conversation, seq) was already observed
        (a log written at least once may repeat one) changes nothing."""
        for event in events:
            if self._duplicate(event):
                self.duplicates += 1
                continue
            self.watermark = max(self.watermark, event.at)
            if isinstance(event, ConversationStarted):
                if not event.preview:  # a preview's later events find no open conversation
                    self._started(event)
                continue
            conv = self._open.get(event.conversation_id)
            if conv is not None and self._ended_before(event.conversation_id, conv, event.at):
                conv = None
            if conv is None:
                if isinstance(event, LeadCaptured):
                    self._late_lead(event)
                continue
            if isinstance(event, VisitorNudged):
                continue  # a timer, not the visitor: their silence goes on
            self._went_on(conv, event)

    def _went_on(self, conv: OpenConversation, event: Event) -> None:
        """An event of an open conversation: it ends the conversation, or is folded
        into it (a decision's point keeps its candidates here)."""
        conv.last_at = max(conv.last_at, event.at)
        ending = ending_of(event)
        if ending is not None:
            self._finish(event.conversation_id, ending)
            return
        if isinstance(event, EdgeChosen):
            counts = self.flows.setdefault(conv.flow, FlowCounts())
            counts.candidates.setdefault((event.node_id, event.button_id), event.candidates)
        followed(conv, event)

    def _duplicate(self, event: Event) -> bool:
        cid = event.conversation_id
        if isinstance(event, ConversationStarted):
            return cid in self._open or cid in self._resolved
        conv: OpenConversation | _Abandoned | None = self._open.get(cid) or self._abandoned.get(cid)
        if conv is None:
            return False
        if event.seq <= conv.seq:
            return True
        conv.seq = event.seq
        return False

    def _started(self, event: ConversationStarted) -> None:
        flow = FlowKey(event.flow_id, event.flow_version)
        cid = event.conversation_id
        cell = cell_of(event.context, event.at).key
        self._open[cid] = OpenConversation(flow, event.at, cell, last_at=event.at)
        heapq.heappush(self._by_start.setdefault(flow, []), (event.at, cid))
        heapq.heappush(self._by_activity, (event.at, cid))

    def _ended_before(self, cid: str, conv: OpenConversation, at: float) -> bool:
        """Whether the conversation was over before an event of it at ``at``: its window
        closed, or it had been idle for ``idle`` seconds. Then it ends now, as an
        :meth:`expire` at the watermark would have ended it: the outcome depends on
        the conversation's own events, not on when the fold expired."""
        ending = ending_before(conv, at, self.horizon, self.idle)
        if ending is not None:
            self._finish(cid, ending)
        return ending is not None

    def _late_lead(self, event: LeadCaptured) -> None:
        gone = self._abandoned.get(event.conversation_id)
        if gone is None or gone.late_lead or event.at >= gone.started_at + self.horizon:
            return
        gone.late_lead = True
        self.late_leads[gone.flow] = self.late_leads.get(gone.flow, 0) + 1

    # -- outcomes ---------------------------------------------------------------------------

    def _finish(self, cid: str, ending: Ending) -> None:
        """The conversation's outcome is final: it waits for the ones that started
        before it, then counts."""
        conv = self._open.pop(cid)
        self._resolved[cid] = None
        if len(self._resolved) > RESOLVED_KEPT:
            self._resolved.popitem(last=False)
        self._final[cid] = final_outcome(conv, ending.success)
        if ending.abandoned:
            self._abandoned[cid] = _Abandoned(conv.flow, conv.started_at, conv.seq)
            heapq.heappush(self._abandoned_by_start, (conv.started_at, cid))
        self._count_ready(conv.flow)

    def _count_ready(self, flow: FlowKey, now: float | None = None) -> None:
        """Count the flow version's final outcomes in the order their conversations
        started, up to the oldest one still open; with ``now``, end on the way the
        open ones whose window closed by then."""
        heap = self._by_start.get(flow, [])
        while heap:
            started_at, cid = heap[0]
            final = self._final.get(cid)
            if final is not None and final.started_at == started_at:
                heapq.heappop(heap)
                del self._final[cid]
                self._count(flow, final, cid)
                continue
            conv = self._open.get(cid)
            if conv is None or conv.started_at != started_at:
                heapq.heappop(heap)  # a stale entry
            elif now is not None and started_at + self.horizon <= now:
                self._finish(cid, WINDOW_CLOSED)  # final: counted at the next turn
            else:
                return

    def _count(self, flow: FlowKey, final: FinalOutcome, cid: str) -> None:
        if not final.decisions and not final.withdrawn:
            return
        counts = self.flows.setdefault(flow, FlowCounts())
        counts.conversations += 1
        kept = self.outcomes.setdefault(flow, [])
        for key, answers, success in trials(final):
            counts.add(key, success)
            kept.append(decision_outcome(cid, key, answers, success))
        if len(kept) > OUTCOMES_KEPT:
            del kept[: len(kept) - OUTCOMES_KEPT]

    def take_outcomes(self) -> dict[FlowKey, list[DecisionOutcome]]:
        """The decisions counted since the last call, per flow version, in the order
        they were counted (and forget them here)."""
        taken, self.outcomes = self.outcomes, {}
        return {k: v for k, v in taken.items() if v}

    def expire(self, now: float | None = None) -> int:
        """End the conversations abandoned or out of their window at ``now`` (the
        watermark by default; never later than it: only the log's time counts, so a
        wall clock passed here changes nothing) and count what became countable.
        Returns how many conversations it ended.

        ``now`` earlier than the watermark is for a reader of a partitioned log: the
        oldest time among the partitions it has not caught up with, so that an event
        still unread there does not find its conversation ended."""
        now = self.watermark if now is None else min(now, self.watermark)
        before = len(self._open)
        activity = self._by_activity
        while activity and activity[0][0] + self.idle <= now:
            last_at, cid = heapq.heappop(activity)
            conv = self._open.get(cid)
            if conv is None:
                continue
            if conv.last_at > last_at:  # it went on: look again when it may be idle
                heapq.heappush(activity, (conv.last_at, cid))
                continue
            self._finish(cid, ABANDONED)
        for flow in list(self._by_start):
            self._count_ready(flow, now)
        self._forget_abandoned(now)
        return before - len(self._open)

    def _forget_abandoned(self, now: float) -> None:
        heap = self._abandoned_by_start
        while heap and heap[0][0] + self.horizon <= now:
            started_at, cid = heapq.heappop(heap)
            gone = self._abandoned.get(cid)
            if gone is not None and gone.started_at == started_at:
                del self._abandoned[cid]

    def open_conversations(self) -> int:
        """Conversations whose outcome is not final yet."""
        return len(self._open)

    def pending_outcomes(self) -> int:
        """Final outcomes not counted yet: older conversations are still open."""
        return len(self._final)

    def __iter__(self) -> Iterator[tuple[FlowKey, FlowCounts]]:
        return iter(self.flows.items())

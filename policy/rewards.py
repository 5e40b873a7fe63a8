"""Rewards: which logged decisions led to a lead. Pure; a fold over the event log.

An outcome is counted only once it is **final**, so that successes (known at
once) are never weighed against failures that are not known yet:

* a conversation is final when it captures a lead (a success) or completes
  (``ConversationCompleted``: a success if it captured a lead, else a failure);
* when it is **abandoned**: no event of it for ``idle`` seconds, or sooner when
  its flow declares an ``abandon_after`` (``ConversationAbandoned``; a failure:
  a lead ends a conversation's outcome first);
* when its reward window closes, ``horizon`` seconds after its start (a failure).

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

Each conversation counts at most once per decision point (``node_id``,
``button_id``): for its first decision there (a loop back through a point
would weigh its outcome twice), and once for each other point it passed.
Outcomes are counted per (decision point, candidate edge, context cell)
(:mod:`policy.reward_counts`).

An outcome is counted in the cell the decision was conditioned on (its
``EdgeChosen.features``; the conversation's cell at its start when a decision
logged none, as the uniform policy does). Decisions taken after the
conversation was final are not counted: nothing they chose could change the
outcome. Conversations that started before the log's start are ignored, and so
are preview conversations (``ConversationStarted.preview``: the studio playing a
draft or a version; their decisions are logged but teach the policy nothing).

**Going back** (``WentBack``): a decision logged after the step the visitor
re-opened (``EdgeChosen.seq > withdrawn_seq``: the edge of the withdrawn
press) was rejected by the visitor, so its outcome is known at once: a
failure, whatever the conversation does next. It is withdrawn from the
conversation's decisions (its point is free again) and counted as a failure
when the conversation is counted, in start order like every outcome (counted
at the go back, failures known early would come before the outcomes of the
same conversations still open: the censoring bias the start order avoids). A
new decision at the same point after going back is a separate trial, with the
conversation's own outcome; the answers it saw are the ones that stand (the
withdrawn presses are forgotten, as the decider forgot them). A conversation
counts at most one such failure per point, its first: a visitor going back and
forth at a point (up to the decider's cap of 300 commands) would otherwise add
a failure to its edges with every round.

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
from dataclasses import dataclass, field

from policy.features import cell_from_labels, cell_of
from policy.reward_counts import Answers, OutcomeKey, Point, decision_outcome

# re-exported: policy.fitting imports them from here
from policy.reward_counts import DecisionOutcome as DecisionOutcome
from policy.reward_counts import FlowCounts as FlowCounts
from policy.reward_counts import FlowKey as FlowKey
from schemas.events import (
    ButtonPressed,
    ConversationAbandoned,
    ConversationCompleted,
    ConversationStarted,
    EdgeChosen,
    Event,
    LeadCaptured,
    QuestionAnswered,
    VisitorNudged,
    WentBack,
)
from services.conversation.state import typed_answer

DEFAULT_HORIZON_SECONDS = 24 * 3600.0
DEFAULT_IDLE_SECONDS = 30 * 60.0
# Conversations resolved lately, remembered so that a repeated ConversationStarted
# (a record written twice) does not open them again; repeats come close in the log.
RESOLVED_KEPT = 200_000
# Counted decisions kept for the online learner, per flow version, until drained; the
# oldest go first when nothing drains them (a ledger with no learner behind it)
OUTCOMES_KEPT = 100_000


@dataclass
class _Open:
    """A conversation whose outcome is not final yet."""

    flow: FlowKey
    started_at: float
    cell: str
    last_at: float  # its newest event's time: it is abandoned ``idle`` seconds later
    decisions: dict[Point, OutcomeKey] = field(default_factory=dict)  # the first per point
    seq: int = 1  # the newest event seq observed: older or equal ones are duplicates
    answers: list[tuple[str, str]] = field(default_factory=list)  # buttons pressed so far
    seen: dict[Point, Answers] = field(default_factory=dict)  # answers at each decision
    answer_seqs: list[int] = field(default_factory=list)  # the event seq of each answer
    decided_seq: dict[Point, int] = field(default_factory=dict)  # of each counted decision
    withdrawn: list[tuple[OutcomeKey, Answers]] = field(default_factory=list)  # gone back from


@dataclass(frozen=True, slots=True)
class _Final:
    """A final outcome waiting for the conversations that started before it."""

    started_at: float
    decisions: tuple[OutcomeKey, ...]
    success: bool
    answers: tuple[Answers, ...] = ()  # per decision, as its decision saw them
    withdrawn: tuple[tuple[OutcomeKey, Answers], ...] = ()  # failures, whatever the outcome


@dataclass
class _Abandoned:
    """An abandoned conversation, remembered until its window closes: a lead that
    comes back within it is a late lead."""

    flow: FlowKey
    started_at: float
    seq: int
    late_lead: bool = False


def _logged_cell(features: tuple[str, ...]) -> str | None:
    """The key of the cell a decision logged, None if it logged none (or not a cell)."""
    if not features:
        return None
    try:
        return cell_from_labels(features).key
    except ValueError:
        return None


def _went_back(conv: _Open, event: WentBack) -> None:
    """The decisions after the re-opened step are rejected by the visitor: withdrawn
    (failures, counted with the conversation), their points free again; the
    answers after it are forgotten."""
    kept = event.withdrawn_seq
    for point, seq in list(conv.decided_seq.items()):
        if seq > kept:
            key, seen = conv.decisions.pop(point), conv.seen.pop(point, ())
            del conv.decided_seq[point]
            if all((k.node_id, k.button_id) != point for k, _ in conv.withdrawn):
                conv.withdrawn.append((key, seen))  # once per point: see the module doc
    while conv.answer_seqs and conv.answer_seqs[-1] > kept:
        conv.answer_seqs.pop()
        conv.answers.pop()


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
        self._open: dict[str, _Open] = {}
        self._final: dict[str, _Final] = {}  # final, not counted yet
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
            conv.last_at = max(conv.last_at, event.at)
            if isinstance(event, ButtonPressed):
                conv.answers.append((event.node_id, event.button_id))
                conv.answer_seqs.append(event.seq)
            elif isinstance(event, QuestionAnswered):  # as the decider passes it: no value
                conv.answers.append((event.node_id, typed_answer(event)))
                conv.answer_seqs.append(event.seq)
            elif isinstance(event, EdgeChosen):
                self._decided(conv, event)
            elif isinstance(event, WentBack):
                _went_back(conv, event)
            elif isinstance(event, LeadCaptured):
                self._finish(event.conversation_id, success=True)
            elif isinstance(event, ConversationCompleted):
                self._finish(event.conversation_id, success=event.lead_captured)
            elif isinstance(event, ConversationAbandoned):  # the flow's abandon_after
                self._finish(event.conversation_id, success=False, abandoned=True)

    def _duplicate(self, event: Event) -> bool:
        cid = event.conversation_id
        if isinstance(event, ConversationStarted):
            return cid in self._open or cid in self._resolved
        conv: _Open | _Abandoned | None = self._open.get(cid) or self._abandoned.get(cid)
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
        self._open[cid] = _Open(flow, event.at, cell, last_at=event.at)
        heapq.heappush(self._by_start.setdefault(flow, []), (event.at, cid))
        heapq.heappush(self._by_activity, (event.at, cid))

    def _ended_before(self, cid: str, conv: _Open, at: float) -> bool:
        """Whether the conversation was over before an event of it at ``at``: its window
        closed, or it had been idle for ``idle`` seconds. Then it ends now, as an
        :meth:`expire` at the watermark would have ended it: the outcome depends on
        the conversation's own events, not on when the fold expired."""
        if at >= conv.started_at + self.horizon:
            self._finish(cid, success=False)
            return True
        if at - conv.last_at >= self.idle:
            self._finish(cid, success=False, abandoned=True)
            return True
        return False

    def _decided(self, conv: _Open, event: EdgeChosen) -> None:
        counts = self.flows.setdefault(conv.flow, FlowCounts())
        point = (event.node_id, event.button_id)
        counts.candidates.setdefault(point, event.candidates)
        if point in conv.decisions:
            return  # a loop back through the point: its first decision counts
        cell = _logged_cell(event.features) or conv.cell
        conv.decisions[point] = OutcomeKey(event.node_id, event.button_id, event.chosen, cell)
        conv.seen[point] = tuple(conv.answers)
        conv.decided_seq[point] = event.seq

    def _late_lead(self, event: LeadCaptured) -> None:
        gone = self._abandoned.get(event.conversation_id)
        if gone is None or gone.late_lead or event.at >= gone.started_at + self.horizon:
            return
        gone.late_lead = True
        self.late_leads[gone.flow] = self.late_leads.get(gone.flow, 0) + 1

    # -- outcomes ---------------------------------------------------------------------------

    def _finish(self, cid: str, success: bool, abandoned: bool = False) -> None:
        """The conversation's outcome is final: it waits for the ones that started
        before it, then counts."""
        conv = self._open.pop(cid)
        self._resolved[cid] = None
        if len(self._resolved) > RESOLVED_KEPT:
            self._resolved.popitem(last=False)
        points = list(conv.decisions)
        self._final[cid] = _Final(
            conv.started_at,
            tuple(conv.decisions[p] for p in points),
            success,
            tuple(conv.seen.get(p, ()) for p in points),
            tuple(conv.withdrawn),
        )
        if abandoned:
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
                self._finish(cid, success=False)  # final: counted at the next turn
            else:
                return

    def _count(self, flow: FlowKey, final: _Final, cid: str) -> None:
        if not final.decisions and not final.withdrawn:
            return
        counts = self.flows.setdefault(flow, FlowCounts())
        counts.conversations += 1
        kept = self.outcomes.setdefault(flow, [])
        trials = [
            *((key, answers, False) for key, answers in final.withdrawn),
            *(
                (key, final.answers[i] if i < len(final.answers) else (), final.success)
                for i, key in enumerate(final.decisions)
            ),
        ]
        for key, answers, success in trials:
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
            self._finish(cid, success=False, abandoned=True)
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

"""Durable timers: when a conversation's idle nudge and abandonment are due.

A timer is not stored anywhere: it is a function of the conversation's state
and its flow's ``timers`` (:mod:`schemas.flow_timers`). Whoever holds the
states (the embedded server's service, a processor's partition) keeps the
pending timers in a :class:`TimerQueue`, rebuilt from the states after a
restart, and fires a due one by sending a
:class:`~schemas.commands.FireTimer` command through the decider like any
other command. The decider fires it only if nothing happened since it was
scheduled (``for_seq``) and it is due at the command's time: so a timer fires
once per conversation state, whatever the number of tries (at least once after
a crash, twice by two owners during a rebalance).

Rules (pure):
* the idle nudge is due ``idle.after`` seconds after the visitor's last
  command, while the current node waits for an answer (a question, an input or
  a lead form) and no nudge was given since that command;
* abandonment is due ``abandon_after`` seconds after the visitor's last
  command, while the conversation is active and was not abandoned since.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from schemas.flow import WAITING_KINDS, Flow
from services.conversation.state import ConversationState

TimerKind = Literal["idle", "abandon"]


@dataclass(frozen=True, slots=True, order=True)
class Timer:
    """A pending timer: due at ``due_at``, for the state whose last event has
    seq ``for_seq``. Ordered by due time (the queue's order)."""

    due_at: float
    conversation_id: str
    timer: TimerKind
    for_seq: int


def pending_timers(state: ConversationState, flow: Flow | None) -> tuple[Timer, ...]:
    """The timers ``state`` has pending under ``flow``'s declaration (none when
    the flow declares none, or the conversation is not active)."""
    if flow is None or state.status != "active" or not flow.timers.any:
        return ()
    timers: list[Timer] = []
    idle = flow.timers.idle
    current = state.current_node
    if idle is not None and not state.nudged and current is not None:
        node = flow.nodes.get(current)
        if node is not None and node.kind in WAITING_KINDS and state.waiting:
            due = state.last_active_at + idle.after
            timers.append(Timer(due, state.conversation_id, "idle", state.seq))
    abandon = flow.timers.abandon_after
    if abandon is not None and not state.abandoned:
        due = state.last_active_at + abandon
        timers.append(Timer(due, state.conversation_id, "abandon", state.seq))
    return tuple(timers)


def due_timer(
    state: ConversationState, flow: Flow | None, kind: TimerKind, for_seq: int, at: float
) -> Timer | None:
    """The timer a ``FireTimer(kind, for_seq)`` at ``at`` fires, or None when it is
    stale (something happened since ``for_seq``), not due yet, or not declared."""
    if state.seq != for_seq:
        return None
    for timer in pending_timers(state, flow):
        if timer.timer == kind and timer.due_at <= at:
            return timer
    return None


def timer_horizon(flows: Iterable[Flow]) -> float:
    """How far back a restart must look for conversations with pending timers:
    the longest timer any of ``flows`` declares (0: none declares one)."""
    horizon = 0.0
    for flow in flows:
        idle, abandon = flow.timers.idle, flow.timers.abandon_after
        horizon = max(horizon, abandon or 0.0, idle.after if idle is not None else 0.0)
    return horizon


class TimerQueue:
    """The pending timers of the conversations one runtime holds, soonest first.

    ``set`` replaces a conversation's timers (a heap with lazy deletion: an
    entry is live only while it is the conversation's current one), so each
    decided command costs O(log n); ``reply_to`` remembers the gateway that last
    served each conversation, so that a fired timer's messages reach the
    visitor's socket."""

    def __init__(self) -> None:
        self._heap: list[Timer] = []
        self._live: dict[str, tuple[Timer, ...]] = {}
        self._reply_to: dict[str, str] = {}

    def set(self, conversation_id: str, timers: tuple[Timer, ...], reply_to: str = "") -> None:
        if reply_to:
            self._reply_to[conversation_id] = reply_to
        if not timers:
            if self._live.pop(conversation_id, None) is not None:
                self._reply_to.pop(conversation_id, None)
            return
        if self._live.get(conversation_id) == timers:
            return
        self._live[conversation_id] = timers
        for timer in timers:
            heapq.heappush(self._heap, timer)
        if len(self._heap) > 4 * len(self._live) + 64:
            self._compact()

    def retry(self, timer: Timer) -> None:
        """Put a timer whose firing failed back, unless its conversation has newer
        timers by now (its state moved on: those are the ones that count)."""
        live = self._live.get(timer.conversation_id, ())
        if any(t.for_seq > timer.for_seq for t in live):
            return
        self._live[timer.conversation_id] = (
            *(t for t in live if t.timer != timer.timer),
            timer,
        )
        heapq.heappush(self._heap, timer)

    def discard(self, conversation_id: str) -> None:
        self._live.pop(conversation_id, None)
        self._reply_to.pop(conversation_id, None)

    def pop_due(self, now: float, limit: int = 1000) -> list[Timer]:
        """The live timers due at ``now`` (at most ``limit``), removed from the queue."""
        due: list[Timer] = []
        while self._heap and self._heap[0].due_at <= now and len(due) < limit:
            timer = heapq.heappop(self._heap)
            live = self._live.get(timer.conversation_id, ())
            if timer in live:
                due.append(timer)
                rest = tuple(t for t in live if t != timer)
                if rest:
                    self._live[timer.conversation_id] = rest
                else:
                    del self._live[timer.conversation_id]
        return due

    def next_due(self) -> float | None:
        while self._heap:
            timer = self._heap[0]
            if timer in self._live.get(timer.conversation_id, ()):
                return timer.due_at
            heapq.heappop(self._heap)
        return None

    def reply_to(self, conversation_id: str) -> str:
        return self._reply_to.get(conversation_id, "")

    def _compact(self) -> None:
        self._heap = [t for timers in self._live.values() for t in timers]
        heapq.heapify(self._heap)

    def __len__(self) -> int:
        return sum(len(timers) for timers in self._live.values())

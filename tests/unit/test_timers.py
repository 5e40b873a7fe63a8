"""Durable timers (issue 19, item 3): the scheduling rules, the decider firing a
timer once per conversation state, the fold and the replies of a nudge, the
pending-timer queue, and the validation of ``timers``."""

from __future__ import annotations

from functools import cache

import pytest

from schemas.commands import Command, FireTimer, PressButton, Resume, StartConversation
from schemas.events import (
    ConversationAbandoned,
    Event,
    NodeEntered,
    VisitorNudged,
)
from schemas.flow import Flow
from schemas.flow_validation import validate_text
from services.conversation.decider import Decision, decide
from services.conversation.sealing import NoSealer
from services.conversation.state import ConversationState
from services.conversation.timers import Timer, TimerQueue, due_timer, pending_timers
from services.policy_port import DecisionPoint, EdgeChoice

CID = "conv-timers"
T0 = 1_000.0

FLOW = """\
id: nudger
version: 1
start: hello
timers:
  idle: {after: 60, message: "Still there, {{ colour | friend }}?"%s}
  abandon_after: 600
nodes:
  - {id: hello, kind: message, text: Hi!, next: colour}
  - id: colour
    kind: question
    text: Red or blue?
    buttons:
      - {id: red, label: Red, next: done}
      - {id: blue, label: Blue, next: done}
      - {id: unsure, label: Not sure, next: help}
  - {id: help, kind: message, text: Need a hand? Just pick one., next: colour}
  - {id: done, kind: end, text: Thanks!}
"""


@cache
def flow(to: str = "") -> Flow:
    parsed, errors = validate_text(FLOW % (f", to: {to}" if to else ""), "nudger.yaml")
    assert parsed is not None, errors
    return parsed


class FirstEdge:
    def choose(self, point: DecisionPoint) -> EdgeChoice:
        return EdgeChoice(chosen=point.candidates[0], propensity=1.0, policy_version="p", seed=1)


class Run:
    def __init__(self, to: str = "") -> None:
        self.flow = flow(to)
        self.state = ConversationState(CID)
        self.events: list[Event] = []

    def send(self, command: Command) -> Decision:
        no_key = NoSealer()
        decision = decide(self.state, command, self.flow, FirstEdge(), no_key, no_key)
        self.state = decision.state
        self.events.extend(decision.events)
        return decision

    def start(self) -> Decision:
        return self.send(
            StartConversation(conversation_id=CID, seq=1, at=T0, flow_id="nudger", site_id="s")
        )

    def press(self, seq: int, button: str, at: float) -> Decision:
        return self.send(
            PressButton(conversation_id=CID, seq=seq, at=at, node_id="colour", button_id=button)
        )

    def fire(self, timer: str, at: float, for_seq: int | None = None) -> Decision:
        seq = self.state.seq if for_seq is None else for_seq
        return self.send(
            FireTimer(conversation_id=CID, at=at, timer=timer, for_seq=seq)  # type: ignore[arg-type]
        )


def test_a_waiting_question_has_an_idle_nudge_and_abandonment_pending() -> None:
    run = Run()
    run.start()
    assert pending_timers(run.state, run.flow) == (
        Timer(T0 + 60, CID, "idle", run.state.seq),
        Timer(T0 + 600, CID, "abandon", run.state.seq),
    )
    assert pending_timers(run.state, None) == ()


def test_a_flow_without_timers_has_none_pending() -> None:
    run = Run()
    plain = validate_text(FLOW.split("timers:")[0] + FLOW.split("abandon_after: 600\n")[1], "f")
    assert plain[0] is not None, plain[1]
    run.flow = plain[0]
    run.start()
    assert pending_timers(run.state, run.flow) == ()


def test_the_idle_nudge_fires_once_when_due_and_the_question_keeps_waiting() -> None:
    run = Run()
    run.start()
    seq = run.state.seq
    early = run.fire("idle", T0 + 59)
    assert early.events == () and early.reply.messages == ()
    fired = run.fire("idle", T0 + 61)
    [nudge] = fired.events
    assert isinstance(nudge, VisitorNudged) and nudge.node_id == "colour" and nudge.seq == seq + 1
    assert nudge.command_seq == 1  # a timer uses no command seq
    [message] = fired.reply.messages
    assert (message.kind, message.node_id, message.text) == (
        "message",
        "colour",
        "Still there, friend?",
    )
    assert run.state.last_command_seq == 1 and run.state.nudged
    again = run.fire("idle", T0 + 62, for_seq=seq)  # at least once: fired a second time
    assert again.events == ()
    assert run.fire("idle", T0 + 120).events == ()  # one nudge per spell of silence
    assert [t.timer for t in pending_timers(run.state, run.flow)] == ["abandon"]
    pressed = run.press(2, "blue", T0 + 130)  # the question still takes its answer
    assert pressed.reply.error is None
    assert run.state.status == "completed"
    resumed = run.send(Resume(conversation_id=CID, at=T0 + 131, after_seq=0))
    shown = [(m.node_id, m.kind, m.answer) for m in resumed.reply.messages]
    assert shown == [
        ("hello", "message", None),
        ("colour", "question", "Blue"),
        ("colour", "message", None),
        ("done", "end", None),
    ]


def test_a_stale_timer_changes_nothing() -> None:
    run = Run()
    run.start()
    scheduled = run.state.seq
    run.press(2, "red", T0 + 5)
    assert run.fire("idle", T0 + 100, for_seq=scheduled).events == ()
    assert run.fire("abandon", T0 + 10_000, for_seq=scheduled).events == ()


def test_a_nudge_with_a_node_moves_the_conversation_there() -> None:
    run = Run(to="help")
    run.start()
    fired = run.fire("idle", T0 + 60)
    kinds = [type(e).__name__ for e in fired.events]
    assert kinds == ["VisitorNudged", "NodeEntered", "NodeEntered"]
    entered = [e.node_id for e in fired.events if isinstance(e, NodeEntered)]
    assert entered == ["help", "colour"]
    assert [m.node_id for m in fired.reply.messages] == ["colour", "help", "colour"]
    assert run.state.current_node == "colour" and run.state.waiting
    assert run.fire("idle", T0 + 200).events == ()  # nudged: not again until the visitor acts


def test_abandonment_fires_once_per_spell_of_silence_and_the_visitor_may_go_on() -> None:
    run = Run()
    run.start()
    run.fire("idle", T0 + 60)
    assert run.fire("abandon", T0 + 599).events == ()
    [abandoned] = run.fire("abandon", T0 + 600).events
    assert isinstance(abandoned, ConversationAbandoned)
    assert (abandoned.node_id, abandoned.lead_captured) == ("colour", False)
    assert run.state.abandoned and pending_timers(run.state, run.flow) == ()
    assert run.fire("abandon", T0 + 5_000).events == ()
    after = run.press(2, "red", T0 + 6_000)
    assert after.reply.error is None
    assert after.state.status == "completed" and not after.state.abandoned
    assert pending_timers(after.state, run.flow) == ()  # completed: nothing pending


def test_a_visitor_command_resets_the_nudge_and_the_abandonment() -> None:
    run = Run(to="help")
    run.start()
    run.fire("idle", T0 + 60)
    refused = run.send(
        PressButton(conversation_id=CID, seq=2, at=T0 + 70, node_id="colour", button_id="green")
    )
    assert refused.reply.error is not None  # a refused command is the visitor acting too
    assert not run.state.nudged and run.state.last_active_at == T0 + 70
    assert pending_timers(run.state, run.flow)[0] == Timer(T0 + 130, CID, "idle", run.state.seq)


def test_due_timer_needs_the_same_state_and_the_due_time() -> None:
    run = Run()
    run.start()
    state = run.state
    assert due_timer(state, run.flow, "idle", state.seq, T0 + 60) is not None
    assert due_timer(state, run.flow, "idle", state.seq - 1, T0 + 60) is None
    assert due_timer(state, run.flow, "idle", state.seq, T0 + 59.9) is None


def test_the_queue_keeps_each_conversations_latest_timers_soonest_first() -> None:
    queue = TimerQueue()
    queue.set("a", (Timer(10.0, "a", "idle", 3), Timer(100.0, "a", "abandon", 3)), reply_to="2")
    queue.set("b", (Timer(5.0, "b", "idle", 1),))
    queue.set("a", (Timer(50.0, "a", "idle", 4),))  # a's state moved on: replaced
    assert len(queue) == 2 and queue.next_due() == 5.0
    assert queue.pop_due(20.0) == [Timer(5.0, "b", "idle", 1)]
    assert queue.next_due() == 50.0  # a's old timers are gone
    assert queue.reply_to("a") == "2"
    assert queue.pop_due(60.0) == [Timer(50.0, "a", "idle", 4)]
    assert queue.next_due() is None and len(queue) == 0
    queue.set("c", (Timer(1.0, "c", "idle", 1),))
    queue.set("c", ())
    assert queue.pop_due(1e9) == []


def test_the_queue_stays_compact_under_many_replacements() -> None:
    queue = TimerQueue()
    for i in range(2_000):  # ten times what an uncompacted heap may hold here
        queue.set("a", (Timer(float(i), "a", "idle", i),))
    assert len(queue._heap) < 200
    assert queue.pop_due(1e9) == [Timer(1_999.0, "a", "idle", 1_999)]


@pytest.mark.parametrize(
    ("timers", "problem"),
    [
        ("  idle: {after: 30}\n", "timers.idle: an idle nudge needs a message"),
        ("  idle: {after: 30, to: nowhere}\n", "timers.idle.to: unknown node 'nowhere'"),
        ("  idle: {after: 3, message: hi}\n", "3 is less than the minimum of 5"),
        ("  abandon_after: 5\n", "5 is less than the minimum of 10"),
        ("  idle: {after: 900, message: hi}\n  abandon_after: 600\n", "must come before"),
        ("  idle: {after: 60, message: 'hi {{ }}'}\n", "timers.idle.message"),
        ("  idle: {after: 60, message: 'hi {{ nmae }}'}\n", "unknown variable 'nmae'"),
        ("  idle: {after: 60, message: '[x](javascript:y)'}\n", "links must be https"),
        ("  idle: {after: 60, message: hi, wait: 3}\n", "wait"),
    ],
)
def test_timers_are_validated(timers: str, problem: str) -> None:
    text = FLOW.split("timers:")[0] + "timers:\n" + timers + "nodes:" + FLOW.split("nodes:")[1]
    parsed, errors = validate_text(text, "nudger.yaml")
    assert parsed is None
    assert any(problem in str(e) for e in errors), [str(e) for e in errors]


def test_a_node_only_the_idle_nudge_leads_to_is_reachable() -> None:
    text = (FLOW % ", to: help").replace("      - {id: unsure, label: Not sure, next: help}\n", "")
    parsed, errors = validate_text(text, "nudger.yaml")
    assert parsed is not None, errors
    assert "unsure" not in {b.id for b in parsed.node("colour").buttons}

"""The pure decider: command sequencing, node transitions, decisions, leads."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

import orjson
import pytest

from policy.uniform import UniformPolicy, decision_seed
from schemas.codec import encode
from schemas.commands import (
    Command,
    PressButton,
    Resume,
    StartConversation,
    SubmitLead,
    VisitorContext,
)
from schemas.events import (
    ButtonPressed,
    CommandRejected,
    ConversationCompleted,
    ConversationStarted,
    EdgeChosen,
    Event,
    LeadCaptured,
    NodeEntered,
    event_id,
)
from schemas.flow import Flow
from schemas.replies import ButtonView, FieldView, Reply
from services.conversation.decider import MAX_COMMANDS, MAX_EVENTS, Decision, decide
from services.conversation.replies import MAX_RESUME_MESSAGES
from services.conversation.sealing import AesGcmSealer
from services.conversation.state import ConversationState, fold
from services.policy_port import DecisionPoint, EdgeChoice, EdgePolicy
from tests.unit.flows import agree, flow_from_yaml, quiz, short

CID = "conv-1"
KEY = bytes(range(32))
CONTEXT = VisitorContext(device="mobile", locale="en-GB", utm_source="ads")
E = TypeVar("E")

VALID_LEAD = {
    "name": "  Ann   Lee ",
    "email": "Ann.Lee@Example.COM",
    "phone": "020 7946 0958",
    "consent": "yes",
}
NORMALISED_LEAD = {
    "consent": "true",
    "email": "Ann.Lee@example.com",
    "name": "Ann Lee",
    "phone": "+442079460958",
}


@dataclass
class FixedPolicy:
    """Always picks ``chosen`` and remembers the decision points it saw."""

    chosen: str
    seen: list[DecisionPoint] = field(default_factory=list)

    def choose(self, point: DecisionPoint) -> EdgeChoice:
        self.seen.append(point)
        return EdgeChoice(chosen=self.chosen, propensity=0.5, policy_version="fixed", seed=7)


def start(seq: int = 1, flow_id: str = "quiz", reply_to: str = "gw-1") -> StartConversation:
    return StartConversation(
        conversation_id=CID,
        seq=seq,
        at=100.0,
        flow_id=flow_id,
        site_id="site-a",
        context=CONTEXT,
        reply_to=reply_to,
    )


def press(seq: int, node: str, button: str) -> PressButton:
    return PressButton(conversation_id=CID, seq=seq, at=100.0 + seq, node_id=node, button_id=button)


def lead(seq: int, fields: dict[str, str], node: str = "contact") -> SubmitLead:
    return SubmitLead(conversation_id=CID, seq=seq, at=100.0 + seq, node_id=node, fields=fields)


def resume(after_seq: int) -> Resume:
    return Resume(conversation_id=CID, at=500.0, after_seq=after_seq)


def run(
    state: ConversationState,
    command: Command,
    flow: Flow | None = None,
    policy: EdgePolicy | None = None,
) -> Decision:
    return decide(
        state,
        command,
        quiz() if flow is None else flow,
        UniformPolicy() if policy is None else policy,
        AesGcmSealer(KEY),
    )


def play(
    *commands: Command, flow: Flow | None = None, policy: EdgePolicy | None = None
) -> tuple[ConversationState, list[Event]]:
    """Apply ``commands`` in order from a new conversation; return state and all events."""
    state = ConversationState(CID)
    events: list[Event] = []
    for command in commands:
        decision = run(state, command, flow, policy)
        events.extend(decision.events)
        state = decision.state
    return state, events


def only(events: Sequence[Event], cls: type[E]) -> list[E]:
    return [e for e in events if isinstance(e, cls)]


def kinds(events: Sequence[Event]) -> list[str]:
    return [e.type for e in events]


def entered(events: Sequence[Event]) -> list[str]:
    return [e.node_id for e in only(events, NodeEntered)]


def error_code(reply: Reply) -> str | None:
    return reply.error.code if reply.error else None


# --- start -------------------------------------------------------------------------


def test_start_enters_start_node_and_auto_advances_through_messages() -> None:
    """Start must emit ConversationStarted and walk message nodes up to the first question."""
    d = run(ConversationState(CID), start())
    assert kinds(d.events) == ["ConversationStarted", "NodeEntered", "NodeEntered", "NodeEntered"]
    assert entered(d.events) == ["welcome", "intro", "size"]
    assert [m.node_id for m in d.reply.messages] == ["welcome", "intro", "size"]
    assert [m.seq for m in d.reply.messages] == [2, 3, 4]
    assert d.reply.error is None
    assert d.reply.ack == 1
    assert d.state.status == "active"
    assert d.state.current_node == "size"


def test_start_records_flow_version_site_and_context() -> None:
    """ConversationStarted must pin the flow version and keep site and visitor context."""
    d = run(ConversationState(CID), start(), flow=quiz(3))
    started = d.events[0]
    assert isinstance(started, ConversationStarted)
    assert (started.flow_id, started.flow_version, started.site_id) == ("quiz", 3, "site-a")
    assert started.context == CONTEXT
    assert (d.state.flow_version, d.state.context) == (3, CONTEXT)


def test_start_reply_renders_buttons_of_the_question() -> None:
    """The question message must carry its buttons (id and label) and not be done."""
    d = run(ConversationState(CID), start())
    question = d.reply.messages[-1]
    assert question.kind == "question"
    assert question.text == "How big is it?"
    assert question.buttons == (
        ButtonView(id="small", label="Small"),
        ButtonView(id="big", label="Big"),
        ButtonView(id="no", label="Not sure"),
    )
    assert not question.done
    assert question.answer is None


def test_start_of_unknown_flow_gives_unknown_flow_and_no_events() -> None:
    """A start whose flow is not in the catalog (flow=None) must log nothing."""
    state = ConversationState(CID)
    d = decide(state, start(), None, UniformPolicy(), AesGcmSealer(KEY))
    assert d.events == ()
    assert error_code(d.reply) == "unknown_flow"
    assert d.reply.ack == 0
    assert d.state == state


def test_start_of_flow_ending_at_once_completes_conversation() -> None:
    """Message nodes leading straight to an end must complete the conversation on start."""
    d = run(ConversationState(CID), start(flow_id="short"), flow=short())
    assert kinds(d.events) == [
        "ConversationStarted",
        "NodeEntered",
        "NodeEntered",
        "ConversationCompleted",
    ]
    completed = d.events[-1]
    assert isinstance(completed, ConversationCompleted)
    assert (completed.node_id, completed.lead_captured) == ("bye", False)
    assert [m.done for m in d.reply.messages] == [False, True]
    assert d.state.status == "completed"


def test_second_start_with_next_seq_is_rejected_as_already_started() -> None:
    """A new start on a started conversation must be refused and use its seq up."""
    state, _ = play(start())
    d = run(state, start(seq=2))
    (rejected,) = d.events
    assert isinstance(rejected, CommandRejected)
    assert (rejected.reason, rejected.consumed) == ("already_started", True)
    assert error_code(d.reply) == "already_started"
    assert d.reply.ack == 2


def test_start_with_seq_other_than_one_is_out_of_order_without_events() -> None:
    """A first command with seq != 1 must not create the conversation."""
    d = run(ConversationState(CID), start(seq=2))
    assert d.events == ()
    assert error_code(d.reply) == "out_of_order"
    assert d.state.status == "new"


@pytest.mark.parametrize(
    "command",
    [press(1, "size", "small"), lead(1, VALID_LEAD)],
    ids=["press", "lead"],
)
def test_commands_before_start_are_not_started(command: Command) -> None:
    """A press or lead on a conversation that never started must be refused, logging nothing."""
    d = run(ConversationState(CID), command)
    assert d.events == ()
    assert error_code(d.reply) == "not_started"
    assert d.reply.ack == 0


# --- press -------------------------------------------------------------------------


def test_press_on_non_decision_button_moves_to_its_single_next() -> None:
    """A button with one target must go there without consulting the policy."""
    state, _ = play(start())
    policy = FixedPolicy("never")
    d = run(state, press(2, "size", "small"), policy=policy)
    assert kinds(d.events) == ["ButtonPressed", "NodeEntered"]
    pressed = d.events[0]
    assert isinstance(pressed, ButtonPressed)
    assert (pressed.node_id, pressed.button_id) == ("size", "small")
    assert entered(d.events) == ["colour"]
    assert policy.seen == []
    assert [m.node_id for m in d.reply.messages] == ["colour"]
    assert d.reply.ack == 2


def test_button_id_no_stays_a_string_and_leads_to_its_end() -> None:
    """A YAML button id ``no`` must remain the string "no" and be pressable."""
    state, _ = play(start())
    d = run(state, press(2, "size", "no"))
    assert entered(d.events) == ["end_early"]
    assert isinstance(d.events[-1], ConversationCompleted)


def test_decision_point_emits_pressed_edge_chosen_then_chosen_node() -> None:
    """A decision press must log ButtonPressed, EdgeChosen (full record), then the chosen node."""
    state, _ = play(start())
    d = run(state, press(2, "size", "big"))
    assert kinds(d.events)[:3] == ["ButtonPressed", "EdgeChosen", "NodeEntered"]
    chosen = d.events[1]
    assert isinstance(chosen, EdgeChosen)
    assert chosen.candidates == ("colour", "extra", "note")
    assert chosen.chosen in chosen.candidates
    assert chosen.propensity == pytest.approx(1 / 3)
    assert chosen.policy_version == UniformPolicy.version
    assert chosen.seed == decision_seed(CID, 2)
    assert (chosen.node_id, chosen.button_id) == ("size", "big")
    node_entered = d.events[2]
    assert isinstance(node_entered, NodeEntered)
    assert node_entered.node_id == chosen.chosen


def test_decision_point_hands_policy_the_full_decision_point() -> None:
    """The policy must see candidates in authoring order, context and the answers so far."""
    state, _ = play(start())
    policy = FixedPolicy("extra")
    run(state, press(2, "size", "big"), policy=policy)
    (point,) = policy.seen
    assert point == DecisionPoint(
        conversation_id=CID,
        command_seq=2,
        flow_id="quiz",
        flow_version=1,
        node_id="size",
        button_id="big",
        candidates=("colour", "extra", "note"),
        context=CONTEXT,
        answers=(("size", "big"),),
        at=102.0,
    )


def test_decision_point_choice_auto_advances_through_chosen_message() -> None:
    """A chosen message node must auto-advance to its next like any other."""
    state, _ = play(start())
    d = run(state, press(2, "size", "big"), policy=FixedPolicy("note"))
    assert entered(d.events) == ["note", "colour"]
    chosen = d.events[1]
    assert isinstance(chosen, EdgeChosen)
    assert (chosen.chosen, chosen.propensity, chosen.seed) == ("note", 0.5, 7)
    assert d.state.current_node == "colour"


def test_policy_choosing_a_non_candidate_raises_value_error() -> None:
    """A broken policy must not be able to send a conversation off the graph."""
    state, _ = play(start())
    with pytest.raises(ValueError, match="non-candidate"):
        run(state, press(2, "size", "big"), policy=FixedPolicy("end_early"))


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        (press(2, "colour", "red"), "wrong_node"),
        (press(2, "size", "huge"), "unknown_button"),
        (lead(2, VALID_LEAD, node="size"), "wrong_node"),
    ],
    ids=["press-wrong-node", "unknown-button", "lead-on-question"],
)
def test_refused_command_is_rejected_consumed_and_uses_its_seq(
    command: Command, reason: str
) -> None:
    """A refused in-order command must log CommandRejected(consumed) and advance ack."""
    state, _ = play(start())
    d = run(state, command)
    (rejected,) = d.events
    assert isinstance(rejected, CommandRejected)
    assert rejected.reason == reason
    assert rejected.consumed is True
    assert rejected.command_type == command.type
    assert rejected.command_seq == 2
    assert error_code(d.reply) == reason
    assert d.reply.messages == ()
    assert d.reply.ack == 2
    assert d.state.last_command_seq == 2
    assert d.state.current_node == "size"


def test_press_on_completed_conversation_is_rejected_completed() -> None:
    """After an end node, any press must be refused with ``completed`` and use its seq."""
    state, _ = play(start(), press(2, "size", "no"))
    assert state.status == "completed"
    d = run(state, press(3, "size", "small"))
    (rejected,) = d.events
    assert isinstance(rejected, CommandRejected)
    assert (rejected.reason, rejected.consumed) == ("completed", True)
    assert error_code(d.reply) == "completed"
    assert d.reply.ack == 3


def test_lead_on_completed_conversation_is_rejected_completed() -> None:
    """A lead after the end must be refused with ``completed``, never captured."""
    state, _ = play(start(), press(2, "size", "no"))
    d = run(state, lead(3, VALID_LEAD))
    assert kinds(d.events) == ["CommandRejected"]
    assert error_code(d.reply) == "completed"


def test_command_after_rejection_is_applied_and_clears_rejection() -> None:
    """The seq after a rejected one must be applied normally."""
    state, _ = play(start(), press(2, "size", "huge"))
    assert state.last_rejection is not None
    d = run(state, press(3, "size", "small"))
    assert entered(d.events) == ["colour"]
    assert d.reply.error is None
    assert d.reply.ack == 3
    assert d.state.last_rejection is None


def test_unknown_flow_for_started_conversation_logs_nothing() -> None:
    """If a running conversation's flow disappeared, a command must fail without events."""
    state, _ = play(start())
    d = decide(state, press(2, "size", "small"), None, UniformPolicy(), AesGcmSealer(KEY))
    assert d.events == ()
    assert error_code(d.reply) == "unknown_flow"
    assert d.reply.ack == 1


# --- sequencing: duplicates, stale, gaps --------------------------------------------


def test_duplicate_of_accepted_press_returns_equal_reply_without_events() -> None:
    """A retried press (same seq) must be answered again and applied only once."""
    state, _ = play(start())
    first = run(state, press(2, "size", "small"))
    again = run(first.state, press(2, "size", "small"))
    assert again.events == ()
    assert again.reply == first.reply
    assert again.state == first.state


def test_duplicate_start_returns_equal_reply_without_events() -> None:
    """A retried start must re-send the opening messages and not restart."""
    first = run(ConversationState(CID), start())
    again = run(first.state, start())
    assert again.events == ()
    assert again.reply == first.reply


def test_duplicate_of_rejected_command_returns_the_same_error() -> None:
    """A retried refused command must get the same error again, not be re-evaluated."""
    state, _ = play(start())
    first = run(state, press(2, "size", "huge"))
    again = run(first.state, press(2, "size", "small"))
    assert again.events == ()
    assert again.reply == first.reply
    assert error_code(again.reply) == "unknown_button"


def test_duplicate_of_invalid_lead_returns_same_field_errors() -> None:
    """A retried invalid lead must repeat the per-field errors exactly."""
    state, _ = play(start(), press(2, "size", "small"), press(3, "colour", "red"))
    first = run(state, lead(4, {"email": "not-an-email"}))
    assert first.reply.error is not None
    assert set(first.reply.error.fields) == {"email", "name", "consent"}
    again = run(first.state, lead(4, {"email": "not-an-email"}))
    assert again.events == ()
    assert again.reply == first.reply


def test_stale_command_is_refused_without_events() -> None:
    """A command older than the last applied one must change nothing."""
    state, _ = play(start(), press(2, "size", "small"), press(3, "colour", "blue"))
    d = run(state, press(2, "size", "big"))
    assert d.events == ()
    assert error_code(d.reply) == "stale_command"
    assert d.reply.ack == 3
    assert d.state == state


def test_out_of_order_logs_one_unconsumed_rejection_and_keeps_ack() -> None:
    """A command skipping ahead must be logged once, not use a seq, and leave ack alone."""
    state, _ = play(start())
    d = run(state, press(3, "size", "small"))
    (rejected,) = d.events
    assert isinstance(rejected, CommandRejected)
    assert (rejected.reason, rejected.consumed, rejected.command_seq) == ("out_of_order", False, 3)
    assert error_code(d.reply) == "out_of_order"
    assert d.reply.ack == 1
    assert d.state.last_command_seq == 1
    assert d.state.current_node == "size"


def test_same_gap_command_again_emits_nothing() -> None:
    """A repeated out-of-order command must not flood the log with rejections."""
    state, _ = play(start(), press(3, "size", "small"))
    d = run(state, press(3, "size", "small"))
    assert d.events == ()
    assert error_code(d.reply) == "out_of_order"
    assert d.reply.ack == 1


def test_in_order_command_after_gap_rejection_is_applied() -> None:
    """After an out-of-order refusal the expected seq must still be accepted."""
    state, _ = play(start(), press(3, "size", "small"))
    d = run(state, press(2, "size", "small"))
    assert entered(d.events) == ["colour"]
    assert d.reply.ack == 2


# --- resume ------------------------------------------------------------------------


def test_resume_returns_all_messages_with_answer_labels_and_emits_nothing() -> None:
    """Resume from 0 must re-send the transcript, labelling every answered step."""
    state, _ = play(
        start(), press(2, "size", "small"), press(3, "colour", "red"), lead(4, VALID_LEAD)
    )
    d = run(state, resume(0))
    assert d.events == ()
    assert d.state is state
    answers = {m.node_id: m.answer for m in d.reply.messages}
    assert answers == {
        "welcome": None,
        "intro": None,
        "size": "Small",
        "colour": "Red",
        "contact": "Details sent",
        "thanks": None,
        "end_lead": None,
    }
    assert d.reply.messages[-1].done
    assert d.reply.ack == 4


def test_resume_returns_only_messages_after_after_seq() -> None:
    """Resume must skip the messages the client already has."""
    state, _ = play(start(), press(2, "size", "small"))
    colour_seq = state.steps[-1].seq
    d = run(state, resume(colour_seq - 1))
    assert [m.node_id for m in d.reply.messages] == ["colour"]
    assert run(state, resume(colour_seq)).reply.messages == ()


def test_resume_of_new_conversation_is_no_conversation() -> None:
    """Resuming a conversation that never started must fail with no_conversation."""
    d = run(ConversationState(CID), resume(0))
    assert d.events == ()
    assert error_code(d.reply) == "no_conversation"


def test_resume_names_the_conversations_own_site_or_finds_nothing() -> None:
    """Regression (issue 14): a correctly signed token naming site B for site A's
    conversation was accepted from B's page. The service checks the token's site
    against the conversation's, and answers exactly as for an unknown conversation
    (no ack, nothing emitted), so a site learns nothing about others' conversations."""
    state, _ = play(start(), press(2, "size", "small"))
    own = run(state, Resume(conversation_id=CID, at=500.0, after_seq=0, site_id="site-a"))
    assert own.reply.error is None and own.reply.messages
    other = run(state, Resume(conversation_id=CID, at=500.0, after_seq=0, site_id="site-b"))
    assert other.events == () and other.state is state
    unknown = run(ConversationState(CID), resume(0))
    assert other.reply == unknown.reply
    assert (error_code(other.reply), other.reply.ack, other.reply.messages) == (
        "no_conversation",
        0,
        (),
    )


# --- leads -------------------------------------------------------------------------


def _at_contact() -> ConversationState:
    state, _ = play(start(), press(2, "size", "small"), press(3, "colour", "red"))
    assert state.current_node == "contact"
    return state


def test_lead_form_message_renders_its_fields() -> None:
    """The lead form message must list every field with type, label and required flag."""
    state, _ = play(start(), press(2, "size", "small"))
    (form,) = run(state, press(3, "colour", "red")).reply.messages
    assert form.kind == "lead_form"
    assert form.fields == (
        FieldView(name="name", type="text", label="Your name", required=True),
        FieldView(name="email", type="email", label="Email", required=False),
        FieldView(name="phone", type="phone", label="Phone", required=False),
        FieldView(name="consent", type="consent", label="I agree", required=True),
    )


def test_invalid_lead_names_fields_without_echoing_values() -> None:
    """invalid_lead must give per-field messages that never contain the submitted values."""
    submitted = {
        "email": "zed@@mail..invalid",
        "phone": "+999 1234",
        "consent": "maybe-later",
        "nickname": "secret-nick",
    }
    d = run(_at_contact(), lead(4, submitted))
    (rejected,) = d.events
    assert isinstance(rejected, CommandRejected)
    assert rejected.reason == "invalid_lead"
    assert set(rejected.fields) == {"name", "email", "phone", "consent", "nickname"}
    assert d.reply.error is not None
    assert d.reply.error.code == "invalid_lead"
    assert d.reply.error.fields == rejected.fields
    blob = encode(rejected).decode() + encode(d.reply).decode()
    for value in submitted.values():
        assert value not in blob


def test_valid_lead_is_captured_sealed_and_opens_to_normalised_json() -> None:
    """LeadCaptured must hold contact details only sealed, under the conversation key."""
    d = run(_at_contact(), lead(4, VALID_LEAD))
    captured = d.events[0]
    assert isinstance(captured, LeadCaptured)
    raw = encode(captured).decode()
    for clear in ("Ann.Lee", "example", "7946", "Ann Lee"):
        assert clear not in raw
    opened = AesGcmSealer(KEY).open(captured.sealed, captured.id)
    assert orjson.loads(opened) == NORMALISED_LEAD
    assert opened == orjson.dumps(NORMALISED_LEAD, option=orjson.OPT_SORT_KEYS)
    assert captured.fields_present == ("consent", "email", "name", "phone")
    assert captured.consent is True
    assert (captured.site_id, captured.node_id) == ("site-a", "contact")


def test_lead_then_end_completes_with_lead_captured_flag() -> None:
    """Reaching an end after a lead must mark the completion lead_captured, done last."""
    d = run(_at_contact(), lead(4, VALID_LEAD))
    assert kinds(d.events) == [
        "LeadCaptured",
        "NodeEntered",
        "NodeEntered",
        "ConversationCompleted",
    ]
    completed = d.events[-1]
    assert isinstance(completed, ConversationCompleted)
    assert (completed.node_id, completed.lead_captured) == ("end_lead", True)
    assert [(m.node_id, m.done) for m in d.reply.messages] == [
        ("thanks", False),
        ("end_lead", True),
    ]
    assert d.state.lead_captured
    assert d.state.status == "completed"


def test_end_without_lead_completes_with_lead_captured_false() -> None:
    """An end reached without a lead must report lead_captured=False."""
    state, _ = play(start(), press(2, "size", "small"))
    d = run(state, press(3, "colour", "blue"))
    completed = d.events[-1]
    assert isinstance(completed, ConversationCompleted)
    assert completed.lead_captured is False
    assert d.reply.messages[-1].done


def test_consent_flag_follows_the_consent_field_type_not_its_name() -> None:
    """A consent field named e.g. 'agree' must still set LeadCaptured.consent."""
    state, _ = play(start(flow_id="agree"), flow=agree())
    d = run(state, lead(2, {"email": "a@example.com", "agree": "true"}, node="form"), agree())
    captured = d.events[0]
    assert isinstance(captured, LeadCaptured)
    assert captured.consent is True


# --- whole-log properties ----------------------------------------------------------

SCRIPT: tuple[Command, ...] = (
    start(),
    press(2, "size", "huge"),  # rejected, consumed
    press(4, "size", "small"),  # gap, not consumed
    press(3, "size", "big"),  # decision point (_script_state picks "extra")
    press(3, "size", "big"),  # duplicate
    resume(0),
    press(4, "extra", "yes"),
    press(5, "colour", "red"),
    lead(6, {"email": "bad"}),  # invalid lead, consumed
    lead(7, VALID_LEAD),
)


def _script_state(upto: int = len(SCRIPT)) -> tuple[ConversationState, list[Event]]:
    return play(*SCRIPT[:upto], policy=FixedPolicy("extra"))


def test_event_seqs_are_contiguous_and_ids_deterministic() -> None:
    """Across accepts, rejections and gaps, seqs must be 1..n and ids event_id(cid, seq)."""
    _, events = _script_state()
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert [e.id for e in events] == [event_id(CID, e.seq) for e in events]
    assert len(set(e.id for e in events)) == len(events)
    assert kinds(events).count("CommandRejected") == 3


def test_folding_emitted_events_rebuilds_the_decision_state() -> None:
    """fold(events) from scratch must equal the state the decider returned."""
    state, events = _script_state()
    assert fold(ConversationState(CID), events) == state
    assert state.last_command_seq == 7
    assert state.status == "completed"


@pytest.mark.parametrize("upto", [0, 2, 8, 9], ids=["start", "gap", "invalid-lead", "lead"])
def test_same_state_and_command_yield_identical_event_bytes(upto: int) -> None:
    """Reprocessing a command must reproduce byte-identical events (same ids, seal)."""
    state, _ = _script_state(upto)
    first = run(state, SCRIPT[upto], policy=FixedPolicy("extra"))
    second = run(state, SCRIPT[upto], policy=FixedPolicy("extra"))
    assert first.events
    assert [encode(e) for e in first.events] == [encode(e) for e in second.events]
    assert first.reply == second.reply


def test_uniform_decision_is_reproduced_byte_for_byte() -> None:
    """Two uniform policies deciding the same press must log identical EdgeChosen bytes."""
    state, _ = play(start())
    first = run(state, press(2, "size", "big"), policy=UniformPolicy())
    second = run(state, press(2, "size", "big"), policy=UniformPolicy())
    assert [encode(e) for e in first.events] == [encode(e) for e in second.events]


def test_events_carry_command_time_and_command_seq() -> None:
    """Events must be stamped with the command's time and seq, not a clock."""
    state, _ = play(start())
    d = run(state, press(2, "size", "small"))
    assert {(e.at, e.command_seq, e.conversation_id) for e in d.events} == {(102.0, 2, CID)}


def test_reply_echoes_reply_to_and_command_seq() -> None:
    """The reply must go back to the gateway that sent the command, naming its seq."""
    d = run(ConversationState(CID), start(reply_to="gw-7"))
    assert (d.reply.reply_to, d.reply.command_seq, d.reply.conversation_id) == ("gw-7", 1, CID)


# --- caps and pages (issue 14) ---------------------------------------------------------

LOOP_YAML = """\
id: loop
version: 1
start: q
nodes:
  - id: q
    kind: question
    text: Again?
    buttons:
      - {id: again, label: Again, next: m}
      - {id: stop, label: Stop, next: bye}
  - {id: m, kind: message, text: Here we go, next: q}
  - {id: bye, kind: end, text: Bye}
"""


def looped(times: int) -> tuple[ConversationState, Flow]:
    """A conversation of the cyclic LOOP flow after ``times`` presses of `again`."""
    flow = flow_from_yaml(LOOP_YAML)
    state, _ = play(
        start(flow_id="loop"), *(press(seq, "q", "again") for seq in range(2, times + 2)), flow=flow
    )
    return state, flow


def test_a_command_past_max_commands_is_refused_and_logs_nothing() -> None:
    """Regression: on a cyclic flow one conversation reached 3,002 messages; there
    was no cap. Past MAX_COMMANDS a command is conversation_too_long, nothing emitted."""
    state, flow = looped(3)
    near = replace(state, last_command_seq=MAX_COMMANDS)
    d = run(near, press(MAX_COMMANDS + 1, "q", "again"), flow)
    assert (error_code(d.reply), d.events, d.state) == ("conversation_too_long", (), near)
    assert d.reply.ack == MAX_COMMANDS
    retry = run(near, press(MAX_COMMANDS, "q", "again"), flow)
    assert error_code(retry.reply) is None, "a retry of the last command is still answered"
    assert run(near, resume(0), flow).reply.messages, "and so is a resume"


def test_a_conversation_with_max_events_takes_no_more_commands() -> None:
    """Events bound the log even where commands do not: out-of-order presses are logged
    (once per seq) without using a seq, so only an event cap stops them."""
    state, flow = looped(2)
    gap = run(state, press(state.last_command_seq + 5, "q", "again"), flow)
    assert kinds(gap.events) == ["CommandRejected"]
    full = replace(state, seq=MAX_EVENTS)
    for command in (press(full.last_command_seq + 1, "q", "again"), press(99, "q", "again")):
        d = run(full, command, flow)
        assert (error_code(d.reply), d.events) == ("conversation_too_long", ())


def test_a_long_resume_comes_in_pages_of_max_resume_messages() -> None:
    """Regression: resume with last_seq 0 answered a 194-byte frame with 752 KB. It
    answers at most MAX_RESUME_MESSAGES messages, oldest first, and says there is more;
    resuming from the last one got walks the whole transcript once."""
    state, flow = looped(60)  # 1 + 2 * 60 messages
    pages, after = [], 0
    while True:
        reply = run(state, resume(after), flow).reply
        pages.append([m.seq for m in reply.messages])
        if not reply.more:
            break
        after = reply.messages[-1].seq
    assert [len(page) for page in pages] == [MAX_RESUME_MESSAGES, MAX_RESUME_MESSAGES, 21]
    assert [seq for page in pages for seq in page] == [s.seq for s in state.steps]
    up_to_date = run(state, resume(state.steps[-1].seq), flow).reply
    assert (up_to_date.messages, up_to_date.more) == ((), False)

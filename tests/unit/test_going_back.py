"""Going back: the decider's ``GoBack`` (every refusal, what it re-opens, that
conditions and templates forget the withdrawn answers, idempotence by seq), the
state's fold of ``WentBack``, the back frame and the journal."""

from __future__ import annotations

from functools import cache

import pytest

from schemas.codec import encode
from schemas.commands import (
    Command,
    GoBack,
    Resume,
    SubmitLead,
    decode_command,
)
from schemas.events import (
    CommandRejected,
    EdgeChosen,
    NodeEntered,
    WentBack,
    decode_event,
    event_id,
)
from schemas.flow import Flow
from schemas.flow_validation import validate_text
from schemas.frames import BackFrame, FrameError, parse_client_frame
from services.conversation.decider import decide
from services.conversation.going_back import ENDED, LEAD_ALREADY_SENT, NOTHING_TO_CHANGE
from services.conversation.journal import needs_key, seal_for_journal
from services.conversation.state import ConversationState, Step, evolve
from tests.unit.test_decider_v2 import CID, Conversation, FixedPolicy, answer, press, start


def back(seq: int, node: str) -> GoBack:
    return GoBack(conversation_id=CID, seq=seq, at=100.0 + seq, node_id=node)


def lead(seq: int) -> SubmitLead:
    fields = {"email": "eve@example.com", "consent": "yes"}
    return SubmitLead(
        conversation_id=CID, seq=seq, at=100.0 + seq, node_id="contact", fields=fields
    )


def refusal(c: Conversation, command: Command) -> tuple[str, str]:
    """Send ``command``, which must be refused with its seq used up; (code, message)."""
    before = c.state
    decision = c.send(command)
    (rejected,) = decision.events
    assert isinstance(rejected, CommandRejected) and rejected.consumed
    assert decision.reply.error is not None and decision.reply.ack == command.seq
    assert decision.state.steps == before.steps
    return decision.reply.error.code, decision.reply.error.message


def on_size() -> Conversation:
    """Eve, a flat roof: at the size question."""
    c = Conversation()
    c.send(start())
    c.send(answer(2, "ask_name", "Eve"))
    c.send(press(3, "roof", "flat"))
    return c


def test_going_back_reopens_the_last_question_and_forgets_its_answer() -> None:
    c = on_size()
    roof_step = c.state.steps[-2]
    assert roof_step.node_id == "roof" and roof_step.answer == "flat"
    decision = c.send(back(4, "size"))
    went, entered = decision.events
    assert isinstance(went, WentBack) and isinstance(entered, NodeEntered)
    assert (went.node_id, went.from_node, went.withdrawn_seq) == ("roof", "size", roof_step.seq)
    assert went.id == event_id(CID, went.seq) and went.command_seq == 4
    assert entered.node_id == "roof" and entered.seq == went.seq + 1
    (message,) = decision.reply.messages
    assert (message.node_id, message.kind, message.answer) == ("roof", "question", None)
    assert message.seq == entered.seq and decision.reply.ack == 4
    state = decision.state
    assert state.current_node == "roof"
    assert [s.node_id for s in state.steps] == ["ask_name", "hello", "roof"]
    assert state.answers() == (("ask_name", "answered"),)


def test_after_going_back_a_new_answer_is_branched_on_afresh() -> None:
    """Conditions read the new answer: flat and 150 m² is big_flat; going back to
    the size and answering 50 is small_flat; going back twice to the roof and
    pressing pitched skips both (the withdrawn size is no longer an answer)."""
    c = on_size()
    c.send(answer(4, "size", "150"))
    assert c.state.current_node == "contact" and "big_flat" in c.entered()
    c.send(back(5, "contact"))
    assert c.state.current_node == "size"
    reply = c.send(answer(6, "size", "50")).reply
    assert [m.node_id for m in reply.messages] == ["small_flat", "contact"]
    c.send(back(7, "contact"))
    reply = c.send(back(8, "size")).reply
    assert [m.node_id for m in reply.messages] == ["roof"]
    assert c.state.answers() == (("ask_name", "answered"),)
    c.send(press(9, "roof", "pitched"))
    reply = c.send(answer(10, "size", "150")).reply
    assert [m.node_id for m in reply.messages] == ["contact"]
    assert c.state.answers() == (
        ("ask_name", "answered"),
        ("roof", "pitched"),
        ("size", "answered"),
    )


def test_templates_forget_a_withdrawn_answer() -> None:
    """Going back to the name: the re-asked question no longer knows it, and a new
    name is the one the next messages show."""
    c = Conversation()
    c.send(start())
    c.send(answer(2, "ask_name", "Eve"))
    reply = c.send(back(3, "roof")).reply
    assert [m.node_id for m in reply.messages] == ["ask_name"]
    hello, roof = c.send(answer(4, "ask_name", "Ann")).reply.messages
    assert hello.text.startswith("Nice to meet you, Ann!")
    assert roof.text == "What kind of roof do you have, Ann?"


def test_nothing_to_go_back_to_is_refused() -> None:
    c = Conversation()
    c.send(start())
    assert refusal(c, back(2, "ask_name")) == ("cannot_go_back", NOTHING_TO_CHANGE)
    assert c.state.last_command_seq == 2
    c.send(answer(3, "ask_name", "Eve"))  # the next seq goes on as usual
    assert c.state.current_node == "roof"


def test_a_stale_go_back_is_wrong_node() -> None:
    c = on_size()
    code, _ = refusal(c, back(4, "roof"))
    assert code == "wrong_node"


def test_a_completed_conversation_cannot_go_back() -> None:
    c = on_size()
    c.send(answer(4, "size", "12"))
    c.send(lead(5))
    assert c.state.status == "completed"
    assert refusal(c, back(6, "bye")) == ("cannot_go_back", ENDED)


AFTER_LEAD_YAML = """\
id: after-lead
version: 1
start: q1
nodes:
  - id: q1
    kind: question
    text: First?
    buttons: [{id: a, label: A, next: contact}, {id: b, label: B, next: contact}]
  - id: contact
    kind: lead_form
    text: Your e-mail?
    fields: [{name: email, type: email, label: Email, required: true}]
    next: q2
  - id: q2
    kind: question
    text: Second?
    buttons: [{id: a, label: A, next: q3}, {id: b, label: B, next: q3}]
  - id: q3
    kind: question
    text: Third?
    buttons: [{id: a, label: A, next: bye}]
  - id: bye
    kind: end
    text: Bye.
"""


@cache
def after_lead() -> Flow:
    flow, errors = validate_text(AFTER_LEAD_YAML, "after-lead.yaml")
    assert flow is not None, errors
    return flow


def test_answers_given_before_a_lead_cannot_be_changed_but_later_ones_can() -> None:
    state, flow, policy = ConversationState(CID), after_lead(), FixedPolicy("")
    sealer = Conversation().sealer

    def send(command: Command) -> tuple[str, ...]:
        nonlocal state
        decision = decide(state, command, flow, policy, sealer, sealer)
        state = decision.state
        if decision.reply.error is not None:
            return (decision.reply.error.code, decision.reply.error.message)
        return tuple(m.node_id for m in decision.reply.messages)

    send(start())
    send(press(2, "q1", "a"))
    fields = {"email": "eve@example.com"}
    send(SubmitLead(conversation_id=CID, seq=3, at=103.0, node_id="contact", fields=fields))
    assert state.current_node == "q2"
    assert send(back(4, "q2")) == ("cannot_go_back", LEAD_ALREADY_SENT)
    send(press(5, "q2", "b"))
    assert send(back(6, "q3")) == ("q2",)
    assert state.lead_captured and state.answers()[-1] == ("contact", "lead")


def test_a_duplicate_go_back_is_answered_again_and_applied_once() -> None:
    c = on_size()
    first = c.send(back(4, "size"))
    again = c.send(back(4, "size"))
    assert again.events == () and again.state == first.state
    assert again.reply == first.reply
    stale = c.send(back(3, "size")).reply
    assert stale.error is not None and stale.error.code == "stale_command"


def test_a_decision_withdrawn_stays_logged_and_the_next_sees_the_answers_as_they_are() -> None:
    """Mobile and pitched is a decision point: going back keeps its EdgeChosen in
    the log; the policy asked again sees the new answers, not the withdrawn ones."""
    policy = FixedPolicy("contact")
    c = Conversation(policy)
    c.send(start(device="mobile"))
    c.send(answer(2, "ask_name", "Eve"))
    c.send(press(3, "roof", "pitched"))
    assert c.state.current_node == "contact"
    c.send(back(4, "contact"))
    c.send(press(5, "roof", "pitched"))
    first, second = [e for e in c.events if isinstance(e, EdgeChosen)]
    went = next(e for e in c.events if isinstance(e, WentBack))
    assert first.seq > went.withdrawn_seq and second.seq > went.seq
    assert [p.answers for p in policy.seen] == [
        (("ask_name", "answered"), ("roof", "pitched")),
        (("ask_name", "answered"), ("roof", "pitched")),
    ]


def test_resume_after_going_back_shows_the_reopened_question() -> None:
    """From the client's newest message, only the question again (its seq is new);
    from the start, the transcript without the withdrawn steps."""
    c = on_size()
    newest = c.state.steps[-1].seq
    c.send(back(4, "size"))
    resume = Resume(conversation_id=CID, at=200.0, after_seq=newest)
    (message,) = c.send(resume).reply.messages
    assert message.node_id == "roof" and message.seq > newest and message.answer is None
    everything = c.send(Resume(conversation_id=CID, at=201.0, after_seq=0)).reply
    assert [m.node_id for m in everything.messages] == ["ask_name", "hello", "roof"]


def test_deciding_go_backs_twice_is_bit_identical() -> None:
    commands: list[Command] = [
        start(),
        answer(2, "ask_name", "Eve"),
        press(3, "roof", "flat"),
        back(4, "size"),
        press(5, "roof", "pitched"),
        answer(6, "size", "80"),
        back(7, "contact"),
        answer(8, "size", "90"),
        lead(9),
    ]
    first, second = Conversation(), Conversation()
    for command in commands:
        first.send(command)
        second.send(command)
    assert [encode(e) for e in first.events] == [encode(e) for e in second.events]
    assert first.state.status == "completed"
    assert sum(isinstance(e, WentBack) for e in first.events) == 2


def test_the_fold_truncates_the_steps_at_the_withdrawn_one() -> None:
    steps = (
        Step(seq=2, node_id="q1", command_seq=1, answer="a"),
        Step(seq=4, node_id="m", command_seq=2),
        Step(seq=5, node_id="q2", command_seq=2, answer="b"),
        Step(seq=7, node_id="q3", command_seq=3),
    )
    state = ConversationState(CID, seq=7, last_command_seq=3, status="active", steps=steps)
    went = WentBack(
        conversation_id=CID,
        seq=8,
        id=event_id(CID, 8),
        at=9.0,
        command_seq=4,
        node_id="q2",
        from_node="q3",
        withdrawn_seq=5,
    )
    after = evolve(state, went)
    assert after.steps == steps[:2] and after.current_node == "m"
    assert after.last_command_seq == 4 and after.seq == 8
    assert after.answers() == (("q1", "a"),)


def test_go_back_commands_events_and_frames_round_trip() -> None:
    command = back(4, "size")
    assert decode_command(encode(command)) == command
    c = on_size()
    for event in c.send(back(4, "size")).events:
        assert decode_event(encode(event)) == event
    assert parse_client_frame('{"type":"back","v":1,"seq":4,"node":"size"}') == BackFrame(
        seq=4, node="size"
    )


@pytest.mark.parametrize(
    "text",
    [
        '{"type":"back","v":1,"node":"size"}',
        '{"type":"back","v":1,"seq":0,"node":"size"}',
        '{"type":"back","v":1,"seq":4,"node":""}',
        '{"type":"back","v":1,"seq":4.0,"node":"size"}',
        '{"type":"back","v":1,"seq":4,"node":"' + "x" * 65 + '"}',
    ],
)
def test_hostile_back_frames_are_malformed(text: str) -> None:
    with pytest.raises(FrameError) as caught:
        parse_client_frame(text)
    assert caught.value.code == "malformed_frame"


def test_the_journal_keeps_a_go_back_as_it_is_without_a_key() -> None:
    c = on_size()
    command = back(4, "size")
    events = c.send(command).events
    assert not needs_key(command, events)
    assert seal_for_journal(command, events, None) == command

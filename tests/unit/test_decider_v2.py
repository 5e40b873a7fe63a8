"""The decider on flow format v2: conditions, free-text answers and their
validation, personal answers sealed, templates rendered from state at reply
time (personal values opened in memory only, never in events)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from projector.plan import plan
from schemas.codec import encode
from schemas.commands import (
    AnswerQuestion,
    Command,
    PressButton,
    Resume,
    StartConversation,
    SubmitLead,
    VisitorContext,
)
from schemas.events import CommandRejected, EdgeChosen, Event, NodeEntered, QuestionAnswered
from schemas.replies import InputView
from services.conversation.decider import Decision, decide
from services.conversation.journal import is_sealed, open_from_journal, seal_for_journal
from services.conversation.scope import Opener
from services.conversation.sealing import AesGcmSealer, KeyRequired, NoSealer, Unsealable
from services.conversation.state import ConversationState
from services.policy_port import DecisionPoint, EdgeChoice
from tests.unit.flows_v2 import roofer

CID = "conv-v2"
KEY = bytes(range(32))
NAME = "Zoë **Quux**"


@dataclass
class FixedPolicy:
    chosen: str
    seen: list[DecisionPoint] = field(default_factory=list)

    def choose(self, point: DecisionPoint) -> EdgeChoice:
        self.seen.append(point)
        return EdgeChoice(chosen=self.chosen, propensity=0.5, policy_version="fixed", seed=7)


def start(device: str = "desktop") -> StartConversation:
    context = VisitorContext(device=device, locale="en-GB")  # type: ignore[arg-type]
    return StartConversation(
        conversation_id=CID, seq=1, at=100.0, flow_id="roofer", site_id="s", context=context
    )


def answer(seq: int, node: str, value: str = "", skip: bool = False) -> AnswerQuestion:
    return AnswerQuestion(
        conversation_id=CID, seq=seq, at=100.0 + seq, node_id=node, value=value, skip=skip
    )


def press(seq: int, node: str, button: str) -> PressButton:
    return PressButton(conversation_id=CID, seq=seq, at=100.0 + seq, node_id=node, button_id=button)


class Conversation:
    def __init__(self, policy: FixedPolicy | None = None, opener: Opener | None = None) -> None:
        self.state = ConversationState(CID)
        self.events: list[Event] = []
        self.policy = policy or FixedPolicy("contact")
        self.sealer = AesGcmSealer(KEY)
        self.opener = self.sealer if opener is None else opener

    def send(self, command: Command) -> Decision:
        decision = decide(self.state, command, roofer(), self.policy, self.sealer, self.opener)
        self.state = decision.state
        self.events.extend(decision.events)
        return decision

    def entered(self) -> list[str]:
        return [e.node_id for e in self.events if isinstance(e, NodeEntered)]


def test_start_asks_the_free_text_question_with_its_input() -> None:
    reply = Conversation().send(start()).reply
    (message,) = reply.messages
    assert (message.kind, message.node_id) == ("input", "ask_name")
    assert message.input == InputView(type="text", max_length=40, placeholder="Your first name")


def test_a_personal_answer_is_sealed_and_the_greeting_renders_it_escaped() -> None:
    """The name is in no event in clear; the next message shows it, escaped, with
    the image and link of the node; the buttons' text renders it too."""
    c = Conversation()
    c.send(start())
    decision = c.send(answer(2, "ask_name", NAME))
    (answered,) = [e for e in decision.events if isinstance(e, QuestionAnswered)]
    assert answered.personal and answered.value == "" and answered.sealed
    assert all(b"Zo" not in encode(e) for e in c.events)
    hello, roof = decision.reply.messages
    assert hello.text == (
        r"Nice to meet you, Zoë \*\*Quux\*\*! See [our guide](https://example.com/guide)."
    )
    assert hello.image is not None and hello.image.alt == "A tiled roof"
    assert roof.text == r"What kind of roof do you have, Zoë \*\*Quux\*\*?"


def test_without_the_key_a_personal_value_renders_its_fallback() -> None:
    """No opener (replay) or an erased key: the fallback; NoSealer asks for the key."""

    class Erased:
        def open(self, sealed: str, event_id: str) -> bytes:
            raise Unsealable("erased")

    c = Conversation(opener=Erased())
    c.send(start())
    hello, _ = c.send(answer(2, "ask_name", "Eve")).reply.messages
    assert hello.text.startswith("Nice to meet you, there!")
    resume = Resume(conversation_id=CID, at=300.0, after_seq=0)
    with pytest.raises(KeyRequired):
        decide(c.state, resume, roofer(), c.policy, NoSealer(), NoSealer())
    replay = decide(c.state, resume, roofer(), c.policy, NoSealer(), None).reply
    assert replay.messages[0].answer == "Answer sent"
    opened = decide(c.state, resume, roofer(), c.policy, NoSealer(), c.sealer).reply
    assert opened.messages[0].answer == "Eve"
    assert opened.messages[1].text.startswith("Nice to meet you, Eve!")


def test_sealing_a_personal_answer_needs_the_key() -> None:
    c = Conversation()
    c.send(start())
    with pytest.raises(KeyRequired):
        decide(c.state, answer(2, "ask_name", "Eve"), roofer(), c.policy, NoSealer(), NoSealer())


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("abc", "Please enter a number."),
        ("0", "at least 1"),
        ("5000", "at most 2000"),
        ("   ", "Please enter an answer."),
    ],
)
def test_an_invalid_answer_is_refused_retryably_and_changes_nothing(
    value: str, message: str
) -> None:
    c = Conversation()
    c.send(start())
    c.send(answer(2, "ask_name", "Eve"))
    c.send(press(3, "roof", "flat"))
    before = c.state
    decision = c.send(answer(4, "size", value))
    (rejected,) = decision.events
    assert isinstance(rejected, CommandRejected) and rejected.reason == "invalid_answer"
    assert value.strip() == "" or value not in rejected.detail
    assert decision.reply.error is not None and decision.reply.error.retryable
    assert message in decision.reply.error.message
    assert decision.state.current_node == before.current_node == "size"
    assert decision.state.steps == before.steps
    good = c.send(answer(5, "size", "150"))
    assert [m.node_id for m in good.reply.messages] == ["big_flat", "contact"]
    assert good.reply.messages[0].text == "A big flat roof (150 m²)! We love those."


@pytest.mark.parametrize(
    ("roof", "size", "expected"),
    [
        ("flat", "150", "big_flat"),
        ("flat", "99", "small_flat"),
        ("pitched", "150", "contact"),
    ],
)
def test_conditions_branch_on_earlier_answers(roof: str, size: str, expected: str) -> None:
    c = Conversation()
    c.send(start())
    c.send(answer(2, "ask_name", "Eve"))
    c.send(press(3, "roof", roof))
    c.send(answer(4, "size", size))
    assert c.entered()[-1] == expected or c.entered()[-2] == expected


def test_a_skipped_answer_is_missing_for_conditions() -> None:
    c = Conversation()
    c.send(start())
    c.send(answer(2, "ask_name", "Eve"))
    c.send(press(3, "roof", "flat"))
    decision = c.send(answer(4, "size", skip=True))
    (answered,) = [e for e in decision.events if isinstance(e, QuestionAnswered)]
    assert answered.skipped and not answered.value and not answered.sealed
    assert c.entered()[-1] == "small_flat" or c.entered()[-2] == "small_flat"


def test_skipping_a_question_that_does_not_allow_it_is_invalid() -> None:
    c = Conversation()
    c.send(start())
    decision = c.send(answer(2, "ask_name", skip=True))
    assert decision.reply.error is not None and decision.reply.error.code == "invalid_answer"


def test_a_condition_leads_to_a_decision_point_the_policy_decides() -> None:
    """On mobile the pitched button's condition picks [size, contact]: the policy
    chooses among exactly those candidates; on desktop the default, no decision."""
    policy = FixedPolicy("contact")
    c = Conversation(policy)
    c.send(start(device="mobile"))
    c.send(answer(2, "ask_name", "Eve"))
    c.send(press(3, "roof", "pitched"))
    (chosen,) = [e for e in c.events if isinstance(e, EdgeChosen)]
    assert chosen.candidates == ("size", "contact") and chosen.chosen == "contact"
    assert policy.seen[0].candidates == ("size", "contact")
    desktop = Conversation(FixedPolicy("contact"))
    desktop.send(start())
    desktop.send(answer(2, "ask_name", "Eve"))
    desktop.send(press(3, "roof", "pitched"))
    assert not [e for e in desktop.events if isinstance(e, EdgeChosen)]
    assert desktop.entered()[-1] == "size"


def test_the_end_renders_lead_fields_and_deciding_twice_is_bit_identical() -> None:
    """Same commands, same events byte for byte (sealed blobs included)."""
    commands: list[Command] = [
        start(),
        answer(2, "ask_name", "Eve"),
        press(3, "roof", "flat"),
        answer(4, "size", "120"),
        SubmitLead(
            conversation_id=CID,
            seq=5,
            at=105.0,
            node_id="contact",
            fields={"email": "eve@example.com", "consent": "yes"},
        ),
    ]
    first, second = Conversation(), Conversation()
    for command in commands:
        reply = first.send(command).reply
        second.send(command)
    assert [encode(e) for e in first.events] == [encode(e) for e in second.events]
    assert reply.messages[-1].text == "Thanks Eve, we'll write to eve@example.com."
    assert all(b"eve@example.com" not in encode(e) for e in first.events)


def test_the_journal_seals_a_personal_answer_and_keeps_a_clear_one() -> None:
    c = Conversation()
    c.send(start())
    personal = answer(2, "ask_name", "Eve")
    events = c.send(personal).events
    journaled = seal_for_journal(personal, events, KEY)
    assert isinstance(journaled, AnswerQuestion) and "Eve" not in journaled.value
    assert is_sealed(journaled) and open_from_journal(journaled, KEY) == personal
    with pytest.raises(Unsealable):
        open_from_journal(journaled, None)
    c.send(press(3, "roof", "flat"))
    clear = answer(4, "size", "42")
    assert seal_for_journal(clear, c.send(clear).events, None) == clear
    bad = answer(5, "contact", "x")  # wrong node: refused unread, journaled without value
    assert seal_for_journal(bad, c.send(bad).events, None) == answer(5, "contact", "")


def test_read_models_count_an_input_node_like_a_question_and_keep_its_value_out() -> None:
    """The projector's plan: entered and left an input node, edges of a condition's
    branch; the transcript notes the answer without its value."""
    c = Conversation()
    c.send(start())
    c.send(answer(2, "ask_name", "Eve"))
    c.send(press(3, "roof", "flat"))
    c.send(answer(4, "size", "150"))
    view, writes = plan(None, c.events)
    assert view is not None and writes is not None
    fields = {f for i in writes.increments for f in [i.field]}
    assert {"entered:ask_name", "left:ask_name", "entered:size", "left:size"} <= fields
    assert "edge:size>big_flat" in fields
    assert ("ask_name", "answered") in view.answers
    assert all(b"Eve" not in line for line in writes.transcript)
    assert any(b'"answer"' in line and b"ask_name" in line for line in writes.transcript)

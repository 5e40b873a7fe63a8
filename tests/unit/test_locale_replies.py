"""The visitor's locale picks the language of replies (issue 19, several
languages): the flow's texts, the server's own messages (invalid answers, lead
form errors, error replies, answer labels on resume), on the reply, the resume
and the reply to a duplicate; the events are the same in every language."""

from __future__ import annotations

import re

import pytest

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
from schemas.events import Event
from schemas.flow import Flow
from services.conversation.decider import Decision, decide
from services.conversation.messages import CATALOGUE, ERRORS, LANGUAGES, Message, localise
from services.conversation.replies import ERROR_MESSAGES
from services.conversation.sealing import AesGcmSealer
from services.conversation.state import ConversationState
from services.policy_port import DecisionPoint, EdgeChoice
from tests.unit.flows_locales import bilingual
from tests.unit.flows_v2 import roofer

CID = "conv-locale"
KEY = bytes(range(32))


class FirstEdge:
    def choose(self, point: DecisionPoint) -> EdgeChoice:
        return EdgeChoice(chosen=point.candidates[0], propensity=1.0, policy_version="p", seed=1)


class Conversation:
    def __init__(self, flow: Flow, locale: str) -> None:
        self.flow = flow
        self.locale = locale
        self.state = ConversationState(CID)
        self.events: list[Event] = []
        self.sealer = AesGcmSealer(KEY)

    def send(self, command: Command) -> Decision:
        decision = decide(self.state, command, self.flow, FirstEdge(), self.sealer, self.sealer)
        self.state = decision.state
        self.events.extend(decision.events)
        return decision

    def start(self) -> Decision:
        context = VisitorContext(device="desktop", locale=self.locale)
        command = StartConversation(
            conversation_id=CID, seq=1, at=1.0, flow_id=self.flow.id, site_id="s", context=context
        )
        return self.send(command)

    def answer(self, seq: int, node: str, value: str = "", skip: bool = False) -> Decision:
        command = AnswerQuestion(
            conversation_id=CID, seq=seq, at=1.0 + seq, node_id=node, value=value, skip=skip
        )
        return self.send(command)

    def press(self, seq: int, node: str, button: str) -> Decision:
        command = PressButton(
            conversation_id=CID, seq=seq, at=1.0 + seq, node_id=node, button_id=button
        )
        return self.send(command)

    def lead(self, seq: int, fields: dict[str, str]) -> Decision:
        command = SubmitLead(
            conversation_id=CID, seq=seq, at=1.0 + seq, node_id="form", fields=fields
        )
        return self.send(command)

    def resume(self) -> Decision:
        return self.send(Resume(conversation_id=CID, seq=0, at=99.0, after_seq=0))


def play(locale: str) -> tuple[Conversation, list[Decision]]:
    c = Conversation(bilingual(), locale)
    decisions = [
        c.start(),
        c.answer(2, "name", "Zoë"),
        c.answer(3, "colour", "rot"),  # the German label picks the choice in any locale
        c.press(4, "roof", "flat"),
        c.lead(5, {"email": "zoe@example.com"}),
    ]
    return c, decisions


def texts(decision: Decision) -> list[str]:
    return [m.text for m in decision.reply.messages]


def test_a_german_visitor_reads_german_and_an_english_one_english() -> None:
    _, german = play("de-DE")
    assert texts(german[0]) == ["Wie heißen Sie?"]
    (ask,) = german[0].reply.messages
    assert ask.input is not None and ask.input.placeholder == "Vorname"
    assert ask.image is not None and ask.image.alt == "Ein Winken"
    assert texts(german[1]) == ["Hallo Zoë! Ihre Farbe?"]
    choices = german[1].reply.messages[0].input
    assert choices is not None and [c.label for c in choices.choices] == ["Rot", "Blue"]
    assert [b.label for b in german[2].reply.messages[0].buttons] == ["Flach", "Other"]
    assert german[3].reply.messages[0].fields[0].label == "E-Mail"
    assert texts(german[4]) == ["Tschüss"]

    _, english = play("en-US")
    assert texts(english[0]) == ["What's your **name**?"]
    assert texts(english[1]) == ["Hi Zoë! Your colour?"]
    assert texts(english[4]) == ["Bye"]


def test_the_events_are_the_same_in_every_language() -> None:
    """Only the start context's locale differs: replay --verify is unaffected."""
    german, _ = play("de-DE")
    english, _ = play("en-US")

    def neutral(event: Event) -> bytes:
        data = encode(event)
        return re.sub(rb'"locale":"[^"]*"', b"", re.sub(rb'"sealed":"[^"]*"', b"", data))

    assert [type(e) for e in german.events] == [type(e) for e in english.events]
    assert [neutral(e) for e in german.events] == [neutral(e) for e in english.events]
    assert not any(b"Rot" in encode(e) or b"Wie hei" in encode(e) for e in german.events)


def test_the_resume_and_a_duplicate_speak_the_visitor_s_language() -> None:
    c, decisions = play("de-CH")  # no de-CH in the flow: its language
    resumed = c.resume().reply.messages
    assert [m.text for m in resumed] == [
        "Wie heißen Sie?",
        "Hallo Zoë! Ihre Farbe?",
        "Roof?",
        "Ihre E-Mail",
        "Tschüss",
    ]
    assert [m.answer for m in resumed[:4]] == ["Zoë", "Rot", "Flach", "Angaben gesendet"]
    again = c.lead(5, {"email": "zoe@example.com"})  # the same command again
    assert again.events == () and again.reply.messages == decisions[4].reply.messages


def test_an_unknown_language_gets_the_fallback() -> None:
    _, decisions = play("ja-JP")
    assert texts(decisions[0]) == ["What's your **name**?"]


def test_a_flow_without_locales_replies_byte_identically_in_english() -> None:
    """A v1/v2 flow without locales: the same texts for every visitor."""
    flow = roofer()
    replies = []
    for locale in ("en-GB", "de-DE"):
        c = Conversation(flow, locale)
        replies.append(c.start().reply)
    assert replies[0].messages == replies[1].messages


@pytest.mark.parametrize(
    ("locale", "value", "message"),
    [
        ("de-DE", "lots", "Bitte geben Sie eine Zahl ein."),
        ("de-DE", "0", "Bitte geben Sie eine Zahl von mindestens 1 ein."),
        ("fr-FR", "5000", "Veuillez saisir un nombre inférieur ou égal à 2000."),
        ("es", "lots", "Escriba un número."),
        ("en-GB", "0", "Please enter a number of at least 1."),
        ("pl-PL", "0", "Please enter a number of at least 1."),
    ],
)
def test_an_invalid_answer_is_explained_in_the_visitor_s_language(
    locale: str, value: str, message: str
) -> None:
    c = Conversation(roofer(), locale)
    c.start()
    c.answer(2, "ask_name", "Ann")
    c.press(3, "roof", "flat")
    refused = c.answer(4, "size", value)
    assert refused.reply.error is not None
    assert refused.reply.error.code == "invalid_answer"
    assert refused.reply.error.message == message
    (event,) = refused.events
    assert getattr(event, "detail", "").startswith("Please enter a number")  # logged in English


def test_lead_form_errors_in_the_visitor_s_language() -> None:
    c = Conversation(bilingual(), "de-AT")
    c.start()
    c.answer(2, "name", "Ann")
    c.answer(3, "colour", "Blue")
    c.press(4, "roof", "other")
    refused = c.lead(5, {"email": "not an address", "x": "1"})
    error = refused.reply.error
    assert error is not None and error.code == "invalid_lead"
    assert error.message == "Bitte prüfen Sie die markierten Felder."
    assert error.fields == {
        "email": "Das ist keine gültige E-Mail-Adresse.",
        "x": "Dieses Feld gehört nicht zum Formular.",
    }
    # a duplicate of the refused command: the same words
    assert c.lead(5, {"email": "not an address", "x": "1"}).reply.error == error


def test_an_error_before_the_start_follows_the_start_command_s_locale() -> None:
    c = Conversation(bilingual(), "es-MX")
    context = VisitorContext(locale="es-MX")
    command = StartConversation(
        conversation_id=CID, seq=1, at=1.0, flow_id="nope", site_id="s", context=context
    )
    decision = decide(c.state, command, None, FirstEdge(), c.sealer)
    assert decision.reply.error is not None
    assert decision.reply.error.message == "Este cuestionario no está disponible."


def test_every_message_has_every_language_with_the_same_parameters() -> None:
    for message in CATALOGUE:
        params = set(re.findall(r"\{(\w+)\}", message.en))
        for language in LANGUAGES:
            text = message.text(language)
            assert text.strip(), (message.en, language)
            assert set(re.findall(r"\{(\w+)\}", text)) == params, (message.en, language)


def test_every_error_code_has_its_translations() -> None:
    for code, english in ERROR_MESSAGES.items():
        assert code in ERRORS, code
        assert ERRORS[code].en == english


@pytest.mark.parametrize("message", CATALOGUE)
def test_localise_reads_back_what_the_decider_logged(message: Message) -> None:
    params = {name: "12.5" for name in re.findall(r"\{(\w+)\}", message.en)}
    logged = message(**params)
    for language in ("de", "fr", "es"):
        assert localise(logged, f"{language}-XX") == message.text(language).format(**params)
    assert localise(logged, "en-US") == logged
    assert localise(logged, "it") == logged


def test_localise_leaves_other_texts_alone() -> None:
    assert localise("Something the catalogue has not", "de") == "Something the catalogue has not"
    assert localise("", "de") == ""


def test_a_skipped_answer_is_labelled_in_the_visitor_s_language() -> None:
    c = Conversation(roofer(), "fr-FR")
    c.start()
    c.answer(2, "ask_name", "Ann")
    c.press(3, "roof", "flat")
    c.answer(4, "size", "", skip=True)
    resumed = c.resume().reply.messages
    assert resumed[3].answer == "Passé"

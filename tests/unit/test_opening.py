"""The instant opening's builder (services.opening): the messages the server's first
reply will hold, per locale, and the flows whose opening reads the visitor."""

from __future__ import annotations

import dataclasses
from functools import cache

import orjson
import pytest

from schemas.commands import StartConversation, VisitorContext
from schemas.flow import Branch, Flow
from schemas.flow_validation import validate_text
from schemas.frames import message_frame
from services.conversation.decider import decide
from services.conversation.sealing import NoSealer
from services.conversation.state import ConversationState
from services.opening import (
    DECISION_POINT,
    READS_CONTEXT,
    build_opening,
    build_openings,
    opening_locale,
)
from services.policy_port import DecisionPoint, EdgeChoice

TWO_LANGUAGES = """\
id: opening-test
version: {version}
title: Opening test
locales: [en, de]
start: hello
nodes:
  - id: hello
    kind: message
    text: {{en: "Hello, **{{{{ name | friend }}}}**!", de: "Hallo, **{{{{ name | Freund }}}}**!"}}
    next: about
  - id: about
    kind: message
    text: {{en: Two questions., de: Zwei Fragen.}}
    next: size
  - id: size
    kind: question
    text: {{en: How big?, de: Wie groß?}}
    buttons:
      - {{id: small, label: {{en: Small, de: Klein}}, next: name_q}}
      - {{id: big, label: {{en: Big, de: Groß}}, next: [name_q, done]}}
  - id: name_q
    kind: input
    store_as: name
    text: Your name?
    input: {{type: text, personal: false}}
    next: done
  - id: done
    kind: end
    text: {{en: Bye., de: Tschüss.}}
"""


@cache  # validation (YAML, JSON Schema) is the costly part: once per text
def flow_of(text: str) -> Flow:
    flow, errors = validate_text(text, "opening-test.yaml")
    assert not errors, errors
    assert flow is not None
    return flow


def two_languages(version: int = 1) -> Flow:
    return flow_of(TWO_LANGUAGES.format(version=version))


def server_first_reply(flow: Flow, context: VisitorContext) -> list[object]:
    """What the gateway sends after a real start: the message frames' bodies."""
    start = StartConversation(
        conversation_id="c-real", seq=1, at=1.7e9, flow_id=flow.id, site_id="acme", context=context
    )
    decision = decide(ConversationState("c-real"), start, flow, _Refuse(), NoSealer())
    return [
        orjson.loads(message_frame(m, decision.reply.ack))["message"]
        for m in decision.reply.messages
    ]


class _Refuse:
    def choose(self, point: DecisionPoint) -> EdgeChoice:
        raise AssertionError("a start asks no policy")


def test_the_opening_is_the_servers_first_reply_with_its_seqs() -> None:
    flow = two_languages()
    opening = build_opening(flow, "en")
    doc = orjson.loads(opening.body)
    assert doc["instant"] is True and doc["ack"] == 1
    assert [m["seq"] for m in doc["messages"]] == [2, 3, 4]  # event 1 is ConversationStarted
    assert [m["node_id"] for m in doc["messages"]] == ["hello", "about", "size"]
    assert doc["messages"][0]["text"] == "Hello, **friend**!"  # no answer yet: the fallback
    assert [b["label"] for b in doc["messages"][2]["buttons"]] == ["Small", "Big"]
    # byte for byte what a real visitor's start gets, whatever else its context says
    visitor = VisitorContext(
        device="mobile", locale="en-GB", utm_source="ads", time_zone="Asia/Tokyo"
    )
    assert doc["messages"] == server_first_reply(flow, visitor)


def test_one_opening_per_declared_locale_and_the_locale_the_server_picks() -> None:
    flow = two_languages()
    openings = build_openings(flow)
    assert sorted(openings) == ["de", "en"]
    de = orjson.loads(openings["de"].body)
    assert de["locale"] == "de"
    assert [m["text"] for m in de["messages"]] == [
        "Hallo, **Freund**!",
        "Zwei Fragen.",
        "Wie groß?",
    ]
    assert de["messages"] == server_first_reply(flow, VisitorContext(locale="de-AT"))
    assert openings["de"].digest != openings["en"].digest
    assert opening_locale(flow, "de-AT") == "de"
    assert opening_locale(flow, "fr-FR") == "en"  # the fallback, as the server replies


def test_a_flow_without_locales_has_one_opening() -> None:
    flow = flow_of(
        "id: plain\nversion: 3\ntitle: Plain\nstart: q\nnodes:\n"
        "  - {id: q, kind: question, text: Yes?, buttons: [{id: y, label: 'Y', next: e}]}\n"
        "  - {id: e, kind: end, text: Done.}\n"
    )
    openings = build_openings(flow)
    assert list(openings) == [""]
    assert opening_locale(flow, "de-DE") == ""
    opening = openings[""]
    assert opening.name == f"3.{opening.digest}.json"
    assert [m["seq"] for m in orjson.loads(opening.body)["messages"]] == [2]


def test_the_document_is_deterministic_and_named_by_its_content() -> None:
    one, again, two = (
        build_opening(two_languages(1)),
        build_opening(two_languages(1)),
        build_opening(two_languages(2)),
    )
    assert one.body == again.body and one.digest == again.digest
    assert two.digest != one.digest and two.name.startswith("2.")


def test_a_template_reading_the_context_falls_back() -> None:
    text = TWO_LANGUAGES.replace(
        "{{en: How big?, de: Wie groß?}}",
        '{{en: "How big, {{{{ context.utm_source | friend }}}}?", de: Wie groß?}}',
    )
    flow = flow_of(text.format(version=1))
    for opening in build_openings(flow).values():  # the German one too: one flow, one answer
        doc = orjson.loads(opening.body)
        assert (opening.instant, opening.reason) == (False, READS_CONTEXT)
        assert doc == {
            "v": 1,
            "flow": "opening-test",
            "version": 1,
            "locale": opening.locale,
            "instant": False,
            "reason": READS_CONTEXT,
        }


def test_a_button_label_reading_the_context_falls_back() -> None:
    text = TWO_LANGUAGES.replace("{{en: Small, de: Klein}}", '"Small on {{{{ context.device }}}}"')
    assert build_opening(flow_of(text.format(version=1)), "en").reason == READS_CONTEXT


def on_mobile(target: str) -> str:
    """A conditional next to ``target`` that reads the visitor's device."""
    return f"    next:\n      - {{{{when: 'context.device == \"mobile\"', to: {target}}}}}\n" + (
        f"      - {{{{to: {target}}}}}\n"
    )


def test_a_condition_on_the_context_on_the_way_falls_back() -> None:
    text = TWO_LANGUAGES.replace("    next: size\n", on_mobile("size"))
    assert build_opening(flow_of(text.format(version=1)), "en").reason == READS_CONTEXT


def test_conditions_after_the_first_question_do_not_matter() -> None:
    text = TWO_LANGUAGES.replace("    next: done\n", on_mobile("done"))
    assert build_opening(flow_of(text.format(version=1)), "en").instant


def test_a_decision_point_on_the_way_falls_back() -> None:
    flow = two_languages()
    about = dataclasses.replace(flow.node("about"), branches=(Branch(None, ("size", "name_q")),))
    forked = dataclasses.replace(flow, nodes={**flow.nodes, "about": about}, translations={})
    opening = build_opening(forked, "en")
    assert (opening.instant, opening.reason) == (False, DECISION_POINT)


@pytest.mark.parametrize("kind", ["input", "lead_form"])
def test_the_opening_ends_at_the_first_node_that_waits(kind: str) -> None:
    first = (
        "{id: first, kind: input, text: Name?, input: {type: text}, next: e}"
        if kind == "input"
        else "{id: first, kind: lead_form, text: Email?, "
        "fields: [{name: email, type: email, label: Email, required: true}], next: e}"
    )
    flow = flow_of(
        "id: waits\nversion: 1\ntitle: Waits\nstart: hi\nnodes:\n"
        "  - {id: hi, kind: message, text: Hi., next: first}\n"
        f"  - {first}\n  - {{id: e, kind: end, text: Done.}}\n"
    )
    messages = orjson.loads(build_opening(flow).body)["messages"]
    assert [(m["seq"], m["kind"]) for m in messages] == [(2, "message"), (3, kind)]

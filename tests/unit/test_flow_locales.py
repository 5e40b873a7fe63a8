"""Texts per locale in flows (issue 19, several languages): parsing, every
validation error (file, node and field named), and which locale a visitor's
locale picks."""

from __future__ import annotations

import pytest

from schemas.flow import Flow
from schemas.flow_errors import FlowError
from schemas.flow_locales import locale_problems
from schemas.flow_validation import validate_text
from schemas.locales import is_locale_tag, pick_locale, resolve
from tests.unit.flows_locales import BILINGUAL


def valid(text: str) -> Flow:
    flow, errors = validate_text(text, "f.yaml")
    assert flow is not None, [str(e) for e in errors]
    return flow


def errors(text: str) -> list[str]:
    flow, found = validate_text(text, "f.yaml")
    assert flow is None
    return [str(e) for e in found]


def test_the_fallback_texts_are_the_flow_s_and_each_locale_has_its_own() -> None:
    flow = valid(BILINGUAL)
    assert flow.locales == ("en", "de")
    assert flow.node("name").text == "What's your **name**?"
    german = flow.for_locale("de-DE")
    assert german is flow.translations["de"]
    name, colour = german.node("name"), german.node("colour")
    assert name.text == "Wie heißen Sie?"
    assert name.image is not None and name.image.alt == "Ein Winken"
    assert name.input is not None and name.input.placeholder == "Vorname"
    assert colour.input is not None
    assert [c.label for c in colour.input.choices] == ["Rot", "Blue"]  # a string: every locale
    assert [b.label for b in german.node("roof").buttons] == ["Flach", "Other"]
    assert german.node("form").fields[0].label == "E-Mail"
    assert german.node("bye").text == "Tschüss"
    # only texts differ: the graph is the same
    assert german.start == flow.start and german.key == flow.key
    assert [n.successors() for n in german.nodes.values()] == [
        n.successors() for n in flow.nodes.values()
    ]


def test_a_choice_knows_its_label_in_every_locale() -> None:
    colour = valid(BILINGUAL).node("colour")
    assert colour.input is not None
    assert colour.input.choices[0].labels == ("Red", "Rot")
    assert colour.input.choices[1].labels == ()


def test_default_locale_names_the_fallback() -> None:
    text = BILINGUAL.replace("locales: [en, de]", "locales: [en, de]\ndefault_locale: de")
    flow = valid(text)
    assert flow.locales == ("de", "en")
    assert flow.node("bye").text == "Tschüss"
    assert flow.for_locale("fr").node("bye").text == "Tschüss"
    assert flow.for_locale("en-US").node("bye").text == "Bye"


@pytest.mark.parametrize(
    ("visitor", "picked"),
    [
        ("de-DE", "de"),  # the language
        ("de", "de"),
        ("DE_de", "de"),  # any case, underscores
        ("de-CH", "de-CH"),  # the exact tag first
        ("de-ch", "de-CH"),
        ("en-GB", "en"),
        ("fr-FR", "en"),  # not declared: the fallback
        ("", "en"),
        ("pt-BR", "pt-BR"),
        ("pt", "pt-BR"),  # the first region of the language
        ("pt-PT", "pt-BR"),
    ],
)
def test_pick_locale(visitor: str, picked: str) -> None:
    assert pick_locale(("en", "de", "de-CH", "pt-BR"), visitor) == picked


def test_a_flow_without_locales_is_unchanged() -> None:
    plain = "\n".join(
        [
            "id: p",
            "version: 1",
            "start: a",
            "nodes:",
            "  - {id: a, kind: message, text: Hi, next: b}",
            "  - {id: b, kind: end, text: Bye}",
        ]
    )
    flow = valid(plain)
    assert flow.locales == () and flow.translations == {}
    assert flow.for_locale("de-DE") is flow
    assert pick_locale((), "de") == ""


def test_resolve() -> None:
    assert resolve("x", "de", "en") == "x"
    assert resolve({"en": "a", "de": "b"}, "de", "en") == "b"
    assert resolve({"en": "a"}, "de", "en") == "a"
    assert resolve({"de": "b"}, "fr", "en") == "b"  # no fallback (an error): the first
    assert resolve(None, "de", "en") == ""


@pytest.mark.parametrize(
    ("tag", "ok"),
    [
        ("de", True),
        ("de-CH", True),
        ("zh-Hant", True),
        ("zh-Hant-TW", True),
        ("es-419", True),
        ("gsw", True),
        ("de_CH", False),
        ("DE", False),
        ("de-ch", False),
        ("english", False),
        ("", False),
    ],
)
def test_locale_tags(tag: str, ok: bool) -> None:
    assert is_locale_tag(tag) is ok


MINIMAL = """\
id: t
version: 1
{head}
start: a
nodes:
  - id: a
    kind: question
    text: {text}
    buttons:
      - {{id: b, label: {label}, next: z}}
  - id: z
    kind: end
    text: Bye
"""


def minimal(head: str = "locales: [en, de]", text: str = "Hi", label: str = "Ok") -> str:
    return MINIMAL.format(head=head, text=text, label=label)


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (
            minimal(text="{de: Hallo}"),
            ["f.yaml: a.text: no text for the fallback locale 'en'"],
        ),
        (
            minimal(label="{en: Ok, fr: Oui}"),
            ["f.yaml: a.buttons.b.label.fr: locale 'fr' is not declared in locales (en, de)"],
        ),
        (
            minimal(head="", text="{en: Hi}"),
            [
                "f.yaml: a.text: a text per locale needs locales at the top of the flow"
                " (e.g. locales: [en, de])"
            ],
        ),
        (
            minimal(head="default_locale: en"),
            ["f.yaml: (flow).default_locale: default_locale needs locales, e.g. locales: [en, de]"],
        ),
        (
            minimal(head="locales: [en, de]\ndefault_locale: fr"),
            ["f.yaml: (flow).default_locale: 'fr' is not one of the locales (en, de)"],
        ),
        (
            minimal(text="{en: Hi, de_CH: Hallo}"),
            ["f.yaml: a.text: 'de_CH' is not a locale tag like en, de or de-CH"],
        ),
        (
            minimal(head="locales: [en, German]"),
            ["f.yaml: (flow).locales[1]: 'German' is not a locale tag like en, de or de-CH"],
        ),
        (
            minimal(head="locales: [en, de, en]"),
            ["f.yaml: (flow).locales: ['en', 'de', 'en'] has non-unique elements"],
        ),
        (
            minimal(text="{en: Hi, de: '   '}"),
            ["f.yaml: a.text.de: text is empty"],
        ),
        (
            minimal(text="{en: Hi, de: " + "x" * 1001 + "}"),
            ["f.yaml: a.text.de: text is longer than 1000 characters"],
        ),
        (
            minimal(text="{en: Hi, de: 'Hallo {{nmae}}'}"),
            [
                "f.yaml: a.text.de: unknown variable 'nmae': no question, input or lead field"
                " stores it"
            ],
        ),
        (
            minimal(text="{en: Hi, de: 'Hallo {{a b}}'}"),
            ["f.yaml: a.text.de: {{a b}} is not a variable name"],
        ),
        (
            minimal(text="{en: Hi, de: '[x](javascript:x)'}"),
            ["f.yaml: a.text.de: link 'javascript:x': links must be https, http or mailto"],
        ),
        (
            minimal(label="{en: Ok, de: ''}"),
            ["f.yaml: a.buttons.b.label.de: label is empty"],
        ),
        (
            minimal(label="{en: Ok, de: " + "y" * 41 + "}"),
            ["f.yaml: a.buttons.b.label.de: label is 41 characters, at most 40 fit a button"],
        ),
        (
            minimal(label="{en: Ok, de: '{{context.colour}}'}"),
            [
                "f.yaml: a.buttons.b.label.de: unknown context field 'colour' (one of device,"
                " referrer, utm_source, utm_medium, utm_campaign, locale, time_zone)"
            ],
        ),
        (
            minimal(text="{en: Hi, de: 5}"),
            ["f.yaml: a.text.de: 5 is not of type 'string'"],
        ),
        (
            minimal(text="{}"),
            ["f.yaml: a.text: {} should be non-empty"],
        ),
        (
            minimal(label="[Ok]"),
            ["f.yaml: a.buttons[0].label: ['Ok'] is not of type 'string'"],
        ),
    ],
)
def test_every_locale_error_names_file_node_and_field(doc: str, expected: list[str]) -> None:
    assert errors(doc) == expected


def test_inputs_fields_and_images_are_checked_in_every_locale() -> None:
    doc = (
        BILINGUAL.replace("placeholder: {en: First name, de: Vorname}", "placeholder: {de: V}")
        .replace("{id: red, label: {en: Red, de: Rot}}", "{id: red, label: {en: Red, de: ' '}}")
        .replace("label: {en: Email, de: E-Mail}", "label: {en: Email, it: Posta}")
        .replace("alt: {en: A wave, de: Ein Winken}", "alt: {en: A wave, de: ''}")
    )
    assert errors(doc) == ["f.yaml: name.image.alt.de: '' should be non-empty"]
    doc = doc.replace("alt: {en: A wave, de: ''}", "alt: A wave")
    assert errors(doc) == [
        "f.yaml: name.input.placeholder: no text for the fallback locale 'en'",
        "f.yaml: colour.input.choices.red.label.de: label is empty",
        "f.yaml: form.fields.email.label.it: locale 'it' is not declared in locales (en, de)",
    ]


def test_a_long_placeholder_is_refused_in_any_locale() -> None:
    doc = BILINGUAL.replace("de: Vorname}", "de: " + "v" * 101 + "}")
    assert errors(doc) == ["f.yaml: name.input.placeholder.de: '" + "v" * 101 + "' is too long"]


def test_errors_are_flow_errors() -> None:
    _, found = validate_text(minimal(text="{de: Hallo}"), "f.yaml")
    assert found == [FlowError("f.yaml", "a", "text", "no text for the fallback locale 'en'")]


def test_the_idle_nudge_message_is_checked_in_every_locale() -> None:
    """The flow's own texts (the idle nudge's message) follow the same rules."""
    doc = {
        "locales": ["en", "de"],
        "timers": {
            "idle": {"after": 60, "message": {"en": "Still there?", "de": " ", "fr": "Allo"}}
        },
        "nodes": [],
    }
    assert locale_problems(doc, {}) == [
        ("", "timers.idle.message.de", "text is empty"),
        ("", "timers.idle.message.fr", "locale 'fr' is not declared in locales (en, de)"),
    ]
    doc["timers"] = {"idle": {"after": 60, "message": {"de": "Noch da?"}}}
    assert locale_problems(doc, {}) == [
        ("", "timers.idle.message", "no text for the fallback locale 'en'")
    ]

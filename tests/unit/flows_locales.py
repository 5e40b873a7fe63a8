"""A flow in English and German for tests (texts per locale, issue 19):
a free-text name, a choice, a question, a lead form. Validated at first use."""

from __future__ import annotations

from functools import cache

from schemas.flow import Flow
from schemas.flow_validation import validate_text

BILINGUAL = """\
id: hello
version: 1
locales: [en, de]
start: name
nodes:
  - id: name
    kind: input
    text: {en: "What's your **name**?", de: "Wie heißen Sie?"}
    store_as: name
    image: {src: "https://example.com/a.png", alt: {en: A wave, de: Ein Winken}}
    input: {type: text, max_length: 40, placeholder: {en: First name, de: Vorname}}
    next: colour
  - id: colour
    kind: input
    text: {en: "Hi {{name | there}}! Your colour?", de: "Hallo {{name | du}}! Ihre Farbe?"}
    input:
      type: choice
      personal: false
      choices:
        - {id: red, label: {en: Red, de: Rot}}
        - {id: blue, label: Blue}
    next: roof
  - id: roof
    kind: question
    text: Roof?
    buttons:
      - {id: flat, label: {en: Flat, de: Flach}, next: form}
      - {id: other, label: Other, next: form}
  - id: form
    kind: lead_form
    text: {en: Your email, de: Ihre E-Mail}
    fields:
      - {name: email, type: email, label: {en: Email, de: E-Mail}, required: true}
    next: bye
  - id: bye
    kind: end
    text: {en: Bye, de: Tschüss}
"""


@cache
def bilingual() -> Flow:
    flow, errors = validate_text(BILINGUAL, "hello.yaml")
    assert flow is not None, errors
    return flow

"""A flow of format v2 for tests: a variable in a greeting, conditions on an
earlier answer (with a decision point behind one), free-text inputs (personal
and not), an image and a link. Validated by the real validator at import."""

from __future__ import annotations

from functools import cache

from schemas.flow import Flow
from schemas.flow_validation import validate_text

ROOFER_YAML = """\
id: roofer
version: 1
title: Roof check
start: ask_name
nodes:
  - id: ask_name
    kind: input
    text: Hi! What's your **first name**?
    store_as: name
    input: {type: text, max_length: 40, placeholder: Your first name}
    next: hello
  - id: hello
    kind: message
    text: "Nice to meet you, {{name | there}}! See [our guide](https://example.com/guide)."
    image: {src: "https://example.com/roof.png", alt: A tiled roof}
    next: roof
  - id: roof
    kind: question
    text: What kind of roof do you have, {{name | friend}}?
    buttons:
      - {id: flat, label: Flat, next: size}
      - id: pitched
        label: Pitched
        next:
          - {when: context.device == "mobile", to: [size, contact]}
          - {to: size}
  - id: size
    kind: input
    text: How many square metres is it?
    input: {type: number, min: 1, max: 2000, personal: false, skippable: true}
    next:
      - when: roof == "flat" and size >= 100
        to: big_flat
      - when: roof == "flat"
        to: small_flat
      - to: contact
  - id: big_flat
    kind: message
    text: A big flat roof ({{answers.size}} m²)! We love those.
    next: contact
  - id: small_flat
    kind: message
    text: Flat roofs are quick to check.
    next: contact
  - id: contact
    kind: lead_form
    text: Where should we send the quote, {{name}}?
    fields:
      - {name: email, type: email, label: Email, required: true}
      - {name: consent, type: consent, label: I agree, required: true}
    next: bye
  - id: bye
    kind: end
    text: Thanks {{name | there}}, we'll write to {{email | you}}.
"""


@cache
def roofer() -> Flow:
    flow, errors = validate_text(ROOFER_YAML, "roofer.yaml")
    assert flow is not None, errors
    return flow

"""The issue's "done when" flow: it greets the visitor by name, branches on an
earlier answer, asks a free-text question, shows a link, speaks German to a
German browser, nudges a silent visitor (after 5 s here: the shortest a flow
may declare; the README's example says 60) and lets them change an answer."""

from __future__ import annotations

from pathlib import Path

TOUR_YAML = """\
id: tour
version: 1
title: Home tour
locales: [en, de]
start: name
timers:
  idle:
    after: 5
    message: {en: "Still there, {{ name | friend }}?", de: "Noch da, {{ name | }}?"}
  abandon_after: 600
nodes:
  - id: name
    kind: input
    text: {en: "Hi! What's your first name?", de: "Hallo! Wie heißen Sie?"}
    store_as: name
    input: {type: text, max_length: 40}
    next: home
  - id: home
    kind: question
    text:
      en: "Nice to meet you, {{ name | friend }}! A house or a flat?"
      de: "Freut mich, {{ name | }}! Ein Haus oder eine Wohnung?"
    buttons:
      - {id: house, label: {en: A house, de: Ein Haus}, next: rooms}
      - {id: flat, label: {en: A flat, de: Eine Wohnung}, next: rooms}
  - id: rooms
    kind: input
    text: {en: "How many rooms?", de: "Wie viele Zimmer?"}
    input: {type: number, min: 1, max: 50, personal: false}
    next:
      - {when: 'home == "house"', to: garden}
      - {to: flat_guide}
  - id: garden
    kind: message
    text:
      en: "{{ rooms }} rooms and a garden? Read [our garden guide](https://example.com/garden)."
      de: "{{ rooms }} Zimmer und ein Garten? Lesen Sie [unseren Garten-Ratgeber](https://example.com/garten)."
    next: bye
  - id: flat_guide
    kind: message
    text:
      en: "{{ rooms }} rooms in a flat: read [our flat guide](https://example.com/flat)."
      de: "{{ rooms }} Zimmer in einer Wohnung: Lesen Sie [unseren Wohnungs-Ratgeber](https://example.com/wohnung)."
    next: bye
  - id: bye
    kind: end
    text: {en: "Thanks, {{ name | friend }}!", de: "Danke, {{ name | }}!"}
"""


def write_tour(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tour.yaml").write_text(TOUR_YAML, "utf-8")
    return directory

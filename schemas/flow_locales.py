"""The semantic checks of texts per locale (:mod:`schemas.flow_validation` runs
them on documents that passed the JSON Schema).

The declaration: ``default_locale`` needs ``locales`` and must be one of them.
Every text given as a mapping (a node's texts, the idle nudge's message) needs
declared ``locales``, keys among them, and an entry for the fallback locale.
Every translation other than the fallback's is checked as the fallback's text
is (the parsed flow holds the fallback's, which the graph checks already
cover): not empty, not too long, its templates and links.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from schemas.flow_checks import MAX_LABEL_CHARS, Problem, VarType, template_problems
from schemas.locales import fallback_locale

MAX_TEXT_CHARS = 1000
_EXAMPLE = "e.g. locales: [en, de]"
TEXT, LABEL, CHOICE, FIELD, PLAIN = "text", "label", "choice", "field", "plain"
"""What a text is: a node's Markdown text; a button label (a plain template, 40
characters); a choice label (40, no template); a field label (1000); a
placeholder or an image's alt text (their lengths are the schema's)."""


def _texts(raw: Mapping[str, Any]) -> Iterator[tuple[str, Any, str]]:
    """(field, value, what) for every visitor-facing text of one authored node."""
    yield "text", raw.get("text"), TEXT
    for button in raw.get("buttons", ()):
        yield f"buttons.{button.get('id')}.label", button.get("label"), LABEL
    for lead_field in raw.get("fields", ()):
        yield f"fields.{lead_field.get('name')}.label", lead_field.get("label"), FIELD
    spec = raw.get("input")
    if isinstance(spec, Mapping):
        yield "input.placeholder", spec.get("placeholder"), PLAIN
        for choice in spec.get("choices", ()):
            yield f"input.choices.{choice.get('id')}.label", choice.get("label"), CHOICE
    image = raw.get("image")
    if isinstance(image, Mapping):
        yield "image.alt", image.get("alt"), PLAIN


def _flow_texts(doc: Mapping[str, Any]) -> Iterator[tuple[str, str, Any, str]]:
    """(node id, field, value, what) for every visitor-facing text of the flow:
    each node's, and the idle nudge's message (node "": the flow's own)."""
    timers = doc.get("timers")
    idle = timers.get("idle") if isinstance(timers, Mapping) else None
    if isinstance(idle, Mapping):
        yield "", "timers.idle.message", idle.get("message"), TEXT
    for raw in doc.get("nodes", ()):
        node_id = str(raw.get("id", ""))
        for where, value, what in _texts(raw):
            yield node_id, where, value, what


def _translation_problems(text: str, what: str, types: Mapping[str, VarType]) -> Iterator[str]:
    if what == PLAIN:
        return
    if not text.strip():
        yield "label is empty" if what != TEXT else "text is empty"
        return
    limit = MAX_LABEL_CHARS if what in (LABEL, CHOICE) else MAX_TEXT_CHARS
    if len(text) > limit:
        if what == TEXT:
            yield f"text is longer than {MAX_TEXT_CHARS} characters"
        elif what == FIELD:
            yield "label is too long"
        else:
            yield f"label is {len(text)} characters, at most {MAX_LABEL_CHARS} fit a button"
    if what in (TEXT, LABEL):
        yield from template_problems(text, types, markdown=what == TEXT)


def _declaration_problems(doc: Mapping[str, Any]) -> Iterator[Problem]:
    locales = doc.get("locales")
    default = doc.get("default_locale")
    if default is None:
        return
    if not locales:
        yield "", "default_locale", "default_locale needs locales, e.g. locales: [en, de]"
    elif default not in locales:
        declared = ", ".join(locales)
        yield "", "default_locale", f"{default!r} is not one of the locales ({declared})"


def locale_problems(doc: Mapping[str, Any], types: Mapping[str, VarType]) -> list[Problem]:
    """Every problem of the locale declaration and of texts given per locale."""
    problems = list(_declaration_problems(doc))
    declared = [t for t in doc.get("locales") or () if isinstance(t, str)]
    for node_id, where, value, what in _flow_texts(doc):
        if isinstance(value, Mapping):
            problems.extend(
                (node_id, field, problem)
                for field, problem in _mapping_problems(where, value, what, declared, doc, types)
            )
    return problems


def _mapping_problems(
    where: str,
    value: Mapping[str, Any],
    what: str,
    declared: list[str],
    doc: Mapping[str, Any],
    types: Mapping[str, VarType],
) -> Iterator[tuple[str, str]]:
    if not declared:
        yield (
            where,
            "a text per locale needs locales at the top of the flow (e.g. locales: [en, de])",
        )
        return
    fallback = fallback_locale(doc)
    if fallback not in value:
        yield where, f"no text for the fallback locale {fallback!r}"
    for locale, text in value.items():
        if locale not in declared:
            listed = ", ".join(declared)
            yield f"{where}.{locale}", f"locale {locale!r} is not declared in locales ({listed})"
        elif fallback in value and locale != fallback and isinstance(text, str):
            for problem in _translation_problems(text, what, types):
                yield f"{where}.{locale}", problem

"""Templates in flow texts and button labels, and the Markdown subset of texts.

A template is text with placeholders ``{{ VAR }}`` or ``{{ VAR | fallback }}``:
``VAR`` is a variable as conditions name them (``name``, ``answers.name``,
``context.locale``; see :mod:`schemas.expression_parser`), the fallback is
plain text used when the value is missing (otherwise an empty string). Nothing
in a template is ever executed: a placeholder is a lookup, nothing more.

Rendering (:func:`render`) escapes every inserted value for the Markdown subset
the widget renders (:func:`escape_markdown`): a visitor's ``**x**`` or
``[a](https://evil)`` shows as typed, never as markup, and line breaks in a
value become spaces. Flow authors' own text is not escaped: its Markdown is the
author's. Links in flow texts may point only to ``https:``, ``http:`` or
``mailto:`` (:func:`bad_links`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache

from schemas.expression_parser import ExpressionError, parse_var
from schemas.expression_tree import Var

MAX_FALLBACK_CHARS = 100
_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_VAR_NAME = re.compile(r"^[a-z][a-z0-9_-]*(?:\.[a-z0-9][a-z0-9_-]*)?$")
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]()<>#!~|{}])")
_LINK = re.compile(r"\[([^\]\n]*)\]\(([^)\s]*)\)")
_SAFE_SCHEMES = ("https://", "http://", "mailto:")


class TemplateError(ValueError):
    """A placeholder that does not parse."""


@dataclass(frozen=True, slots=True)
class Placeholder:
    var: Var
    fallback: str = ""


Part = str | Placeholder


@lru_cache(maxsize=8192)
def parse_template(text: str) -> tuple[Part, ...]:
    """``text`` as literal parts and placeholders, or :class:`TemplateError`."""
    parts: list[Part] = []
    pos = 0
    for match in _PLACEHOLDER.finditer(text):
        if match.start() > pos:
            parts.append(text[pos : match.start()])
        inner, bar, fallback = match.group(1).partition("|")
        name = inner.strip()
        if not _VAR_NAME.fullmatch(name):
            raise TemplateError(f"{{{{{_clip(match.group(1))}}}}} is not a variable name")
        fallback = fallback.strip()
        if len(fallback) > MAX_FALLBACK_CHARS:
            raise TemplateError(f"a fallback is at most {MAX_FALLBACK_CHARS} characters")
        if "{{" in fallback or "{{" in inner:
            raise TemplateError("placeholders do not nest")
        try:
            var = parse_var(name)
        except ExpressionError as exc:
            raise TemplateError(str(exc)) from None
        parts.append(Placeholder(var, fallback if bar else ""))
        pos = match.end()
    rest = text[pos:]
    if "{{" in rest:
        raise TemplateError("a '{{' is not closed with '}}'")
    if rest:
        parts.append(rest)
    return tuple(parts)


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def placeholders(text: str) -> Iterator[Placeholder]:
    for part in parse_template(text):
        if isinstance(part, Placeholder):
            yield part


def has_placeholders(text: str) -> bool:
    return "{{" in text


def escape_markdown(value: str) -> str:
    """``value`` as literal text in the widget's Markdown subset: every character
    that could start markup gets a backslash, line breaks and other control
    characters become spaces."""
    flat = _plain(value)
    return _MARKDOWN_SPECIAL.sub(r"\\\1", flat) if _MARKDOWN_SPECIAL.search(flat) else flat


Resolve = Callable[[Var], str | None]


def render(text: str, resolve: Resolve, *, markdown: bool = True) -> str:
    """``text`` with every placeholder replaced by its value (escaped when
    ``markdown``: texts are Markdown, button labels are plain text) or fallback.
    A text without placeholders is returned as it is, unparsed."""
    if not has_placeholders(text):
        return text
    out: list[str] = []
    for part in parse_template(text):
        if isinstance(part, str):
            out.append(part)
            continue
        value = resolve(part.var)
        if value is None or value == "":
            out.append(part.fallback)
        else:
            out.append(escape_markdown(value) if markdown else _plain(value))
    return "".join(out)


def _plain(value: str) -> str:
    if value.isprintable():  # the common case: nothing to flatten (a fast C check)
        return value
    return "".join(" " if ord(ch) < 32 or ch == "\x7f" else ch for ch in value)


def bad_links(text: str) -> list[str]:
    """The targets of Markdown links in ``text`` that are not https, http or mailto."""
    return [
        target
        for _, target in _LINK.findall(text)
        if not target.lower().startswith(_SAFE_SCHEMES) or len(target) <= len("http://")
    ]

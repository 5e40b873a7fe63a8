"""Locales of a flow: texts per locale, and which locale a visitor gets (pure).

A flow may declare ``locales: [en, de]``; its first locale (or ``default_locale``)
is the *fallback*. Every visitor-facing text may then be a plain string (the
same in every locale) or a mapping ``locale -> string`` that must hold the
fallback. A visitor's locale (``ConversationStarted.context.locale``, e.g.
``de-DE``) picks a declared locale by :func:`pick_locale`: the exact tag, then
its language (``de``), then another region of that language, then the fallback.

Locales are a matter of presentation only: the decider, the events, conditions
and the read models all see the fallback texts; only replies are rendered in
the visitor's language.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

LOCALE_PATTERN = r"^[a-z]{2,3}(?:-[A-Z][a-z]{3})?(?:-(?:[A-Z]{2}|[0-9]{3}))?$"
"""A BCP 47 tag as flows write it: a language (``de``), optionally a script
(``zh-Hant``) and a region (``de-CH``, ``es-419``), in their canonical case."""
LOCALE_TAG = re.compile(LOCALE_PATTERN)
MAX_LOCALES = 20

Texts = str | Mapping[str, str]
"""A visitor-facing text as authored: one string, or one per locale."""


def is_locale_tag(tag: str) -> bool:
    return LOCALE_TAG.fullmatch(tag) is not None


def fallback_locale(doc: Mapping[str, Any]) -> str:
    """The document's fallback locale: ``default_locale``, else its first locale,
    else "" (a flow without locales)."""
    default = doc.get("default_locale")
    if isinstance(default, str) and default:
        return default
    locales = doc.get("locales")
    if isinstance(locales, list) and locales and isinstance(locales[0], str):
        return locales[0]
    return ""


def declared_locales(doc: Mapping[str, Any]) -> tuple[str, ...]:
    """The declared locales, the fallback first (as the parsed flow keeps them)."""
    raw = doc.get("locales")
    locales = [t for t in raw if isinstance(t, str)] if isinstance(raw, list) else []
    default = fallback_locale(doc)
    if not locales:
        return ()
    return tuple(dict.fromkeys([default, *locales]))


def resolve(value: Any, locale: str, fallback: str) -> str:
    """The text of ``value`` in ``locale``: a string as it is; a mapping's entry for
    ``locale``, else for ``fallback``, else its first entry (validation reports a
    mapping without the fallback); anything else is ""."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        for key in (locale, fallback):
            text = value.get(key)
            if isinstance(text, str):
                return text
        for text in value.values():
            if isinstance(text, str):
                return text
    return ""


def _normalise(tag: str) -> str:
    return tag.strip().replace("_", "-").lower()


@lru_cache(maxsize=4096)
def _pick(locales: tuple[str, ...], visitor: str) -> str:
    wanted = _normalise(visitor)
    lowered = [_normalise(t) for t in locales]
    if wanted in lowered:
        return locales[lowered.index(wanted)]
    language = wanted.split("-", 1)[0]
    if language in lowered:
        return locales[lowered.index(language)]
    for tag, low in zip(locales, lowered, strict=True):
        if low.split("-", 1)[0] == language:
            return tag
    return locales[0]


def pick_locale(locales: Sequence[str], visitor: str) -> str:
    """The declared locale a visitor whose locale is ``visitor`` (``de-DE``,
    ``de_de``, ``DE``; any case) gets: the exact tag, then its language (``de``),
    then the first declared locale of that language (``de-CH``), then the fallback
    (``locales[0]``). "" when the flow declares no locales."""
    if not locales:
        return ""
    return _pick(tuple(locales), visitor)


def language_of(locale: str) -> str:
    """``de-DE`` -> ``de``; "" for an empty locale."""
    return _normalise(locale).split("-", 1)[0]

"""How a simulated visitor's context looks: the device, UTM parameters or referrer,
locale and time zone a real widget would send for a visitor of a given device,
traffic source and language. Pure.

Each traffic source shows up as one of a few (utm_source, utm_medium, referrer)
variants, each of which :mod:`policy.features` classifies as that source, so the
simulated visitors reach the policy through the same classification as real
ones (the population checks every visitor's cell against what it meant).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Literal

from schemas.commands import VisitorContext

Device = Literal["desktop", "mobile", "tablet", "unknown"]
_DEVICE: dict[str, Device] = {
    "desktop": "desktop",
    "mobile": "mobile",
    "tablet": "tablet",
    "unknown": "unknown",
}


# How each traffic source shows up in a visitor's context: (utm_source,
# utm_medium, referrer) variants, each of which policy.features classifies as
# that source.
SOURCE_CONTEXTS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "direct": (("", "", ""),),
    "search": (
        ("google", "organic", "https://www.google.com/"),
        ("google", "organic", "https://www.google.co.uk/"),
        ("bing", "organic", "https://www.bing.com/"),
    ),
    "paid": (
        ("google", "cpc", "https://www.google.co.uk/"),
        ("facebook", "paid_social", ""),
        ("bing", "ppc", "https://www.bing.com/"),
    ),
    "social": (
        ("facebook", "social", ""),
        ("instagram", "", "https://l.instagram.com/"),
        ("tiktok", "social", ""),
    ),
    "email": (("newsletter", "email", ""), ("mailchimp", "", "")),
    "other": (
        ("", "", "https://forum.moneysaving.example/solar-panels"),
        ("partner-site", "referral", "https://partner.example.com/"),
    ),
}
EN_LOCALES = (("en-GB", 0.86), ("en", 0.09), ("en-US", 0.05))
OTHER_LOCALES = (("pl-PL", 0.3), ("ro-RO", 0.2), ("es-ES", 0.2), ("de-DE", 0.15), ("fr-FR", 0.15))
TIME_ZONES = (("Europe/London", 0.95), ("Europe/Dublin", 0.03), ("", 0.02))


def pick(rnd: random.Random, weighted: Sequence[tuple[str, float]]) -> str:
    values = [v for v, _ in weighted]
    weights = [w for _, w in weighted]
    return rnd.choices(values, weights=weights)[0]


def visitor_context(rnd: random.Random, device: str, source: str, language: str) -> VisitorContext:
    """A context for a visitor of this device, traffic source and language (the
    variant, the locale and the time zone drawn from ``rnd``)."""
    utm_source, utm_medium, referrer = rnd.choice(SOURCE_CONTEXTS[source])
    locale = pick(rnd, EN_LOCALES if language == "en" else OTHER_LOCALES)
    return VisitorContext(
        device=_DEVICE[device],
        referrer=referrer,
        utm_source=utm_source,
        utm_medium=utm_medium,
        utm_campaign="spring-solar" if source in ("paid", "email") else "",
        locale=locale,
        time_zone=pick(rnd, TIME_ZONES),
    )

"""Where a visitor came from, classified from the visitor context (UTM tags and
referrer). One definition shared by the policy's context cells and the funnel
report's traffic-source split."""

from __future__ import annotations

from schemas.commands import VisitorContext

SOURCES = ("direct", "search", "paid", "social", "email", "other")

_SOCIAL = {"facebook", "fb", "instagram", "ig", "linkedin", "twitter", "x", "tiktok", "reddit"}
_SEARCH = {"google", "bing", "duckduckgo", "yahoo", "ecosia", "baidu", "yandex"}
_EMAIL = {"newsletter", "email", "mailchimp", "sendgrid", "brevo", "klaviyo"}
_PAID_MEDIUMS = {"cpc", "ppc", "paid", "paidsocial", "paid_social", "display", "cpm"}


def traffic_source(context: VisitorContext) -> str:
    source = context.utm_source.strip().lower()
    medium = context.utm_medium.strip().lower()
    if medium in _PAID_MEDIUMS:
        return "paid"
    if medium == "email" or source in _EMAIL:
        return "email"
    if source in _SOCIAL or medium == "social":
        return "social"
    if source in _SEARCH or medium == "organic":
        return "search"
    if not source and not context.referrer:
        return "direct"
    return "other"

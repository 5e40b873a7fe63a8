"""Where a visitor came from (services/traffic.py): which tag wins when tags
disagree, how spelling is normalised, and what counts as direct. The common
cases, with the policy's context cells, are in test_policy_features.py."""

from __future__ import annotations

import itertools

import pytest

from schemas.commands import VisitorContext
from services.traffic import SOURCES, traffic_source


def source(utm_source: str = "", utm_medium: str = "", referrer: str = "") -> str:
    return traffic_source(
        VisitorContext(utm_source=utm_source, utm_medium=utm_medium, referrer=referrer)
    )


@pytest.mark.parametrize("medium", ["cpc", "ppc", "paid", "paidsocial", "paid_social", "cpm"])
def test_a_paid_medium_wins_over_any_source(medium: str) -> None:
    """An ad in a newsletter or on Facebook is paid traffic first."""
    for utm_source in ("newsletter", "facebook", "google", ""):
        assert source(utm_source, medium) == "paid", utm_source


def test_email_wins_over_social_and_search() -> None:
    assert source("facebook", "email") == "email"
    assert source("mailchimp", "social") == "email"
    assert source("google", "email") == "email"


def test_social_wins_over_search() -> None:
    assert source("facebook", "organic") == "social"
    assert source("google", "social") == "social"


@pytest.mark.parametrize(
    ("utm_source", "utm_medium", "expected"),
    [
        ("  GOOGLE\t", "", "search"),
        ("Facebook", "", "social"),
        ("", " CPC ", "paid"),
        ("", "Email", "email"),
        ("", "ORGANIC", "search"),
    ],
)
def test_case_and_surrounding_space_do_not_matter(
    utm_source: str, utm_medium: str, expected: str
) -> None:
    assert source(utm_source, utm_medium) == expected


def test_names_are_matched_whole_not_as_substrings() -> None:
    assert source("googleads-partner") == "other"
    assert source("my-newsletter-blog") == "other"
    assert source("partner", "cpc-ish") == "other"


@pytest.mark.parametrize("utm_source", ["", "   "])
def test_no_source_and_no_referrer_is_direct(utm_source: str) -> None:
    assert source(utm_source) == "direct"


def test_a_referrer_without_tags_is_other_not_direct() -> None:
    assert source(referrer="https://blog.example/post") == "other"
    assert source("", "referral", "https://blog.example/") == "other"


def test_an_unknown_medium_alone_is_other() -> None:
    """A tag was set, so the visit was not direct, but it names no known channel."""
    assert source("", "referral") == "direct"  # no source, no referrer: still direct
    assert source("partner", "referral") == "other"


def test_every_classification_is_one_of_the_declared_sources() -> None:
    tags = ["", "google", "facebook", "newsletter", "cpc", "email", "social", "organic", "x"]
    seen = {
        source(s, m, r) for s, m, r in itertools.product(tags, tags, ["", "https://r.example/"])
    }
    assert seen == set(SOURCES)

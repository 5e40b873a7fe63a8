"""The widget's delivery, pure part: minification that keeps the widget's stylesheet
(and so the demo page's CSP hash) and Accept-Encoding negotiation. Building the
assets (brotli at quality 11, several times) and the negotiation's property test
are in tests/integration/test_widget_build.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.widget_assets import (
    BROTLI,
    GZIP,
    IDENTITY,
    etag_matches,
    minify,
    negotiate,
    parse_accept_encoding,
)

pytestmark = pytest.mark.unit

SOURCE = (Path(__file__).resolve().parents[2] / "gateway" / "static" / "widget.js").read_text()
ALL = (BROTLI, GZIP, IDENTITY)
STYLESHEET = re.compile(r"const CSS ?= ?`(.*?)`;", re.S)


def test_minified_widget_is_smaller_and_keeps_its_stylesheet_byte_for_byte() -> None:
    """The demo page's CSP allows the shadow root's stylesheet by the hash of the
    source's CSS literal: the served widget must carry exactly that text."""
    minified = minify(SOURCE)
    assert len(minified) < 0.8 * len(SOURCE)
    assert STYLESHEET.findall(minified) == STYLESHEET.findall(SOURCE) != []
    assert "// ----" not in minified and "Lead field values are never logged" not in minified
    assert "attachShadow" in minified and "'leadflow-widget'" in minified


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, IDENTITY),  # no header: what any client can read
        ("", IDENTITY),
        ("gzip, deflate, br, zstd", BROTLI),  # Chromium over HTTPS
        ("gzip, deflate", GZIP),  # Chromium over plain HTTP
        ("br;q=0.5, gzip;q=0.8", GZIP),
        ("br;q=1.0, gzip;q=1.0", BROTLI),  # a tie: the smaller
        ("GZIP", GZIP),
        ("x-gzip", GZIP),
        ("br;q=0, gzip;q=0", IDENTITY),
        ("*", BROTLI),
        ("*;q=0.5, gzip", GZIP),
        ("*;q=0, identity;q=0.1", IDENTITY),
        ("identity;q=0", IDENTITY),  # nothing acceptable left: identity rather than a 406
        ("identity;q=0, gzip", GZIP),
        ("deflate", IDENTITY),
        ("br;q=abc, gzip", GZIP),  # a malformed q drops its entry
        ("br;q=2, gzip;q=0.1", GZIP),  # so does one out of range
        ("gzip;q=0.001", GZIP),
        ("gzip ; q=0.7 , br ; Q=0.6", GZIP),
    ],
)
def test_negotiation(header: str | None, expected: str) -> None:
    assert negotiate(header, ALL) == expected


def test_negotiation_only_offers_what_is_available() -> None:
    assert negotiate("br", (GZIP, IDENTITY)) == IDENTITY
    assert negotiate("br, gzip;q=0.5", (GZIP, IDENTITY)) == GZIP


def test_parse_accept_encoding_keeps_the_highest_q_of_a_repeated_coding() -> None:
    assert parse_accept_encoding("gzip;q=0.2, gzip;q=0.9, br") == {GZIP: 0.9, BROTLI: 1.0}


@pytest.mark.parametrize(
    ("header", "matches"),
    [
        (None, False),
        ('"abc"', True),
        ('W/"abc"', True),  # If-None-Match compares weakly
        ('"x", "abc"', True),
        ("*", True),
        ('"abcd"', False),
        ("abc", False),  # unquoted is not the tag
    ],
)
def test_etag_matches(header: str | None, matches: bool) -> None:
    assert etag_matches(header, '"abc"') is matches

"""The report's HTML primitives (projector/report/markup.py): times, durations,
shares and conversions as text; images as data: URIs; every text escaped."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser

import pytest

from projector.report.markup import (
    conversion,
    document,
    duration,
    image,
    percent,
    table,
    when,
)
from projector.report.stats import Rate
from tests.support.traffic import T0

EVIL = '<b onmouseover="x()">&\'</b>'


class Text(HTMLParser):
    """The text content and the tags of a fragment, as a browser would see them."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.tags: list[str] = []
        self.attrs: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.append(dict(attrs))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parsed(fragment: str) -> Text:
    parser = Text()
    parser.feed(fragment)
    parser.close()
    return parser


def test_when_is_utc_to_the_second_and_an_open_bound_says_so() -> None:
    assert when(T0) == "2025-11-26 00:00:00 UTC"
    assert when(T0 + 3_723.9) == "2025-11-26 01:02:03 UTC"
    assert when(None) == "(open)"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0.0 s"),
        (45.24, "45.2 s"),
        (119.9, "119.9 s"),
        (120.0, "2.0 min"),
        (750.0, "12.5 min"),
        (7_199.0, "120.0 min"),
        (7_200.0, "2.0 h"),
        (11_160.0, "3.1 h"),
    ],
)
def test_durations_switch_unit_at_two_minutes_and_two_hours(seconds: float, text: str) -> None:
    assert duration(seconds) == text


@pytest.mark.parametrize(
    ("share", "text"), [(0.0, "0.0%"), (0.1234, "12.3%"), (0.99951, "100.0%"), (1.0, "100.0%")]
)
def test_percent_has_one_decimal(share: float, text: str) -> None:
    assert percent(share) == text


def test_a_conversion_shows_the_rate_and_its_interval() -> None:
    assert conversion(Rate(n=200, k=50, low=0.2012, high=0.3049)) == "25.0% (20.1% to 30.5%)"


def test_a_conversion_of_no_conversations_says_so_rather_than_0_percent() -> None:
    assert conversion(Rate(n=0, k=0, low=0.05, high=0.95)) == "no conversations"


def test_an_image_is_an_inline_data_uri_of_the_exact_bytes() -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    fragment = parsed(image(png, EVIL))
    assert fragment.tags == ["p", "img"]
    src = fragment.attrs[1]["src"]
    assert src is not None and src.startswith("data:image/png;base64,")
    assert base64.b64decode(src.removeprefix("data:image/png;base64,")) == png
    assert fragment.attrs[1]["alt"] == EVIL  # escaped in the markup, intact once parsed
    assert "onmouseover" not in fragment.attrs[1]


def test_table_cells_are_escaped_and_numbers_right_aligned() -> None:
    html = table(["node", EVIL], [["welcome", 1234567], [EVIL, 0.25], ["n", 3.0]])
    fragment = parsed(html)
    assert fragment.tags.count("b") == 0  # no markup from the data
    assert EVIL in fragment.text  # the header and the cell, as text
    assert fragment.text.count(EVIL) == 2
    numbers = re.findall(r'<td class="n">([^<]*)</td>', html)
    assert numbers == ["1,234,567", "0.2", "3.0"]
    assert "<td>welcome</td>" in html


def test_a_table_without_rows_still_has_its_header() -> None:
    fragment = parsed(table(["a", "b"], []))
    assert fragment.tags == ["table", "thead", "tr", "th", "th", "tbody"]
    assert fragment.text == ["a", "b"]


def test_a_document_escapes_its_title_and_keeps_the_body_in_order() -> None:
    page = document(EVIL, ["<p>one</p>", "<p>two</p>"])
    assert page.startswith("<!DOCTYPE html>")
    assert page.rstrip().endswith("</html>")
    title = re.search(r"<title>(.*)</title>", page)
    assert title is not None and "<b" not in title.group(1)
    assert parsed(title.group(0)).text == [EVIL]
    assert page.index("<p>one</p>") < page.index("<p>two</p>")
    assert 'charset="utf-8"' in page
    assert "http" not in page.lower()  # nothing refers outside the page

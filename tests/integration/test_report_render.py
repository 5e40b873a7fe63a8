"""The funnel report rendered whole, charts included (matplotlib PNGs: about a
second a page, so here rather than in the unit tier): self-contained, every
section present, flow texts escaped."""

from __future__ import annotations

import asyncio
import re

from projector.report.build import render
from projector.report.fold import fold_funnel
from services.catalog import EXAMPLE_FLOWS_DIR, FlowCatalog
from tests.support.traffic import simulate
from tests.unit.test_report_fold import Conv
from tests.unit.test_report_page import DATA_URI, context, evil_flow, tags


def solar_page() -> str:
    traffic = asyncio.run(simulate(150, seed=5))
    versions = fold_funnel([traffic.events], "solar-quote")
    catalog = FlowCatalog.from_directory(EXAMPLE_FLOWS_DIR)
    return render(versions, 1, catalog.get, context("solar-quote", {1: versions[1].started}))


def test_the_page_is_self_contained() -> None:
    """Guards against anything that would fetch from elsewhere when opened offline."""
    page = solar_page()
    images = [attrs for tag, attrs in tags(page) if tag == "img"]
    assert len(images) >= 5
    assert all(DATA_URI.fullmatch(attrs["src"] or "") for attrs in images)
    outside = re.sub(f'src="{DATA_URI.pattern}"', "", page).lower()
    for needle in ("http", "//", "<script", "<link", "url(", "@import", "src=", "href"):
        assert needle not in outside, needle
    assert {tag for tag, _ in tags(page)} <= {
        "html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "dl", "dt",
        "dd", "p", "img", "table", "thead", "tbody", "tr", "th", "td",
    }  # fmt: skip


def test_the_page_has_every_section() -> None:
    page = solar_page()
    for heading in (
        "Drop-off per node",
        "Conversion per edge",
        "Decision points",
        "Conversion per path",
        "Time from start to lead",
        "Traffic source and device",
    ):
        assert f"<h2>{heading}</h2>" in page or f"<h3>{heading}</h3>" in page
    assert "What type of property would the panels go on?" in page  # texts from the flow


def test_flow_texts_are_escaped() -> None:
    conv = Conv("c1").start().enter("q").press("q", "go").choose("q", "go", "end", "end", "q2")
    events = conv.enter("end").complete().events
    versions = fold_funnel([events], "f")
    page = render(versions, 1, lambda *_: evil_flow(), context("f", {1: 1}))
    assert "<script" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;quotes&quot;" in page
    assert "the SQLite log in &lt;here&gt;" in page

"""The funnel report's HTML: self-contained (no URL, no script, images as data:
URIs), flow texts escaped, an empty range still a valid page, version choice."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from projector.report.build import chosen_version, render
from projector.report.context import Context
from projector.report.fold import FunnelStats, fold_funnel
from projector.report.labels import short_path
from schemas.flow import Button, Flow, Node, NodeKind
from tests.support.traffic import T0
from tests.unit.test_report_fold import Conv

DATA_URI = re.compile(r"data:image/png;base64,[A-Za-z0-9+/=]+")
EVIL = "<script>alert('x')</script> & \"quotes\""


def context(flow_id: str, versions: dict[int, int]) -> Context:
    return Context(flow_id, T0, None, None, "the SQLite log in <here>", versions, T0)


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def tags(page: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Tags()
    parser.feed(page)
    return parser.tags


def evil_flow() -> Flow:
    nodes = {
        "q": Node(
            "q",
            NodeKind.QUESTION,
            EVIL,
            buttons=(Button("go", EVIL[:40], ("end", "q2")),),
        ),
        "q2": Node("q2", NodeKind.QUESTION, "ok", buttons=(Button("b", "b", ("end",)),)),
        "end": Node("end", NodeKind.END, "bye"),
    }
    return Flow("f", 1, "q", nodes, title=EVIL)


def test_an_empty_range_is_a_valid_page() -> None:
    page = render({}, None, lambda *_: None, context("solar-quote", {}))
    assert "No conversations in this range." in page
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert not [tag for tag, _ in tags(page) if tag == "img"]


def test_a_version_not_in_range_says_so() -> None:
    versions = fold_funnel([Conv("c1").start(version=2).enter("a").events], "f")
    page = render(versions, 1, lambda *_: None, context("f", {2: 1}))
    assert "No conversations of version 1 in this range." in page
    assert "version 2: 1 conversations" in page


def test_the_newest_version_is_shown_unless_one_is_asked_for() -> None:
    versions: dict[int, FunnelStats] = fold_funnel(
        [Conv("a").start(version=1).events + Conv("b").start(version=3).events], "f"
    )
    assert chosen_version(versions, None) == 3
    assert chosen_version(versions, 1) == 1
    assert chosen_version({}, None) is None


def test_long_paths_keep_their_first_and_last_nodes_in_chart_labels() -> None:
    names = "welcome property business_intro roof bill shading timeframe contact survey end_thanks"
    nodes = tuple(names.split())
    label = short_path(nodes, 1)
    assert label == "welcome → … → timeframe → contact → survey → end_thanks"
    assert short_path(nodes[:3], 1) == "welcome → property → business_intro"
    assert short_path(None, 649) == "649 other paths"

"""Issue 19's "done when", in Chromium against the real server, in each of the
three embed modes: a German browser is greeted by the name it typed, in German;
a silent visitor is nudged; they change an answer; the flow branches on that
earlier answer after a free-text question, shows a link that opens safely, and
ends with their name."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.test_widget_embed_e2e import PAGE as HOST_PAGE
from tests.support.host_pages import HostPages
from tests.support.server import ServerProcess
from tests.support.tour_flow import write_tour

pytestmark = pytest.mark.e2e

MODES = {
    "bubble": ('data-site="demo" data-flow="tour"', ""),
    "inline": (
        'data-site="demo" data-flow="tour" data-mode="inline" data-target="#chat"',
        '<section id="chat" style="height: 560px"></section>',
    ),
    "page": ('data-site="demo" data-flow="tour" data-mode="page"', ""),
}


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostPages]:
    flows = write_tour(tmp_path_factory.mktemp("flows"))
    data = tmp_path_factory.mktemp("leadflow-data")
    server = ServerProcess(data, env={"LEADFLOW_FLOWS_DIR": str(flows)}).start()
    pages = HostPages()
    for mode, (attrs, body) in MODES.items():
        pages.pages[f"/{mode}.html"] = HOST_PAGE.format(
            server=server.http_url, attrs=attrs, body=body
        )
    try:
        yield pages
    finally:
        pages.httpd.shutdown()
        pages.httpd.server_close()
        server.stop()


def _visit(browser: Browser, hosts: HostPages, mode: str) -> tuple[Page, list[str]]:
    ctx = browser.new_context(locale="de-DE", reduced_motion="reduce")
    ctx.set_default_timeout(5_000)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"http://127.0.0.1:{hosts.port}/{mode}.html")
    if mode == "bubble":
        page.get_by_role("button", name="Chat öffnen").click()
    return page, errors


@pytest.mark.parametrize("mode", list(MODES))
def test_the_tour_in_german_with_a_nudge_a_change_of_mind_and_a_link(
    browser: Browser, hosts: HostPages, mode: str
) -> None:
    page, errors = _visit(browser, hosts, mode)
    widget = page.locator("#leadflow-widget")
    bot = widget.locator(".lf-bot")
    name = widget.get_by_label("Hallo! Wie heißen Sie?")
    name.fill("Jürgen")
    name.press("Enter")
    expect(bot.last).to_have_text("Freut mich, Jürgen! Ein Haus oder eine Wohnung?")
    widget.get_by_role("button", name="Ein Haus").click()
    expect(bot.last).to_have_text("Wie viele Zimmer?")
    expect(bot.last).to_have_text("Noch da, Jürgen?", timeout=15_000)  # silent: nudged
    expect(widget.get_by_label("Wie viele Zimmer?")).to_be_enabled()  # still answerable
    widget.get_by_role("button", name="Antwort ändern").click()  # a flat after all
    expect(bot.last).to_have_text("Freut mich, Jürgen! Ein Haus oder eine Wohnung?")
    widget.get_by_role("button", name="Eine Wohnung").click()
    rooms = widget.get_by_label("Wie viele Zimmer?")
    rooms.fill("3")
    rooms.press("Enter")
    guide = bot.filter(has_text="in einer Wohnung")  # branched on the changed answer
    expect(guide).to_have_text("3 Zimmer in einer Wohnung: Lesen Sie unseren Wohnungs-Ratgeber.")
    link = guide.get_by_role("link", name="unseren Wohnungs-Ratgeber")
    expect(link).to_have_attribute("href", "https://example.com/wohnung")
    expect(link).to_have_attribute("target", "_blank")
    expect(link).to_have_attribute("rel", "noopener noreferrer")
    expect(widget.locator(".lf-bot[data-done='true']")).to_have_text("Danke, Jürgen!")
    expect(bot.filter(has_text="Garten")).to_have_count(0)
    page.context.close()
    assert not errors, errors

"""End to end in Chromium against the real server (``leadflow serve`` with the
shipped flows): a browser whose language is German reads the bilingual
solar-quote flow in German, from its first bubble on, with the widget's own
words in German too; an English browser reads English (issue 19, a second
language). The page sets no data-locale: the browser's language decides."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.test_widget_embed_e2e import PAGE
from tests.support.host_pages import HostPages
from tests.support.server import ServerProcess
from tests.support.widget import answer_free_text, skip_free_text

pytestmark = pytest.mark.e2e

GERMAN_WELCOME = "Hallo! ☀️ Finden wir heraus, wie viel Sie mit Solarmodulen sparen könnten."
ENGLISH_WELCOME = "Hi! ☀️ Let's find out how much you could save with solar panels."


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = ServerProcess(tmp_path_factory.mktemp("leadflow-data")).start()
    pages = HostPages()
    pages.pages["/"] = PAGE.format(
        server=server.http_url, attrs='data-site="demo" data-flow="solar-quote"', body=""
    )
    try:
        yield f"http://127.0.0.1:{pages.port}/"
    finally:
        pages.httpd.shutdown()
        pages.httpd.server_close()
        server.stop()


def _page(browser: Browser, locale: str) -> tuple[Page, list[str]]:
    ctx = browser.new_context(locale=locale, reduced_motion="reduce")
    ctx.set_default_timeout(10_000)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return page, errors


def test_a_german_browser_reads_the_flow_in_german(browser: Browser, host: str) -> None:
    page, errors = _page(browser, "de-DE")
    page.goto(host)
    widget = page.locator("#leadflow-widget")
    page.get_by_role("button", name="Chat öffnen").click()
    first = widget.locator(".lf-bot").first
    expect(first).to_contain_text(GERMAN_WELCOME)
    expect(widget.locator(".lf-bot").nth(1)).to_have_text("Zum Start: Wie ist Ihr Vorname?")
    expect(widget.get_by_label("Zum Start: Wie ist Ihr Vorname?")).to_have_attribute(
        "placeholder", "Vorname"
    )
    skip_free_text(widget, "Überspringen")  # the template's German fallback greets
    expect(widget.locator(".lf-bot").nth(2)).to_have_text(
        "Hallo und willkommen! Auf welche Art von Gebäude sollen die Module?"
    )
    widget.get_by_role("button", name="Eine Wohnung").click()
    expect(widget.locator(".lf-me")).to_have_text(["Sie: Übersprungen", "Sie: Eine Wohnung"])
    expect(widget.locator(".lf-bot").nth(3)).to_contain_text(
        "Module brauchen ein Dach, das Sie nutzen dürfen."
    )
    expect(widget.get_by_role("button", name="Ja, ich darf das Dach nutzen")).to_be_visible()
    page.context.close()
    assert not errors, errors


def test_an_english_browser_reads_the_same_flow_in_english(browser: Browser, host: str) -> None:
    page, errors = _page(browser, "en-GB")
    page.goto(host)
    widget = page.locator("#leadflow-widget")
    page.get_by_role("button", name="Open chat").click()
    expect(widget.locator(".lf-bot").first).to_contain_text(ENGLISH_WELCOME)
    expect(widget.get_by_label("To start, what's your first name?")).to_be_visible()
    answer_free_text(widget, "Sam")
    expect(widget.locator(".lf-bot").nth(2)).to_have_text(
        "Hi Sam! What type of property would the panels go on?"
    )
    expect(widget.get_by_role("button", name="A flat or apartment")).to_be_visible()
    page.context.close()
    assert not errors, errors

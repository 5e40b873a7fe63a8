"""End to end: the widget under the gateway's limits (issue 14): an idle close,
long resumes in pages, and the demo page's security headers.

The real server with short limits, driven through the widget in Debian's
Chromium; every test also fails on an uncaught page error or a CSP violation.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Locator, Page, WebSocketRoute, expect

from tests.support.server import ServerProcess

pytestmark = pytest.mark.e2e

STEP_TIMEOUT_MS = 5_000
CHOICE = ".lf-choice:enabled"
VISITOR = ".lf-msg.lf-me"
IDLE_SECONDS = 1.5


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    process = ServerProcess(
        tmp_path_factory.mktemp("leadflow-limits"),
        env={"LEADFLOW_IDLE_TIMEOUT_SECONDS": str(IDLE_SECONDS)},
    ).start()
    try:
        yield process.http_url
    finally:
        process.stop()


class Watched:
    """A page whose uncaught errors and console messages are kept."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        self.console: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("console", lambda message: self.console.append(message.text))


@pytest.fixture
def watched(browser: Browser) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-GB")
    context.set_default_timeout(STEP_TIMEOUT_MS)
    watched = Watched(context.new_page())
    try:
        yield watched
    finally:
        context.close()
    assert not watched.errors, f"uncaught errors in the page: {watched.errors}"
    violations = [m for m in watched.console if "Content Security Policy" in m]
    assert not violations, f"the demo page breaks its own CSP: {violations}"


def open_widget(page: Page) -> Locator:
    page.get_by_role("button", name="Open chat").click()
    widget = page.locator("#leadflow-widget")
    widget.locator(CHOICE).first.wait_for()
    return widget


def relay_counting(page: Page, sockets: list[int], sent: list[dict[str, Any]]) -> None:
    """Route /ws through Playwright to count sockets and record the frames sent."""

    def relay(ws: WebSocketRoute) -> None:
        sockets.append(len(sockets))
        server = ws.connect_to_server()

        def from_page(message: str | bytes) -> None:
            sent.append(json.loads(message))
            server.send(message)

        ws.on_message(from_page)

    page.route_web_socket("**/ws", relay)


def test_after_an_idle_close_the_widget_waits_for_the_visitor_then_resumes(
    watched: Watched, server: str
) -> None:
    """The server closes an idle socket (1001, "idle timeout"); the widget does not
    reconnect by itself (the visitor has gone), but a press reconnects, resumes and
    is applied once."""
    page = watched.page
    sockets: list[int] = []
    sent: list[dict[str, Any]] = []
    relay_counting(page, sockets, sent)
    page.goto(f"{server}/")
    widget = open_widget(page)
    ack = page.evaluate("window.Leadflow.state().ack")
    page.wait_for_function("!window.Leadflow.state().connected", timeout=10_000)
    page.wait_for_timeout(2 * IDLE_SECONDS * 1000)
    assert len(sockets) == 1, "no reconnect while the visitor is away"
    widget.locator(CHOICE).first.click()
    expect(widget.locator(VISITOR)).to_have_count(1)
    page.wait_for_function(f"window.Leadflow.state().ack === {ack + 1}")
    assert len(sockets) == 2
    assert [f["type"] for f in sent if f["type"] != "ping"] == ["start", "resume", "press"]

"""End to end: the unchanged snippet (``<script src="/widget.js" data-...>``) loads the
loader, the loader the content-hashed, compressed widget, and the widget works under
the demo page's strict CSP; a second page view takes the widget from the browser's
cache without asking the server."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from playwright.sync_api import Browser, CDPSession, Page, expect

from tests.e2e.test_widget_limits import relay_counting
from tests.support.server import ServerProcess
from tests.support.widget import wait_until

pytestmark = pytest.mark.e2e

HASHED = re.compile(r"/widget\.[0-9a-f]{16}\.js$")
BOT = ".lf-msg.lf-bot"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    process = ServerProcess(tmp_path_factory.mktemp("leadflow-data")).start()
    try:
        yield process.http_url
    finally:
        process.stop()


class Network:
    """What Chromium reports of each response (CDP), and which came from its cache."""

    def __init__(self, cdp: CDPSession) -> None:
        self.responses: list[dict[str, Any]] = []
        self.cached: set[str] = set()
        cdp.on("Network.responseReceived", self._response)
        cdp.on("Network.requestServedFromCache", lambda event: self.cached.add(event["requestId"]))
        cdp.send("Network.enable")

    def _response(self, event: dict[str, Any]) -> None:
        self.responses.append({**event["response"], "requestId": event["requestId"]})

    def hashed(self) -> list[dict[str, Any]]:
        return [r for r in self.responses if HASHED.search(r["url"])]

    def from_cache(self, response: dict[str, Any]) -> bool:
        return bool(response["requestId"] in self.cached or response.get("fromDiskCache"))


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(locale="en-GB", reduced_motion="reduce")
    context.set_default_timeout(5_000)
    page = context.new_page()
    errors: list[str] = []
    console: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda message: console.append(message.text))
    try:
        yield page
    finally:
        context.close()
    assert not errors, errors
    assert not [text for text in console if "Content Security Policy" in text], console


def test_the_snippet_loads_the_hashed_widget_which_works_and_is_cached(
    page: Page, server: str
) -> None:
    network = Network(page.context.new_cdp_session(page))
    page.goto(f"{server}/?flow=saas-demo")
    launcher = page.get_by_role("button", name="Open chat")
    launcher.click()
    widget = page.locator("#leadflow-widget")
    expect(widget.locator(BOT).first).to_be_visible()
    # the loader's element: the hashed file with the snippet's configuration
    added = page.locator("script[src*='widget.']:not([src$='/widget.js'])")
    expect(added).to_have_count(1)
    assert HASHED.search(added.get_attribute("src") or "")
    assert added.get_attribute("data-flow") == "saas-demo"  # set by the page before
    assert added.get_attribute("data-site") == "demo"
    (first,) = network.hashed()
    assert first["status"] == 200 and not network.from_cache(first)
    headers = {name.lower(): value for name, value in first["headers"].items()}
    assert headers["cache-control"] == "public, max-age=31536000, immutable"
    assert headers["content-encoding"] in {"br", "gzip"}  # br only over HTTPS in Chromium
    assert page.evaluate("window.Leadflow.state().connected") is True

    page.goto(f"{server}/")  # a second page view: the widget comes from the cache
    expect(page.get_by_role("button", name=re.compile("(Open|Close) chat"))).to_be_visible()
    second = network.hashed()[1]
    assert second["url"] == first["url"]
    assert network.from_cache(second), "cached: not even revalidated"


def test_the_pointer_on_the_launcher_opens_the_socket_and_the_click_starts_on_it(
    page: Page, server: str
) -> None:
    """Intent (hover) opens the socket but sends nothing: no conversation starts until
    the click, which sends its start on that very socket."""
    sockets: list[int] = []
    sent: list[dict[str, Any]] = []
    relay_counting(page, sockets, sent)
    page.goto(f"{server}/")
    launcher = page.get_by_role("button", name="Open chat")
    launcher.hover()
    wait_until(page, "window.Leadflow.state().connected")
    page.wait_for_timeout(300)
    assert sockets == [0] and sent == [], "a warm socket sends no command"
    assert page.evaluate("window.Leadflow.state().conversationId") is None
    launcher.click()
    expect(page.locator("#leadflow-widget").locator(BOT).first).to_be_visible()
    # the instant opening may show the first bubble before the start is sent: wait for
    # the start's session, then count what went over the sockets
    wait_until(page, "window.Leadflow.state().conversationId")
    assert sockets == [0], "the click used the warm socket"
    assert [frame["type"] for frame in sent] == ["start"]


def test_an_unused_warm_socket_is_closed_quietly_and_the_click_connects_afresh(
    page: Page, server: str
) -> None:
    sockets: list[int] = []
    sent: list[dict[str, Any]] = []
    relay_counting(page, sockets, sent)
    page.clock.install()
    page.goto(f"{server}/")
    launcher = page.get_by_role("button", name="Open chat")
    launcher.hover()
    wait_until(page, "window.Leadflow.state().connected")
    page.mouse.move(0, 0)
    page.clock.run_for(16_000)  # past WARM_MS
    wait_until(page, "!window.Leadflow.state().connected")
    page.clock.run_for(60_000)  # no reconnection by itself
    assert sockets == [0] and sent == []
    status = page.locator("#leadflow-widget .lf-status")
    assert status.text_content() == ""
    launcher.click()
    expect(page.locator("#leadflow-widget").locator(BOT).first).to_be_visible()
    wait_until(page, "window.Leadflow.state().conversationId")  # the start's session is in
    assert sockets == [0, 1] and [frame["type"] for frame in sent] == ["start"]


@pytest.fixture
def customer_site(server: str) -> Iterator[str]:
    """A customer's page on another origin (``localhost``, the gateway is ``127.0.0.1``)
    whose CSP allows scripts only by nonce; yields its URL."""
    html = (
        "<!doctype html><html><head><title>Customer</title></head><body><h1>Hi</h1>"
        f'<script nonce="n0nce" src="{server}/widget.js" data-site="demo" '
        'data-flow="insurance-quote" defer></script></body></html>'
    ).encode()

    class CustomerPage(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Security-Policy", "script-src 'nonce-n0nce'")
            self.send_header("Content-Length", str(len(html)))
            self.end_headers()
            self.wfile.write(html)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), CustomerPage)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_a_page_of_another_origin_with_a_nonce_csp_embeds_the_widget(
    page: Page, server: str, customer_site: str
) -> None:
    """The loader passes its nonce on to the hashed widget it adds, which loads from
    the gateway's origin and connects to the gateway's /ws."""
    page.goto(customer_site)
    page.get_by_role("button", name="Open chat").click()
    expect(page.locator("#leadflow-widget").locator(BOT).first).to_be_visible()
    added = page.locator(f"script[src^='{server}/widget.']:not([src$='/widget.js'])")
    assert added.get_attribute("data-flow") == "insurance-quote"
    assert added.evaluate("el => el.nonce") == "n0nce"

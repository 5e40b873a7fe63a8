"""The instant opening in Chromium against the real server (issue 20): the first
question is on screen before the WebSocket opens; a button pressed before it opens is
delivered (seq 2) and answered; a version published while the socket was still
opening replaces the opening on screen with the server's reply.

The page is instrumented by an init script: ``window.WebSocket`` is wrapped to open
the real socket only after a delay (a far region) and to record when it opens and
what it sends, and a MutationObserver on the widget's shadow root records when the
first question's buttons are visible. The page comes from another origin (a port of
its own), so the opening is fetched cross-origin, as on a customer's site.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support import opening
from tests.support.host_pages import HostPages
from tests.support.server import ServerProcess

pytestmark = pytest.mark.e2e

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Host</title>
</head><body><main><h1>Host page</h1>{body}</main>
<script src="{server}/widget.js" {attrs}></script></body></html>"""
BOT = ".lf-msg.lf-bot"
QUESTION = ".lf-panel:not([hidden]) .lf-choices:not([data-answered]) button"
INSTRUMENT = """
(() => {
  const events = (window.__events = []);
  const mark = (name) => events.push([name, performance.now()]);
  const Native = window.WebSocket;
  // DELAY_MS < 0: the sockets open when the test calls window.__openSockets()
  const gate = DELAY_MS >= 0
    ? new Promise((go) => setTimeout(go, DELAY_MS))
    : new Promise((go) => (window.__openSockets = go));
  function Slow(url, protocols) {
    mark('socket');
    this.readyState = 0;
    gate.then(() => {
      if (this.readyState === 3) return;
      const ws = (this.ws = new Native(url, protocols));
      ws.onopen = (e) => { this.readyState = 1; mark('open'); if (this.onopen) this.onopen(e); };
      ws.onmessage = (e) => {  // window.__holdMs: the server's frames arrive that much later
        const deliver = () => { if (this.onmessage) this.onmessage(e); };
        if (window.__holdMs) setTimeout(deliver, window.__holdMs); else deliver();
      };
      ws.onclose = (e) => { this.readyState = 3; if (this.onclose) this.onclose(e); };
      ws.onerror = (e) => { if (this.onerror) this.onerror(e); };
    });
  }
  Slow.prototype.send = function (data) {
    const frame = JSON.parse(data);
    mark('send:' + frame.type + (frame.seq ? ':' + frame.seq : ''));
    this.ws.send(data);
  };
  Slow.prototype.close = function (code, reason) {
    this.readyState = 3;
    if (this.ws) this.ws.close(code, reason);
  };
  Object.assign(Slow, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });
  window.WebSocket = Slow;
  new MutationObserver((_, found) => {
    const host = document.getElementById('leadflow-widget');
    if (!host || !host.shadowRoot) return;
    found.disconnect();
    const root = host.shadowRoot;
    new MutationObserver(() => {
      const seen = events.some((e) => e[0] === 'question');
      if (!seen && root.querySelector('QUESTION')) mark('question');
    }).observe(root, { childList: true, subtree: true, attributes: true });
  }).observe(document, { childList: true, subtree: true });
})();
"""


def start_server(tmp: Path) -> ServerProcess:
    env = {**opening.environment(tmp), "LEADFLOW_DELIVERY": "off"}
    return ServerProcess(tmp / "data", env=env).start()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = start_server(tmp_path_factory.mktemp("instant-opening"))
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def hosts() -> Iterator[HostPages]:
    pages = HostPages()
    try:
        yield pages
    finally:
        pages.close()


class Visit:
    def __init__(
        self,
        browser: Browser,
        hosts: HostPages,
        server: ServerProcess,
        delay_ms: int,
        attrs: str = f'data-site="demo" data-flow="{opening.FLOW}"',
    ):
        self.context = browser.new_context(
            locale="en-GB", reduced_motion="reduce", viewport={"width": 1280, "height": 800}
        )
        self.context.set_default_timeout(10_000)
        self.page: Page = self.context.new_page()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        script = INSTRUMENT.replace("DELAY_MS", str(delay_ms)).replace("QUESTION", QUESTION)
        self.page.add_init_script(script)
        html = PAGE.format(server=server.http_url, attrs=attrs, body="")
        self.page.goto(hosts.add(f"/instant-{len(hosts.pages)}.html", html))

    def events(self) -> dict[str, float]:
        """The first time of each recorded event, by name."""
        firsts: dict[str, float] = {}
        for name, at in self.page.evaluate("window.__events"):
            firsts.setdefault(name, at)
        return firsts

    def state(self) -> Any:
        return self.page.evaluate("window.Leadflow.state()")

    def bot_texts(self) -> list[str]:
        return [t.strip() for t in self.page.locator(BOT).all_inner_texts()]


@pytest.fixture
def visit(browser: Browser, hosts: HostPages) -> Iterator[Any]:
    opened: list[Visit] = []

    def make(server: ServerProcess, delay_ms: int, **attrs: str) -> Visit:
        opened.append(Visit(browser, hosts, server, delay_ms, **attrs))
        return opened[-1]

    yield make
    for v in opened:
        v.context.close()
        assert not v.errors, f"uncaught errors in the page: {v.errors}"


def test_the_first_question_is_visible_before_the_socket_opens(
    server: ServerProcess, visit: Any
) -> None:
    v = visit(server, 2000)
    v.page.click(".lf-launcher")
    expect(v.page.locator(QUESTION)).to_have_count(2)
    assert v.bot_texts()[0] == opening.GREETING["en"]
    assert "open" not in v.events()  # the bot asked before the socket was there
    expect(v.page.locator(BOT)).to_have_count(3)
    v.page.wait_for_function("window.Leadflow.state().conversationId !== null")
    events = v.events()
    assert events["question"] < events["open"] < events["send:start"], events
    # the start's reply confirmed the opening: nothing shown twice
    assert v.page.locator(BOT).evaluate_all("ns => ns.map(n => n.dataset.seq)") == ["2", "3", "4"]
    assert v.state()["lastSeq"] == 4 and v.state()["ack"] == 1
    assert any("/opening/demo/instant-quiz/1." in url for url in v.requests)


def test_a_press_before_the_socket_opens_is_delivered(server: ServerProcess, visit: Any) -> None:
    v = visit(server, 2500)
    v.page.click(".lf-launcher")
    v.page.locator(QUESTION, has_text="Flat").click()
    assert "open" not in v.events()  # pressed while there was no socket yet
    expect(v.page.locator(BOT).last).to_have_text("How many rooms?")
    events = v.events()
    assert events["open"] < events["send:start"] < events["send:press:2"], events
    assert v.bot_texts() == [
        opening.GREETING["en"],
        "It takes a minute, friend.",
        "What kind of home do you live in?",
        "How many rooms?",
    ]
    expect(v.page.locator(".lf-msg.lf-me")).to_have_count(1)
    assert v.state()["ack"] == 2


def test_start_again_shows_the_opening_again_and_reconciles(
    server: ServerProcess, visit: Any
) -> None:
    v = visit(server, 0)
    v.page.click(".lf-launcher")
    v.page.locator(QUESTION, has_text="House").click()
    v.page.locator(QUESTION, has_text="1-3").click()
    v.page.get_by_label("Email").fill("ann@example.com")
    v.page.get_by_role("button", name="Send").click()
    expect(v.page.locator(BOT).last).to_have_text("Thanks!")
    first = v.state()["conversationId"]
    v.page.evaluate(
        "() => { window.__holdMs = 1500; window.__sent = []; const send = WebSocket.prototype.send;"
        " WebSocket.prototype.send = function (d) { window.__sent.push(JSON.parse(d).type);"
        " return send.call(this, d); }; }"
    )
    v.page.get_by_role("button", name="Start again").click()
    expect(v.page.locator(QUESTION)).to_have_count(2)
    assert v.state()["conversationId"] is None  # the opening, before the start's reply
    v.page.wait_for_function(f"window.Leadflow.state().conversationId !== {first!r}")
    v.page.locator(QUESTION, has_text="Flat").click()
    expect(v.page.locator(BOT).last).to_have_text("How many rooms?")
    seqs = v.page.locator(BOT).evaluate_all("ns => ns.map(n => n.dataset.seq)")
    assert seqs == ["2", "3", "4", "6"]  # the opening once, then the press's reply
    assert v.page.evaluate("window.__sent") == ["start", "press"]
    assert v.state()["ack"] == 2


@pytest.mark.parametrize(
    "attrs",
    [
        f'data-site="demo" data-flow="{opening.FLOW}" data-instant="false"',
        f'data-site="demo" data-flow="{opening.CONTEXT_FLOW}"',  # instant: false
    ],
    ids=["data-instant-false", "reads-the-context"],
)
def test_without_an_instant_opening_the_question_comes_with_the_socket(
    server: ServerProcess, visit: Any, attrs: str
) -> None:
    v = visit(server, 300, attrs=attrs)
    v.page.click(".lf-launcher")
    expect(v.page.locator(QUESTION).first).to_be_visible()
    events = v.events()
    assert events["open"] < events["send:start"] < events["question"], events
    fetched = any("/opening/" in url for url in v.requests)
    assert fetched == ("context-quiz" in attrs)  # asked, answered instant: false


def test_a_version_published_before_the_socket_opens_replaces_the_opening(
    browser: Browser, hosts: HostPages, visit: Any, tmp_path: Path
) -> None:
    own = start_server(tmp_path)  # its flow changes: a server of its own
    try:
        v = visit(own, -1)  # the socket opens when the test says
        v.page.click(".lf-launcher")
        v.page.locator(QUESTION, has_text="House").click()  # on version 1's question
        publish(own, opening.instant_quiz_v2())
        assert "open" not in v.events()
        v.page.evaluate("window.__openSockets()")
        expect(v.page.locator(BOT).first).to_have_text(opening.NEW_GREETING["en"], timeout=15_000)
        # the server's reply replaced the opening: version 2's greeting, once; the press
        # made on version 1's question was not sent (the visitor answers again)
        assert opening.GREETING["en"] not in v.bot_texts()
        assert v.bot_texts().count(opening.NEW_GREETING["en"]) == 1
        expect(v.page.locator(".lf-msg.lf-me")).to_have_count(0)
        assert not any(name.startswith("send:press") for name in v.events())
        v.page.locator(QUESTION, has_text="House").click()
        expect(v.page.locator(BOT).last).to_have_text("How many rooms?")
        assert v.state()["ack"] == 2
    finally:
        own.stop()


def publish(server: ServerProcess, text: str) -> None:
    request = urllib.request.Request(
        f"{server.http_url}/api/v1/flows",
        data=text.encode(),
        headers={**opening.ADMIN, "Content-Type": "application/yaml"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 201

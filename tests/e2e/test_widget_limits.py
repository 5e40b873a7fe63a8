"""End to end: the widget under the gateway's limits (issue 14): an idle close,
long resumes in pages, and the demo page's security headers.

The real server with short limits, driven through the widget in Debian's
Chromium; every test also fails on an uncaught page error or a CSP violation.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Locator, Page, WebSocketRoute, expect

from services.conversation.replies import MAX_RESUME_MESSAGES
from tests.support.server import ServerProcess
from tests.support.widget import OPEN_ASK, answer_free_text, wait_until

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "flows"
STEP_TIMEOUT_MS = 5_000
CHOICE = ".lf-choice:enabled"
VISITOR = ".lf-msg.lf-me"
IDLE_SECONDS = 1.5


# A cyclic flow under the id of an example flow (a newer version of it), so that the
# demo page itself runs it: `/?flow=insurance-quote` (a page routed by Playwright
# could not reach the server's loopback address: Chromium's local network checks).
LOOP_FLOW = """\
id: insurance-quote
version: 99
start: q
nodes:
  - id: q
    kind: question
    text: Shall we go round once more?
    buttons:
      - {id: again, label: Again, next: m}
      - {id: stop, label: Stop, next: bye}
  - {id: m, kind: message, text: Round and round we go, next: q}
  - {id: bye, kind: end, text: Bye}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The example flows, insurance-quote replaced by a cyclic flow; a short idle timeout."""
    root = tmp_path_factory.mktemp("leadflow-limits")
    flows = root / "flows"
    shutil.copytree(EXAMPLES, flows)
    (flows / "loop.yaml").write_text(LOOP_FLOW, "utf-8")
    process = ServerProcess(
        root / "data",
        env={"LEADFLOW_IDLE_TIMEOUT_SECONDS": str(IDLE_SECONDS)},
        args=("--flows", str(flows)),
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
    widget.locator(f"{CHOICE}, {OPEN_ASK}").first.wait_for()  # the first question, of any kind
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
    answer_free_text(widget)  # solar-quote's first question, then the visitor goes away
    widget.locator(CHOICE).first.wait_for()
    ack = page.evaluate("window.Leadflow.state().ack")
    wait_until(page, "!window.Leadflow.state().connected")
    page.wait_for_timeout(2 * IDLE_SECONDS * 1000)
    assert len(sockets) == 1, "no reconnect while the visitor is away"
    widget.locator(CHOICE).first.click()
    expect(widget.locator(VISITOR)).to_have_count(2)
    wait_until(page, f"window.Leadflow.state().ack === {ack + 1}")
    assert len(sockets) == 2
    sent_types = [f["type"] for f in sent if f["type"] != "ping"]
    assert sent_types == ["start", "answer", "resume", "press"]


def test_the_demo_page_works_under_its_content_security_policy(
    watched: Watched, server: str
) -> None:
    """The demo page now has a strict CSP (hashes, no unsafe-inline): its own script
    picks the flow, the widget's shadow-root styles apply and its socket connects."""
    page = watched.page
    response = page.goto(f"{server}/?flow=saas-demo")
    assert response is not None
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    page.get_by_role("button", name="Get my free quote").click()  # the inline script's
    widget = page.locator("#leadflow-widget")
    widget.locator(CHOICE).first.wait_for()
    launcher = widget.locator(".lf-launcher")
    assert launcher.evaluate("el => getComputedStyle(el).position") == "fixed", "styled"
    assert page.evaluate("document.querySelector('script[src=\"/widget.js\"]').dataset.flow") == (
        "saas-demo"
    )
    widget.locator(CHOICE).first.click()
    expect(widget.locator(VISITOR)).to_have_count(1)


def test_a_long_transcript_is_restored_from_paged_resumes(watched: Watched, server: str) -> None:
    """After a reload the widget resumes from 0; a transcript longer than a page comes
    in pages (`more`), and the widget asks for each until it has every message, in
    order and once, with the newest question actionable."""
    page = watched.page
    page.goto(f"{server}/?flow=insurance-quote")
    widget = open_widget(page)
    presses = 30  # 1 + 2 * 30 messages: two pages
    for done in range(presses):
        widget.locator(CHOICE).first.wait_for()
        wait_until(page, f"window.Leadflow.state().ack === {done + 1}")
        widget.locator(CHOICE).first.click()
    wait_until(page, f"window.Leadflow.state().ack === {presses + 1}")
    sockets: list[int] = []
    sent: list[dict[str, Any]] = []
    relay_counting(page, sockets, sent)
    page.reload()
    wait_until(
        page,
        f"window.Leadflow.state().lastSeq > 0 && window.Leadflow.state().ack === {presses + 1}",
    )
    bot = widget.locator(".lf-msg.lf-bot")
    expect(bot).to_have_count(1 + 2 * presses)
    seqs = bot.evaluate_all("els => els.map(e => Number(e.dataset.seq))")
    assert seqs == sorted(set(seqs))
    resumes = [f for f in sent if f["type"] == "resume"]
    assert [r["last_seq"] for r in resumes] == [0, seqs[MAX_RESUME_MESSAGES - 1]], resumes
    widget.locator(CHOICE).first.click()
    wait_until(page, f"window.Leadflow.state().ack === {presses + 2}")


def test_a_press_the_server_never_read_before_an_idle_close_is_sent_again(
    watched: Watched, server: str
) -> None:
    """Regression: a press that crossed the server's idle close (1001, "idle timeout")
    was never read; the widget took the close as the visitor having gone and waited
    for another action, so the press stayed pending for good. It now resumes at once
    and sends the press again (same seq: applied once)."""
    page = watched.page
    dropped: list[dict[str, Any]] = []

    def relay(ws: WebSocketRoute) -> None:
        upstream = ws.connect_to_server()

        def from_page(message: str | bytes) -> None:
            frame = json.loads(message)
            if frame["type"] == "press" and not dropped:
                dropped.append(frame)  # unread, as the server closes for idleness
                ws.close(code=1001, reason="idle timeout")
                upstream.close()
                return
            upstream.send(message)

        ws.on_message(from_page)

    page.route_web_socket("**/ws", relay)
    page.goto(f"{server}/?flow=insurance-quote")
    widget = open_widget(page)
    wait_until(page, "window.Leadflow.state().ack === 1")  # the start
    widget.locator(CHOICE).first.click()
    wait_until(page, "window.Leadflow.state().ack === 2")
    assert [f["seq"] for f in dropped] == [2]
    expect(widget.locator(VISITOR)).to_have_count(1)

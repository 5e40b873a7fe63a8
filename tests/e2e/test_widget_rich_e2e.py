"""End to end, client side only: the widget's rendering of rich content and free-text
input (issue 19) against a small scripted WebSocket server, before the real server
speaks that part of the protocol. Real-server tests of the same flow replace this one
when the server side lands (tests/e2e/test_widget_embed_e2e.py covers the rest of the
widget against the real server).

The last test plays a small flow of input nodes on the real server (``leadflow serve``).

The fake serves the unminified widget.js, a page embedding it, and ``/ws``: a start
gets a session and two bot messages (Markdown text with links and an image, then a
skippable text input); an answer "bad" is refused with a retryable
``invalid_answer``, any other answer ends the conversation.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from playwright.sync_api import Browser, Page, expect

from tests.e2e.test_widget_embed_e2e import PAGE as HOST_PAGE
from tests.support.host_pages import HostPages
from tests.support.server import ServerProcess, free_port

pytestmark = pytest.mark.e2e

WIDGET = Path(__file__).resolve().parents[2] / "gateway" / "static" / "widget.js"
TEXT = (
    "Hello **bold** and *italic*.\nSee [our terms](https://example.com/terms), "
    "[mail us](mailto:hi@example.com) and [this](javascript:alert(1)). "
    # a visitor's value inserted by a template, escaped by the server: shown as typed
    "You said \\*\\*x\\*\\* at \\[a\\]\\(https://evil.example\\) with a\\_b\\\\c."
)
IMAGE = {"src": "https://example.com/panel.png", "alt": "A solar panel on a roof"}
INPUT = {"type": "text", "max_length": 40, "skippable": True, "placeholder": "Your city"}
PAGE = """<!doctype html><html lang="{lang}"><head><meta charset="utf-8"><title>Fake</title></head>
<body><main><h1>Fake host page</h1></main>
<script src="/widget.js" data-site="demo" data-flow="rich" {attrs}></script></body></html>"""


def _message(seq: int, kind: str, text: str, **extra: Any) -> str:
    message = {"seq": seq, "node_id": f"n{seq}", "kind": kind, "text": text, **extra}
    return json.dumps({"type": "message", "v": 1, "ack": extra.pop("ack", 1), "message": message})


class FakeGateway:
    """The scripted server, in a thread of its own; ``frames`` are what the widget sent."""

    def __init__(self) -> None:
        self.port = free_port()
        self.frames: list[dict[str, Any]] = []
        self.attrs = ""
        self.lang = "en"
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _page(self, request: web.Request) -> web.Response:
        body = PAGE.format(lang=self.lang, attrs=self.attrs)
        return web.Response(text=body, content_type="text/html")

    async def _widget(self, request: web.Request) -> web.Response:
        return web.Response(text=WIDGET.read_text("utf-8"), content_type="text/javascript")

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                break
            frame = json.loads(msg.data)
            self.frames.append(frame)
            for reply in self._script(frame):
                await ws.send_str(reply)
        return ws

    def _script(self, frame: dict[str, Any]) -> list[str]:
        if frame["type"] == "ping":
            return ['{"type":"pong","v":1}']
        if frame["type"] in ("start", "resume"):
            session = {"type": "session", "v": 1, "conversation_id": "c1", "token": "t"}
            return [
                json.dumps({**session, "ack": 1, "messages": 2, "more": False}),
                _message(1, "message", TEXT, image=IMAGE),
                _message(2, "input", "Which city do you live in?", input=INPUT),
            ]
        if frame["type"] == "answer" and frame.get("value") == "bad":
            error = {"code": "invalid_answer", "message": "Please name a real city."}
            return [json.dumps({"type": "error", "v": 1, "seq": frame["seq"], "ack": 1, **error})]
        if frame["type"] == "answer":
            return [_message(3, "end", "Thanks, that's all.", done=True, ack=2)]
        return []

    def start(self) -> FakeGateway:
        app = web.Application()
        app.router.add_get("/", self._page)
        app.router.add_get("/widget.js", self._widget)
        app.router.add_get("/ws", self._ws)
        self._runner = web.AppRunner(app)
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            assert self._runner is not None
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", self.port)
            self._loop.run_until_complete(site.start())
            ready.set()
            self._loop.run_forever()

        threading.Thread(target=run, daemon=True).start()
        assert ready.wait(10)
        return self

    def stop(self) -> None:
        async def cleanup() -> None:
            assert self._runner is not None
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGateway]:
    gateway = FakeGateway().start()
    try:
        yield gateway
    finally:
        gateway.stop()


def _page(browser: Browser, fake: FakeGateway, attrs: str = "", **context: Any) -> Page:
    fake.attrs = attrs
    fake.frames.clear()
    ctx = browser.new_context(locale="en-GB", reduced_motion="reduce", **context)
    ctx.set_default_timeout(5_000)
    page = ctx.new_page()
    page.on("pageerror", lambda exc: pytest.fail(f"uncaught error in the page: {exc}"))
    return page


def test_markdown_image_and_free_text_input(browser: Browser, fake: FakeGateway) -> None:
    page = _page(browser, fake, 'data-open="true"')
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    page.goto(fake.url)
    widget = page.locator("#leadflow-widget")
    first = widget.locator(".lf-bot[data-seq='1']")
    expect(first.locator("strong")).to_have_text("bold")
    expect(first.locator("em")).to_have_text("italic")
    expect(first.locator("br")).to_have_count(1)
    links = first.locator("a")
    expect(links).to_have_count(2)  # javascript: stays text
    for i, href in enumerate(("https://example.com/terms", "mailto:hi@example.com")):
        expect(links.nth(i)).to_have_attribute("href", href)
        expect(links.nth(i)).to_have_attribute("target", "_blank")
        expect(links.nth(i)).to_have_attribute("rel", "noopener noreferrer")
    expect(first).to_contain_text("[this](javascript:alert(1))")
    expect(first).to_contain_text("You said **x** at [a](https://evil.example) with a_b\\c.")
    expect(first.locator("img")).to_have_attribute("alt", IMAGE["alt"])
    expect(first.locator("img")).to_have_attribute("src", IMAGE["src"])

    field = widget.get_by_label("Which city do you live in?")
    expect(field).to_have_attribute("maxlength", "40")
    expect(field).to_have_attribute("placeholder", "Your city")
    expect(widget.get_by_role("button", name="Skip")).to_be_visible()

    # refused by the server: its message next to the field, the typed value kept
    field.fill("bad")
    widget.get_by_role("button", name="Send").click()
    expect(widget.locator(".lf-ask .lf-error")).to_have_text("Please name a real city.")
    expect(field).to_have_value("bad")
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(widget.locator(".lf-me")).to_have_count(0)

    field.fill("Lyon")
    field.press("Enter")
    expect(widget.locator(".lf-bot[data-done='true']")).to_have_text("Thanks, that's all.")
    expect(widget.locator(".lf-me")).to_have_text(["You: Lyon"])
    answers = [f for f in fake.frames if f["type"] == "answer"]
    assert answers == [
        {"type": "answer", "v": 1, "seq": 2, "node": "n2", "value": "bad"},
        {"type": "answer", "v": 1, "seq": 2, "node": "n2", "value": "Lyon"},
    ]
    assert not [text for text in console if "Lyon" in text], "typed answers are never logged"
    page.context.close()


def test_skip_and_german_strings(browser: Browser, fake: FakeGateway) -> None:
    page = _page(browser, fake, 'data-locale="de"')
    page.goto(fake.url)
    widget = page.locator("#leadflow-widget")
    page.get_by_role("button", name="Chat öffnen").click()
    widget.get_by_role("button", name="Überspringen").click()
    expect(widget.locator(".lf-me")).to_have_text(["Sie: Übersprungen"])
    expect(widget.locator(".lf-bot[data-done='true']")).to_be_visible()
    answers = [f for f in fake.frames if f["type"] == "answer"]
    assert answers == [{"type": "answer", "v": 1, "seq": 2, "node": "n2", "skip": True}]
    starts = [f for f in fake.frames if f["type"] == "start"]
    assert starts[0]["context"]["locale"] == "de", "the flow speaks the widget's language"
    expect(page.get_by_role("button", name="Chat schließen")).to_be_visible()
    page.context.close()


def test_an_unreadable_accent_is_replaced_and_the_owner_warned(
    browser: Browser, fake: FakeGateway
) -> None:
    page = _page(browser, fake, 'data-accent="#ffd000" data-text="#ffffff"')
    warnings: list[str] = []
    page.on("console", lambda m: warnings.append(m.text) if m.type == "warning" else None)
    page.goto(fake.url)
    launcher = page.get_by_role("button", name="Open chat")
    expect(launcher).to_be_visible()
    assert any("#ffd000" in w and "1.4" in w and "4.5:1" in w for w in warnings), warnings
    colours = launcher.evaluate(
        "b => [getComputedStyle(b).backgroundColor, getComputedStyle(b).color]"
    )
    assert colours == ["rgb(79, 70, 229)", "rgb(255, 255, 255)"], colours
    page.context.close()


# ------------------------------------------------------------------ the real server

CITY_FLOW = """\
id: city-quiz
version: 1
title: City quiz
start: hello
nodes:
  - id: hello
    kind: message
    text: Hi! Please read our [terms](https://example.com/terms) first.
    next: city
  - id: city
    kind: input
    text: Which city do you live in?
    input: {type: text, max_length: 40, skippable: true, placeholder: "Your city"}
    next: people
  - id: people
    kind: input
    text: How many people live with you?
    input: {type: number, min: 1, max: 20, personal: false}
    next: colour
  - id: colour
    kind: input
    text: Your favourite colour?
    input:
      type: choice
      choices: [{id: red, label: Red}, {id: blue, label: Blue}]
      other: true
    next: bye
  - id: bye
    kind: end
    text: Thanks, see you in {{city | your town}}!
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    flows = tmp_path_factory.mktemp("flows")
    (flows / "city-quiz.yaml").write_text(CITY_FLOW, "utf-8")
    data = tmp_path_factory.mktemp("leadflow-data")
    process = ServerProcess(data, env={"LEADFLOW_FLOWS_DIR": str(flows)}).start()
    try:
        yield process.http_url
    finally:
        process.stop()


def test_free_text_answers_against_the_real_server(browser: Browser, server: str) -> None:
    ctx = browser.new_context(locale="en-GB", reduced_motion="reduce")
    ctx.set_default_timeout(5_000)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    hosts = HostPages()
    hosts.pages["/"] = HOST_PAGE.format(
        server=server, attrs='data-site="demo" data-flow="city-quiz"', body=""
    )
    page.goto(f"http://127.0.0.1:{hosts.port}/")
    widget = page.locator("#leadflow-widget")
    page.get_by_role("button", name="Open chat").click()
    link = widget.locator(".lf-bot a")
    expect(link).to_have_attribute("href", "https://example.com/terms")
    expect(link).to_have_attribute("rel", "noopener noreferrer")

    city = widget.get_by_label("Which city do you live in?")
    expect(city).to_have_attribute("maxlength", "40")
    city.fill("Lyon")
    city.press("Enter")
    people = widget.get_by_label("How many people live with you?")
    people.fill("99")  # the widget sends it; the server refuses it (max 20)
    people.press("Enter")
    expect(widget.locator(".lf-ask:not([data-answered]) .lf-error")).not_to_be_empty()
    expect(people).to_have_value("99")
    people.fill("3")
    people.press("Enter")
    widget.get_by_role("button", name="Blue").click()
    done = widget.locator(".lf-bot[data-done='true']")
    expect(done).to_have_text("Thanks, see you in Lyon!")
    expect(widget.locator(".lf-me")).to_have_text(["You: Lyon", "You: 3", "You: Blue"])
    ctx.close()
    hosts.httpd.shutdown()
    hosts.httpd.server_close()
    assert not errors, errors

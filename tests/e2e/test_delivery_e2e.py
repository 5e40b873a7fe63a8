"""End to end: a lead left through the widget in a real Chromium reaches the
site's webhook, signed (issue 15).

The real server (``python -m app.cli serve``) serves the demo page and the
example flows, with a sites file whose ``demo`` site names a webhook
destination: a :class:`tests.support.receiver.Receiver` on 127.0.0.1 that
verifies every Standard Webhooks signature with the reference package. The
receiver runs its own event loop in a thread, since Playwright's sync API owns
the test's thread.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from playwright.sync_api import Browser, Locator, Page, expect

from tests.support.delivery_rig import SECRET, TEST_ENV, payloads, webhook
from tests.support.receiver import Receiver
from tests.support.server import ServerProcess
from tests.support.widget import FIRST_NAME, OPEN_ASK, answer_free_text

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SOLAR_FLOW = ROOT / "examples" / "flows" / "solar-quote.yaml"
STEP_TIMEOUT_MS = 5_000
MAX_STEPS = 25
NAME = "Dee Livery"
EMAIL = "dee.livery@example.com"
BOT = ".lf-msg.lf-bot"
VISITOR = ".lf-msg.lf-me"
CHOICE = ".lf-choice:enabled"
LEAD_FORM = "form.lf-form"


class ThreadedReceiver:
    """A :class:`Receiver` serving from its own event loop in a daemon thread."""

    def __init__(self, secret: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.receiver = self._call(Receiver(secret).start())

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    def snapshot(self) -> tuple[dict[str, list[bytes]], int, int]:
        """(bodies by webhook-id, bad signatures, requests), read on the receiver's loop."""

        async def read() -> tuple[dict[str, list[bytes]], int, int]:
            r = self.receiver
            return {k: list(v) for k, v in r.bodies.items()}, r.bad_signatures, len(r.requests)

        result: tuple[dict[str, list[bytes]], int, int] = self._call(read())
        return result

    def close(self) -> None:
        self._call(self.receiver.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[ThreadedReceiver]:
    hook = ThreadedReceiver(SECRET)
    try:
        yield hook
    finally:
        hook.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, receiver: ThreadedReceiver) -> Iterator[str]:
    """``leadflow serve`` with the example flows and a ``demo`` site delivering to the receiver."""
    config = tmp_path_factory.mktemp("leadflow-config")
    sites = {
        "sites": [
            {
                "id": "demo",
                "origins": ["http://127.0.0.1:*", "http://localhost:*"],
                "deliveries": [webhook("crm", f"{receiver.receiver.url}/hook")],
            }
        ]
    }
    sites_file = config / "sites.yaml"
    sites_file.write_text(yaml.safe_dump(sites))
    env = {**TEST_ENV, "LEADFLOW_SITES_FILE": str(sites_file)}
    process = ServerProcess(tmp_path_factory.mktemp("leadflow-data"), env=env).start()
    try:
        yield process.http_url
    finally:
        process.stop()


@pytest.fixture
def page(browser: Browser, server: str) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-GB")
    context.set_default_timeout(STEP_TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{server}/?flow=solar-quote&utm_source=e2e")
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


def _questions() -> dict[str, tuple[str, dict[str, str], str]]:
    """The solar flow's question texts as the visitor saw them (its templates filled
    with the first name typed) -> (node id, button label -> button id, the text as
    the flow writes it); a free-text question's answer is sent as ``answered`` (never
    the value typed)."""
    flow: dict[str, Any] = yaml.safe_load(SOLAR_FLOW.read_text("utf-8"))
    return {
        " ".join(
            re.sub(r"\{\{\s*name\s*\|[^}]*\}\}", FIRST_NAME, _english(node["text"])).split()
        ): (
            str(node["id"]),
            {_english(b["label"]): str(b["id"]) for b in node["buttons"]}
            if node["kind"] == "question"
            else {"answered": "answered"},
            " ".join(_fallbacks(_english(node["text"])).split()),
        )
        for node in flow["nodes"]
        if node["kind"] in ("question", "input")
    }


def _answer_until_the_form(widget: Locator) -> list[tuple[str, str]]:
    """Press the first answer of each question (type a first name into the free-text
    one) until the lead form shows; returns (question text, pressed label) in order."""
    pressed: list[tuple[str, str]] = []
    for _ in range(MAX_STEPS):
        widget.locator(f"{CHOICE}, {OPEN_ASK}, {LEAD_FORM}").first.wait_for()
        if widget.locator(LEAD_FORM).count():
            return pressed
        if widget.locator(OPEN_ASK).count():
            question = " ".join(widget.locator(BOT).last.inner_text().split())
            answer_free_text(widget)
            pressed.append((question, "answered"))
            continue
        question = " ".join(widget.locator(BOT).last.inner_text().split())
        first = widget.locator(CHOICE).first
        label = first.inner_text().strip()
        answered = widget.locator(VISITOR).count()
        first.click()
        expect(widget.locator(VISITOR)).to_have_count(answered + 1)
        pressed.append((question, label))
    pytest.fail(f"no lead form after {MAX_STEPS} answers")


def _wait_for_delivery(receiver: ThreadedReceiver, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not receiver.snapshot()[0]:
        assert time.monotonic() < deadline, f"no delivery within {within} s"
        time.sleep(0.05)


def test_a_lead_left_in_the_browser_reaches_the_webhook_signed(
    page: Page, receiver: ThreadedReceiver
) -> None:
    page.get_by_role("button", name="Open chat").click()
    widget = page.locator("#leadflow-widget")
    pressed = _answer_until_the_form(widget)
    assert pressed, "the quiz asked no question before the form"

    widget.get_by_label("Your name").fill(NAME)
    widget.get_by_label("Email address").fill(EMAIL)
    widget.get_by_label("I agree to be contacted").check()
    widget.get_by_role("button", name="Send").click()
    expect(widget.locator(LEAD_FORM)).to_have_count(0)
    expect(widget.locator(VISITOR).last).to_contain_text("Details sent")
    conversation_id = page.evaluate("window.Leadflow.state().conversationId")

    _wait_for_delivery(receiver)
    time.sleep(0.5)  # a second delivery (there must be none) would arrive by now
    bodies, bad_signatures, requests = receiver.snapshot()
    assert bad_signatures == 0
    assert requests == 1, "exactly one request: delivered on the first attempt, once"
    ((lead_id, payload),) = payloads(bodies).items()
    data = payload["data"]
    assert lead_id == data["lead_id"]  # webhook-id is the lead's event id
    assert data["site_id"] == "demo" and data["conversation_id"] == conversation_id
    assert data["flow"]["id"] == "solar-quote"
    assert data["contact"]["email"] == EMAIL and data["contact"]["name"] == NAME
    assert data["consent"]["given"] is True
    assert data["context"]["utm"]["source"] == "e2e"
    assert [a["answer"] for a in data["answers"]] == [label for _, label in pressed]
    questions = _questions()
    for answer, (question, label) in zip(data["answers"], pressed, strict=True):
        node_id, buttons, written = questions[question]
        assert (answer["question_id"], answer["answer_id"]) == (node_id, buttons[label])
        # the payload gives a question with its templates' fallbacks (property's
        # "Hi there! ..."): never a value the visitor typed
        assert " ".join(answer["question"].split()) == written
    assert orjson.loads(bodies[lead_id][0]) == payload


def _fallbacks(text: str) -> str:
    """A text with each ``{{ name | fallback }}`` replaced by its fallback."""
    return re.sub(r"\{\{\s*[\w.]+\s*(?:\|\s*([^}]*?)\s*)?\}\}", lambda m: m.group(1) or "", text)


def _english(text: Any) -> str:
    """A text of the (bilingual) example flow as an English browser sees it."""
    return str(text["en"] if isinstance(text, dict) else text)

"""End to end: the real server (``python -m app.cli serve``) driven through the
embeddable widget in a real headless Chromium (Debian's, not a Playwright download).

The widget renders inside an open shadow root; Playwright's CSS and role locators
pierce open shadow roots, so the selectors below reach into it directly.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from playwright.sync_api import (
    Browser,
    Locator,
    Page,
    WebSocketRoute,
    expect,
)

from tests.support.server import ServerProcess

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SOLAR_FLOW = ROOT / "examples" / "flows" / "solar-quote.yaml"
STEP_TIMEOUT_MS = 5_000
MAX_STEPS = 25
SCREENSHOT = Path("/tmp/widget.png")
NAME = "Ann Example"
FIRST_NAME = "Annika"  # typed into solar-quote's first question, a free-text one
EMAIL = "ann@example.com"

# Selectors inside the widget's shadow root.
BOT = ".lf-msg.lf-bot"
VISITOR = ".lf-msg.lf-me"
CHOICE = ".lf-choice:enabled"
LEAD_FORM = "form.lf-form"
ASK = "form.lf-ask:not([data-answered]) .lf-input:enabled"  # an open free-text question
DONE = ".lf-bot[data-done='true']"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real server on a free port with a fresh data directory; yields its base URL."""
    process = ServerProcess(tmp_path_factory.mktemp("leadflow-data")).start()
    try:
        yield process.http_url
    finally:
        process.stop()


@pytest.fixture
def page(browser: Browser, server: str) -> Iterator[Page]:
    """A fresh browser context (empty localStorage) per test, with the demo page open."""
    context = browser.new_context(
        viewport={"width": 1280, "height": 800}, locale="en-GB", reduced_motion="reduce"
    )
    context.set_default_timeout(STEP_TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    console: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda message: console.append(message.text))
    page.goto(f"{server}/")
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"uncaught errors in the page: {errors}"
    leaked = [text for text in console if any(v in text for v in (NAME, EMAIL, FIRST_NAME))]
    assert not leaked, "lead field values and typed answers must never reach the console"


def _end_texts() -> set[str]:
    flow: dict[str, Any] = yaml.safe_load(SOLAR_FLOW.read_text("utf-8"))
    return {_english(node["text"]) for node in flow["nodes"] if node["kind"] == "end"}


def _english(text: Any) -> str:
    """A text of the (bilingual) example flow as an English browser sees it."""
    return str(text["en"] if isinstance(text, dict) else text)


def _widget(page: Page) -> Locator:
    return page.locator("#leadflow-widget")


def _state(page: Page) -> dict[str, Any]:
    state: dict[str, Any] = page.evaluate("window.Leadflow.state()")
    return state


def _open(page: Page) -> Locator:
    launcher = page.get_by_role("button", name="Open chat")
    expect(launcher).to_have_attribute("aria-expanded", "false")
    launcher.click()
    expect(page.get_by_role("button", name="Close chat")).to_have_attribute("aria-expanded", "true")
    return _widget(page)


def _focused_class(page: Page) -> str:
    """The class of the element focused inside the widget's shadow root."""
    cls: str = page.evaluate(
        "() => document.getElementById('leadflow-widget').shadowRoot.activeElement?.className ?? ''"
    )
    return cls


def _wait_actionable(widget: Locator) -> Literal["question", "ask", "lead", "done"]:
    """Wait until the widget shows something to act on (or the end), and say what it
    is: a question with buttons, a free-text question (``ask``), the lead form."""
    widget.locator(f"{CHOICE}, {ASK}, {LEAD_FORM}, {DONE}").first.wait_for()
    if widget.locator(DONE).count():
        return "done"
    if widget.locator(LEAD_FORM).count():
        return "lead"
    if widget.locator(ASK).count():
        return "ask"
    return "question"


def _answer_first_name(page: Page) -> None:
    """Type the first name into solar-quote's first question (a free-text field
    labelled with the question) and send it: the next question greets by it."""
    widget = _widget(page)
    assert _wait_actionable(widget) == "ask"
    assert _focused_class(page) == "lf-input", "focus should be on the free-text field"
    field = widget.get_by_label("To start, what's your first name?")
    expect(field).to_have_attribute("placeholder", "First name")
    answered = widget.locator(VISITOR).count()
    field.fill(FIRST_NAME)
    widget.locator("form.lf-ask").get_by_role("button", name="Send").click()
    expect(widget.locator(VISITOR)).to_have_count(answered + 1)
    expect(widget.locator(VISITOR).last).to_contain_text(FIRST_NAME)
    expect(widget.locator(BOT).last).to_contain_text(f"Hi {FIRST_NAME}! What type of property")


def _answer_until(page: Page, goal: Literal["lead", "done"]) -> None:
    """Click the first answer of each new question (type the first name into the
    free-text one) until the lead form (or the end) shows."""
    widget = _widget(page)
    for _ in range(MAX_STEPS):
        shown = _wait_actionable(widget)
        if shown == goal:
            return
        if shown == "ask":
            _answer_first_name(page)
            continue
        assert shown == "question", f"expected a question on the way to {goal!r}, got {shown!r}"
        first = widget.locator(CHOICE).first
        first.wait_for()
        assert _focused_class(page) == "lf-choice", "focus should be on the first answer"
        answered = widget.locator(VISITOR).count()
        label = first.inner_text()
        first.click()
        expect(widget.locator(VISITOR)).to_have_count(answered + 1)
        expect(widget.locator(VISITOR).last).to_contain_text(label)
    pytest.fail(f"no {goal!r} after {MAX_STEPS} answers")


def _lead_input(widget: Locator, name: str) -> Locator:
    return widget.locator(f"{LEAD_FORM} [name='{name}']")


def _error_of(widget: Locator, field: Locator) -> Locator:
    described_by = field.get_attribute("aria-describedby")
    assert described_by, "an invalid field must point to its error message"
    return widget.locator(f"#{described_by}")


def test_solar_quote_to_the_end(page: Page) -> None:
    widget = _open(page)
    log = widget.get_by_role("log")
    expect(log).to_have_attribute("aria-live", "polite")

    _answer_until(page, "lead")
    assert _focused_class(page) == "lf-input", "focus should be on the first form field"
    widget.get_by_label("Your name").fill(NAME)
    widget.get_by_label("Email address").fill(EMAIL)
    widget.get_by_label("I agree to be contacted").check()
    widget.get_by_role("button", name="Send").click()
    expect(widget.locator(LEAD_FORM)).to_have_count(0)
    expect(widget.locator(VISITOR).last).to_contain_text("Details sent")

    _answer_until(page, "done")
    last = widget.locator(BOT).last
    expect(last).to_have_attribute("data-done", "true")
    assert last.text_content() in _end_texts()
    expect(widget.get_by_role("button", name="Start again")).to_be_visible()
    state = _state(page)
    assert state["connected"] is True
    assert state["conversationId"]
    assert state["lastSeq"] == int(last.get_attribute("data-seq") or 0)
    page.screenshot(path=str(SCREENSHOT))

    # "Start again" forgets the finished conversation and starts a new one.
    widget.get_by_role("button", name="Start again").click()
    expect(widget.locator(VISITOR)).to_have_count(0)
    assert _wait_actionable(widget) == "ask"
    expect(widget.locator(ASK)).to_be_focused()
    # The first question may be the instant opening, shown before the start's reply:
    # the new conversation exists once that reply (its session frame) has come.
    page.wait_for_function("window.Leadflow.state().conversationId !== null")
    fresh = _state(page)
    assert fresh["conversationId"] != state["conversationId"]
    assert fresh["ack"] == 1

    page.keyboard.press("Escape")
    expect(page.get_by_role("button", name="Open chat")).to_have_attribute("aria-expanded", "false")
    expect(log).to_be_hidden()


def test_invalid_email_is_flagged_inline_and_keeps_the_form(page: Page) -> None:
    widget = _open(page)
    _answer_until(page, "lead")
    name = _lead_input(widget, "name")
    email = _lead_input(widget, "email")
    consent = _lead_input(widget, "consent")
    name.fill(NAME)
    consent.check()

    # Caught by the widget before anything is sent.
    ack = _state(page)["ack"]
    email.fill("not-an-email")
    widget.get_by_role("button", name="Send").click()
    expect(email).to_have_attribute("aria-invalid", "true")
    expect(_error_of(widget, email)).to_contain_text("valid email")
    assert _state(page)["ack"] == ack, "an invalid form must not be sent"

    # Plausible to the widget, refused by the server: its per-field error shows inline.
    email.fill("ann@exa_mple.com")
    expect(email).not_to_have_attribute("aria-invalid", "true")
    widget.get_by_role("button", name="Send").click()
    expect(email).to_have_attribute("aria-invalid", "true")
    expect(_error_of(widget, email)).to_contain_text("not a valid email address")
    expect(name).to_have_value(NAME)
    expect(consent).to_be_checked()
    expect(name).not_to_have_attribute("aria-invalid", "true")

    # The form is still there and usable: fix the email and send again.
    email.fill(EMAIL)
    widget.get_by_role("button", name="Send").click()
    expect(widget.locator(LEAD_FORM)).to_have_count(0)
    expect(widget.locator(VISITOR).last).to_contain_text("Details sent")
    _wait_actionable(widget)


def test_reload_restores_the_transcript(page: Page) -> None:
    widget = _open(page)
    _answer_first_name(page)
    widget.locator(CHOICE).first.click()
    assert _wait_actionable(widget) in ("question", "lead")
    bots = widget.locator(BOT).count()
    answers = widget.locator(VISITOR).all_inner_texts()
    before = _state(page)
    assert bots >= 3
    assert len(answers) == 2

    page.reload()
    widget = _widget(page)
    # The panel stays open across the reload and the whole transcript comes back.
    expect(page.get_by_role("button", name="Close chat")).to_be_visible()
    expect(widget.locator(BOT)).to_have_count(bots)
    expect(widget.locator(VISITOR)).to_have_text(answers)
    after = _state(page)
    assert after["conversationId"] == before["conversationId"]
    assert after["ack"] == before["ack"]
    assert after["lastSeq"] == before["lastSeq"]
    expect(widget.get_by_role("log")).to_have_attribute("aria-live", "polite")

    # ... and the conversation carries on where it was.
    if _wait_actionable(widget) == "question":
        widget.locator(CHOICE).first.click()
        expect(widget.locator(VISITOR)).to_have_count(len(answers) + 1)
        _wait_actionable(widget)
        assert _state(page)["ack"] == before["ack"] + 1
    else:
        expect(_lead_input(widget, "name")).to_be_editable()


def test_in_flight_press_is_resent_after_a_dropped_connection(page: Page) -> None:
    """The reply to a press is lost with the socket: the widget reconnects, resumes and
    sends the very same command again; the server applies it once."""
    sent: list[dict[str, Any]] = []
    lose_next_reply = {"armed": False, "dropping": False}

    def relay(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()

        def from_page(message: str | bytes) -> None:
            frame = json.loads(message)
            sent.append(frame)
            server.send(message)
            if lose_next_reply["armed"] and frame["type"] == "press":
                lose_next_reply.update(armed=False, dropping=True)

        def from_server(message: str | bytes) -> None:
            if lose_next_reply["dropping"]:
                lose_next_reply["dropping"] = False
                ws.close(code=1011, reason="connection lost")
                server.close()
                return
            ws.send(message)

        ws.on_message(from_page)
        server.on_message(from_server)

    page.route_web_socket("**/ws", relay)
    widget = _open(page)
    _answer_first_name(page)
    before = _state(page)
    lose_next_reply["armed"] = True
    widget.locator(CHOICE).first.click()
    assert _wait_actionable(widget) in ("question", "lead", "done")
    expect(widget.locator(VISITOR)).to_have_count(2)

    presses = [f for f in sent if f["type"] == "press"]
    resumes = [f for f in sent if f["type"] == "resume"]
    assert len(presses) == 2, sent
    assert presses[0] == presses[1], "the in-flight command is re-sent unchanged"
    assert presses[0]["seq"] == before["ack"] + 1
    assert [r["last_seq"] for r in resumes] == [before["lastSeq"]]
    after = _state(page)
    assert after["conversationId"] == before["conversationId"]
    assert after["ack"] == presses[0]["seq"], "the press was applied exactly once"
    seqs = widget.locator(BOT).evaluate_all("els => els.map(e => Number(e.dataset.seq))")
    assert seqs == sorted(set(seqs)), "no bot message is shown twice"

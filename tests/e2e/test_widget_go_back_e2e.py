"""End to end: going back in the widget against the real server (``leadflow serve``).
A visitor answers, presses "Change answer" (a real button, by mouse and by
keyboard), the question comes back without the withdrawn part of the
transcript, another answer takes another path, and the conversation ends with
the answers that stand; the control speaks German to a German browser."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.test_widget_embed_e2e import PAGE as HOST_PAGE
from tests.support.host_pages import HostPages
from tests.support.server import ServerProcess

pytestmark = pytest.mark.e2e

PICK_FLOW = """\
id: pick
version: 1
title: Pick
start: colour
nodes:
  - id: colour
    kind: question
    text: Your favourite colour?
    buttons:
      - {id: red, label: Red, next: size}
      - {id: blue, label: Blue, next: shape}
  - id: size
    kind: question
    text: How big?
    buttons: [{id: small, label: Small, next: city}]
  - id: shape
    kind: question
    text: Which shape?
    buttons: [{id: round, label: Round, next: city}, {id: square, label: Square, next: city}]
  - id: city
    kind: input
    text: Which city?
    input: {type: text, max_length: 40, personal: false}
    next: contact
  - id: contact
    kind: lead_form
    text: Your e-mail?
    fields:
      - {name: email, type: email, label: Email, required: true}
      - {name: consent, type: consent, label: I agree, required: true}
    next: bye
  - id: bye
    kind: end
    text: Thanks, you chose {{colour | nothing}} in {{city | town}}!
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    flows = tmp_path_factory.mktemp("flows")
    (flows / "pick.yaml").write_text(PICK_FLOW, "utf-8")
    data = tmp_path_factory.mktemp("leadflow-data")
    process = ServerProcess(data, env={"LEADFLOW_FLOWS_DIR": str(flows)}).start()
    try:
        yield process.http_url
    finally:
        process.stop()


@pytest.fixture(scope="module")
def hosts(server: str) -> Iterator[HostPages]:
    pages = HostPages()
    pages.pages["/"] = HOST_PAGE.format(
        server=server, attrs='data-site="demo" data-flow="pick"', body=""
    )
    try:
        yield pages
    finally:
        pages.httpd.shutdown()
        pages.httpd.server_close()


def _open(browser: Browser, hosts: HostPages, locale: str) -> tuple[Page, list[str]]:
    ctx = browser.new_context(locale=locale, reduced_motion="reduce")
    ctx.set_default_timeout(5_000)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"http://127.0.0.1:{hosts.port}/")
    return page, errors


def test_a_visitor_changes_an_answer_and_finishes(browser: Browser, hosts: HostPages) -> None:
    page, errors = _open(browser, hosts, "en-GB")
    widget = page.locator("#leadflow-widget")
    page.get_by_role("button", name="Open chat").click()
    widget.get_by_role("button", name="Red").click()
    expect(widget.locator(".lf-bot").last).to_have_text("How big?")
    change = widget.get_by_role("button", name="Change answer")
    expect(change).to_have_count(1)
    change.click()
    # the question again, the withdrawn answer and what followed it gone
    expect(widget.locator(".lf-bot")).to_have_text(["Your favourite colour?"])
    expect(widget.locator(".lf-me")).to_have_count(0)
    expect(change).to_have_count(0)
    widget.get_by_role("button", name="Blue").click()
    expect(widget.locator(".lf-bot").last).to_have_text("Which shape?")
    # by keyboard: the control is a real button, reached and pressed with keys
    change.focus()
    page.keyboard.press("Enter")
    expect(widget.locator(".lf-bot")).to_have_text(["Your favourite colour?"])
    page.keyboard.press("Tab")  # the question took the focus: Red, then Blue
    expect(widget.get_by_role("button", name="Blue")).to_be_focused()
    page.keyboard.press("Enter")
    widget.get_by_role("button", name="Square").click()
    city = widget.get_by_label("Which city?")
    city.fill("Lyon")
    city.press("Enter")
    expect(widget.get_by_label("Email")).to_be_visible()
    change.click()  # from the lead form back to the typed answer
    expect(widget.get_by_label("Email")).to_have_count(0)
    expect(widget.locator(".lf-me")).to_have_text(["You: Blue", "You: Square"])
    city.fill("Paris")
    city.press("Enter")
    widget.get_by_label("Email").fill("go-back@example.org")
    widget.get_by_label("I agree").check()
    widget.get_by_role("button", name="Send").click()
    done = widget.locator(".lf-bot[data-done='true']")
    expect(done).to_have_text("Thanks, you chose Blue in Paris!")
    mine = ["You: Blue", "You: Square", "You: Paris", "You: Details sent"]
    expect(widget.locator(".lf-me")).to_have_text(mine)
    expect(change).to_have_count(0)  # an ended conversation's answers stay
    page.reload()  # the panel opens as it was, and a resume shows the answers that stand
    asked = ["Your favourite colour?", "Which shape?", "Which city?", "Your e-mail?"]
    expect(widget.locator(".lf-bot")).to_have_text([*asked, "Thanks, you chose Blue in Paris!"])
    expect(widget.locator(".lf-me")).to_have_text(mine)
    page.context.close()
    assert not errors, errors


def test_the_control_speaks_german(browser: Browser, hosts: HostPages) -> None:
    page, errors = _open(browser, hosts, "de-DE")
    widget = page.locator("#leadflow-widget")
    page.get_by_role("button", name="Chat öffnen").click()
    widget.get_by_role("button", name="Red").click()
    expect(widget.get_by_role("button", name="Antwort ändern")).to_be_visible()
    page.context.close()
    assert not errors, errors

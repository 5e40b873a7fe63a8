"""The demo widget in Chromium, for the e2e tests and the widget benchmark: its
free-text questions (solar-quote asks the visitor's first name first), and waiting
for a condition in a page whose CSP forbids eval.

An open free-text question is a ``form.lf-ask`` whose field is enabled; the field is
labelled with the question's text, and a skippable one has a "Skip" button.
"""

from __future__ import annotations

import time

from playwright.sync_api import Locator, Page, expect

OPEN_ASK = "form.lf-ask:not([data-answered]) .lf-input:enabled"
VISITOR = ".lf-msg.lf-me"
FIRST_NAME = "Annika"


def answer_free_text(widget: Locator, value: str = FIRST_NAME, send: str = "Send") -> None:
    """Type ``value`` into the open free-text question and send it (``send``: the
    button's name in the widget's language); waits for the visitor's bubble."""
    field = widget.locator(OPEN_ASK)
    answered = widget.locator(VISITOR).count()
    field.fill(value)
    field.locator("xpath=ancestor::form").get_by_role("button", name=send).click()
    expect(widget.locator(VISITOR)).to_have_count(answered + 1)
    expect(widget.locator(VISITOR).last).to_contain_text(value)


def skip_free_text(widget: Locator, skip: str = "Skip") -> None:
    """Skip the open free-text question (``skip``: the button's name in the widget's
    language); waits for the visitor's bubble."""
    answered = widget.locator(VISITOR).count()
    form = widget.locator(OPEN_ASK).locator("xpath=ancestor::form")
    form.get_by_role("button", name=skip).click()
    expect(widget.locator(VISITOR)).to_have_count(answered + 1)


def wait_until(page: Page, expression: str, timeout: float = 10.0) -> None:
    """Poll ``expression`` in the page. Playwright's wait_for_function compiles its
    predicate with eval, which the demo page's CSP (rightly) forbids."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"timed out waiting for {expression}"
        page.wait_for_timeout(50)

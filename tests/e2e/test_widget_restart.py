"""End to end: the server restarts under an open widget (issue 7). SIGTERM closes the
socket with 1012 and a retry hint; a new server comes up on the same port and data;
the widget reconnects after the hint, resumes, and the visitor carries on where they
were, with no error shown during the planned restart."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.test_widget_e2e import (
    BOT,
    CHOICE,
    STEP_TIMEOUT_MS,
    VISITOR,
    _answer_first_name,
    _open,
    _state,
    _wait_actionable,
)
from tests.support.server import ServerProcess

pytestmark = pytest.mark.e2e

RETRY_MS = 2500  # longer than a restart of the embedded server takes (about 1 s)
ENV = {
    "LEADFLOW_SHUTDOWN_DRAIN_SECONDS": "0.2",
    "LEADFLOW_SHUTDOWN_GRACE_SECONDS": "10",
    "LEADFLOW_SHUTDOWN_RETRY_MS": str(RETRY_MS),
}
# Every text the status line and the notice show, recorded inside the shadow root.
WATCH = """() => {
  const root = document.getElementById('leadflow-widget').shadowRoot;
  window.__shown = [];
  for (const node of root.querySelectorAll('.lf-status, .lf-notice')) {
    new MutationObserver(() => window.__shown.push(node.textContent)).observe(
      node, { childList: true, characterData: true, subtree: true });
  }
}"""


def test_widget_resumes_on_a_restarted_server(browser: Browser, tmp_path: Path) -> None:
    first = ServerProcess(tmp_path / "data", env=dict(ENV)).start()
    second = ServerProcess(first.data_dir, port=first.port, env=dict(ENV))
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-GB")
    context.set_default_timeout(STEP_TIMEOUT_MS)
    page: Page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(f"{first.http_url}/")
        widget = _open(page)
        _answer_first_name(page)  # solar-quote's free-text first question
        widget.locator(CHOICE).first.click()
        expect(widget.locator(VISITOR)).to_have_count(2)
        assert _wait_actionable(widget) == "question"
        before = _state(page)
        bots = widget.locator(BOT).count()
        page.evaluate(WATCH)

        assert first.proc is not None
        first.proc.send_signal(signal.SIGTERM)
        assert first.proc.wait(timeout=10) == 0
        page.wait_for_function("() => !window.Leadflow.state().connected", timeout=2000)
        first.stop()
        second.start()
        page.wait_for_function(
            "() => window.Leadflow.state().connected", timeout=RETRY_MS * 3 + STEP_TIMEOUT_MS
        )

        # The same conversation, at the same node: nothing repeated, nothing missing.
        expect(widget.locator(BOT)).to_have_count(bots)
        after = _state(page)
        assert after["conversationId"] == before["conversationId"]
        assert (after["ack"], after["lastSeq"]) == (before["ack"], before["lastSeq"])
        widget.locator(CHOICE).first.click()
        expect(widget.locator(VISITOR)).to_have_count(3)
        assert _wait_actionable(widget) in ("question", "lead", "done")
        assert _state(page)["ack"] == before["ack"] + 1
        seqs = widget.locator(BOT).evaluate_all("els => els.map(e => Number(e.dataset.seq))")
        assert seqs == sorted(set(seqs)), "no bot message is shown twice"
        shown = [text for text in page.evaluate("window.__shown") if text]
        assert not shown, f"a planned restart showed the visitor {shown}"
    finally:
        context.close()
        second.stop()
        first.stop()
    assert not errors, f"uncaught errors in the page: {errors}"

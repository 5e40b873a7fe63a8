"""One visitor in real Chromium: open the demo page, click the launcher, time the first
bot message; then a second page view in the same context (the warm cache).

The times are taken inside the page (``performance.now()``, one clock): a capture
listener on the launcher stamps the click as the page receives it; a wrapped
``WebSocket`` stamps when the widget creates its socket, when it opens, when the
widget sends its first frame (the ``start``), when the first frame (``session``)
and the first ``message`` frame arrive; a
MutationObserver on the widget's (open) shadow root stamps when the first bot
message is in the DOM; the open panel's first frame is stamped the same way. "Visible"
is the frame after the message is in the DOM (a ``requestAnimationFrame``
and then a task: the frame that paints it has been produced). Playwright's own round
trips are outside every interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from playwright.sync_api import Browser, Page

from tests.support.widget import wait_until

# Before any script of the page: stamp the widget's socket events.
INSTRUMENT = """
(() => {
  const marks = (window.__lfBench = {});
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      if (marks.wsCreated === undefined) {
        marks.wsCreated = performance.now();
        this.addEventListener('open', () => (marks.wsOpen = performance.now()), { once: true });
        this.addEventListener('message', () => (marks.firstFrame = performance.now()),
                              { once: true });
        const onMessage = (event) => {
          if (String(event.data).includes('"type":"message"')) {
            marks.messageFrame = performance.now();
            this.removeEventListener('message', onMessage);
          }
        };
        this.addEventListener('message', onMessage);
        this.__lfFirst = true;
      }
    }
    send(data) {
      if (this.__lfFirst) {
        marks.startSent = performance.now();
        this.__lfFirst = false;
      }
      return super.send(data);
    }
  };
})();
"""

# Arms the observers on the mounted widget; the promise it leaves resolves when the
# first bot message shows (left in a global: evaluate() would await a returned one).
ARM = """
() => { window.__lfBenchShown = new Promise((resolve) => {
  const marks = window.__lfBench;
  const shadow = document.getElementById('leadflow-widget').shadowRoot;
  const launcher = shadow.querySelector('.lf-launcher');
  launcher.addEventListener('click', () => {
    marks.click = performance.now();
    requestAnimationFrame(() => setTimeout(() => (marks.panelShown = performance.now()), 0));
  }, { capture: true, once: true });
  const observer = new MutationObserver(() => {
    if (marks.inDom === undefined && shadow.querySelector('.lf-msg.lf-bot')) {
      marks.inDom = performance.now();
      observer.disconnect();
      requestAnimationFrame(() => setTimeout(() => {
        marks.visible = performance.now();
        resolve(marks);
      }, 0));
    }
  });
  observer.observe(shadow, { childList: true, subtree: true });
}); }
"""

RESOURCES = """
() => performance.getEntriesByType('resource')
  .filter((e) => /\\/widget(\\.[0-9a-f]{16})?\\.js$/.test(new URL(e.name).pathname))
  .map((e) => ({
    path: new URL(e.name).pathname,
    transfer_bytes: e.transferSize,
    encoded_bytes: e.encodedBodySize,
    decoded_bytes: e.decodedBodySize,
    duration_ms: e.duration,
  }))
"""

LAUNCHER_READY = """
() => {
  const nav = performance.getEntriesByType('navigation')[0];
  return { launcher_ready_ms: window.__lfReady - nav.startTime };
}
"""

WAIT_READY = """
() => new Promise((resolve) => {
  const check = () => {
    const host = document.getElementById('leadflow-widget');
    if (host && host.shadowRoot && host.shadowRoot.querySelector('.lf-launcher')) {
      window.__lfReady = performance.now();
      resolve(true);
    } else {
      requestAnimationFrame(check);
    }
  };
  check();
})
"""


@dataclass(frozen=True)
class Visit:
    """One cold-cache visitor (a new browser context) and its second page view."""

    marks: dict[str, float]
    cold: dict[str, Any]  # launcher readiness and the widget's resources, first view
    warm: dict[str, Any]  # the same, second view in the same context

    @property
    def opening_first(self) -> bool:
        """The first bubble showed before the server's first message frame came: the
        instant opening (fetched with the page) was shown, not the server's reply."""
        return self.marks["inDom"] < self.marks["messageFrame"]

    def intervals(self) -> dict[str, float]:
        """Milliseconds from the click, and of each stage on the way (with the instant
        opening, ``message_frame_to_in_dom`` is negative: the bubble came first)."""
        m = self.marks
        return {
            "click_to_visible": m["visible"] - m["click"],
            "click_to_in_dom": m["inDom"] - m["click"],
            "click_to_panel_shown": m["panelShown"] - m["click"],
            "socket_head_start": m["click"] - m["wsCreated"],
            "socket_open": m["wsOpen"] - m["wsCreated"],
            "click_to_start_sent": m["startSent"] - m["click"],
            "start_sent_to_first_frame": m["firstFrame"] - m["startSent"],
            "first_frame_to_message_frame": m["messageFrame"] - m["firstFrame"],
            "message_frame_to_in_dom": m["inDom"] - m["messageFrame"],
            "in_dom_to_visible": m["visible"] - m["inDom"],
        }


def _view(page: Page, url: str) -> dict[str, Any]:
    page.goto(url)
    page.evaluate(WAIT_READY)
    view: dict[str, Any] = page.evaluate(LAUNCHER_READY)
    view["resources"] = page.evaluate(RESOURCES)
    return view


def visit(
    browser: Browser, base_url: str, timeout_ms: float, hover_ms: float, reduced_motion: bool
) -> Visit:
    """A fresh visitor: empty cache and storage, so the click starts a conversation.
    ``hover_ms`` > 0: the pointer rests on the launcher that long before the press (as
    a person's does); 0: Playwright's click, which presses as soon as it arrives."""
    context = browser.new_context(
        viewport={"width": 1280, "height": 800},
        locale="en-GB",
        reduced_motion="reduce" if reduced_motion else "no-preference",
    )
    try:
        context.set_default_timeout(timeout_ms)
        context.add_init_script(INSTRUMENT)
        page = context.new_page()
        cold = _view(page, f"{base_url}/")
        page.evaluate(ARM)
        launcher = page.locator("#leadflow-widget .lf-launcher")
        if hover_ms > 0:
            launcher.hover()
            page.wait_for_timeout(hover_ms)
        launcher.click()
        page.evaluate("() => window.__lfBenchShown")
        # with the instant opening the first bubble may show before the server's
        # frames come: wait for them too (the stages after the click need them)
        wait_until(page, "window.__lfBench.messageFrame !== undefined", timeout_ms / 1000)
        marks: dict[str, float] = page.evaluate("() => ({...window.__lfBench})")
        page.get_by_role("button", name="Close chat").click()  # no reopen on the next view
        warm = _view(page, f"{base_url}/")
        return Visit(marks=marks, cold=cold, warm=warm)
    finally:
        context.close()

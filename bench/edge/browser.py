"""One visitor in Chromium: a host page embeds the widget, the launcher is clicked,
the first question is timed.

Times are taken inside the page (``performance.now()``, one clock): a capture
listener on the launcher stamps the click; a MutationObserver on the widget's shadow
root stamps when the first question's buttons are in the open panel, and "visible" is
the frame after that (a ``requestAnimationFrame``, then a task), as bench.widget does;
a wrapped ``WebSocket`` stamps when the socket opens. For the instant opening served
near (scenario b) the same wrapper points the socket at the far region: the page and
the widget come from the near proxy (a CDN beside the visitor), the conversation runs
far away.
"""

from __future__ import annotations

from dataclasses import dataclass

from playwright.sync_api import Browser
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from tests.support.host_pages import HostPages

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Edge</title>
</head><body><main><h1>A customer's page</h1></main>
<script src="{widget}/widget.js" data-site="demo" data-flow="{flow}" {attrs}></script>
</body></html>"""

INSTRUMENT = """
(() => {
  const marks = (window.__edge = {});
  const Native = window.WebSocket;
  const from = 'FROM', to = 'TO';
  window.WebSocket = class extends Native {
    constructor(url, protocols) {
      super(from ? String(url).replace(from, to) : url, protocols);
      this.addEventListener('open', () => {
        if (marks.open === undefined) marks.open = performance.now();
      });
    }
  };
})();
"""

ARM = """
() => { window.__edgeShown = new Promise((resolve) => {
  const marks = window.__edge;
  const shadow = document.getElementById('leadflow-widget').shadowRoot;
  shadow.querySelector('.lf-launcher').addEventListener('click', () => {
    marks.click = performance.now();
  }, { capture: true, once: true });
  const observer = new MutationObserver(() => {
    if (shadow.querySelector('.lf-panel:not([hidden]) .lf-choices button')) {
      marks.inDom = performance.now();
      observer.disconnect();
      requestAnimationFrame(() => setTimeout(() => {
        marks.visible = performance.now();
        resolve(marks);
      }, 0));
    }
  });
  observer.observe(shadow, { childList: true, subtree: true, attributes: true });
}); }
"""

OPENING_FETCHED = """
() => {
  const done = performance.getEntriesByType('resource')
    .filter((e) => /\\/opening\\//.test(e.name)).map((e) => e.responseEnd);
  return done.length ? Math.max(...done) : null;
}
"""

WAIT_READY = """
() => new Promise((resolve) => {
  const check = () => {
    const host = document.getElementById('leadflow-widget');
    if (host && host.shadowRoot && host.shadowRoot.querySelector('.lf-launcher')) resolve(true);
    else requestAnimationFrame(check);
  };
  check();
})
"""


def page(pages: HostPages, name: str, widget_base: str, flow: str, attrs: str = "") -> str:
    """The URL of a host page ``name`` embedding the widget from ``widget_base``."""
    return pages.add(f"/{name}.html", PAGE.format(widget=widget_base, flow=flow, attrs=attrs))


@dataclass(frozen=True)
class Scenario:
    name: str
    label: str
    page: str  # the host page's URL
    socket_from: str = ""  # rewrite the socket's URL: this ...
    socket_to: str = ""  # ... to this (the far region)


def visit(browser: Browser, scenario: Scenario, timeout_ms: float) -> dict[str, float]:
    """A fresh visitor (empty cache and storage): click -> first question visible, and
    whether the question was there before the socket opened."""
    context = browser.new_context(
        viewport={"width": 1280, "height": 800},
        locale="en-GB",
        reduced_motion="reduce",  # no pacing: the time is the network's, not the typing's
    )
    try:
        context.set_default_timeout(timeout_ms)
        script = INSTRUMENT.replace("FROM", scenario.socket_from).replace("TO", scenario.socket_to)
        context.add_init_script(script)
        page = context.new_page()
        pending: set[str] = set()
        page.on("request", lambda r: pending.add(r.url))
        page.on("requestfinished", lambda r: pending.discard(r.url))
        page.on("requestfailed", lambda r: pending.discard(r.url))
        try:
            page.goto(scenario.page)
        except PlaywrightTimeoutError:
            print(f"  {scenario.name}: the page did not load; pending: {sorted(pending)}")
            raise
        page.evaluate(WAIT_READY)
        page.evaluate(ARM)
        page.locator("#leadflow-widget .lf-launcher").click()
        marks: dict[str, float] = page.evaluate("() => window.__edgeShown")
        opened = marks.get("open")
        fetched = page.evaluate(OPENING_FETCHED)
        return {
            "click_to_visible": marks["visible"] - marks["click"],
            "click_to_in_dom": marks["inDom"] - marks["click"],
            "click_to_socket_open": (opened or marks["visible"]) - marks["click"],
            "click_to_opening_fetched": (fetched or marks["visible"]) - marks["click"],
            "before_socket": float(opened is None or marks["inDom"] < opened),
        }
    finally:
        context.close()

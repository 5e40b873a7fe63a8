"""End to end against the real server (issue 19): pacing, the inline and full-page embed
modes, a misconfigured embed (the owner's console error, the visitor's neutral
sentence), axe-core on the demo page (desktop and mobile), keyboard-only completion and
the modal panel on a small screen.

Pages other than the demo come from a small local HTTP server of their own (another
origin the development site allows, ``127.0.0.1``, or one it does not, ``127.0.0.2``);
the widget, its socket and the origin check are the real ones. (A page answered by
Playwright's ``route`` has no address: Chromium's local network access checks block
its socket to 127.0.0.1.)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect

from tests.support.host_pages import HostPages
from tests.support.server import ServerProcess
from tests.support.widget import OPEN_ASK, answer_free_text

pytestmark = pytest.mark.e2e

AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"
BOT = ".lf-msg.lf-bot"
OFF = "The assistant is not available right now."
MOBILE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Host</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><main><h1>Host page</h1>{body}</main>
<script src="{server}/widget.js" {attrs}></script></body></html>"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    process = ServerProcess(tmp_path_factory.mktemp("leadflow-data")).start()
    try:
        yield process.http_url
    finally:
        process.stop()


@pytest.fixture(scope="module")
def hosts() -> Iterator[HostPages]:
    pages = HostPages("0.0.0.0")  # every local address: pages are loaded from 127.0.0.2 too
    try:
        yield pages
    finally:
        pages.httpd.shutdown()
        pages.httpd.server_close()


class Visit:
    """A fresh browser context with its console and uncaught errors kept."""

    def __init__(self, browser: Browser, hosts: HostPages, **options: Any) -> None:
        self.hosts = hosts
        options = {"locale": "en-GB", "reduced_motion": "reduce", "viewport": DESKTOP, **options}
        self.context: BrowserContext = browser.new_context(**options)
        self.context.set_default_timeout(5_000)
        self.page: Page = self.context.new_page()
        self.console: list[tuple[str, str]] = []
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.console.append((m.type, m.text)))
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def host(self, server: str, attrs: str, body: str = "", address: str = "127.0.0.1") -> Page:
        """A page at ``address`` embedding the widget with ``attrs``."""
        path = f"/host-{len(self.hosts.pages)}.html"
        self.hosts.pages[path] = PAGE.format(server=server, attrs=attrs, body=body)
        self.page.goto(f"http://{address}:{self.hosts.port}{path}")
        return self.page

    def logged(self, kind: str) -> list[str]:
        return [text for type_, text in self.console if type_ == kind]


@pytest.fixture
def visit(browser: Browser, hosts: HostPages) -> Iterator[Any]:
    opened: list[Visit] = []

    def make(**options: Any) -> Visit:
        opened.append(Visit(browser, hosts, **options))
        return opened[-1]

    yield make
    for v in opened:
        v.context.close()
        assert not v.errors, f"uncaught errors in the page: {v.errors}"


def _widget(page: Page) -> Locator:
    return page.locator("#leadflow-widget")


def _axe(page: Page) -> list[dict[str, object]]:
    page.evaluate(AXE.read_text("utf-8"))
    found: list[dict[str, object]] = page.evaluate(
        """async () => {
            const result = await axe.run(document, { resultTypes: ['violations'] });
            return result.violations
              .filter((v) => v.impact === 'serious' || v.impact === 'critical')
              .map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target) }));
        }"""
    )
    return found


def test_pacing_shows_the_bubbles_of_a_reply_one_after_another(visit: Any, server: str) -> None:
    v = visit(reduced_motion="no-preference")
    pace, cap = 20, 700
    page = v.host(
        server, f'data-site="demo" data-flow="solar-quote" data-pace="{pace}" data-pace-max="{cap}"'
    )
    page.wait_for_function("document.getElementById('leadflow-widget')")
    # every bot bubble and the typing indicator, with the time it appeared
    page.evaluate(
        """() => {
            window.seen = [];
            const root = document.getElementById('leadflow-widget').shadowRoot;
            const log = root.querySelector('.lf-log');
            new MutationObserver((records) => {
              for (const r of records) for (const n of r.addedNodes) {
                const kind = n.classList.contains('lf-typing') ? 'typing'
                  : n.classList.contains('lf-bot') ? 'bot' : n.className;
                window.seen.push({ kind, seq: Number(n.dataset.seq || 0), t: performance.now() });
              }
            }).observe(log, { childList: true });
        }"""
    )
    page.get_by_role("button", name="Open chat").click()
    widget = _widget(page)
    expect(widget.locator(OPEN_ASK)).to_be_visible()  # solar-quote asks a first name first
    seen: list[dict[str, Any]] = page.evaluate("window.seen")
    bots = [s for s in seen if s["kind"] == "bot"]
    assert [b["seq"] for b in bots] == sorted(b["seq"] for b in bots) and len(bots) == 2, seen
    second_text = widget.locator(BOT).nth(1).inner_text()
    expected = min(cap, pace * len(second_text))
    gap = bots[1]["t"] - bots[0]["t"]
    assert expected * 0.9 <= gap <= expected + 1_500, (gap, expected)
    typing = [s for s in seen if s["kind"] == "typing"]
    assert typing and bots[0]["t"] <= typing[0]["t"] <= bots[1]["t"], seen
    expect(widget.locator(".lf-typing")).to_have_count(0)


def test_a_press_shows_what_is_due_at_once(visit: Any, server: str) -> None:
    v = visit(reduced_motion="no-preference")
    page = v.host(
        server, 'data-site="demo" data-flow="solar-quote" data-pace="500" data-pace-max="30000"'
    )
    page.get_by_role("button", name="Open chat").click()
    widget = _widget(page)
    expect(widget.locator(".lf-typing")).to_be_visible()
    expect(widget.locator(BOT)).to_have_count(1)
    widget.locator(".lf-log").click()
    expect(widget.locator(OPEN_ASK)).to_be_visible(timeout=1_000)
    expect(widget.locator(".lf-typing")).to_have_count(0)
    seqs = widget.locator(BOT).evaluate_all("els => els.map(e => Number(e.dataset.seq))")
    assert len(seqs) == 2 and seqs == sorted(set(seqs)), "nothing is reordered or shown twice"


def test_inline_mode_fills_its_container(visit: Any, server: str) -> None:
    v = visit()
    body = '<section id="chat" style="height: 480px"></section>'
    page = v.host(
        server,
        'data-site="demo" data-flow="solar-quote" data-mode="inline" '
        'data-target="#chat" data-title="Ask Sunny"',
        body,
    )
    widget = page.locator("#chat > #leadflow-widget")
    expect(widget.locator(BOT).first).to_be_visible()
    expect(page.get_by_role("button", name="Open chat")).to_be_hidden()
    expect(widget.get_by_role("heading", name="Ask Sunny")).to_be_visible()
    panel = widget.locator(".lf-panel").bounding_box()
    chat = page.locator("#chat").bounding_box()
    assert panel and chat and abs(panel["width"] - chat["width"]) < 1 and panel["y"] >= chat["y"]
    answer_free_text(widget)  # solar-quote's first question: the visitor's first name
    expect(widget.locator(".lf-me")).to_have_count(1)
    page.keyboard.press("Escape")  # nothing to close: the chat is part of the page
    expect(widget.locator(".lf-panel")).to_be_visible()


def test_page_mode_covers_the_viewport(visit: Any, server: str) -> None:
    v = visit()
    page = v.host(server, 'data-site="demo" data-flow="solar-quote" data-mode="page"')
    widget = _widget(page)
    expect(widget.locator(BOT).first).to_be_visible()
    box = widget.locator(".lf-panel").bounding_box()
    assert box == {"x": 0, "y": 0, **DESKTOP}, box
    expect(page.get_by_role("button", name="Open chat")).to_be_hidden()


@pytest.mark.parametrize(
    ("attrs", "named"),
    [
        ('data-site="demo" data-flow="solar-qoute"', ['"solar-qoute"', "data-flow"]),
        ('data-site="dmeo" data-flow="solar-quote"', ['"dmeo"', "data-site"]),
    ],
)
def test_a_misconfigured_embed_tells_the_owner_not_the_visitor(
    visit: Any, server: str, attrs: str, named: list[str]
) -> None:
    v = visit()
    page = v.host(server, attrs)
    page.get_by_role("button", name="Open chat").click()
    widget = _widget(page)
    expect(widget.locator(".lf-notice")).to_have_text(OFF)
    errors = [e for e in v.logged("error") if e.startswith("Leadflow:")]
    assert len(errors) == 1 and all(part in errors[0] for part in named), errors
    expect(widget).not_to_contain_text("unknown")


def test_a_page_its_site_does_not_allow(visit: Any, server: str) -> None:
    """Refused before the upgrade (403): after a few attempts the owner reads why."""
    v = visit()
    page = v.host(server, 'data-site="demo" data-flow="solar-quote"', address="127.0.0.2")
    foreign = f"http://127.0.0.2:{v.hosts.port}"
    page.get_by_role("button", name="Open chat").click()
    expect(_widget(page).locator(".lf-notice")).to_have_text(OFF, timeout=15_000)
    errors = [e for e in v.logged("error") if e.startswith("Leadflow:")]
    assert len(errors) == 1 and "origins" in errors[0] and foreign in errors[0], errors


@pytest.mark.parametrize("viewport", [DESKTOP, MOBILE], ids=["desktop", "mobile"])
def test_demo_page_has_no_serious_axe_findings(
    visit: Any, server: str, viewport: dict[str, int]
) -> None:
    v = visit(viewport=viewport)
    page = v.page
    page.goto(f"{server}/")
    expect(page.get_by_role("button", name="Open chat")).to_be_visible()
    assert _axe(page) == []
    page.get_by_role("button", name="Open chat").click()
    expect(_widget(page).locator(OPEN_ASK)).to_be_visible()  # the free-text question's form
    assert _axe(page) == []
    assert not [t for t in v.logged("warning") if "contrast" in t]


def _tab_to(page: Page, name: str, limit: int = 40) -> None:
    """Tab until the focused element (in the widget or the page) has this label, name
    attribute or text."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate(
            "n => { const a = document.activeElement; const s = a && a.shadowRoot;"
            " const f = s ? s.activeElement : a; return !!f && [f.getAttribute('aria-label'), "
            "f.getAttribute('name'), (f.textContent || '').trim()].includes(n); }",
            name,
        ):
            return
    pytest.fail(f"no {name!r} within {limit} Tabs")


def test_keyboard_only_completion(visit: Any, server: str) -> None:
    v = visit()
    page = v.page
    page.goto(f"{server}/")
    _tab_to(page, "Open chat")
    page.keyboard.press("Enter")
    widget = _widget(page)
    for _ in range(25):
        widget.locator(
            f".lf-choice:enabled, {OPEN_ASK}, form.lf-form, .lf-bot[data-done='true']"
        ).first.wait_for()
        if widget.locator(".lf-bot[data-done='true']").count():
            break
        if widget.locator(OPEN_ASK).count():  # a free-text question: type, Enter sends
            answered = widget.locator(".lf-me").count()
            expect(widget.locator(OPEN_ASK)).to_be_focused()
            page.keyboard.type("Annika")
            page.keyboard.press("Enter")
            expect(widget.locator(".lf-me")).to_have_count(answered + 1)
            continue
        if widget.locator("form.lf-form").count():
            expect(widget.locator("form.lf-form [name='name']")).to_be_focused()
            page.keyboard.type("Ann Example")
            _tab_to(page, "email")
            page.keyboard.type("ann@example.com")
            _tab_to(page, "consent")
            page.keyboard.press("Space")
            _tab_to(page, "Send")
            page.keyboard.press("Enter")
            expect(widget.locator("form.lf-form")).to_have_count(0)
            continue
        answered = widget.locator(".lf-me").count()
        expect(widget.locator(".lf-choice:enabled").first).to_be_focused()
        page.keyboard.press("Enter")
        expect(widget.locator(".lf-me")).to_have_count(answered + 1)
    expect(widget.locator(".lf-bot[data-done='true']")).to_be_visible()
    assert widget.locator(".lf-me").last.inner_text() != ""


def test_the_mobile_panel_is_modal(visit: Any, server: str) -> None:
    v = visit(viewport=MOBILE, has_touch=True, is_mobile=True)
    page = v.page
    page.goto(f"{server}/")
    page.get_by_role("button", name="Open chat").click()
    widget = _widget(page)
    expect(widget.locator(OPEN_ASK)).to_be_focused()  # the first question's free-text field
    expect(widget.get_by_role("dialog")).to_have_attribute("aria-modal", "true")
    inside = "() => document.activeElement && document.activeElement.id === 'leadflow-widget'"
    for key in ["Tab"] * 12 + ["Shift+Tab"] * 12:
        page.keyboard.press(key)
        assert page.evaluate(inside), f"focus left the panel after {key}"
    page.keyboard.press("Escape")
    launcher = page.get_by_role("button", name="Open chat")
    expect(launcher).to_be_focused()
    expect(widget.get_by_role("dialog")).to_be_hidden()


def test_one_view_and_one_open_beacon_per_page_view(visit: Any, server: str) -> None:
    v = visit()
    page = v.page
    beacons: list[tuple[str, int]] = []

    def seen(response: Any) -> None:
        if response.url.endswith("/beacon"):
            beacons.append((response.request.post_data or "", response.status))

    page.on("response", seen)
    page.goto(f"{server}/")
    page.get_by_role("button", name="Open chat").click()
    expect(_widget(page).locator(BOT).first).to_be_visible()
    page.keyboard.press("Escape")
    page.get_by_role("button", name="Open chat").click()  # the same page view: no new beacon
    page.wait_for_timeout(300)
    view = '{"site":"demo","flow":"solar-quote","kind":"view"}'
    assert beacons == [(view, 204), (view.replace("view", "open"), 204)], beacons
    page.reload()  # the panel comes back open: a view, but not an open
    expect(_widget(page).locator(BOT).first).to_be_visible()
    page.wait_for_timeout(300)
    assert [body for body, _ in beacons] == [view, view.replace("view", "open"), view], beacons
    assert not page.context.cookies(), "no cookies"


def test_left_position_title_font_and_colours(visit: Any, server: str) -> None:
    v = visit()
    page = v.host(
        server,
        'data-site="demo" data-flow="solar-quote" data-position="left" data-title="Ask Sunny" '
        'data-font="Georgia, serif" data-accent="#0f766e" data-text="#ffffff"',
    )
    launcher = page.get_by_role("button", name="Open chat")
    box = launcher.bounding_box()
    assert box and box["x"] < 100, box
    launcher.click()
    panel = _widget(page).get_by_role("dialog", name="Ask Sunny")
    expect(panel).to_be_visible()
    panel_box = panel.bounding_box()
    assert panel_box and panel_box["x"] < 100, panel_box
    style = (
        _widget(page)
        .locator(".lf-launcher")
        .evaluate("b => [getComputedStyle(b).backgroundColor, getComputedStyle(b).fontFamily]")
    )
    assert style == ["rgb(15, 118, 110)", "Georgia, serif"], style
    assert not [t for t in v.logged("warning") if "Leadflow" in t], "a readable pair: no warning"

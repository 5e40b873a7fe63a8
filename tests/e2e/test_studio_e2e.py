"""End to end: the studio (/studio/) on the real ``leadflow serve`` in headless Chromium.

A person with the admin key opens the studio with the keyboard, breaks solar-quote in the
editor (a ``next`` to an unknown node) and sees the error on the node in the graph, fixes
it with a new greeting, plays the draft in the widget (preview), reviews the diff and
publishes; a new visitor on the demo page in
another tab gets the new greeting; activating version 1 rolls back. The page stays free of
CSP violations and of serious or critical axe-core findings, and the graph with live
numbers is saved (docs/img/studio-*.png with LEADFLOW_STUDIO_SCREENSHOTS=docs/img). Once
the policy has a snapshot, a decision point's edges show its current traffic share.
"""

from __future__ import annotations

import asyncio
import copy
import json
import math
import os
import random
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from playwright.sync_api import Browser, BrowserContext, Page, expect

from schemas.flow import flow_from_document
from services.catalog import EXAMPLE_FLOWS_DIR
from services.http_auth import hash_api_key, new_api_key
from services.registry.diff import diff
from tests.support.server import ServerProcess
from tests.support.visitor import Visitor

pytestmark = pytest.mark.e2e

AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"
# Screenshots: docs/img/studio-*.png come from LEADFLOW_STUDIO_SCREENSHOTS=docs/img
IMG = Path(os.environ.get("LEADFLOW_STUDIO_SCREENSHOTS", "/tmp/leadflow-studio"))
KEY = new_api_key()
OLD_GREETING = "Hi! ☀️ Let's find out how much you could save with solar panels."
NEW_GREETING = "Hello from the studio: let's size your solar panels."
STEP_MS = 10_000
VISITORS = 24


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("studio")
    flows = root / "flows"
    shutil.copytree(EXAMPLE_FLOWS_DIR, flows)
    env = {
        "LEADFLOW_FLOWS_DIR": str(flows),
        "LEADFLOW_ADMIN_API_KEY_SHA256": hash_api_key(KEY),
        "LEADFLOW_DELIVERY": "off",
    }
    process = ServerProcess(root / "data", env=env).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport={"width": 1400, "height": 900}, locale="en-GB")
    ctx.set_default_timeout(STEP_MS)
    try:
        yield ctx
    finally:
        ctx.close()


def _play(server: ServerProcess, count: int) -> None:
    """``count`` visitors through solar-quote over the real socket: live numbers."""

    async def one(seed: int) -> None:
        visitor = await Visitor.connect(server.ws_url)
        try:
            await visitor.start("solar-quote")
            await visitor.play_to_end(random.Random(seed))
        finally:
            await visitor.close()

    async def all_of_them() -> None:
        await asyncio.gather(*(one(seed) for seed in range(count)))

    # Playwright's sync API runs an event loop in this thread: the visitors get their own
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, all_of_them()).result(timeout=60)


def _greeting(context: BrowserContext, server: ServerProcess) -> str:
    """The first bot message a new visitor of the demo page sees (a fresh tab)."""
    visitor = context.browser.new_context() if context.browser else None
    assert visitor is not None
    try:
        page = visitor.new_page()
        page.goto(f"{server.http_url}/")
        page.get_by_role("button", name="Open chat").click()
        first = page.locator(".lf-msg.lf-bot").first
        expect(first).to_be_visible(timeout=STEP_MS)
        return first.inner_text().strip()
    finally:
        visitor.close()


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


def _set_editor(page: Page, text: str) -> None:
    """Replace the editor's text by pasting it (a paste event with the text, as the
    clipboard gives it: the editor's own paste handling, no auto-indent)."""
    content = page.locator("#editor .cm-content")
    content.click()
    page.keyboard.press("Control+A")
    content.evaluate(
        """(el, text) => {
            const data = new DataTransfer();
            data.setData('text/plain', text);
            el.dispatchEvent(new ClipboardEvent('paste', { clipboardData: data, bubbles: true,
                                                           cancelable: true }));
        }""",
        text,
    )


def _tab_to(page: Page, selector: str, limit: int = 40) -> None:
    for _ in range(limit):
        if page.evaluate(f"() => document.activeElement?.matches({selector!r}) ?? false"):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached {selector}")


def test_edit_break_fix_publish_and_roll_back(
    context: BrowserContext, server: ServerProcess
) -> None:
    _play(server, VISITORS)
    IMG.mkdir(parents=True, exist_ok=True)
    page = context.new_page()
    console: list[str] = []
    errors: list[str] = []
    context.on("console", lambda m: console.append(m.text))  # every tab: the preview's too
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{server.http_url}/studio/#flow=solar-quote")

    # the key form by keyboard: Tab reaches the key field, Enter connects
    page.locator("body").focus()
    _tab_to(page, "#api-key")
    page.keyboard.type(KEY)
    page.keyboard.press("Enter")
    expect(page.locator("#workspace")).to_be_visible()
    assert page.evaluate("() => sessionStorage.getItem('leadflow.studio.key')") == KEY
    assert KEY not in page.url
    expect(page.locator("#validity")).to_have_text("Valid")
    welcome = page.locator('#graph [data-node="welcome"]')
    roof = page.locator('#graph [data-node="roof"]')
    expect(welcome).to_be_visible()
    expect(page.locator('#graph [data-node="property"]')).to_have_class("node decision")

    # live numbers: the visitors' traffic on the edges, with an interval
    expect(page.locator("#stats-status")).to_contain_text(f"{VISITORS} started")
    # every visitor answers the first name (tests.support.visitor.play_to_end) and goes on
    expect(page.locator('#graph [data-edge="first_name>property"] .label')).to_contain_text(
        f"n={VISITORS}"
    )
    page.locator("#graph").screenshot(path=str(IMG / "studio-graph.png"))

    # break it: a next to an unknown node, pinned on the node
    original = (EXAMPLE_FLOWS_DIR / "solar-quote.yaml").read_text("utf-8")
    south = '        label: {en: "South", de: "Süden"}\n        next: bill\n'
    broken = original.replace(south, south.replace("bill", "nowhere"), 1)
    assert broken != original
    _set_editor(page, broken)
    expect(page.locator("#validity")).to_have_text("1 error")
    expect(roof).to_have_class("node error")
    expect(roof).to_have_attribute("aria-invalid", "true")
    expect(welcome).to_have_attribute("aria-invalid", "false")
    page.locator("#errors button").first.click()  # the listed error moves focus to its node
    expect(roof).to_be_focused()
    expect(page.locator("#details")).to_contain_text("unknown next node 'nowhere'")
    expect(page.locator("#review")).to_be_disabled()
    page.screenshot(path=str(IMG / "studio-error.png"))
    assert _axe(page) == []

    # fix it with a new greeting; review the diff; publish (keyboard: Tab reaches the button)
    fixed = original.replace(
        "Hi! ☀️ Let's find out how much you could save with solar panels.\n"
        "        It takes about a minute, and there's no obligation.",
        NEW_GREETING,
    )
    assert NEW_GREETING in fixed
    _set_editor(page, fixed)
    expect(page.locator("#validity")).to_have_text("Valid")
    expect(roof).to_have_class("node")

    # preview the draft in the real widget (a new tab) before publishing it
    expect(page.locator("#preview")).to_be_visible()
    with context.expect_page() as popup:
        page.locator("#preview").click()
    draft = popup.value
    first = draft.locator(".lf-msg.lf-bot").first
    expect(first).to_have_text(NEW_GREETING, timeout=STEP_MS)
    draft.close()
    assert _greeting(context, server).startswith(OLD_GREETING)  # not published yet

    page.locator("#flow-select").focus()
    _tab_to(page, "#review")
    page.keyboard.press("Enter")
    dialog = page.locator("#publish-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#diff")).to_contain_text("Nodes changed")
    expect(dialog.locator("#diff")).to_contain_text("welcome")
    assert _axe(page) == []
    expect(page.locator("#publish")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#message")).to_contain_text("Published version 2")
    expect(page.locator("#version-select")).to_have_value("2")

    # a new visitor in another tab gets the new text
    assert _greeting(context, server) == NEW_GREETING

    # roll back: activate version 1
    page.get_by_role("button", name="Activate version 1").click()
    expect(page.locator("#message")).to_contain_text("Version 1 is now active")
    assert _greeting(context, server).startswith(OLD_GREETING)

    blocked = [t for t in console if "Content Security Policy" in t]
    assert not blocked, blocked
    assert not errors, errors


def test_a_stale_publish_is_refused_with_409(
    context: BrowserContext, server: ServerProcess
) -> None:
    page = context.new_page()
    page.goto(f"{server.http_url}/studio/#flow=insurance-quote")
    page.fill("#api-key", KEY)
    page.get_by_role("button", name="Connect").click()
    expect(page.locator("#validity")).to_have_text("Valid")
    # someone else publishes meanwhile (with another copy of the studio's own request)
    page.evaluate(
        """async (key) => {
            const doc = await (await fetch('/api/v1/flows/insurance-quote/versions/1',
              { headers: { Authorization: `Bearer ${key}` } })).json();
            const body = { ...doc.document, title: 'Changed elsewhere' };
            await fetch('/api/v1/flows', { method: 'POST', body: JSON.stringify(body),
              headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' } });
        }""",
        KEY,
    )
    page.locator("#review").click()
    page.locator("#publish").click()
    expect(page.locator("#publish-error")).to_contain_text("someone else published")


FAST_FITS = {  # a first fit after 30 outcomes, small enough to finish in seconds
    "LEADFLOW_POLICY_MIN_OUTCOMES": "30",
    "LEADFLOW_POLICY_DRAWS": "200",
    "LEADFLOW_POLICY_TUNE": "200",
    "LEADFLOW_POLICY_CHAINS": "2",
    "LEADFLOW_POLICY_IDLE_SECONDS": "1",
}


def _summary(server: ServerProcess) -> dict[str, object] | None:
    request = urllib.request.Request(
        f"{server.http_url}/policy/flows/solar-quote/summary",
        headers={"Authorization": f"Bearer {KEY}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            body: dict[str, object] = json.loads(resp.read())
            return body
    except urllib.error.HTTPError as err:
        if err.code != 404:  # 404: no snapshot yet
            raise
        return None


def _house_bill_share(summary: dict[str, object] | None) -> float:
    """The policy's share of the edge property -[house]-> bill."""
    assert summary is not None
    points = summary["decision_points"]
    assert isinstance(points, list)
    house = next(p for p in points if (p["node_id"], p["button_id"]) == ("property", "house"))
    share: float = {e["edge"]: e["share"] for e in house["edges"]}["bill"]
    return share


def test_decision_edges_show_the_policys_share(context: BrowserContext, tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    shutil.copytree(EXAMPLE_FLOWS_DIR, flows)
    env = {
        "LEADFLOW_FLOWS_DIR": str(flows),
        "LEADFLOW_ADMIN_API_KEY_SHA256": hash_api_key(KEY),
        "LEADFLOW_DELIVERY": "off",
        **FAST_FITS,
    }
    server = ServerProcess(tmp_path / "data", env=env).start()
    try:
        _play(server, 80)
        IMG.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + 120
        summary = _summary(server)
        while summary is None and time.monotonic() < deadline:
            time.sleep(1)
            summary = _summary(server)
        assert summary is not None, "no policy snapshot within 120 s"
        page = context.new_page()
        page.goto(f"{server.http_url}/studio/#flow=solar-quote")
        page.fill("#api-key", KEY)
        page.get_by_role("button", name="Connect", exact=True).click()
        label = page.locator('#graph [data-edge="property>bill"] .label')
        expect(label).to_contain_text("house · share ")
        shown = str(label.locator("text").first.text_content()).rsplit(" ", 1)[1]
        # the page read the summary before or after this one (an update may come between)
        shares = {_house_bill_share(summary), _house_bill_share(_summary(server))}
        assert any(abs(float(shown.rstrip("%")) - 100 * s) <= 1.0 for s in shares), (shown, shares)
        page.locator('#graph [data-node="property"]').focus()
        expect(page.locator("#details")).to_contain_text("policy share")
        page.locator("#graph").screenshot(path=str(IMG / "studio-policy.png"))
    finally:
        server.stop()


def _wilson(k: int, n: int, z: float = 1.6448536269514722) -> tuple[float, float]:
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def test_the_pages_diff_and_intervals_agree_with_the_server_side_rules(
    context: BrowserContext, server: ServerProcess
) -> None:
    """The studio's pure modules, run in the page: its diff of two documents is the
    registry's (services/registry/diff.py), its intervals are 90% Wilson intervals."""
    old = yaml.safe_load((EXAMPLE_FLOWS_DIR / "solar-quote.yaml").read_text("utf-8"))
    new = copy.deepcopy(old)
    nodes = {n["id"]: n for n in new["nodes"]}
    nodes["welcome"]["text"] = "Changed"
    nodes["roof"]["buttons"][0]["next"] = ["bill", "north_note"]
    new["nodes"] = [n for n in new["nodes"] if n["id"] != "end_renting"]
    nodes["property"]["buttons"][3]["next"] = "end_browsing"
    new["nodes"].append({"id": "extra", "kind": "end", "text": "Extra"})
    new["title"] = "Other"
    expected = diff(flow_from_document(old), flow_from_document(new)).as_json()

    page = context.new_page()
    page.goto(f"{server.http_url}/studio/")
    got = page.evaluate(
        "async ([a, b]) => (await import('/studio/docdiff.js')).diffDocs(a, b)", [old, new]
    )
    assert got == expected
    for k, n in ((0, 1), (3, 10), (10, 10), (17, 120), (500, 1000)):
        lo, hi = page.evaluate(
            "async ([k, n]) => (await import('/studio/stats.js')).wilson(k, n)", [k, n]
        )
        assert (lo, hi) == pytest.approx(_wilson(k, n), abs=1e-12)
    assert page.evaluate("async () => (await import('/studio/stats.js')).wilson(0, 0)") is None

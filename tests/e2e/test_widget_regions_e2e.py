"""End to end, two regions (issue 20): a visitor whose conversation was started in
region A comes back to a page whose widget is served by region B; B answers the
resume with ``moved``, the widget reconnects to A's socket, shows the
conversation where it was and goes on there, and remembers its home."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import pytest
from playwright.sync_api import Browser, expect

from tests.e2e.test_widget_embed_e2e import PAGE
from tests.support.host_pages import HostPages
from tests.support.server import ServerProcess
from tests.support.visitor import Visitor

pytestmark = pytest.mark.e2e
SECRET = "two-regions-share-this-resume-secret"


@pytest.fixture(scope="module")
def two_regions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, ...]]:
    root = Path(tmp_path_factory.mktemp("regions"))
    a, b = ServerProcess(root / "a"), ServerProcess(root / "b")
    urls = f"a=ws://127.0.0.1:{a.port}/ws,b=ws://127.0.0.1:{b.port}/ws"
    for server, name in ((a, "a"), (b, "b")):
        server.env.update(
            LEADFLOW_REGION=name, LEADFLOW_REGION_URLS=urls, LEADFLOW_RESUME_SECRET=SECRET
        )
        server.start()
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()


async def _started_in(ws_url: str) -> tuple[str, str, str]:
    """A conversation started in a region: its token, id and first question's text."""
    visitor = await Visitor.connect(ws_url)
    try:
        await visitor.start("saas-demo")
        question = visitor.current()
        assert question is not None
        return visitor.token, visitor.conversation_id, question["text"]
    finally:
        await visitor.close()


def test_the_widget_follows_its_conversation_home(
    browser: Browser, two_regions: tuple[ServerProcess, ServerProcess]
) -> None:
    a, b = two_regions
    with ThreadPoolExecutor(1) as thread:  # Playwright's sync API holds this thread's loop
        token, conversation_id, question = thread.submit(
            asyncio.run, _started_in(a.ws_url)
        ).result()
    assert conversation_id.startswith("a~")
    hosts = HostPages()
    try:
        hosts.pages["/"] = PAGE.format(
            server=b.http_url, attrs='data-site="demo" data-flow="saas-demo"', body=""
        )
        ctx = browser.new_context(locale="en-GB", reduced_motion="reduce")
        ctx.set_default_timeout(8_000)
        saved = orjson.dumps(orjson.dumps({"token": token, "lastSeq": 0, "ack": 1}).decode())
        ctx.add_init_script(
            f"window.localStorage.setItem('leadflow:demo:saas-demo', {saved.decode()});"
            "window.sessionStorage.setItem('leadflow:demo:saas-demo:open', '1');"
        )
        sockets: list[str] = []
        page = ctx.new_page()
        page.on("websocket", lambda ws: sockets.append(ws.url))
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"http://127.0.0.1:{hosts.port}/")
        widget = page.locator("#leadflow-widget")
        first = widget.locator(".lf-bot").filter(has_text=question)
        expect(first).to_have_count(1)  # the conversation as it was, once
        widget.locator(".lf-choice:enabled").first.click()
        expect(widget.locator(".lf-me")).to_have_count(1)  # answered at home
        assert sockets[0] == b.ws_url and a.ws_url in sockets[1:], sockets
        home = page.evaluate("JSON.parse(localStorage.getItem('leadflow:demo:saas-demo')).home")
        assert home == a.ws_url
        ctx.close()
        assert not errors, errors
    finally:
        hosts.httpd.shutdown()
        hosts.httpd.server_close()

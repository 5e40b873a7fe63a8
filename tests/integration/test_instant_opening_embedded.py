"""The instant opening on the real ``leadflow serve`` (issue 20): the pointer and the
hashed document over HTTP (caching, CORS, compression, refusals), the document is the
server's first reply byte for byte, a press made before the socket opened is answered,
and a version published mid-visit moves the pointer while the old document reconciles."""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.support import opening
from tests.support.opening import ORIGIN, fetch_opening
from tests.support.server import ServerProcess, free_port


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    env = {
        **opening.environment(tmp_path),
        "LEADFLOW_DELIVERY": "off",
        "LEADFLOW_METRICS_PORT": str(free_port()),
    }
    proc = ServerProcess(tmp_path / "data", env=env).start()
    try:
        yield proc
    finally:
        proc.stop()


async def test_the_pointer_and_the_hashed_document(server: ServerProcess) -> None:
    fetched = await fetch_opening(server.http_url, "de-DE")
    pointer, response = fetched.pointer, fetched.response
    assert pointer.status == 302
    assert pointer.headers["Cache-Control"] == "public, max-age=30"
    location = pointer.headers["Location"]  # relative: works under a path prefix too
    assert re.fullmatch(rf"{opening.FLOW}/1\.[0-9a-f]{{16}}\.json", location), location
    assert fetched.url.endswith(f"/opening/demo/{location}")
    assert pointer.headers["ETag"] == f'"{location.split(".")[1]}"'
    assert pointer.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert response.status == 200
    assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Content-Encoding"] == "gzip"  # aiohttp decoded the body
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Origin" in response.headers["Vary"] and "Accept-Encoding" in response.headers["Vary"]
    assert fetched.doc["locale"] == "de" and fetched.doc["flow"] == opening.FLOW

    async with aiohttp.ClientSession(auto_decompress=False) as http:
        url, etag = fetched.url, response.headers["ETag"]
        async with http.get(url, headers={"Accept-Encoding": "gzip"}) as raw:
            assert gzip.decompress(await raw.read()) == fetched.body
            assert "Access-Control-Allow-Origin" not in raw.headers  # no Origin: same-origin
        async with http.get(
            url, headers={"Accept-Encoding": "gzip", "If-None-Match": etag}
        ) as again:
            assert again.status == 304
        pointer_url = f"{server.http_url}/opening/demo/{opening.FLOW}?locale=de-DE"
        async with http.get(
            pointer_url,
            headers={"If-None-Match": pointer.headers["ETag"]},
            allow_redirects=False,
        ) as revalidated:
            assert revalidated.status == 304


async def test_refusals(server: ServerProcess) -> None:
    base = f"{server.http_url}/opening"
    cases = [
        (f"{base}/demo/{opening.FLOW}", {"Origin": "https://elsewhere.example"}, 403),
        (f"{base}/nowhere/{opening.FLOW}", {"Origin": ORIGIN}, 404),
        (f"{base}/demo/no-such-flow", {"Origin": ORIGIN}, 404),
        (f"{base}/narrow/{opening.FLOW}", {"Origin": ORIGIN}, 404),  # not one of its flows
        (f"{base}/demo/{opening.FLOW}/1.0123456789abcdef.json", {"Origin": ORIGIN}, 404),
        (f"{base}/demo/{opening.FLOW}/9.0123456789abcdef.json", {"Origin": ORIGIN}, 404),
    ]
    async with aiohttp.ClientSession() as http:
        for url, headers, status in cases:
            async with http.get(url, headers=headers, allow_redirects=False) as response:
                body = orjson.loads(await response.read())
                assert response.status == status, (url, response.status, body)
                assert response.headers["Cache-Control"] == "no-store"
                assert set(body["error"]) == {"code", "message"}


async def test_an_opening_that_reads_the_visitor_is_not_instant(server: ServerProcess) -> None:
    fetched = await fetch_opening(server.http_url, flow=opening.CONTEXT_FLOW)
    assert fetched.pointer.status == 200 and fetched.url == ""  # no hashed document
    assert fetched.pointer.headers["Cache-Control"] == "public, max-age=30"
    assert fetched.doc == {
        "v": 1,
        "flow": opening.CONTEXT_FLOW,
        "version": 1,
        "locale": "",
        "instant": False,
        "reason": "reads_context",
    }


async def test_the_opening_is_the_servers_first_reply(server: ServerProcess) -> None:
    await opening.the_opening_is_the_first_reply(server.http_url, server.ws_url)


async def test_a_press_before_the_socket_opened_is_answered(server: ServerProcess) -> None:
    await opening.a_press_before_the_socket_is_delivered(server.http_url, server.ws_url)


async def test_a_flow_published_mid_visit(server: ServerProcess) -> None:
    publish = opening.admin_publisher(f"{server.http_url}/api/v1")
    await opening.a_publish_mid_visit_moves_the_pointer(server.http_url, server.ws_url, publish)

"""The widget over real HTTP from a real ``leadflow serve``: the stable loader and the
content-hashed widget, their encodings, validators, caching headers and redirects."""

from __future__ import annotations

import gzip
import hashlib
import re
from collections.abc import AsyncIterator

import aiohttp
import brotli
import pytest

from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration

IMMUTABLE = "public, max-age=31536000, immutable"
HASHED = re.compile(r"new URL\('(widget\.([0-9a-f]{16})\.js)',s\.src\)")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # raw bytes as sent: no decompression, no redirects followed unless asked
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        yield session


async def _get(
    http: aiohttp.ClientSession, url: str, **headers: str
) -> tuple[aiohttp.ClientResponse, bytes]:
    async with http.get(url, headers=headers, allow_redirects=False) as response:
        return response, await response.read()


def _decode(response: aiohttp.ClientResponse, body: bytes) -> bytes:
    coding = response.headers.get("Content-Encoding")
    if coding == "br":
        return bytes(brotli.decompress(body))
    if coding == "gzip":
        return gzip.decompress(body)
    assert coding is None, coding
    return body


async def _hashed_name(http: aiohttp.ClientSession, base: str) -> str:
    _, body = await _get(http, f"{base}/widget.js", **{"Accept-Encoding": "identity"})
    match = HASHED.search(body.decode())
    assert match, body
    return match.group(1)


@pytest.mark.parametrize(
    ("accept", "coding"),
    [("gzip, deflate, br, zstd", "br"), ("gzip, deflate", "gzip"), ("identity", None)],
)
async def test_the_loader_is_negotiated_and_revalidated(
    server: ServerProcess, http: aiohttp.ClientSession, accept: str, coding: str | None
) -> None:
    response, body = await _get(http, f"{server.http_url}/widget.js", **{"Accept-Encoding": accept})
    assert response.status == 200
    assert response.headers.get("Content-Encoding") == coding
    assert response.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert response.headers["Cache-Control"] == "public, max-age=300"
    assert response.headers["Vary"] == "Accept-Encoding"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert int(response.headers["Content-Length"]) == len(body)
    assert HASHED.search(_decode(response, body).decode())
    etag = response.headers["ETag"]

    again, empty = await _get(
        http, f"{server.http_url}/widget.js", **{"Accept-Encoding": accept, "If-None-Match": etag}
    )
    assert again.status == 304 and empty == b""
    assert again.headers["ETag"] == etag
    assert again.headers["Cache-Control"] == "public, max-age=300"


async def test_the_hashed_widget_is_immutable_in_every_encoding(
    server: ServerProcess, http: aiohttp.ClientSession
) -> None:
    name = await _hashed_name(http, server.http_url)
    url = f"{server.http_url}/{name}"
    bodies: dict[str | None, bytes] = {}
    etags = set()
    for accept in ("br", "gzip", "identity"):
        response, body = await _get(http, url, **{"Accept-Encoding": accept})
        assert response.status == 200
        assert response.headers["Cache-Control"] == IMMUTABLE
        assert response.headers["Vary"] == "Accept-Encoding"
        assert response.headers["Cross-Origin-Resource-Policy"] == "cross-origin"
        bodies[response.headers.get("Content-Encoding")] = body
        etags.add(response.headers["ETag"])
        plain = _decode(response, body)
        assert b"attachShadow" in plain and b"/*! Leadflow chat widget" in plain
    assert set(bodies) == {"br", "gzip", None} and len(etags) == 3
    assert len(bodies["br"]) < len(bodies["gzip"]) < len(bodies[None]) / 2
    # the name is the content: what is served hashes to it
    assert hashlib.sha256(bodies[None]).hexdigest()[:16] == name.split(".")[1]


async def test_a_validator_of_another_encoding_gets_the_full_response(
    server: ServerProcess, http: aiohttp.ClientSession
) -> None:
    url = f"{server.http_url}/{await _hashed_name(http, server.http_url)}"
    gzipped, _ = await _get(http, url, **{"Accept-Encoding": "gzip"})
    same, _ = await _get(
        http, url, **{"Accept-Encoding": "gzip", "If-None-Match": gzipped.headers["ETag"]}
    )
    assert same.status == 304
    other, body = await _get(
        http, url, **{"Accept-Encoding": "br", "If-None-Match": gzipped.headers["ETag"]}
    )
    assert other.status == 200 and other.headers["Content-Encoding"] == "br" and body


async def test_head_sends_the_headers_without_the_body(
    server: ServerProcess, http: aiohttp.ClientSession
) -> None:
    url = f"{server.http_url}/{await _hashed_name(http, server.http_url)}"
    async with http.head(url, headers={"Accept-Encoding": "br"}) as response:
        assert response.status == 200
        assert response.headers["Content-Encoding"] == "br"
        assert int(response.headers["Content-Length"]) > 1000
        assert await response.read() == b""


async def test_a_stale_hash_is_redirected_uncached_to_the_current_widget(
    server: ServerProcess, http: aiohttp.ClientSession
) -> None:
    """A page or loader cached from another release (or a gateway of the other release
    in a rolling deploy) still gets a working widget, and no cache keeps the detour."""
    name = await _hashed_name(http, server.http_url)
    response, _ = await _get(http, f"{server.http_url}/widget.0123456789abcdef.js")
    assert response.status == 302
    assert response.headers["Location"] == name
    assert response.headers["Cache-Control"] == "no-store"
    async with http.get(f"{server.http_url}/widget.0123456789abcdef.js") as followed:
        assert followed.status == 200 and str(followed.url).endswith(name)
        assert followed.headers["Cache-Control"] == IMMUTABLE
    for wrong in ("widget.0123.js", "widget.ZZZZZZZZZZZZZZZZ.js", "widget.min.js"):
        response, _ = await _get(http, f"{server.http_url}/{wrong}")
        assert response.status == 404, wrong

"""``POST /beacon`` on the real ``leadflow serve`` (issue 19): malformed beacons, an
unknown site or flow, a foreign or missing Origin and a flood are refused; accepted
views and opens are counted per flow version (all sites and the site's own) and per
day, shown in the funnel (``viewed``, ``opened`` before ``started``) and the flow's
daily rollup, and survive a restart."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from services.http_auth import hash_api_key, new_api_key
from tests.support.server import ServerProcess

ADMIN_KEY = new_api_key()
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
FLOW = "solar-quote"


async def post(http: aiohttp.ClientSession, url: str, body: Any, origin: str | None) -> int:
    headers = {"Content-Type": "text/plain;charset=UTF-8"}
    if origin is not None:
        headers["Origin"] = origin
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    async with http.post(f"{url}/beacon", data=data, headers=headers) as response:
        assert "Set-Cookie" not in response.headers
        return response.status


async def funnel_totals(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with http.get(f"{url}/api/v1/flows/{FLOW}/funnel", headers=ADMIN) as response:
        assert response.status == 200, await response.text()
        totals: dict[str, Any] = (await response.json())["totals"]
        return totals


async def test_beacons_are_checked_counted_and_shown_in_the_funnel(tmp_path: Path) -> None:
    env = {
        "LEADFLOW_ADMIN_API_KEY_SHA256": hash_api_key(ADMIN_KEY),
        "LEADFLOW_RATE_BURST": "12",
        "LEADFLOW_RATE_PER_SECOND": "1",
    }
    server = ServerProcess(tmp_path / "data", env=env).start()
    url = server.http_url
    page = url  # the demo site allows its own origin
    view = {"site": "demo", "flow": FLOW, "kind": "view"}
    try:
        async with aiohttp.ClientSession() as http:
            before = await funnel_totals(http, url)
            assert list(before)[:3] == ["viewed", "opened", "started"], before
            assert before["viewed"] == before["opened"] == 0

            assert await post(http, url, view, page) == 204
            assert await post(http, url, view, page) == 204
            assert await post(http, url, {**view, "kind": "open"}, page) == 204
            refused = [
                await post(http, url, b"{not json", page),
                await post(http, url, {**view, "kind": "click"}, page),
                await post(http, url, {**view, "email": "ann@example.com"}, page),
                await post(http, url, {**view, "site": "nobody"}, page),
                await post(http, url, {**view, "flow": "solar-qoute"}, page),
                await post(http, url, b" " * 1000, page),
                await post(http, url, view, "https://evil.example"),
                await post(http, url, view, None),
            ]
            assert refused == [400, 400, 400, 400, 400, 413, 403, 403]

            totals = await funnel_totals(http, url)
            assert (totals["viewed"], totals["opened"]) == (2, 1), totals

            today = time.strftime("%Y-%m-%d", time.gmtime())
            daily_url = f"{url}/api/v1/flows/{FLOW}/daily?from={today}&to={today}"
            async with http.get(daily_url, headers=ADMIN) as response:
                daily = await response.json()
            assert (daily["days"][0]["viewed"], daily["days"][0]["opened"]) == (2, 1), daily
            assert daily["totals"]["viewed"] == 2

            # a flood from one address: the burst (12, counting the 11 above), then 429
            statuses = [await post(http, url, view, page) for _ in range(10)]
            assert 429 in statuses, statuses
    finally:
        server.stop()

    server = ServerProcess(tmp_path / "data", env=env).start()  # the counts are kept
    try:
        async with aiohttp.ClientSession() as http:
            totals = await funnel_totals(http, server.http_url)
            assert totals["viewed"] >= 2 and totals["opened"] == 1, totals
    finally:
        server.stop()

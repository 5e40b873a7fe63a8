"""The studio in the distributed mode: the projector (``leadflow run projector``, real
Kafka and Redis) serves /studio/ with the strict CSP, its config.json names the gateway
of ``LEADFLOW_STUDIO_WIDGET_URL`` and the preview page's CSP allows that origin and no
other; the policy summary is relayed to the real policy service with the admin key
only. The relay's failures (a 5xx, not JSON, nobody listening, a redirect) are 502s,
on aiohttp's test server."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from projector.policy_proxy import PolicyProxySettings, add_policy_proxy
from projector.studio import add_studio_routes
from projector.studio_assets import CSP
from projector.studio_config import NO_WIDGET
from services.http_auth import hash_api_key
from tests.support.distributed import Cluster, Service
from tests.support.server import free_port

pytestmark = pytest.mark.integration
ADMIN_KEY = "studio-admin-key-0123456789"
GATEWAY = "https://chat.example.com"
Client = TestClient[Any, Any]
MakeClient = Callable[[web.Application], Awaitable[Client]]
MakeServer = Callable[[web.Application], Awaitable[TestServer]]


def _get(url: str, key: str | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url)
    if key is not None:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def directives(csp: str) -> dict[str, str]:
    return {d.split(" ", 1)[0]: d.split(" ", 1)[1] for d in csp.split("; ")}


@pytest.fixture
def services(cluster: Cluster) -> tuple[str, str]:
    """A policy service and a projector that relays to it, both with the admin key."""
    admin = {"LEADFLOW_ADMIN_API_KEY_SHA256": hash_api_key(ADMIN_KEY)}
    policy_port = free_port()
    policy = Service(
        "policy",
        ["run", "policy"],
        {**cluster.env, **admin, "LEADFLOW_POLICY_PORT": str(policy_port)},
        cluster.workdir / "policy.log",
        policy_port,
    )
    cluster.services.append(policy)
    port = free_port()
    projector = Service(
        "projector",
        ["run", "projector"],
        {
            **cluster.env,
            **admin,
            "LEADFLOW_PROJECTOR_PORT": str(port),
            "LEADFLOW_STUDIO_WIDGET_URL": f"{GATEWAY}/",
            "LEADFLOW_POLICY_API_URL": f"http://127.0.0.1:{policy_port}",
        },
        cluster.workdir / "projector.log",
        port,
    )
    cluster.services.append(projector)
    policy.start()
    projector.start()
    policy.wait_ready()
    projector.wait_ready()
    return f"http://127.0.0.1:{port}", f"http://127.0.0.1:{policy_port}"


def test_the_projector_serves_the_studio_with_the_gateways_widget(
    services: tuple[str, str],
) -> None:
    projector, _ = services
    status, headers, body = _get(f"{projector}/studio/")
    assert status == 200 and headers["Content-Security-Policy"] == CSP
    assert b'<script type="module" src="studio.js">' in body
    status, headers, body = _get(f"{projector}/studio/config.json")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert headers["Content-Security-Policy"] == CSP
    assert json.loads(body) == {"preview": {"widget_url": f"{GATEWAY}/widget.js", "reason": None}}
    status, headers, _ = _get(f"{projector}/studio/preview.html")
    assert status == 200
    csp = directives(headers["Content-Security-Policy"])
    assert csp["script-src"] == f"'self' {GATEWAY}"
    assert csp["connect-src"] == f"'self' {GATEWAY} wss://chat.example.com"
    assert csp["default-src"] == "'none'" and csp["frame-ancestors"] == "'none'"


def test_the_policy_summary_is_relayed_with_the_admin_key_only(
    services: tuple[str, str],
) -> None:
    projector, policy = services
    # the policy service itself wants the key: a relay that dropped it would get 401
    assert _get(f"{policy}/flows/solar-quote/summary")[0] == 401
    status, headers, body = _get(f"{projector}/policy/flows/solar-quote/summary", ADMIN_KEY)
    assert status == 404 and headers["Content-Type"].startswith("application/json")
    assert json.loads(body)["error"]["code"] == "no_snapshot"  # the policy service's answer
    for key in (None, "not-the-admin-key"):
        status, _, body = _get(f"{projector}/policy/flows/solar-quote/summary", key)
        assert status == 401 and json.loads(body)["error"]["code"] == "unauthorized"
    # only the summary is relayed
    assert _get(f"{projector}/policy/flows", ADMIN_KEY)[0] == 404
    assert _get(f"{projector}/policy/flows/solar-quote/guardrails", ADMIN_KEY)[0] == 404


async def _upstream(aiohttp_server: MakeServer, seen: list[str]) -> TestServer:
    async def answer(request: web.Request) -> web.StreamResponse:
        seen.append(f"{request.path} {request.headers.get('Authorization')}")
        flow = request.match_info["flow_id"]
        if flow == "ok":
            return web.json_response({"flow_id": "ok", "decision_points": []})
        if flow == "broken":
            return web.json_response({"error": {"code": "internal"}}, status=500)
        if flow == "html":
            return web.Response(text="<html>proxy error</html>", content_type="text/html")
        raise web.HTTPFound("http://127.0.0.1:1/elsewhere")  # "moved": not followed

    app = web.Application()
    app.router.add_get("/flows/{flow_id}/summary", answer)
    return await aiohttp_server(app)


async def test_the_relays_failures_are_502_json(
    aiohttp_client: MakeClient, aiohttp_server: MakeServer
) -> None:
    seen: list[str] = []
    upstream = await _upstream(aiohttp_server, seen)
    app = web.Application()
    base = str(upstream.make_url("")).rstrip("/")
    add_policy_proxy(app, PolicyProxySettings(base, hash_api_key(ADMIN_KEY), timeout=2.0))
    client = await aiohttp_client(app)
    auth = {"Authorization": f"Bearer {ADMIN_KEY}"}
    ok = await client.get("/policy/flows/ok/summary", headers=auth)
    assert ok.status == 200 and (await ok.json())["flow_id"] == "ok"
    assert seen == [f"/flows/ok/summary Bearer {ADMIN_KEY}"]
    for flow in ("broken", "html", "moved"):
        response = await client.get(f"/policy/flows/{flow}/summary", headers=auth)
        assert response.status == 502, flow
        assert (await response.json())["error"]["code"] == "policy_unavailable"
    assert len(seen) == 4  # one request each, the redirect not followed
    await upstream.close()  # nobody listening any more
    gone = await client.get("/policy/flows/ok/summary", headers=auth)
    assert gone.status == 502 and (await gone.json())["error"]["code"] == "policy_unavailable"


async def test_without_a_widget_url_the_config_says_why_and_the_preview_csp_is_strict(
    aiohttp_client: MakeClient,
) -> None:
    app = web.Application()
    add_studio_routes(app, config=NO_WIDGET)
    client = await aiohttp_client(app)
    config = await client.get("/studio/config.json")
    preview = (await config.json())["preview"]
    assert preview["widget_url"] is None and "LEADFLOW_STUDIO_WIDGET_URL" in preview["reason"]
    page = await client.get("/studio/preview.html")
    csp = directives(page.headers["Content-Security-Policy"])
    assert csp["script-src"] == "'self'" and csp["connect-src"] == "'self'"

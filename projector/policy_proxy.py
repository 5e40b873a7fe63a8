"""``GET /policy/flows/{flow_id}/summary`` on the projector, answered by the policy service.

The studio shows the policy's traffic shares from ``/policy/flows/{id}/summary`` of its
own origin. Under ``leadflow serve`` the policy API is mounted there; in the distributed
mode it is the policy service's (``leadflow run policy``, port 8091), so the projector,
which serves the studio, relays this one route to ``LEADFLOW_POLICY_API_URL`` (e.g.
``http://policy:8091``). Nothing else is relayed: the projector is no open proxy.

* **Key.** The policy API takes only the admin key. The relay checks it here first: a
  request without it is refused (401) without reaching the policy service, so a site
  key is never sent on; the admin key is forwarded (``Authorization``) to the
  configured URL only, redirects are not followed, and no cookie or proxy setting of
  the environment is used. With no admin key configured nothing is forwarded.
* **Answers.** The policy service's JSON answer with its status for 200 and 4xx (a
  flow without a snapshot is its 404); anything else (5xx, not JSON, larger than
  :data:`MAX_BODY`, a timeout of :data:`TIMEOUT_SECONDS`, a refused connection) is a
  502 ``{"error": {"code": "policy_unavailable", ...}}``: the studio then shows no
  shares and goes on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from projector.policy_relay import bearer, relayed, summary_url
from services.http_auth import authenticate

log = logging.getLogger(__name__)
TIMEOUT_SECONDS = 3.0
MAX_BODY = 1024 * 1024
ROUTE = "/policy/flows/{flow_id}/summary"


@dataclass(frozen=True, slots=True)
class PolicyProxySettings:
    base_url: str  # the policy API's base, validated, without a trailing "/"
    admin_key_sha256: str | None
    timeout: float = TIMEOUT_SECONDS


@dataclass
class _Relay:
    settings: PolicyProxySettings
    session: aiohttp.ClientSession | None = None


RELAY = web.AppKey("policy_relay", _Relay)


def _error(status: int, code: str, message: str) -> web.Response:
    body = json.dumps({"error": {"code": code, "message": message}})
    return web.Response(status=status, text=body, content_type="application/json")


def _unavailable(why: str) -> web.Response:
    log.warning("policy API unavailable to the studio: %s", why)
    return _error(502, "policy_unavailable", "the policy service did not answer")


async def _summary(request: web.Request) -> web.StreamResponse:
    relay = request.app[RELAY]
    headers = {"Accept": "application/json"}
    admin = relay.settings.admin_key_sha256
    if admin is not None:
        key = bearer(request.headers.get("Authorization"))
        if authenticate(key, {}, admin) is None:
            return _error(401, "unauthorized", "an admin API key is required")
        headers["Authorization"] = f"Bearer {key}"
    if relay.session is None:
        return _unavailable("not started")
    url = summary_url(relay.settings.base_url, request.match_info["flow_id"])
    try:
        async with relay.session.get(url, headers=headers, allow_redirects=False) as resp:
            body = await resp.content.read(MAX_BODY + 1)
            status, content_type = resp.status, resp.content_type
    except (aiohttp.ClientError, TimeoutError) as exc:
        return _unavailable(type(exc).__name__)
    if len(body) > MAX_BODY:
        return _unavailable("answer too large")
    if not relayed(status, content_type):
        return _unavailable(f"HTTP {status} {content_type}")
    return web.Response(status=status, body=body, content_type="application/json")


def add_policy_proxy(app: web.Application, settings: PolicyProxySettings) -> None:
    """Relay the studio's policy summaries to ``settings.base_url`` (module docstring);
    its HTTP client lives as long as the app."""
    relay = _Relay(settings)
    app[RELAY] = relay

    async def client(app: web.Application) -> AsyncIterator[None]:
        relay.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=settings.timeout),
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
        )
        yield
        await relay.session.close()

    app.cleanup_ctx.append(client)
    app.router.add_get(ROUTE, _summary)

"""A webhook receiver for delivery tests: a real aiohttp server on 127.0.0.1.

It does what a customer's endpoint does and what a test needs to see:

- ``POST /hook`` verifies the Standard Webhooks signature with the
  ``standardwebhooks`` reference package (a bad one is answered 401 and
  counted in :attr:`Receiver.bad_signatures`) and records each accepted
  delivery's body under its ``webhook-id`` (:attr:`Receiver.bodies`);
- ``POST /slack`` records the JSON a Slack incoming webhook would get;
- ``POST /redirect`` answers ``307`` to ``/hook`` (a sender must not follow);
- :meth:`Receiver.answer` queues answers for the next requests (fail N times
  with a status, 429 with ``Retry-After``, 410), :meth:`Receiver.hang` makes
  the next request wait past any timeout, :meth:`Receiver.stop` takes it down
  and :meth:`Receiver.start` brings it back on the same port.

Every request, whatever it was answered, is in :attr:`Receiver.requests`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass(frozen=True)
class Answer:
    status: int
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    hang: float = 0.0  # seconds to wait before answering


@dataclass(frozen=True)
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int


class Receiver:
    def __init__(self, secret: str) -> None:
        self.webhook = Webhook(secret)
        self.plan: deque[Answer] = deque()
        self.requests: list[Seen] = []
        self.bodies: dict[str, list[bytes]] = {}  # webhook-id -> bodies answered 2xx
        self.slack: list[bytes] = []
        self.bad_signatures = 0
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def answer(self, status: int, times: int = 1, body: str = "", **headers: str) -> None:
        """The next ``times`` requests get ``status`` (headers by keyword: ``retry_after``)."""
        named = {k.replace("_", "-"): v for k, v in headers.items()}
        self.plan.extend(Answer(status, body, named) for _ in range(times))

    def hang(self, seconds: float = 60.0) -> None:
        self.plan.append(Answer(200, hang=seconds))

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        app.router.add_post("/slack", self._slack)
        app.router.add_post("/redirect", self._redirect)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        if not self.port:
            self.port = int(self._runner.addresses[0][1])
        return self

    async def stop(self) -> None:
        """Down: the port refuses connections until :meth:`start`."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _planned(self, request: web.Request, body: bytes) -> web.Response | None:
        if not self.plan:
            return None
        answer = self.plan.popleft()
        if answer.hang:
            await asyncio.sleep(answer.hang)
        self._seen(request, body, answer.status)
        return web.Response(status=answer.status, text=answer.body, headers=answer.headers)

    def _seen(self, request: web.Request, body: bytes, status: int) -> None:
        self.requests.append(Seen(request.path, dict(request.headers), body, status))

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            self.webhook.verify(body, dict(request.headers))
        except WebhookVerificationError:
            self.bad_signatures += 1
            self._seen(request, body, 401)
            return web.Response(status=401, text="bad signature")
        planned = await self._planned(request, body)
        if planned is not None:
            return planned
        self._seen(request, body, 200)
        self.bodies.setdefault(request.headers["webhook-id"], []).append(body)
        return web.Response(status=200, text="ok")

    async def _slack(self, request: web.Request) -> web.Response:
        body = await request.read()
        planned = await self._planned(request, body)
        if planned is not None:
            return planned
        self._seen(request, body, 200)
        self.slack.append(body)
        return web.Response(status=200, text="ok")

    async def _redirect(self, request: web.Request) -> web.Response:
        body = await request.read()
        self._seen(request, body, 307)
        return web.Response(status=307, headers={"location": "/hook"})

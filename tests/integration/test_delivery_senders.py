"""The webhook, Slack and e-mail senders against real servers on 127.0.0.1.

The receiver (tests/support/receiver.py) verifies signatures with the
``standardwebhooks`` reference package; the SMTP server is aiosmtpd with
STARTTLS and AUTH required (tests/support/smtp.py). The SSRF guard is the real
one: 127.0.0.1 is refused unless the test allowlists it.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import orjson
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from services.delivery.config import Destination, SmtpServer
from services.delivery.email import EmailSender
from services.delivery.guarded_http import GuardedHttp
from services.delivery.schedule import Result
from services.delivery.slack import SlackSender
from services.delivery.ssrf import AddressGuard, parse_networks
from services.delivery.webhook import WebhookSender
from tests.support import leads
from tests.support.receiver import Receiver
from tests.support.smtp import PASSWORD, USERNAME
from tests.support.smtp import SmtpServer as SmtpTestServer

pytestmark = pytest.mark.integration
LOCAL = AddressGuard(parse_networks("127.0.0.0/8"))


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver(leads.SECRET).start()
    yield r
    await r.stop()


def hook(receiver: Receiver, path: str = "/hook", **changes: object) -> Destination:
    return Destination("demo", "crm", "webhook", url=receiver.url + path, secrets=(leads.SECRET,))


async def send(
    sender: WebhookSender | SlackSender | EmailSender, dest: Destination, now: float | None = None
) -> tuple[Result, bytes]:
    doc = leads.payload()
    body = leads.body(doc)
    result = await sender.send(dest, leads.delivery(dest), doc, body, now or time.time())
    return result, body


@pytest.fixture
async def webhook() -> AsyncIterator[WebhookSender]:
    sender = WebhookSender(GuardedHttp(LOCAL, timeout=1.0))
    yield sender
    await sender.close()


async def test_a_webhook_arrives_signed_and_a_retry_carries_the_same_id_and_body(
    receiver: Receiver, webhook: WebhookSender
) -> None:
    """The receiver deduplicates by webhook-id: a retry must not change the id or body."""
    dest = hook(receiver)
    receiver.answer(500, times=2)
    results = [await send(webhook, dest) for _ in range(3)]
    outcomes = [(r.outcome, r.status_code) for r, _ in results]
    assert outcomes == [("retry", 500), ("retry", 500), ("delivered", 200)]
    assert receiver.bad_signatures == 0
    lead_id = leads.snapshot().event_id
    assert list(receiver.bodies) == [lead_id]
    sent = {(s.headers["webhook-id"], s.body) for s in receiver.requests}
    assert sent == {(lead_id, results[0][1])}
    first = receiver.requests[0].headers
    assert first["Content-Type"] == "application/json"
    assert first["User-Agent"] == "Leadflow-Webhooks/1"
    assert orjson.loads(receiver.bodies[lead_id][0])["data"]["contact"]["email"] == (
        "ada@example.org"
    )


async def test_rotation_two_secrets_sign_and_a_receiver_knowing_either_verifies(
    receiver: Receiver, webhook: WebhookSender
) -> None:
    dest = hook(receiver)
    rotated = Destination(
        dest.site_id, dest.name, dest.kind, url=dest.url,
        secrets=(leads.OTHER_SECRET, leads.SECRET),
    )  # fmt: skip
    result, _ = await send(webhook, rotated)
    assert result.outcome == "delivered"
    assert len(receiver.requests[0].headers["webhook-signature"].split()) == 2


async def test_429_with_retry_after_seconds_and_date_are_honoured(
    receiver: Receiver, webhook: WebhookSender
) -> None:
    dest = hook(receiver)
    now = time.time()
    receiver.answer(429, retry_after="120")
    later = format_datetime(datetime.fromtimestamp(int(now) + 600, UTC), usegmt=True)
    receiver.answer(503, retry_after=later)
    first, _ = await send(webhook, dest, now)
    second, _ = await send(webhook, dest, now)
    assert (first.outcome, first.status_code, first.retry_after) == ("retry", 429, 120.0)
    assert second.status_code == 503
    assert second.retry_after is not None
    assert 595 <= second.retry_after <= 600


async def test_410_is_gone(receiver: Receiver, webhook: WebhookSender) -> None:
    receiver.answer(410)
    result, _ = await send(webhook, hook(receiver))
    assert (result.outcome, result.status_code) == ("gone", 410)


async def test_a_receiver_that_hangs_is_a_retry_after_the_timeout(
    receiver: Receiver, webhook: WebhookSender
) -> None:
    receiver.hang(5.0)
    started = time.monotonic()
    result, _ = await send(webhook, hook(receiver))
    assert time.monotonic() - started < 3.0
    assert (result.outcome, result.status_code) == ("retry", None)
    assert result.detail == "timeout: no answer within 1 s"


async def test_a_receiver_that_is_down_is_a_retry_and_up_again_delivers(
    receiver: Receiver, webhook: WebhookSender
) -> None:
    dest = hook(receiver)
    await receiver.stop()
    down, _ = await send(webhook, dest)
    assert down.outcome == "retry"
    assert down.detail.startswith("connection failed")
    await receiver.start()
    up, _ = await send(webhook, dest)
    assert up.outcome == "delivered"


async def test_ssrf_refuses_loopback_unless_allowlisted(receiver: Receiver) -> None:
    """Without the allowlist the guard refuses 127.0.0.1 before any connection."""
    sender = WebhookSender(GuardedHttp(AddressGuard(), timeout=1.0))
    try:
        result, _ = await send(sender, hook(receiver))
    finally:
        await sender.close()
    assert result.outcome == "retry"
    assert result.detail == "SSRF guard: 127.0.0.1 is loopback"
    assert receiver.requests == []


class FakeDns(AbstractResolver):
    """Names to addresses, as an attacker's DNS might answer."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(hostname=host, host=a, port=port, family=socket.AF_INET, proto=0, flags=0)
            for a in self.answers[host]
        ]

    async def close(self) -> None:
        return None


async def test_a_name_is_refused_if_any_of_its_addresses_is_refused(receiver: Receiver) -> None:
    """DNS rebinding: a name answering a public and a private address is refused
    (on the resolved addresses); allowlisted, the same name reaches the receiver."""
    dns = FakeDns(
        {"hooks.example.com": ["93.184.216.34", "127.0.0.1"], "local.test": ["127.0.0.1"]}
    )
    dest = Destination(
        "demo", "crm", "webhook", url=f"http://hooks.example.com:{receiver.port}/hook",
        secrets=(leads.SECRET,),
    )  # fmt: skip
    guarded = WebhookSender(GuardedHttp(AddressGuard(), timeout=1.0, resolver=dns))
    allowed = WebhookSender(GuardedHttp(LOCAL, timeout=1.0, resolver=dns))
    try:
        refused, _ = await send(guarded, dest)
        local = Destination(
            "demo", "crm", "webhook", url=f"http://local.test:{receiver.port}/hook",
            secrets=(leads.SECRET,),
        )  # fmt: skip
        ok, _ = await send(allowed, local)
    finally:
        await guarded.close()
        await allowed.close()
    assert refused.outcome == "retry"
    assert refused.detail == "SSRF guard: 127.0.0.1 is loopback"
    assert ok.outcome == "delivered"
    assert receiver.requests[0].headers["Host"] == f"local.test:{receiver.port}"


async def test_a_redirect_is_not_followed(receiver: Receiver, webhook: WebhookSender) -> None:
    result, _ = await send(webhook, hook(receiver, "/redirect"))
    assert (result.outcome, result.status_code) == ("retry", 307)
    assert [s.path for s in receiver.requests] == ["/redirect"]


async def test_slack_gets_block_kit_and_410_is_gone(receiver: Receiver) -> None:
    sender = SlackSender(GuardedHttp(LOCAL, timeout=1.0))
    dest = Destination("demo", "team", "slack", url=receiver.url + "/slack")
    try:
        ok, _ = await send(sender, dest)
        receiver.answer(410, body="channel_is_archived")
        gone, _ = await send(sender, dest)
        receiver.answer(404, body="no_service")
        missing, _ = await send(sender, dest)
    finally:
        await sender.close()
    assert ok.outcome == "delivered"
    message = orjson.loads(receiver.slack[0])
    assert message["blocks"][0]["text"]["text"] == "New lead from Test quiz"
    assert "ada@example.org" in receiver.slack[0].decode()
    assert (gone.outcome, gone.status_code) == ("gone", 410)
    assert gone.detail.endswith("(channel_is_archived)")
    assert (missing.outcome, missing.detail) == ("retry", "HTTP 404 (no_service)")


@pytest.fixture
async def smtp(tmp_path: Path) -> AsyncIterator[SmtpTestServer]:
    server = await SmtpTestServer(tmp_path).start()
    yield server
    await server.stop()


def mail(smtp: SmtpTestServer, password: str = PASSWORD) -> Destination:
    server = SmtpServer(
        "127.0.0.1", smtp.port, starttls=True, username=USERNAME, password=password,
        sender="leads@leadflow.example",
    )  # fmt: skip
    return Destination(
        "demo", "sales", "email", recipients=("sales@example.com", "boss@example.com"),
        smtp=server,
    )  # fmt: skip


async def test_email_over_starttls_with_auth_has_both_parts_and_a_stable_message_id(
    smtp: SmtpTestServer,
) -> None:
    sender = EmailSender(LOCAL, 5.0, tls_context=smtp.client_context())
    dest = mail(smtp)
    first, _ = await send(sender, dest)
    second, _ = await send(sender, dest)
    assert (first.outcome, second.outcome) == ("delivered", "delivered")
    a, b = smtp.messages
    assert a.recipients == ["sales@example.com", "boss@example.com"]
    assert a.sender == "leads@leadflow.example"
    assert a.message["Message-ID"] == b.message["Message-ID"]
    assert a.message["Message-ID"].endswith("@leadflow.example>")
    assert a.message["X-Leadflow-Lead-Id"] == leads.snapshot().event_id
    assert a.message["Subject"] == "New lead from Test quiz"
    assert a.message.get_content_type() == "multipart/alternative"
    text = a.message.get_body(("plain",))
    html = a.message.get_body(("html",))
    assert text is not None and html is not None
    assert "Ada <b>Lovelace</b> & Co" in text.get_content()
    assert "Ada &lt;b&gt;Lovelace&lt;/b&gt; &amp; Co" in html.get_content()


async def test_email_failures_are_retries_with_short_details(smtp: SmtpTestServer) -> None:
    trusting = EmailSender(LOCAL, 5.0, tls_context=smtp.client_context())
    bad_password, _ = await send(trusting, mail(smtp, "wrong"))
    untrusted, _ = await send(EmailSender(LOCAL, 5.0), mail(smtp))
    refused, _ = await send(EmailSender(AddressGuard(), 5.0), mail(smtp))
    smtp.handler.refuse = {"sales@example.com": 550}
    partly, _ = await send(trusting, mail(smtp))
    await smtp.stop()
    down, _ = await send(trusting, mail(smtp))
    assert (bad_password.outcome, bad_password.detail) == (
        "retry",
        "SMTP 535: authentication failed",
    )
    assert (untrusted.outcome, untrusted.detail) == (
        "retry",
        "TLS: the certificate was not accepted",
    )
    assert refused.detail == "SSRF guard: 127.0.0.1 is loopback"
    assert (partly.outcome, partly.detail) == ("delivered", "1 of 2 recipients refused")
    assert down.outcome == "retry"
    assert down.detail.startswith("connection failed")
    assert PASSWORD not in repr([bad_password, untrusted, refused, partly, down])


async def test_an_smtp_server_that_hangs_is_a_retry_after_the_timeout() -> None:
    """A server that accepts the connection and never greets."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(10)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    dest = Destination(
        "demo", "sales", "email", recipients=("sales@example.com",),
        smtp=SmtpServer("127.0.0.1", port, starttls=True),
    )  # fmt: skip
    try:
        started = time.monotonic()
        result, _ = await send(EmailSender(LOCAL, 0.5), dest)
        assert time.monotonic() - started < 3.0
    finally:
        server.close()
    assert (result.outcome, result.detail) == ("retry", "timeout: no answer within 0.5 s")

"""The ``email`` sender: the lead as a multipart/alternative e-mail over SMTP.

The message (:func:`build_message`) has a plain-text and an HTML part
(:func:`services.delivery.render.email`), a ``Message-ID`` derived from the
delivery id, so every retry of one delivery carries the same id and a mail
system that saw it already can drop the copy, and ``X-Leadflow-Lead-Id``.

The connection goes through the SSRF guard like HTTP does: the SMTP host is
resolved here, the name is refused if any of its addresses is refused, and
the socket connects to the checked addresses themselves (never to the name
again, so a second DNS answer cannot rebind it); TLS still verifies the
certificate against the host name. Port 465 is TLS from the start; otherwise
STARTTLS is required when ``starttls`` is set (never optional: credentials and
leads are not sent in clear because a server forgot to offer it).

Outcomes: accepted for at least one recipient is ``delivered`` (retrying would
send the accepted ones a copy; refused recipients are counted in the detail);
every SMTP error (4xx or 5xx), timeout, refused connection, TLS failure or
SSRF refusal is a ``retry`` with a short detail that names no address, no
password and nothing of the lead.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import ssl
from collections.abc import Awaitable, Callable, Mapping
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

import aiohappyeyeballs
import aiosmtplib
from aiohappyeyeballs import AddrInfoType

from services.delivery import model, render
from services.delivery.config import Destination, SmtpServer
from services.delivery.model import Delivery
from services.delivery.schedule import Result
from services.delivery.senders import ATTEMPT_TIMEOUT_SECONDS
from services.delivery.ssrf import AddressGuard

Resolve = Callable[[str, int], Awaitable[list[AddrInfoType]]]
_UNSAFE = re.compile(r"[^A-Za-z0-9.-]")


class Refused(Exception):
    """The SSRF guard refused the SMTP host."""


def message_id(delivery: Delivery, sender: str) -> str:
    """``<event-id.destination@sender's domain>``: the same on every retry."""
    domain = _UNSAFE.sub("-", sender.rpartition("@")[2]) or "leadflow.invalid"
    left = _UNSAFE.sub("-", f"{model.message_id(delivery)}.{delivery.destination}")
    return f"<{left}@{domain}>"


def build_message(
    destination: Destination, delivery: Delivery, payload: Mapping[str, Any], now: float
) -> EmailMessage:
    """The e-mail for one delivery: text and HTML alternatives, stable Message-ID."""
    sender = destination.smtp.sender if destination.smtp else "leads@localhost"
    rendered = render.email(payload)
    msg = EmailMessage()
    msg["Subject"] = rendered.subject
    msg["From"] = sender
    msg["To"] = ", ".join(destination.recipients)
    msg["Date"] = formatdate(now, usegmt=True)
    msg["Message-ID"] = message_id(delivery, sender)
    msg["X-Leadflow-Lead-Id"] = delivery.lead.event_id
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(rendered.text)
    msg.add_alternative(rendered.html, subtype="html")
    return msg


async def _getaddrinfo(host: str, port: int) -> list[AddrInfoType]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [(f, t, p, c, tuple(a)) for f, t, p, c, a in infos]


class EmailSender:
    """Implements :class:`services.delivery.senders.Sender` for ``email`` destinations.

    ``tls_context`` replaces the default certificate verification (tests trust
    their own CA); ``resolve`` replaces DNS (tests)."""

    def __init__(
        self,
        guard: AddressGuard,
        timeout: float = ATTEMPT_TIMEOUT_SECONDS,
        *,
        tls_context: ssl.SSLContext | None = None,
        resolve: Resolve = _getaddrinfo,
    ) -> None:
        self.guard, self.tls_context, self.timeout, self.resolve = (
            guard,
            tls_context,
            timeout,
            resolve,
        )
        self._fqdn: str | None = None

    async def send(
        self,
        destination: Destination,
        delivery: Delivery,
        payload: Mapping[str, Any],
        body: bytes,
        now: float,
    ) -> Result:
        smtp = destination.smtp
        if smtp is None or not destination.recipients:
            return Result("retry", None, "no SMTP server or no recipients configured")
        message = build_message(destination, delivery, payload, now)
        try:
            async with asyncio.timeout(min(self.timeout, smtp.timeout)):
                refused = await self._send(smtp, message, destination.recipients)
        except Refused as exc:
            return Result("retry", None, str(exc))
        except Exception as exc:  # every failure is a retry: say which, briefly
            return Result("retry", None, smtp_detail(exc, min(self.timeout, smtp.timeout)))
        if refused:
            return Result(
                "delivered",
                None,
                f"{refused} of {len(destination.recipients)} recipients refused",
            )
        return Result("delivered")

    async def _connect(self, host: str, port: int) -> socket.socket:
        infos = await self.resolve(host, port)
        if not infos:
            raise OSError("the SMTP host did not resolve")
        reason = self.guard.first_refusal(str(info[4][0]) for info in infos)
        if reason is not None:
            raise Refused(f"SSRF guard: {reason}")
        return await aiohappyeyeballs.start_connection(infos)

    async def _send(self, smtp: SmtpServer, message: EmailMessage, to: tuple[str, ...]) -> int:
        """Send; how many recipients were refused (raises if all were).

        The socket is handed to aiosmtplib, whose transport owns (and closes) it
        from then on: closing it here too would free its descriptor under a
        transport that still shuts TLS down on it."""
        implicit = smtp.port == 465
        client = aiosmtplib.SMTP(
            hostname=smtp.host,
            use_tls=implicit,
            start_tls=smtp.starttls and not implicit,
            username=smtp.username,
            password=smtp.password,
            tls_context=self.tls_context,
            timeout=smtp.timeout,
            local_hostname=await self._local_hostname(),
        )
        sock = await self._connect(smtp.host, smtp.port)
        try:
            await client.connect(sock=sock)
            errors, _ = await client.send_message(message, sender=smtp.sender, recipients=to)
            with contextlib.suppress(aiosmtplib.SMTPException):
                await client.quit()
            return len(errors)
        finally:
            client.close()

    async def _local_hostname(self) -> str:
        """This host's name for EHLO, looked up once (it may take a DNS query)."""
        if self._fqdn is None:
            self._fqdn = await asyncio.to_thread(socket.getfqdn)
        return self._fqdn

    async def close(self) -> None:
        return None


def smtp_detail(exc: BaseException, timeout: float) -> str:
    """A short, safe description of a failed SMTP attempt."""
    if isinstance(exc, TimeoutError | aiosmtplib.SMTPTimeoutError):
        return f"timeout: no answer within {timeout:g} s"
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = sorted({r.code for r in exc.recipients})
        return f"SMTP {'/'.join(map(str, codes))}: every recipient was refused"
    named = (
        (aiosmtplib.SMTPAuthenticationError, "authentication failed"),
        (aiosmtplib.SMTPSenderRefused, "sender refused"),
        (aiosmtplib.SMTPDataError, "message refused"),
        (aiosmtplib.SMTPHeloError, "greeting refused"),
        (aiosmtplib.SMTPConnectResponseError, "the server refused the connection"),
    )
    for kind, what in named:
        if isinstance(exc, kind):
            return f"SMTP {exc.code}: {what}"
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"SMTP {exc.code}: error"
    if isinstance(exc, ssl.SSLCertVerificationError) or isinstance(
        exc.__cause__, ssl.SSLCertVerificationError
    ):
        return "TLS: the certificate was not accepted"
    if isinstance(exc, ssl.SSLError) or isinstance(exc.__cause__, ssl.SSLError):
        return "TLS: handshake failed"
    if isinstance(exc, aiosmtplib.SMTPConnectError):
        return "connection failed"
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected):
        return "the server closed the connection"
    if isinstance(exc, aiosmtplib.SMTPNotSupported | aiosmtplib.SMTPException):
        if "STARTTLS" in str(exc).upper():
            return "SMTP: the server does not offer STARTTLS"
        if "AUTH" in str(exc).upper():
            return "SMTP: the server does not offer authentication"
        return f"SMTP: {type(exc).__name__}"
    if isinstance(exc, socket.gaierror):
        return "DNS: the SMTP host did not resolve"
    if isinstance(exc, OSError):
        return f"connection failed: {exc.strerror or type(exc).__name__}"
    return f"send failed: {type(exc).__name__}"

"""A real SMTP server for delivery tests: aiosmtpd on 127.0.0.1, in the test's loop.

STARTTLS with a certificate of a throwaway CA (tests/support/tls.py), required
before anything is sent; AUTH PLAIN and LOGIN with one username and password,
required too (and only over TLS). Accepted messages are kept, parsed, in
:attr:`SmtpServer.messages`.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.support.tls import Pem, make_ca, make_cert

USERNAME = "leadflow"
PASSWORD = "s3cret-smtp-password"


@dataclass
class Received:
    sender: str
    recipients: list[str]
    message: EmailMessage
    raw: bytes


@dataclass
class _Handler:
    messages: list[Received] = field(default_factory=list)
    refuse: dict[str, int] = field(default_factory=dict)  # recipient -> SMTP code

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        code = self.refuse.get(address)
        if code is not None:
            return f"{code} no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        msg = message_from_bytes(raw, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append(Received(str(envelope.mail_from), list(envelope.rcpt_tos), msg, raw))
        return "250 Message accepted"


def _authenticate(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
) -> AuthResult:
    ok = (
        isinstance(data, LoginPassword)
        and data.login == USERNAME.encode()
        and data.password == PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False)


class SmtpServer:
    def __init__(self, directory: Path) -> None:
        self.ca: Pem = make_ca(directory)
        self.cert = make_cert(directory, self.ca, "smtp")
        self.handler = _Handler()
        self.port = 0
        self._server: asyncio.Server | None = None

    @property
    def messages(self) -> list[Received]:
        return self.handler.messages

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts this server's CA (and verifies its name)."""
        return ssl.create_default_context(cafile=str(self.ca.cert_file))

    async def start(self) -> SmtpServer:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert.cert_file, self.cert.key_file)
        loop = asyncio.get_running_loop()

        def protocol() -> SMTP:
            return SMTP(
                self.handler,
                hostname="smtp.test",
                tls_context=context,
                require_starttls=True,
                auth_required=True,
                auth_require_tls=True,
                authenticator=_authenticate,
                loop=loop,
            )

        self._server = await loop.create_server(protocol, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

"""The HTTP client of the webhook and Slack senders, behind the SSRF guard.

Three checks, so no path reaches a refused address
(:mod:`services.delivery.ssrf`): a literal IP in the URL is checked before
anything else; a name is resolved by :class:`GuardedResolver`, which refuses
the name if *any* of its addresses is refused (an attacker's DNS answering a
public and a private address cannot win the happy-eyeballs race); and the
socket factory checks the very address each socket is about to connect to
(the last line: it holds whatever the resolver or aiohttp's DNS cache did).
Redirects are never followed (a receiver could redirect to a private
address, and a POST must not turn into a GET anyway): a 3xx is an answer.

Every attempt has a total timeout (15 s by default); the pool is bounded;
there is no cookie jar and no proxy from the environment. :meth:`GuardedHttp.post`
turns every failure into :class:`Unreachable` with a short detail that names
no URL path or query, no secret and nothing of the payload.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
from aiohappyeyeballs import AddrInfoType, SocketFactoryType
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from services.delivery.senders import ATTEMPT_TIMEOUT_SECONDS
from services.delivery.ssrf import AddressGuard

POOL_LIMIT = 100  # connections in flight at once, all destinations together
POOL_LIMIT_PER_HOST = 16
READ_LIMIT = 512  # bytes of a response body read, at most (Slack's answer is a word)


class ForbiddenAddress(OSError):
    """The SSRF guard refused an address (an OSError so aiohttp carries it)."""


class Unreachable(Exception):
    """An attempt that got no HTTP answer; ``detail`` is short and safe to log."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    retry_after: str | None
    head: bytes  # the first READ_LIMIT bytes of the body, at most


class GuardedResolver(AbstractResolver):
    """Resolves with ``inner`` and refuses a name if any of its addresses is refused."""

    def __init__(self, guard: AddressGuard, inner: AbstractResolver | None = None) -> None:
        self._guard = guard
        self._inner = inner if inner is not None else DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        reason = self._guard.first_refusal(r["host"] for r in results)
        if reason is not None:
            raise ForbiddenAddress(f"SSRF guard: {reason}")
        return results

    async def close(self) -> None:
        await self._inner.close()


def guarded_socket_factory(guard: AddressGuard) -> SocketFactoryType:
    """A socket factory that refuses to create a socket for a refused address."""

    def factory(addr_info: AddrInfoType) -> socket.socket:
        family, kind, proto, _, sockaddr = addr_info
        reason = guard.refusal(str(sockaddr[0]))
        if reason is not None:
            raise ForbiddenAddress(f"SSRF guard: {reason}")
        return socket.socket(family=family, type=kind, proto=proto)

    return factory


def literal_refusal(url: URL, guard: AddressGuard) -> str | None:
    """The guard's refusal of a URL whose host is an IP literal (None for a name)."""
    host = url.host
    if host is None:
        return "the URL has no host"
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    return guard.refusal(address)


def make_session(
    guard: AddressGuard,
    timeout: float = ATTEMPT_TIMEOUT_SECONDS,
    ssl_context: ssl.SSLContext | None = None,
    resolver: AbstractResolver | None = None,
) -> aiohttp.ClientSession:
    """A pooled session behind the guard (call it inside the running loop).

    ``resolver`` is the inner resolver (tests give a fake DNS); ``ssl_context``
    replaces the default verification (tests trust their own CA)."""
    connector = aiohttp.TCPConnector(
        limit=POOL_LIMIT,
        limit_per_host=POOL_LIMIT_PER_HOST,
        resolver=GuardedResolver(guard, resolver),
        socket_factory=guarded_socket_factory(guard),
        ssl=ssl_context if ssl_context is not None else True,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=timeout),
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
        raise_for_status=False,
    )


class GuardedHttp:
    """One guarded session shared by the HTTP senders, created on first use."""

    def __init__(
        self,
        guard: AddressGuard,
        timeout: float = ATTEMPT_TIMEOUT_SECONDS,
        *,
        ssl_context: ssl.SSLContext | None = None,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self.guard, self.timeout = guard, timeout
        self._ssl, self._resolver = ssl_context, resolver
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = make_session(self.guard, self.timeout, self._ssl, self._resolver)
        return self._session

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Reply:
        """POST once; an answer of any status is a :class:`Reply`, anything else
        raises :class:`Unreachable`."""
        target = URL(url)
        reason = literal_refusal(target, self.guard)
        if reason is not None:
            raise Unreachable(f"SSRF guard: {reason}")
        try:
            async with self.session().post(
                target, data=body, headers=dict(headers), allow_redirects=False
            ) as response:
                head = await response.content.read(READ_LIMIT)
                return Reply(response.status, response.headers.get("retry-after"), head)
        except Exception as exc:  # every failure is a retry: say which, briefly
            raise Unreachable(failure_detail(exc, self.timeout)) from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _forbidden(exc: BaseException) -> ForbiddenAddress | None:
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, ForbiddenAddress):
            return seen
        if isinstance(seen, aiohttp.ClientConnectorError) and isinstance(
            seen.os_error, ForbiddenAddress
        ):
            return seen.os_error
        seen = seen.__cause__ or seen.__context__
    return None


def failure_detail(exc: BaseException, timeout: float) -> str:
    """A short, safe description of why an attempt got no answer."""
    forbidden = _forbidden(exc)
    if forbidden is not None:
        return str(forbidden)
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return f"timeout: no answer within {timeout:g} s"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return "TLS: the certificate was not accepted"
    if isinstance(exc, aiohttp.ClientSSLError):
        return "TLS: handshake failed"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "DNS: the host name did not resolve"
    if isinstance(exc, aiohttp.ClientConnectorError):
        if "SSRF guard" in str(exc.os_error):
            return "SSRF guard: every address was refused"
        return f"connection failed: {exc.os_error.strerror or type(exc.os_error).__name__}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection"
    if isinstance(exc, aiohttp.InvalidURL):
        return "invalid URL"
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ClientResponseError):
        return "the response was malformed"
    return f"request failed: {type(exc).__name__}"

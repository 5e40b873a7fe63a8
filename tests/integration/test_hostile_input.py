"""Issue 14's hostile-input classes against a real ``leadflow serve``: numbers out
of range, forged or cross-site resume tokens, the idle timeout, handshake-level
refusals (origin, duplicate headers), slowloris, starts per socket, long
conversations and paged resumes, the demo page's security headers.

Each test that needs its own settings or reads the server's log starts its own
server; the rest share one per module.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.support.server import ServerProcess
from tests.support.visitor import Visitor


def server_log(server: ServerProcess) -> list[dict[str, Any]]:
    """Stop ``server`` and return its JSON log records (stderr)."""
    assert server.proc is not None
    server.proc.terminate()
    _, err = server.proc.communicate(timeout=15)
    records = []
    for line in err.decode().splitlines():
        if line.startswith("{"):
            records.append(orjson.loads(line))
    return records


@pytest.fixture
def logged_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server of its own that logs at info, for tests that read its log."""
    proc = ServerProcess(tmp_path / "data", env={"LEADFLOW_LOG_LEVEL": "info"})
    yield proc.start()
    proc.stop()


# --- numbers out of range ---------------------------------------------------


async def test_a_seq_of_2_63_is_a_malformed_frame_not_a_server_error(
    logged_server: ServerProcess,
) -> None:
    """Regression: press seq 2**63 was answered `unavailable` (retryable) and logged
    "event log append failed" at error level with a traceback (SQLite overflow)."""
    visitor = await Visitor.connect(logged_server.ws_url)
    try:
        await visitor.start("solar-quote")
        node = visitor.current()
        assert node is not None
        for seq in (2**63, 2**64 - 1, 2**31):
            frames = await visitor.press(node["buttons"][0]["id"], seq=seq)
            assert (frames[-1]["code"], frames[-1]["retryable"]) == ("malformed_frame", False)
        frames = await visitor.press(node["buttons"][0]["id"])
        assert frames[-1]["type"] == "message" and visitor.ack == 2
    finally:
        await visitor.close()
    records = server_log(logged_server)
    assert not [r for r in records if r["level"] in ("error", "critical")], records
    assert not [r for r in records if "append failed" in r["msg"]]
    await asyncio.sleep(0)


# --- resume tokens ----------------------------------------------------------

SECRET = "issue-14-resume-secret-0123456789abcdef"
SITES_YAML = """\
sites:
  - id: alpha
    origins: ["http://localhost:*", "http://alpha.example"]
  - id: beta
    origins: ["http://localhost:*", "http://beta.example"]
"""


@pytest.fixture(scope="module")
def two_sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Two sites whose pages share an origin (localhost), with a known resume secret."""
    root = tmp_path_factory.mktemp("two-sites")
    (root / "sites.yaml").write_text(SITES_YAML, "utf-8")
    proc = ServerProcess(
        root / "data",
        env={"LEADFLOW_RESUME_SECRET": SECRET, "LEADFLOW_SITES_FILE": str(root / "sites.yaml")},
    )
    yield proc.start()
    proc.stop()


def forged(claims: dict[str, Any]) -> str:
    """A token signed with the server's secret over arbitrary claims."""
    payload = orjson.dumps(claims)
    mac = hmac.new(SECRET.encode(), payload, hashlib.sha256).digest()
    return f"{b64(payload)}.{b64(mac)}"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def resume_with(server: ServerProcess, token: str, origin: str) -> list[dict[str, Any]]:
    visitor = await Visitor.connect(server.ws_url, origin=origin)
    try:
        return await visitor.resume(token, 0)
    finally:
        await visitor.close()


async def test_a_token_naming_another_site_is_refused(two_sites: ServerProcess) -> None:
    """Regression: a correctly signed token naming `alpha` for `beta`'s conversation
    was accepted (from a page both sites allow): the conversation's own site must
    match the token's, and the answer is the one for an unknown conversation."""
    visitor = await Visitor.connect(two_sites.ws_url, origin="http://beta.example")
    try:
        frames = await visitor.start("solar-quote", site="beta")
        assert frames[0]["type"] == "session"
    finally:
        await visitor.close()
    cid, now = visitor.conversation_id, int(time.time())
    cross = forged({"c": cid, "s": "alpha", "iat": now})
    for origin in ("http://localhost:5173", "http://alpha.example"):
        (error,) = await resume_with(two_sites, cross, origin)
        assert (error["type"], error["code"]) == ("error", "no_conversation")
    (error,) = await resume_with(two_sites, cross, "http://beta.example")  # not alpha's page
    assert error["code"] == "origin_not_allowed"
    own = await resume_with(
        two_sites, forged({"c": cid, "s": "beta", "iat": now}), "http://beta.example"
    )
    assert own[0]["type"] == "session" and own[0]["conversation_id"] == cid
    issued = await resume_with(two_sites, visitor.token, "http://localhost:8080")
    assert issued[0]["type"] == "session", "the token the server issued still works"


@pytest.mark.parametrize(
    "iat",
    [lambda now: str(now), lambda now: now + 86_400, lambda now: float(now), lambda now: True],
)
async def test_tokens_with_a_mistyped_or_future_iat_are_refused(
    two_sites: ServerProcess, iat: Any
) -> None:
    """Regression: `"iat": "<digits>"` was accepted, and an iat in the future never expired."""
    visitor = await Visitor.connect(two_sites.ws_url, origin="http://alpha.example")
    try:
        await visitor.start("solar-quote", site="alpha")
    finally:
        await visitor.close()
    token = forged({"c": visitor.conversation_id, "s": "alpha", "iat": iat(int(time.time()))})
    (error,) = await resume_with(two_sites, token, "http://alpha.example")
    assert (error["code"], error["retryable"]) == ("invalid_token", False)


# --- the idle timeout -------------------------------------------------------


@pytest.fixture
def idle_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """Idle after 1.5 s without a command; WebSocket pings every 0.3 s."""
    proc = ServerProcess(
        tmp_path / "data",
        env={"LEADFLOW_IDLE_TIMEOUT_SECONDS": "1.5", "LEADFLOW_HEARTBEAT_SECONDS": "0.3"},
    )
    yield proc.start()
    proc.stop()


async def closed_within(visitor: Visitor, seconds: float, ping_every: float) -> bool:
    """Ping (app-level) every ``ping_every`` seconds, reading the pongs, until the
    server closes the socket; True if it did within ``seconds``."""
    closing = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            await visitor.send({"type": "ping"})
        except ConnectionError:
            return True
        tick = time.monotonic() + ping_every
        while (left := tick - time.monotonic()) > 0:
            try:
                msg = await visitor.ws.receive(timeout=left)
            except TimeoutError:
                break
            if msg.type in closing:
                return True
            if msg.type is aiohttp.WSMsgType.TEXT:
                assert orjson.loads(msg.data)["type"] == "pong", msg.data
    return False


async def test_a_client_that_only_pings_is_closed_as_idle(idle_server: ServerProcess) -> None:
    """Regression: the idle timeout never closed a client that answered WebSocket pings
    or sent app-level pings (the widget pings every 25 s), though the protocol promised
    a close after the idle time. Pings are not activity: it is closed with 1001."""
    visitor = await Visitor.connect(idle_server.ws_url)  # autoping: answers WS pings
    try:
        started = time.monotonic()
        assert await closed_within(visitor, 8.0, ping_every=0.25)
        assert visitor.ws.close_code == 1001
        assert 1.2 < time.monotonic() - started < 6.0
    finally:
        await visitor.close()


async def test_commands_keep_a_socket_open_and_idleness_after_them_closes_it(
    idle_server: ServerProcess,
) -> None:
    visitor = await Visitor.connect(idle_server.ws_url)
    try:
        await visitor.start("solar-quote")
        for _ in range(6):  # 3 s of a resume every 0.5 s: twice the idle timeout
            assert not await closed_within(visitor, 0.5, ping_every=0.25)  # reading: pongs
            frames = await visitor.resume(visitor.token, visitor.last_seq)
            assert frames[0]["type"] == "session"
        last = time.monotonic()
        assert await closed_within(visitor, 8.0, ping_every=0.25)
        assert visitor.ws.close_code == 1001
        assert time.monotonic() - last > 1.2
    finally:
        await visitor.close()

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
import random
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.support.server import ServerProcess
from tests.support.visitor import Visitor

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "flows"


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
        node = await visitor.answer_inputs()  # the first name, at seq 2
        for seq in (2**63, 2**64 - 1, 2**31):
            frames = await visitor.press(node["buttons"][0]["id"], seq=seq)
            assert (frames[-1]["code"], frames[-1]["retryable"]) == ("malformed_frame", False)
        frames = await visitor.press(node["buttons"][0]["id"])
        assert frames[-1]["type"] == "message" and visitor.ack == 3
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


async def test_a_page_of_one_site_cannot_start_on_another(two_sites: ServerProcess) -> None:
    """Past the handshake (beta allows the page), a start on alpha is still refused
    for this page: origin_not_allowed, then close 1008."""
    visitor = await Visitor.connect(two_sites.ws_url, origin="http://beta.example")
    try:
        frames = await visitor.start("solar-quote", site="alpha")
        assert frames[0]["code"] == "origin_not_allowed"
        msg = await visitor.ws.receive(timeout=5)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert visitor.ws.close_code == 1008
    finally:
        await visitor.close()


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


# --- the handshake: Origin and slowloris ------------------------------------


async def raw_upgrade(server: ServerProcess, origins: list[str]) -> int:
    """The HTTP status of a WebSocket upgrade with exactly these Origin headers."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        lines = [
            "GET /ws HTTP/1.1",
            f"Host: 127.0.0.1:{server.port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13",
            *(f"Origin: {origin}" for origin in origins),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 5)
        return int(status_line.split()[1])
    finally:
        writer.close()


@pytest.mark.parametrize(
    ("origins", "status"),
    [
        (["http://localhost:8080"], 101),
        (["https://evil.example"], 403),
        ([], 403),
        (["http://localhost:8080", "https://evil.example"], 403),
        (["http://localhost:8080", "http://localhost:8080"], 403),
        (["http://localhost:8080, https://evil.example"], 403),
    ],
)
async def test_the_origin_is_checked_before_the_upgrade(
    server: ServerProcess, origins: list[str], status: int
) -> None:
    """Regression: a foreign Origin got its WebSocket and was refused only at its first
    frame; two Origin headers were accepted. Both are HTTP 403 before any upgrade."""
    assert await raw_upgrade(server, origins) == status


async def test_a_foreign_origin_gets_403_with_a_json_error(server: ServerProcess) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(server.ws_url, headers={"Origin": "https://evil.example"})
        assert refused.value.status == 403
        async with session.get(
            server.ws_url.replace("ws://", "http://"), headers={"Origin": "https://evil.example"}
        ) as response:
            assert response.status == 403
            assert (await response.json())["error"]["code"] == "origin_not_allowed"


@pytest.fixture
def hurried_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """Request headers must be complete within 1.5 s."""
    proc = ServerProcess(tmp_path / "data", env={"LEADFLOW_HANDSHAKE_TIMEOUT_SECONDS": "1.5"})
    yield proc.start()
    proc.stop()


async def test_slowloris_connections_are_closed_and_others_still_served(
    hurried_server: ServerProcess,
) -> None:
    """Regression: 50 connections whose request headers never completed (a header line
    now and then) were all still open after 60 s. They are closed after the handshake
    timeout, while an honest visitor connects and plays meanwhile."""
    loris = []
    for _ in range(30):
        reader, writer = await asyncio.open_connection("127.0.0.1", hurried_server.port)
        writer.write(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{hurried_server.port}\r\n".encode())
        loris.append((reader, writer))
    try:
        started = time.monotonic()
        visitor = await Visitor.connect(hurried_server.ws_url)
        frames = await visitor.start("solar-quote")
        assert frames[0]["type"] == "session"
        open_ = list(loris)
        while open_ and time.monotonic() - started < 10:
            for reader, writer in list(open_):
                try:
                    writer.write(b"X-Slow: 1\r\n")  # a header now and then, never the end
                    await writer.drain()
                    data = await asyncio.wait_for(reader.read(1024), 0.05)
                except TimeoutError:
                    continue
                except ConnectionError:
                    data = b""
                if data == b"":  # closed by the server
                    open_.remove((reader, writer))
            await asyncio.sleep(0.2)
        assert not open_, f"{len(open_)} of {len(loris)} slow connections still open after 10 s"
        assert time.monotonic() - started > 1.0, "not closed before the timeout"
        node = visitor.current()  # an upgraded socket outlives the handshake timeout
        assert node is not None and time.monotonic() - started > 1.5
        assert (await visitor.step(random.Random(0)))[-1]["type"] == "message"
        await visitor.close()
    finally:
        for _, writer in loris:
            writer.close()


# --- what one socket and one conversation may take --------------------------


async def test_one_socket_starts_a_few_conversations_then_too_many_starts(
    server: ServerProcess,
) -> None:
    """Regression: one socket started 40 conversations in 4 s."""
    visitor = await Visitor.connect(server.ws_url)
    try:
        codes = []
        for _ in range(8):
            frames = await visitor.start("solar-quote")
            codes.append(frames[0].get("code", frames[0]["type"]))
        assert codes == ["session"] * 5 + ["too_many_starts"] * 3
        await visitor.send({"type": "ping"})
        assert (await visitor.recv())["type"] == "pong"
    finally:
        await visitor.close()


LOOP_FLOW = """\
id: loop
version: 1
start: q
nodes:
  - id: q
    kind: question
    text: Shall we go round once more?
    buttons:
      - {id: again, label: Again, next: m}
      - {id: stop, label: Stop, next: bye}
  - {id: m, kind: message, text: Round and round we go, next: q}
  - {id: bye, kind: end, text: Bye}
"""


@pytest.fixture
def loop_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A cyclic flow, and a rate limit loose enough to press 300 times quickly."""
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "loop.yaml").write_text(LOOP_FLOW, "utf-8")
    proc = ServerProcess(
        tmp_path / "data",
        env={"LEADFLOW_RATE_PER_SECOND": "1000", "LEADFLOW_RATE_BURST": "1000"},
        args=("--flows", str(flows)),
    )
    yield proc.start()
    proc.stop()


async def test_a_cyclic_conversation_is_capped_and_resumes_in_pages(
    loop_server: ServerProcess,
) -> None:
    """Regression: on a cyclic flow one conversation reached 3,002 messages, and
    `resume` with last_seq 0 answered a 194-byte frame with 752 KB. A conversation
    takes at most 300 commands; a resume answers at most 50 messages a page."""
    visitor = await Visitor.connect(loop_server.ws_url)
    try:
        await visitor.start("loop")
        for _ in range(299):
            frames = await visitor.press("again")
            assert frames[-1]["type"] == "message", frames[-1]
        assert visitor.ack == 300
        refused = (await visitor.press("again"))[-1]
        assert (refused["code"], refused["ack"]) == ("conversation_too_long", 300)
        assert (await visitor.press("stop"))[-1]["code"] == "conversation_too_long"
    finally:
        await visitor.close()
    reader = await Visitor.connect(loop_server.ws_url)
    try:
        seqs: list[int] = []
        page_bytes: list[int] = []
        last_seq, more = 0, True
        while more:
            await reader.send({"type": "resume", "token": visitor.token, "last_seq": last_seq})
            size = 0
            msg = await reader.ws.receive(timeout=10)
            session = orjson.loads(msg.data)
            size += len(msg.data)
            for _ in range(session["messages"]):
                msg = await reader.ws.receive(timeout=10)
                size += len(msg.data)
                seqs.append(orjson.loads(msg.data)["message"]["seq"])
            page_bytes.append(size)
            more = session["more"]
            last_seq = seqs[-1]
            assert session["messages"] == (50 if more else len(seqs) - 50 * (len(page_bytes) - 1))
        assert len(seqs) == 1 + 2 * 299 and seqs == sorted(set(seqs))
        assert max(page_bytes) < 32_000, page_bytes
    finally:
        await reader.close()


# --- the demo page's security headers ----------------------------------------


async def test_the_demo_page_and_the_widget_carry_security_headers(server: ServerProcess) -> None:
    """Regression: the demo page was sent without any security header."""
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server.http_url}/") as page:
            assert page.status == 200
            csp = page.headers["Content-Security-Policy"]
            directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
            assert directives["default-src"] == "'none'"
            assert directives["frame-ancestors"] == "'none'"
            assert directives["script-src"].startswith("'self' 'sha256-")
            assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
            assert directives["connect-src"] == "'self'"
            assert page.headers["X-Content-Type-Options"] == "nosniff"
            assert page.headers["X-Frame-Options"] == "DENY"
        for path in ("/widget.js", "/healthz", "/api/v1/sites/demo/leads"):
            async with session.get(f"{server.http_url}{path}") as response:
                assert response.headers["X-Content-Type-Options"] == "nosniff", path


# --- hostile flow files in serve's flows directory ------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n",
            "YAML anchors and aliases are not supported in flows",
        ),
        ("id: " + "[" * 50_000 + "]" * 50_000, "nested more than 16 levels deep"),
        ("id: x\nid: y\n", "duplicate key 'id'"),
        ("id: big\n" + "# padding\n" * 30_000, "a flow may have at most 262144 bytes"),
    ],
)
def test_serve_refuses_a_hostile_flow_file_with_one_clear_line(
    tmp_path: Path, text: str, message: str
) -> None:
    """Regression: the alias bomb grew `leadflow serve` to 3 GB and a MemoryError
    after 35 s; deep nesting died with a RecursionError traceback. serve loads its
    flows directory through the same limits: a clear error and exit, at once."""
    flows = tmp_path / "flows"
    shutil.copytree(EXAMPLES, flows)
    (flows / "hostile.yaml").write_text(text, "utf-8")
    proc = ServerProcess(tmp_path / "data", args=("--flows", str(flows)))
    started = time.monotonic()
    with pytest.raises(RuntimeError) as failed:
        proc.start(timeout=30)
    assert time.monotonic() - started < 20
    error = str(failed.value)
    assert "hostile.yaml: (flow): " in error and message in error, error
    assert "Traceback" not in error

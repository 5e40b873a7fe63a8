"""The gateway's protocol logic, driven through ``Connection.on_text``.

No sockets: each test builds a GatewayContext around a real ConversationService
on the in-memory fakes, a fake clock and deterministic conversation ids, then
feeds text frames in and parses the frames that come back.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import itertools
from typing import Any

import orjson
import pytest

from gateway.config import GatewaySettings
from gateway.connection import (
    CLOSE_POLICY_VIOLATION,
    PING_TEXT,
    Connection,
    GatewayContext,
    Outcome,
)
from gateway.metrics import GatewayMetrics
from gateway.tokens import ResumeTokens
from policy.uniform import UniformPolicy
from schemas.commands import Command, StartConversation
from schemas.flow_validation import validate_text
from schemas.replies import Reply
from services.catalog import FlowCatalog
from services.conversation.replies import MAX_RESUME_MESSAGES
from services.conversation.service import ConversationService, InProcessCommandBus
from services.fakes import InMemoryEventLog, InMemoryKeyStore
from services.ports import CommandBus
from services.sites import DEV_ORIGINS, Site
from tests.support.examples import example_catalog

CATALOG = example_catalog()
SECRET = b"x" * 32
DEMO_ORIGIN = "http://localhost:8080"
SHOP_ORIGIN = "https://shop.example"
SITES = {
    "demo": Site("demo", DEV_ORIGINS),
    "shop": Site("shop", (SHOP_ORIGIN,), ("solar-quote",)),
}
LEAD = {"name": "Ann Example", "email": "ann@example.com", "consent": "true"}

Frame = dict[str, Any]


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RaisingBus:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    async def send(self, command: Command) -> Reply:
        raise self.exc


class Gateway:
    """One gateway's shared context over a real service on fakes."""

    def __init__(
        self, settings: GatewaySettings | None = None, bus: CommandBus | None = None
    ) -> None:
        self.clock = FakeClock()
        self.log = InMemoryEventLog()
        self.service = ConversationService(self.log, InMemoryKeyStore(), CATALOG, UniformPolicy())
        self.settings = settings or GatewaySettings(resume_secret=SECRET)
        self.metrics = GatewayMetrics()
        self.tokens = ResumeTokens(SECRET, self.settings.resume_ttl_seconds)
        ids = itertools.count(1)
        self.ctx = GatewayContext(
            settings=self.settings,
            sites=SITES,
            catalog=CATALOG,
            bus=bus or InProcessCommandBus(self.service),
            tokens=self.tokens,
            metrics=self.metrics,
            clock=self.clock,
            new_id=lambda: f"conv-{next(ids)}",
        )

    def connect(self, origin: str | None = DEMO_ORIGIN) -> Connection:
        return Connection(self.ctx, origin)

    def rejected(self, reason: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "leadflow_gateway_rejected_total", {"reason": reason}
        )
        return value or 0.0

    async def event_count(self, conversation_id: str) -> int:
        return len(await self.log.read_conversation(conversation_id))


def parse(outcome: Outcome) -> list[Frame]:
    return [orjson.loads(text) for text in outcome.frames]


async def send(conn: Connection, frame: Frame) -> list[Frame]:
    return parse(await conn.on_text(orjson.dumps(frame).decode()))


def start_frame(site: str = "demo", flow: str = "solar-quote") -> Frame:
    return {"type": "start", "v": 1, "site": site, "flow": flow}


def press_frame(seq: int, node: str, button: str) -> Frame:
    return {"type": "press", "v": 1, "seq": seq, "node": node, "button": button}


def lead_frame(seq: int, node: str, fields: dict[str, str]) -> Frame:
    return {"type": "lead", "v": 1, "seq": seq, "node": node, "fields": fields}


def answer_frame(seq: int, node: str, value: str) -> Frame:
    return {"type": "answer", "v": 1, "seq": seq, "node": node, "value": value}


def only_error(frames: list[Frame]) -> Frame:
    assert len(frames) == 1, frames
    assert frames[0]["type"] == "error"
    return frames[0]


def current(frames: list[Frame]) -> Frame:
    """The message of the last message frame (the actionable one after a step)."""
    messages = [f["message"] for f in frames if f["type"] == "message"]
    assert messages, frames
    message: Frame = messages[-1]
    return message


NAME = "Ann"
FIRST_PRESS = 3  # the seq of the first press: 1 is the start, 2 answers solar-quote's first_name


async def start(conn: Connection) -> tuple[Frame, list[Frame]]:
    """Start solar-quote and answer its free-text first question (the visitor's
    first name, at seq 2): the session frame and every message frame since, the
    last one the first question with buttons (``property``)."""
    frames = await send(conn, start_frame())
    assert frames[0]["type"] == "session", frames
    assert current(frames)["node_id"] == "first_name", frames
    answered = await send(conn, answer_frame(2, "first_name", NAME))
    assert current(answered)["node_id"] == "property", answered
    return frames[0], frames[1:] + answered


async def start_on(conn: Connection, site: str, flow: str) -> tuple[Frame, list[Frame]]:
    frames = await send(conn, start_frame(site=site, flow=flow))
    return frames[0], frames[1:]


async def press_first(conn: Connection, seq: int, message: Frame) -> list[Frame]:
    return await send(conn, press_frame(seq, message["node_id"], message["buttons"][0]["id"]))


@pytest.fixture
def gw() -> Gateway:
    return Gateway()


# --- start and a whole conversation -----------------------------------------


async def test_start_sends_session_first_then_messages_in_seq_order(gw: Gateway) -> None:
    """Regression: the session frame must precede the first messages, all acking seq 1."""
    frames = await send(gw.connect(), start_frame())
    session, messages = frames[0], frames[1:]
    assert session["conversation_id"] == "conv-1"
    assert session["ack"] == 1
    assert gw.tokens.verify(session["token"], gw.clock()).conversation_id == "conv-1"
    assert [m["type"] for m in messages] == ["message", "message"]
    assert [m["ack"] for m in messages] == [1, 1]
    seqs = [m["message"]["seq"] for m in messages]
    assert seqs == sorted(seqs)
    assert [m["message"]["node_id"] for m in messages] == ["welcome", "first_name"]
    assert messages[-1]["message"]["kind"] == "input"
    assert gw.metrics.registry.get_sample_value("leadflow_gateway_conversations_started_total")


async def test_solar_quote_plays_to_the_end_through_presses_and_a_lead(gw: Gateway) -> None:
    """Regression: a visitor pressing the first button each time (and typing a first
    name) reaches a done end node."""
    conn = gw.connect()
    frames = (await send(conn, start_frame()))[1:]
    ack = frames[-1]["ack"]
    last_seq = 0
    for _ in range(20):
        message = current(frames)
        assert all(f["message"]["seq"] > last_seq for f in frames), "messages go forward"
        last_seq = frames[-1]["message"]["seq"]
        if message["kind"] == "end":
            break
        if message["kind"] == "lead_form":
            frames = await send(conn, lead_frame(ack + 1, message["node_id"], LEAD))
        elif message["kind"] == "input":
            frames = await send(conn, answer_frame(ack + 1, message["node_id"], NAME))
            assert current(frames)["text"].startswith(f"Hi {NAME}!"), "greeted by name"
        else:
            frames = await press_first(conn, ack + 1, message)
        assert all(f["type"] == "message" for f in frames), frames
        assert all(f["ack"] == ack + 1 for f in frames)
        ack += 1
    final = current(frames)
    assert final["kind"] == "end"
    assert final["node_id"] == "end_survey"
    assert final["done"] is True
    assert all(not f["message"]["done"] for f in frames[:-1])
    state = await gw.service.state("conv-1")
    assert state.status == "completed"
    assert state.lead_captured


# --- refused starts ---------------------------------------------------------


async def test_press_before_start_is_no_conversation(gw: Gateway) -> None:
    """Regression: a press with no conversation bound must not reach the service."""
    error = only_error(await send(gw.connect(), press_frame(2, "property", "house")))
    assert error["code"] == "no_conversation"
    assert error["seq"] == 2
    assert error["retryable"] is False
    assert await gw.log.read_after(0, 100) == []


async def test_unknown_site_is_refused(gw: Gateway) -> None:
    """Regression: a start on a site that is not configured is unknown_site, connection kept."""
    outcome = await gw.connect().on_text(orjson.dumps(start_frame(site="nope")).decode())
    assert only_error(parse(outcome))["code"] == "unknown_site"
    assert outcome.close_code is None


async def test_foreign_origin_is_refused_and_closed_with_1008(gw: Gateway) -> None:
    """Regression: a page not on the site's allowlist must be refused and disconnected."""
    conn = gw.connect("https://evil.example")
    outcome = await conn.on_text(orjson.dumps(start_frame()).decode())
    assert only_error(parse(outcome))["code"] == "origin_not_allowed"
    assert outcome.close_code == CLOSE_POLICY_VIOLATION == 1008
    assert conn.conversation_id is None
    assert await gw.log.read_after(0, 100) == []


@pytest.mark.parametrize("origin", [None, ""])
async def test_missing_origin_is_refused(gw: Gateway, origin: str | None) -> None:
    """Regression: a client sending no Origin (non-browser) must not start a conversation."""
    outcome = await gw.connect(origin).on_text(orjson.dumps(start_frame()).decode())
    assert only_error(parse(outcome))["code"] == "origin_not_allowed"
    assert outcome.close_code == 1008


async def test_flow_not_allowed_for_the_site_is_unknown_flow(gw: Gateway) -> None:
    """Regression: a site restricted to some flows must not run others."""
    conn = gw.connect(SHOP_ORIGIN)
    error = only_error(await send(conn, start_frame(site="shop", flow="saas-demo")))
    assert error["code"] == "unknown_flow"
    assert await gw.log.read_after(0, 100) == []
    session, _ = await start_on(conn, "shop", "solar-quote")
    assert session["type"] == "session"


async def test_unknown_flow_is_refused(gw: Gateway) -> None:
    """Regression: a start of a flow the catalog lacks is unknown_flow, nothing logged."""
    error = only_error(await send(gw.connect(), start_frame(flow="no-such-flow")))
    assert error["code"] == "unknown_flow"
    assert await gw.log.read_after(0, 100) == []


# --- malformed frames -------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("not json", "malformed_frame"),
        ("[1, 2]", "malformed_frame"),
        ('"ping"', "malformed_frame"),
        ('{"type":"dance","v":1}', "unknown_frame_type"),
        ('{"v":1}', "unknown_frame_type"),
        ('{"type":"ping","v":2}', "unsupported_version"),
        ('{"type":"press","v":1,"seq":"2","node":"property","button":"house"}', "malformed_frame"),
        ('{"type":"press","v":1,"seq":0,"node":"property","button":"house"}', "malformed_frame"),
        ('{"type":"press","v":1,"seq":true,"node":"property","button":"house"}', "malformed_frame"),
        ('{"type":"press","v":1,"seq":2,"node":"property"}', "malformed_frame"),
        ('{"type":"start","v":1,"site":"demo","flow":""}', "malformed_frame"),
        (
            '{"type":"start","v":1,"site":"demo","flow":"solar-quote","context":{"device":"tv"}}',
            "malformed_frame",
        ),
        ('{"type":"lead","v":1,"seq":2,"node":"contact","fields":{"name":1}}', "malformed_frame"),
        ('{"type":"resume","v":1,"token":"a.b","last_seq":-1}', "malformed_frame"),
    ],
)
async def test_bad_frames_get_their_code_and_keep_the_connection(
    gw: Gateway, text: str, code: str
) -> None:
    """Regression: each kind of bad frame maps to its documented code, without closing."""
    outcome = await gw.connect().on_text(text)
    error = only_error(parse(outcome))
    assert error["code"] == code
    assert error["retryable"] is False
    assert outcome.close_code is None
    assert gw.rejected(code) == 1


async def test_connection_keeps_working_after_a_malformed_frame(gw: Gateway) -> None:
    """Regression: a malformed frame must not poison the connection for later frames."""
    conn = gw.connect()
    await conn.on_text("{oops")
    session, _ = await start(conn)
    assert session["ack"] == 1


# --- frame size ----------------------------------------------------------------


def padded_ping(total_bytes: int, pad_char: str = "a") -> str:
    head, tail = '{"type":"ping","v":1,"pad":"', '"}'
    room = total_bytes - len((head + tail).encode())
    return head + pad_char * (room // len(pad_char.encode())) + tail


async def test_frame_over_max_frame_bytes_is_refused() -> None:
    """Regression: frames over LEADFLOW_MAX_FRAME_BYTES are dropped with frame_too_large."""
    gw = Gateway(GatewaySettings(resume_secret=SECRET, max_frame_bytes=256))
    conn = gw.connect()
    outcome = await conn.on_text(padded_ping(257))
    assert only_error(parse(outcome))["code"] == "frame_too_large"
    assert outcome.close_code is None
    assert parse(await conn.on_text(padded_ping(256))) == [{"type": "pong", "v": 1}]


async def test_multibyte_frame_over_the_byte_limit_is_refused() -> None:
    """Regression: the limit is in UTF-8 bytes, not characters (multi-byte text slipping by)."""
    gw = Gateway(GatewaySettings(resume_secret=SECRET, max_frame_bytes=256))
    text = padded_ping(300, "€")  # 3 bytes per char
    assert len(text) < 256 < len(text.encode())
    outcome = await gw.connect().on_text(text)
    assert only_error(parse(outcome))["code"] == "frame_too_large"
    assert gw.rejected("frame_too_large") == 1


async def test_multibyte_frame_within_the_byte_limit_is_accepted() -> None:
    """Regression: a multi-byte frame whose byte size fits must not be refused."""
    gw = Gateway(GatewaySettings(resume_secret=SECRET, max_frame_bytes=256))
    text = padded_ping(256, "€")
    assert len(text.encode()) <= 256
    assert parse(await gw.connect().on_text(text)) == [{"type": "pong", "v": 1}]


async def test_flood_of_oversize_frames_is_closed() -> None:
    """Regression: oversize frames are frames too; a sustained flood of them must close 1008."""
    settings = GatewaySettings(
        resume_secret=SECRET, max_frame_bytes=64, rate_burst=2, flood_limit=3
    )
    conn = Gateway(settings).connect()
    outcomes = [await conn.on_text(padded_ping(100)) for _ in range(10)]
    assert any(o.close_code == CLOSE_POLICY_VIOLATION for o in outcomes)


# --- rate limiting ----------------------------------------------------------


def limited_gateway(burst: int = 3, flood_limit: int = 50) -> Gateway:
    return Gateway(
        GatewaySettings(
            resume_secret=SECRET, rate_per_second=1.0, rate_burst=burst, flood_limit=flood_limit
        )
    )


PING = '{"type":"ping","v":1}'


async def test_frames_beyond_the_burst_are_rate_limited_and_retryable() -> None:
    """Regression: burst+1 frames at one instant: the extra one is rate_limited, retryable."""
    gw = limited_gateway(burst=3)
    conn = gw.connect()
    for _ in range(3):
        assert parse(await conn.on_text(PING)) == [{"type": "pong", "v": 1}]
    outcome = await conn.on_text(PING)
    error = only_error(parse(outcome))
    assert error["code"] == "rate_limited"
    assert error["retryable"] is True
    assert outcome.close_code is None
    assert gw.rejected("rate_limited") == 1


async def test_advancing_the_clock_refills_the_bucket() -> None:
    """Regression: after waiting, a rate-limited client may send again at the configured rate."""
    gw = limited_gateway(burst=2)
    conn = gw.connect()
    await conn.on_text(PING)
    await conn.on_text(PING)
    assert only_error(parse(await conn.on_text(PING)))["code"] == "rate_limited"
    gw.clock.advance(1.0)
    assert parse(await conn.on_text(PING))[0]["type"] == "pong"
    assert only_error(parse(await conn.on_text(PING)))["code"] == "rate_limited"


async def test_sustained_flood_closes_with_1008() -> None:
    """Regression: flood_limit rate-limited frames in a row must close the socket (1008)."""
    gw = limited_gateway(burst=1, flood_limit=3)
    conn = gw.connect()
    await conn.on_text(PING)
    first = await conn.on_text(PING)
    second = await conn.on_text(PING)
    third = await conn.on_text(PING)
    assert first.close_code is None
    assert second.close_code is None
    assert third.close_code == CLOSE_POLICY_VIOLATION
    assert only_error(parse(third))["code"] == "rate_limited"


async def test_an_allowed_frame_resets_the_flood_counter() -> None:
    """Regression: only consecutive rate-limited frames count towards the flood close."""
    gw = limited_gateway(burst=1, flood_limit=3)
    conn = gw.connect()
    await conn.on_text(PING)
    for _ in range(2):
        assert (await conn.on_text(PING)).close_code is None
    gw.clock.advance(1.0)
    assert parse(await conn.on_text(PING))[0]["type"] == "pong"
    for _ in range(2):
        assert (await conn.on_text(PING)).close_code is None


async def test_a_rate_limited_frame_is_not_applied() -> None:
    """Regression: a press refused by the rate limiter must not reach the conversation."""
    gw = limited_gateway(burst=1)
    conn = gw.connect()
    frames = await send(conn, start_frame())
    gw.clock.advance(1.0)
    frames = await send(conn, answer_frame(2, "first_name", NAME))
    events = await gw.event_count("conv-1")
    error = only_error(await press_first(conn, FIRST_PRESS, current(frames)))
    assert error["code"] == "rate_limited"
    assert (await gw.service.state("conv-1")).last_command_seq == 2
    assert await gw.event_count("conv-1") == events
    gw.clock.advance(1.0)
    applied = await press_first(conn, FIRST_PRESS, current(frames))
    assert applied[0]["type"] == "message"
    assert applied[0]["ack"] == FIRST_PRESS


# --- command sequencing -----------------------------------------------------


async def test_duplicate_press_resends_the_same_messages_and_logs_nothing(gw: Gateway) -> None:
    """Regression: a retried press (same seq) must repeat its reply, not apply twice."""
    conn = gw.connect()
    _, frames = await start(conn)
    question = current(frames)
    first = await press_first(conn, FIRST_PRESS, question)
    events = await gw.event_count("conv-1")
    again = await press_first(conn, FIRST_PRESS, question)
    assert again == first
    assert await gw.event_count("conv-1") == events


async def test_stale_seq_is_stale_command(gw: Gateway) -> None:
    """Regression: a seq below the last applied one is refused and changes nothing."""
    conn = gw.connect()
    _, frames = await start(conn)
    frames = await press_first(conn, FIRST_PRESS, current(frames))
    frames = await press_first(conn, FIRST_PRESS + 1, current(frames))
    events = await gw.event_count("conv-1")
    error = only_error(await send(conn, press_frame(FIRST_PRESS, "property", "house")))
    assert error["code"] == "stale_command"
    assert error["ack"] == FIRST_PRESS + 1
    assert error["seq"] == FIRST_PRESS
    assert await gw.event_count("conv-1") == events


async def test_seq_gap_is_out_of_order_and_does_not_advance_ack(gw: Gateway) -> None:
    """Regression: a seq skipping ahead is out_of_order and does not use a seq up."""
    conn = gw.connect()
    _, frames = await start(conn)
    error = only_error(await press_first(conn, FIRST_PRESS + 3, current(frames)))
    assert error["code"] == "out_of_order"
    assert error["ack"] == FIRST_PRESS - 1
    assert (await gw.service.state("conv-1")).last_command_seq == FIRST_PRESS - 1
    applied = await press_first(conn, FIRST_PRESS, current(frames))
    assert applied[0]["ack"] == FIRST_PRESS


async def test_unknown_button_is_refused_but_uses_the_seq_up(gw: Gateway) -> None:
    """Regression: an unknown button still consumes its seq (the error's ack says so)."""
    conn = gw.connect()
    await start(conn)
    error = only_error(await send(conn, press_frame(FIRST_PRESS, "property", "castle")))
    assert error["code"] == "unknown_button"
    assert error["seq"] == FIRST_PRESS
    assert error["ack"] == FIRST_PRESS
    assert gw.rejected("unknown_button") == 1


async def test_press_on_a_node_that_is_not_current_is_wrong_node(gw: Gateway) -> None:
    """Regression: a press naming an old/other node is refused with wrong_node."""
    conn = gw.connect()
    await start(conn)
    error = only_error(await send(conn, press_frame(FIRST_PRESS, "bill", "low")))
    assert error["code"] == "wrong_node"
    assert error["ack"] == FIRST_PRESS


async def test_invalid_lead_lists_fields_and_never_echoes_values(gw: Gateway) -> None:
    """Regression: invalid_lead must say which fields failed without leaking submitted data."""
    conn = gw.connect()
    _, frames = await start(conn)
    ack = FIRST_PRESS - 1
    while current(frames)["kind"] != "lead_form":
        frames = await press_first(conn, ack + 1, current(frames))
        ack += 1
    secret_values = {
        "name": "Zebulon Quaxley",
        "email": "zebulon-at-nowhere",
        "phone": "not-a-phone-9876",
        "consent": "false",
    }
    outcome = await conn.on_text(
        orjson.dumps(lead_frame(ack + 1, "contact", secret_values)).decode()
    )
    error = only_error(parse(outcome))
    assert error["code"] == "invalid_lead"
    assert error["ack"] == ack + 1
    assert set(error["fields"]) == {"email", "phone", "consent"}
    for value in secret_values.values():
        if value != "false":
            assert value not in outcome.frames[0]
    stored = "".join(repr(e) for e in await gw.log.read_conversation("conv-1"))
    assert "Zebulon" not in stored
    assert "zebulon-at-nowhere" not in stored


async def test_press_after_the_end_is_completed(gw: Gateway) -> None:
    """Regression: a finished conversation refuses further presses with completed."""
    conn = gw.connect()
    _, frames = await start(conn)
    frames = await send(conn, press_frame(FIRST_PRESS, "property", "renting"))
    assert current(frames)["done"] is True
    error = only_error(await send(conn, press_frame(FIRST_PRESS + 1, "property", "house")))
    assert error["code"] == "completed"
    assert error["ack"] == FIRST_PRESS + 1


# --- resume -----------------------------------------------------------------


async def played_two_steps(gw: Gateway) -> tuple[str, list[Frame]]:
    """Start on one connection, answer the name and press twice; returns (token,
    every message frame)."""
    conn = gw.connect()
    session, frames = await start(conn)
    seen = list(frames)
    for seq in (FIRST_PRESS, FIRST_PRESS + 1):
        frames = await press_first(conn, seq, current(frames))
        seen.extend(frames)
    return session["token"], seen


async def test_resume_on_a_new_connection_returns_the_whole_transcript(gw: Gateway) -> None:
    """Regression: resume with last_seq=0 re-sends every message, answered ones labelled."""
    token, seen = await played_two_steps(gw)
    frames = await send(gw.connect(), {"type": "resume", "v": 1, "token": token, "last_seq": 0})
    session, messages = frames[0], frames[1:]
    assert session["type"] == "session"
    assert session["conversation_id"] == "conv-1"
    assert session["ack"] == FIRST_PRESS + 1
    assert [m["message"]["seq"] for m in messages] == [f["message"]["seq"] for f in seen]
    assert all(m["ack"] == FIRST_PRESS + 1 for m in messages)
    by_node = {m["message"]["node_id"]: m["message"] for m in messages}
    assert by_node["property"]["answer"] == "A house"
    assert by_node["first_name"]["answer"] == NAME
    assert by_node["welcome"]["answer"] is None
    assert messages[-1]["message"]["answer"] is None
    assert messages[-1]["message"]["kind"] == "question"


async def test_resume_with_last_seq_returns_only_newer_messages(gw: Gateway) -> None:
    """Regression: resume must not re-send messages the client already has."""
    token, seen = await played_two_steps(gw)
    cutoff = seen[1]["message"]["seq"]
    frames = await send(
        gw.connect(), {"type": "resume", "v": 1, "token": token, "last_seq": cutoff}
    )
    assert frames[0]["type"] == "session"
    seqs = [f["message"]["seq"] for f in frames[1:]]
    assert seqs == [f["message"]["seq"] for f in seen if f["message"]["seq"] > cutoff]
    assert all(seq > cutoff for seq in seqs)


async def test_resumed_connection_can_continue_the_conversation(gw: Gateway) -> None:
    """Regression: after resume, the new socket is bound and takes the next seq."""
    token, _ = await played_two_steps(gw)
    conn = gw.connect()
    frames = await send(conn, {"type": "resume", "v": 1, "token": token, "last_seq": 0})
    assert conn.conversation_id == "conv-1"
    frames = await press_first(conn, frames[0]["ack"] + 1, current(frames))
    assert frames[0]["type"] == "message"
    assert frames[0]["ack"] == FIRST_PRESS + 2


def tampered(token: str) -> str:
    body, _, mac = token.partition(".")
    return f"{body[:-2]}{'A' if body[-2] != 'A' else 'B'}{body[-1]}.{mac}"


async def test_tampered_token_is_invalid_token(gw: Gateway) -> None:
    """Regression: a forged resume token must not attach to any conversation."""
    token, _ = await played_two_steps(gw)
    conn = gw.connect()
    frame = {"type": "resume", "v": 1, "token": tampered(token), "last_seq": 0}
    error = only_error(await send(conn, frame))
    assert error["code"] == "invalid_token"
    assert conn.conversation_id is None


async def test_expired_token_is_invalid_token(gw: Gateway) -> None:
    """Regression: a token older than the resume TTL must be refused."""
    token, _ = await played_two_steps(gw)
    gw.clock.advance(gw.settings.resume_ttl_seconds + 2)
    frame = {"type": "resume", "v": 1, "token": token, "last_seq": 0}
    assert only_error(await send(gw.connect(), frame))["code"] == "invalid_token"
    assert gw.rejected("invalid_token") == 1


async def test_resume_of_an_unknown_conversation_is_no_conversation(gw: Gateway) -> None:
    """Regression: a genuine token for a conversation the log lacks must not bind."""
    token = gw.tokens.issue("never-started", "demo", gw.clock())
    conn = gw.connect()
    frames = await send(conn, {"type": "resume", "v": 1, "token": token, "last_seq": 0})
    assert only_error(frames)["code"] == "no_conversation"
    assert conn.conversation_id is None


async def test_resume_from_a_foreign_origin_is_refused(gw: Gateway) -> None:
    """Regression: a stolen token replayed from another site's page must be refused (1008)."""
    token, _ = await played_two_steps(gw)
    conn = gw.connect(SHOP_ORIGIN)
    outcome = await conn.on_text(
        orjson.dumps({"type": "resume", "v": 1, "token": token, "last_seq": 0}).decode()
    )
    assert only_error(parse(outcome))["code"] == "origin_not_allowed"
    assert outcome.close_code == 1008
    assert conn.conversation_id is None


# --- service failures -------------------------------------------------------


async def test_bus_timeout_is_unavailable_and_retryable() -> None:
    """Regression: a timed-out conversation service must surface as retryable unavailable."""
    gw = Gateway(bus=RaisingBus(TimeoutError()))
    conn = gw.connect()
    error = only_error(await send(conn, start_frame()))
    assert error["code"] == "unavailable"
    assert error["retryable"] is True
    assert conn.conversation_id is None
    assert gw.rejected("unavailable") == 1


async def test_bus_crash_is_internal() -> None:
    """Regression: an unexpected service exception must become an `internal` error frame."""
    gw = Gateway(bus=RaisingBus(RuntimeError("boom")))
    conn = gw.connect()
    error = only_error(await send(conn, start_frame()))
    assert error["code"] == "internal"
    assert error["retryable"] is True
    assert "boom" not in error["message"]
    assert conn.conversation_id is None
    assert gw.rejected("internal") == 1


async def test_unavailable_resume_never_reports_a_negative_ack() -> None:
    """Regression: an error frame's ack is a command seq, so it can never be negative."""
    gw = Gateway(bus=RaisingBus(TimeoutError()))
    token = gw.tokens.issue("conv-1", "demo", gw.clock())
    frames = await send(gw.connect(), {"type": "resume", "v": 1, "token": token, "last_seq": 0})
    error = only_error(frames)
    assert error["code"] == "unavailable"
    assert error.get("ack", 0) >= 0


# --- metrics and keepalive --------------------------------------------------


async def test_rejected_counter_increments_by_reason(gw: Gateway) -> None:
    """Regression: every refusal is counted once under its own error code."""
    conn = gw.connect()
    await conn.on_text("nope")
    await conn.on_text("nope")
    await send(conn, start_frame(site="nope"))
    await start(conn)
    await send(conn, press_frame(FIRST_PRESS, "property", "castle"))
    assert gw.rejected("malformed_frame") == 2
    assert gw.rejected("unknown_site") == 1
    assert gw.rejected("unknown_button") == 1
    assert gw.rejected("out_of_order") == 0
    frames = gw.metrics.registry.get_sample_value(
        "leadflow_gateway_frames_total", {"type": "start"}
    )
    assert frames == 2


async def test_ping_is_answered_with_pong(gw: Gateway) -> None:
    """Regression: the application keepalive must be answered even before a start."""
    outcome = await gw.connect().on_text(PING)
    assert parse(outcome) == [{"type": "pong", "v": 1}]
    assert outcome.close_code is None


START_ID = "c2b1a3f0-5d1e-4b8a-9a57-2f7d0e3c9b11"


async def test_a_start_retried_with_its_start_id_names_the_same_conversation() -> None:
    """Regression: a start that timed out was often applied later, and the
    widget's retry made a second conversation (start-only orphans in funnels).
    The retry, on another socket and another gateway, gets the first session."""
    first, second = Gateway(), Gateway()
    second.log, second.service = first.log, first.service  # one log behind both
    second.ctx = GatewayContext(
        settings=second.settings,
        sites=SITES,
        catalog=CATALOG,
        bus=InProcessCommandBus(first.service),
        tokens=second.tokens,
        metrics=second.metrics,
        clock=second.clock,
    )
    frame = start_frame() | {"start_id": START_ID}
    opened = await send(first.connect(), frame)
    again = await send(second.connect(), frame)
    assert opened[0]["type"] == "session"
    assert again[0]["conversation_id"] == opened[0]["conversation_id"]
    assert [f["message"] for f in again[1:]] == [f["message"] for f in opened[1:]]
    events = await first.log.read_conversation(opened[0]["conversation_id"])
    assert [e.type for e in events].count("ConversationStarted") == 1
    assert len(await first.log.read_after(0, 1000)) == len(events)  # nothing else logged


async def test_different_start_ids_and_flows_are_different_conversations() -> None:
    gateway = Gateway()
    ids = set()
    for start_id, flow in (
        (START_ID, "solar-quote"),
        (START_ID.replace("c", "d"), "solar-quote"),
        (START_ID, "insurance-quote"),
    ):
        frames = await send(gateway.connect(), start_frame(flow=flow) | {"start_id": start_id})
        ids.add(frames[0]["conversation_id"])
    assert len(ids) == 3


async def test_a_start_without_a_start_id_gets_a_fresh_conversation_each_time() -> None:
    gateway = Gateway()
    a = await send(gateway.connect(), start_frame())
    b = await send(gateway.connect(), start_frame())
    assert a[0]["conversation_id"] != b[0]["conversation_id"]


@pytest.mark.parametrize("start_id", ["short", "x" * 65, "has space in it!!", "é" * 20, 42])
async def test_a_bad_start_id_is_a_malformed_frame(start_id: object) -> None:
    frames = await send(Gateway().connect(), start_frame() | {"start_id": start_id})
    assert only_error(frames)["code"] == "malformed_frame"


# --- numbers out of range (issue 14) -----------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [("seq", 2**63), ("seq", 2**31), ("seq", "true"), ("seq", "2.0"), ("last_seq", 2**63)],
)
async def test_out_of_range_numbers_are_malformed_and_reach_nothing(
    gw: Gateway, field: str, value: object
) -> None:
    """Regression: a press with seq 2**63 reached the event log, whose integer column
    overflowed: the visitor got `unavailable` (retryable) and the server an
    error-level "event log append failed" traceback. It is a malformed frame."""
    conn = gw.connect()
    session, frames = await start(conn)
    events = await gw.event_count("conv-1")
    if field == "seq":
        base = press_frame(FIRST_PRESS, "property", "house")
    else:
        base = {"type": "resume", "v": 1, "token": session["token"], "last_seq": 0}
    text = orjson.dumps(base).decode().replace(f'"{field}":{base[field]}', f'"{field}":{value}')
    outcome = await conn.on_text(text)
    error = only_error(parse(outcome))
    assert (error["code"], error["retryable"]) == ("malformed_frame", False)
    assert outcome.close_code is None
    assert await gw.event_count("conv-1") == events
    applied = await press_first(conn, FIRST_PRESS, current(frames))
    assert applied[0]["type"] == "message"


# --- resume tokens (issue 14) ---------------------------------------------------


def signed_claims(claims: dict[str, object]) -> str:
    """A token with a genuine MAC under the test secret over arbitrary claims."""
    payload = orjson.dumps(claims)
    mac = hmac.new(SECRET, payload, hashlib.sha256).digest()
    return f"{b64(payload)}.{b64(mac)}"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def test_a_token_naming_another_site_does_not_resume_its_conversation() -> None:
    """Regression: a correctly signed token naming site `alpha` for a conversation of
    site `beta` was accepted from a page allowed for both. The token's site must be
    the conversation's: the answer is the same as for an unknown conversation."""
    gw = Gateway()
    two_sites = {"alpha": Site("alpha", DEV_ORIGINS), "beta": Site("beta", DEV_ORIGINS)}
    gw.ctx = dataclasses.replace(gw.ctx, sites=two_sites)
    session, _ = await start_on(gw.connect(), "beta", "solar-quote")
    cid = session["conversation_id"]
    cross = gw.tokens.issue(cid, "alpha", gw.clock())
    conn = gw.connect()
    frames = await send(conn, {"type": "resume", "v": 1, "token": cross, "last_seq": 0})
    error = only_error(frames)
    assert error["code"] == "no_conversation"
    assert "ack" not in error or error["ack"] == 0
    assert conn.conversation_id is None
    press = await send(conn, press_frame(2, "property", "house"))
    assert only_error(press)["code"] == "no_conversation"
    own = gw.tokens.issue(cid, "beta", gw.clock())
    frames = await send(conn, {"type": "resume", "v": 1, "token": own, "last_seq": 0})
    assert frames[0]["type"] == "session" and conn.conversation_id == cid


@pytest.mark.parametrize("iat", ["1700000000", 1_700_000_000.0, True, None, 1_700_000_000 + 3600])
async def test_tokens_with_mistyped_or_future_iat_are_invalid(gw: Gateway, iat: object) -> None:
    """Regression: a string iat was accepted, and an iat in the future never expired."""
    token, _ = await played_two_steps(gw)
    claims = {"c": "conv-1", "s": "demo", "iat": iat}
    conn = gw.connect()
    frame = {"type": "resume", "v": 1, "token": signed_claims(claims), "last_seq": 0}
    assert only_error(await send(conn, frame))["code"] == "invalid_token"
    assert conn.conversation_id is None
    genuine = {"type": "resume", "v": 1, "token": token, "last_seq": 0}
    assert (await send(conn, genuine))[0]["type"] == "session"


# --- idle: what counts as activity (issue 14) ----------------------------------


async def test_only_command_frames_count_as_activity_for_the_idle_timeout(gw: Gateway) -> None:
    """The idle timeout (gateway.ws) closes a socket with no command frame for its
    duration; pings and garbage must not keep a socket open, commands must."""
    conn = gw.connect()
    for text in (PING, PING, "{nope", '{"type":"dance","v":1}', padded_ping(5000)):
        await conn.on_text(text)
    assert conn.commands == 0
    session, frames = await start(conn)  # the start and the answer to the first question
    await press_first(conn, FIRST_PRESS, current(frames))
    await send(conn, {"type": "resume", "v": 1, "token": session["token"], "last_seq": 0})
    await send(conn, start_frame(site="nope"))  # refused, but a command the visitor sent
    assert conn.commands == 5


# --- what one socket may take (issue 14) -----------------------------------------


async def test_starts_per_socket_are_limited() -> None:
    """Regression: one socket started 40 conversations in 4 s. A burst of
    starts_per_minute starts, then that many a minute: too_many_starts, kept open."""
    gw = Gateway(GatewaySettings(resume_secret=SECRET, starts_per_minute=3))
    conn = gw.connect()
    for _ in range(3):
        assert (await send(conn, start_frame()))[0]["type"] == "session"
    outcome = await conn.on_text(orjson.dumps(start_frame()).decode())
    error = only_error(parse(outcome))
    assert (error["code"], error["retryable"], outcome.close_code) == (
        "too_many_starts",
        False,
        None,
    )
    assert gw.rejected("too_many_starts") == 1
    assert len({e.event.conversation_id for e in await gw.log.read_after(0, 1000)}) == 3
    assert (await send(gw.connect(), start_frame()))[0]["type"] == "session", "per socket"
    gw.clock.advance(20.0)  # 3 a minute: one more after 20 s
    assert (await send(conn, start_frame()))[0]["type"] == "session"
    assert only_error(await send(conn, start_frame()))["code"] == "too_many_starts"


LOOP_FLOW = """\
id: loop
version: 1
start: q
nodes:
  - id: q
    kind: question
    text: Again?
    buttons:
      - {id: again, label: Again, next: m}
      - {id: stop, label: Stop, next: bye}
  - {id: m, kind: message, text: Here we go, next: q}
  - {id: bye, kind: end, text: Bye}
"""


def loop_gateway() -> Gateway:
    """A gateway whose only flow, `loop`, cycles: each `again` adds two messages."""
    flow, errors = validate_text(LOOP_FLOW, "loop.yaml")
    assert flow is not None, errors
    catalog = FlowCatalog([flow])
    gw = Gateway()
    gw.service = ConversationService(gw.log, InMemoryKeyStore(), catalog, UniformPolicy())
    bus = InProcessCommandBus(gw.service)
    gw.ctx = dataclasses.replace(gw.ctx, catalog=catalog, bus=bus)
    return gw


async def test_a_long_resume_is_sent_in_pages() -> None:
    """Regression: a resume from 0 answered with the whole transcript (752 KB for one
    194-byte frame). A session frame announces at most MAX_RESUME_MESSAGES messages and
    says `more`; resuming from the last one got fetches the next page."""
    gw = loop_gateway()
    conn = gw.connect()
    session, _ = await start_on(conn, "demo", "loop")
    for seq in range(2, 32):  # 30 presses: 61 messages
        gw.clock.advance(1.0)
        frames = await send(conn, press_frame(seq, "q", "again"))
        assert frames[-1]["type"] == "message", frames
    seen: list[int] = []
    last_seq, pages = 0, 0
    while True:
        resume = {"type": "resume", "v": 1, "token": session["token"], "last_seq": last_seq}
        page = await send(gw.connect(), resume)
        assert page[0]["type"] == "session" and page[0]["messages"] == len(page) - 1
        seen += [f["message"]["seq"] for f in page[1:]]
        pages += 1
        if not page[0]["more"]:
            break
        assert page[0]["messages"] == MAX_RESUME_MESSAGES
        last_seq = seen[-1]
    assert pages == 2 and len(seen) == 61 and seen == sorted(set(seen))


async def test_the_widgets_ping_is_answered_counted_and_rate_limited_without_parsing() -> None:
    """The widget's exact ping text takes a short path (no JSON parsing): the same pong,
    counted as a ping frame, not a command (no idle reset), still under the rate limit."""
    gw = Gateway(GatewaySettings(resume_secret=SECRET, rate_per_second=0.001, rate_burst=2))
    conn = gw.connect()
    assert orjson.dumps({"type": "ping", "v": 1}).decode() == PING_TEXT
    assert parse(await conn.on_text(PING_TEXT)) == [{"type": "pong", "v": 1}]
    assert parse(await conn.on_text('{"type": "ping", "v": 1}')) == [{"type": "pong", "v": 1}]
    pings = gw.metrics.registry.get_sample_value("leadflow_gateway_frames_total", {"type": "ping"})
    assert pings == 2 and conn.commands == 0
    limited = parse(await conn.on_text(PING_TEXT))
    assert limited[0]["code"] == "rate_limited"


class RecordingBus:
    """Passes commands to a real bus and keeps them."""

    def __init__(self, bus: CommandBus) -> None:
        self.bus = bus
        self.commands: list[Command] = []

    async def send(self, command: Command) -> Reply:
        self.commands.append(command)
        return await self.bus.send(command)


async def test_a_start_is_fresh_only_when_the_gateway_minted_its_conversation_id() -> None:
    """``fresh`` lets the service skip reading the log: only for an id minted now,
    never for one derived from the widget's ``start_id`` (a retry may name it)."""
    plain = Gateway()
    recording = RecordingBus(plain.ctx.bus)
    plain.ctx = dataclasses.replace(plain.ctx, bus=recording)
    await send(plain.connect(), start_frame())
    await send(plain.connect(), start_frame() | {"start_id": START_ID})
    starts = [c for c in recording.commands if isinstance(c, StartConversation)]
    assert [(s.conversation_id.startswith("conv-"), s.fresh) for s in starts] == [
        (True, True),
        (False, False),
    ]

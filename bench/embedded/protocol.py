"""The /ws protocol as the load generator speaks it, and what one run records.

Every frame is checked (docs/protocol.md): each frame of a reply must
acknowledge the command it answers, message seqs must increase, ``start`` must
be answered by a ``session`` frame first. A fast wrong answer is not a result,
so anything unexpected is counted and kept verbatim (the first few).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import aiohttp
import orjson

from bench.embedded.stats import Json

SITE = "demo"
FLOWS = ("solar-quote", "saas-demo", "insurance-quote")
REPLY_TIMEOUT_S = 10.0
MAX_EXAMPLES = 20
ECHO_PAYLOAD_BYTES = 256
WAITING_KINDS = ("question", "lead_form", "input")


@dataclass
class Recorder:
    """Samples (ns, by series) and failures of one run: one phase against one server."""

    series: dict[str, list[int]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    error_examples: list[str] = field(default_factory=list)
    anomalies: Counter[str] = field(default_factory=Counter)
    anomaly_examples: list[str] = field(default_factory=list)
    starts_ok: int = 0
    presses_ok: int = 0
    answers_ok: int = 0  # free-text questions answered (solar-quote's first name)
    leads_ok: int = 0
    rounds_completed: int = 0
    rounds_aborted: int = 0
    rounds_cut_by_deadline: int = 0

    def add(self, name: str, ns: int) -> None:
        self.series.setdefault(name, []).append(ns)

    def error(self, code: str, detail: str) -> None:
        self.errors[code] += 1
        if len(self.error_examples) < MAX_EXAMPLES:
            self.error_examples.append(f"{code}: {detail}")

    def anomaly(self, kind: str, detail: str) -> None:
        self.anomalies[kind] += 1
        if len(self.anomaly_examples) < MAX_EXAMPLES:
            self.anomaly_examples.append(f"{kind}: {detail}")


def start_frame(flow: str) -> str:
    context = {"device": "desktop", "locale": "en-GB", "time_zone": "Europe/London"}
    return orjson.dumps(
        {"type": "start", "v": 1, "site": SITE, "flow": flow, "context": context}
    ).decode()


def lead_fields(form: Json, index: int) -> dict[str, str]:
    """Valid values: name, email, consent; optional fields (phone, company) omitted."""
    fields: dict[str, str] = {}
    for spec in form.get("fields") or ():
        name, ftype, required = spec.get("name"), spec.get("type"), spec.get("required")
        if ftype == "consent":
            fields[name] = "true"
        elif ftype == "email":
            fields[name] = f"visitor{index}@example.com"
        elif name == "name":
            fields[name] = "Test Visitor"
        elif required and ftype == "text":
            fields[name] = "Test"
    return fields


def input_value(spec: Json) -> str:
    """A value a free-text question accepts (the message's ``input``, docs/protocol.md):
    the first choice, a number within ``min``/``max``, or a plausible text."""
    kind = spec.get("type", "text")
    if kind == "choice":
        return str(spec["choices"][0]["id"])
    if kind == "number":
        low, high = spec.get("min"), spec.get("max")
        value = 42 if low is None else int(low)
        return str(value if high is None else min(value, int(high)))
    return {
        "email": "visitor@example.com",
        "phone": "+447911123456",
        "date": "2025-01-31",
    }.get(kind, "Alex")


def command_frame(message: Json, seq: int, button: str | None, index: int) -> tuple[str, str]:
    """(kind, frame) answering ``message``: a press of ``button``, a valid answer to a
    free-text question, or a valid lead form."""
    node = message.get("node_id")
    if message.get("kind") == "question":
        frame = {"type": "press", "v": 1, "seq": seq, "node": node, "button": button}
        return "press", orjson.dumps(frame).decode()
    if message.get("kind") == "input":
        value = input_value(message.get("input") or {})
        frame = {"type": "answer", "v": 1, "seq": seq, "node": node, "value": value}
        return "answer", orjson.dumps(frame).decode()
    fields = lead_fields(message, index)
    frame = {"type": "lead", "v": 1, "seq": seq, "node": node, "fields": fields}
    return "lead", orjson.dumps(frame).decode()


def echo_payload(index: int, n: int) -> str:
    """A press-sized text frame, ``ECHO_PAYLOAD_BYTES`` long."""
    head = f'{{"type":"press","v":1,"visitor":{index},"n":{n},"pad":"'
    return head + "x" * (ECHO_PAYLOAD_BYTES - len(head) - 2) + '"}'


@dataclass(slots=True)
class ReplyOutcome:
    """How a command's reply ended: ``last`` (the completing message), ``error`` or ``failure``."""

    first_message_ns: int | None
    end_ns: int
    last: Json | None = None
    error: Json | None = None
    failure: str | None = None


@dataclass(slots=True)
class ReplyCheck:
    """The reader's state within one conversation: what the next frames must satisfy."""

    rec: Recorder
    expect_ack: int = 1
    expect_session: bool = True
    saw_session: bool = False
    last_seq: int = 0

    def next_command(self, seq: int) -> None:
        self.expect_ack, self.expect_session, self.saw_session = seq, False, False

    def session(self, frame: Json, raw: str) -> None:
        if not self.expect_session or self.saw_session:
            self.rec.anomaly("unexpected_session", raw[:200])
        self._ack(frame, raw)
        self.saw_session = True

    def message(self, frame: Json, message: Json, raw: str) -> None:
        if self.expect_session and not self.saw_session:
            self.rec.anomaly("message_before_session", raw[:200])
            self.saw_session = True
        self._ack(frame, raw)
        seq = message.get("seq")
        if not isinstance(seq, int) or seq <= self.last_seq:
            self.rec.anomaly("message_seq_not_increasing", f"after {self.last_seq}: {seq!r}")
        else:
            self.last_seq = seq

    def _ack(self, frame: Json, raw: str) -> None:
        if frame.get("ack") != self.expect_ack:
            self.rec.anomaly("ack_mismatch", f"expected {self.expect_ack}: {raw[:200]}")


def _decode(raw: str, rec: Recorder) -> Json | None:
    try:
        frame = orjson.loads(raw)
    except orjson.JSONDecodeError:
        rec.anomaly("invalid_json", raw[:200])
        return None
    if not isinstance(frame, dict):
        rec.anomaly("not_an_object", raw[:200])
        return None
    return frame


async def read_reply(ws: aiohttp.ClientWebSocketResponse, check: ReplyCheck) -> ReplyOutcome:
    """Read frames until one completes the reply to command ``check.expect_ack``.

    A reply is complete at an ``error`` frame or a ``message`` that waits for
    the visitor (a question, a free-text question or a lead form) or ends the
    conversation.
    """
    first: int | None = None
    while True:
        try:
            msg = await ws.receive(timeout=REPLY_TIMEOUT_S)
        except TimeoutError:
            return ReplyOutcome(first, time.perf_counter_ns(), failure="reply_timeout")
        now = time.perf_counter_ns()
        if msg.type is not aiohttp.WSMsgType.TEXT:
            failure = f"socket_{msg.type.name.lower()}(close_code={ws.close_code})"
            return ReplyOutcome(first, now, failure=failure)
        frame = _decode(msg.data, check.rec)
        if frame is None:
            continue
        ftype = frame.get("type")
        if ftype == "error":
            return ReplyOutcome(first, now, error=frame)
        if ftype == "session":
            check.session(frame, msg.data)
            continue
        message = frame.get("message")
        if ftype != "message" or not isinstance(message, dict):
            check.rec.anomaly("unexpected_frame", str(msg.data)[:200])
            continue
        check.message(frame, message, msg.data)
        first = now if first is None else first
        if message.get("kind") in WAITING_KINDS or message.get("done") is True:
            return ReplyOutcome(first, now, last=message)


def refused(rec: Recorder, outcome: ReplyOutcome, command: str) -> bool:
    """Record an error reply or a failure; True if the conversation cannot go on."""
    if outcome.error is not None:
        detail = orjson.dumps(outcome.error).decode()
        rec.error(str(outcome.error.get("code")), f"{command}: {detail}")
        return True
    if outcome.failure is not None:
        rec.error(outcome.failure, command)
        return True
    return False

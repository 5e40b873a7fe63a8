"""Property-based fuzzing of what the outside world sends us (issue 14): client
frames through ``Connection.on_text`` on the in-memory fakes, resume tokens, and
flow documents through ``schemas.flow_validation``.

The properties: no exception escapes; every refusal is an error code documented
in docs/protocol.md (frames) or a ``file: node.field: message`` FlowError
(flows); and the server keeps serving: a valid start afterwards still works, a
valid flow still validates.

The integration tier runs a budget of 100 examples per property (the ``ci`` profile of
tests/support/fuzz.py, or ``LEADFLOW_FUZZ_EXAMPLES``; no deadline, no
example database). ``HYPOTHESIS_PROFILE=nightly`` runs the same properties with
5,000 examples each (and keeps Hypothesis's example database).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import hmac
import itertools
import json
import re
from pathlib import Path
from typing import Any

import orjson
import yaml
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import GatewaySettings
from gateway.connection import Connection, GatewayContext
from gateway.metrics import GatewayMetrics
from gateway.tokens import InvalidToken, ResumeTokens
from policy.uniform import UniformPolicy
from schemas.flow_errors import FlowError
from schemas.flow_validation import validate_text
from services.conversation.service import ConversationService, InProcessCommandBus
from services.fakes import InMemoryEventLog, InMemoryKeyStore
from services.sites import DEV_ORIGINS, Site
from tests.support.examples import example_catalog
from tests.support.fuzz import fuzz_settings

PROFILE = fuzz_settings()

ROOT = Path(__file__).resolve().parents[2]
SECRET = b"f" * 32
ORIGIN = "http://localhost:8080"


def documented_error_codes() -> frozenset[str]:
    """The codes of docs/protocol.md's Errors table (one or two per row)."""
    text = (ROOT / "docs" / "protocol.md").read_text("utf-8")
    section = text.split("## Errors", 1)[1].split("\n## ", 1)[0]
    codes: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            codes.update(re.findall(r"`([a-z_]+)`", line.split("|")[1]))
    return frozenset(codes)


ERROR_CODES = documented_error_codes()
SERVER_FRAME_TYPES = {"session", "message", "error", "pong"}


# --- client frames ------------------------------------------------------------------


class Gateway:
    """One gateway's context over a real service on the in-memory fakes."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0
        self.log = InMemoryEventLog()
        catalog = example_catalog()
        service = ConversationService(self.log, InMemoryKeyStore(), catalog, UniformPolicy())
        self.tokens = ResumeTokens(SECRET, 3600)
        ids = itertools.count(1)
        self.ctx = GatewayContext(
            settings=GatewaySettings(resume_secret=SECRET),
            sites={"demo": Site("demo", DEV_ORIGINS)},
            catalog=catalog,
            bus=InProcessCommandBus(service),
            tokens=self.tokens,
            metrics=GatewayMetrics(),
            clock=lambda: self.now,
            new_id=lambda: f"conv-{next(ids)}",
        )

    def connect(self) -> Connection:
        return Connection(self.ctx, ORIGIN)


def check_reply(frames: list[str]) -> list[dict[str, Any]]:
    """Every frame the gateway sends is a JSON object of a documented type; every
    error carries a documented code, a message and whether to retry."""
    parsed = []
    for text in frames:
        frame = orjson.loads(text)
        assert isinstance(frame, dict) and frame["type"] in SERVER_FRAME_TYPES, frame
        assert frame["v"] == 1
        if frame["type"] == "error":
            assert frame["code"] in ERROR_CODES, frame
            # on the in-memory fakes nothing is down: these would be server errors
            assert frame["code"] not in ("internal", "unavailable"), frame
            assert isinstance(frame["message"], str) and isinstance(frame["retryable"], bool)
        parsed.append(frame)
    return parsed


async def still_serves(gw: Gateway) -> None:
    """A fresh socket of the same gateway starts a conversation, answers the free-text
    first question (solar-quote asks a first name) and presses on."""
    conn = gw.connect()
    start = {"type": "start", "v": 1, "site": "demo", "flow": "solar-quote"}
    frames = check_reply((await conn.on_text(orjson.dumps(start).decode())).frames)
    assert frames[0]["type"] == "session", frames
    name = frames[-1]["message"]
    answer = {"type": "answer", "v": 1, "seq": 2, "node": name["node_id"], "value": "Ann"}
    frames = check_reply((await conn.on_text(orjson.dumps(answer).decode())).frames)
    assert frames[-1]["type"] == "message", frames
    question = frames[-1]["message"]
    press = {
        "type": "press",
        "v": 1,
        "seq": frames[-1]["ack"] + 1,
        "node": question["node_id"],
        "button": question["buttons"][0]["id"],
    }
    frames = check_reply((await conn.on_text(orjson.dumps(press).decode())).frames)
    assert frames[0]["type"] == "message", frames


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=5,
)
identifiers = st.sampled_from(["property", "house", "contact", "welcome", "bill", "x"])
numbers = st.one_of(
    st.integers(min_value=-2, max_value=5),
    st.sampled_from([0, 2**31 - 1, 2**31, 2**53, 2**63 - 1, 2**63, 2**64 - 1, 2**64]),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=4),
)
LEAD_FIELD_NAMES = ["name", "email", "phone", "consent", "Bad Name", ""]
FIELDS: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "start": {
        "site": st.sampled_from(["demo", "nope", "", "d" * 65]),
        "flow": st.sampled_from(["solar-quote", "saas-demo", "nope", ""]),
        "start_id": st.text(alphabet="abcdef0123456789-_ !", min_size=14, max_size=66),
        "context": st.dictionaries(
            st.sampled_from(["device", "referrer", "locale", "utm_source", "x"]),
            st.sampled_from(["mobile", "tv", "en-GB", "x" * 501]) | json_scalars,
            max_size=3,
        ),
    },
    "press": {"seq": numbers, "node": identifiers, "button": identifiers},
    "lead": {
        "seq": numbers,
        "node": identifiers,
        "fields": st.dictionaries(
            st.sampled_from(LEAD_FIELD_NAMES), st.text(max_size=210) | json_scalars, max_size=4
        ),
    },
    "resume": {"token": st.text(max_size=600), "last_seq": numbers},
    "answer": {
        "seq": numbers,
        "node": identifiers,
        "value": st.text(max_size=1100) | json_scalars,
        "skip": st.booleans() | json_scalars,
    },
    "back": {"seq": numbers, "node": identifiers},
    "ping": {},
}


@st.composite
def frame_objects(draw: st.DrawFn) -> Any:
    """A frame of a known type with each field valid-ish, hostile, missing or extra."""
    kind = draw(st.sampled_from([*FIELDS, "dance"]))
    frame: dict[str, Any] = {"type": kind, "v": draw(st.sampled_from([1, 1, 1, 2, True, 1.0]))}
    for name, strategy in FIELDS.get(kind, {}).items():
        choice = draw(st.integers(0, 4))
        if choice == 0:
            continue  # missing
        frame[name] = draw(json_values) if choice == 1 else draw(strategy)
    if draw(st.integers(0, 3)) == 0:
        frame["extra"] = draw(json_scalars)
    return frame


frame_texts = st.one_of(
    frame_objects().map(json.dumps),
    frame_objects().map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=100),
    st.sampled_from(["", "{", "[]", "null", '{"type":"ping"}', "x" * 5000]),
)


@PROFILE
@given(st.booleans(), st.lists(frame_texts, min_size=1, max_size=5))
def test_no_client_frame_escapes_or_gets_an_undocumented_answer(
    started: bool, texts: list[str]
) -> None:
    """On a fresh socket, or on one bound to a conversation (where seqs and nodes
    matter and a resume may carry the genuine token), whatever arrives is answered
    with documented frames; then the gateway still serves a visitor."""

    async def scenario() -> None:
        gw = Gateway()
        conn = gw.connect()
        token = ""
        if started:
            start = {"type": "start", "v": 1, "site": "demo", "flow": "solar-quote"}
            token = check_reply((await conn.on_text(json.dumps(start))).frames)[0]["token"]
        for text in texts:
            if token and '"token": ""' in text:
                text = text.replace('"token": ""', f'"token": "{token}"')
            gw.now += 1.0  # within the rate limit
            outcome = await conn.on_text(text)
            check_reply(outcome.frames)
            if outcome.close_code is not None:
                assert outcome.close_code == 1008
                break
        await still_serves(gw)

    asyncio.run(scenario())


def signed(claims: Any) -> str:
    payload = json.dumps(claims).encode()
    mac = hmac.new(SECRET, payload, hashlib.sha256).digest()
    return f"{b64(payload)}.{b64(mac)}"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


claims_of_any_shape = st.dictionaries(
    st.sampled_from(["c", "s", "iat", "x"]),
    json_scalars | st.integers(1_699_990_000, 1_700_010_000),
    max_size=4,
)


@PROFILE
@given(st.text(max_size=300) | claims_of_any_shape | json_values)
def test_a_resume_token_is_valid_or_invalid_token_never_anything_else(raw: Any) -> None:
    """Any string, and any claims under a genuine signature: claims verify only when
    exactly typed (str, str, int) and fresh; everything else is InvalidToken."""
    token = raw if isinstance(raw, str) else signed(raw)
    try:
        claims = ResumeTokens(SECRET, 3600).verify(token, 1_700_000_000.0)
    except InvalidToken:
        return
    assert isinstance(raw, dict), "an unsigned string never verifies"
    assert type(raw["c"]) is str and type(raw["s"]) is str and type(raw["iat"]) is int
    assert claims.issued_at == raw["iat"]


# --- flow documents --------------------------------------------------------------

# A small valid flow (a message, a decision point, a lead form, two ends) to mutate.
VALID_FLOW = """\
id: mini
version: 3
start: welcome
nodes:
  - {id: welcome, kind: message, text: Hi!, next: q}
  - id: q
    kind: question
    text: Interested?
    buttons:
      - {id: a, label: "Yes", next: [form, e_ok]}
      - {id: b, label: "No", next: e_no}
  - id: form
    kind: lead_form
    text: Where can we reach you?
    fields:
      - {name: email, type: email, required: true}
      - {name: consent, type: consent}
    next: e_ok
  - {id: e_ok, kind: end, text: Thanks!}
  - {id: e_no, kind: end, text: Bye!}
"""
MINIMAL = yaml.safe_load(VALID_FLOW)

yaml_hostile = st.sampled_from(
    [
        "&a [1, 2]",
        "*a",
        "!!python/object:os.system x",
        "!!binary AAAA",
        "!!set {a, b}",
        "!!omap [a: 1]",
        "!!timestamp 2024-13-45",
        "!!float nope",
        "!!int 0x" + "f" * 40,
        "1" + "0" * 40,
        "1:2:3:4:5",
        ".nan",
        "-.inf",
        "2025-01-31",
        "yes",
        "'\\ud800'",
        '"\\ud800"',
        "[" * 40 + "]" * 40,
        "{" * 20 + "}" * 20,
        "? [a]\n  : b",
        "<<: {a: 1}",
        "|\n  text",
        "~",
        "%YAML 1.1",
        "---",
        "\t",
        "\x00",
    ]
)


def paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for key, value in doc.items():
            out += paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            out += paths(value, (*prefix, index))
    return out


MINIMAL_PATHS = paths(MINIMAL)


@st.composite
def mutated_documents(draw: st.DrawFn) -> str:
    """The solar-quote flow with a few values replaced by arbitrary JSON data or
    hostile YAML, as YAML text (through yaml.safe_dump, or spliced in raw)."""
    doc = copy.deepcopy(MINIMAL)
    raw: list[tuple[str, str]] = []
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(MINIMAL_PATHS[1:]))
        parent = doc
        try:
            for key in path[:-1]:
                parent = parent[key]
            if draw(st.booleans()):
                parent[path[-1]] = draw(json_values)
            else:
                marker = f"HOSTILE{len(raw)}"
                parent[path[-1]] = marker
                raw.append((marker, draw(yaml_hostile)))
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation replaced a parent of this path
    text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    for marker, snippet in raw:
        text = text.replace(marker, snippet, 1)
    return text


def check_flow_errors(filename: str, errors: list[FlowError]) -> None:
    for error in errors:
        assert isinstance(error, FlowError)
        assert all(isinstance(part, str) for part in (error.node, error.field, error.message))
        assert str(error).startswith(f"{filename}: ")
        assert error.message and len(error.message) <= 1000


flow_texts = st.one_of(
    mutated_documents().map(lambda text: (text, "fuzz.yaml")),
    mutated_documents().map(lambda text: (text, "fuzz.yaml")),
    st.tuples(
        st.text(max_size=200)
        | st.lists(yaml_hostile | st.text(max_size=12), max_size=8).map("\n".join)
        | json_values.map(json.dumps),
        st.sampled_from(["fuzz.yaml", "fuzz.json"]),
    ),
)


@PROFILE
@given(flow_texts)
def test_hostile_flow_documents_give_flow_errors_never_exceptions(
    document: tuple[str, str],
) -> None:
    """A mutated valid flow, arbitrary text, hostile YAML or JSON: validation returns
    a flow or FlowErrors (``file: node.field: message``), never raises."""
    text, filename = document
    flow, errors = validate_text(text, filename)
    assert (flow is None) == bool(errors)
    check_flow_errors(filename, errors)


def test_the_flow_the_fuzzer_mutates_is_valid() -> None:
    """So that a mutation is what makes a document invalid (validation keeps no state
    between documents: a valid flow validates after any number of hostile ones)."""
    assert validate_text(VALID_FLOW, "mini.yaml")[1] == []

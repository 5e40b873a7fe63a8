"""The instant opening's scenarios (docs/protocol.md, *The instant opening*), run
against one gateway's HTTP and WebSocket in either mode: flows of the tests' own (the
example flows change under other work), a client that fetches the opening like the
widget does, and the widget's reconciliation rule written out for a scripted client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from services.http_auth import hash_api_key, new_api_key

ORIGIN = "http://localhost:5173"
FLOW = "instant-quiz"
CONTEXT_FLOW = "context-quiz"
GREETING = {"en": "Hello! Two quick questions.", "de": "Hallo! Zwei kurze Fragen."}
NEW_GREETING = {"en": "Hello from version two!", "de": "Hallo von Version zwei!"}
ADMIN_KEY = new_api_key()
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}

INSTANT_QUIZ = f"""\
id: {FLOW}
version: 1
title: Instant quiz
locales: [en, de]
start: hello
nodes:
  - id: hello
    kind: message
    text: {{en: "{GREETING["en"]}", de: "{GREETING["de"]}"}}
    next: about
  - id: about
    kind: message
    text: {{en: "It takes **a minute**, {{{{ name | friend }}}}.", de: "Es dauert eine Minute."}}
    next: home
  - id: home
    kind: question
    text: {{en: What kind of home do you live in?, de: In welcher Art Zuhause wohnen Sie?}}
    buttons:
      - {{id: house, label: {{en: House, de: Haus}}, next: rooms}}
      - {{id: flat, label: {{en: Flat, de: Wohnung}}, next: rooms}}
  - id: rooms
    kind: question
    text: {{en: How many rooms?, de: Wie viele Zimmer?}}
    buttons:
      - {{id: few, label: "1-3", next: contact}}
      - {{id: many, label: "4+", next: contact}}
  - id: contact
    kind: lead_form
    text: Where can we reach you?
    fields:
      - {{name: name, type: text, label: Name}}
      - {{name: email, type: email, label: Email, required: true}}
    next: thanks
  - id: thanks
    kind: end
    text: Thanks!
"""

CONTEXT_QUIZ = f"""\
id: {CONTEXT_FLOW}
version: 1
title: Context quiz
start: ask
nodes:
  - id: ask
    kind: question
    text: "Hello, visitor on {{{{ context.device | a screen }}}}: ready?"
    buttons:
      - {{id: go, label: Go, next: done}}
  - id: done
    kind: end
    text: Done.
"""


def instant_quiz_v2() -> str:
    text = INSTANT_QUIZ
    for locale, greeting in GREETING.items():
        text = text.replace(greeting, NEW_GREETING[locale])
    return text


def write_flows(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{FLOW}.yaml").write_text(INSTANT_QUIZ)
    (directory / f"{CONTEXT_FLOW}.yaml").write_text(CONTEXT_QUIZ)
    return directory


def sites_yaml() -> str:
    """``demo`` serves every flow to localhost pages; ``narrow`` only the context quiz."""
    return """
sites:
  - id: demo
    origins: ["http://localhost:*", "http://127.0.0.1:*"]
  - id: narrow
    origins: ["http://localhost:*"]
    flows: [context-quiz]
"""


def environment(tmp: Path) -> dict[str, str]:
    """Flows, sites and the admin key of a server (or a cluster's services)."""
    sites = tmp / "sites.yaml"
    sites.write_text(sites_yaml())
    return {
        "LEADFLOW_FLOWS_DIR": str(write_flows(tmp / "flows")),
        "LEADFLOW_SITES_FILE": str(sites),
        "LEADFLOW_ADMIN_API_KEY_SHA256": hash_api_key(ADMIN_KEY),
    }


@dataclass
class Fetched:
    pointer: aiohttp.ClientResponse
    url: str  # the hashed document's, "" when the pointer answered itself
    response: aiohttp.ClientResponse
    body: bytes

    @property
    def doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = orjson.loads(self.body)
        return doc


async def fetch_opening(
    http_url: str, locale: str = "en-GB", flow: str = FLOW, site: str = "demo"
) -> Fetched:
    """GET the pointer, then (as a browser's fetch follows the 302) the document."""
    async with aiohttp.ClientSession() as http:
        url = f"{http_url}/opening/{site}/{flow}"
        headers = {"Origin": ORIGIN, "Accept-Encoding": "gzip"}
        async with http.get(
            url, params={"locale": locale}, headers=headers, allow_redirects=False
        ) as pointer:
            body = await pointer.read()
            if pointer.status != 302:
                return Fetched(pointer, "", pointer, body)
            target = f"{url}/{pointer.headers['Location'].rsplit('/', 1)[1]}"
        async with http.get(target, headers=headers) as response:
            return Fetched(pointer, target, response, await response.read())


async def get_document(url: str) -> tuple[int, bytes]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(url, headers={"Origin": ORIGIN}) as response,
    ):
        return response.status, await response.read()


class Socket:
    """A scripted widget: raw frames in, so messages compare byte for byte."""

    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse):
        self.session, self.ws = session, ws

    @classmethod
    async def open(cls, ws_url: str) -> Socket:
        session = aiohttp.ClientSession()
        return cls(session, await session.ws_connect(ws_url, headers={"Origin": ORIGIN}))

    async def close(self) -> None:
        await self.ws.close()
        await self.session.close()

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send_str(orjson.dumps({"v": 1, **frame}).decode())

    async def raw(self) -> str:
        msg = await self.ws.receive(timeout=15)
        assert msg.type is aiohttp.WSMsgType.TEXT, (msg.type, self.ws.close_code)
        return str(msg.data)

    async def start(self, locale: str, flow: str = FLOW) -> tuple[dict[str, Any], list[str]]:
        context = {"locale": locale, "device": "mobile", "utm_source": "news"}
        await self.send({"type": "start", "site": "demo", "flow": flow, "context": context})
        return await self.session_reply()

    async def session_reply(self) -> tuple[dict[str, Any], list[str]]:
        session: dict[str, Any] = orjson.loads(await self.raw())
        assert session["type"] == "session", session
        return session, [await self.raw() for _ in range(session["messages"])]

    async def reply(self) -> list[dict[str, Any]]:
        """Frames up to one that waits for the visitor, ends, or refuses."""
        frames: list[dict[str, Any]] = []
        while True:
            frames.append(orjson.loads(await self.raw()))
            last = frames[-1]
            if last["type"] == "error" or last["message"]["kind"] != "message":
                return frames


def message_bodies(frames: list[str]) -> list[dict[str, Any]]:
    return [orjson.loads(text)["message"] for text in frames]


def reconciled(shown: list[dict[str, Any]], server: list[dict[str, Any]]) -> bool:
    """The widget's rule: the opening stands when the start's reply is the same
    messages (then none is shown again); otherwise the reply replaces it."""
    return orjson.dumps(shown) == orjson.dumps(server)


# ------------------------------------------------------------------ scenarios


async def the_opening_is_the_first_reply(http_url: str, ws_url: str) -> None:
    """In each language, the document's messages are the server's first reply's
    message frames, byte for byte, with the same seqs and ack."""
    for locale, language in (("en-GB", "en"), ("de-CH", "de"), ("pt-BR", "en")):
        fetched = await fetch_opening(http_url, locale)
        doc = fetched.doc
        assert (doc["instant"], doc["locale"], doc["version"]) == (True, language, 1), doc
        assert doc["messages"][0]["text"] == GREETING[language]
        socket = await Socket.open(ws_url)
        try:
            session, frames = await socket.start(locale)
        finally:
            await socket.close()
        assert session["ack"] == doc["ack"] == 1
        assert [m["seq"] for m in doc["messages"]] == [2, 3, 4]
        for text, shown in zip(frames, doc["messages"], strict=True):
            body = orjson.dumps(shown).decode()
            assert text == f'{{"type":"message","v":1,"ack":1,"message":{body}}}'


async def a_press_before_the_socket_is_delivered(http_url: str, ws_url: str) -> None:
    """The visitor pressed a button of the opening before the socket opened: the
    start confirms the opening, then the press goes with seq 2 and is answered (as
    the widget sends it, after the session; and pipelined right behind the start)."""
    doc = (await fetch_opening(http_url)).doc
    question = doc["messages"][-1]
    press = {"type": "press", "seq": 2, "node": question["node_id"], "button": "flat"}
    for pipelined in (False, True):
        socket = await Socket.open(ws_url)
        try:
            context = {"locale": "en-GB"}
            await socket.send({"type": "start", "site": "demo", "flow": FLOW, "context": context})
            if pipelined:
                await socket.send(press)
            session, frames = await socket.session_reply()
            assert session["ack"] == 1
            assert reconciled(doc["messages"], message_bodies(frames))  # nothing shown twice
            if not pipelined:
                await socket.send(press)
            reply = await socket.reply()
        finally:
            await socket.close()
        assert [f["type"] for f in reply] == ["message"], reply
        assert reply[0]["ack"] == 2
        assert reply[0]["message"]["node_id"] == "rooms"
        assert reply[0]["message"]["seq"] > question["seq"]


Publish = Callable[[str], Awaitable[dict[str, Any]]]


async def a_publish_mid_visit_moves_the_pointer(
    http_url: str, ws_url: str, publish: Publish, bound: float = 10.0
) -> None:
    """A visitor fetched version 1's opening; version 2 is published before their
    socket opens. The pointer names a new hashed document at once (within the
    pointer's lifetime for caches), the old one still answers (immutable), and the
    start's reply differs from it at the same seqs: the widget shows the server's
    messages instead, and the visitor's next press (seq 2) is answered on version 2."""
    old = await fetch_opening(http_url)
    assert old.doc["version"] == 1
    published = await publish(instant_quiz_v2())
    assert published["version"] == 2, published
    new = await until_version(http_url, 2, bound)
    assert new.url != old.url and new.url.rsplit("/", 1)[1].startswith("2.")
    assert new.doc["messages"][0]["text"] == NEW_GREETING["en"]
    assert await get_document(old.url) == (200, old.body)  # cached anywhere: still true

    socket = await Socket.open(ws_url)
    try:
        _session, frames = await socket.start("en-GB")
        server = message_bodies(frames)
        assert [m["seq"] for m in server] == [m["seq"] for m in old.doc["messages"]]
        assert not reconciled(old.doc["messages"], server)  # replaced by the server's
        assert server == new.doc["messages"]
        await socket.send(
            {"type": "press", "seq": 2, "node": server[-1]["node_id"], "button": "house"}
        )
        reply = await socket.reply()
    finally:
        await socket.close()
    assert reply[0]["ack"] == 2 and reply[0]["message"]["node_id"] == "rooms"


async def until_version(http_url: str, version: int, bound: float = 10.0) -> Fetched:
    """The opening once the pointer names ``version`` (a registry feed may lag)."""
    deadline = time.monotonic() + bound
    while True:
        fetched = await fetch_opening(http_url)
        if fetched.doc["version"] == version:
            return fetched
        assert time.monotonic() < deadline, f"the pointer never named version {version}"
        await asyncio.sleep(0.1)


def admin_publisher(api_url: str) -> Publish:
    """POST a flow to the admin API at ``api_url`` (``.../api/v1``)."""

    async def publish(text: str) -> dict[str, Any]:
        async with aiohttp.ClientSession() as http:
            headers = {**ADMIN, "Content-Type": "application/yaml"}
            async with http.post(f"{api_url}/flows", data=text, headers=headers) as response:
                body: dict[str, Any] = orjson.loads(await response.read())
                assert response.status in (200, 201), body
                return body

    return publish

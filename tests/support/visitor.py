"""A scripted visitor speaking the /ws protocol (docs/protocol.md) over a real socket."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

WAITING_KINDS = ("question", "lead_form", "input")
VALID_LEAD = {"name": "Test Visitor", "email": "visitor@example.com", "consent": "true"}


def valid_answer(spec: dict[str, Any]) -> str:
    """A value an ``input`` message accepts (its ``input`` object, docs/protocol.md)."""
    kind = spec.get("type", "text")
    if kind == "choice":
        return str(spec["choices"][0]["id"])
    if kind == "number":
        low = spec.get("min")
        return str(int(low)) if low is not None else "42"
    return {
        "email": "visitor@example.com",
        "phone": "+447911123456",
        "date": "2025-01-31",
    }.get(kind, "An answer")


@dataclass
class Visitor:
    ws: aiohttp.ClientWebSocketResponse
    session: aiohttp.ClientSession
    conversation_id: str = ""
    token: str = ""
    ack: int = 0
    last_seq: int = 0
    messages: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    async def connect(cls, ws_url: str, origin: str = "http://localhost") -> Visitor:
        session = aiohttp.ClientSession()
        try:
            ws = await session.ws_connect(ws_url, headers={"Origin": origin}, autoping=True)
        except Exception:
            await session.close()
            raise
        return cls(ws=ws, session=session)

    async def close(self) -> None:
        await self.ws.close()
        await self.session.close()

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send_str(orjson.dumps({"v": 1, **frame}).decode())

    async def recv(self, wait: float = 10.0) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=wait)
        if msg.type is not aiohttp.WSMsgType.TEXT:
            raise ConnectionError(f"socket closed: {msg.type.name} {self.ws.close_code}")
        frame: dict[str, Any] = orjson.loads(msg.data)
        self._track(frame)
        return frame

    def _track(self, frame: dict[str, Any]) -> None:
        if "ack" in frame:
            self.ack = frame["ack"]
        if frame["type"] == "session":
            if frame["conversation_id"] != self.conversation_id:
                self.messages, self.last_seq = [], 0
            self.conversation_id = frame["conversation_id"]
            self.token = frame["token"]
        elif frame["type"] == "message" and frame["message"]["seq"] > self.last_seq:
            self.last_seq = frame["message"]["seq"]
            self.messages.append(frame["message"])

    async def until_reply(self) -> list[dict[str, Any]]:
        """Frames up to the end of one reply: an error, or a message that waits or ends."""
        frames = []
        while True:
            frame = await self.recv()
            frames.append(frame)
            if frame["type"] == "error":
                return frames
            if frame["type"] == "message" and (
                frame["message"]["kind"] in WAITING_KINDS or frame["message"]["done"]
            ):
                return frames

    async def start(self, flow: str, site: str = "demo", **context: str) -> list[dict[str, Any]]:
        await self.send({"type": "start", "site": site, "flow": flow, "context": context})
        return await self.session_reply()

    async def resume(self, token: str, last_seq: int) -> list[dict[str, Any]]:
        """Send ``resume``; return the session frame and the messages it announces."""
        await self.send({"type": "resume", "token": token, "last_seq": last_seq})
        return await self.session_reply()

    async def session_reply(self) -> list[dict[str, Any]]:
        first = await self.recv()
        if first["type"] != "session":
            return [first]
        return [first] + [await self.recv() for _ in range(first["messages"])]

    def current(self) -> dict[str, Any] | None:
        return self.messages[-1] if self.messages else None

    async def press(self, button: str, seq: int | None = None) -> list[dict[str, Any]]:
        node = self.current()
        assert node is not None
        await self.send(
            {"type": "press", "seq": seq or self.ack + 1, "node": node["node_id"], "button": button}
        )
        return await self.until_reply()

    async def lead(self, fields: dict[str, str], seq: int | None = None) -> list[dict[str, Any]]:
        node = self.current()
        assert node is not None
        await self.send(
            {"type": "lead", "seq": seq or self.ack + 1, "node": node["node_id"], "fields": fields}
        )
        return await self.until_reply()

    async def answer(
        self, value: str = "", *, skip: bool = False, seq: int | None = None
    ) -> list[dict[str, Any]]:
        """Answer the current free-text (``input``) question, or skip it."""
        node = self.current()
        assert node is not None
        frame: dict[str, Any] = {"type": "answer", "seq": seq or self.ack + 1}
        frame["node"] = node["node_id"]
        frame.update({"skip": True} if skip else {"value": value})
        await self.send(frame)
        return await self.until_reply()

    async def answer_inputs(self) -> dict[str, Any]:
        """Answer free-text questions validly while one is current (solar-quote asks
        the visitor's first name before its first buttons); return the current message."""
        node = self.current()
        while node is not None and node["kind"] == "input":
            frames = await self.answer(valid_answer(node["input"]))
            assert frames[-1]["type"] == "message", frames[-1]
            node = self.current()
        assert node is not None
        return node

    async def step(self, rng: random.Random) -> list[dict[str, Any]]:
        """Press a random button of the current question, or answer the current
        free-text question validly: one step towards a lead form or an end."""
        node = self.current()
        assert node is not None
        if node["kind"] == "input":
            return await self.answer(valid_answer(node["input"]))
        return await self.press(rng.choice(node["buttons"])["id"])

    async def play_to_end(self, rng: random.Random, max_steps: int = 100) -> dict[str, Any]:
        """Answer every question at random and fill every form validly; return the end."""
        for _ in range(max_steps):
            node = self.current()
            assert node is not None
            if node["done"]:
                return node
            if node["kind"] == "question":
                frames = await self.press(rng.choice(node["buttons"])["id"])
            elif node["kind"] == "input":
                frames = await self.answer(valid_answer(node["input"]))
            else:
                frames = await self.lead(VALID_LEAD)
            assert frames[-1]["type"] == "message", frames[-1]
        raise AssertionError("flow did not end")

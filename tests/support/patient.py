"""A visitor that never gives up: it retries a command with the same seq after a
retryable error, a timeout or a dropped socket, reconnecting (to any gateway)
and resuming first, exactly as the widget does. For failure-injection tests."""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
from dataclasses import dataclass, field
from typing import Any

from tests.support.visitor import VALID_LEAD, Visitor, valid_answer

RETRYABLE = (ConnectionError, TimeoutError, asyncio.TimeoutError, OSError)


@dataclass
class PatientVisitor:
    urls: list[str]
    flow: str
    rng: random.Random
    visitor: Visitor | None = None
    token: str = ""
    conversation_id: str = ""
    seen: list[dict[str, Any]] = field(default_factory=list)
    retries: int = 0
    errors: list[str] = field(default_factory=list)
    think: tuple[float, float] = (0.0, 0.0)

    async def _connect(self) -> Visitor:
        if self.visitor is not None:
            with contextlib.suppress(Exception):
                await self.visitor.close()
        url = self.urls[self.retries % len(self.urls)]
        visitor = await Visitor.connect(url)
        visitor.conversation_id = self.conversation_id
        visitor.messages = list(self.seen)
        visitor.last_seq = self.seen[-1]["seq"] if self.seen else 0
        self.visitor = visitor
        return visitor

    async def _attempt(self, frame: dict[str, Any]) -> list[dict[str, Any]]:
        visitor = self.visitor or await self._connect()
        if self.token and visitor.token != self.token:
            frames = await visitor.resume(self.token, visitor.last_seq)
            if frames[0]["type"] != "session":
                raise ConnectionError(f"resume failed: {frames[0]}")
            visitor.token = self.token
        await visitor.send(frame)
        return await (
            visitor.session_reply() if frame["type"] == "start" else visitor.until_reply()
        )

    async def _until_done(self, frame: dict[str, Any], deadline: float = 90.0) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline
        while True:
            try:
                frames = await self._attempt(frame)
                last = frames[-1]
                if last["type"] == "error" and last.get("retryable"):
                    self.errors.append(last["code"])
                    raise ConnectionError(last["code"])
                if last["type"] == "error":
                    raise AssertionError(f"refused: {last}")
                break
            except RETRYABLE:
                self.retries += 1
                if loop.time() > end:
                    raise
                await asyncio.sleep(0.2)
                with contextlib.suppress(*RETRYABLE):
                    await self._connect()
        assert self.visitor is not None
        self.token = self.visitor.token or self.token
        self.conversation_id = self.visitor.conversation_id or self.conversation_id
        self.seen = list(self.visitor.messages)

    async def play(self) -> dict[str, Any]:
        """Start, answer at random, submit leads: the whole conversation, whatever fails."""
        # like the widget: every retry of this start names the same conversation
        start_id = secrets.token_hex(16)
        await self._until_done(
            {"type": "start", "site": "demo", "flow": self.flow, "start_id": start_id}
        )
        for seq in range(2, 200):
            node = self.seen[-1]
            if node["done"]:
                return node
            await asyncio.sleep(self.rng.uniform(*self.think))
            if node["kind"] == "question":
                frame = {
                    "type": "press",
                    "seq": seq,
                    "node": node["node_id"],
                    "button": self.rng.choice(node["buttons"])["id"],
                }
            elif node["kind"] == "input":  # a free-text question (flow format v2)
                value = valid_answer(node["input"])
                frame = {"type": "answer", "seq": seq, "node": node["node_id"], "value": value}
            else:
                frame = {"type": "lead", "seq": seq, "node": node["node_id"], "fields": VALID_LEAD}
            await self._until_done(frame)
        raise AssertionError("conversation did not end")

    async def play_through_a_lead_form(self, attempts: int = 10) -> None:
        """Play new conversations until one passed a lead form (random answers may
        never reach one); :attr:`seen` is that conversation's transcript."""
        for _ in range(attempts):
            await self.play()
            if any(m["kind"] == "lead_form" for m in self.seen):
                return
            self.token, self.seen = "", []
            await self.close()  # the next one on a socket of its own, like a new page view:
            self.visitor = None  # a socket may start only a few conversations a minute
        raise AssertionError(f"no lead form in {attempts} conversations")

    async def close(self) -> None:
        if self.visitor is not None:
            with contextlib.suppress(Exception):
                await self.visitor.close()
